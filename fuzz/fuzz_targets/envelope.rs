//! `POST /update`'s body as the server reads it: the envelope (size, JSON,
//! version, base64), then the seal, then the signed message, opened with
//! the pub key of `protocol/tests/data/protocol-vectors.json` so that the
//! seed envelopes (made with libsodium for that pub) open and the fuzzer
//! starts past the seal.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use peach_dyndns_protocol::identity::parse_secret_file;
use peach_dyndns_protocol::seal::{self, Opener};

static OPENER: LazyLock<Opener> = LazyLock::new(|| {
    let vectors: serde_json::Value = serde_json::from_str(include_str!(
        "../../protocol/tests/data/protocol-vectors.json"
    ))
    .expect("the vectors are JSON");
    let keypair = parse_secret_file(&vectors["pub_secret_json"].to_string())
        .expect("the vectors' pub secret reads");
    Opener::new(&keypair)
});

fuzz_target!(|body: &[u8]| {
    let envelope = seal::parse_envelope(body);
    match seal::open_envelope_with(body, &OPENER) {
        Ok(verified) => {
            assert!(envelope.is_ok(), "an opened body has a valid envelope");
            assert!(
                verified.msg.check_shape().is_ok(),
                "an opened message has its op's shape"
            );
        }
        // The whole reading fails first where the envelope does.
        Err(e) => {
            if let Err(first) = envelope {
                assert_eq!(e.code(), first.code());
            }
        }
    }
});
