//! The vectors in `tests/data/protocol-vectors.json` were made with
//! libsodium (PyNaCl): these tests reproduce them byte for byte.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use peach_dyndns_protocol::identity::{parse_secret_file, Keypair, PublicKey};
use peach_dyndns_protocol::message::{signing_bytes, verify_signed, Op, UpdateMsg};
use peach_dyndns_protocol::{canonical, seal, ErrorCode};
use serde_json::Value;

fn vectors() -> Value {
    let text = include_str!("../data/protocol-vectors.json");
    serde_json::from_str(text).expect("vectors are JSON")
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector {key} is a string"))
}

fn client() -> Keypair {
    parse_secret_file(s(&vectors(), "client_secret_file")).expect("client secret parses")
}

fn pub_keypair() -> Keypair {
    let v = vectors();
    let text = serde_json::to_string(&v["pub_secret_json"]).expect("json");
    parse_secret_file(&text).expect("pub secret (go-sbot form) parses")
}

#[test]
fn secret_files_give_the_ids() {
    let v = vectors();
    assert_eq!(client().id(), s(&v, "client_id"));
    assert_eq!(pub_keypair().id(), s(&v, "pub_id"));
}

#[test]
fn x25519_conversion_matches_libsodium() {
    let v = vectors();
    assert_eq!(
        B64.encode(client().public().to_x25519()),
        s(&v, "client_x25519_public_b64")
    );
    let pubkp = pub_keypair();
    assert_eq!(
        B64.encode(pubkp.public().to_x25519()),
        s(&v, "pub_x25519_public_b64")
    );
    // libsodium clamps the converted secret; our scalar is unclamped, so
    // clamp it the same way before comparing.
    let mut secret = pubkp.to_x25519_secret();
    secret[0] &= 248;
    secret[31] &= 127;
    secret[31] |= 64;
    assert_eq!(B64.encode(secret), s(&v, "pub_x25519_secret_b64"));
}

#[test]
fn canonical_bytes_and_signing_bytes_are_exact() {
    let v = vectors();
    let canon = canonical::canonical_bytes(&v["msg"]).expect("canonical");
    assert_eq!(
        String::from_utf8(canon.clone()).expect("utf8"),
        s(&v, "canonical_msg")
    );
    assert_eq!(B64.encode(signing_bytes(&canon)), s(&v, "signed_bytes_b64"));
    let release = canonical::canonical_bytes(&v["release_msg"]).expect("canonical");
    assert_eq!(
        String::from_utf8(release).expect("utf8"),
        s(&v, "release_canonical")
    );
}

#[test]
fn signatures_are_reproduced_exactly() {
    // ed25519 signatures are deterministic, so ours must equal libsodium's.
    let v = vectors();
    let kp = client();
    let msg: UpdateMsg = serde_json::from_value(v["msg"].clone()).expect("msg parses");
    assert_eq!(msg.op, Op::Update);
    assert_eq!(msg.sign(&kp).signature, s(&v, "signature"));
    let release: UpdateMsg = serde_json::from_value(v["release_msg"].clone()).expect("release");
    assert_eq!(release.op, Op::Release);
    assert_eq!(release.sign(&kp).signature, s(&v, "release_signature"));
}

#[test]
fn the_given_sealed_box_opens_to_the_signed_json() {
    let v = vectors();
    let sealed = B64.decode(s(&v, "sealed_b64")).expect("b64");
    let opened = seal::open(&sealed, &pub_keypair()).expect("opens");
    assert_eq!(
        String::from_utf8(opened).expect("utf8"),
        s(&v, "signed_json")
    );
}

#[test]
fn the_given_envelope_opens_and_verifies() {
    let v = vectors();
    let body = serde_json::to_vec(&v["envelope"]).expect("json");
    let verified = seal::open_envelope(&body, &pub_keypair()).expect("opens and verifies");
    let expected: UpdateMsg = serde_json::from_value(v["msg"].clone()).expect("msg");
    assert_eq!(verified.msg, expected);
    assert_eq!(
        verified.msg.public_key,
        s(&v, "client_id").parse::<PublicKey>().expect("id")
    );
}

#[test]
fn signed_json_in_its_arrival_order_verifies() {
    // The vector's `msg` is not in sorted order: verification must use the
    // canonical form of the message as it arrived.
    let v = vectors();
    let verified = verify_signed(s(&v, "signed_json").as_bytes()).expect("verifies");
    assert_eq!(verified.msg.name, "eb4890");
}

#[test]
fn bad_signature_of_another_message_is_refused() {
    let v = vectors();
    let mut signed: Value = serde_json::from_str(s(&v, "signed_json")).expect("json");
    signed["signature"] = v["bad"]["signature_of_other_msg"].clone();
    let err = verify_signed(&serde_json::to_vec(&signed).expect("json")).expect_err("bad sig");
    assert_eq!(err.code(), ErrorCode::BadSignature);
}

#[test]
fn box_sealed_to_another_key_is_undecryptable() {
    let v = vectors();
    let sealed = B64
        .decode(s(&v["bad"], "sealed_to_wrong_key_b64"))
        .expect("b64");
    let err = seal::open(&sealed, &pub_keypair()).expect_err("wrong key");
    assert_eq!(err.code(), ErrorCode::Undecryptable);
}

#[test]
fn every_bad_case_is_refused() {
    // Whatever else the vectors list as bad must fail one way or another,
    // so a new bad vector cannot slip by untested.
    let v = vectors();
    let bad = v["bad"].as_object().expect("bad is an object");
    let pubkp = pub_keypair();
    for (name, case) in bad {
        let refused = match case {
            Value::String(text) if name.ends_with("_b64") => match B64.decode(text) {
                Ok(bytes) => seal::open(&bytes, &pubkp)
                    .map_err(|e| e.code())
                    .and_then(|pt| verify_signed(&pt).map_err(|e| e.code()))
                    .is_err(),
                Err(_) => true,
            },
            Value::String(sig) => {
                let mut signed: Value = serde_json::from_str(s(&v, "signed_json")).expect("json");
                signed["signature"] = Value::String(sig.clone());
                verify_signed(&serde_json::to_vec(&signed).expect("json")).is_err()
            }
            other => {
                let body = serde_json::to_vec(other).expect("json");
                seal::open_envelope(&body, &pubkp).is_err() && verify_signed(&body).is_err()
            }
        };
        assert!(refused, "bad vector {name} was accepted");
    }
}
