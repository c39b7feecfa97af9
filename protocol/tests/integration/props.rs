//! Property tests: readers never panic on arbitrary bytes; sign→verify and
//! seal→open round-trip for random keys and messages.

use std::net::{Ipv4Addr, Ipv6Addr};

use peach_dyndns_protocol::canonical::{canonical_bytes, parse_strict};
use peach_dyndns_protocol::identity::{parse_secret_file, Keypair};
use peach_dyndns_protocol::message::{verify_signed, Op, UpdateMsg};
use peach_dyndns_protocol::seal;
use proptest::prelude::*;

fn any_msg() -> impl Strategy<Value = (UpdateMsg, [u8; 32])> {
    (
        any::<[u8; 32]>(),
        "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?",
        any::<bool>(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u128>()),
        any::<u64>(),
        proptest::option::of("[0-9a-f]{64}"),
    )
        .prop_map(|(seed, name, release, ip, ip6, seq, token)| {
            let kp = Keypair::from_seed(&seed);
            // An update needs an address; give it one if both are absent.
            let ip = match (release, ip, ip6) {
                (false, None, None) => Some(1),
                _ => ip,
            };
            let msg = UpdateMsg {
                op: if release { Op::Release } else { Op::Update },
                name,
                domain: "peach.dinosaur.is".into(),
                ip: if release {
                    None
                } else {
                    ip.map(Ipv4Addr::from)
                },
                ip6: if release {
                    None
                } else {
                    ip6.map(Ipv6Addr::from)
                },
                pub_id: Keypair::from_seed(&[8; 32]).public(),
                public_key: kp.public(),
                seq,
                token_sha256: if release { None } else { token },
                txt: None,
            };
            (msg, seed)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let pubkp = Keypair::from_seed(&[7; 32]);
        let _ = parse_strict(&bytes);
        let _ = verify_signed(&bytes);
        let _ = seal::open(&bytes, &pubkp);
        let _ = seal::open_envelope(&bytes, &pubkp);
        let _ = parse_secret_file(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn json_shaped_garbage_never_panics(text in r#"\{("[a-z_]{1,10}":("[ -~]{0,20}"|[0-9]{1,25}|-?[0-9]\.[0-9]|null|true|\{\}|\[\]),?){0,8}\}"#) {
        let _ = verify_signed(format!(r#"{{"msg":{text},"signature":"x"}}"#).as_bytes());
        if let Ok(v) = parse_strict(text.as_bytes()) {
            // Whatever parses strictly has canonical bytes that parse back
            // to the same value.
            let canon = canonical_bytes(&v).expect("strict values are canonicalisable");
            prop_assert_eq!(parse_strict(&canon).expect("canonical parses"), v);
        }
    }

    #[test]
    fn sign_verify_round_trip((msg, seed) in any_msg()) {
        let kp = Keypair::from_seed(&seed);
        let verified = verify_signed(&msg.sign(&kp).to_json()).expect("verifies");
        prop_assert_eq!(verified.msg, msg);
    }

    #[test]
    fn seal_open_round_trip((msg, seed) in any_msg(), pub_seed in any::<[u8; 32]>()) {
        let kp = Keypair::from_seed(&seed);
        let pubkp = Keypair::from_seed(&pub_seed);
        let envelope = seal::seal_update(&msg.sign(&kp), &pubkp.public()).expect("seal");
        let body = serde_json::to_vec(&envelope).expect("json");
        prop_assert!(body.len() <= peach_dyndns_protocol::MAX_BODY_BYTES);
        let opened = seal::open_envelope(&body, &pubkp).expect("opens");
        prop_assert_eq!(opened.msg, msg);
    }

    #[test]
    fn a_flipped_bit_in_the_box_is_refused((msg, seed) in any_msg(), bit in 0usize..2000) {
        let kp = Keypair::from_seed(&seed);
        let pubkp = Keypair::from_seed(&[9; 32]);
        let mut sealed = seal::seal(&msg.sign(&kp).to_json(), &pubkp.public()).expect("seal");
        let bit = bit % (sealed.len() * 8);
        sealed[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(seal::open(&sealed, &pubkp).is_err());
    }
}
