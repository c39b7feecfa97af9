//! The update pipeline: every check of the design, in its order.
//!
//! size → parse → open seal → verify signature → domain → name rules →
//! IP rules → rate limit → `seq` → social graph → ownership → DNS update →
//! commit registry.
//!
//! A failed request changes nothing: DNS is changed only after every check
//! passed, and the registry is committed only after DNS accepted the change
//! (if the commit then fails, DNS is put back as it was).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peach_dyndns_protocol::message::{Op, UpdateMsg};
use peach_dyndns_protocol::{rules, seal, ErrorCode, ProtocolError};
use serde::Serialize;
use tokio::sync::{Mutex, MutexGuard};

use crate::dns::{NameRecords, ZoneChange};
use crate::graph::Standing;
use crate::registry::Entry;
use crate::State;

/// The answer to an accepted update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateOk {
    /// Always `true`.
    pub ok: bool,
    /// `<name>.<domain>`.
    pub fqdn: String,
    /// The A record now (absent if none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// The AAAA record now (absent if none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    /// TTL of the records.
    pub ttl: u32,
    /// Whether DNS changed.
    pub changed: bool,
    /// The accepted `seq`.
    pub seq: u64,
}

/// A refused request: wire code and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The wire code; the HTTP status follows from it.
    pub code: ErrorCode,
    /// For a person.
    pub message: String,
    /// With `stale_seq` and `invalid_seq`.
    pub last_seq: Option<u64>,
    /// With `invalid_seq`: the largest `seq` accepted now.
    pub max_seq: Option<u64>,
    /// Seconds, for `Retry-After` on 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a wire code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        let retry_after = match code {
            ErrorCode::DnsUnavailable | ErrorCode::GraphUnavailable => Some(30),
            _ => None,
        };
        ApiError {
            code,
            message: message.into(),
            last_seq: None,
            max_seq: None,
            retry_after,
        }
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        self.code.http_status()
    }

    /// `rate_limited` with the wait rounded up to whole seconds.
    pub fn rate_limited(wait: Duration) -> ApiError {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut e = ApiError::new(
            ErrorCode::RateLimited,
            format!("too many requests; try again in {secs} s"),
        );
        e.retry_after = Some(secs.max(1));
        e
    }

    /// A fault of the server itself (its database); 500 `internal`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(ErrorCode::Internal, message);
        e.retry_after = Some(30);
        e
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> ApiError {
        let mut api = ApiError::new(e.code(), e.to_string());
        if let ProtocolError::InvalidSeq {
            last_seq, max_seq, ..
        } = e
        {
            api.last_seq = last_seq;
            api.max_seq = Some(max_seq);
        }
        api
    }
}

/// Striped locks: an update holds the stripe of its key and the stripe of
/// its name, so two updates from one key (the `seq` check) or for one name
/// (ownership) never interleave, while unrelated updates run in parallel.
pub struct Stripes {
    stripes: Vec<Mutex<()>>,
}

/// 256 stripes: collisions only cost a little parallelism.
const STRIPES: usize = 256;

