//! Names of keys the pub stopped following: a grace, then they stop
//! resolving, then a second grace, then they are free.
//!
//! Every `grace.check_every_secs` the server asks the graph about each key
//! that holds names here, one key at a time (so the pub's own Pis, whose
//! standing is cached, never queue behind the sweep for long):
//! - followed: a lapse recorded earlier is forgotten;
//! - not followed or blocked: the lapse is recorded (the time it was first
//!   seen is kept); after `unfollowed_secs` (`blocked_secs` for a block)
//!   the key's names are removed from DNS and their addresses cleared in
//!   the registry (the key still holds them: followed again, its next
//!   update brings them back); `free_after_secs` later they are deleted.
//! - the graph cannot be asked: the sweep stops and changes nothing.
//!
//! The update pipeline records the lapse too when it refuses such a key,
//! and tells it in the answer when its names stop resolving.

use std::sync::Arc;
use std::time::Duration;

use peach_dyndns_protocol::identity::PublicKey;

use crate::config::GraceConfig;
use crate::dns::ZoneChange;
use crate::graph::Standing;
use crate::registry::{Lapse, RegistryError};
use crate::state::State;

/// Owners read from the registry at a time.
const PAGE: u32 = 500;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Keys asked about.
    pub keys: usize,
    /// Lapses forgotten because the key is followed again.
    pub cleared: usize,
    /// Keys whose names stopped resolving in this sweep.
    pub suspended: usize,
    /// Names freed in this sweep.
    pub freed: usize,
    /// The sweep stopped early: the graph or DNS could not be reached.
    pub stopped: Option<String>,
}

/// When a lapse's names stop resolving and when they are freed (unix ms).
pub fn deadlines(grace: &GraceConfig, lapse: &Lapse) -> (u64, u64) {
    let first = if lapse.blocked {
        grace.blocked_secs
    } else {
        grace.unfollowed_secs
    };
    let stops = lapse
        .suspended_ms
        .unwrap_or_else(|| lapse.since_ms.saturating_add(first.saturating_mul(1000)));
    (
        stops,
        stops.saturating_add(grace.free_after_secs.saturating_mul(1000)),
    )
}

/// Runs one sweep at `now_ms`.
pub async fn sweep(state: &State, now_ms: u64) -> Result<Swept, RegistryError> {
    let mut swept = Swept::default();
    let mut after: Option<String> = None;
    loop {
        let owners = state.registry.owners_page(after.as_deref(), PAGE)?;
        let Some(last) = owners.last() else { break };
        after = Some(last.clone());
        for owner in owners {
            let Ok(key) = owner.parse::<PublicKey>() else {
                tracing::warn!(%owner, "registry holds an owner that is not an SSB id; skipped");
                continue;
            };
            swept.keys += 1;
            let standing = match state.graph.standing(&key).await {
                Ok(standing) => standing,
                Err(e) => {
                    swept.stopped = Some(format!("the graph cannot be asked: {e}"));
                    return Ok(swept);
                }
            };
            if let Err(e) = settle(state, &owner, standing, now_ms, &mut swept).await {
                swept.stopped = Some(e);
                return Ok(swept);
            }
            // Let requests waiting for the sbot connection go first.
            tokio::task::yield_now().await;
        }
    }
    Ok(swept)
}

async fn settle(
    state: &State,
    owner: &str,
    standing: Standing,
    now_ms: u64,
    swept: &mut Swept,
) -> Result<(), String> {
    let blocked = match standing {
        Standing::Followed => {
            if state
                .registry
                .lapse(owner)
                .map_err(|e| e.to_string())?
                .is_some()
            {
                state
                    .registry
                    .clear_lapse(owner)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(%owner, "followed again: its names keep their standing");
                swept.cleared += 1;
            }
            return Ok(());
        }
        Standing::NotFollowed => false,
        Standing::Blocked => true,
    };
    let lapse = state
        .registry
        .note_lapse(owner, blocked, now_ms)
        .await
        .map_err(|e| e.to_string())?;
    let (stops, frees) = deadlines(&state.config.grace, &lapse);
    if lapse.suspended_ms.is_none() && now_ms >= stops {
        let names = state.registry.names_of(owner).map_err(|e| e.to_string())?;
        for name in &names {
            let _guards = state.locks.lock(owner, name).await;
            state
                .dns
                .apply(&ZoneChange::Remove { name: name.clone() })
                .await
                .map_err(|e| format!("DNS refused removing {name}: {e}"))?;
        }
        // Under no lock: an update from this key is refused by the graph
        // check anyway, and a race with one that passed it just before
        // only re-sets addresses the next sweep clears again.
        state
            .registry
            .suspend(owner, now_ms)
            .await
            .map_err(|e| e.to_string())?;
        tracing::warn!(%owner, ?names, blocked, "key no longer followed: its names stopped resolving");
        swept.suspended += 1;
    } else if lapse.suspended_ms.is_some() && now_ms >= frees {
        let freed = state
            .registry
            .free(owner)
            .await
            .map_err(|e| e.to_string())?;
        tracing::warn!(%owner, names = ?freed, "key no longer followed: its names are free");
        swept.freed += freed.len();
    }
    Ok(())
}

/// Sweeps every `grace.check_every_secs` until `stop` resolves.
pub async fn run(state: Arc<State>, stop: impl std::future::Future<Output = ()>) {
    let every = Duration::from_secs(state.config.grace.check_every_secs);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticks.tick() => {}
        }
        match sweep(&state, crate::clock::now_ms()).await {
            Ok(swept) => {
                if let Some(why) = &swept.stopped {
                    tracing::warn!(reason = %why, "grace sweep stopped early; nothing else changed");
                } else if swept.cleared + swept.suspended + swept.freed > 0 {
                    tracing::info!(
                        keys = swept.keys,
                        cleared = swept.cleared,
                        suspended = swept.suspended,
                        freed = swept.freed,
                        "grace sweep"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "grace sweep: the registry failed"),
        }
    }
}
