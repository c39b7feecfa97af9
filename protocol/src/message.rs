//! The update message, its signature, and verification.

use std::net::{Ipv4Addr, Ipv6Addr};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{canonical_bytes, parse_strict};
use crate::identity::{Keypair, PublicKey};
use crate::{rules, ProtocolError, SIGNING_PREFIX};

/// What the message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Set the name's records to the given addresses.
    Update,
    /// Delete the records and give the name up.
    Release,
    /// Set the name's ACME DNS-01 challenge TXT records (`txt`).
    AcmeSet,
    /// Remove the name's ACME challenge TXT records.
    AcmeClear,
}

impl Op {
    /// The op as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Update => "update",
            Op::Release => "release",
            Op::AcmeSet => "acme_set",
            Op::AcmeClear => "acme_clear",
        }
    }
}

/// The signed part of an update (`msg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMsg {
    /// What to do.
    pub op: Op,
    /// One DNS label inside `domain`.
    pub name: String,
    /// The pub's zone.
    pub domain: String,
    /// The id of the pub the message is for: binds it to one pub, so a
    /// message sealed to one pub can never be replayed at another.
    #[serde(rename = "pub")]
    pub pub_id: PublicKey,
    /// The IPv4 address for the A record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// The IPv6 address for the AAAA record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    /// The signer's SSB id.
    pub public_key: PublicKey,
    /// Strictly increasing per key; the replay protection.
    pub seq: u64,
    /// Hex SHA-256 of a dyndns2 token, registered with this update (only
    /// with `update`); `""` withdraws the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// The ACME DNS-01 values (only with `acme_set`): 1 or 2 strings of 43
    /// base64url characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txt: Option<Vec<String>>,
}

impl UpdateMsg {
    /// The message as a JSON value (absent optional fields omitted).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self)
            .expect("invariant: strings, integers and addresses always serialise to JSON")
    }

    /// The canonical bytes of the message.
    pub fn canonical(&self) -> Vec<u8> {
        canonical_bytes(&self.to_value())
            .expect("invariant: a serialised UpdateMsg holds no floats, so it has canonical bytes")
    }

    /// Signs the message with `keypair`. The caller sets `public_key` to the
    /// keypair's id; a mismatch produces a message that does not verify.
    pub fn sign(&self, keypair: &Keypair) -> SignedUpdate {
        sign_value(self.to_value(), keypair)
    }

    /// The field rules that need no server configuration: each op carries
    /// its own fields and no others (addresses and `token_sha256` only on
    /// `update`, `txt` only on `acme_set`), then a valid label, at least
    /// one address with `update`, a well-formed token hash, valid `txt`
    /// values.
    pub fn check_shape(&self) -> Result<(), ProtocolError> {
        let present = [
            ("ip", self.ip.is_some()),
            ("ip6", self.ip6.is_some()),
            ("token_sha256", self.token_sha256.is_some()),
            ("txt", self.txt.is_some()),
        ];
        let allowed: &[&str] = match self.op {
            Op::Update => &["ip", "ip6", "token_sha256"],
            Op::AcmeSet => &["txt"],
            Op::Release | Op::AcmeClear => &[],
        };
        if let Some((field, _)) = present
            .iter()
            .find(|(field, there)| *there && !allowed.contains(field))
        {
            return Err(ProtocolError::malformed(format!(
                "`{field}` does not belong to op {:?}",
                self.op.as_str()
            )));
        }
        if self.op == Op::Update && self.ip.is_none() && self.ip6.is_none() {
            return Err(ProtocolError::malformed(
                "an update needs at least one of `ip` and `ip6`",
            ));
        }
        if self.op == Op::AcmeSet && self.txt.is_none() {
            return Err(ProtocolError::malformed("`acme_set` needs `txt`"));
        }
        rules::check_label(&self.name)?;
        if let Some(token) = &self.token_sha256 {
            if !token.is_empty() {
                rules::check_token_hash(token)?;
            }
        }
        if let Some(txt) = &self.txt {
            rules::check_txt(txt)?;
        }
        Ok(())
    }
}

/// Signs a message given as JSON, whatever it holds (tests sign messages
/// a server must refuse after the signature checks; the fuzz targets in
/// `fuzz/` sign what the fuzzer makes). Not an API: clients sign an
/// [`UpdateMsg`] with [`UpdateMsg::sign`].
///
/// # Panics
///
/// When `msg` holds a float (canonical JSON has none).
#[doc(hidden)]
pub fn sign_value(msg: Value, keypair: &Keypair) -> SignedUpdate {
    let canonical =
        canonical_bytes(&msg).expect("invariant: a message built in this crate holds no floats");
    let signature = keypair.signing_key().sign(&signing_bytes(&canonical));
    SignedUpdate {
        msg,
        signature: format!("{}.sig.ed25519", B64.encode(signature.to_bytes())),
    }
}

