//! The Pi's order: the name (and `*.name`) at its pub, the challenge set
//! through the signed `acme_set`/`acme_clear` ([`ChallengeSigner`]), the
//! order itself run by [`peach_dyndns_acme::order::obtain`].

use peach_dyndns_acme::files::CertInfo;
use peach_dyndns_acme::http::AcmeHttp;
pub use peach_dyndns_acme::order::OrderError;
use peach_dyndns_acme::order::{Challenger, Plan};

use super::config::AcmeConfig;
use super::signer::{ChallengeSigner, ChallengeTarget};
use crate::pubapi::UpdateError;

/// The names of the certificate: the name, and `*.name` with `wildcard`.
pub fn names(cfg: &AcmeConfig, target: &ChallengeTarget) -> Vec<String> {
    let fqdn = target.fqdn();
    let mut names = vec![fqdn.clone()];
    if cfg.wildcard {
        names.push(format!("*.{fqdn}"));
    }
    names
}

/// What the order asks for and where its files go: `privkey.pem` 0640,
/// for the group peach-web's nginx joins.
pub fn plan(cfg: &AcmeConfig, target: &ChallengeTarget) -> Plan {
    Plan {
        directory_url: cfg.directory_url.to_string(),
        email: cfg.email.clone(),
        names: names(cfg, target),
        dir: cfg.cert_dir.clone(),
        key_mode: 0o640,
    }
}

/// The pub's `acme_set`/`acme_clear` for one target.
struct AtThePub<'a> {
    signer: &'a mut ChallengeSigner,
    target: &'a ChallengeTarget,
}

impl Challenger for AtThePub<'_> {
    type Error = UpdateError;

    async fn set(&mut self, values: &[String]) -> Result<(), UpdateError> {
        self.signer.set(self.target, values).await.map(|_| ())
    }

    async fn clear(&mut self) -> Result<(), UpdateError> {
        self.signer.clear(self.target).await.map(|_| ())
    }
}

/// Runs one order for `target` and writes the files. The challenge values
/// are cleared at the pub whatever happened once they were set (the pub
/// also drops them by itself after its `acme_lifetime_secs`).
pub async fn obtain(
    cfg: &AcmeConfig,
    http: &AcmeHttp,
    signer: &mut ChallengeSigner,
    target: &ChallengeTarget,
) -> Result<CertInfo, OrderError> {
    peach_dyndns_acme::order::obtain(&plan(cfg, target), http, &mut AtThePub { signer, target })
        .await
}
