//! The update loop: check every `check_interval`, send a signed, sealed
//! update only when something changed (or the daily refresh is due), back
//! off on failure, park on refusals that retrying cannot fix, and check the
//! result in the pub's DNS.
//!
//! All I/O goes through the traits in [`Services`], so the loop's tests run
//! it on tokio's paused clock with fakes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use peach_dyndns_protocol::identity::{Keypair, PublicKey};
use peach_dyndns_protocol::message::{Op, UpdateMsg};
use peach_dyndns_protocol::rules::{believable_last_seq, max_seq, next_seq};
use peach_dyndns_protocol::seal::seal_update;
use peach_dyndns_protocol::ErrorCode;
use reqwest::Url;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::{max_interval, Config};
use crate::directory::{DirectoryError, PubDirectory};
use crate::dns::DnsCheck;
use crate::events::EventKind;
use crate::ip::{Addresses, Discover, PubIp};
use crate::pubapi::{ip_url, Accepted, PubApi, UpdateError, MAX_RETRY_AFTER};
use crate::secret::load_secret;
use crate::state::{LastResult, State, StateStore};
use crate::status::{Phase, Problem, Registered, Status};

/// After an accepted update whose records DNS does not show yet, the next
/// check comes this soon, so the panel turns green within seconds.
const VERIFY_RETRY: Duration = Duration::from_secs(5);
/// How long after an accepted update DNS may lag before the status turns
/// to `error` (BIND applies an update before it answers it, so a minute is
/// generous; secondaries may take a little longer).
const VERIFY_WINDOW: Duration = Duration::from_secs(120);
/// On shutdown, how long the request in flight may take to finish; the
/// whole daemon must stop within a second.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(700);
/// How long a pub's announcement read from the local sbot is reused before
/// the sbot is asked again. A pub rarely moves; asking every check would
/// cost a handshake a minute. A failed update also forgets it.
const ANNOUNCEMENT_REUSE: Duration = Duration::from_secs(60 * 60);

/// Scales a backoff delay by a random factor (injected so tests are exact).
pub type Jitter = Arc<dyn Fn(Duration) -> Duration + Send + Sync>;
/// The wall clock in Unix milliseconds (injected so tests are exact).
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Everything the loop talks to.
#[derive(Clone)]
pub struct Services {
    /// Address discovery.
    pub discover: Arc<dyn Discover>,
    /// The pub's HTTP API.
    pub pub_api: Arc<dyn PubApi>,
    /// The DNS check.
    pub dns: Arc<dyn DnsCheck>,
    /// Pub announcements and invites.
    pub directory: Arc<dyn PubDirectory>,
    /// Backoff jitter.
    pub jitter: Jitter,
    /// Wall clock (seq and the times in the status).
    pub clock: WallClock,
}

/// The default jitter: a delay between 75 % and 100 % of the schedule, so
/// Pis that failed together do not retry together, and never later than
/// the documented schedule.
pub fn random_jitter() -> Jitter {
    Arc::new(|d: Duration| {
        use rand_core::RngCore as _;
        let r = rand_core::OsRng.next_u32() as f64 / f64::from(u32::MAX);
        d.mul_f64(1.0 - 0.25 * r)
    })
}

/// `now + d` for a delay that may come from outside (config, `Retry-After`):
/// clamped to the longest interval first, so it can never overflow.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d.min(max_interval()))
        .expect("invariant: a week after now is a valid Instant")
}

/// The exponential backoff before jitter: `min · 2^(failures-1)`, capped at
/// `max`.
pub fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let shift = failures.saturating_sub(1).min(30);
    min.saturating_mul(1u32 << shift).min(max)
}

/// Requests from the RPC side.
#[derive(Debug)]
pub enum Command {
    /// Check and send now, even if nothing changed and even when parked;
    /// the status after the check is sent back.
    UpdateNow(oneshot::Sender<Status>),
    /// Give up the name this Pi holds (from the state file) at its pub;
    /// the status after it, or why it failed, is sent back.
    Release(oneshot::Sender<Result<Status, String>>),
}

/// When the loop wakes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// At this instant.
    At(Instant),
    /// Only on a config change or a command.
    Wait,
}

/// The pub an update goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    pub_id: PublicKey,
    url: Url,
    domain: String,
}

