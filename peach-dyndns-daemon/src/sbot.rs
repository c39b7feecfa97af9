//! The real [`PubDirectory`]: the Pi's local sbot over muxrpc
//! (`peach-dyndns-sbot`), connected as the sbot's own identity (the secret
//! the daemon signs with), one short connection per call.
//!
//! Announcements are listed only from authors the Pi follows
//! (`friends.isFollowing` from the Pi's id to the author, asked per author;
//! a failed call fails the whole listing, never lets an author through).
//! An `http://` URL whose host is a name is resolved, and dropped when it
//! resolves to a non-public address (unless `sbot.allow_private_pub_urls`).

use std::path::PathBuf;

use peach_dyndns_sbot::{Sbot, SbotConfig as MuxConfig};
use serde_json::Value;

use crate::config::SbotConfig;
use crate::directory::{
    check_resolved, latest_per_author, Announcement, DirectoryError, PubDirectory,
    ANNOUNCEMENT_TYPE,
};
use crate::secret::load_secret;
use crate::BoxFuture;

/// The local sbot, reached at `config.address`.
#[derive(Debug, Clone)]
pub struct SbotDirectory {
    /// Address and timeout.
    config: SbotConfig,
    /// The sbot's secret: the Pi's identity, whom the sbot treats as its
    /// owner.
    secret_path: PathBuf,
}

/// An invite code split up: `host:port:@key~seed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The pub's host.
    pub host: String,
    /// The pub's port.
    pub port: u16,
    /// The pub's feed id.
    pub key: String,
}