impl Default for Stripes {
    fn default() -> Stripes {
        Stripes {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl Stripes {
    fn index(s: &str) -> usize {
        let mut h = DefaultHasher::new();
        s.hash(&mut h);
        (h.finish() as usize) % STRIPES
    }

    /// Locks the stripes of `key` and `name`, lower index first, so no two
    /// callers can wait on each other in a cycle.
    pub async fn lock(&self, key: &str, name: &str) -> Vec<MutexGuard<'_, ()>> {
        let (a, b) = (Stripes::index(key), Stripes::index(name));
        let mut order = vec![a.min(b)];
        if a != b {
            order.push(a.max(b));
        }
        let mut guards = Vec::with_capacity(2);
        for i in order {
            if let Some(m) = self.stripes.get(i) {
                guards.push(m.lock().await);
            }
        }
        guards
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn stale(last: u64, seq: u64) -> ApiError {
    let mut e = ApiError::new(
        ErrorCode::StaleSeq,
        format!("seq {seq} is not above the last accepted seq {last} for this key"),
    );
    e.last_seq = Some(last);
    e
}

/// `seq` above the key's last (`stale_seq`) and at most a day ahead of
/// `max(last, now)` (`invalid_seq`).
fn check_seq(state: &State, key: &str, seq: u64) -> Result<(), ApiError> {
    let last = state
        .registry
        .last_seq(key)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match last {
        Some(last) if seq <= last => Err(stale(last, seq)),
        _ => Ok(rules::check_seq_bound(seq, last, now_ms())?),
    }
}

/// Handles the body of `POST /update` from `peer`.
pub async fn handle_update(
    state: &State,
    body: &[u8],
    peer: Option<IpAddr>,
) -> Result<UpdateOk, ApiError> {
    // Requests that fail before the signature is verified cost CPU and
    // prove nothing about the sender, so they are limited per address.
    if let Some(ip) = peer {
        state
            .ip_failures
            .check(&ip)
            .map_err(ApiError::rate_limited)?;
    }
    let verified = match seal::open_envelope_with(body, &state.opener) {
        Ok(v) => v,
        Err(e) => {
            if let Some(ip) = peer {
                let _ = state.ip_failures.take(&ip);
            }
            return Err(e.into());
        }
    };
    let msg = verified.msg;
    rules::check_pub(&msg.pub_id, &state.keypair.public())?;
    rules::check_domain(&msg.domain, &state.config.domain)?;
    rules::check_name(&msg.name, &state.config.reserved)?;
    if msg.op == Op::Update {
        rules::check_addresses(msg.ip, msg.ip6, state.config.allow_private_addresses)?;
    }
    // The key's bucket is only looked at here and drawn from after the
    // `seq` check: a replayed envelope (anyone on the path can capture
    // one) must not use up its owner's budget. Replays are charged to the
    // address that sent them instead.
    state
        .key_limits
        .check(&msg.public_key)
        .map_err(ApiError::rate_limited)?;
    let key = msg.public_key.to_string();
    // Cheap early check, so replays never reach sbot; repeated under the
    // lock below, where it counts.
    if let Err(e) = check_seq(state, &key, msg.seq) {
        if let Some(ip) = peer {
            let _ = state.ip_failures.take(&ip);
        }
        return Err(e);
    }
    state
        .key_limits
        .take(&msg.public_key)
        .map_err(ApiError::rate_limited)?;
    match state.graph.standing(&msg.public_key).await {
        Ok(Standing::Followed) => {}
        Ok(Standing::NotFollowed) => {
            return Err(ApiError::new(
                ErrorCode::NotFollowed,
                format!("this pub does not follow {key}; ask the pub for an invite"),
            ))
        }
        Ok(Standing::Blocked) => {
            return Err(ApiError::new(
                ErrorCode::Blocked,
                format!("this pub blocks {key}"),
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "social graph unavailable");
            return Err(ApiError::new(
                ErrorCode::GraphUnavailable,
                format!("the pub cannot check whom it follows right now: {e}"),
            ));
        }
    }
    let _guards = state.locks.lock(&key, &msg.name).await;
    check_seq(state, &key, msg.seq)?;
    let existing = state
        .registry
        .get(&msg.name)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(entry) = &existing {
        if entry.owner != key {
            return Err(ApiError::new(
                ErrorCode::NameTaken,
                format!(
                    "{}.{} belongs to another key",
                    msg.name, state.config.domain
                ),
            ));
        }
    }
    match msg.op {
        Op::Update => apply_update(state, &msg, key, existing).await,
        Op::Release => apply_release(state, &msg, key, existing).await,
        Op::AcmeSet | Op::AcmeClear => Err(ApiError::internal(
            "this server does not serve ACME challenges yet",
        )),
    }
}

fn fqdn(state: &State, name: &str) -> String {
    format!("{name}.{}", state.config.domain)
}

async fn apply_update(
    state: &State,
    msg: &UpdateMsg,
    key: String,
    existing: Option<Entry>,
) -> Result<UpdateOk, ApiError> {
    if existing.is_none() {
        let held = state
            .registry
            .names_of(&key)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let max = state.config.max_names_per_key as usize;
        if held.len() >= max {
            return Err(ApiError::new(
                ErrorCode::TooManyNames,
                format!(
                    "this key already holds {} (the limit is {max}); release one first",
                    held.join(", ")
                ),
            ));
        }
    }
    let now = now_ms();
    let entry = Entry {
        name: msg.name.clone(),
        owner: key,
        ip: msg.ip,
        ip6: msg.ip6,
        ttl: state.config.ttl,
        // A token is kept until the owner sends a new one.
        token_sha256: msg
            .token_sha256
            .clone()
            .or_else(|| existing.as_ref().and_then(|e| e.token_sha256.clone())),
        created_ms: existing.as_ref().map_or(now, |e| e.created_ms),
        updated_ms: now,
    };
    let dns_changed = match &existing {
        Some(old) => old.ip != entry.ip || old.ip6 != entry.ip6 || old.ttl != entry.ttl,
        None => true,
    };
    let registry_changed = dns_changed
        || existing
            .as_ref()
            .is_some_and(|old| old.token_sha256 != entry.token_sha256);
    if dns_changed {
        let change = ZoneChange::Set(records_of(&entry));
        state.dns.apply(&change).await.map_err(|e| {
            tracing::warn!(error = %e, name = %entry.name, "DNS refused an update");
            ApiError::new(
                ErrorCode::DnsUnavailable,
                format!("the DNS server did not accept the change: {e}"),
            )
        })?;
    }
    let committed = if registry_changed {
        state.registry.commit_set(&entry, msg.seq)
    } else {
        state.registry.commit_seq(&entry.owner, msg.seq)
    };
    if let Err(e) = committed {
        if dns_changed {
            restore_dns(state, &entry.name, existing.as_ref()).await;
        }
        return Err(ApiError::internal(e.to_string()));
    }
    tracing::info!(name = %entry.name, ip = ?entry.ip, ip6 = ?entry.ip6, changed = dns_changed, "update accepted");
    Ok(UpdateOk {
        ok: true,
        fqdn: fqdn(state, &entry.name),
        ip: entry.ip,
        ip6: entry.ip6,
        ttl: entry.ttl,
        changed: dns_changed,
        seq: msg.seq,
    })
}

async fn apply_release(
    state: &State,
    msg: &UpdateMsg,
    key: String,
    existing: Option<Entry>,
) -> Result<UpdateOk, ApiError> {
    let changed = existing.is_some();
    if changed {
        let change = ZoneChange::Remove {
            name: msg.name.clone(),
        };
        state.dns.apply(&change).await.map_err(|e| {
            ApiError::new(
                ErrorCode::DnsUnavailable,
                format!("the DNS server did not accept the change: {e}"),
            )
        })?;
    }
    if let Err(e) = state.registry.commit_release(&msg.name, &key, msg.seq) {
        if changed {
            restore_dns(state, &msg.name, existing.as_ref()).await;
        }
        return Err(ApiError::internal(e.to_string()));
    }
    tracing::info!(name = %msg.name, "name released");
    Ok(UpdateOk {
        ok: true,
        fqdn: fqdn(state, &msg.name),
        ip: None,
        ip6: None,
        ttl: state.config.ttl,
        changed,
        seq: msg.seq,
    })
}

/// The DNS records of a registry entry.
pub fn records_of(entry: &Entry) -> NameRecords {
    NameRecords {
        name: entry.name.clone(),
        ip: entry.ip,
        ip6: entry.ip6,
        ttl: entry.ttl,
    }
}

/// Puts DNS back to the registry's state after a failed commit.
async fn restore_dns(state: &State, name: &str, previous: Option<&Entry>) {
    let change = match previous {
        Some(entry) => ZoneChange::Set(records_of(entry)),
        None => ZoneChange::Remove {
            name: name.to_string(),
        },
    };
    if let Err(e) = state.dns.apply(&change).await {
        tracing::error!(error = %e, %name, "could not restore DNS after a failed commit; it is re-applied at the next start");
    }
}
