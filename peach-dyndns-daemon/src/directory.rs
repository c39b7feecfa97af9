//! Where pubs come from: their `peach-dyndns` announcements in the Pi's
//! local sbot, or the config. Also accepting an SSB invite, which makes the
//! pub follow the Pi.
//!
//! An announcement is a message of type `peach-dyndns` whose author is the
//! pub: `{"type":"peach-dyndns","domain":"peach.dinosaur.is",
//! "url":"http://dinosaur.is:8053/update","ttl":60}`. Its author is the key
//! updates are sealed to; only each pub's latest announcement counts.
//!
//! Only announcements by authors the Pi follows are listed (the sbot
//! filters them with `friends.isFollowing`; accepting a pub's invite makes
//! the Pi follow it). An announced URL must be `https://`, or `http://` to
//! a public address; loopback, private and link-local hosts (and names
//! such as `localhost`, `*.local`, `*.lan`, `*.home.arpa`, `*.internal`)
//! are refused unless `sbot.allow_private_pub_urls` is set. Two pubs that
//! claim one domain are both listed, each marked with `conflict` and the
//! other's id in `same_domain_as`, so the owner chooses and nothing is
//! chosen for them.

use std::collections::HashMap;
use std::net::IpAddr;

use peach_dyndns_protocol::identity::PublicKey;
use peach_dyndns_protocol::rules;
use reqwest::Url;
use serde::Serialize;
use serde_json::Value;

use crate::config::{check_domain, Config};
use crate::BoxFuture;

/// The SSB message type of announcements.
pub const ANNOUNCEMENT_TYPE: &str = "peach-dyndns";

/// Why the sbot could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// `sbot.enabled = false`.
    #[error("the local sbot is not used (sbot.enabled = false in the config)")]
    Disabled,
    /// Connecting or calling failed.
    #[error("the local sbot at {address}: {detail}")]
    Sbot {
        /// Its address.
        address: String,
        /// What happened.
        detail: String,
    },
    /// The invite was refused.
    #[error("the invite was not accepted: {0}")]
    Invite(String),
}

/// Where an announcement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Read from the local sbot.
    Sbot,
    /// Written in the config (`registration.url` and `domain`).
    Config,
}

/// One pub that offers dyndns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Announcement {
    /// The pub's key: the announcement's author.
    pub pub_id: PublicKey,
    /// The pub's zone.
    pub domain: String,
    /// Where to send updates.
    #[serde(serialize_with = "serialize_url")]
    pub url: Url,
    /// The TTL the pub gives records, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Sbot or config.
    pub origin: Origin,
    /// Another pub on the list claims the same domain.
    pub conflict: bool,
    /// The ids of the other pubs that claim this domain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub same_domain_as: Vec<PublicKey>,
}

fn serialize_url<S: serde::Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(url.as_str())
}

/// What the daemon asks of the local sbot. The real one wraps
/// `peach-dyndns-sbot`; tests use fakes.
pub trait PubDirectory: Send + Sync {
    /// Every pub's latest announcement the local sbot has.
    fn announcements(&self) -> BoxFuture<'_, Result<Vec<Announcement>, DirectoryError>>;
    /// Accepts an SSB invite (`host:port:@key~seed`).
    fn accept_invite<'a>(&'a self, invite: &'a str) -> BoxFuture<'a, Result<(), DirectoryError>>;
}

/// The directory when the local sbot is not used.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSbot;

impl PubDirectory for NoSbot {
    fn announcements(&self) -> BoxFuture<'_, Result<Vec<Announcement>, DirectoryError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn accept_invite<'a>(&'a self, _invite: &'a str) -> BoxFuture<'a, Result<(), DirectoryError>> {
        Box::pin(async { Err(DirectoryError::Disabled) })
    }
}

/// Checks an announced URL: the rule of [`crate::config::check_pub_url`], which a
/// configured `registration.url` follows too.
pub use crate::config::check_pub_url as check_announced_url;

/// Checks the addresses an announced `http://` host name resolves to:
/// every one must be public (with `https://` the certificate check does
/// that job: a LAN device cannot show a certificate for the name).
pub fn check_resolved(url: &Url, addrs: &[IpAddr]) -> Result<(), String> {
    if addrs.is_empty() {
        return Err(format!("{url} resolves to no address"));
    }
    for a in addrs {
        if let Some(reason) = rules::non_global_reason(*a) {
            return Err(format!(
                "{url} resolves to {a}, {reason}, not a public server (set sbot.allow_private_pub_urls for a pub on the LAN)"
            ));
        }
    }
    Ok(())
}

