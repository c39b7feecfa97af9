//! SSB identities: `@<base64 of 32 bytes>.ed25519`, keypairs, and the secret
//! file that ssb-server (`~/.ssb/secret`) and go-sbot (`~/.ssb-go/secret`)
//! keep.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Deserialize;

/// Errors reading an SSB identity or secret file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// An `@….ed25519` id that is not one.
    #[error("{id:?} is not an SSB ed25519 id (@<base64 of 32 bytes>.ed25519): {reason}")]
    BadId {
        /// The text as given (cut to 80 characters).
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The secret file is not JSON of the expected shape.
    #[error("the secret file is not valid: {0}")]
    BadSecret(String),
    /// The secret file is readable or writable by other users.
    #[error("the secret file has mode {mode:04o}: other users can read or write it; run `chmod 600` on it")]
    InsecureMode {
        /// The file's permission bits.
        mode: u32,
    },
}

/// An SSB public identity (an ed25519 public key).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The ed25519 verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The key from 32 raw bytes; fails on bytes that are not a curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, IdentityError> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| IdentityError::BadId {
                id: B64.encode(bytes),
                reason: "the key is not a valid ed25519 point",
            })
    }

    /// The key's X25519 (Montgomery) form, what sealed boxes are sealed to
    /// (libsodium's `crypto_sign_ed25519_pk_to_curve25519`).
    pub fn to_x25519(&self) -> [u8; 32] {
        self.0.to_montgomery().to_bytes()
    }
}

impl From<VerifyingKey> for PublicKey {
    fn from(key: VerifyingKey) -> PublicKey {
        PublicKey(key)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}.ed25519", B64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = IdentityError;

    /// Parses an SSB id, `@<base64>.ed25519`. The `@` is required: it is
    /// the id format of DESIGN.md, of every id this project writes, and of
    /// every id ssb-server answers with (`whoami`, message authors,
    /// `friends.*`, invite codes). The one place an SSB key appears without
    /// it, the `public` field of a secret file, is read by
    /// [`parse_secret_file`] itself.
    fn from_str(s: &str) -> Result<PublicKey, IdentityError> {
        let body = s
            .strip_prefix('@')
            .ok_or_else(|| bad_id(s, "it does not start with @"))?;
        parse_bare_key(body).map_err(|reason| bad_id(s, reason))
    }
}

/// Reads `<base64 of 32 bytes>.ed25519`, an SSB key without the `@` of an
/// id (the `public` field of a secret file), or says what is wrong.
fn parse_bare_key(text: &str) -> Result<PublicKey, &'static str> {
    let b64 = text
        .strip_suffix(".ed25519")
        .ok_or("it does not end in .ed25519")?;
    let raw = B64
        .decode(b64)
        .map_err(|_| "the key is not standard base64 with padding")?;
    let bytes: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| "the key is not 32 bytes long")?;
    VerifyingKey::from_bytes(&bytes)
        .map(PublicKey)
        .map_err(|_| "the key is not a valid ed25519 point")
}

