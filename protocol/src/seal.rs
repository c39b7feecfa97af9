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

/// Opens boxes sealed to one keypair. The X25519 secret and public key are
/// derived once: deriving the public key costs a scalar multiplication
/// (about 18 µs here), which a server would otherwise pay on every request.
pub struct Opener {
    secret: crypto_box::SecretKey,
    public: crypto_box::PublicKey,
}

impl Opener {
    /// An opener for boxes sealed to `recipient`.
    pub fn new(recipient: &Keypair) -> Opener {
        let secret = crypto_box::SecretKey::from(recipient.to_x25519_secret());
        let public = secret.public_key();
        Opener { secret, public }
    }

    /// Opens a sealed box: `ephemeral_pk ‖ XSalsa20-Poly1305(…)` with nonce
    /// BLAKE2b-24(ephemeral_pk ‖ recipient_pk), as libsodium's
    /// `crypto_box_seal_open`.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        use blake2::digest::consts::U24;
        use blake2::{Blake2b, Digest as _};
        use crypto_box::aead::Aead as _;
        const KEY: usize = 32;
        let Some((ephemeral, ciphertext)) = sealed.split_first_chunk::<KEY>() else {
            return Err(ProtocolError::Undecryptable);
        };
        if ciphertext.is_empty() {
            return Err(ProtocolError::Undecryptable);
        }
        let ephemeral = crypto_box::PublicKey::from(*ephemeral);
        let mut hasher = Blake2b::<U24>::new();
        hasher.update(ephemeral.as_bytes());
        hasher.update(self.public.as_bytes());
        let nonce = hasher.finalize();
        crypto_box::SalsaBox::new(&ephemeral, &self.secret)
            .decrypt(&nonce, ciphertext)
            .map_err(|_| ProtocolError::Undecryptable)
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
