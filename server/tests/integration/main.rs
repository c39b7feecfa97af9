//! Integration tests of peach-dyndns-server, with the real parts (BIND's
//! `named`, ssb-server, curl, dig) started by `testkit` on loopback.

mod acme;
mod api;
mod bind;
mod cli;
mod common;
mod control;
mod dns;
mod dnssec;
mod faults;
mod held;
mod hostile;
mod load;
mod real;
mod secondary;
mod serve;
mod soak;
mod ssb;
mod tls;
mod v2;