/// The bytes that are signed: the domain-separation prefix and the
/// canonical message.
pub fn signing_bytes(canonical: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SIGNING_PREFIX.len() + canonical.len());
    bytes.extend_from_slice(SIGNING_PREFIX);
    bytes.extend_from_slice(canonical);
    bytes
}

/// A message with its signature: what is sealed to the pub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedUpdate {
    /// The message exactly as signed (kept as JSON so it round-trips).
    pub msg: Value,
    /// `<base64 of 64 bytes>.sig.ed25519`.
    pub signature: String,
}

impl SignedUpdate {
    /// UTF-8 JSON, `{"msg":…,"signature":…}`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("invariant: a JSON value and a string always serialise")
    }
}

/// A message whose signature has been checked and whose fields have been
/// parsed strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUpdate {
    /// The message.
    pub msg: UpdateMsg,
}

/// Parses a signed update, verifies the signature over the canonical form of
/// `msg` as it arrived (every field of it), and only then parses `msg`
/// strictly and checks its shape ([`UpdateMsg::check_shape`]).
pub fn verify_signed(json: &[u8]) -> Result<VerifiedUpdate, ProtocolError> {
    let outer = parse_strict(json)?;
    let Value::Object(mut outer) = outer else {
        return Err(ProtocolError::malformed(
            "the signed update is not a JSON object",
        ));
    };
    if let Some(extra) = outer.keys().find(|k| *k != "msg" && *k != "signature") {
        return Err(ProtocolError::malformed(format!(
            "unknown field {extra:?} in the signed update"
        )));
    }
    let msg = outer
        .remove("msg")
        .ok_or_else(|| ProtocolError::malformed("missing field `msg`"))?;
    let signature = match outer.remove("signature") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(ProtocolError::malformed("`signature` is not a string")),
        None => return Err(ProtocolError::malformed("missing field `signature`")),
    };
    let key_text = match msg.get("public_key") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ProtocolError::malformed("`msg.public_key` is not a string")),
        None if msg.is_object() => {
            return Err(ProtocolError::malformed("missing field `msg.public_key`"))
        }
        None => return Err(ProtocolError::malformed("`msg` is not a JSON object")),
    };
    let key: PublicKey = key_text
        .parse()
        .map_err(|e| ProtocolError::malformed(format!("`msg.public_key`: {e}")))?;
    let signature = parse_signature(&signature)?;
    let canonical = canonical_bytes(&msg)?;
    key.verifying_key()
        .verify_strict(&signing_bytes(&canonical), &signature)
        .map_err(|_| ProtocolError::BadSignature {
            public_key: key_text.clone(),
        })?;
    // An absent field is left out, never `null` (serde would read a null
    // as absent, so two readers could disagree about the fields of an op).
    if let Some((field, _)) = msg
        .as_object()
        .and_then(|m| m.iter().find(|(_, v)| v.is_null()))
    {
        return Err(ProtocolError::malformed(format!(
            "`msg.{field}` is null: leave an absent field out"
        )));
    }
    let msg: UpdateMsg =
        serde_json::from_value(msg).map_err(|e| ProtocolError::malformed(format!("`msg`: {e}")))?;
    msg.check_shape()?;
    Ok(VerifiedUpdate { msg })
}

