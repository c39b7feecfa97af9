//! A small async muxrpc client for the calls peach-dyndns makes to a local
//! ssb-server: on the pub, whether the pub follows or blocks a Pi's key and
//! publishing the `peach-dyndns` announcement; on the Pi, reading pubs'
//! announcements and accepting an invite. It connects over TCP with SSB's
//! secret handshake (kuska-handshake), as the server's own key, and speaks
//! muxrpc on tokio. Every call has a timeout and every failure is one
//! [`SbotError`] that names the server's address, the method and what the
//! server said.
//!
//! It also loads the SSB secret both binaries sign with ([`secret`]):
//! systemd's credential first, then the configured file, refusing one that
//! other users can read. The id and secret file formats themselves are
//! `peach_dyndns_protocol::identity`'s, which this crate builds on.
//!
//! ```no_run
//! # async fn demo(key: ed25519_dalek::SigningKey) -> Result<(), peach_dyndns_sbot::SbotError> {
//! use std::time::Duration;
//! use peach_dyndns_protocol::identity::PublicKey;
//! use peach_dyndns_sbot::{Sbot, SbotConfig};
//!
//! let me = PublicKey::from(key.verifying_key()).to_string();
//! let cfg = SbotConfig::new("127.0.0.1:8008".parse().unwrap(), me.clone());
//! let sbot = Sbot::connect(&cfg, &key, Duration::from_secs(5)).await?;
//! let followed = sbot.is_following(&me, "@LA9HYf5rnUJFHHTklKXLLRyrEytayjbFZRo76Aj/qKs=.ed25519").await?;
//! let announcements = sbot.messages_by_type("peach-dyndns").await?;
//! sbot.close().await?;
//! # Ok(()) }
//! ```
//!
//! Why not kuska-ssb's own muxrpc layer (`kuska_ssb::rpc`, `kuska_ssb::api`):
//! it turns on serde_json's `preserve_order` and `arbitrary_precision`
//! features, which cargo then applies to every crate built with this one
//! (`serde_json::Value` keeps insertion order instead of sorting, numbers
//! are kept as text); it loses every error ssb-server sends (it reads the
//! error body into borrowed strings, which fails on the escaped newlines of
//! the stack trace, so the call waits until it times out); it reports the
//! error end of a stream as a normal end; and it brings async-std, regex and
//! more into the Pi's binary. The muxrpc framing is a 9-byte header and JSON
//! bodies, so this crate does it itself (`frame.rs`) and keeps only the
//! cryptography, kuska-handshake, the part kuska-ssb itself builds on.
//!
//! # Layout
//!
//! - `lib.rs`: this overview and the re-exports.
//! - `client.rs`: [`Sbot`] and [`SbotConfig`]: connect and handshake, the
//!   typed calls (`whoami`, `friends.*`, `publish`, `messagesByType`,
//!   `invite.accept`, `gossip.add`) and the generic [`Sbot::call`] and
//!   [`Sbot::source`]; [`MAIN_NETWORK_KEY`].
//! - `conn.rs`: one muxrpc connection: the reader and writer tasks, request
//!   numbers, routing answers to waiting calls, [`Source`] streams.
//! - `frame.rs`: muxrpc packets: header, request bodies, reply decoding.
//!   Pure functions.
//! - [`secret`]: [`secret::load_secret`], the SSB secret from systemd's
//!   credential or the configured path, and [`secret::SecretError`].
//! - `quickack.rs`: a TCP read half that ACKs at once, which cuts each call
//!   from about 45 ms to about 1 ms (ssb-server's writes meet Linux's
//!   delayed ACK otherwise).
//! - `error.rs`: [`SbotError`].
//!
//! Tests against a real ssb-server 16.0.1 are in `tests/integration/`.

#![warn(missing_docs)]

mod client;
mod conn;
mod error;
mod frame;
mod quickack;
pub mod secret;

pub use client::{Sbot, SbotConfig, MAIN_NETWORK_KEY};
pub use conn::Source;
pub use error::SbotError;

/// The muxrpc decoding a peer's bytes meet, for the fuzz targets in
/// `fuzz/` (cargo-fuzz) only: not an API, and it may change at any time.
#[doc(hidden)]
pub mod fuzzing {
    use crate::frame::{self, Header, HEADER_LEN};

    /// Reads `stream` as the connection's reader does: a header, then its
    /// body, until the goodbye, a header `Header::decode` refuses, or the
    /// end of the bytes; each body goes through the reply decoders. Returns
    /// how many packets were read. Panics if a decoded header does not
    /// encode back to the same header (the property the target checks).
    pub fn read_packets(mut stream: &[u8]) -> usize {
        let mut packets = 0;
        while let Some((head, rest)) = stream.split_first_chunk::<HEADER_LEN>() {
            let Ok(header) = Header::decode(head) else {
                break;
            };
            assert_eq!(
                Header::decode(&header.encode()),
                Ok(header),
                "a decoded header encodes back to itself"
            );
            if header.is_goodbye() {
                break;
            }
            let len = usize::try_from(header.body_len).unwrap_or(usize::MAX);
            let Some(body) = rest.get(..len) else {
                break;
            };
            let _ = frame::body_value(header.body_type, body);
            let _ = frame::error_message(header.body_type, body);
            stream = &rest[len..];
            packets += 1;
        }
        packets
    }
}
