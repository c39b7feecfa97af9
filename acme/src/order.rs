//! One ACME order: account, order, DNS-01 through a [`Challenger`] (the
//! daemon's signed `acme_set` to the pub, or the server's own zone),
//! finalize with the kept key, files written atomically. The TXT values
//! are cleared afterwards, also when the order failed.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use crate::files::{self, CertInfo, FileError};
use crate::http::AcmeHttp;

/// Sets and clears the `_acme-challenge` TXT values of the order's name.
pub trait Challenger {
    /// Why a set or clear failed.
    type Error: std::error::Error + Send + Sync + 'static;
    /// `_acme-challenge.<name>` answers exactly `values` (1 or 2).
    fn set(&mut self, values: &[String]) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// The values are gone.
    fn clear(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// What one order is for and where its files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The CA's RFC 8555 directory.
    pub directory_url: String,
    /// A contact address for the CA (without `mailto:`).
    pub email: Option<String>,
    /// The certificate's DNS names (the name, and `*.name` for a wildcard:
    /// both share one `_acme-challenge` TXT name).
    pub names: Vec<String>,
    /// Where `fullchain.pem`, `privkey.pem` and `account.json` live.
    pub dir: PathBuf,
    /// Mode of `privkey.pem` (0640 for a group a web server joins).
    pub key_mode: u32,
}

impl Plan {
    /// `fullchain.pem`: the certificate and its chain.
    pub fn fullchain_path(&self) -> PathBuf {
        fullchain_path(&self.dir)
    }
    /// `privkey.pem`: the certificate's key (kept across renewals).
    pub fn privkey_path(&self) -> PathBuf {
        privkey_path(&self.dir)
    }
    /// `account.json`: the ACME account's key and URL, per directory.
    pub fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }
}

/// `<dir>/fullchain.pem`.
pub fn fullchain_path(dir: &Path) -> PathBuf {
    dir.join("fullchain.pem")
}

/// `<dir>/privkey.pem`.
pub fn privkey_path(dir: &Path) -> PathBuf {
    dir.join("privkey.pem")
}

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
    /// The challenge values could not be set (the pub or the zone said no).
    #[error("the challenge was not set: {0}")]
    Challenge(Box<dyn std::error::Error + Send + Sync>),
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
async fn account(cfg: &Plan, http: &AcmeHttp) -> Result<Account, OrderError> {
    let path = cfg.account_path();
    if let Some(bytes) = files::read_optional(&path)? {
        match serde_json::from_slice::<StoredAccount>(&bytes) {
            Ok(stored) if stored.directory_url == cfg.directory_url => {
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
            cfg.directory_url.clone(),
            None,
        )
        .await?;
    let stored = StoredAccount {
        directory_url: cfg.directory_url.clone(),
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
fn certificate_key(cfg: &Plan) -> Result<(rcgen::KeyPair, bool), OrderError> {
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

/// Runs one order and writes the files. The challenge values are cleared
/// whatever happened once they were set.
pub async fn obtain(
    cfg: &Plan,
    http: &AcmeHttp,
    challenger: &mut impl Challenger,
) -> Result<CertInfo, OrderError> {
    files::ensure_dir(&cfg.dir)?;
    let account = account(cfg, http).await?;
    let names = &cfg.names;
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
        challenger
            .set(&values)
            .await
            .map_err(|e| OrderError::Challenge(Box::new(e)))?;
    }
    let result = validate_and_finalize(cfg, &mut order, names, !values.is_empty()).await;
    if !values.is_empty() {
        if let Err(e) = challenger.clear().await {
            // The pub (and the server's own sweep) removes them by itself
            // after its acme_lifetime_secs.
            tracing::warn!(error = %e, "could not clear the challenge; it expires by itself");
        }
    }
    let (chain, key_pem, new_key) = result?;
    if new_key {
        files::write_atomically(&cfg.privkey_path(), key_pem.as_bytes(), cfg.key_mode)?;
    }
    files::write_atomically(&cfg.fullchain_path(), chain.as_bytes(), 0o644)?;
    let info = files::cert_info(&cfg.fullchain_path(), chain.as_bytes())?;
    tracing::info!(names = ?info.names, not_after = info.not_after, "certificate written");
    Ok(info)
}

/// Tells the CA the challenges are ready, waits for the order, finalizes
/// with the kept key and fetches the chain.
async fn validate_and_finalize(
    cfg: &Plan,
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
