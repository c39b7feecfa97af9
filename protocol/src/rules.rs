//! Name rules, reserved names, address rules, and small helpers for `seq`
//! and dyndns2 tokens.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};

use crate::identity::PublicKey;
use crate::ProtocolError;

/// Labels every server refuses, besides the ones it is configured with:
/// the names a zone's own infrastructure tends to use. Labels starting with
/// `_` (service labels) are refused by the label rule already.
pub const DEFAULT_RESERVED: [&str; 5] = ["ns", "ns1", "ns2", "www", "mail"];

/// Checks one DNS label: `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`.
pub fn check_label(name: &str) -> Result<(), ProtocolError> {
    let bad = |reason| ProtocolError::InvalidName {
        name: name.chars().take(80).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > 63 {
        return Err(bad("it is longer than 63 characters"));
    }
    if name.starts_with('_') {
        return Err(bad("service labels (starting with `_`) are not allowed"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad(
            "only lowercase letters a-z, digits and `-` are allowed",
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(bad("it may not start or end with `-`"));
    }
    Ok(())
}

/// Checks a label against the label rule, the default reserved names and
/// the server's own `extra` reserved names.
pub fn check_name(name: &str, extra_reserved: &[String]) -> Result<(), ProtocolError> {
    check_label(name)?;
    if DEFAULT_RESERVED.contains(&name) || extra_reserved.iter().any(|r| r == name) {
        return Err(ProtocolError::ReservedName { name: name.into() });
    }
    Ok(())
}

/// Normalises a zone name for comparison: lowercase, no trailing dot.
pub fn normalize_domain(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

/// Checks that the message's `domain` is the server's zone.
pub fn check_domain(got: &str, expected: &str) -> Result<(), ProtocolError> {
    // The message must name the zone exactly (as the client signed it);
    // only the server's configured form is normalised.
    if got != normalize_domain(expected) {
        return Err(ProtocolError::WrongDomain {
            expected: normalize_domain(expected),
            got: got.chars().take(255).collect(),
        });
    }
    Ok(())
}

/// Checks that a message is for this pub: its `pub` is the server's own id.
pub fn check_pub(got: &PublicKey, expected: &PublicKey) -> Result<(), ProtocolError> {
    if got != expected {
        return Err(ProtocolError::WrongPub {
            expected: expected.to_string(),
            got: got.to_string(),
        });
    }
    Ok(())
}

/// How far ahead of `max(last_seq, now)` a `seq` may be: one day, in ms.
pub const SEQ_AHEAD_MS: u64 = 86_400_000;

/// The largest `seq` a server accepts now: `max(last_seq, now_ms)` plus
/// one day. Saturates instead of overflowing.
pub fn max_seq(last_seq: Option<u64>, now_ms: u64) -> u64 {
    last_seq
        .unwrap_or(0)
        .max(now_ms)
        .saturating_add(SEQ_AHEAD_MS)
}

/// Refuses a `seq` more than a day ahead (`invalid_seq`), so one message
/// can never freeze a key at `2^64 - 1`. Staleness (`seq <= last_seq`) is
/// the server's check, under the key's lock.
pub fn check_seq_bound(seq: u64, last_seq: Option<u64>, now_ms: u64) -> Result<(), ProtocolError> {
    let max = max_seq(last_seq, now_ms);
    if seq > max {
        return Err(ProtocolError::InvalidSeq {
            seq,
            last_seq,
            max_seq: max,
        });
    }
    Ok(())
}

/// Whether a client may believe a `last_seq` a pub told it: only within
/// the same one-day bound of the client's own clock. A larger one is a
/// hostile or broken pub trying to push the key's `seq` out of reach.
pub fn believable_last_seq(last_seq: u64, now_ms: u64) -> bool {
    last_seq <= now_ms.saturating_add(SEQ_AHEAD_MS)
}

/// Length of one ACME DNS-01 value: base64url of a SHA-256, unpadded.
pub const TXT_LEN: usize = 43;

/// Checks the `txt` of `acme_set`: 1 or 2 values, each exactly 43
/// characters of base64url (`A–Z a–z 0–9 - _`).
pub fn check_txt(values: &[String]) -> Result<(), ProtocolError> {
    if values.is_empty() || values.len() > 2 {
        return Err(ProtocolError::InvalidTxt {
            index: values.len().min(2),
            reason: "`txt` holds 1 or 2 values",
        });
    }
    for (index, value) in values.iter().enumerate() {
        if value.len() != TXT_LEN {
            return Err(ProtocolError::InvalidTxt {
                index,
                reason: "not 43 characters",
            });
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ProtocolError::InvalidTxt {
                index,
                reason: "not base64url (A-Z a-z 0-9 - _)",
            });
        }
    }
    Ok(())
}

/// Why an address is not globally routable, or `None` if it is.
pub fn non_global_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    // IANA IPv4 special-purpose registry, the parts that are not reachable
    // from the internet.
    const TABLE: [([u8; 4], u32, &str); 15] = [
        ([0, 0, 0, 0], 8, "\"this network\" (0.0.0.0/8)"),
        ([10, 0, 0, 0], 8, "private (10.0.0.0/8)"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT (100.64.0.0/10)"),
        ([127, 0, 0, 0], 8, "loopback (127.0.0.0/8)"),
        ([169, 254, 0, 0], 16, "link-local (169.254.0.0/16)"),
        ([172, 16, 0, 0], 12, "private (172.16.0.0/12)"),
        (
            [192, 0, 0, 0],
            24,
            "IETF protocol assignments (192.0.0.0/24)",
        ),
        ([192, 0, 2, 0], 24, "documentation (192.0.2.0/24)"),
        (
            [192, 88, 99, 0],
            24,
            "deprecated 6to4 relay anycast (192.88.99.0/24)",
        ),
        ([192, 168, 0, 0], 16, "private (192.168.0.0/16)"),
        ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
        ([198, 51, 100, 0], 24, "documentation (198.51.100.0/24)"),
        ([203, 0, 113, 0], 24, "documentation (203.0.113.0/24)"),
        ([224, 0, 0, 0], 4, "multicast (224.0.0.0/4)"),
        ([240, 0, 0, 0], 4, "reserved or broadcast (240.0.0.0/4)"),
    ];
    TABLE
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // Named special ranges first, for a precise message.
    const TABLE: [([u16; 8], u32, &str); 9] = [
        (
            [0, 0, 0, 0, 0, 0xffff, 0, 0],
            96,
            "IPv4-mapped (::ffff:0:0/96)",
        ),
        (
            [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
            48,
            "local NAT64 (64:ff9b:1::/48)",
        ),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only (100::/64)"),
        (
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
            32,
            "documentation (2001:db8::/32)",
        ),
        (
            [0x3fff, 0, 0, 0, 0, 0, 0, 0],
            20,
            "documentation (3fff::/20)",
        ),
        (
            [0x2001, 0, 0, 0, 0, 0, 0, 0],
            23,
            "IETF protocol assignments (2001::/23)",
        ),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local (fc00::/7)"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local (fe80::/10)"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast (ff00::/8)"),
    ];
    if let Some((_, _, why)) = TABLE.iter().find(|(net, p, _)| in_v6(ip, *net, *p)) {
        return Some(why);
    }
    // 6to4 (RFC 3056) sends its traffic to the IPv4 address in bits
    // 16..48, so 2002:a00:1:: reaches 10.0.0.1: refused when that address
    // is not global (2002::/16 is otherwise global unicast).
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let [_, high, low, ..] = ip.segments();
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        if v4_reason(Ipv4Addr::new(a, b, c, d)).is_some() {
            return Some("6to4 (2002::/16) around a non-global IPv4 address");
        }
    }
    // Global unicast is allocated from 2000::/3 only.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return Some("not in global unicast space (2000::/3)");
    }
    None
}

/// Checks the message's addresses: each must be globally routable unless
/// `allow_non_global` (tests, LAN setups).
pub fn check_addresses(
    ip: Option<Ipv4Addr>,
    ip6: Option<Ipv6Addr>,
    allow_non_global: bool,
) -> Result<(), ProtocolError> {
    if allow_non_global {
        return Ok(());
    }
    if let Some(v4) = ip {
        if let Some(reason) = v4_reason(v4) {
            return Err(ProtocolError::InvalidIp {
                field: "ip",
                addr: v4.to_string(),
                reason: format!("it is {reason}, not globally routable"),
            });
        }
    }
    if let Some(v6) = ip6 {
        if let Some(reason) = v6_reason(v6) {
            return Err(ProtocolError::InvalidIp {
                field: "ip6",
                addr: v6.to_string(),
                reason: format!("it is {reason}, not globally routable"),
            });
        }
    }
    Ok(())
}

/// The `seq` a client sends next: `max(last + 1, now_ms)`, so a Pi that
/// lost its state still moves forward.
pub fn next_seq(last: Option<u64>, now_ms: u64) -> u64 {
    match last {
        Some(last) => last.saturating_add(1).max(now_ms),
        None => now_ms,
    }
}

/// Hex SHA-256 of a dyndns2 token, as registered in `token_sha256`.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks a `token_sha256`: 64 lowercase hex digits.
pub fn check_token_hash(hash: &str) -> Result<(), ProtocolError> {
    if hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(ProtocolError::malformed(
            "`token_sha256` is not 64 lowercase hex digits",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn seq_bound() {
        let now = 1_764_000_000_000;
        assert_eq!(max_seq(None, now), now + SEQ_AHEAD_MS);
        assert_eq!(max_seq(Some(now + 5), now), now + 5 + SEQ_AHEAD_MS);
        assert_eq!(max_seq(Some(u64::MAX - 1), now), u64::MAX);
        assert!(check_seq_bound(now + SEQ_AHEAD_MS, None, now).is_ok());
        let err = check_seq_bound(u64::MAX, Some(3), now).expect_err("far ahead");
        assert_eq!(err.code(), ErrorCode::InvalidSeq);
        assert_eq!(
            err,
            ProtocolError::InvalidSeq {
                seq: u64::MAX,
                last_seq: Some(3),
                max_seq: now + SEQ_AHEAD_MS
            }
        );
        assert!(believable_last_seq(now + SEQ_AHEAD_MS, now));
        assert!(!believable_last_seq(now + SEQ_AHEAD_MS + 1, now));
        assert!(!believable_last_seq(u64::MAX - 1, now));
        assert!(believable_last_seq(u64::MAX, u64::MAX));
    }

    #[test]
    fn txt_values() {
        let good = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU".to_string();
        assert!(check_txt(std::slice::from_ref(&good)).is_ok());
        assert!(check_txt(&[good.clone(), good.clone()]).is_ok());
        let bad_char = good.replacen('-', "+", 1);
        for bad in [
            vec![],
            vec![good.clone(); 3],
            vec![good[..42].to_string()],
            vec![format!("{good}A")],
            vec![bad_char],
            vec![good.clone(), "=".repeat(43)],
        ] {
            let err = check_txt(&bad).expect_err("bad txt");
            assert_eq!(err.code(), ErrorCode::InvalidTxt, "{bad:?}");
        }
    }

    #[test]
    fn pub_binding() {
        let a = crate::identity::Keypair::from_seed(&[1; 32]).public();
        let b = crate::identity::Keypair::from_seed(&[2; 32]).public();
        assert!(check_pub(&a, &a).is_ok());
        assert_eq!(
            check_pub(&a, &b).map_err(|e| e.code()),
            Err(ErrorCode::WrongPub)
        );
    }

    #[test]
    fn labels() {
        for ok in ["a", "eb4890", "a-b", "0", &"x".repeat(63)] {
            assert!(check_label(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a.b",
            "a_b",
            "_dmarc",
            "é",
            &"x".repeat(64),
            "a b",
        ] {
            let err = check_label(bad).expect_err(bad);
            assert_eq!(err.code(), ErrorCode::InvalidName, "{bad}");
        }
    }

    #[test]
    fn reserved() {
        let extra = vec!["admin".to_string()];
        for name in ["ns", "ns1", "ns2", "www", "mail", "admin"] {
            let err = check_name(name, &extra).expect_err(name);
            assert_eq!(err.code(), ErrorCode::ReservedName, "{name}");
        }
        assert_eq!(
            check_name("_x", &extra).map_err(|e| e.code()),
            Err(ErrorCode::InvalidName)
        );
        assert!(check_name("eb4890", &extra).is_ok());
    }

    #[test]
    fn domains() {
        assert!(check_domain("peach.dinosaur.is", "Peach.Dinosaur.is.").is_ok());
        let err = check_domain("other.example", "peach.dinosaur.is").expect_err("other");
        assert_eq!(err.code(), ErrorCode::WrongDomain);
    }

    #[test]
    fn addresses() {
        for bad in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
            "3fff::1",
            "2001::1",
            "100::1",
            "4000::1",
        ] {
            let ip: IpAddr = bad.parse().expect(bad);
            assert!(non_global_reason(ip).is_some(), "{bad} should be refused");
        }
        for good in [
            "24.12.12.12",
            "8.8.8.8",
            "1.1.1.1",
            "2a01:4f8::1",
            "2606:4700::1111",
        ] {
            let ip: IpAddr = good.parse().expect(good);
            assert_eq!(non_global_reason(ip), None, "{good}");
        }
        let err =
            check_addresses(Some(Ipv4Addr::new(192, 168, 1, 5)), None, false).expect_err("private");
        assert_eq!(err.code(), ErrorCode::InvalidIp);
        assert!(
            err.to_string().contains("private (192.168.0.0/16)"),
            "{err}"
        );
        assert!(check_addresses(Some(Ipv4Addr::new(192, 168, 1, 5)), None, true).is_ok());
    }

    #[test]
    fn six_to_four_around_a_non_global_ipv4_is_refused() {
        // Found by the hostile-input suite (issue 10): 2002::/16 is global
        // unicast space, but 6to4 sends its traffic to the IPv4 address in
        // bits 16..48, so 2002:a00:1:: reaches 10.0.0.1 and was accepted.
        for bad in [
            "2002:a00:1::",
            "2002:c0a8:101::1",
            "2002:7f00:1::1",
            "2002:6440:1::1",
            "2002:a9fe:101::1",
            "2002:e000:1::1",
            "2002::1",
        ] {
            let ip: IpAddr = bad.parse().expect(bad);
            let reason = non_global_reason(ip).unwrap_or_else(|| panic!("{bad} should be refused"));
            assert!(reason.starts_with("6to4"), "{bad}: {reason}");
        }
        let err = check_addresses(None, Some("2002:c0a8:101::1".parse().expect("ip6")), false)
            .expect_err("6to4 around 192.168.1.1");
        assert_eq!(err.code(), ErrorCode::InvalidIp);
        assert!(err.to_string().contains("6to4 (2002::/16)"), "{err}");
        // Around a global IPv4 address it stays acceptable.
        let ip: IpAddr = "2002:1818:1818::1".parse().expect("ip6");
        assert_eq!(non_global_reason(ip), None);
    }

    #[test]
    fn seqs_move_forward() {
        assert_eq!(next_seq(None, 1000), 1000);
        assert_eq!(next_seq(Some(5000), 1000), 5001);
        assert_eq!(next_seq(Some(5000), 9000), 9000);
        assert_eq!(next_seq(Some(u64::MAX), 1), u64::MAX);
    }

    #[test]
    fn tokens() {
        let h = token_hash("secret");
        assert_eq!(
            h,
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
        assert!(check_token_hash(&h).is_ok());
        assert!(check_token_hash(&h.to_uppercase()).is_err());
        assert!(check_token_hash("abc").is_err());
    }
}