/// Marks every pub that claims the same domain as another on the list.
pub fn mark_conflicts(list: &mut [Announcement]) {
    let claims: Vec<(String, PublicKey)> =
        list.iter().map(|a| (a.domain.clone(), a.pub_id)).collect();
    for a in list.iter_mut() {
        a.same_domain_as = claims
            .iter()
            .filter(|(d, id)| *d == a.domain && *id != a.pub_id)
            .map(|(_, id)| *id)
            .collect();
        a.conflict = !a.same_domain_as.is_empty();
    }
}

/// Reads an announcement's content; `author` is the message's author.
pub fn parse_announcement(
    author: &str,
    content: &Value,
    allow_private: bool,
) -> Result<Announcement, String> {
    if content.get("type").and_then(Value::as_str) != Some(ANNOUNCEMENT_TYPE) {
        return Err(format!("not of type {ANNOUNCEMENT_TYPE}"));
    }
    let pub_id: PublicKey = author.parse().map_err(|e| format!("author: {e}"))?;
    let domain = content
        .get("domain")
        .and_then(Value::as_str)
        .ok_or("no `domain` string")?;
    check_domain(domain)?;
    let url = content
        .get("url")
        .and_then(Value::as_str)
        .ok_or("no `url` string")?;
    let url = check_announced_url(url, allow_private)?;
    let ttl = content
        .get("ttl")
        .and_then(Value::as_u64)
        .and_then(|t| u32::try_from(t).ok());
    Ok(Announcement {
        pub_id,
        domain: rules::normalize_domain(domain),
        url,
        ttl,
        origin: Origin::Sbot,
        conflict: false,
        same_domain_as: Vec::new(),
    })
}

/// Keeps each author's latest valid announcement from messages given as
/// `(author, sequence, content)`, in author order. Invalid ones are
/// skipped (and logged), so a pub's broken announcement does not hide its
/// earlier good one only if it is not the latest: the latest valid counts.
pub fn latest_per_author<'a>(
    messages: impl IntoIterator<Item = (&'a str, u64, &'a Value)>,
    allow_private: bool,
) -> Vec<Announcement> {
    let mut latest: HashMap<String, (u64, Announcement)> = HashMap::new();
    for (author, sequence, content) in messages {
        match parse_announcement(author, content, allow_private) {
            Ok(a) => {
                let newer = latest.get(author).map_or(true, |(seq, _)| sequence > *seq);
                if newer {
                    latest.insert(author.to_string(), (sequence, a));
                }
            }
            Err(e) => tracing::debug!(%author, sequence, error = %e, "skipping announcement"),
        }
    }
    let mut list: Vec<Announcement> = latest.into_values().map(|(_, a)| a).collect();
    list.sort_by_key(|a| a.pub_id.to_string());
    list
}

