//! The peach-dyndns wire protocol, version 2, as pure functions and types.
//!
//! A Pi signs an update message with its SSB ed25519 key, seals the signed
//! message to the pub's key, and posts the sealed box inside a small JSON
//! envelope. The pub opens the box, verifies the signature over the
//! canonical bytes of the message exactly as it arrived, and only then parses
//! it strictly. This crate holds every step of that and the rules that decide
//! which names and addresses are acceptable. It does no I/O at all: no files,
//! no sockets, no clock (callers pass the time in), so both the daemon and the
//! server share one implementation that is tested against the libsodium
//! vectors in `tests/data/protocol-vectors.json`.
//!
//! # Layout
//!
//! - [`identity`]: SSB identities (`@<base64>.ed25519`), keypairs, and the
//!   secret file in both the ssb-server (`#` comments) and go-sbot forms.
//! - [`canonical`]: strict JSON reading (no duplicate keys, no floats) and the
//!   canonical bytes that are signed.
//! - [`message`]: the update message, signing and verification.
//! - [`seal`]: sealed boxes to the pub's key and the HTTP envelope.
//! - [`ip_answer`]: the pub's signed answer to `GET /ip?nonce=…`.
//! - [`rules`]: DNS label rules, reserved names, globally routable addresses,
//!   `seq` and token helpers.
//! - [`error`]: the error codes and HTTP statuses of the wire contract, and
//!   [`ProtocolError`], which maps onto them.
//!
//! # Example: a whole round trip
//!
//! ```
//! use peach_dyndns_protocol::{identity::Keypair, message::{Op, UpdateMsg}, seal};
//!
//! let pi = Keypair::generate();
//! let pubkey = Keypair::generate();
//! let msg = UpdateMsg {
//!     op: Op::Update,
//!     name: "eb4890".into(),
//!     domain: "peach.dinosaur.is".into(),
//!     ip: Some("24.12.12.12".parse().unwrap()),
//!     ip6: None,
//!     pub_id: pubkey.public(),
//!     public_key: pi.public(),
//!     seq: 1_764_000_000_123,
//!     token_sha256: None,
//!     txt: None,
//! };
//! let envelope = seal::seal_update(&msg.sign(&pi), &pubkey.public()).unwrap();
//! let body = serde_json::to_vec(&envelope).unwrap();
//! let opened = seal::open_envelope(&body, &pubkey).unwrap();
//! assert_eq!(opened.msg, msg);
//! ```

#![warn(missing_docs)]

pub mod canonical;
pub mod error;
pub mod identity;
pub mod ip_answer;
pub mod message;
pub mod rules;
pub mod seal;

pub use error::{ErrorCode, ProtocolError};

/// The protocol version carried in the envelope's `v` field. Version 1
/// (which did not bind a message to one pub) is no longer accepted.
pub const PROTOCOL_VERSION: u64 = 2;

/// The largest request body a server accepts, in bytes (4 KiB). A sealed
/// update is about 400 bytes; the margin allows long names and a token hash
/// while keeping garbage cheap to refuse.
pub const MAX_BODY_BYTES: usize = 4096;

/// The domain-separation prefix signed in front of the canonical message, so
/// a signature made for peach-dyndns can never be replayed as some other SSB
/// signature, or the other way round.
pub const SIGNING_PREFIX: &[u8] = b"peach-dyndns:update:v2\n";

/// The domain-separation prefix of the pub's signed `/ip` statement.
pub const IP_SIGNING_PREFIX: &[u8] = b"peach-dyndns:ip:v2\n";
