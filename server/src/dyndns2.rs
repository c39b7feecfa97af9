//! dyndns2 compatibility for routers, ddclient and inadyn:
//! `GET /nic/update?hostname=<fqdn>[,<fqdn>…]&myip=<ip>[,<ip6>]` with HTTP
//! Basic auth (user = the fqdn, password = a token whose SHA-256 the name's
//! owner registered through a signed update). Answers are dyndns2 words,
//! one line per hostname: `good <ip>`, `nochg <ip>`, `badauth`, `nohost`,
//! `notfqdn`, `abuse` (rate limited or no longer followed), `dnserr`
//! (DNS refused, or an address that is not acceptable), `911` (server
//! fault).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use peach_dyndns_protocol::rules;
use sha2::{Digest, Sha256};
use warp::http::{header, HeaderValue};
use warp::reply::Response;

use crate::api::reply;
use crate::dns::ZoneChange;
use crate::graph::Standing;
use crate::registry::Entry;
use crate::update::{now_ms, records_of};
use crate::State;

/// Compares two byte strings in time that does not depend on where they
/// differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn basic_auth(header: Option<&str>) -> Option<(String, String)> {
    let encoded = header?.strip_prefix("Basic ")?;
    let decoded = B64.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

fn answer(state: &State, lines: Vec<String>, status: u16) -> Response {
    for line in &lines {
        let word = line.split(' ').next().unwrap_or("");
        state.metrics.count("nic_update", word);
    }
    let mut resp = reply(status, "text/plain; charset=utf-8", lines.join("\n") + "\n");
    if status == 401 {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"peach-dyndns\""),
        );
    }
    resp
}

/// Handles `GET /nic/update`.
pub async fn handle(
    state: &State,
    authorization: Option<&str>,
    query: &HashMap<String, String>,
    peer: Option<IpAddr>,
) -> Response {
    let Some((user, password)) = basic_auth(authorization) else {
        return answer(state, vec!["badauth".into()], 401);
    };
    if let Some(ip) = peer {
        if state.ip_failures.check(&ip).is_err() {
            return answer(state, vec!["abuse".into()], 429);
        }
    }
    let hostnames: Vec<String> = match query.get("hostname") {
        Some(h) if !h.is_empty() => h
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect(),
        _ => vec![user.to_ascii_lowercase()],
    };
    let (ip, ip6) = match addresses(query.get("myip").map(String::as_str), peer) {
        Ok(pair) => pair,
        Err(()) => return answer(state, vec!["dnserr".into()], 200),
    };
    let token_hash = hex::encode(Sha256::digest(password.as_bytes()));
    let mut lines = Vec::with_capacity(hostnames.len());
    for host in hostnames {
        lines.push(update_one(state, &host, &token_hash, ip, ip6, peer).await);
    }
    let status = if lines.iter().all(|l| l == "badauth") {
        401
    } else {
        200
    };
    answer(state, lines, status)
}

/// Reads `myip` (an IPv4, an IPv6, or both comma-separated); without it,
/// the request's own address.
fn addresses(
    myip: Option<&str>,
    peer: Option<IpAddr>,
) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>), ()> {
    let mut v4 = None;
    let mut v6 = None;
    let list: Vec<IpAddr> = match myip {
        Some(text) if !text.is_empty() => text
            .split(',')
            .map(|s| s.trim().parse::<IpAddr>().map_err(|_| ()))
            .collect::<Result<_, _>>()?,
        _ => peer.into_iter().collect(),
    };
    for ip in list {
        match ip {
            IpAddr::V4(a) if v4.is_none() => v4 = Some(a),
            IpAddr::V6(a) if v6.is_none() => v6 = Some(a),
            _ => return Err(()),
        }
    }
    if v4.is_none() && v6.is_none() {
        return Err(());
    }
    Ok((v4, v6))
}

async fn update_one(
    state: &State,
    host: &str,
    token_hash: &str,
    ip: Option<Ipv4Addr>,
    ip6: Option<Ipv6Addr>,
    peer: Option<IpAddr>,
) -> String {
    let suffix = format!(".{}", state.config.domain);
    let Some(name) = host.trim_end_matches('.').strip_suffix(&suffix) else {
        return "notfqdn".into();
    };
    if rules::check_label(name).is_err() {
        return "notfqdn".into();
    }
    let entry = match state.registry.get(name) {
        Ok(Some(e)) => e,
        Ok(None) => return "nohost".into(),
        Err(e) => {
            tracing::error!(error = %e, "registry read failed");
            return "911".into();
        }
    };
    let authorised = entry
        .token_sha256
        .as_deref()
        .is_some_and(|stored| constant_time_eq(stored.as_bytes(), token_hash.as_bytes()));
    if !authorised {
        if let Some(peer) = peer {
            let _ = state.ip_failures.take(&peer);
        }
        return "badauth".into();
    }
    if rules::check_addresses(ip, ip6, state.config.allow_private_addresses).is_err() {
        return "dnserr".into();
    }
    let Ok(key) = entry.owner.parse() else {
        return "911".into();
    };
    if state.key_limits.take(&key).is_err() {
        return "abuse".into();
    }
    match state.graph.standing(&key).await {
        Ok(Standing::Followed) => {}
        Ok(_) => return "abuse".into(),
        Err(_) => return "911".into(),
    }
    let _guards = state.locks.lock(&entry.owner, name).await;
    // Re-read under the lock: a signed update may have raced us.
    let entry = match state.registry.get(name) {
        Ok(Some(e)) => e,
        Ok(None) => return "nohost".into(),
        Err(_) => return "911".into(),
    };
    let shown = ip
        .map(|a| a.to_string())
        .into_iter()
        .chain(ip6.map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(",");
    if entry.ip == ip && entry.ip6 == ip6 {
        return format!("nochg {shown}");
    }
    let new = Entry {
        ip,
        ip6,
        updated_ms: now_ms(),
        ..entry.clone()
    };
    if let Err(e) = state.dns.apply(&ZoneChange::Set(records_of(&new))).await {
        tracing::warn!(error = %e, "DNS refused a dyndns2 update");
        return "dnserr".into();
    }
    // dyndns2 carries no seq: keep the key's last one.
    let seq = match state.registry.last_seq(&entry.owner) {
        Ok(s) => s.unwrap_or(0),
        Err(_) => return "911".into(),
    };
    if let Err(e) = state.registry.commit_set(&new, seq) {
        tracing::error!(error = %e, "registry commit failed");
        let _ = state.dns.apply(&ZoneChange::Set(records_of(&entry))).await;
        return "911".into();
    }
    format!("good {shown}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_basic_auth() {
        let h = format!("Basic {}", B64.encode("a.b.c:tok:en"));
        assert_eq!(
            basic_auth(Some(&h)),
            Some(("a.b.c".into(), "tok:en".into()))
        );
        assert_eq!(basic_auth(Some("Bearer x")), None);
        assert_eq!(basic_auth(Some("Basic !!!")), None);
        assert_eq!(basic_auth(None), None);
    }

    #[test]
    fn reads_myip() {
        let peer: IpAddr = "24.1.1.1".parse().expect("ip");
        assert_eq!(
            addresses(None, Some(peer)),
            Ok((Some("24.1.1.1".parse().expect("ip")), None))
        );
        let both = addresses(Some("24.2.2.2,2a01::1"), None).expect("both");
        assert_eq!(both.1, Some("2a01::1".parse().expect("ip6")));
        assert!(addresses(Some("1.1.1.1,2.2.2.2"), None).is_err());
        assert!(addresses(Some("junk"), None).is_err());
        assert!(addresses(None, None).is_err());
    }

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
