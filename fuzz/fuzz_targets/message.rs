//! The signed message (`{"msg":…,"signature":…}`, the plaintext of the
//! seal): strict JSON, the signature over the canonical bytes, the strict
//! parse of `msg`. Random signatures never verify, so the target also signs
//! every object it is given as a `msg` (with its `public_key` set to the
//! signer) and checks the parse behind the signature: such a message is
//! never refused as `bad_signature`, and one that is accepted reads back
//! unchanged after the client's own signing.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use peach_dyndns_protocol::canonical::{canonical_bytes, parse_strict};
use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_protocol::message::{sign_value, verify_signed};
use peach_dyndns_protocol::ErrorCode;
use serde_json::Value;

static SIGNER: LazyLock<Keypair> = LazyLock::new(|| Keypair::from_seed(&[7; 32]));

fuzz_target!(|data: &[u8]| {
    // As it arrived.
    if let Ok(verified) = verify_signed(data) {
        assert!(verified.msg.check_shape().is_ok());
    }
    // Behind the signature: the input (or its `msg`) as a message we sign.
    let Ok(value) = parse_strict(data) else {
        return;
    };
    let mut msg = match value {
        Value::Object(mut outer) if outer.contains_key("msg") => outer.remove("msg"),
        other => Some(other),
    }
    .unwrap_or(Value::Null);
    let Some(fields) = msg.as_object_mut() else {
        return;
    };
    fields.insert("public_key".into(), Value::String(SIGNER.id()));
    if canonical_bytes(&msg).is_err() {
        return; // A float: refused before any signature (the first half).
    }
    match verify_signed(&sign_value(msg, &SIGNER).to_json()) {
        Ok(verified) => {
            let again = verify_signed(&verified.msg.sign(&SIGNER).to_json())
                .expect("a message we accepted, signed again, is accepted");
            assert_eq!(again.msg, verified.msg);
        }
        Err(e) => assert_ne!(e.code(), ErrorCode::BadSignature, "{e}"),
    }
});