/// Reads an invite code (`host:port:@key.ed25519~seed`).
pub fn parse_invite(code: &str) -> Result<Invite, String> {
    let code = code.trim();
    let (addr, _seed) = code
        .split_once('~')
        .ok_or("an invite looks like host:port:@key.ed25519~seed (no `~`)")?;
    let (host_port, key) = addr
        .rsplit_once(":@")
        .ok_or("an invite looks like host:port:@key.ed25519~seed (no `:@`)")?;
    let (host, port) = host_port.rsplit_once(':').ok_or("the invite has no port")?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    let key = format!("@{key}");
    key.parse::<peach_dyndns_protocol::identity::PublicKey>()
        .map_err(|e| format!("the invite's pub key: {e}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("the invite has no host".into());
    }
    Ok(Invite {
        host: host.to_string(),
        port,
        key,
    })
}

impl SbotDirectory {
    /// A directory for the sbot at `config.address`, connecting as the
    /// identity in `secret_path`.
    pub fn new(config: SbotConfig, secret_path: PathBuf) -> SbotDirectory {
        SbotDirectory {
            config,
            secret_path,
        }
    }

    fn err(&self, detail: impl std::fmt::Display) -> DirectoryError {
        DirectoryError::Sbot {
            address: self.config.address.to_string(),
            detail: detail.to_string(),
        }
    }

    /// Connects as the Pi's identity; also returns that identity's id.
    async fn connect(&self) -> Result<(Sbot, String), DirectoryError> {
        let keypair = load_secret(&self.secret_path).map_err(|e| self.err(e))?;
        let addr = tokio::net::lookup_host(self.config.address.as_str())
            .await
            .map_err(|e| self.err(e))?
            .next()
            .ok_or_else(|| self.err("the address resolves to nothing"))?;
        let mux = MuxConfig::new(addr, keypair.id());
        let sbot = Sbot::connect(&mux, keypair.signing_key(), self.config.timeout())
            .await
            .map_err(|e| self.err(e))?;
        Ok((sbot, keypair.id()))
    }

    async fn read_announcements(&self) -> Result<Vec<Announcement>, DirectoryError> {
        let (sbot, me) = self.connect().await?;
        let result = self.followed_announcements(&sbot, &me).await;
        let _ = sbot.close().await;
        let list = result?;
        if self.config.allow_private_pub_urls {
            return Ok(list);
        }
        let mut public = Vec::with_capacity(list.len());
        for a in list {
            match self.check_host(&a).await {
                Ok(()) => public.push(a),
                Err(e) => tracing::warn!(pub_id = %a.pub_id, error = %e, "skipping announcement"),
            }
        }
        Ok(public)
    }

    /// Each author's latest valid announcement, kept only when the Pi
    /// (`me`) follows the author.
    async fn followed_announcements(
        &self,
        sbot: &Sbot,
        me: &str,
    ) -> Result<Vec<Announcement>, DirectoryError> {
        let messages = sbot
            .messages_by_type(ANNOUNCEMENT_TYPE)
            .await
            .map_err(|e| self.err(e))?;
        let triples: Vec<(&str, u64, &Value)> = messages
            .iter()
            .filter_map(|m| {
                let value = m.get("value")?;
                Some((
                    value.get("author")?.as_str()?,
                    value.get("sequence")?.as_u64()?,
                    value.get("content")?,
                ))
            })
            .collect();
        let mut followed = Vec::new();
        for a in latest_per_author(triples, self.config.allow_private_pub_urls) {
            let author = a.pub_id.to_string();
            if sbot
                .is_following(me, &author)
                .await
                .map_err(|e| self.err(e))?
            {
                followed.push(a);
            } else {
                tracing::info!(%author, "skipping the announcement of a pub this Pi does not follow");
            }
        }
        Ok(followed)
    }

    /// An `http://` URL with a host name must resolve to public addresses
    /// only. (The name is resolved again when the update is sent; see
    /// docs/daemon.md on what that leaves open.)
    async fn check_host(&self, a: &Announcement) -> Result<(), String> {
        if a.url.scheme() != "http" {
            return Ok(());
        }
        let Some(host) = a.url.host_str() else {
            return Err(format!("{} has no host", a.url));
        };
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if literal.parse::<std::net::IpAddr>().is_ok() {
            // Checked when the announcement was read.
            return Ok(());
        }
        let port = a.url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<std::net::IpAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("{} does not resolve: {e}", a.url))?
            .map(|s| s.ip())
            .collect();
        check_resolved(&a.url, &addrs)
    }

    async fn accept(&self, code: &str) -> Result<(), DirectoryError> {
        let invite = parse_invite(code).map_err(DirectoryError::Invite)?;
        let (sbot, _me) = self.connect().await?;
        // ssb-server 16 crashes in its gossip scheduler a few seconds after
        // `invite.accept` unless it already knows the pub's address
        // (FIELD-NOTES "Trap 1"): tell it first.
        if let Err(e) = sbot
            .gossip_add(&invite.host, invite.port, &invite.key)
            .await
        {
            tracing::warn!(error = %e, "gossip.add before the invite failed; accepting anyway");
        }
        let result = sbot
            .invite_accept(code.trim())
            .await
            .map_err(|e| DirectoryError::Invite(e.to_string()));
        let _ = sbot.close().await;
        result
    }
}

impl PubDirectory for SbotDirectory {
    fn announcements(&self) -> BoxFuture<'_, Result<Vec<Announcement>, DirectoryError>> {
        Box::pin(self.read_announcements())
    }

    fn accept_invite<'a>(&'a self, invite: &'a str) -> BoxFuture<'a, Result<(), DirectoryError>> {
        Box::pin(self.accept(invite))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invites_are_split_and_checked() {
        let key = peach_dyndns_protocol::identity::Keypair::generate().id();
        let code = format!("127.0.0.1:8008:{key}~abc123=");
        assert_eq!(
            parse_invite(&code),
            Ok(Invite {
                host: "127.0.0.1".into(),
                port: 8008,
                key: key.clone()
            })
        );
        let code = format!("dinosaur.is:8008:{key}~seed");
        assert_eq!(
            parse_invite(&code).map(|i| i.host),
            Ok("dinosaur.is".into())
        );
        for bad in [
            "hello".to_string(),
            format!("127.0.0.1:8008:{key}"),
            format!("127.0.0.1:{key}~s"),
            "127.0.0.1:8008:@nope.ed25519~s".to_string(),
            format!(":8008:{key}~s"),
        ] {
            assert!(parse_invite(&bad).is_err(), "{bad}");
        }
    }
}
