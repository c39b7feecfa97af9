//! `[acme]`: a certificate for the Pi's name (and `*.name`) from Let's
//! Encrypt or any RFC 8555 CA, proved through the pub's signed
//! `acme_set`/`acme_clear`: no port open, no DNS API token.
//!
//! [`run`] is a task beside the update loop. It waits until the pub has
//! accepted the name (the loop's status says which pub and name), reads
//! the certificate on disk, and orders a new one when there is none, it
//! does not cover the names, or it is within `renew_before_days` of its
//! notAfter. A failed order backs off like the updates (`backoff_min_secs`
//! doubling to `backoff_max_secs`, with jitter), and longer when the CA
//! rate-limits (its `Retry-After`, at least an hour). Its progress is the
//! `tls` part of the status.
//!
//! Layout:
//! - `config.rs`: [`AcmeConfig`], the `[acme]` table.
//! - `files`, `http`: from `peach-dyndns-acme` (atomic writes, the
//!   certificate's notAfter and names; the reqwest client with webpki roots
//!   + `ca_file` and instant-acme's HTTP over it), shared with the server.
//! - `signer.rs`: [`signer::ChallengeSigner`], `acme_set`/`acme_clear`
//!   signed, sealed and sent (also used by the hook mode).
//! - `order.rs`: the Pi's order (names, files, the pub as the challenger),
//!   run by `peach-dyndns-acme`.
//! - `hook.rs`: `acme-hook set|clear` for certbot, acme.sh and lego.

pub mod config;
pub mod hook;
pub mod order;
pub mod signer;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use peach_dyndns_protocol::identity::PublicKey;

pub use config::{AcmeConfig, LETS_ENCRYPT, LETS_ENCRYPT_STAGING};
pub use peach_dyndns_acme::{files, http};
pub use status::TlsStatus;

use crate::config::Config;
use crate::handle::Handle;
use crate::secret::load_secret;
use crate::state::StateStore;
use crate::status::Status;
use crate::updater::backoff;
use signer::{ChallengeSigner, ChallengeTarget};

/// After a certificate was issued, the next order comes no sooner than
/// this, even when the new certificate is already within
/// `renew_before_days` (a CA issuing short certificates, or a window set
/// beyond the certificate's life): one order an hour at most.
pub const RENEW_FLOOR: Duration = Duration::from_secs(60 * 60);
/// The least wait after the CA said `rateLimited` without a `Retry-After`.
pub const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60 * 60);
/// How often the task looks again while it waits for the name or a config
/// change (the status channel wakes it sooner).
const IDLE_LOOK: Duration = Duration::from_secs(30);

/// The pub and name from the loop's status, once the pub accepted the name.
fn target_of(status: &Status) -> Option<ChallengeTarget> {
    let registered = status.registered.as_ref()?;
    let name = status.name.as_ref()?;
    let url = status.url.as_ref()?.parse().ok()?;
    let pub_id: PublicKey = registered.pub_id.parse().ok()?;
    let domain = registered
        .fqdn
        .strip_prefix(&format!("{name}."))?
        .to_string();
    (status.pub_id.as_deref() == Some(registered.pub_id.as_str())).then_some(ChallengeTarget {
        pub_id,
        url,
        domain,
        name: name.clone(),
    })
}

/// What the task decided to do next.
enum Step {
    /// Order now.
    Order,
    /// Look again at this Unix second.
    At(u64),
    /// Wait for a status or config change.
    Idle,
}

