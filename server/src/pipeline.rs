//! The one pipeline every front door ends in.
//!
//! `POST /update` ([`crate::update`]) and `GET /nic/update`
//! ([`crate::dyndns2`]) each read and authenticate their own input, run the
//! checks that need no lock, and then call [`run`], which does the rest in
//! one place:
//!
//! social graph → lock the key and the name → `seq` (above the
//! last, at most a day ahead) → ownership (and the dyndns2 token) re-checked
//! under the name's lock → the op → DNS write → registry commit → DNS
//! restore if the commit failed (logged, never dropped).
//!
//! The ACME ops take the same road: `acme_set` and `acme_clear` change
//! `_acme-challenge.<name>.<domain>` TXT records (only for the key that
//! holds the name), and the answer is an [`AcmeOk`].
//!
//! A failed request changes nothing: DNS is changed only after every check
//! passed, and the registry is committed only after DNS accepted the change.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use peach_dyndns_protocol::identity::PublicKey;
use peach_dyndns_protocol::{rules, ErrorCode, ProtocolError};
use serde::Serialize;
use subtle::ConstantTimeEq as _;

use crate::dns::{ChallengeChange, ZoneChange};
use crate::graph::Standing;
use crate::metrics::Stage;
use crate::registry::{Entry, StoredChallenge};
use crate::State;

/// What an accepted request answers: the name's records, or its challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Accepted {
    /// `update`, `release`, dyndns2.
    Records(UpdateOk),
    /// `acme_set`, `acme_clear`.
    Challenge(AcmeOk),
}

impl Accepted {
    /// Whether DNS changed (always, for the ACME ops).
    pub fn changed(&self) -> bool {
        match self {
            Accepted::Records(ok) => ok.changed,
            Accepted::Challenge(_) => true,
        }
    }
}

/// The answer to an accepted `acme_set` or `acme_clear`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcmeOk {
    /// Always `true`.
    pub ok: bool,
    /// `_acme-challenge.<name>.<domain>`.
    pub fqdn: String,
    /// The TXT values served now (none after `acme_clear`).
    pub txt: Vec<String>,
    /// When they disappear by themselves (unix seconds; for `acme_clear`
    /// the moment they were removed).
    pub expires_at: u64,
    /// The accepted `seq`.
    pub seq: u64,
}

/// The answer to an accepted request.
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
    /// The accepted `seq` (the key's last one for dyndns2, which has none).
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
    /// Whether the refusal is charged to the sender's address budget:
    /// every refusal the sender caused, before or after the signature (a
    /// replay, a key the pub does not follow, a name owned by another
    /// key…), so refusals cost the sender and not the pub. Not the pub's
    /// own troubles (DNS, the graph, its database) nor the key's own rate
    /// limit.
    pub sender_pays: bool,
}

impl ApiError {
    /// An error with a wire code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        let retry_after = match code {
            ErrorCode::DnsUnavailable | ErrorCode::GraphUnavailable => Some(30),
            _ => None,
        };
        let sender_pays = !matches!(
            code,
            ErrorCode::RateLimited
                | ErrorCode::DnsUnavailable
                | ErrorCode::GraphUnavailable
                | ErrorCode::Internal
        );
        ApiError {
            code,
            message: message.into(),
            last_seq: None,
            max_seq: None,
            retry_after,
            sender_pays,
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

/// How the sender proved it may act for `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A signed message with this `seq` (the replay protection).
    Signed {
        /// The message's `seq`.
        seq: u64,
    },
    /// A dyndns2 token whose SHA-256 is this; it must still be the name's
    /// token, held by `key`, when the name's lock is held.
    Token {
        /// Hex SHA-256 of the password the router sent.
        sha256: String,
    },
}

