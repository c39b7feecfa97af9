//! dyndns2 compatibility for routers, ddclient and inadyn:
//! `GET /nic/update?hostname=<fqdn>[,<fqdn>…]&myip=<ip>[,<ip6>]` with HTTP
//! Basic auth (user = the fqdn, password = a token whose SHA-256 the name's
//! owner registered through a signed update). Answers are dyndns2 words,
//! one line per hostname: `good <ip>`, `nochg <ip>`, `badauth`, `nohost`,
//! `notfqdn`, `abuse` (rate limited or no longer followed), `dnserr`
//! (DNS refused, or an address that is not acceptable), `911` (server
//! fault).
//!
//! This is a front door only: it reads Basic auth and the query, checks
//! the token before anything costly, and hands the change to
//! [`crate::pipeline::run`], which re-checks owner and token under the
//! name's lock like every other request.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use peach_dyndns_protocol::rules;
use sha2::{Digest, Sha256};
use warp::http::{header, HeaderValue};
use warp::reply::Response;

use peach_dyndns_protocol::ErrorCode;
use subtle::ConstantTimeEq as _;

use crate::http::reply;
use crate::pipeline::{self, Action, ApiError, Auth, Request};
use crate::State;

/// The user and password of an `Authorization: Basic …` header.
#[doc(hidden)] // Public for the fuzz targets in fuzz/ only; not an API.
pub fn basic_auth(header: Option<&str>) -> Option<(String, String)> {
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
        if let Err(wait) = state.failures_left(ip) {
            // A 429 says when to come back, as the update API's does
            // (found by the hostile-input suite: it said nothing).
            let mut resp = answer(state, vec!["abuse".into()], 429);
            if let Some(secs) = ApiError::rate_limited(wait).retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return resp;
        }
    }
    let hostnames = hostnames(query.get("hostname").map(String::as_str), &user);
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

/// The hostnames of `hostname` (comma-separated, lower-cased); without it,
/// the Basic auth user.
#[doc(hidden)] // Public for the fuzz targets in fuzz/ only; not an API.
pub fn hostnames(hostname: Option<&str>, user: &str) -> Vec<String> {
    match hostname {
        Some(h) if !h.is_empty() => h
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect(),
        _ => vec![user.to_ascii_lowercase()],
    }
}

/// The label of `host` under `domain` (a trailing dot allowed), if it is
/// one valid label directly under the zone.
#[doc(hidden)] // Public for the fuzz targets in fuzz/ only; not an API.
pub fn label_of<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    let name = host
        .trim_end_matches('.')
        .strip_suffix(domain)?
        .strip_suffix('.')?;
    rules::check_label(name).ok()?;
    Some(name)
}

/// Reads `myip` (an IPv4, an IPv6, or both comma-separated); without it,
/// the request's own address.
#[doc(hidden)] // Public for the fuzz targets in fuzz/ only; not an API.
#[allow(clippy::result_unit_err)] // Whatever is wrong, the answer is `dnserr`.
pub fn addresses(
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
    let Some(name) = label_of(host, &state.config.domain) else {
        return "notfqdn".into();
    };
    let entry = match state.registry.get(name) {
        Ok(Some(e)) => e,
        Ok(None) => return "nohost".into(),
        Err(e) => {
            tracing::error!(error = %e, "registry read failed");
            return "911".into();
        }
    };
    // Checked here so a wrong password costs nothing more; checked again
    // under the name's lock in the pipeline, where it counts.
    let authorised = entry
        .token_sha256
        .as_deref()
        .is_some_and(|stored| bool::from(stored.as_bytes().ct_eq(token_hash.as_bytes())));
    if !authorised {
        if let Some(peer) = peer {
            state.charge_failure(peer);
        }
        return "badauth".into();
    }
    if rules::check_addresses(ip, ip6, state.config.allow_private_addresses).is_err() {
        return "dnserr".into();
    }
    let Ok(key) = entry.owner.parse() else {
        tracing::error!(name, owner = %entry.owner, "the registry holds an unreadable owner id");
        return "911".into();
    };
    if state.key_limits.take(&key).is_err() {
        return "abuse".into();
    }
    let request = Request {
        key,
        name: name.to_string(),
        auth: Auth::Token {
            sha256: token_hash.to_string(),
        },
        action: Action::UpdateFamilies { ip, ip6 },
    };
    match pipeline::run(state, request).await {
        Ok(ok) => {
            // The addresses this request set, as routers expect.
            let shown = ip
                .map(|a| a.to_string())
                .into_iter()
                .chain(ip6.map(|a| a.to_string()))
                .collect::<Vec<_>>()
                .join(",");
            let word = if ok.changed() { "good" } else { "nochg" };
            format!("{word} {shown}")
        }
        Err(e) => word_for(&e).into(),
    }
}

/// The dyndns2 word for a refusal of the pipeline.
fn word_for(e: &ApiError) -> &'static str {
    match e.code {
        // The name changed hands, was released, or got a new token while
        // this request waited: the password no longer opens it.
        ErrorCode::NotRegistered | ErrorCode::NameTaken | ErrorCode::BadSignature => "badauth",
        ErrorCode::NotFollowed | ErrorCode::Blocked | ErrorCode::RateLimited => "abuse",
        ErrorCode::DnsUnavailable | ErrorCode::InvalidIp => "dnserr",
        _ => {
            tracing::warn!(code = %e.code, message = %e.message, "dyndns2 request failed");
            "911"
        }
    }
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
    fn reads_hostnames_and_their_labels() {
        let d = "peach.dinosaur.is";
        assert_eq!(
            hostnames(None, "A.Peach.Dinosaur.Is"),
            ["a.peach.dinosaur.is"]
        );
        assert_eq!(hostnames(Some(" X.b , c"), "u"), ["x.b", "c"]);
        assert_eq!(label_of("eb4890.peach.dinosaur.is.", d), Some("eb4890"));
        for host in [
            "peach.dinosaur.is",
            ".peach.dinosaur.is",
            "eb4890peach.dinosaur.is",
            "a.b.peach.dinosaur.is",
            "a..peach.dinosaur.is",
            "*.peach.dinosaur.is",
            "EB4890.peach.dinosaur.is",
            "eb4890.peach.dinosaur.is.evil",
        ] {
            assert_eq!(label_of(host, d), None, "{host}");
        }
    }

    #[test]
    fn refusals_map_to_dyndns2_words() {
        for (code, word) in [
            (ErrorCode::NameTaken, "badauth"),
            (ErrorCode::NotRegistered, "badauth"),
            (ErrorCode::BadSignature, "badauth"),
            (ErrorCode::NotFollowed, "abuse"),
            (ErrorCode::Blocked, "abuse"),
            (ErrorCode::RateLimited, "abuse"),
            (ErrorCode::DnsUnavailable, "dnserr"),
            (ErrorCode::GraphUnavailable, "911"),
            (ErrorCode::Internal, "911"),
        ] {
            assert_eq!(word_for(&ApiError::new(code, "x")), word, "{code}");
        }
    }
}