/// The pubs to offer: the configured one (when the config names it
/// completely) first, then the sbot's, without repeating a pub; pubs that
/// claim one domain are marked ([`mark_conflicts`]).
pub fn merge_with_config(config: &Config, from_sbot: Vec<Announcement>) -> Vec<Announcement> {
    let mut list = Vec::new();
    if let Some(p) = config.static_pub() {
        list.push(Announcement {
            pub_id: p.pub_id,
            domain: p.domain,
            url: p.url,
            ttl: None,
            origin: Origin::Config,
            conflict: false,
            same_domain_as: Vec::new(),
        });
    }
    for a in from_sbot {
        if !list.iter().any(|b: &Announcement| b.pub_id == a.pub_id) {
            list.push(a);
        }
    }
    mark_conflicts(&mut list);
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use peach_dyndns_protocol::identity::Keypair;
    use serde_json::json;

    #[test]
    fn announcements_are_checked_and_the_latest_wins() {
        let a = Keypair::generate().id();
        let b = Keypair::generate().id();
        let old = json!({"type":"peach-dyndns","domain":"old.example","url":"http://a/update"});
        let new = json!({"type":"peach-dyndns","domain":"Peach.Dinosaur.is","url":"http://a:8053/update","ttl":60});
        let broken = json!({"type":"peach-dyndns","domain":"x y","url":"http://b/update"});
        let wrong_type = json!({"type":"post","text":"hi"});
        let bad_url = json!({"type":"peach-dyndns","domain":"b.example","url":"file:///etc"});
        let msgs = vec![
            (a.as_str(), 5, &new),
            (a.as_str(), 2, &old),
            (b.as_str(), 1, &broken),
            (b.as_str(), 2, &wrong_type),
            (b.as_str(), 3, &bad_url),
            ("@nope", 1, &new),
        ];
        let list = latest_per_author(msgs, false);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].pub_id.to_string(), a);
        assert_eq!(list[0].domain, "peach.dinosaur.is");
        assert_eq!(list[0].url.as_str(), "http://a:8053/update");
        assert_eq!(list[0].ttl, Some(60));
    }

    #[test]
    fn config_pub_comes_first_and_is_not_repeated() {
        let kp = Keypair::generate();
        let config = Config::from_str(
            &format!(
                "[registration]\npub_id = \"{}\"\nurl = \"http://127.0.0.1:1/update\"\ndomain = \"a.example\"\n\
                 [sbot]\nallow_private_pub_urls = true\n",
                kp.id()
            ),
            std::path::Path::new("t.toml"),
        )
        .expect("config");
        let content = json!({"type":"peach-dyndns","domain":"b.example","url":"http://b/update"});
        let other = Keypair::generate().id();
        let from_sbot = latest_per_author(
            vec![
                (kp.id().as_str(), 1, &content),
                (other.as_str(), 1, &content),
            ],
            false,
        );
        let list = merge_with_config(&config, from_sbot);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].origin, Origin::Config);
        assert_eq!(list[0].domain, "a.example");
        assert_eq!(list[1].pub_id.to_string(), other);
        assert!(!list[0].conflict && !list[1].conflict);
    }

    /// Regression (v1 took any http(s) URL): an announced URL must be
    /// https, or http to a public address, unless the config allows
    /// private ones.
    #[test]
    fn announced_urls_must_be_public() {
        for ok in [
            "https://dyndns.peach.dinosaur.is:8443/update",
            "http://dinosaur.is:8053/update",
            "http://24.12.12.12/update",
            "http://[2a01:4f8::1]:8053/update",
        ] {
            assert!(check_announced_url(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:8053/update",
            "https://127.0.0.1/update",
            "http://192.168.1.1/update",
            "http://10.0.0.1/update",
            "http://[::1]/update",
            "http://[fe80::1]/update",
            "http://169.254.169.254/update",
            "http://localhost/update",
            "http://router.lan/update",
            "http://peach.local/update",
            "http://fritz.box.home.arpa/update",
        ] {
            let err = check_announced_url(bad, false).expect_err(bad);
            assert!(err.contains("allow_private_pub_urls"), "{bad}: {err}");
            assert!(check_announced_url(bad, true).is_ok(), "{bad}");
        }
        let a = Keypair::generate().id();
        let lan =
            json!({"type":"peach-dyndns","domain":"a.example","url":"http://192.168.1.1/update"});
        assert!(latest_per_author(vec![(a.as_str(), 1, &lan)], false).is_empty());
        assert_eq!(
            latest_per_author(vec![(a.as_str(), 1, &lan)], true).len(),
            1
        );
        let url = Url::parse("http://dinosaur.is/update").expect("url");
        assert!(check_resolved(&url, &["24.12.12.12".parse().expect("ip")]).is_ok());
        assert!(check_resolved(
            &url,
            &[
                "24.12.12.12".parse().expect("ip"),
                "127.0.0.1".parse().expect("ip")
            ]
        )
        .is_err());
        assert!(check_resolved(&url, &[]).is_err());
    }

    /// Two pubs that claim one domain are both listed and both marked,
    /// naming each other; a third on another domain is not.
    #[test]
    fn two_pubs_claiming_one_domain_are_both_marked() {
        let (a, b, c) = (
            Keypair::generate().id(),
            Keypair::generate().id(),
            Keypair::generate().id(),
        );
        let same = json!({"type":"peach-dyndns","domain":"peach.dinosaur.is","url":"https://a.example/update"});
        let other = json!({"type":"peach-dyndns","domain":"other.example","url":"https://c.example/update"});
        let from_sbot = latest_per_author(
            vec![
                (a.as_str(), 1, &same),
                (b.as_str(), 1, &same),
                (c.as_str(), 1, &other),
            ],
            false,
        );
        let list = merge_with_config(&Config::default(), from_sbot);
        assert_eq!(list.len(), 3);
        for p in &list {
            let id = p.pub_id.to_string();
            if id == c {
                assert!(!p.conflict && p.same_domain_as.is_empty());
            } else {
                let twin = if id == a { &b } else { &a };
                assert!(p.conflict, "{id}");
                assert_eq!(
                    p.same_domain_as
                        .iter()
                        .map(|k| k.to_string())
                        .collect::<Vec<_>>(),
                    vec![twin.clone()]
                );
            }
        }
        let json = serde_json::to_value(&list).expect("json");
        assert!(json
            .as_array()
            .expect("array")
            .iter()
            .any(|p| p["conflict"] == true));
    }
}
