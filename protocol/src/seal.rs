//! Sealed boxes to the pub's key, and the HTTP envelope around them.
//!
//! libsodium's `crypto_box_seal`: an ephemeral X25519 key, XSalsa20-Poly1305,
//! nonce = BLAKE2b-24(ephemeral_pk ‖ recipient_pk). The recipient key is the
//! pub's ed25519 key converted to X25519.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::identity::{Keypair, PublicKey};
use crate::message::{verify_signed, SignedUpdate, VerifiedUpdate};
use crate::{ProtocolError, MAX_BODY_BYTES, PROTOCOL_VERSION};

/// The body of `POST /update`: `{"v":2,"sealed":"<base64>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Protocol version, 2.
    pub v: u64,
    /// Base64 of the sealed box.
    pub sealed: String,
}

/// Errors sealing (only a failure of the system's random source).
#[derive(Debug, thiserror::Error)]
#[error("could not seal the update: {0}")]
pub struct SealError(String);

/// Seals `plaintext` to `recipient` (libsodium `crypto_box_seal`).
pub fn seal(plaintext: &[u8], recipient: &PublicKey) -> Result<Vec<u8>, SealError> {
    let pk = crypto_box::PublicKey::from(recipient.to_x25519());
    pk.seal(&mut rand_core::OsRng, plaintext)
        .map_err(|e| SealError(e.to_string()))
}

/// Opens a box sealed to `recipient`'s public key.
pub fn open(sealed: &[u8], recipient: &Keypair) -> Result<Vec<u8>, ProtocolError> {
    Opener::new(recipient).open(sealed)
}

/// Opens boxes sealed to one keypair, with libsodium's
/// `crypto_box_seal_open` (the same libsodium the sbot crate links for the
/// secret handshake). The X25519 secret and public key are derived once:
/// the public key costs a scalar multiplication, which a server would
/// otherwise pay on every request. libsodium picks its fastest X25519 for
/// the CPU at `sodium_init`; on the x86_64 it was measured on, it opens a
/// box in about three quarters of the CPU time of crypto_box with the
/// same cached keys (47.6 against 63.1 µs; `cargo run --release -p
/// peach-dyndns-server --example bench -- --crypto-only` prints both).
pub struct Opener {
    secret: sodiumoxide::crypto::box_::SecretKey,
    public: sodiumoxide::crypto::box_::PublicKey,
}

impl Opener {
    /// An opener for boxes sealed to `recipient`.
    pub fn new(recipient: &Keypair) -> Opener {
        // Idempotent and thread-safe; it only fails if the system has no
        // random source, which opening never uses (the choice of the
        // fastest implementations is made before that check).
        let _ = sodiumoxide::init();
        let secret = crypto_box::SecretKey::from(recipient.to_x25519_secret());
        let public = *secret.public_key().as_bytes();
        Opener {
            secret: sodiumoxide::crypto::box_::SecretKey(secret.to_bytes()),
            public: sodiumoxide::crypto::box_::PublicKey(public),
        }
    }

    /// Opens a sealed box: `ephemeral_pk ‖ XSalsa20-Poly1305(…)` with nonce
    /// BLAKE2b-24(ephemeral_pk ‖ recipient_pk), libsodium's
    /// `crypto_box_seal_open`. Boxes shorter than the key and the tag, and
    /// ephemeral keys of small order (an all-zero shared secret), are
    /// refused.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        sodiumoxide::crypto::sealedbox::open(sealed, &self.public, &self.secret)
            .map_err(|()| ProtocolError::Undecryptable)
    }
}

/// Signs nothing: seals an already signed update into an envelope.
pub fn seal_update(signed: &SignedUpdate, pub_key: &PublicKey) -> Result<Envelope, SealError> {
    let sealed = seal(&signed.to_json(), pub_key)?;
    Ok(Envelope {
        v: PROTOCOL_VERSION,
        sealed: B64.encode(sealed),
    })
}

/// Reads the envelope of a request body (size, JSON, version, base64),
/// giving the raw sealed box.
pub fn parse_envelope(body: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ProtocolError::TooLarge {
            size: body.len(),
            limit: MAX_BODY_BYTES,
        });
    }
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| ProtocolError::malformed(format!("envelope: {e}")))?;
    if envelope.v == 1 {
        return Err(ProtocolError::malformed(
            "protocol v1 is no longer accepted (it did not bind an update to one pub): \
             update peach-dyndns-daemon to a version that speaks v2",
        ));
    }
    if envelope.v != PROTOCOL_VERSION {
        return Err(ProtocolError::malformed(format!(
            "unknown protocol version v={} (this server speaks v={PROTOCOL_VERSION})",
            envelope.v
        )));
    }
    B64.decode(envelope.sealed.as_bytes())
        .map_err(|_| ProtocolError::malformed("`sealed` is not standard base64 with padding"))
}

