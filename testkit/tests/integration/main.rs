//! Integration tests of the harness itself: the real `named` and
//! `ssb-server` come up on loopback, take updates and messages, and a missing
//! part fails loudly instead of skipping.

mod named;
mod sbot;
