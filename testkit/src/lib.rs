//! Test harness that starts the real parts peach-dyndns talks to — BIND 9's
//! `named` and `ssb-server` from npm — on loopback, each in its own temporary
//! directory, and stops them by PID when the handle is dropped (so a test that
//! panics still cleans up). A part that cannot be found or started makes the
//! test fail with a message saying what is missing and that `scripts/test`
//! (or `scripts/install-test-deps` alone) installs it: these tests never skip.
//!
//! ```no_run
//! let named = testkit::Named::start();
//! named.nsupdate_local("update add pi.peach.dinosaur.is 60 A 192.0.2.7\nsend\n");
//! assert_eq!(named.dig("pi.peach.dinosaur.is", "A"), ["192.0.2.7"]);
//!
//! let sbot = testkit::Sbot::start();
//! sbot.publish(serde_json::json!({"type": "peach-dyndns", "domain": "peach.dinosaur.is"}));
//! ```
//!
//! Layout:
//! - `lib.rs`: this overview, [`free_port`] and the re-exports.
//! - `error.rs`: [`Error`], one enum with the context a person needs to fix a
//!   failing start (what is missing, the tail of the part's log).
//! - `process.rs`: a child process in its own process group, its output in a
//!   log file, stopped with SIGTERM and then SIGKILL ([`Process`] for the
//!   benchmarks' own children); binary lookup; running short-lived commands
//!   (`dig`, `nsupdate`, the ssb-server CLI).
//! - `dig.rs`: [`dig`], the real `dig` as every test runs it (server, name,
//!   type, TCP, flags), with `+short` lines or the full reply taken apart.
//! - `dns.rs`: a tiny hand-built DNS query used to poll `named` for readiness.
//! - `named.rs`: [`Named`], a primary (or secondary) BIND zone with BIND's
//!   session key and a TSIG key, and `dig`/`nsupdate` helpers.
//! - `named_with.rs`: [`NamedWith`], a `named` with zone statements the
//!   test writes (the operator's snippets: secondaries, DNSSEC).
//! - `config.rs`: [`ServerConfig`] and [`DaemonConfig`], the text of the two
//!   binaries' config files as tests write them, and [`write_secret`], the
//!   0600 SSB secret file they name.
//! - `procfs.rs`: [`procfs`], what `/proc` says about a process (CPU time,
//!   resident memory, threads, mappings) and the machine, for the benchmarks.
//! - `pebble.rs`: [`Pebble`], Let's Encrypt's test CA with a listener
//!   certificate the harness makes, pointed at the test's DNS server.
//! - `sbot.rs`: [`Sbot`], an ssb-server with its own HOME and app name, and
//!   helpers that run its command line.
//!
//! The npm tree for ssb-server is pinned in `testkit/ssb/` (`package.json`,
//! `package-lock.json`); `scripts/install-test-deps` runs `npm ci` there.

#![warn(missing_docs)]

mod config;
mod dig;
mod dns;
mod error;
mod named;
mod named_with;
mod pebble;
mod process;
pub mod procfs;
mod sbot;

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::sync::Mutex;

use rand_core::{OsRng, RngCore};

pub use config::{toml_string, try_write_secret, write_secret, DaemonConfig, ServerConfig};
pub use dig::{dig, Dig, DigReply};
pub use error::{Error, Result};
pub use named::{Named, NamedBuilder, TsigKey, DEFAULT_ZONE};
pub use named_with::NamedWith;
pub use pebble::{Pebble, PebbleBuilder};
pub use process::{Process, Signal};
pub use sbot::{Sbot, SbotBuilder};

/// Lowest port [`free_port`] hands out. Ports are drawn below Linux's default
/// ephemeral range (32768–60999) so that the kernel does not give the same
/// port to some client socket between our probe and the part binding it.
const PORT_RANGE_START: u16 = 20_000;
/// One past the highest port [`free_port`] hands out (the ephemeral range starts here).
const PORT_RANGE_END: u16 = 32_768;
/// How many random ports [`free_port`] probes before it gives up; with a
/// nearly idle range the first one almost always fits.
const PORT_ATTEMPTS: usize = 500;

/// Ports already handed out in this process, so two tests running in
/// parallel threads never get the same one.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on loopback that is free for both TCP and UDP, on 127.0.0.1 and
/// (where the machine has IPv6) on `::1`, and that this process has not
/// handed out before.
///
/// The probe sockets are closed before returning, so another process could
/// still take the port before the caller binds it; drawing from outside the
/// ephemeral range makes that unlikely.
///
/// # Panics
///
/// When no free port is found after many attempts (a machine in trouble).
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..PORT_ATTEMPTS {
        let span = u32::from(PORT_RANGE_END - PORT_RANGE_START);
        let offset = u16::try_from(OsRng.next_u32() % span).unwrap_or(0);
        let port = PORT_RANGE_START + offset;
        if handed_out.contains(&port) {
            continue;
        }
        if port_is_free(port) {
            handed_out.insert(port);
            return port;
        }
    }
    panic!(
        "testkit::free_port: no port in {PORT_RANGE_START}..{PORT_RANGE_END} was free \
         for TCP and UDP on loopback after {PORT_ATTEMPTS} attempts"
    );
}

/// Whether `port` can be bound for TCP and UDP on 127.0.0.1 and on `::1`.
/// A machine without IPv6 on loopback only needs the IPv4 half.
fn port_is_free(port: u16) -> bool {
    let v4_free = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
    if !v4_free {
        return false;
    }
    let v6_usable = |result: std::io::Result<()>| match result {
        Ok(()) => true,
        // No IPv6 on this machine: nothing can take the port there either.
        Err(e) => e.kind() == std::io::ErrorKind::AddrNotAvailable,
    };
    v6_usable(TcpListener::bind((Ipv6Addr::LOCALHOST, port)).map(drop))
        && v6_usable(UdpSocket::bind((Ipv6Addr::LOCALHOST, port)).map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable_and_not_repeated() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
        for port in [a, b] {
            assert!((PORT_RANGE_START..PORT_RANGE_END).contains(&port));
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("TCP bind on a free port");
            UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).expect("UDP bind on a free port");
        }
    }
}