/// What is asked of the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set the records to exactly these addresses (a signed update).
    Update {
        /// The A record (none: no A record).
        ip: Option<Ipv4Addr>,
        /// The AAAA record (none: no AAAA record).
        ip6: Option<Ipv6Addr>,
        /// A new dyndns2 token hash; `Some("")` withdraws the token, `None`
        /// keeps the one registered.
        token_sha256: Option<String>,
    },
    /// Set the given families and leave the other's record as it is
    /// (dyndns2, where `myip` may name one family only).
    UpdateFamilies {
        /// The new A record, or keep the old.
        ip: Option<Ipv4Addr>,
        /// The new AAAA record, or keep the old.
        ip6: Option<Ipv6Addr>,
    },
    /// Delete the records and give the name up.
    Release,
    /// Set the ACME challenge TXT values.
    AcmeSet(Vec<String>),
    /// Remove the ACME challenge TXT values.
    AcmeClear,
}

/// One request, as a front door hands it to [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The key the request acts for.
    pub key: PublicKey,
    /// The label.
    pub name: String,
    /// How the sender proved it may.
    pub auth: Auth,
    /// What it asks.
    pub action: Action,
}

pub use crate::clock::now_ms;

fn stale(last: u64, seq: u64) -> ApiError {
    let mut e = ApiError::new(
        ErrorCode::StaleSeq,
        format!("seq {seq} is not above the last accepted seq {last} for this key"),
    );
    e.last_seq = Some(last);
    e
}

/// `seq` above the key's last (`stale_seq`) and at most a day ahead of
/// `max(last, now)` (`invalid_seq`). Front doors call it early too, so
/// replays never reach the graph; [`run`] calls it again under the lock,
/// where it counts.
pub fn check_seq(state: &State, key: &str, seq: u64) -> Result<(), ApiError> {
    let last = state
        .registry
        .last_seq(key)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match last {
        Some(last) if seq <= last => Err(stale(last, seq)),
        _ => Ok(rules::check_seq_bound(seq, last, now_ms())?),
    }
}

/// Asks the social graph whether `key` may hold names here; fails closed.
///
/// An answer at hand (cached) costs nothing. A key that holds a name here
/// is asked for at once. A key that holds none (anyone can make a fresh
/// key a second) must find a free slot among a few for new keys, or it is
/// told to come back (503 with `Retry-After`): so a flood of unknown keys
/// never queues the updates of the pub's own Pis behind it on the one
/// sbot connection.
async fn check_graph(state: &State, key: &PublicKey) -> Result<(), ApiError> {
    let standing = match state.graph.known(key) {
        Some(standing) => Ok(standing),
        None => {
            let holds_a_name = !state
                .registry
                .names_of(&key.to_string())
                .map_err(|e| ApiError::internal(e.to_string()))?
                .is_empty();
            let _slot = if holds_a_name {
                None
            } else {
                match state.new_key_lookups.clone().try_acquire_owned() {
                    Ok(slot) => Some(slot),
                    Err(_) => {
                        let mut e = ApiError::new(
                            ErrorCode::GraphUnavailable,
                            "too many new keys are being looked up right now; try again shortly",
                        );
                        e.retry_after = Some(5);
                        // Unlike a graph that is down, this one the sender
                        // causes: strangers must not hold the slots for free.
                        e.sender_pays = true;
                        return Err(e);
                    }
                }
            };
            state.graph.standing(key).await
        }
    };
    match standing {
        Ok(Standing::Followed) => Ok(()),
        Ok(Standing::NotFollowed) => Err(ApiError::new(
            ErrorCode::NotFollowed,
            format!(
                "this pub does not follow {key}; ask the pub for an invite{}",
                lapse_note(state, key, false).await
            ),
        )),
        Ok(Standing::Blocked) => Err(ApiError::new(
            ErrorCode::Blocked,
            format!(
                "this pub blocks {key}{}",
                lapse_note(state, key, true).await
            ),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "social graph unavailable");
            Err(ApiError::new(
                ErrorCode::GraphUnavailable,
                format!("the pub cannot check whom it follows right now: {e}"),
            ))
        }
    }
}

