//! [`State`]: everything a request needs, shared by all of them.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use peach_dyndns_protocol::identity::{Keypair, PublicKey};
use peach_dyndns_protocol::seal::Opener;

use crate::addr::source_of;
use crate::config::Config;
use crate::dns::{ChallengeChange, ZoneBackend, ZoneChange};
use crate::graph::SocialGraph;
use crate::locks::Locks;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::registry::{Registry, RegistryError};

/// Everything a request needs, shared by all of them.
pub struct State {
    /// The validated config.
    pub config: Config,
    /// The pub's keypair: updates are sealed to it.
    pub keypair: Keypair,
    /// Opens sealed updates with the pub's X25519 keys, derived once.
    pub opener: Opener,
    /// The name registry.
    pub registry: Registry,
    /// Where DNS changes go.
    pub dns: Arc<dyn ZoneBackend>,
    /// Who may update.
    pub graph: Arc<dyn SocialGraph>,
    /// Authenticated requests per key.
    pub key_limits: RateLimiter<PublicKey>,
    /// Refused requests per source (address, or /64 for IPv6); use
    /// [`State::failures_left`] and [`State::charge_failure`].
    pub ip_failures: RateLimiter<IpAddr>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Per key and per name locks of the pipeline.
    pub locks: Locks,
    /// Slots for graph lookups of keys that hold no name here (see
    /// `pipeline::check_graph`).
    pub new_key_lookups: Arc<Semaphore>,
}

/// Graph lookups of keys that hold no name here that may be in flight at
/// once. Two keep sbot busy without letting strangers queue the pub's own
/// Pis behind them.
const NEW_KEY_LOOKUPS: usize = 2;

impl State {
    /// Puts the parts together.
    pub fn new(
        config: Config,
        keypair: Keypair,
        registry: Registry,
        dns: Arc<dyn ZoneBackend>,
        graph: Arc<dyn SocialGraph>,
    ) -> State {
        let rl = config.rate_limit.clone();
        State {
            key_limits: RateLimiter::new(rl.per_key_per_minute, rl.per_key_burst),
            // Failures get a burst as large as the minute's budget: a
            // misconfigured client finds out quickly, a flood is cut off.
            ip_failures: RateLimiter::new(
                rl.failures_per_ip_per_minute,
                rl.failures_per_ip_per_minute,
            ),
            config,
            opener: Opener::new(&keypair),
            keypair,
            registry,
            dns,
            graph,
            metrics: Metrics::default(),
            locks: Locks::default(),
            new_key_lookups: Arc::new(Semaphore::new(NEW_KEY_LOOKUPS)),
        }
    }

    /// Whether `ip`'s source (its address, or its /64) may still fail;
    /// on refusal, how long until it may.
    pub fn failures_left(&self, ip: IpAddr) -> Result<(), Duration> {
        self.ip_failures.check(&source_of(ip))
    }

    /// Charges a refused request to `ip`'s source.
    pub fn charge_failure(&self, ip: IpAddr) {
        let _ = self.ip_failures.take(&source_of(ip));
    }

    /// The announcement: what `announce` publishes on SSB and
    /// `/.well-known/peach-dyndns` serves.
    pub fn announcement(&self) -> serde_json::Value {
        self.config.announcement(&self.keypair.id())
    }

