//! Strict JSON reading and the canonical bytes that are signed.
//!
//! Canonical form: object keys sorted bytewise, no insignificant whitespace,
//! integers in decimal, strings as UTF-8 with only `"`, `\` and control
//! characters escaped (Python's `json.dumps(msg, sort_keys=True,
//! separators=(",", ":"), ensure_ascii=False)`). Keys are sorted here
//! explicitly rather than trusting the map type, so the result does not
//! depend on which serde_json features some other crate turned on.
//!
//! A message is read with [`parse_strict`] before it is canonicalised:
//! duplicate keys and non-integer numbers are refused, because two readers
//! could disagree on what such a message says while agreeing that its
//! signature is valid.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::ProtocolError;

/// Reads JSON text into a [`Value`], refusing duplicate object keys and
/// numbers that are not integers.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, ProtocolError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = de
        .deserialize_any(StrictVisitor)
        .map_err(|e| ProtocolError::malformed(format!("not valid JSON: {e}")))?;
    de.end()
        .map_err(|e| ProtocolError::malformed(format!("trailing data after JSON: {e}")))?;
    Ok(value)
}

struct StrictVisitor;

struct Strict(Value);

impl<'de> de::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON without duplicate keys or fractional numbers")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Err(E::custom(format_args!(
            "the number {v} is not an integer (only integers are allowed)"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// The canonical bytes of a JSON value. Fails only on a number that is not
/// an integer, which [`parse_strict`] never produces.
pub fn canonical_bytes(value: &Value) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else {
                return Err(ProtocolError::malformed(format!(
                    "the number {n} is not an integer"
                )));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            // Bytewise order of the UTF-8 encoding, which is what Python's
            // sort_keys gives for the code points used in practice, and what
            // `str`'s `Ord` is.
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out)?;
                }
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A JSON string as Python's `json.dumps(..., ensure_ascii=False)` writes it.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        let v = parse_strict(text.as_bytes()).expect("valid");
        String::from_utf8(canonical_bytes(&v).expect("canonical")).expect("utf8")
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        assert_eq!(
            canon(r#" { "b" : 1 , "a" : [ true , null , -3 ], "c": {"z":"x","y":"é"} } "#),
            r#"{"a":[true,null,-3],"b":1,"c":{"y":"é","z":"x"}}"#
        );
    }

    #[test]
    fn escapes_like_python() {
        assert_eq!(
            canon(r#"{"k":"q\"b\\n\n\u0001\u007f\u2028"}"#),
            "{\"k\":\"q\\\"b\\\\n\\n\\u0001\u{7f}\u{2028}\"}"
        );
    }

    #[test]
    fn refuses_duplicates_floats_and_trailing_data() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1.5}"#,
            r#"{"a":1e3}"#,
            r#"{"a":1} x"#,
        ] {
            let err = parse_strict(bad.as_bytes()).expect_err(bad);
            assert_eq!(err.code(), crate::ErrorCode::Malformed, "{bad}");
        }
        let err = parse_strict(br#"{"x":{"a":1,"a":1}}"#).expect_err("nested duplicate");
        assert!(err.to_string().contains("duplicate key \"a\""), "{err}");
    }
}