/// For a refused key that holds names here: records the lapse (the sweep
/// would on its next pass) and says when the names stop resolving and when
/// they are freed. Empty for a key that holds none.
async fn lapse_note(state: &State, key: &PublicKey, blocked: bool) -> String {
    let owner = key.to_string();
    let names = match state.registry.names_of(&owner) {
        Ok(names) if !names.is_empty() => names,
        _ => return String::new(),
    };
    let lapse = match state.registry.note_lapse(&owner, blocked, now_ms()).await {
        Ok(lapse) => lapse,
        Err(e) => {
            tracing::warn!(error = %e, "could not record a lapse");
            return String::new();
        }
    };
    let (stops, frees) = crate::sweep::deadlines(&state.config.grace, &lapse);
    let when = |ms: u64| crate::clock::http_date(ms / 1000);
    let stopped = if lapse.suspended_ms.is_some() {
        "stopped resolving at"
    } else {
        "stop resolving at"
    };
    format!(
        "; its names ({}) {stopped} {} and are freed at {} unless the pub follows it again",
        names.join(", "),
        when(stops),
        when(frees)
    )
}

/// Runs a request from the graph check to the commit. See the module doc.
pub async fn run(state: &State, req: Request) -> Result<Accepted, ApiError> {
    check_graph(state, &req.key).await?;
    let key = req.key.to_string();
    let _guards = state.locks.lock(&key, &req.name).await;
    let seq = match &req.auth {
        Auth::Signed { seq } => {
            check_seq(state, &key, *seq)?;
            Some(*seq)
        }
        Auth::Token { .. } => None,
    };
    let existing = state
        .registry
        .get(&req.name)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    check_owner(state, &req, &key, existing.as_ref())?;
    match req.action {
        Action::Update {
            ip,
            ip6,
            token_sha256,
        } => {
            let token = match token_sha256 {
                Some(t) if t.is_empty() => None,
                Some(t) => Some(t),
                None => existing.as_ref().and_then(|e| e.token_sha256.clone()),
            };
            set_records(state, &req.name, key, ip, ip6, token, seq, existing)
                .await
                .map(Accepted::Records)
        }
        Action::UpdateFamilies { ip, ip6 } => {
            let old = existing.as_ref();
            let ip = ip.or_else(|| old.and_then(|e| e.ip));
            let ip6 = ip6.or_else(|| old.and_then(|e| e.ip6));
            let token = old.and_then(|e| e.token_sha256.clone());
            set_records(state, &req.name, key, ip, ip6, token, seq, existing)
                .await
                .map(Accepted::Records)
        }
        Action::Release => release(state, &req.name, key, seq, existing)
            .await
            .map(Accepted::Records),
        Action::AcmeSet(txt) => {
            let seq = seq.expect("invariant: the ACME ops are signed");
            acme_set(state, &req.name, key, txt, Some(seq))
                .await
                .map(Accepted::Challenge)
        }
        Action::AcmeClear => {
            let seq = seq.expect("invariant: the ACME ops are signed");
            acme_clear(state, &req.name, &key, Some(seq))
                .await
                .map(Accepted::Challenge)
        }
    }
}

/// Who may act on the name, checked under its lock: the key that holds it
/// (any key for a free name, except for the ACME ops and dyndns2, which
/// need a name the key already holds), and for dyndns2 the token that is
/// registered now, not the one that was when the request began.
fn check_owner(
    state: &State,
    req: &Request,
    key: &str,
    existing: Option<&Entry>,
) -> Result<(), ApiError> {
    let fqdn = fqdn(state, &req.name);
    let needs_holder = matches!(req.auth, Auth::Token { .. })
        || matches!(req.action, Action::AcmeSet(_) | Action::AcmeClear);
    match existing {
        Some(entry) if entry.owner != key => {
            if needs_holder {
                Err(ApiError::new(
                    ErrorCode::NotRegistered,
                    format!("{fqdn} is not held by this key"),
                ))
            } else {
                Err(ApiError::new(
                    ErrorCode::NameTaken,
                    format!("{fqdn} belongs to another key"),
                ))
            }
        }
        None if needs_holder => Err(ApiError::new(
            ErrorCode::NotRegistered,
            format!("{fqdn} is not registered"),
        )),
        _ => {
            if let (Auth::Token { sha256 }, Some(entry)) = (&req.auth, existing) {
                let matches = entry
                    .token_sha256
                    .as_deref()
                    .is_some_and(|stored| bool::from(stored.as_bytes().ct_eq(sha256.as_bytes())));
                if !matches {
                    return Err(ApiError::new(
                        ErrorCode::BadSignature,
                        format!("the token is not the one registered for {fqdn}"),
                    ));
                }
            }
            Ok(())
        }
    }
}

