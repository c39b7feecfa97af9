//! SSB identities: feed ids (`@<base64>.ed25519`), the network key, and
//! reading the `private` field of an SSB secret file.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::SbotError;

/// The network key of the main SSB network ("shs key" / "caps.shs"): the
/// one every ssb-server and go-sbot uses unless configured otherwise.
/// Base64 `1KHLiKZvAvjbY1ziZEHMXawbCEIM6qwjCDm3VYRan/s=`.
pub const MAIN_NETWORK_KEY: [u8; 32] = [
    0xd4, 0xa1, 0xcb, 0x88, 0xa6, 0x6f, 0x02, 0xf8, 0xdb, 0x63, 0x5c, 0xe2, 0x64, 0x41, 0xcc, 0x5d,
    0xac, 0x1b, 0x08, 0x42, 0x0c, 0xea, 0xac, 0x23, 0x08, 0x39, 0xb7, 0x55, 0x84, 0x5a, 0x9f, 0xfb,
];

/// Suffix of ed25519 keys and feed ids.
const ED25519_SUFFIX: &str = ".ed25519";

/// The feed id of a public key: `@` + base64 + `.ed25519`.
pub fn feed_id(key: &VerifyingKey) -> String {
    format!("@{}{ED25519_SUFFIX}", STANDARD.encode(key.as_bytes()))
}

/// Reads a feed id (`@<base64 of 32 bytes>.ed25519`) into a public key.
pub fn parse_feed_id(id: &str) -> Result<VerifyingKey, SbotError> {
    let invalid = |reason: &str| SbotError::InvalidId {
        id: id.to_owned(),
        reason: reason.to_owned(),
    };
    let b64 = id
        .strip_prefix('@')
        .and_then(|rest| rest.strip_suffix(ED25519_SUFFIX))
        .ok_or_else(|| invalid("expected @<base64>.ed25519"))?;
    let bytes = STANDARD
        .decode(b64)
        .map_err(|e| invalid(&format!("bad base64: {e}")))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| invalid("the key is not 32 bytes"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| invalid("not an ed25519 public key"))
}

/// Reads the `private` field of an SSB secret file
/// (`<base64 of 64 bytes: seed || public>.ed25519`) into a signing key,
/// checking that the public half matches the seed.
pub fn signing_key_from_ssb_private(private: &str) -> Result<SigningKey, SbotError> {
    let invalid = |reason: String| SbotError::InvalidKey { reason };
    let b64 = private
        .strip_suffix(ED25519_SUFFIX)
        .ok_or_else(|| invalid("expected <base64>.ed25519".to_owned()))?;
    let bytes = STANDARD
        .decode(b64)
        .map_err(|e| invalid(format!("bad base64: {e}")))?;
    let bytes: [u8; 64] = bytes
        .try_into()
        .map_err(|_| invalid("the key is not 64 bytes (seed || public)".to_owned()))?;
    SigningKey::from_keypair_bytes(&bytes)
        .map_err(|_| invalid("the public half does not belong to the seed".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret made by ssb-server 16.0.1 (`~/.ssb/secret`), used only here.
    const PRIVATE: &str = "J/Tkzke24j2RsLIpemPsOusmKP/Ps6OibEAuBm5CI8sF+nDo7Ja0FmGCheGlf6MRg9spJkGrdIN7wgTv4Fkr7g==.ed25519";
    const ID: &str = "@Bfpw6OyWtBZhgoXhpX+jEYPbKSZBq3SDe8IE7+BZK+4=.ed25519";

    #[test]
    fn ssb_secret_gives_its_id() {
        let key = signing_key_from_ssb_private(PRIVATE).expect("valid secret");
        assert_eq!(feed_id(&key.verifying_key()), ID);
        assert_eq!(parse_feed_id(ID).expect("valid id"), key.verifying_key());
    }

    #[test]
    fn network_key_is_the_main_net() {
        assert_eq!(
            STANDARD.encode(MAIN_NETWORK_KEY),
            "1KHLiKZvAvjbY1ziZEHMXawbCEIM6qwjCDm3VYRan/s="
        );
    }

    #[test]
    fn bad_ids_are_refused() {
        for bad in [
            "",
            "Bfpw6OyWtBZhgoXhpX+jEYPbKSZBq3SDe8IE7+BZK+4=.ed25519",
            "@Bfpw6OyWtBZhgoXhpX+jEYPbKSZBq3SDe8IE7+BZK+4=",
            "@not base64!.ed25519",
            "@AAAA.ed25519",
            "%Bfpw6OyWtBZhgoXhpX+jEYPbKSZBq3SDe8IE7+BZK+4=.sha256",
        ] {
            assert!(
                matches!(parse_feed_id(bad), Err(SbotError::InvalidId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_secrets_are_refused() {
        // Right length, but the public half is someone else's.
        let mut bytes = STANDARD
            .decode(PRIVATE.trim_end_matches(ED25519_SUFFIX))
            .expect("base64");
        bytes[40] ^= 1;
        let tampered = format!("{}.ed25519", STANDARD.encode(&bytes));
        for bad in [
            "",
            PRIVATE.trim_end_matches(ED25519_SUFFIX),
            "AAAA.ed25519",
            tampered.as_str(),
        ] {
            let err = signing_key_from_ssb_private(bad).expect_err(bad);
            assert!(matches!(err, SbotError::InvalidKey { .. }));
            // The error never repeats the key.
            assert!(!err.to_string().contains("J/Tkzke24j2"));
        }
    }
}