    /// Writes every registered name to DNS again (at start, so a change
    /// that reached the registry but not DNS, or a DNS server that lost its
    /// zone, is put right). Reads the registry in pages of
    /// [`REAPPLY_PAGE`] names, so memory stays flat however many there are.
    pub async fn reapply_registry(&self) -> Result<usize, ReapplyError> {
        let mut done = 0usize;
        let mut after: Option<String> = None;
        loop {
            let entries = self.registry.page(after.as_deref(), REAPPLY_PAGE)?;
            let Some(last) = entries.last() else { break };
            after = Some(last.name.clone());
            let changes: Vec<ZoneChange> = entries
                .iter()
                .map(|entry| ZoneChange::Set(entry.records()))
                .collect();
            // One batch per page: the embedded backend applies it under one
            // lock with one serial bump; the others send one change after
            // another.
            self.dns
                .apply_all(&changes)
                .await
                .map_err(|e| ReapplyError::Dns {
                    names: done + entries.len(),
                    message: e.to_string(),
                })?;
            done += entries.len();
        }
        if done == 0 {
            // An empty registry is applied too: the embedded zone serves
            // transfers and starts its NOTIFY senders only once it was.
            self.dns
                .apply_all(&[])
                .await
                .map_err(|e| ReapplyError::Dns {
                    names: 0,
                    message: e.to_string(),
                })?;
        }
        // New names whose DNS write a crash cut off before the commit:
        // their records go (a removal of a name DNS lacks changes nothing).
        let orphans = self.registry.pending_orphans()?;
        if !orphans.is_empty() {
            let removals: Vec<ZoneChange> = orphans
                .iter()
                .map(|name| ZoneChange::Remove { name: name.clone() })
                .collect();
            self.dns
                .apply_all(&removals)
                .await
                .map_err(|e| ReapplyError::Dns {
                    names: orphans.len(),
                    message: e.to_string(),
                })?;
            tracing::info!(names = ?orphans, "removed DNS records of names a crash left uncommitted");
        }
        self.remove_strays().await?;
        self.registry.clear_pending().await?;
        Ok(done)
    }

    /// Removes the records of dynamic-looking names the registry does not
    /// hold, which no pending note covers (left by an older version, or
    /// added by hand): the backend reads the zone back
    /// ([`ZoneBackend::dynamic_labels`]), reserved labels (built-in,
    /// configured, the zone's own) are left out, then every registered name.
    /// A zone that cannot be read or a removal that fails is logged and the
    /// start goes on: the records only stay as they were. Returns how many
    /// labels lost records.
    async fn remove_strays(&self) -> Result<usize, ReapplyError> {
        let mut labels = match self.dns.dynamic_labels().await {
            Ok(Some(labels)) => labels,
            Ok(None) => return Ok(0),
            Err(e) => {
                tracing::warn!(
                    backend = self.dns.kind(),
                    error = %e,
                    "cannot read the zone back: records of names the registry does not hold \
                     stay in DNS"
                );
                return Ok(0);
            }
        };
        let reserved = &self.config.reserved;
        labels.retain(|label| peach_dyndns_protocol::rules::check_name(label, reserved).is_ok());
        let mut after: Option<String> = None;
        while !labels.is_empty() {
            let entries = self.registry.page(after.as_deref(), REAPPLY_PAGE)?;
            let Some(last) = entries.last() else { break };
            after = Some(last.name.clone());
            for entry in &entries {
                labels.remove(&entry.name);
            }
        }
        if labels.is_empty() {
            return Ok(0);
        }
        let removals: Vec<ZoneChange> = labels
            .addresses
            .iter()
            .map(|name| ZoneChange::Remove { name: name.clone() })
            .collect();
        if let Err(e) = self.dns.apply_all(&removals).await {
            tracing::warn!(error = %e, names = ?labels.addresses, "cannot remove the records of names the registry does not hold");
            return Ok(0);
        }
        for name in &labels.challenges {
            let clear = ChallengeChange::Clear { name: name.clone() };
            if let Err(e) = self.dns.apply_challenge(&clear).await {
                tracing::warn!(error = %e, name, "cannot remove an ACME challenge the registry does not hold");
                return Ok(labels.addresses.len());
            }
        }
        tracing::info!(
            addresses = ?labels.addresses,
            challenges = ?labels.challenges,
            "removed DNS records of names the registry does not hold"
        );
        Ok(labels.addresses.union(&labels.challenges).count())
    }
}

/// Names the start-up re-apply reads and applies at a time.
pub const REAPPLY_PAGE: u32 = 1000;

/// Re-applying the registry to DNS failed.
#[derive(Debug, thiserror::Error)]
pub enum ReapplyError {
    /// The registry could not be read.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The DNS backend refused the records.
    #[error("re-applying the registry to DNS failed at or before name {names}: {message}")]
    Dns {
        /// How many names had been applied, counting the page that failed.
        names: usize,
        /// The backend's error.
        message: String,
    },
}