fn fqdn(state: &State, name: &str) -> String {
    format!("{name}.{}", state.config.domain)
}

fn dns_refused(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::DnsUnavailable,
        format!("the DNS server did not accept the change: {e}"),
    )
}

#[allow(clippy::too_many_arguments)] // one call site per op; a struct would only rename them
async fn set_records(
    state: &State,
    name: &str,
    key: String,
    ip: Option<Ipv4Addr>,
    ip6: Option<Ipv6Addr>,
    token_sha256: Option<String>,
    seq: Option<u64>,
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
        name: name.to_string(),
        owner: key,
        ip,
        ip6,
        ttl: state.config.ttl,
        token_sha256,
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
    if existing.is_none() {
        // A crash between the DNS write and the commit must not leave a
        // record of a name the registry never held (see mark_pending).
        state
            .registry
            .mark_pending(&entry.name)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    if dns_changed {
        let change = ZoneChange::Set(entry.records());
        state
            .metrics
            .timed(Stage::Dns, state.dns.apply(&change))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, name = %entry.name, "DNS refused an update");
                dns_refused(e)
            })?;
    }
    let committed = match (registry_changed, seq) {
        (true, seq) => {
            let commit = state.registry.commit_entry(&entry, seq);
            state.metrics.timed(Stage::Commit, commit).await
        }
        // A no-change update confirms records that are durable already:
        // its `seq` goes with the next commit, unawaited (see note_seq).
        (false, Some(seq)) => {
            state.registry.note_seq(&entry.owner, seq);
            Ok(())
        }
        (false, None) => Ok(()),
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
        seq: last_seq_or(state, &entry.owner, seq),
    })
}

async fn release(
    state: &State,
    name: &str,
    key: String,
    seq: Option<u64>,
    existing: Option<Entry>,
) -> Result<UpdateOk, ApiError> {
    let seq = seq.expect("invariant: only signed requests release a name");
    let changed = existing.is_some();
    if changed {
        let change = ZoneChange::Remove {
            name: name.to_string(),
        };
        state.dns.apply(&change).await.map_err(dns_refused)?;
        // The name's challenge goes with it (the registry's row goes in
        // the release's own transaction).
        if let Err(e) = crate::acme::clear_for_removal(state, name).await {
            restore_dns(state, name, existing.as_ref()).await;
            return Err(dns_refused(e));
        }
    }
    if let Err(e) = state.registry.commit_release(name, &key, seq).await {
        if changed {
            restore_dns(state, name, existing.as_ref()).await;
        }
        return Err(ApiError::internal(e.to_string()));
    }
    tracing::info!(%name, "name released");
    Ok(UpdateOk {
        ok: true,
        fqdn: fqdn(state, name),
        ip: None,
        ip6: None,
        ttl: state.config.ttl,
        changed,
        seq,
    })
}

/// Unix time in whole seconds.
fn now_secs() -> u64 {
    now_ms() / 1000
}

/// The `_acme-challenge.<name>.<domain>` of a label.
fn challenge_fqdn(state: &State, name: &str) -> String {
    format!("{}.{}", crate::dns::CHALLENGE_LABEL, fqdn(state, name))
}

