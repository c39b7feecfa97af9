//! The daemon against the real parts: the real server in-process (embedded
//! DNS or bind-local against real `named`), a real ssb-server pair through
//! the testkit harness, and the built binary. One test binary, a module per
//! area.

mod acme;
mod binary;
mod bind;
mod common;
mod hostile;
mod panel;
mod sbot;
mod server;
mod statedir;
mod webdriver;
