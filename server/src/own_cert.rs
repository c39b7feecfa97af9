//! `[tls] acme = true`: the pub's own certificate for `public_url`'s host,
//! from an ACME CA, with the DNS-01 challenge answered in its own zone.
//!
//! [`run`] is a task beside the HTTPS listener. It looks at the
//! certificate being served ([`Tls::info`]) and orders a new one when
//! there is none, it does not cover the host, or it is within
//! `acme_renew_before_days` of its notAfter. The order
//! ([`peach_dyndns_acme::order::obtain`], shared with the daemon) sets
//! `_acme-challenge.<host>` through the same code as a Pi's `acme_set`
//! (`pipeline::acme_set`, under the label's lock, noted in the
//! registry with the server's own key and no `seq`), so the challenge is
//! served by every backend, expires after `acme_lifetime_secs` and is put
//! right after a crash like any other. The files land where [`Tls`] reads
//! them, and [`Tls::reload_if_changed`] serves them at once.
//!
//! A failed order waits [`FIRST_RETRY`], doubling to [`MAX_RETRY`], at
//! least as long as the CA's `Retry-After`, and an hour when the CA says
//! `rateLimited`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use peach_dyndns_acme::http::{client_with_roots, AcmeHttp};
use peach_dyndns_acme::order::{Challenger, OrderError, Plan};

use crate::tls::{Reload, Tls};
use crate::State;

/// The first wait after a failed order.
pub const FIRST_RETRY: Duration = Duration::from_secs(60);
/// The longest wait between failed orders.
pub const MAX_RETRY: Duration = Duration::from_secs(6 * 60 * 60);
/// The least wait after the CA said `rateLimited`.
pub const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60 * 60);
/// After a certificate was issued, the next order comes no sooner than
/// this (a CA issuing short certificates must not be asked in a loop).
pub const RENEW_FLOOR: Duration = Duration::from_secs(60 * 60);
/// The longest sleep between looks (a clock jump or a file replaced by
/// hand is seen within this).
const LOOK_EVERY: Duration = Duration::from_secs(60 * 60);
/// Timeout of one HTTP request to the CA.
const CA_TIMEOUT: Duration = Duration::from_secs(30);
/// The user agent of the server's requests to the CA.
const USER_AGENT: &str = concat!("peach-dyndns-server/", env!("CARGO_PKG_VERSION"));

/// A challenge that the zone refused (the pipeline's message).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ZoneRefused(String);

/// The server's own zone as the order's challenger.
struct OwnZone<'a> {
    state: &'a State,
    label: &'a str,
}

impl OwnZone<'_> {
    fn owner(&self) -> String {
        self.state.keypair.id()
    }
}

impl Challenger for OwnZone<'_> {
    type Error = ZoneRefused;

    async fn set(&mut self, values: &[String]) -> Result<(), ZoneRefused> {
        let owner = self.owner();
        let _guards = self.state.locks.lock(&owner, self.label).await;
        crate::pipeline::acme_set(self.state, self.label, owner.clone(), values.to_vec(), None)
            .await
            .map(|_| ())
            .map_err(|e| ZoneRefused(e.message))
    }

    async fn clear(&mut self) -> Result<(), ZoneRefused> {
        let owner = self.owner();
        let _guards = self.state.locks.lock(&owner, self.label).await;
        crate::pipeline::acme_clear(self.state, self.label, &owner, None)
            .await
            .map(|_| ())
            .map_err(|e| ZoneRefused(e.message))
    }
}

/// When the certificate being served needs renewing: now (`ZERO`) when
/// there is none or it does not cover `host`, else `renew_before` ahead of
/// its notAfter.
pub fn renew_in(tls: &Tls, host: &str, renew_before: Duration, now: SystemTime) -> Duration {
    let (Some(info), Some(current)) = (tls.info(), tls.current()) else {
        return Duration::ZERO;
    };
    if !crate::tls::covers(&current, host) {
        return Duration::ZERO;
    }
    info.not_after
        .checked_sub(renew_before)
        .and_then(|due| due.duration_since(now).ok())
        .unwrap_or(Duration::ZERO)
}