/// `acme_set`: the name's challenge answers exactly `txt` until
/// `acme_lifetime_secs` from now. The intent is noted before DNS changes,
/// so a crash before the commit is put right at the next start. The caller
/// holds the name's lock. `seq` is the request's (none for the server's
/// own challenge, [`crate::own_cert`]).
pub(crate) async fn acme_set(
    state: &State,
    name: &str,
    key: String,
    txt: Vec<String>,
    seq: Option<u64>,
) -> Result<AcmeOk, ApiError> {
    let internal = |e: crate::registry::RegistryError| ApiError::internal(e.to_string());
    let previous = state.registry.challenge(name).map_err(internal)?;
    let challenge = StoredChallenge {
        name: name.to_string(),
        owner: key,
        txt,
        // TTL 60 or the zone's, whichever is lower: a resolver must not
        // keep old values for long when a new order sets new ones.
        ttl: state.config.ttl.min(60),
        expires_at: now_secs().saturating_add(state.config.acme_lifetime_secs),
    };
    state
        .registry
        .note_challenge_intent(name)
        .map_err(internal)?;
    state
        .dns
        .apply_challenge(&ChallengeChange::Set(challenge.records()))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, %name, "DNS refused an ACME challenge");
            dns_refused(e)
        })?;
    if let Err(e) = state.registry.commit_challenge(&challenge, seq) {
        restore_challenge(state, name, previous.as_ref()).await;
        return Err(internal(e));
    }
    tracing::info!(%name, values = challenge.txt.len(), expires_at = challenge.expires_at, "ACME challenge set");
    Ok(AcmeOk {
        ok: true,
        fqdn: challenge_fqdn(state, name),
        txt: challenge.txt,
        expires_at: challenge.expires_at,
        seq: seq.unwrap_or(0),
    })
}

/// `acme_clear`: the name's challenge answers nothing any more (the
/// caller holds the name's lock; `seq` as for [`acme_set`]).
pub(crate) async fn acme_clear(
    state: &State,
    name: &str,
    key: &str,
    seq: Option<u64>,
) -> Result<AcmeOk, ApiError> {
    let internal = |e: crate::registry::RegistryError| ApiError::internal(e.to_string());
    let previous = state.registry.challenge(name).map_err(internal)?;
    state
        .registry
        .note_challenge_intent(name)
        .map_err(internal)?;
    state
        .dns
        .apply_challenge(&ChallengeChange::Clear {
            name: name.to_string(),
        })
        .await
        .map_err(dns_refused)?;
    if let Err(e) = state
        .registry
        .commit_challenge_clear(name, seq.map(|seq| (key, seq)), None)
    {
        restore_challenge(state, name, previous.as_ref()).await;
        return Err(internal(e));
    }
    tracing::info!(%name, "ACME challenge cleared");
    Ok(AcmeOk {
        ok: true,
        fqdn: challenge_fqdn(state, name),
        txt: Vec::new(),
        expires_at: now_secs(),
        seq: seq.unwrap_or(0),
    })
}

/// Puts a challenge in DNS back to the registry's after a failed commit
/// (nothing, if it had expired). A failure here is logged; the intent
/// left in the registry makes the next start put it right.
async fn restore_challenge(state: &State, name: &str, previous: Option<&StoredChallenge>) {
    let change = match previous {
        Some(c) if c.expires_at > now_secs() => ChallengeChange::Set(c.records()),
        _ => ChallengeChange::Clear {
            name: name.to_string(),
        },
    };
    if let Err(e) = state.dns.apply_challenge(&change).await {
        tracing::error!(error = %e, %name, "could not restore the ACME challenge after a failed commit; it is put right at the next start");
    }
}

/// The `seq` to report: the request's, or for dyndns2 the key's last.
fn last_seq_or(state: &State, key: &str, seq: Option<u64>) -> u64 {
    seq.or_else(|| state.registry.last_seq(key).ok().flatten())
        .unwrap_or(0)
}

/// Puts DNS back to the registry's state after a failed commit. A failure
/// here is logged as an error (the start-up re-apply puts it right).
async fn restore_dns(state: &State, name: &str, previous: Option<&Entry>) {
    let change = match previous {
        Some(entry) => ZoneChange::Set(entry.records()),
        None => ZoneChange::Remove {
            name: name.to_string(),
        },
    };
    if let Err(e) = state.dns.apply(&change).await {
        tracing::error!(error = %e, %name, "could not restore DNS after a failed commit; it is re-applied at the next start");
    }
}
