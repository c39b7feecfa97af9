//! The vectors in `tests/data/protocol-vectors.json` were made with
//! libsodium (PyNaCl): these tests reproduce them byte for byte.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use peach_dyndns_protocol::identity::{parse_secret_file, Keypair, PublicKey};
use peach_dyndns_protocol::message::{signing_bytes, verify_signed, Op, UpdateMsg};
use peach_dyndns_protocol::{canonical, ip_answer, rules, seal, ErrorCode};
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
    for (msg, expected) in [
        ("release_msg", "release_canonical"),
        ("acme_set_msg", "acme_set_canonical"),
        ("acme_clear_msg", "acme_clear_canonical"),
        ("ip_answer", "ip_answer_canonical"),
    ] {
        let mut value = v[msg].clone();
        if let Some(map) = value.as_object_mut() {
            // The /ip statement is signed without its signature.
            map.remove("signature");
        }
        let canon = canonical::canonical_bytes(&value).expect("canonical");
        assert_eq!(
            String::from_utf8(canon).expect("utf8"),
            s(&v, expected),
            "{msg}"
        );
    }
    let ip = &v["ip_answer"];
    assert_eq!(
        B64.encode(ip_answer::signing_bytes(
            s(ip, "ip"),
            s(ip, "nonce"),
            s(ip, "pub")
        )),
        s(&v, "ip_answer_signed_bytes_b64")
    );
}

#[test]
fn every_op_parses_into_its_type_and_round_trips() {
    let v = vectors();
    let pub_id: PublicKey = s(&v, "pub_id").parse().expect("pub id");
    for (key, op) in [
        ("msg", Op::Update),
        ("release_msg", Op::Release),
        ("acme_set_msg", Op::AcmeSet),
        ("acme_clear_msg", Op::AcmeClear),
    ] {
        let msg: UpdateMsg = serde_json::from_value(v[key].clone()).expect("parses");
        assert_eq!(msg.op, op);
        assert_eq!(msg.pub_id, pub_id);
        msg.check_shape().expect("the vector is well formed");
        assert_eq!(msg.to_value(), v[key], "{key} round-trips");
    }
}

#[test]
fn signatures_are_reproduced_exactly() {
    // ed25519 signatures are deterministic, so ours must equal libsodium's.
    let v = vectors();
    let kp = client();
    let msg: UpdateMsg = serde_json::from_value(v["msg"].clone()).expect("msg parses");
    assert_eq!(msg.op, Op::Update);
    assert_eq!(msg.sign(&kp).signature, s(&v, "signature"));
    for (msg, sig) in [
        ("release_msg", "release_signature"),
        ("acme_set_msg", "acme_set_signature"),
        ("acme_clear_msg", "acme_clear_signature"),
    ] {
        let msg: UpdateMsg = serde_json::from_value(v[msg].clone()).expect("msg");
        let signed = msg.sign(&kp);
        assert_eq!(signed.signature, s(&v, sig));
        assert_eq!(verify_signed(&signed.to_json()).map(|x| x.msg), Ok(msg));
    }
    // The pub's /ip statement, signed by the pub's key.
    let ip = &v["ip_answer"];
    let answer = ip_answer::sign(
        s(ip, "ip").parse().expect("ip"),
        s(ip, "nonce"),
        &pub_keypair(),
    )
    .expect("signs");
    assert_eq!(answer.signature, s(ip, "signature"));
}

#[test]
fn the_signed_ip_answer_verifies_and_its_bad_cases_do_not() {
    let v = vectors();
    let pub_id: PublicKey = s(&v, "pub_id").parse().expect("pub id");
    let ip = &v["ip_answer"];
    let nonce = s(ip, "nonce");
    let body = serde_json::to_vec(ip).expect("json");
    assert_eq!(
        ip_answer::verify(&body, &pub_id, nonce),
        Ok(s(ip, "ip").parse().expect("ip"))
    );
    for bad in ["ip_answer_other_nonce", "ip_answer_forged_ip"] {
        let body = serde_json::to_vec(&v["bad"][bad]["answer"]).expect("json");
        // Against the nonce the Pi sent, and against the nonce the answer
        // claims: neither verifies.
        let claimed = s(&v["bad"][bad]["answer"], "nonce");
        assert!(ip_answer::verify(&body, &pub_id, nonce).is_err(), "{bad}");
        assert_eq!(
            ip_answer::verify(&body, &pub_id, claimed).map_err(|e| e.code()),
            Err(ErrorCode::BadSignature),
            "{bad}"
        );
    }
    // Verified against another pub than the one that signed: refused.
    let other = Keypair::from_seed(&[5; 32]).public();
    assert_eq!(
        ip_answer::verify(&body, &other, nonce).map_err(|e| e.code()),
        Err(ErrorCode::WrongPub)
    );
}