/// The wait after `failures` failed orders in a row (1 or more).
pub fn retry_wait(failures: u32, rate_limited: bool, asked: Option<Duration>) -> Duration {
    let doubling = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let mut wait = doubling.min(MAX_RETRY);
    if rate_limited {
        wait = wait.max(asked.unwrap_or(RATE_LIMIT_WAIT));
    } else if let Some(asked) = asked {
        wait = wait.max(asked);
    }
    wait
}

/// Orders, serves and renews the certificate until `shutdown` resolves.
/// Does nothing unless the config has `tls.acme = true`.
pub async fn run(state: Arc<State>, tls: Arc<Tls>, shutdown: impl Future<Output = ()>) {
    let (Some(config), Some(label), Some(host)) = (
        state.config.tls.clone(),
        state.config.own_acme_label(),
        state.config.public_host(),
    ) else {
        return;
    };
    let Some(dir) = config.acme_dir().map(std::path::Path::to_path_buf) else {
        return;
    };
    tokio::pin!(shutdown);
    let renew_before = Duration::from_secs(u64::from(config.acme_renew_before_days) * 86_400);
    let plan = Plan {
        directory_url: config.acme_directory_url.clone(),
        email: config.acme_email.clone(),
        names: vec![host.clone()],
        dir,
        // Only the server reads its key.
        key_mode: 0o600,
    };
    let mut failures: u32 = 0;
    let mut not_before = tokio::time::Instant::now();
    loop {
        let due = renew_in(&tls, &host, renew_before, SystemTime::now());
        let at = (tokio::time::Instant::now() + due.min(LOOK_EVERY)).max(not_before);
        if at > tokio::time::Instant::now() {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep_until(at) => {}
            }
            if !renew_in(&tls, &host, renew_before, SystemTime::now()).is_zero() {
                continue;
            }
        }
        tracing::info!(host = %host, directory = %plan.directory_url, "ordering the server's TLS certificate");
        let outcome = tokio::select! {
            () = &mut shutdown => return,
            outcome = order(&state, &plan, &label, config.acme_ca_file.as_deref()) => outcome,
        };
        match outcome {
            Ok(()) => {
                failures = 0;
                not_before = tokio::time::Instant::now() + RENEW_FLOOR;
                match tls.reload_if_changed() {
                    Reload::Loaded(info) => tracing::info!(
                        names = ?info.names,
                        not_after = %info.not_after_utc(),
                        "TLS certificate from ACME served"
                    ),
                    Reload::Unchanged => {}
                    Reload::Refused(e) => {
                        tracing::error!(error = %e, "the certificate from ACME does not load")
                    }
                }
            }
            Err((e, asked)) => {
                failures = failures.saturating_add(1);
                let wait = retry_wait(failures, e.is_rate_limited(), asked);
                tracing::warn!(error = %e, failures, retry_in = ?wait, "the server's certificate order failed");
                not_before = tokio::time::Instant::now() + wait;
            }
        }
    }
}

/// One order: the files are written when it succeeds.
async fn order(
    state: &State,
    plan: &Plan,
    label: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<(), (OrderError, Option<Duration>)> {
    let client = client_with_roots(CA_TIMEOUT, ca_file, USER_AGENT)
        .map_err(|e| (OrderError::Key(e.to_string()), None))?;
    let http = AcmeHttp::new(client);
    let mut zone = OwnZone { state, label };
    match peach_dyndns_acme::order::obtain(plan, &http, &mut zone).await {
        Ok(_) => Ok(()),
        Err(e) => Err((e, http.take_retry_after())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_to_the_cap_and_honour_the_ca() {
        assert_eq!(retry_wait(1, false, None), FIRST_RETRY);
        assert_eq!(retry_wait(2, false, None), FIRST_RETRY * 2);
        assert_eq!(retry_wait(40, false, None), MAX_RETRY);
        assert_eq!(retry_wait(u32::MAX, false, None), MAX_RETRY);
        let asked = Duration::from_secs(600);
        assert_eq!(retry_wait(1, false, Some(asked)), asked);
        assert_eq!(retry_wait(1, true, None), RATE_LIMIT_WAIT);
        assert_eq!(retry_wait(1, true, Some(asked)), asked.max(FIRST_RETRY));
    }
}
