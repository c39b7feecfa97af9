//! Where pubs come from: their `peach-dyndns` announcements in the Pi's
//! local sbot, or the config. Also accepting an SSB invite, which makes the
//! pub follow the Pi.
//!
//! An announcement is a message of type `peach-dyndns` whose author is the
//! pub: `{"type":"peach-dyndns","domain":"peach.dinosaur.is",
//! "url":"http://dinosaur.is:8053/update","ttl":60}`. Its author is the key
//! updates are sealed to; only each pub's latest announcement counts.

use std::collections::HashMap;

use peach_dyndns_protocol::identity::PublicKey;
use peach_dyndns_protocol::rules;
use reqwest::Url;
use serde::Serialize;
use serde_json::Value;

use crate::config::{check_domain, check_http_url, Config};
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

/// Reads an announcement's content; `author` is the message's author.
pub fn parse_announcement(author: &str, content: &Value) -> Result<Announcement, String> {
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
    let url = check_http_url(url)?;
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
    })
}

/// Keeps each author's latest valid announcement from messages given as
/// `(author, sequence, content)`, in author order. Invalid ones are
/// skipped (and logged), so a pub's broken announcement does not hide its
/// earlier good one only if it is not the latest: the latest valid counts.
pub fn latest_per_author<'a>(
    messages: impl IntoIterator<Item = (&'a str, u64, &'a Value)>,
) -> Vec<Announcement> {
    let mut latest: HashMap<String, (u64, Announcement)> = HashMap::new();
    for (author, sequence, content) in messages {
        match parse_announcement(author, content) {
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
/// completely) first, then the sbot's, without repeating a pub.
pub fn merge_with_config(config: &Config, from_sbot: Vec<Announcement>) -> Vec<Announcement> {
    let mut list = Vec::new();
    if let Some(p) = config.static_pub() {
        list.push(Announcement {
            pub_id: p.pub_id,
            domain: p.domain,
            url: p.url,
            ttl: None,
            origin: Origin::Config,
        });
    }
    for a in from_sbot {
        if !list.iter().any(|b: &Announcement| b.pub_id == a.pub_id) {
            list.push(a);
        }
    }
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
        let list = latest_per_author(msgs);
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
                "[registration]\npub_id = \"{}\"\nurl = \"http://127.0.0.1:1/update\"\ndomain = \"a.example\"\n",
                kp.id()
            ),
            std::path::Path::new("t.toml"),
        )
        .expect("config");
        let content = json!({"type":"peach-dyndns","domain":"b.example","url":"http://b/update"});
        let other = Keypair::generate().id();
        let from_sbot = latest_per_author(vec![
            (kp.id().as_str(), 1, &content),
            (other.as_str(), 1, &content),
        ]);
        let list = merge_with_config(&config, from_sbot);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].origin, Origin::Config);
        assert_eq!(list[0].domain, "a.example");
        assert_eq!(list[1].pub_id.to_string(), other);
    }
}