/// The server's whole reading of a request body, in the design's order:
/// size → parse → open seal → verify signature → strict parse of `msg`.
/// The checks that need configuration (domain, reserved names, addresses)
/// come after, in the server.
pub fn open_envelope(body: &[u8], pub_keypair: &Keypair) -> Result<VerifiedUpdate, ProtocolError> {
    open_envelope_with(body, &Opener::new(pub_keypair))
}

/// [`open_envelope`] with an [`Opener`] made once (what a server does).
pub fn open_envelope_with(body: &[u8], opener: &Opener) -> Result<VerifiedUpdate, ProtocolError> {
    let sealed = parse_envelope(body)?;
    let plaintext = opener.open(&sealed)?;
    verify_signed(&plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn seal_open_round_trip() {
        let pubkey = Keypair::generate();
        let sealed = seal(b"hello", &pubkey.public()).expect("seal");
        assert_eq!(sealed.len(), 5 + 48, "32-byte key + 16-byte tag");
        assert_eq!(open(&sealed, &pubkey), Ok(b"hello".to_vec()));
        let other = Keypair::generate();
        assert_eq!(open(&sealed, &other), Err(ProtocolError::Undecryptable));
        // crypto_box's own unseal agrees with ours.
        let sk = crypto_box::SecretKey::from(pubkey.to_x25519_secret());
        assert_eq!(sk.unseal(&sealed).ok(), Some(b"hello".to_vec()));
        for short in [&sealed[..0], &sealed[..31], &sealed[..32], &sealed[..47]] {
            assert_eq!(open(short, &pubkey), Err(ProtocolError::Undecryptable));
        }
        // An empty plaintext is a valid box (key and tag only).
        let empty = seal(b"", &pubkey.public()).expect("seal");
        assert_eq!(open(&empty, &pubkey), Ok(Vec::new()));
    }

    #[test]
    fn boxes_from_small_order_ephemeral_keys_are_refused() {
        use blake2::digest::consts::U24;
        use blake2::{Blake2b, Digest as _};
        use crypto_box::aead::Aead as _;
        // The point u = 0 (of order 2): every secret's X25519 with it is
        // all zeros, so anyone can make a box that opens under any pub's
        // key without knowing it. crypto_box's pure-Rust unseal takes it;
        // libsodium refuses a small-order key.
        let low_point = [0u8; 32];
        let pubkey = Keypair::generate();
        let recipient = crypto_box::PublicKey::from(pubkey.public().to_x25519());
        let low = crypto_box::PublicKey::from(low_point);
        let anyone = crypto_box::SecretKey::from([7u8; 32]);
        let mut hasher = Blake2b::<U24>::new();
        hasher.update(low.as_bytes());
        hasher.update(recipient.as_bytes());
        let nonce = hasher.finalize();
        let ciphertext = crypto_box::SalsaBox::new(&low, &anyone)
            .encrypt(&nonce, &b"forged"[..])
            .expect("encrypt");
        let mut sealed = low_point.to_vec();
        sealed.extend_from_slice(&ciphertext);
        let pure_rust = crypto_box::SecretKey::from(pubkey.to_x25519_secret()).unseal(&sealed);
        assert_eq!(
            pure_rust.ok(),
            Some(b"forged".to_vec()),
            "the forgery is real"
        );
        assert_eq!(open(&sealed, &pubkey), Err(ProtocolError::Undecryptable));
    }

    #[test]
    fn envelope_errors() {
        let cases: [(&[u8], ErrorCode); 6] = [
            (br#"{"v":1,"sealed":"AAAA"}"#, ErrorCode::Malformed),
            (br#"{"v":3,"sealed":"AAAA"}"#, ErrorCode::Malformed),
            (br#"{"v":2,"sealed":"***"}"#, ErrorCode::Malformed),
            (br#"{"v":2}"#, ErrorCode::Malformed),
            (br#"{"v":2,"sealed":"AAAA","x":1}"#, ErrorCode::Malformed),
            (&[b' '; MAX_BODY_BYTES + 1], ErrorCode::TooLarge),
        ];
        for (body, code) in cases {
            let err = parse_envelope(body).expect_err("bad envelope");
            assert_eq!(err.code(), code, "{err}");
        }
        let kp = Keypair::generate();
        let err = parse_envelope(br#"{"v":1,"sealed":"AAAA"}"#).expect_err("v1");
        assert!(
            err.to_string().contains("v1 is no longer accepted"),
            "{err}"
        );
        let err = open_envelope(br#"{"v":2,"sealed":"AAAA"}"#, &kp).expect_err("short box");
        assert_eq!(err.code(), ErrorCode::Undecryptable);
    }
}
