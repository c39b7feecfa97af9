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
use peach_dyndns_protocol::rules::next_seq;
use peach_dyndns_protocol::seal::seal_update;
use reqwest::Url;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::Config;
use crate::directory::{DirectoryError, PubDirectory};
use crate::dns::DnsCheck;
use crate::ip::{Addresses, Discover};
use crate::pubapi::{ip_url, Accepted, PubApi, UpdateError};
use crate::secret::load_secret;
use crate::state::{LastResult, State, StateStore};
use crate::status::{Phase, Status};

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
    /// the clock).
    pub fn new(config: &Config, services: Services, status: watch::Sender<Status>) -> Updater {
        let store = StateStore::new(&config.state_path);
        let state = store.load().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "starting with an empty state");
            State::default()
        });
        let now_ms = (services.clock)();
        let refresh_due = state.last_success_at.map(|at| {
            let age = Duration::from_secs((now_ms / 1000).saturating_sub(at));
            Instant::now() + config.refresh_interval().saturating_sub(age)
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
        let s = updater.state.clone();
        updater.status.send_modify(|st| {
            st.ip = s.ip;
            st.ip6 = s.ip6;
            st.fqdn = s.fqdn.clone();
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

    fn save(&self) {
        if let Err(e) = self.store.save(&self.state) {
            tracing::error!(error = %e, "cannot save state");
        }
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(f);
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
                Some(self.now_s() + wait.as_secs())
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
            s.pub_id = reg.pub_id.clone();
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
            Err(e) => return self.failed(config, now, "secret", e, true, None),
        };
        let target = match self.target(config, pub_id, now).await {
            Ok(t) => t,
            Err((code, message)) => return self.failed(config, now, code, message, true, None),
        };
        let fqdn = format!("{name}.{}", target.domain);
        self.set(|s| {
            s.fqdn = Some(fqdn.clone());
            s.url = Some(target.url.to_string());
        });
        let pub_ip = ip_url(&target.url);
        let addrs = match self
            .services
            .discover
            .discover(config, pub_ip.as_ref())
            .await
        {
            Ok(a) => a,
            Err(e) => return self.failed(config, now, "no_address", e.to_string(), true, None),
        };
        self.set(|s| {
            s.current_ip = addrs.ip;
            s.current_ip6 = addrs.ip6;
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
                if let Err(next) = self.release_previous(config, now, &keypair, &target).await {
                    return next;
                }
            }
            match self.send(&keypair, &target, &name, Op::Update, addrs).await {
                Ok(accepted) => self.accepted(config, now, &target, &name, addrs, &accepted),
                Err(e) => {
                    let retryable = e.is_retryable();
                    let retry_after = e.retry_after();
                    let code = e.code().to_string();
                    return self.failed(config, now, &code, e.to_string(), retryable, retry_after);
                }
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
        config: &Config,
        now: Instant,
        keypair: &Keypair,
        target: &Target,
    ) -> Result<(), Next> {
        let old = (|| {
            let s = &self.state;
            Some((
                Target {
                    pub_id: s.pub_id.as_deref()?.parse().ok()?,
                    url: Url::parse(s.url.as_deref()?).ok()?,
                    domain: s.domain.clone()?,
                },
                s.name.clone()?,
            ))
        })();
        let Some((old, old_name)) = old else {
            return Ok(());
        };
        tracing::info!(name = %old_name, domain = %old.domain, "releasing the name registered before");
        match self
            .send(keypair, &old, &old_name, Op::Release, Addresses::default())
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_retryable() && old.pub_id == target.pub_id => {
                let retry_after = e.retry_after();
                let code = e.code().to_string();
                return Err(self.failed(
                    config,
                    now,
                    &code,
                    format!("releasing {old_name}.{}: {e}", old.domain),
                    true,
                    retry_after,
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not release the old name; forgetting it");
            }
        }
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
        Ok(())
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

    /// The configured pub, or its latest announcement in the local sbot.
    async fn target(
        &mut self,
        config: &Config,
        pub_id: PublicKey,
        now: Instant,
    ) -> Result<Target, (&'static str, String)> {
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
            .map_err(|e: DirectoryError| ("sbot", e.to_string()))?;
        list.into_iter()
            .find(|a| a.pub_id == pub_id)
            .map(|a| Target {
                pub_id: a.pub_id,
                url: a.url,
                domain: a.domain,
            })
            .inspect(|t| self.announced = Some((t.clone(), now + ANNOUNCEMENT_REUSE)))
            .ok_or_else(|| {
                (
                    "no_pub",
                    format!(
                        "no peach-dyndns announcement from {pub_id} in the local sbot yet \
                         (has the invite been accepted and the pub's feed replicated?)"
                    ),
                )
            })
    }

    /// Signs, seals and sends; a `stale_seq` answer moves `seq` past the
    /// pub's and tries once more.
    async fn send(
        &mut self,
        keypair: &Keypair,
        target: &Target,
        name: &str,
        op: Op,
        addrs: Addresses,
    ) -> Result<Accepted, UpdateError> {
        let mut last_err = None;
        for _ in 0..2 {
            let seq = next_seq(self.state.last_seq, (self.services.clock)());
            // Reserve the seq on disk before it leaves: it is never reused.
            self.state.last_seq = Some(seq);
            self.state.last_attempt_at = Some(self.now_s());
            self.save();
            let at = self.state.last_attempt_at;
            self.set(|s| s.last_attempt_at = at);
            let msg = UpdateMsg {
                op,
                name: name.to_string(),
                domain: target.domain.clone(),
                ip: addrs.ip,
                ip6: addrs.ip6,
                pub_id: target.pub_id,
                public_key: keypair.public(),
                seq,
                token_sha256: None,
                txt: None,
            };
            let envelope = seal_update(&msg.sign(keypair), &target.pub_id).map_err(|e| {
                UpdateError::BadAnswer {
                    url: target.url.to_string(),
                    status: 0,
                    detail: e.to_string(),
                    retry_after: None,
                }
            })?;
            match self
                .services
                .pub_api
                .send_update(&target.url, &envelope)
                .await
            {
                Err(UpdateError::Refused {
                    code,
                    last_seq: Some(theirs),
                    ..
                }) if code == "stale_seq" => {
                    tracing::info!(
                        ours = seq,
                        theirs,
                        "the pub has a later seq; moving past it"
                    );
                    self.state.last_seq = Some(seq.max(theirs));
                    last_err = Some(UpdateError::Refused {
                        status: 409,
                        code,
                        message: format!("seq {seq} is not above the pub's {theirs}"),
                        last_seq: Some(theirs),
                        retry_after: None,
                    });
                }
                other => return other,
            }
        }
        Err(last_err.unwrap_or_else(|| UpdateError::BadAnswer {
            url: target.url.to_string(),
            status: 0,
            detail: "no attempt made".into(),
            retry_after: None,
        }))
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
        tracing::info!(fqdn = %accepted.fqdn, seq = accepted.seq, changed = accepted.changed, "update accepted");
        let now_s = self.now_s();
        let fqdn = format!("{name}.{}", target.domain);
        let pub_text = target.pub_id.to_string();
        self.state.fqdn = Some(fqdn);
        self.state.pub_id = Some(pub_text);
        self.state.name = Some(name.to_string());
        self.state.url = Some(target.url.to_string());
        self.state.domain = Some(target.domain.clone());
        self.state.ip = addrs.ip;
        self.state.ip6 = addrs.ip6;
        self.state.last_seq = self.state.last_seq.max(Some(accepted.seq));
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
        self.refresh_due = Some(now + config.refresh_interval());
        self.verify_until = Some(now + VERIFY_WINDOW);
        self.set(|s| {
            s.ip = addrs.ip;
            s.ip6 = addrs.ip6;
            s.last_success_at = Some(now_s);
            s.last_error = None;
            s.last_error_code = None;
            s.failures = 0;
            s.parked = false;
            s.dns_verified = false;
        });
    }

    /// Asks the pub's DNS when the records are not verified yet, and sets
    /// the state from the result.
    async fn verify(&mut self, config: &Config, target: &Target, fqdn: &str, now: Instant) -> Next {
        let interval = Next::At(now + config.check_interval());
        // Reaching here means addresses were found and the pub has them:
        // whatever failed before is over.
        self.failures = 0;
        self.set(|s| {
            s.failures = 0;
            s.parked = false;
            s.last_error = None;
            s.last_error_code = None;
        });
        if !config.dns.verify {
            self.set(|s| {
                s.state = Phase::Online;
                s.online = true;
            });
            return interval;
        }
        if self.state.dns_verified {
            self.set(|s| {
                s.state = Phase::Online;
                s.online = true;
                s.dns_verified = true;
            });
            return interval;
        }
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
        self.set(|s| {
            s.dns_verified = ok;
            s.dns_detail = Some(detail.clone());
        });
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
            return Next::At(now + VERIFY_RETRY.min(config.check_interval()));
        }
        tracing::warn!(%fqdn, %detail, "the pub accepted the update but its DNS does not show it");
        self.set(|s| {
            s.state = Phase::Error;
            s.online = false;
            s.last_error = Some(format!(
                "the pub accepted the update, but its DNS does not show it: {detail}"
            ));
            s.last_error_code = Some("dns_mismatch".into());
        });
        interval
    }

    /// Records a failure and schedules the retry, or parks.
    fn failed(
        &mut self,
        config: &Config,
        now: Instant,
        code: &str,
        message: String,
        retryable: bool,
        retry_after: Option<Duration>,
    ) -> Next {
        self.failures = self.failures.saturating_add(1);
        let failures = self.failures;
        let update_sent = !matches!(code, "secret" | "sbot" | "no_pub" | "no_address");
        if update_sent {
            self.announced = None;
            self.state.last_result = Some(LastResult {
                ok: false,
                error: Some(code.to_string()),
                message: Some(message.clone()),
            });
            self.state.dns_verified = false;
            self.save();
        }
        let next = if retryable {
            let delay = (self.services.jitter)(backoff(
                failures,
                config.backoff_min(),
                config.backoff_max(),
            ));
            let delay = delay.max(retry_after.unwrap_or_default());
            tracing::warn!(code, error = %message, retry_in_s = delay.as_secs(), "update failed");
            Next::At(now + delay)
        } else {
            tracing::error!(code, error = %message, "update refused; waiting for a config change");
            self.parked = Some(message.clone());
            Next::Wait
        };
        let parked = self.parked.is_some();
        self.set(|s| {
            s.state = Phase::Error;
            s.online = false;
            s.last_error = Some(message);
            s.last_error_code = Some(code.to_string());
            s.failures = failures;
            s.parked = parked;
            if update_sent {
                s.dns_verified = false;
            }
        });
        next
    }
}

#[cfg(test)]
mod tests;
