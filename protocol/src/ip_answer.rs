//! The pub's signed answer to `GET /ip?nonce=…`.
//!
//! A Pi asks its pub which address its requests come from. Believed
//! unsigned, that answer lets anyone on the plain-HTTP path (or a hostile
//! pub) choose the address the Pi then signs. So the pub signs
//! `{"ip","nonce","pub"}` with its key, over a nonce the Pi chose fresh,
//! and the Pi believes the answer only when the signature verifies against
//! the pub it is about to update.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::canonical::{canonical_bytes, parse_strict};
use crate::identity::{Keypair, PublicKey};
use crate::message::parse_signature;
use crate::{ProtocolError, IP_SIGNING_PREFIX};

/// Length of a nonce: 32 hex digits (128 bits).
pub const NONCE_LEN: usize = 32;

/// The signed statement: `{"ip","nonce","pub","signature"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpAnswer {
    /// The caller's address as the pub saw it.
    pub ip: IpAddr,
    /// The caller's nonce, echoed.
    pub nonce: String,
    /// The pub's id.
    #[serde(rename = "pub")]
    pub pub_id: PublicKey,
    /// `<base64 of 64 bytes>.sig.ed25519` by the pub's key.
    pub signature: String,
}

/// Checks a nonce: exactly 32 hex digits (either case).
pub fn check_nonce(nonce: &str) -> Result<(), ProtocolError> {
    if nonce.len() == NONCE_LEN && nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ProtocolError::malformed("`nonce` is not 32 hex digits"))
    }
}

/// A nonce from 16 random bytes the caller drew (this crate has no I/O).
pub fn nonce_from(random: [u8; 16]) -> String {
    hex::encode(random)
}

/// The bytes the pub signs: the `/ip` prefix and the canonical statement.
pub fn signing_bytes(ip: &str, nonce: &str, pub_id: &str) -> Vec<u8> {
    let canonical = canonical_bytes(&json!({"ip": ip, "nonce": nonce, "pub": pub_id}))
        .expect("invariant: three strings always have canonical bytes");
    let mut bytes = Vec::with_capacity(IP_SIGNING_PREFIX.len() + canonical.len());
    bytes.extend_from_slice(IP_SIGNING_PREFIX);
    bytes.extend_from_slice(&canonical);
    bytes
}

/// The pub's side: signs `ip` for the caller's `nonce`.
pub fn sign(ip: IpAddr, nonce: &str, keypair: &Keypair) -> Result<IpAnswer, ProtocolError> {
    check_nonce(nonce)?;
    let pub_id = keypair.public();
    let signature =
        keypair
            .signing_key()
            .sign(&signing_bytes(&ip.to_string(), nonce, &pub_id.to_string()));
    Ok(IpAnswer {
        ip,
        nonce: nonce.to_string(),
        pub_id,
        signature: format!("{}.sig.ed25519", B64.encode(signature.to_bytes())),
    })
}

/// The Pi's side: reads an answer body strictly, and gives its address
/// only when it is signed by `expected_pub` over `expected_nonce`.
/// Anything else (unsigned `{"ip":…}`, another pub's key, an old nonce, a
/// changed address) is refused.
pub fn verify(
    body: &[u8],
    expected_pub: &PublicKey,
    expected_nonce: &str,
) -> Result<IpAddr, ProtocolError> {
    let value = parse_strict(body)?;
    let Value::Object(map) = &value else {
        return Err(ProtocolError::malformed(
            "the /ip answer is not a JSON object",
        ));
    };
    let text = |key: &str| match map.get(key) {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(ProtocolError::malformed(format!("`{key}` is not a string"))),
        None => Err(ProtocolError::malformed(format!(
            "the /ip answer has no `{key}` (an unsigned answer?)"
        ))),
    };
    let (ip, nonce, pub_id, signature) = (
        text("ip")?,
        text("nonce")?,
        text("pub")?,
        text("signature")?,
    );
    if map.len() != 4 {
        return Err(ProtocolError::malformed("unknown fields in the /ip answer"));
    }
    let claimed: PublicKey = pub_id
        .parse()
        .map_err(|e| ProtocolError::malformed(format!("`pub`: {e}")))?;
    if &claimed != expected_pub {
        return Err(ProtocolError::WrongPub {
            expected: expected_pub.to_string(),
            got: claimed.to_string(),
        });
    }
    if nonce != expected_nonce {
        return Err(ProtocolError::malformed(
            "the /ip answer is for another nonce (replayed?)",
        ));
    }
    let signature = parse_signature(signature)?;
    expected_pub
        .verifying_key()
        .verify_strict(&signing_bytes(ip, nonce, pub_id), &signature)
        .map_err(|_| ProtocolError::BadSignature {
            public_key: pub_id.to_string(),
        })?;
    ip.parse()
        .map_err(|_| ProtocolError::malformed("`ip` is not an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn sign_then_verify_and_every_tamper_is_refused() {
        let pub_kp = Keypair::from_seed(&[3; 32]);
        let nonce = nonce_from([7; 16]);
        let ip: IpAddr = "24.12.12.12".parse().expect("ip");
        let answer = sign(ip, &nonce, &pub_kp).expect("sign");
        let body = serde_json::to_vec(&answer).expect("json");
        assert_eq!(verify(&body, &pub_kp.public(), &nonce), Ok(ip));

        let other = Keypair::from_seed(&[4; 32]);
        let code = |body: &[u8], key: &PublicKey, nonce: &str| {
            verify(body, key, nonce).map_err(|e| e.code())
        };
        assert_eq!(
            code(&body, &other.public(), &nonce),
            Err(ErrorCode::WrongPub)
        );
        assert_eq!(
            code(&body, &pub_kp.public(), &nonce_from([8; 16])),
            Err(ErrorCode::Malformed)
        );
        let mut forged = answer.clone();
        forged.ip = "6.6.6.6".parse().expect("ip");
        let forged = serde_json::to_vec(&forged).expect("json");
        assert_eq!(
            code(&forged, &pub_kp.public(), &nonce),
            Err(ErrorCode::BadSignature)
        );
        // Signed by another key that claims to be the pub.
        let mut by_other = sign(ip, &nonce, &other).expect("sign");
        by_other.pub_id = pub_kp.public();
        let by_other = serde_json::to_vec(&by_other).expect("json");
        assert_eq!(
            code(&by_other, &pub_kp.public(), &nonce),
            Err(ErrorCode::BadSignature)
        );
        assert_eq!(
            code(br#"{"ip":"24.12.12.12"}"#, &pub_kp.public(), &nonce),
            Err(ErrorCode::Malformed)
        );
        let mut extra: Value = serde_json::from_slice(&body).expect("json");
        extra["more"] = Value::from(1);
        assert_eq!(
            code(
                &serde_json::to_vec(&extra).expect("json"),
                &pub_kp.public(),
                &nonce
            ),
            Err(ErrorCode::Malformed)
        );
        assert!(sign(ip, "short", &pub_kp).is_err());
    }
}
