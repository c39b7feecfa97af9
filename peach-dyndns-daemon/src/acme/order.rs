//! One ACME order for the name (and `*.name`): account, order, DNS-01
//! through the pub, finalize with the kept key, files written atomically.
//! The TXT values are cleared at the pub afterwards, also when the order
//! failed.

use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use super::config::AcmeConfig;
use super::files::{self, CertInfo, FileError};
use super::http::AcmeHttp;
use super::signer::{ChallengeSigner, ChallengeTarget};
use crate::pubapi::UpdateError;

/// How long to wait for the CA to validate and to issue. Let's Encrypt
/// takes seconds; a minute covers a slow day without hanging the loop.
const ORDER_TIMEOUT: Duration = Duration::from_secs(90);

/// Why an order did not end with a certificate on disk.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The CA said no, or could not be reached.
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    /// The CA refused with `rateLimited`.
    #[error("the CA rate-limits this account or name: {0}")]
    RateLimited(String),
    /// The pub did not take the challenge values.
    #[error("the pub did not set the challenge: {0}")]
    Pub(#[from] UpdateError),
    /// The order ended in a state other than valid.
    #[error("the order is {0}")]
    Failed(String),
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The key or CSR could not be made.
    #[error("cannot make the certificate key or request: {0}")]
    Key(String),
}

impl OrderError {
    /// Whether the CA rate-limited us (a longer wait than the backoff).
    pub fn is_rate_limited(&self) -> bool {
        match self {
            OrderError::RateLimited(_) => true,
            OrderError::Acme(instant_acme::Error::Api(p)) => p
                .r#type
                .as_deref()
                .is_some_and(|t| t.ends_with(":rateLimited")),
            _ => false,
        }
    }
}

/// `account.json`: the account for one directory.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    /// The directory the account belongs to.
    directory_url: String,
    /// instant-acme's credentials (the account key and URL).
    credentials: AccountCredentials,
}

/// The account for the configured directory: the stored one, or a new
/// one (stored 0600 before use).
async fn account(cfg: &AcmeConfig, http: &AcmeHttp) -> Result<Account, OrderError> {
    let path = cfg.account_path();
    if let Some(bytes) = files::read_optional(&path)? {
        match serde_json::from_slice::<StoredAccount>(&bytes) {
            Ok(stored) if stored.directory_url == cfg.directory_url.as_str() => {
                return Ok(Account::builder_with_http(Box::new(http.clone()))
                    .from_credentials(stored.credentials)
                    .await?);
            }
            Ok(_) => {
                tracing::info!(path = %path.display(), "the stored ACME account is for another directory; making a new one")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "the stored ACME account is unreadable; making a new one")
            }
        }
    }
    let contact = cfg.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(Box::new(http.clone()))
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            cfg.directory_url.to_string(),
            None,
        )
        .await?;
    let stored = StoredAccount {
        directory_url: cfg.directory_url.to_string(),
        credentials,
    };
    let json = serde_json::to_vec_pretty(&stored)
        .map_err(|e| OrderError::Key(format!("cannot encode the account: {e}")))?;
    files::write_atomically(&path, &json, 0o600)?;
    tracing::info!(id = account.id(), "ACME account created");
    Ok(account)
}

/// The certificate's key: `privkey.pem` if it holds one (kept across
/// renewals and restarts), else a new ECDSA P-256 key.
fn certificate_key(cfg: &AcmeConfig) -> Result<(rcgen::KeyPair, bool), OrderError> {
    let path = cfg.privkey_path();
    if let Some(bytes) = files::read_optional(&path)? {
        let text = String::from_utf8_lossy(&bytes);
        match rcgen::KeyPair::from_pem(&text) {
            Ok(key) => return Ok((key, false)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "privkey.pem holds no usable key; making a new one")
            }
        }
    }
    let key = rcgen::KeyPair::generate().map_err(|e| OrderError::Key(e.to_string()))?;
    Ok((key, true))
}

/// The names of the certificate: the name, and `*.name` with `wildcard`.
pub fn names(cfg: &AcmeConfig, target: &ChallengeTarget) -> Vec<String> {
    let fqdn = target.fqdn();
    let mut names = vec![fqdn.clone()];
    if cfg.wildcard {
        names.push(format!("*.{fqdn}"));
    }
    names
}

/// Runs one order and writes the files. The challenge values are cleared
/// at the pub whatever happened once they were set.
pub async fn obtain(
    cfg: &AcmeConfig,
    http: &AcmeHttp,
    signer: &mut ChallengeSigner,
    target: &ChallengeTarget,
) -> Result<CertInfo, OrderError> {
    files::ensure_dir(&cfg.cert_dir)?;
    let account = account(cfg, http).await?;
    let names = names(cfg, target);
    let identifiers: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    // Pass 1: the values of every pending DNS-01 challenge (the name and
    // its wildcard share `_acme-challenge.<name>`, so both go at once).
    let mut values = Vec::new();
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(OrderError::Failed(format!("authorization {other:?}"))),
            }
            let challenge = authz
                .challenge(ChallengeType::Dns01)
                .ok_or_else(|| OrderError::Failed("the CA offers no dns-01 challenge".into()))?;
            values.push(challenge.key_authorization().dns_value());
        }
    }
    if !values.is_empty() {
        signer.set(target, &values).await?;
    }
    let result = validate_and_finalize(cfg, &mut order, &names, !values.is_empty()).await;
    if !values.is_empty() {
        if let Err(e) = signer.clear(target).await {
            // The pub removes them by itself after its acme_lifetime_secs.
            tracing::warn!(error = %e, "could not clear the challenge at the pub; it expires there by itself");
        }
    }
    let (chain, key_pem, new_key) = result?;
    if new_key {
        files::write_atomically(&cfg.privkey_path(), key_pem.as_bytes(), 0o640)?;
    }
    files::write_atomically(&cfg.fullchain_path(), chain.as_bytes(), 0o644)?;
    let info = files::cert_info(&cfg.fullchain_path(), chain.as_bytes())?;
    tracing::info!(names = ?info.names, not_after = info.not_after, "certificate written");
    Ok(info)
}

/// Tells the CA the challenges are ready, waits for the order, finalizes
/// with the kept key and fetches the chain.
async fn validate_and_finalize(
    cfg: &AcmeConfig,
    order: &mut instant_acme::Order,
    names: &[String],
    any_pending: bool,
) -> Result<(String, String, bool), OrderError> {
    if any_pending {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut challenge) = authz.challenge(ChallengeType::Dns01) {
                challenge.set_ready().await?;
            }
        }
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(ORDER_TIMEOUT);
    let status = order.poll_ready(&retries).await?;
    if status != OrderStatus::Ready {
        let detail = order
            .state()
            .error
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| format!("{status:?}"));
        if detail.contains("rateLimited") {
            return Err(OrderError::RateLimited(detail));
        }
        return Err(OrderError::Failed(detail));
    }
    let (key, new_key) = certificate_key(cfg)?;
    let params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| OrderError::Key(e.to_string()))?;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| OrderError::Key(e.to_string()))?;
    order.finalize_csr(csr.der()).await?;
    let chain = order.poll_certificate(&retries).await?;
    Ok((chain, key.serialize_pem(), new_key))
}