/// Why a check did not end with the pub holding our addresses: a type, so
/// what is retried, what parks and what counts as "sent" is decided on
/// variants, never on the text of a code.
#[derive(Debug, Clone)]
enum Failure {
    /// The SSB secret could not be read.
    Secret(String),
    /// The local sbot could not be asked.
    Sbot(String),
    /// No announcement from the configured pub.
    NoPub(String),
    /// No acceptable address.
    NoAddress(String),
    /// The update (or the release before it) went out and failed.
    Update {
        /// What it was, for a person (`releasing eb4890.…`), if not the
        /// update itself.
        context: Option<String>,
        /// How it failed.
        error: UpdateError,
    },
    /// The pub said its last seq is `theirs`, more than a day ahead of our
    /// clock: not believed, and retrying would only hear it again.
    SeqNotBelieved {
        /// Where.
        url: String,
        /// What it claimed.
        theirs: u64,
    },
}

impl Failure {
    fn update(error: UpdateError) -> Failure {
        Failure::Update {
            context: None,
            error,
        }
    }

    fn problem(&self) -> Problem {
        match self {
            Failure::Secret(_) => Problem::Secret,
            Failure::Sbot(_) => Problem::Sbot,
            Failure::NoPub(_) => Problem::NoPub,
            Failure::NoAddress(_) => Problem::NoAddress,
            Failure::Update { error, .. } => match error {
                UpdateError::Unreachable { .. } => Problem::Unreachable,
                UpdateError::Refused { code, .. } => Problem::Refused(*code),
                UpdateError::BadAnswer { .. } => Problem::BadAnswer,
            },
            Failure::SeqNotBelieved { .. } => Problem::SeqNotBelieved,
        }
    }

    /// Whether an update was sent (so the pub's answer is the last result).
    fn update_sent(&self) -> bool {
        matches!(
            self,
            Failure::Update { .. } | Failure::SeqNotBelieved { .. }
        )
    }

    /// Whether retrying later may succeed without a config change.
    fn retryable(&self) -> bool {
        match self {
            Failure::Secret(_) | Failure::Sbot(_) | Failure::NoPub(_) | Failure::NoAddress(_) => {
                true
            }
            Failure::Update { error, .. } => error.is_retryable(),
            Failure::SeqNotBelieved { .. } => false,
        }
    }

    /// The delay the pub asked for, at most a day.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Update { error, .. } => error.retry_after().map(|d| d.min(MAX_RETRY_AFTER)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Secret(m) | Failure::Sbot(m) | Failure::NoPub(m) | Failure::NoAddress(m) => {
                f.write_str(m)
            }
            Failure::Update {
                context: Some(c),
                error,
            } => write!(f, "{c}: {error}"),
            Failure::Update {
                context: None,
                error,
            } => write!(f, "{error}"),
            Failure::SeqNotBelieved { url, theirs } => write!(
                f,
                "the pub at {url} says its last seq for this key is {theirs}, more than a day \
                 ahead of this Pi's clock; not believed (a broken or hostile pub, or this \
                 Pi's clock is far behind)"
            ),
        }
    }
}

/// The loop's state between checks.
pub struct Updater {
    /// The traits it talks through.
    services: Services,
    /// The state file.
    store: StateStore,
    /// What is persisted.
    state: State,
    /// The signing key, read once per config.
    keypair: Option<Keypair>,
    /// Failures in a row.
    failures: u32,
    /// Why retries are stopped until the config changes.
    parked: Option<String>,
    /// When the daily refresh is due.
    refresh_due: Option<Instant>,
    /// Until when a DNS answer that does not show our addresses yet still
    /// counts as "working" rather than "error".
    verify_until: Option<Instant>,
    /// The pub last found through its announcement, and until when it is
    /// reused.
    announced: Option<(Target, Instant)>,
    /// The published status.
    status: watch::Sender<Status>,
}

