//! ACME challenges over time: the start-up reconcile and the expiry sweep.
//!
//! `acme_set` and `acme_clear` run in [`crate::pipeline`]. What happens to
//! their values afterwards lives here:
//! - [`reconcile`] at start: names whose challenge DNS may hold without a
//!   commit (an intent left by a crash) are cleared, expired challenges
//!   are cleared and forgotten, live ones are written to DNS again (the
//!   embedded DNS starts empty; BIND may have lost them).
//! - [`sweep`], run every [`SWEEP_EVERY`] by [`run_sweeper`]: challenges
//!   past `expires_at` are cleared in DNS, then removed from the registry,
//!   each under its name's lock like any update.
//! - [`clear_for_removal`]: a released or revoked name loses its challenge.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_ms;
use crate::dns::{ChallengeChange, DnsError};
use crate::registry::RegistryError;
use crate::state::ReapplyError;
use crate::State;

/// How often expired challenges are looked for. One second: a value is
/// gone within a second of its expiry, and the look is one indexed query.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Errors of the sweep; the sweep logs them and tries again next round.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The registry could not be read or written.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// DNS refused to clear a challenge.
    #[error("clearing the ACME challenge of {name}: {source}")]
    Dns {
        /// The label.
        name: String,
        /// The backend's error.
        source: DnsError,
    },
}

fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Clears `name`'s challenge in DNS if the registry holds one (the row
/// itself goes with the name's row, by the registry's trigger). For
/// release and revoke, under the name's lock.
pub async fn clear_for_removal(state: &State, name: &str) -> Result<(), SweepError> {
    if state.registry.challenge(name)?.is_some() {
        state
            .dns
            .apply_challenge(&ChallengeChange::Clear {
                name: name.to_string(),
            })
            .await
            .map_err(|source| SweepError::Dns {
                name: name.to_string(),
                source,
            })?;
    }
    Ok(())
}

/// Puts DNS in step with the registry's challenges at start. Returns how
/// many live challenges were written.
pub async fn reconcile(state: &State) -> Result<usize, ReapplyError> {
    let dns_err = |names: usize| {
        move |e: DnsError| ReapplyError::Dns {
            names,
            message: format!("ACME challenges: {e}"),
        }
    };
    let intents = state.registry.challenge_intents()?;
    for name in &intents {
        state
            .dns
            .apply_challenge(&ChallengeChange::Clear { name: name.clone() })
            .await
            .map_err(dns_err(intents.len()))?;
        state.registry.clear_challenge_intent(name)?;
    }
    let now = now_secs();
    let mut live = 0;
    let all = state.registry.challenges()?;
    for challenge in &all {
        if challenge.expires_at > now {
            state
                .dns
                .apply_challenge(&ChallengeChange::Set(challenge.records()))
                .await
                .map_err(dns_err(all.len()))?;
            live += 1;
        } else {
            state
                .dns
                .apply_challenge(&ChallengeChange::Clear {
                    name: challenge.name.clone(),
                })
                .await
                .map_err(dns_err(all.len()))?;
            state.registry.commit_challenge_clear(
                &challenge.name,
                None,
                Some(challenge.expires_at),
            )?;
        }
    }
    Ok(live)
}

/// Clears every challenge past its expiry: DNS first, then the registry,
/// under the name's lock, and only if the challenge was not set again
/// meanwhile. Returns how many were removed.
pub async fn sweep(state: &State) -> Result<usize, SweepError> {
    let mut removed = 0;
    for expired in state.registry.expired_challenges(now_secs())? {
        let _guards = state.locks.lock(&expired.owner, &expired.name).await;
        // Re-read under the lock: an `acme_set` may have renewed it.
        match state.registry.challenge(&expired.name)? {
            Some(now) if now.expires_at == expired.expires_at => {}
            _ => continue,
        }
        state
            .dns
            .apply_challenge(&ChallengeChange::Clear {
                name: expired.name.clone(),
            })
            .await
            .map_err(|source| SweepError::Dns {
                name: expired.name.clone(),
                source,
            })?;
        if state
            .registry
            .commit_challenge_clear(&expired.name, None, Some(expired.expires_at))?
        {
            removed += 1;
            tracing::info!(name = %expired.name, "ACME challenge expired and removed");
        }
    }
    Ok(removed)
}

/// Runs [`sweep`] every [`SWEEP_EVERY`] until `shutdown` resolves.
pub async fn run_sweeper(state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {
                if let Err(e) = sweep(&state).await {
                    tracing::warn!(error = %e, "ACME challenge sweep failed; trying again");
                }
            }
        }
    }
}