/// An [`IdentityError::BadId`] for `id` (cut to 80 characters).
fn bad_id(id: &str, reason: &'static str) -> IdentityError {
    IdentityError::BadId {
        id: id.chars().take(80).collect(),
        reason,
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An SSB keypair: the signing key and its public identity.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// A fresh random keypair (for tests and throwaway demo identities).
    pub fn generate() -> Keypair {
        Keypair {
            signing: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// A keypair from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The ed25519 signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The public identity.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// The SSB id, `@<base64>.ed25519`.
    pub fn id(&self) -> String {
        self.public().to_string()
    }

    /// The X25519 secret that opens boxes sealed to [`PublicKey::to_x25519`]
    /// (libsodium's `crypto_sign_ed25519_sk_to_curve25519`, before clamping,
    /// which the X25519 function applies itself).
    pub fn to_x25519_secret(&self) -> [u8; 32] {
        self.signing.to_scalar_bytes()
    }

    /// The secret file in ssb-server's format (`#` comment lines around
    /// JSON). Callers write it with mode 0600.
    pub fn to_secret_file(&self) -> String {
        let public = B64.encode(self.public().as_bytes());
        let private = B64.encode(self.signing.to_keypair_bytes());
        format!(
            "# this is your SECRET name.\n# never show it to anyone.\n\n\
             {{\n  \"curve\": \"ed25519\",\n  \"public\": \"{public}.ed25519\",\n  \
             \"private\": \"{private}.ed25519\",\n  \"id\": \"@{public}.ed25519\"\n}}\n"
        )
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "Keypair({})", self.public())
    }
}

#[derive(Deserialize)]
struct SecretJson {
    curve: String,
    public: String,
    private: String,
    #[serde(default)]
    id: Option<String>,
}

/// Parses a secret file's text: ssb-server's form (JSON with `#` comment
/// lines around it) or go-sbot's (plain JSON). Checks that the curve is
/// ed25519, that `private` is seed‖public, and that `public` and `id` agree
/// with the seed.
pub fn parse_secret_file(text: &str) -> Result<Keypair, IdentityError> {
    let json: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let secret: SecretJson = serde_json::from_str(&json)
        .map_err(|e| IdentityError::BadSecret(format!("not the expected JSON: {e}")))?;
    if secret.curve != "ed25519" {
        return Err(IdentityError::BadSecret(format!(
            "curve is {:?}, only ed25519 is supported",
            secret.curve
        )));
    }
    let private_b64 = secret
        .private
        .strip_suffix(".ed25519")
        .ok_or_else(|| IdentityError::BadSecret("`private` does not end in .ed25519".into()))?;
    let private = B64
        .decode(private_b64)
        .map_err(|_| IdentityError::BadSecret("`private` is not base64".into()))?;
    let private: [u8; 64] = private.as_slice().try_into().map_err(|_| {
        IdentityError::BadSecret("`private` is not 64 bytes (seed and public key)".into())
    })?;
    let signing = SigningKey::from_keypair_bytes(&private).map_err(|_| {
        IdentityError::BadSecret(
            "`private` holds a public half that does not match its seed".into(),
        )
    })?;
    let keypair = Keypair { signing };
    // ssb-keys writes `public` without the `@` of an id.
    let public = parse_bare_key(&secret.public).map_err(|reason| {
        IdentityError::BadSecret(format!("`public` is not <base64>.ed25519: {reason}"))
    })?;
    if public != keypair.public() {
        return Err(IdentityError::BadSecret(
            "`public` does not match the private key".into(),
        ));
    }
    if let Some(id) = &secret.id {
        let id_key: PublicKey = id.parse()?;
        if id_key != keypair.public() {
            return Err(IdentityError::BadSecret(
                "`id` does not match the private key".into(),
            ));
        }
    }
    Ok(keypair)
}

/// Refuses a secret file whose permission bits let group or others read or
/// write it. The caller reads the mode (this crate does no I/O).
pub fn check_secret_mode(mode: u32) -> Result<(), IdentityError> {
    if mode & 0o077 != 0 {
        return Err(IdentityError::InsecureMode {
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips() {
        let kp = Keypair::generate();
        let id = kp.id();
        assert!(id.starts_with('@') && id.ends_with(".ed25519"));
        assert_eq!(id.parse::<PublicKey>(), Ok(kp.public()));
    }

    #[test]
    fn bad_ids_say_why() {
        for (id, why) in [
            ("@abc.sha256", "does not end"),
            ("@!!!.ed25519", "base64"),
            ("@AAAA.ed25519", "32 bytes"),
        ] {
            let err = id.parse::<PublicKey>().expect_err(id).to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    /// A secret made by ssb-server 16.0.1 (`~/.ssb/secret`), used only here.
    const SSB_SERVER_PRIVATE: &str = "J/Tkzke24j2RsLIpemPsOusmKP/Ps6OibEAuBm5CI8sF+nDo7Ja0FmGCheGlf6MRg9spJkGrdIN7wgTv4Fkr7g==.ed25519";
    /// Its id.
    const SSB_SERVER_ID: &str = "@Bfpw6OyWtBZhgoXhpX+jEYPbKSZBq3SDe8IE7+BZK+4=.ed25519";

    /// ssb-server's secret file around a given `private` field.
    fn ssb_server_secret(private: &str) -> String {
        format!(
            "# this is your SECRET name.\n\n{{\n  \"curve\": \"ed25519\",\n  \
             \"public\": \"{}\",\n  \"private\": \"{private}\",\n  \"id\": \"{SSB_SERVER_ID}\"\n}}\n",
            &SSB_SERVER_ID[1..]
        )
    }

    #[test]
    fn ssb_secret_gives_its_id() {
        let kp = parse_secret_file(&ssb_server_secret(SSB_SERVER_PRIVATE)).expect("valid secret");
        assert_eq!(kp.id(), SSB_SERVER_ID);
        assert_eq!(
            SSB_SERVER_ID.parse::<PublicKey>().expect("valid id"),
            kp.public()
        );
    }

    #[test]
    fn bad_ids_are_refused() {
        for bad in [
            "",
            // The `public` field of a secret file is not an id: no `@`.
            "Bfpw6OyWtBZhgoXhpX+jEYPbKSZBq3SDe8IE7+BZK+4=.ed25519",
            "@Bfpw6OyWtBZhgoXhpX+jEYPbKSZBq3SDe8IE7+BZK+4=",
            "@not base64!.ed25519",
            "@AAAA.ed25519",
            "%Bfpw6OyWtBZhgoXhpX+jEYPbKSZBq3SDe8IE7+BZK+4=.sha256",
        ] {
            assert!(
                matches!(bad.parse::<PublicKey>(), Err(IdentityError::BadId { .. })),
                "{bad:?}"
            );
        }
        let err = SSB_SERVER_ID[1..]
            .parse::<PublicKey>()
            .expect_err("no @")
            .to_string();
        assert!(err.contains("does not start with @"), "{err}");
    }

    #[test]
    fn bad_secrets_are_refused() {
        // Right length, but the public half is someone else's.
        let mut bytes = B64
            .decode(SSB_SERVER_PRIVATE.trim_end_matches(".ed25519"))
            .expect("base64");
        bytes[40] ^= 1;
        let tampered = format!("{}.ed25519", B64.encode(&bytes));
        for bad in [
            "",
            SSB_SERVER_PRIVATE.trim_end_matches(".ed25519"),
            "AAAA.ed25519",
            tampered.as_str(),
        ] {
            let err = parse_secret_file(&ssb_server_secret(bad)).expect_err(bad);
            assert!(matches!(err, IdentityError::BadSecret(_)), "{err}");
            // The error never repeats the key.
            assert!(!err.to_string().contains("J/Tkzke24j2"), "{err}");
        }
    }

    #[test]
    fn secret_file_public_is_a_bare_key() {
        let kp = Keypair::generate();
        let id = kp.id();
        let public = format!("\"public\": \"{}\"", &id[1..]);
        for bad in [
            format!("\"public\": \"{id}\""),
            "\"public\": \"AAAA.ed25519\"".into(),
        ] {
            let text = kp.to_secret_file().replace(&public, &bad);
            let err = parse_secret_file(&text).expect_err(&bad);
            assert!(err.to_string().contains("`public`"), "{err}");
        }
    }

    #[test]
    fn secret_file_round_trips_in_both_forms() {
        let kp = Keypair::generate();
        let text = kp.to_secret_file();
        assert_eq!(parse_secret_file(&text).map(|k| k.id()), Ok(kp.id()));
        let plain: String = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(parse_secret_file(&plain).map(|k| k.id()), Ok(kp.id()));
    }

    #[test]
    fn secret_file_with_mismatched_id_is_refused() {
        let kp = Keypair::generate();
        let other = Keypair::generate();
        let text = kp.to_secret_file().replace(
            &format!("\"id\": \"{}\"", kp.id()),
            &format!("\"id\": \"{}\"", other.id()),
        );
        let err = parse_secret_file(&text).expect_err("mismatched id");
        assert!(err.to_string().contains("`id` does not match"), "{err}");
    }

    #[test]
    fn secret_modes() {
        assert!(check_secret_mode(0o100600).is_ok());
        assert!(check_secret_mode(0o400).is_ok());
        let err = check_secret_mode(0o100644).expect_err("world readable");
        assert!(err.to_string().contains("0644"), "{err}");
        assert!(check_secret_mode(0o620).is_err());
    }
}
