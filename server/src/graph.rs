//! Social graph backends: does the pub follow this key, or block it?
//!
//! `ssb` asks the pub's own ssb-server over muxrpc (`friends.isFollowing`
//! and `friends.isBlocking` from the pub towards the key), caching answers
//! briefly, and fails closed: if sbot cannot be asked, the update is refused
//! with `graph_unavailable` and nothing changes. `allowlist` reads the keys
//! from the config.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use peach_dyndns_protocol::identity::PublicKey;
use peach_dyndns_sbot::{Sbot, SbotConfig, SbotError};
use tokio::time::Instant;

use crate::dns::BoxFut;

/// Where a key stands with the pub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The pub follows the key: updates are accepted.
    Followed,
    /// The pub does not follow it.
    NotFollowed,
    /// The pub blocks it.
    Blocked,
}

/// The graph could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("cannot ask ssb-server at {addr}: {source}")]
pub struct GraphError {
    /// sbot's address.
    pub addr: SocketAddr,
    /// What went wrong.
    #[source]
    pub source: SbotError,
}

/// Something that knows whom the pub follows.
pub trait SocialGraph: Send + Sync {
    /// Where `key` stands with the pub.
    fn standing<'a>(&'a self, key: &'a PublicKey) -> BoxFut<'a, Result<Standing, GraphError>>;

    /// A short name for logs and `/health`.
    fn kind(&self) -> &'static str;

    /// The answer for `key` if it is at hand without asking anyone (a
    /// cache, a list in memory): the pipeline lets such lookups through
    /// without counting them against the lookups of new keys.
    fn known(&self, _key: &PublicKey) -> Option<Standing> {
        None
    }
}

/// Keys listed in the config.
pub struct Allowlist {
    keys: HashSet<PublicKey>,
}

impl Allowlist {
    /// From parsed keys.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Allowlist {
        Allowlist {
            keys: keys.into_iter().collect(),
        }
    }
}

impl SocialGraph for Allowlist {
    fn standing<'a>(&'a self, key: &'a PublicKey) -> BoxFut<'a, Result<Standing, GraphError>> {
        let standing = self.known(key);
        Box::pin(async move { Ok(standing.unwrap_or(Standing::NotFollowed)) })
    }

    fn known(&self, key: &PublicKey) -> Option<Standing> {
        Some(if self.keys.contains(key) {
            Standing::Followed
        } else {
            Standing::NotFollowed
        })
    }

    fn kind(&self) -> &'static str {
        "allowlist"
    }
}

/// The pub's ssb-server, over muxrpc, with a short cache.
pub struct SsbGraph {
    cfg: SbotConfig,
    /// The pub's own key: ssb-server lets its own identity make every call.
    key: SigningKey,
    /// The pub's id, the `source` of `isFollowing`.
    pub_id: String,
    /// How long an answer is believed.
    cache_for: Duration,
    /// How long one call to sbot may take before the update gets 503.
    timeout: Duration,
    cache: Mutex<HashMap<PublicKey, (Instant, Standing)>>,
    /// One connection, made on first use and again after an error.
    conn: tokio::sync::Mutex<Option<Sbot>>,
}

impl SsbGraph {
    /// A graph asking the sbot at `addr` (whose id is `server_id`) as `key`.
    pub fn new(
        addr: SocketAddr,
        server_id: String,
        key: SigningKey,
        cache_for: Duration,
    ) -> SsbGraph {
        let pub_id = PublicKey::from(key.verifying_key()).to_string();
        SsbGraph {
            cfg: SbotConfig::new(addr, server_id),
            key,
            pub_id,
            cache_for,
            timeout: Duration::from_secs(3),
            cache: Mutex::new(HashMap::new()),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    async fn ask(&self, key: &PublicKey) -> Result<Standing, SbotError> {
        let mut guard = self.conn.lock().await;
        let sbot = match guard.take() {
            Some(sbot) => sbot,
            None => Sbot::connect(&self.cfg, &self.key, self.timeout).await?,
        };
        let dest = key.to_string();
        let result = async {
            if sbot.is_blocking(&self.pub_id, &dest).await? {
                return Ok(Standing::Blocked);
            }
            Ok(if sbot.is_following(&self.pub_id, &dest).await? {
                Standing::Followed
            } else {
                Standing::NotFollowed
            })
        }
        .await;
        // Keep a connection that worked; drop one that failed, so the next
        // request reconnects.
        if result.is_ok() {
            *guard = Some(sbot);
        }
        result
    }
}

impl SocialGraph for SsbGraph {
    fn known(&self, key: &PublicKey) -> Option<Standing> {
        let now = Instant::now();
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (at, standing) = cache.get(key).copied()?;
        (now.saturating_duration_since(at) < self.cache_for).then_some(standing)
    }

    fn standing<'a>(&'a self, key: &'a PublicKey) -> BoxFut<'a, Result<Standing, GraphError>> {
        Box::pin(async move {
            let now = Instant::now();
            if let Some(standing) = self.known(key) {
                return Ok(standing);
            }
            let standing = self.ask(key).await.map_err(|source| GraphError {
                addr: self.cfg.addr,
                source,
            })?;
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() > 10_000 {
                cache.retain(|_, (at, _)| now.saturating_duration_since(*at) < self.cache_for);
            }
            cache.insert(*key, (now, standing));
            Ok(standing)
        })
    }

    fn kind(&self) -> &'static str {
        "ssb"
    }
}
