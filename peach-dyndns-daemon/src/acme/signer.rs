//! The DNS-01 challenge step through the signed protocol: `acme_set` and
//! `acme_clear` to the pub that holds the name. The ACME client and the
//! hook mode (`acme-hook`) both go through [`ChallengeSigner`].

use std::sync::Arc;

use peach_dyndns_protocol::identity::{Keypair, PublicKey};
use peach_dyndns_protocol::message::{Op, UpdateMsg};
use peach_dyndns_protocol::rules::{believable_last_seq, check_txt, next_seq};
use peach_dyndns_protocol::seal::seal_update;
use peach_dyndns_protocol::ErrorCode;
use reqwest::Url;

use crate::pubapi::{Accepted, PubApi, UpdateError};
use crate::updater::WallClock;

/// The pub and the name a challenge is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeTarget {
    /// The pub's key (messages are sealed to it and name it).
    pub pub_id: PublicKey,
    /// Its update URL.
    pub url: Url,
    /// Its zone.
    pub domain: String,
    /// The label this key holds there.
    pub name: String,
}

impl ChallengeTarget {
    /// `<name>.<domain>`.
    pub fn fqdn(&self) -> String {
        format!("{}.{}", self.name, self.domain)
    }
}

/// Signs, seals and sends the ACME ops for one key, keeping its own `seq`
/// (the clock, or one past the last it sent): the update loop and this
/// share the key's `seq` at the pub, so both build on the clock, and a
/// `stale_seq` whose `last_seq` is believable is moved past once.
pub struct ChallengeSigner {
    /// The Pi's key.
    keypair: Keypair,
    /// The pub's API.
    api: Arc<dyn PubApi>,
    /// Unix milliseconds.
    clock: WallClock,
    /// The last `seq` this signer sent (or the caller knew of).
    last_seq: Option<u64>,
}

impl ChallengeSigner {
    /// A signer for `keypair`; `last_seq` is the highest `seq` known to
    /// have been sent for this key (none: the clock decides).
    pub fn new(
        keypair: Keypair,
        api: Arc<dyn PubApi>,
        clock: WallClock,
        last_seq: Option<u64>,
    ) -> ChallengeSigner {
        ChallengeSigner {
            keypair,
            api,
            clock,
            last_seq,
        }
    }

    /// The key's public id.
    pub fn public_key(&self) -> PublicKey {
        self.keypair.public()
    }

    /// `acme_set`: the name's challenge answers exactly `values` (1 or 2
    /// base64url digests; checked here first, so a bad one is never sent).
    pub async fn set(
        &mut self,
        target: &ChallengeTarget,
        values: &[String],
    ) -> Result<Accepted, UpdateError> {
        check_txt(values).map_err(|e| UpdateError::BadAnswer {
            url: target.url.to_string(),
            status: 0,
            detail: format!("not sent: {e}"),
            retry_after: None,
        })?;
        self.send(target, Op::AcmeSet, Some(values.to_vec())).await
    }

    /// `acme_clear`: the name's challenge answers nothing.
    pub async fn clear(&mut self, target: &ChallengeTarget) -> Result<Accepted, UpdateError> {
        self.send(target, Op::AcmeClear, None).await
    }

    async fn send(
        &mut self,
        target: &ChallengeTarget,
        op: Op,
        txt: Option<Vec<String>>,
    ) -> Result<Accepted, UpdateError> {
        let mut last_err = None;
        for _ in 0..2 {
            let now_ms = (self.clock)();
            let believed = self.last_seq.filter(|s| believable_last_seq(*s, now_ms));
            let seq = next_seq(believed, now_ms);
            self.last_seq = Some(seq);
            let msg = UpdateMsg {
                op,
                name: target.name.clone(),
                domain: target.domain.clone(),
                ip: None,
                ip6: None,
                pub_id: target.pub_id,
                public_key: self.keypair.public(),
                seq,
                token_sha256: None,
                txt: txt.clone(),
            };
            let envelope = seal_update(&msg.sign(&self.keypair), &target.pub_id).map_err(|e| {
                UpdateError::BadAnswer {
                    url: target.url.to_string(),
                    status: 0,
                    detail: e.to_string(),
                    retry_after: None,
                }
            })?;
            match self.api.send_update(&target.url, &envelope).await {
                Err(UpdateError::Refused {
                    code: ErrorCode::StaleSeq,
                    last_seq: Some(theirs),
                    ..
                }) if believable_last_seq(theirs, now_ms) && theirs >= seq => {
                    tracing::info!(
                        ours = seq,
                        theirs,
                        "the pub has a later seq; moving past it"
                    );
                    self.last_seq = Some(theirs);
                    last_err = Some(UpdateError::BadAnswer {
                        url: target.url.to_string(),
                        status: 409,
                        detail: format!("seq {seq} is not above the pub's {theirs}"),
                        retry_after: None,
                    });
                }
                other => return other,
            }
        }
        Err(last_err.expect("invariant: the loop ran and stored its error"))
    }
}