impl Updater {
    /// An updater with state read from `config.state_path`. A state file
    /// that cannot be read is logged and replaced (the seq falls back to
    /// the clock). A v1 state file's single `last_seq` is migrated
    /// ([`State::migrate_v1`]).
    pub fn new(config: &Config, services: Services, status: watch::Sender<Status>) -> Updater {
        let store = StateStore::new(&config.state_path);
        let mut state = store.load().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "starting with an empty state");
            State::default()
        });
        let now_ms = (services.clock)();
        let migrated = state.migrate_v1(now_ms);
        let refresh_due = state.last_success_at.map(|at| {
            let age = Duration::from_secs((now_ms / 1000).saturating_sub(at));
            later(
                Instant::now(),
                config.refresh_interval().saturating_sub(age),
            )
        });
        let updater = Updater {
            services,
            store,
            state,
            keypair: None,
            failures: 0,
            parked: None,
            refresh_due,
            verify_until: None,
            announced: None,
            status,
        };
        if migrated {
            updater.save();
        }
        let s = updater.state.clone();
        updater.status.send_modify(|st| {
            st.ip = s.ip;
            st.ip6 = s.ip6;
            st.fqdn = s.fqdn.clone();
            st.registered = registered(&s);
            st.last_attempt_at = s.last_attempt_at;
            st.last_success_at = s.last_success_at;
            st.dns_verified = s.dns_verified;
        });
        updater
    }

    /// The persisted state (for tests and `--once`).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    fn now_s(&self) -> u64 {
        (self.services.clock)() / 1000
    }

    /// Saves the state; a failure is logged and shown in the status
    /// (`state_error`) until a save works again.
    fn save(&self) {
        let error = match self.store.save(&self.state) {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(error = %e, "cannot save state");
                Some(e.to_string())
            }
        };
        self.status.send_if_modified(|s| {
            let changed = s.state_error != error;
            s.state_error = error;
            changed
        });
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(f);
    }

    /// Records an event in the status's bounded log.
    fn event(&self, kind: EventKind, code: Option<&str>, message: String) {
        let at = self.now_s();
        self.set(|s| s.events.push(at, kind, code, message));
    }

    /// A config change: stop parking, forget failures, re-read the secret,
    /// and follow a moved state file.
    pub fn config_changed(&mut self, old: &Config, new: &Config) {
        self.parked = None;
        self.failures = 0;
        self.keypair = None;
        self.announced = None;
        if old.state_path != new.state_path {
            self.store = StateStore::new(&new.state_path);
            self.save();
        }
        self.set(|s| {
            s.parked = false;
            s.failures = 0;
        });
    }

    /// The loop. Runs until `shutdown` resolves; a check in flight then gets
    /// [`SHUTDOWN_GRACE`] to finish, and the state is saved.
    pub async fn run(
        mut self,
        mut config_rx: watch::Receiver<Arc<Config>>,
        mut commands: mpsc::Receiver<Command>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut config = config_rx.borrow_and_update().clone();
        let mut next = Next::At(Instant::now());
        let mut config_open = true;
        let mut commands_open = true;
        loop {
            let mut force = false;
            let mut waiting = Vec::new();
            let sleep = async {
                match next {
                    Next::At(t) => tokio::time::sleep_until(t).await,
                    Next::Wait => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = sleep => {}
                changed = config_rx.changed(), if config_open => {
                    if changed.is_err() {
                        config_open = false;
                        continue;
                    }
                    let new = config_rx.borrow_and_update().clone();
                    if new != config {
                        tracing::info!("config changed");
                        self.config_changed(&config, &new);
                        config = new;
                    }
                }
                command = commands.recv(), if commands_open => match command {
                    Some(Command::UpdateNow(reply)) => {
                        force = true;
                        waiting.push(reply);
                    }
                    Some(Command::Release(reply)) => {
                        let result = {
                            let release = self.release(&config);
                            tokio::pin!(release);
                            tokio::select! {
                                r = &mut release => Some(r),
                                _ = &mut shutdown => None,
                            }
                        };
                        let Some(result) = result else {
                            let _ = reply.send(Err("the daemon is stopping".into()));
                            break;
                        };
                        let _ = reply.send(result.map(|()| self.status()));
                        continue;
                    }
                    None => {
                        commands_open = false;
                        continue;
                    }
                },
            }
            let outcome = {
                let check = self.check(&config, force);
                tokio::pin!(check);
                tokio::select! {
                    n = &mut check => Some(n),
                    _ = &mut shutdown => {
                        if tokio::time::timeout(SHUTDOWN_GRACE, &mut check).await.is_err() {
                            tracing::warn!("stopping with an update in flight");
                        }
                        None
                    }
                }
            };
            for reply in waiting {
                let _ = reply.send(self.status());
            }
            match outcome {
                Some(n) => next = n,
                None => break,
            }
        }
        self.save();
    }

    /// One check, and an update if needed. Returns when to check next.
    pub async fn check(&mut self, config: &Config, force: bool) -> Next {
        let now = Instant::now();
        self.set(|s| s.checks += 1);
        let next = self.check_inner(config, force, now).await;
        let at = match next {
            Next::At(t) => {
                let wait = t.saturating_duration_since(Instant::now());
                Some(self.now_s().saturating_add(wait.as_secs()))
            }
            Next::Wait => None,
        };
        self.set(|s| s.next_check_at = at);
        next
    }

    async fn check_inner(&mut self, config: &Config, force: bool, now: Instant) -> Next {
        let reg = &config.registration;
        self.set(|s| {
            s.name = reg.name.clone();
            s.pub_id = reg.pub_id.map(|id| id.to_string());
        });
        if !config.enabled {
            self.set(|s| {
                s.state = Phase::Disabled;
                s.online = false;
            });
            return Next::Wait;
        }
        let (Some(name), Some(pub_id)) = (reg.name.clone(), config.pub_id()) else {
            self.set(|s| {
                s.state = Phase::Unconfigured;
                s.online = false;
            });
            return Next::Wait;
        };
        if self.parked.is_some() && !force {
            return Next::Wait;
        }
        let keypair = match self.keypair(config) {
            Ok(kp) => kp,
            Err(e) => return self.failed(config, now, Failure::Secret(e)),
        };
        let target = match self.target(config, pub_id, now).await {
            Ok(t) => t,
            Err(failure) => return self.failed(config, now, failure),
        };
        let fqdn = format!("{name}.{}", target.domain);
        self.set(|s| {
            s.fqdn = Some(fqdn.clone());
            s.url = Some(target.url.to_string());
        });
        let pub_ip = ip_url(&target.url).map(|url| PubIp {
            url,
            pub_id: target.pub_id,
        });
        let found = match self
            .services
            .discover
            .discover(config, pub_ip.as_ref())
            .await
        {
            Ok(found) => found,
            Err(e) => {
                let skipped = match &e {
                    crate::ip::IpError::NoAddress(errors) => {
                        errors.iter().map(|e| e.to_string()).collect()
                    }
                    other => vec![other.to_string()],
                };
                self.set(|s| s.skipped_sources = skipped);
                return self.failed(config, now, Failure::NoAddress(e.to_string()));
            }
        };
        let addrs = found.addrs;
        self.set(|s| {
            s.current_ip = addrs.ip;
            s.current_ip6 = addrs.ip6;
            s.skipped_sources = found.skipped;
        });
        let pub_text = target.pub_id.to_string();
        let registered = Addresses {
            ip: self.state.ip,
            ip6: self.state.ip6,
        };
        let same_target = self.state.fqdn.as_deref() == Some(fqdn.as_str())
            && self.state.pub_id.as_deref() == Some(pub_text.as_str());
        let last_ok = self.state.last_result.as_ref().is_some_and(|r| r.ok);
        let refresh_due = self.refresh_due.map_or(true, |t| now >= t);
        let changed = !same_target || registered != addrs || !last_ok;
        if force || changed || refresh_due {
            tracing::info!(%fqdn, addresses = %addrs, force, changed, refresh_due, "sending update");
            if changed {
                self.set(|s| {
                    s.state = Phase::Working;
                    s.online = false;
                });
            }
            if !same_target {
                if let Err(failure) = self.release_previous(&keypair, &target).await {
                    return self.failed(config, now, failure);
                }
            }
            match self.send(&keypair, &target, &name, Op::Update, addrs).await {
                Ok(accepted) => self.accepted(config, now, &target, &name, addrs, &accepted),
                Err(failure) => return self.failed(config, now, failure),
            }
        }
        self.verify(config, &target, &fqdn, now).await
    }

    /// Gives up the name registered before, when the config now names
    /// another one: a pub lets a key hold only so many names, so a rename
    /// must release the old one first. At the same pub a retryable failure
    /// is retried later (the new name would be refused anyway); otherwise
    /// a failure is logged and the old registration forgotten.
    async fn release_previous(
        &mut self,
        keypair: &Keypair,
        target: &Target,
    ) -> Result<(), Failure> {
        let Some((old, old_name)) = self.held() else {
            return Ok(());
        };
        tracing::info!(name = %old_name, domain = %old.domain, "releasing the name registered before");
        match self
            .send(keypair, &old, &old_name, Op::Release, Addresses::default())
            .await
        {
            Ok(_) => {}
            Err(Failure::Update { error, .. })
                if error.is_retryable() && old.pub_id == target.pub_id =>
            {
                return Err(Failure::Update {
                    context: Some(format!("releasing {old_name}.{}", old.domain)),
                    error,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not release the old name; forgetting it");
            }
        }
        self.forget_registration();
        Ok(())
    }

    /// The name the state file says this Pi holds, and where.
    fn held(&self) -> Option<(Target, String)> {
        let s = &self.state;
        Some((
            Target {
                pub_id: s.pub_id.as_deref()?.parse().ok()?,
                url: Url::parse(s.url.as_deref()?).ok()?,
                domain: s.domain.clone()?,
            },
            s.name.clone()?,
        ))
    }

    /// Forgets the registration in the state file (after a release).
    fn forget_registration(&mut self) {
        let s = &mut self.state;
        s.fqdn = None;
        s.name = None;
        s.pub_id = None;
        s.url = None;
        s.domain = None;
        s.ip = None;
        s.ip6 = None;
        s.dns_verified = false;
        self.save();
        self.set(|s| s.registered = None);
    }

    /// The owner's release: sends a signed `release` for the name the
    /// state file holds to the pub that holds it, and forgets it once the
    /// pub accepted. A refusal or an unreachable pub changes nothing (the
    /// owner may try again).
    pub async fn release(&mut self, config: &Config) -> Result<(), String> {
        let Some((target, name)) = self.held() else {
            return Err("this Pi holds no name at any pub".into());
        };
        let fqdn = format!("{name}.{}", target.domain);
        let keypair = self.keypair(config)?;
        tracing::info!(%fqdn, "releasing the name (asked by the owner)");
        match self
            .send(&keypair, &target, &name, Op::Release, Addresses::default())
            .await
        {
            Ok(_) => {
                self.forget_registration();
                self.announced = None;
                self.verify_until = None;
                self.set(|s| {
                    s.fqdn = None;
                    s.url = None;
                    s.ip = None;
                    s.ip6 = None;
                    s.dns_verified = false;
                    s.dns_detail = None;
                    s.online = false;
                    if s.state == Phase::Online || s.state == Phase::Working {
                        s.state = Phase::Unconfigured;
                    }
                });
                self.event(
                    EventKind::Released,
                    None,
                    format!("{fqdn} was released; the pub no longer answers for it"),
                );
                Ok(())
            }
            Err(failure) => {
                let message = format!("releasing {fqdn}: {failure}");
                self.event(
                    EventKind::Failed,
                    Some(failure.problem().as_str()),
                    message.clone(),
                );
                Err(message)
            }
        }
    }

    fn keypair(&mut self, config: &Config) -> Result<Keypair, String> {
        if let Some(kp) = &self.keypair {
            return Ok(kp.clone());
        }
        let kp = load_secret(&config.secret_path).map_err(|e| e.to_string())?;
        let id = kp.id();
        self.set(|s| s.public_key = Some(id));
        self.keypair = Some(kp.clone());
        Ok(kp)
    }

    /// The configured pub, or its latest announcement in the local sbot
    /// (the directory lists only pubs the Pi follows).
    async fn target(
        &mut self,
        config: &Config,
        pub_id: PublicKey,
        now: Instant,
    ) -> Result<Target, Failure> {
        if let Some(p) = config.static_pub() {
            return Ok(Target {
                pub_id: p.pub_id,
                url: p.url,
                domain: p.domain,
            });
        }
        if let Some((target, until)) = &self.announced {
            if target.pub_id == pub_id && now < *until {
                return Ok(target.clone());
            }
        }
        let list = self
            .services
            .directory
            .announcements()
            .await
            .map_err(|e: DirectoryError| Failure::Sbot(e.to_string()))?;
        list.into_iter()
            .find(|a| a.pub_id == pub_id)
            .map(|a| Target {
                pub_id: a.pub_id,
                url: a.url,
                domain: a.domain,
            })
            .inspect(|t| self.announced = Some((t.clone(), later(now, ANNOUNCEMENT_REUSE))))
            .ok_or_else(|| {
                Failure::NoPub(format!(
                    "no peach-dyndns announcement from {pub_id} among the pubs this Pi \
                     follows in the local sbot yet (has the invite been accepted and the \
                     pub's feed replicated?)"
                ))
            })
    }

    /// The highest seq this daemon believes it signed for `pub_id`: its
    /// record, unless that is more than a day ahead of the clock (a state
    /// file from a clock far ahead, or from before the bound), in which case
    /// the clock decides.
    fn believed_seq(&self, pub_id: &PublicKey, now_ms: u64) -> Option<u64> {
        let ours = self.state.seq(pub_id)?;
        if believable_last_seq(ours, now_ms) {
            Some(ours)
        } else {
            tracing::warn!(%pub_id, ours, now_ms, "the recorded seq is more than a day ahead of the clock; using the clock");
            None
        }
    }

    /// Signs, seals and sends, with the seq kept for this pub. A
    /// `stale_seq` whose `last_seq` is within a day of our clock moves past
    /// it and tries once more (one beyond that is not believed); an
    /// `invalid_seq` (our seq more than a day ahead of the pub) falls back
    /// to the clock, or just past the pub's believable `last_seq`, within
    /// the pub's `max_seq`, and tries once more. No seq sent is ever above
    /// `max_seq(believed last, now)`, and no seq from an answer is taken.
    async fn send(
        &mut self,
        keypair: &Keypair,
        target: &Target,
        name: &str,
        op: Op,
        addrs: Addresses,
    ) -> Result<Accepted, Failure> {
        let pub_id = target.pub_id;
        let mut last_err = None;
        // After `invalid_seq`: what to build on instead of our record (the
        // pub's believable last seq, or nothing: the clock), and the most
        // the pub said it accepts now.
        let mut fallback: Option<Option<u64>> = None;
        let mut cap: Option<u64> = None;
        for _ in 0..2 {
            let now_ms = (self.services.clock)();
            let believed = match fallback {
                Some(theirs) => theirs,
                None => self.believed_seq(&pub_id, now_ms),
            };
            let mut seq = next_seq(believed, now_ms);
            if let Some(cap) = cap {
                seq = seq.min(cap);
            }
            if believed.is_some_and(|b| seq <= b) {
                // The pub's max_seq is not above what we believe it holds:
                // no seq can be both fresh and within its bound.
                break;
            }
            debug_assert!(seq <= max_seq(believed, now_ms));
            // Reserve the seq on disk before it leaves: it is never reused.
            self.state.set_seq(&pub_id, seq);
            self.state.last_attempt_at = Some(now_ms / 1000);
            self.save();
            let at = self.state.last_attempt_at;
            self.set(|s| s.last_attempt_at = at);
            let msg = UpdateMsg {
                op,
                name: name.to_string(),
                domain: target.domain.clone(),
                ip: addrs.ip,
                ip6: addrs.ip6,
                pub_id,
                public_key: keypair.public(),
                seq,
                token_sha256: None,
                txt: None,
            };
            let envelope = seal_update(&msg.sign(keypair), &pub_id).map_err(|e| {
                Failure::update(UpdateError::BadAnswer {
                    url: target.url.to_string(),
                    status: 0,
                    detail: e.to_string(),
                    retry_after: None,
                })
            })?;
            let result = self
                .services
                .pub_api
                .send_update(&target.url, &envelope)
                .await;
            match result {
                Err(UpdateError::Refused {
                    code: ErrorCode::StaleSeq,
                    last_seq: Some(theirs),
                    ..
                }) if !believable_last_seq(theirs, now_ms) => {
                    tracing::warn!(
                        ours = seq,
                        theirs,
                        "the pub's last seq is more than a day ahead; not believed"
                    );
                    return Err(Failure::SeqNotBelieved {
                        url: target.url.to_string(),
                        theirs,
                    });
                }
                Err(UpdateError::Refused {
                    code: ErrorCode::StaleSeq,
                    last_seq: Some(theirs),
                    message,
                    status,
                    ..
                }) => {
                    tracing::info!(
                        ours = seq,
                        theirs,
                        "the pub has a later seq; moving past it"
                    );
                    self.state.set_seq(&pub_id, seq.max(theirs));
                    last_err = Some(UpdateError::Refused {
                        status,
                        code: ErrorCode::StaleSeq,
                        message: format!("seq {seq} is not above the pub's {theirs}: {message}"),
                        last_seq: Some(theirs),
                        max_seq: None,
                        retry_after: None,
                    });
                }
                Err(UpdateError::Refused {
                    code: ErrorCode::InvalidSeq,
                    status,
                    message,
                    last_seq,
                    max_seq,
                    retry_after,
                }) => {
                    tracing::warn!(
                        ours = seq,
                        ?last_seq,
                        ?max_seq,
                        "the pub says our seq is too far ahead; falling back to the clock"
                    );
                    // Not our record: the next seq comes from the clock, or
                    // just past the pub's last one if that is believable.
                    fallback = Some(last_seq.filter(|t| believable_last_seq(*t, now_ms)));
                    // The pub's bound can only lower the next seq, so it
                    // needs no belief.
                    cap = max_seq;
                    last_err = Some(UpdateError::Refused {
                        status,
                        code: ErrorCode::InvalidSeq,
                        message,
                        last_seq,
                        max_seq,
                        retry_after,
                    });
                }
                other => return other.map_err(Failure::update),
            }
        }
        Err(Failure::update(last_err.unwrap_or_else(|| {
            UpdateError::BadAnswer {
                url: target.url.to_string(),
                status: 0,
                detail: "no attempt made".into(),
                retry_after: None,
            }
        })))
    }

    fn accepted(
        &mut self,
        config: &Config,
        now: Instant,
        target: &Target,
        name: &str,
        addrs: Addresses,
        accepted: &Accepted,
    ) {
        // The answer's `seq` is logged, never taken: only the seq this
        // daemon reserved counts.
        tracing::info!(fqdn = %accepted.fqdn, seq = accepted.seq, changed = accepted.changed, "update accepted");
        let now_s = self.now_s();
        let fqdn = format!("{name}.{}", target.domain);
        let pub_text = target.pub_id.to_string();
        let before = Addresses {
            ip: self.state.ip,
            ip6: self.state.ip6,
        };
        let same_name = self.state.fqdn.as_deref() == Some(fqdn.as_str());
        if same_name && before != addrs && (before.ip.is_some() || before.ip6.is_some()) {
            self.event(
                EventKind::AddressChanged,
                None,
                format!("this Pi's address changed from {before} to {addrs}"),
            );
        }
        self.event(
            EventKind::Accepted,
            None,
            format!("the pub accepted {fqdn} → {addrs}"),
        );
        self.state.fqdn = Some(fqdn);
        self.state.pub_id = Some(pub_text);
        self.state.name = Some(name.to_string());
        self.state.url = Some(target.url.to_string());
        self.state.domain = Some(target.domain.clone());
        self.state.ip = addrs.ip;
        self.state.ip6 = addrs.ip6;
        self.state.last_success_at = Some(now_s);
        self.state.last_result = Some(LastResult {
            ok: true,
            error: None,
            message: None,
        });
        self.state.dns_verified = false;
        self.save();
        self.failures = 0;
        self.parked = None;
        self.refresh_due = Some(later(now, config.refresh_interval()));
        self.verify_until = Some(later(now, VERIFY_WINDOW));
        let held = registered(&self.state);
        self.set(|s| {
            s.ip = addrs.ip;
            s.ip6 = addrs.ip6;
            s.registered = held;
            s.last_success_at = Some(now_s);
            s.last_error = None;
            s.set_problem(None);
            s.failures = 0;
            s.parked = false;
            s.dns_verified = false;
        });
    }

    /// Asks the pub's DNS at every check (not only after an update), so
    /// the state leaves `online` when DNS stops answering with our
    /// addresses.
    async fn verify(&mut self, config: &Config, target: &Target, fqdn: &str, now: Instant) -> Next {
        let interval = Next::At(later(now, config.check_interval()));
        // Reaching here means addresses were found and the pub has them:
        // whatever failed before is over.
        self.failures = 0;
        self.set(|s| {
            s.failures = 0;
            s.parked = false;
            s.last_error = None;
            s.set_problem(None);
        });
        if !config.dns.verify {
            self.set(|s| {
                s.state = Phase::Online;
                s.online = true;
            });
            return interval;
        }
        let was_verified = self.state.dns_verified;
        let sent = Addresses {
            ip: self.state.ip,
            ip6: self.state.ip6,
        };
        let (ok, detail) = match self
            .services
            .dns
            .lookup(&config.dns, fqdn, &target.domain, &target.url)
            .await
        {
            Ok(answer) => {
                let server = answer.server.map(|s| s.to_string()).unwrap_or_default();
                let seen = Addresses {
                    ip: answer.a.first().copied(),
                    ip6: answer.aaaa.first().copied(),
                };
                if answer.matches(&sent) {
                    (true, format!("{server} answers {sent}"))
                } else {
                    (false, format!("{server} answers {seen}, expected {sent}"))
                }
            }
            Err(e) => (false, e.to_string()),
        };
        if ok != self.state.dns_verified {
            self.state.dns_verified = ok;
            self.save();
        }
        let within_window = self.verify_until.is_some_and(|t| now < t);
        let checked_at = self.now_s();
        self.set(|s| {
            s.dns_verified = ok;
            s.dns_detail = Some(detail.clone());
            s.dns_checked_at = Some(checked_at);
        });
        if ok && !was_verified {
            self.event(
                EventKind::DnsVerified,
                None,
                format!("the pub's DNS answers {fqdn} with this Pi's address ({detail})"),
            );
        }
        if ok {
            self.verify_until = None;
            self.set(|s| {
                s.state = Phase::Online;
                s.online = true;
            });
            return interval;
        }
        if within_window {
            self.set(|s| {
                s.state = Phase::Working;
                s.online = false;
            });
            return Next::At(later(now, VERIFY_RETRY.min(config.check_interval())));
        }
        let words = if was_verified {
            "the pub's DNS no longer answers with this Pi's address"
        } else {
            "the pub accepted the update, but its DNS does not show it"
        };
        tracing::warn!(%fqdn, %detail, "{words}");
        self.event(
            EventKind::DnsMismatch,
            Some(Problem::DnsMismatch.as_str()),
            format!("{words}: {detail}"),
        );
        self.set(|s| {
            s.state = Phase::Error;
            s.online = false;
            s.last_error = Some(format!("{words}: {detail}"));
            s.set_problem(Some(Problem::DnsMismatch));
        });
        interval
    }

    /// Records a failure and schedules the retry, or parks.
    fn failed(&mut self, config: &Config, now: Instant, failure: Failure) -> Next {
        self.failures = self.failures.saturating_add(1);
        let failures = self.failures;
        let problem = failure.problem();
        let message = failure.to_string();
        let update_sent = failure.update_sent();
        if update_sent {
            self.announced = None;
            self.state.last_result = Some(LastResult {
                ok: false,
                error: Some(problem.as_str().to_string()),
                message: Some(message.clone()),
            });
            self.state.dns_verified = false;
            self.save();
        }
        let code = problem.as_str();
        let next = if failure.retryable() {
            let delay = (self.services.jitter)(backoff(
                failures,
                config.backoff_min(),
                config.backoff_max(),
            ));
            let delay = delay.max(failure.retry_after().unwrap_or_default());
            tracing::warn!(code, error = %message, retry_in_s = delay.as_secs(), "update failed");
            Next::At(later(now, delay))
        } else {
            tracing::error!(code, error = %message, "update refused; waiting for a config change");
            self.parked = Some(message.clone());
            Next::Wait
        };
        let parked = self.parked.is_some();
        let kind = match problem {
            Problem::Refused(_) => EventKind::Refused,
            _ => EventKind::Failed,
        };
        self.event(kind, Some(code), message.clone());
        self.set(|s| {
            s.state = Phase::Error;
            s.online = false;
            s.last_error = Some(message);
            s.set_problem(Some(problem));
            s.failures = failures;
            s.parked = parked;
            if update_sent {
                s.dns_verified = false;
            }
        });
        next
    }
}

/// The name the state says this daemon holds, and where.
fn registered(state: &State) -> Option<Registered> {
    Some(Registered {
        pub_id: state.pub_id.clone()?,
        fqdn: state.fqdn.clone()?,
    })
}

#[cfg(test)]
mod tests;