pub(crate) fn parse_signature(text: &str) -> Result<Signature, ProtocolError> {
    let b64 = text
        .strip_suffix(".sig.ed25519")
        .ok_or_else(|| ProtocolError::malformed("`signature` does not end in .sig.ed25519"))?;
    let raw = B64
        .decode(b64)
        .map_err(|_| ProtocolError::malformed("`signature` is not standard base64"))?;
    let bytes: [u8; 64] = raw
        .as_slice()
        .try_into()
        .map_err(|_| ProtocolError::malformed("`signature` is not 64 bytes"))?;
    Ok(Signature::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn sample(kp: &Keypair) -> UpdateMsg {
        UpdateMsg {
            op: Op::Update,
            name: "eb4890".into(),
            domain: "peach.dinosaur.is".into(),
            ip: Some(Ipv4Addr::new(24, 12, 12, 12)),
            ip6: None,
            pub_id: Keypair::from_seed(&[9; 32]).public(),
            public_key: kp.public(),
            seq: 7,
            token_sha256: None,
            txt: None,
        }
    }

    #[test]
    fn sign_then_verify() {
        let kp = Keypair::generate();
        let msg = sample(&kp);
        let signed = msg.sign(&kp);
        assert_eq!(verify_signed(&signed.to_json()).map(|v| v.msg), Ok(msg));
    }

    #[test]
    fn an_unknown_field_is_malformed_after_the_signature_checks() {
        let kp = Keypair::generate();
        let mut value = sample(&kp).to_value();
        value["extra"] = Value::from(1);
        let signed = sign_value(value, &kp);
        let err = verify_signed(&signed.to_json()).expect_err("unknown field");
        assert_eq!(err.code(), ErrorCode::Malformed);
        assert!(err.to_string().contains("extra"), "{err}");
    }

    #[test]
    fn a_changed_field_breaks_the_signature() {
        let kp = Keypair::generate();
        let mut signed = sample(&kp).sign(&kp);
        signed.msg["ip"] = Value::from("24.12.12.13");
        let err = verify_signed(&signed.to_json()).expect_err("tampered");
        assert_eq!(err.code(), ErrorCode::BadSignature);
    }

    #[test]
    fn a_signature_by_another_key_does_not_verify() {
        let kp = Keypair::generate();
        let other = Keypair::generate();
        let signed = sample(&kp).sign(&other);
        let err = verify_signed(&signed.to_json()).expect_err("wrong signer");
        assert_eq!(err.code(), ErrorCode::BadSignature);
    }

    #[test]
    fn update_without_addresses_is_malformed() {
        let kp = Keypair::generate();
        let mut msg = sample(&kp);
        msg.ip = None;
        let err = verify_signed(&msg.sign(&kp).to_json()).expect_err("no address");
        assert_eq!(err.code(), ErrorCode::Malformed);
        msg.op = Op::Release;
        assert!(verify_signed(&msg.sign(&kp).to_json()).is_ok());
    }

    #[test]
    fn each_op_carries_only_its_own_fields() {
        let kp = Keypair::generate();
        let txt = vec!["LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0".to_string()];
        let code = |msg: &UpdateMsg| {
            verify_signed(&msg.sign(&kp).to_json())
                .err()
                .map(|e| e.code())
        };
        let mut msg = sample(&kp);
        msg.txt = Some(txt.clone());
        assert_eq!(code(&msg), Some(ErrorCode::Malformed), "txt on update");
        for op in [Op::Release, Op::AcmeClear, Op::AcmeSet] {
            let mut msg = sample(&kp);
            msg.op = op;
            msg.txt = (op == Op::AcmeSet).then(|| txt.clone());
            assert_eq!(code(&msg), Some(ErrorCode::Malformed), "ip on {op:?}");
            msg.ip = None;
            assert_eq!(code(&msg), None, "{op:?} with its own fields");
            msg.token_sha256 = Some(String::new());
            assert_eq!(code(&msg), Some(ErrorCode::Malformed), "token on {op:?}");
        }
        let mut msg = sample(&kp);
        msg.op = Op::AcmeSet;
        msg.ip = None;
        assert_eq!(
            code(&msg),
            Some(ErrorCode::Malformed),
            "acme_set without txt"
        );
        msg.txt = Some(vec!["short".into()]);
        assert_eq!(code(&msg), Some(ErrorCode::InvalidTxt));
        msg.txt = Some(vec![txt[0].clone(); 3]);
        assert_eq!(code(&msg), Some(ErrorCode::InvalidTxt));
        // An empty token withdraws the token: it is well formed.
        let mut msg = sample(&kp);
        msg.token_sha256 = Some(String::new());
        assert_eq!(code(&msg), None);
        msg.token_sha256 = Some("ABC".into());
        assert_eq!(code(&msg), Some(ErrorCode::Malformed));
    }

    #[test]
    fn a_null_field_is_malformed_even_when_signed() {
        let kp = Keypair::generate();
        for field in ["ip6", "txt", "token_sha256"] {
            let mut value = sample(&kp).to_value();
            value[field] = Value::Null;
            let signed = sign_value(value, &kp);
            let err = verify_signed(&signed.to_json()).expect_err("null");
            assert_eq!(err.code(), ErrorCode::Malformed, "{field}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn missing_and_wrong_typed_fields_are_malformed() {
        for bad in [
            &br#"{"signature":"x"}"#[..],
            br#"{"msg":{},"signature":"x"}"#,
            br#"{"msg":{"public_key":1},"signature":"x"}"#,
            br#"{"msg":[],"signature":"x"}"#,
            br#"{"msg":{"public_key":"@x.ed25519"},"signature":"x"}"#,
            br#"[]"#,
            b"not json",
        ] {
            let err = verify_signed(bad).expect_err("bad");
            assert_eq!(
                err.code(),
                ErrorCode::Malformed,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