#[test]
fn a_message_for_another_pub_opens_and_verifies_but_names_that_pub() {
    // The attack v2 closes: a hostile pub re-seals a Pi's signed message to
    // the real pub. The seal opens and the signature verifies; the `pub`
    // field is what the server refuses it by.
    let v = vectors();
    let case = &v["bad"]["wrong_pub"];
    assert_eq!(case["error"], "wrong_pub");
    let pubkp = pub_keypair();
    let sealed = B64.decode(s(case, "sealed_b64")).expect("b64");
    let opened = seal::open(&sealed, &pubkp).expect("opens");
    assert_eq!(
        String::from_utf8(opened.clone()).expect("utf8"),
        s(case, "signed_json")
    );
    let verified = verify_signed(&opened).expect("the signature is the client's");
    let err = rules::check_pub(&verified.msg.pub_id, &pubkp.public()).expect_err("wrong pub");
    assert_eq!(err.code(), ErrorCode::WrongPub);
}

#[test]
fn a_v1_envelope_is_malformed_and_says_why() {
    let v = vectors();
    let case = &v["bad"]["v1_envelope"];
    assert_eq!(case["error"], "malformed");
    let body = serde_json::to_vec(&case["envelope"]).expect("json");
    let err = seal::open_envelope(&body, &pub_keypair()).expect_err("v1");
    assert_eq!(err.code(), ErrorCode::Malformed);
    assert!(
        err.to_string().contains("v1 is no longer accepted"),
        "{err}"
    );
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
    signed["signature"] = v["bad"]["signature_of_other_msg"]["signature"].clone();
    let err = verify_signed(&serde_json::to_vec(&signed).expect("json")).expect_err("bad sig");
    assert_eq!(err.code(), ErrorCode::BadSignature);
}

#[test]
fn box_sealed_to_another_key_is_undecryptable() {
    let v = vectors();
    let sealed = B64
        .decode(s(&v["bad"]["sealed_to_wrong_key_b64"], "sealed_b64"))
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
            Value::Object(obj) => {
                let expected = obj.get("error").and_then(Value::as_str);
                let got = if let Some(sealed) = obj.get("sealed_b64").and_then(Value::as_str) {
                    let bytes = B64.decode(sealed).expect("b64");
                    seal::open(&bytes, &pubkp)
                        .and_then(|pt| verify_signed(&pt))
                        .and_then(|vu| rules::check_pub(&vu.msg.pub_id, &pubkp.public()))
                        .map_err(|e| e.code())
                } else if let Some(sealed) = obj.get("sealed_to_wrong_key_b64") {
                    let bytes = B64.decode(sealed.as_str().expect("str")).expect("b64");
                    seal::open(&bytes, &pubkp).map(drop).map_err(|e| e.code())
                } else if let Some(envelope) = obj.get("envelope") {
                    let body = serde_json::to_vec(envelope).expect("json");
                    seal::open_envelope(&body, &pubkp)
                        .map(drop)
                        .map_err(|e| e.code())
                } else if let Some(answer) = obj.get("answer") {
                    let body = serde_json::to_vec(answer).expect("json");
                    let nonce = s(&v["ip_answer"], "nonce");
                    ip_answer::verify(&body, &pubkp.public(), nonce)
                        .map(drop)
                        .map_err(|e| e.code())
                } else if let Some(Value::String(sig)) = obj.get("signature") {
                    let mut signed: Value =
                        serde_json::from_str(s(&v, "signed_json")).expect("json");
                    signed["signature"] = Value::String(sig.clone());
                    verify_signed(&serde_json::to_vec(&signed).expect("json"))
                        .map(drop)
                        .map_err(|e| e.code())
                } else {
                    panic!("bad vector {name} has a shape this test does not know")
                };
                if let (Some(want), Err(code)) = (expected, got) {
                    assert_eq!(code.as_str(), want, "bad vector {name}");
                }
                got.is_err()
            }
            other => panic!("bad vector {name} has a shape this test does not know: {other}"),
        };
        assert!(refused, "bad vector {name} was accepted");
    }
}
