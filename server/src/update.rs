//! The front door of signed updates (`POST /update`).
//!
//! size → parse → open seal → verify signature → `pub` → domain → op's
//! fields → name rules → IP rules → rate limit → `seq` (early) → then
//! [`crate::pipeline::run`]: social graph → locks → `seq` → ownership → DNS
//! → registry.

use std::net::IpAddr;

use peach_dyndns_protocol::message::Op;
use peach_dyndns_protocol::{rules, seal};

use crate::pipeline::{self, Accepted, Action, ApiError, Auth, Request};
use crate::State;

/// Handles the body of `POST /update` from `peer`.
pub async fn handle_update(
    state: &State,
    body: &[u8],
    peer: Option<IpAddr>,
) -> Result<Accepted, ApiError> {
    // Refusals cost CPU (an X25519 and an ed25519 operation, perhaps a
    // graph lookup) and prove nothing good about the sender, so each
    // source has a budget of them.
    if let Some(ip) = peer {
        state.failures_left(ip).map_err(ApiError::rate_limited)?;
    }
    let result = checked(state, body).await;
    if let (Err(e), Some(ip)) = (&result, peer) {
        if e.sender_pays {
            state.charge_failure(ip);
        }
    }
    result
}

async fn checked(state: &State, body: &[u8]) -> Result<Accepted, ApiError> {
    let verified = seal::open_envelope_with(body, &state.opener)?;
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
    // Cheap early check, so replays never reach sbot; repeated under the
    // lock in the pipeline, where it counts.
    pipeline::check_seq(state, &msg.public_key.to_string(), msg.seq)?;
    state
        .key_limits
        .take(&msg.public_key)
        .map_err(ApiError::rate_limited)?;
    let action = match msg.op {
        Op::Update => Action::Update {
            ip: msg.ip,
            ip6: msg.ip6,
            token_sha256: msg.token_sha256,
        },
        Op::Release => Action::Release,
        Op::AcmeSet => Action::AcmeSet(
            msg.txt
                .expect("invariant: check_shape requires `txt` on acme_set"),
        ),
        Op::AcmeClear => Action::AcmeClear,
    };
    pipeline::run(
        state,
        Request {
            key: msg.public_key,
            name: msg.name,
            auth: Auth::Signed { seq: msg.seq },
            action,
        },
    )
    .await
}
