//! Integration tests of peach-dyndns-server, with the real parts (BIND's
//! `named`, ssb-server, curl, dig) started by `testkit` on loopback.

mod acme;
mod api;
mod bind;
mod cli;
mod common;
mod control;
mod dns;
mod load;
mod serve;
mod ssb;
mod v2;