/// Runs the ACME task until `shutdown` resolves.
pub async fn run(handle: Arc<Handle>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut status_rx = handle.subscribe();
    let mut signer: Option<(PublicKey, ChallengeSigner)> = None;
    let mut failures: u32 = 0;
    // Not before this Unix second (backoff, rate limit, the floor).
    let mut not_before: u64 = 0;
    let mut last_error: Option<String> = None;
    loop {
        let config = handle.config();
        let step = decide(&handle, &config, not_before, &last_error);
        let step = match step {
            Step::Order => {
                let status = handle.status();
                let Some(target) = target_of(&status) else {
                    continue;
                };
                let cfg = &config.acme;
                let names = order::names(cfg, &target);
                handle.set_tls(Some(TlsStatus {
                    state: "ordering".into(),
                    names: names.clone(),
                    last_error: last_error.clone(),
                    ..current_cert(cfg)
                }));
                let now = files::unix_now();
                match order_once(&handle, &config, &target, &mut signer).await {
                    Ok(info) => {
                        failures = 0;
                        last_error = None;
                        not_before = now.saturating_add(RENEW_FLOOR.as_secs());
                        tracing::info!(names = ?info.names, not_after = info.not_after, "certificate obtained");
                    }
                    Err((e, retry_after)) => {
                        failures = failures.saturating_add(1);
                        let mut wait = (handle.services().jitter)(backoff(
                            failures,
                            config.backoff_min(),
                            config.backoff_max(),
                        ));
                        if e.is_rate_limited() {
                            wait = wait.max(retry_after.unwrap_or(RATE_LIMIT_WAIT));
                        } else if let Some(asked) = retry_after {
                            wait = wait.max(asked);
                        }
                        not_before = now.saturating_add(wait.as_secs().max(1));
                        tracing::warn!(error = %e, failures, retry_in = ?wait, "certificate order failed");
                        last_error = Some(e.to_string());
                    }
                }
                continue;
            }
            other => other,
        };
        let sleep = match step {
            Step::At(at) => {
                Duration::from_secs(at.saturating_sub(files::unix_now())).min(IDLE_LOOK)
            }
            _ => IDLE_LOOK,
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(sleep) => {}
            changed = status_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// The certificate on disk, as a status.
fn current_cert(cfg: &AcmeConfig) -> TlsStatus {
    let path = cfg.fullchain_path();
    let info = files::read_optional(&path)
        .ok()
        .flatten()
        .and_then(|bytes| files::cert_info(&path, &bytes).ok());
    TlsStatus {
        names: info.as_ref().map(|i| i.names.clone()).unwrap_or_default(),
        not_after: info.map(|i| i.not_after),
        ..TlsStatus::default()
    }
}

/// Looks at config, status and the certificate on disk; publishes the
/// `tls` status and says what to do.
fn decide(handle: &Handle, config: &Config, not_before: u64, last_error: &Option<String>) -> Step {
    let cfg = &config.acme;
    if !cfg.enabled || !config.enabled {
        handle.set_tls(None);
        return Step::Idle;
    }
    let mut tls = current_cert(cfg);
    tls.last_error = last_error.clone();
    let Some(target) = target_of(&handle.status()) else {
        tls.state = "waiting".into();
        handle.set_tls(Some(tls));
        return Step::Idle;
    };
    let now = files::unix_now();
    let wanted = order::names(cfg, &target);
    let covers = wanted.iter().all(|n| tls.names.contains(n));
    let renew_before = u64::from(cfg.renew_before_days).saturating_mul(86_400);
    let due = match tls.not_after {
        Some(not_after) if covers => not_after.saturating_sub(renew_before),
        _ => 0,
    };
    let next = due.max(not_before);
    tls.next_attempt_at = Some(next);
    tls.state = match (&tls.not_after, last_error) {
        (_, Some(_)) => "error",
        (Some(not_after), None) if covers && *not_after > now => "valid",
        _ => "waiting",
    }
    .into();
    if !covers {
        tls.names = wanted;
    }
    handle.set_tls(Some(tls));
    if next <= now {
        Step::Order
    } else {
        Step::At(next)
    }
}

/// One order, with a signer for the current key (made again when the key
/// changes).
async fn order_once(
    handle: &Handle,
    config: &Config,
    target: &ChallengeTarget,
    signer: &mut Option<(PublicKey, ChallengeSigner)>,
) -> Result<files::CertInfo, (order::OrderError, Option<Duration>)> {
    let fail = |e: order::OrderError| (e, None);
    let keypair = load_secret(&config.secret_path)
        .map_err(|e| fail(order::OrderError::Key(e.to_string())))?;
    let key = keypair.public();
    if signer.as_ref().map(|(k, _)| *k) != Some(key) {
        // The update loop's last seq for this pub, read only: both build on
        // the clock, so neither needs the other's record to move forward.
        let last = StateStore::new(&config.state_path)
            .load()
            .ok()
            .and_then(|state| state.seq(&target.pub_id));
        let services = handle.services();
        *signer = Some((
            key,
            ChallengeSigner::new(
                keypair,
                services.pub_api.clone(),
                services.clock.clone(),
                last,
            ),
        ));
    }
    let (_, signer) = signer
        .as_mut()
        .expect("invariant: the signer was made just above");
    let client = http::client_with_roots(
        config.http_timeout(),
        config.acme.ca_file(),
        crate::pubapi::USER_AGENT,
    )
    .map_err(|e| fail(order::OrderError::Key(e.to_string())))?;
    let acme_http = http::AcmeHttp::new(client);
    let result = order::obtain(&config.acme, &acme_http, signer, target).await;
    result.map_err(|e| (e, acme_http.take_retry_after()))
}
