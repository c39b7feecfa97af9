//! The pub's own HTTPS: a PEM certificate chain and key from files, served
//! with rustls (on ring), and loaded again when the files change.
//!
//! Why polling and not only SIGHUP: certbot, acme.sh and lego replace the
//! files (certbot through a symlink into `archive/`) without telling us,
//! and a hook that forgets to signal would leave an expired certificate
//! served. A `stat` of two files every few seconds sees each renewal.
//! The look records the files' stamps (device, inode, size, mtime) before
//! reading them, so a change that lands during a read is seen at the next
//! look. A replacement that does not load (a key that is not the
//! certificate's, half a file, no certificate) keeps the certificate being
//! served, is logged once with the file's name, and is tried again when
//! either file changes again (certbot writes the certificate and the key
//! one after the other; the second write makes the pair load).
//!
//! ALPN offers `http/1.1` only: [`crate::conn`] serves HTTP/1.1 alone.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// Errors loading the certificate or key; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no PEM block of the kind wanted, or a broken one.
    #[error("{what} file {path}: {message}")]
    Pem {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The first certificate cannot be parsed as X.509.
    #[error("certificate file {path}: the first certificate is not valid X.509: {message}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// rustls cannot sign with the key (an unsupported algorithm).
    #[error("key file {path}: cannot use the key: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// rustls's message.
        message: String,
    },
    /// The key is not the first certificate's.
    #[error("key file {key} does not belong to the certificate in {certificate}")]
    Mismatch {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the configuration (should not happen with ring).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// What [`load`] learnt of the server's certificate (the chain's first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The DNS names of its subjectAltName extension (wildcards as `*.x`).
    pub names: Vec<String>,
    /// Its notAfter.
    pub not_after: SystemTime,
    /// Certificates in the chain, the server's own included.
    pub chain_len: usize,
}

impl CertInfo {
    /// notAfter as `YYYY-MM-DD HH:MM:SS UTC`.
    pub fn not_after_utc(&self) -> String {
        utc(self.not_after)
    }
}

/// A certificate with its key, ready to serve, and what it says.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The chain and key as rustls serves them.
    pub certified: Arc<CertifiedKey>,
    /// Names and notAfter.
    pub info: CertInfo,
}

/// The one crypto provider: ring, as the rest of the tree uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks a PEM chain and key: the chain is not empty, its first
/// certificate parses, the key is one rustls can sign with and belongs to
/// that certificate.
pub fn load(certificate: &Path, key: &Path) -> Result<Loaded, TlsError> {
    let cert_bytes = std::fs::read(certificate).map_err(|source| TlsError::Read {
        what: "certificate",
        path: certificate.to_owned(),
        source,
    })?;
    let key_bytes = std::fs::read(key).map_err(|source| TlsError::Read {
        what: "key",
        path: key.to_owned(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: "certificate",
            path: certificate.to_owned(),
            message: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Pem {
            what: "certificate",
            path: certificate.to_owned(),
            message: "no CERTIFICATE block".into(),
        });
    };
    let info = inspect(leaf, chain.len()).map_err(|message| TlsError::Certificate {
        path: certificate.to_owned(),
        message,
    })?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TlsError::Pem {
        what: "key",
        path: key.to_owned(),
        message: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY block (PKCS#8, RSA or EC)".into()
            }
            e => e.to_string(),
        },
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| TlsError::Key {
            path: key.to_owned(),
            message: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            // ring's keys all give their public key; if one ever does not,
            // the handshake's own signature is what will tell.
            tracing::warn!(key = %key.display(), "cannot check that the key matches the certificate");
        }
        Err(_) => {
            return Err(TlsError::Mismatch {
                certificate: certificate.to_owned(),
                key: key.to_owned(),
            })
        }
    }
    Ok(Loaded {
        certified: Arc::new(certified),
        info,
    })
}

/// The names and notAfter of a certificate.
fn inspect(leaf: &CertificateDer<'_>, chain_len: usize) -> Result<CertInfo, String> {
    use x509_cert::der::Decode as _;
    let parsed = x509_cert::Certificate::from_der(leaf.as_ref()).map_err(|e| e.to_string())?;
    let not_after =
        SystemTime::UNIX_EPOCH + parsed.tbs_certificate.validity.not_after.to_unix_duration();
    let end_entity = webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("{e:?}"))?;
    let names = end_entity.valid_dns_names().map(str::to_string).collect();
    Ok(CertInfo {
        names,
        not_after,
        chain_len,
    })
}

/// Whether the certificate is valid for `host` (a DNS name or an IP
/// literal), by webpki's own matching (wildcards one label deep).
pub fn covers(certified: &CertifiedKey, host: &str) -> bool {
    let Some(leaf) = certified.cert.first() else {
        return false;
    };
    let Ok(end_entity) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(host) else {
        return false;
    };
    end_entity.verify_is_valid_for_subject_name(&name).is_ok()
}

/// A certificate expiring within this long is warned about (by `check`
/// and at start): Let's Encrypt's renewals start 30 days before, so a
/// certificate this close has missed two weeks of them.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// What an operator should be told about the certificate being served, at
/// `now`: expired, expiring within [`EXPIRY_WARNING`], not covering
/// `public_host`.
pub fn warnings(
    info: &CertInfo,
    certified: &CertifiedKey,
    public_host: Option<&str>,
    now: SystemTime,
) -> Vec<String> {
    let mut out = Vec::new();
    match info.not_after.duration_since(now) {
        Err(_) => out.push(format!(
            "the TLS certificate expired at {}",
            info.not_after_utc()
        )),
        Ok(left) if left < EXPIRY_WARNING => out.push(format!(
            "the TLS certificate expires within 14 days, at {} ({} days left)",
            info.not_after_utc(),
            left.as_secs() / 86_400
        )),
        Ok(_) => {}
    }
    if let Some(host) = public_host {
        if !covers(certified, host) {
            out.push(format!(
                "the TLS certificate does not cover public_url's host {host} (it names {})",
                if info.names.is_empty() {
                    "no DNS name".to_string()
                } else {
                    info.names.join(", ")
                }
            ));
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a time (civil from days, proleptic
/// Gregorian; no time zone database needed).
pub fn utc(t: SystemTime) -> String {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What identifies one version of a file on disk (after symlinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    /// Device and inode: a file renamed into place (or a symlink moved to
    /// another target) is a new inode even when size and mtime match.
    dev: u64,
    ino: u64,
    /// Size and mtime: a file rewritten in place keeps its inode.
    size: u64,
    mtime: i64,
    /// Nanoseconds too: two writes within one second differ here.
    mtime_nsec: i64,
}

impl FileStamp {
    fn of(meta: &Metadata) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

/// Both files' stamps; `None` for a file that could not be looked at.
type Stamps = (Option<FileStamp>, Option<FileStamp>);

fn stamps(certificate: &Path, key: &Path) -> Stamps {
    let of = |p: &Path| std::fs::metadata(p).ok().map(|m| FileStamp::of(&m));
    (of(certificate), of(key))
}

/// The certificate rustls serves: whatever was last loaded successfully
/// (none yet with `acme = true` before the first order: handshakes then
/// fail with an alert and plain HTTP goes on).
#[derive(Debug)]
pub struct Resolver {
    /// Swapped whole by a reload; each handshake clones the `Arc`.
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The HTTPS side of the server: the acceptor for [`crate::conn`] and the
/// certificate files it watches.
pub struct Tls {
    /// `tls.certificate`, as configured (a symlink is followed at each look).
    certificate: PathBuf,
    /// `tls.key`, likewise.
    key: PathBuf,
    /// `tls.reload_interval_secs`.
    interval: Duration,
    /// What the acceptor's rustls config asks for the certificate.
    resolver: Arc<Resolver>,
    /// rustls's server config (protocols, ALPN, the resolver), shared by
    /// every connection.
    acceptor: TlsAcceptor,
    /// The stamps of the last version looked at (loaded or refused), so
    /// each change is tried, and each refusal logged, once.
    seen: Mutex<Stamps>,
    /// What is being served (none before an ACME order's first certificate).
    info: Mutex<Option<CertInfo>>,
}

/// What one look at the files found.
#[derive(Debug)]
pub enum Reload {
    /// Neither file changed since the last look.
    Unchanged,
    /// A new certificate is served.
    Loaded(CertInfo),
    /// The files changed but do not load; the old certificate is kept.
    Refused(TlsError),
}

impl Tls {
    /// Loads the files of `config` (a start-up error names the file) and
    /// builds the rustls server config: TLS 1.2 and 1.3, ALPN `http/1.1`.
    /// With `acme = true` files that are missing or do not load are no
    /// error: the server starts without a certificate and orders one.
    pub fn new(config: &TlsConfig) -> Result<Tls, TlsError> {
        let seen = stamps(&config.certificate, &config.key);
        let loaded = match load(&config.certificate, &config.key) {
            Ok(loaded) => Some(loaded),
            Err(e) if config.acme => {
                if seen != (None, None) {
                    tracing::warn!(error = %e, "the ACME certificate on disk does not load; ordering a new one");
                }
                None
            }
            Err(e) => return Err(e),
        };
        let (certified, info) = match loaded {
            Some(loaded) => (Some(loaded.certified), Some(loaded.info)),
            None => (None, None),
        };
        let resolver = Arc::new(Resolver {
            current: RwLock::new(certified),
        });
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            certificate: config.certificate.clone(),
            key: config.key.clone(),
            interval: config.reload_interval(),
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            seen: Mutex::new(seen),
            info: Mutex::new(info),
        })
    }

    /// The acceptor new connections go through.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// What is being served now (none: no certificate yet).
    pub fn info(&self) -> Option<CertInfo> {
        self.info.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The certificate and key being served now.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.resolver
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Looks at the files once; loads them if either changed.
    pub fn reload_if_changed(&self) -> Reload {
        let now = stamps(&self.certificate, &self.key);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return Reload::Unchanged;
            }
            *seen = now;
        }
        match load(&self.certificate, &self.key) {
            Ok(loaded) => {
                *self
                    .resolver
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = Some(loaded.certified);
                *self.info.lock().unwrap_or_else(|e| e.into_inner()) = Some(loaded.info.clone());
                Reload::Loaded(loaded.info)
            }
            Err(e) => Reload::Refused(e),
        }
    }

    /// Looks at the files every reload interval until `shutdown`, logging
    /// each new certificate and each refused replacement.
    pub async fn watch(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut shutdown => return,
            }
            // Reading two small files: off the async threads anyway.
            let this = self.clone();
            let Ok(outcome) = tokio::task::spawn_blocking(move || this.reload_if_changed()).await
            else {
                continue;
            };
            match outcome {
                Reload::Unchanged => {}
                Reload::Loaded(info) => tracing::info!(
                    certificate = %self.certificate.display(),
                    names = ?info.names,
                    not_after = %info.not_after_utc(),
                    "TLS certificate reloaded"
                ),
                Reload::Refused(e) => tracing::error!(
                    error = %e,
                    "TLS certificate files changed but do not load; still serving the previous \
                     certificate (tried again when a file changes)"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(SystemTime::UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(utc(t), "2000-02-29 01:02:03 UTC");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(utc(t), "2099-12-31 23:59:59 UTC");
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let cert = dir.path().join("fullchain.pem");
        let key = dir.path().join("privkey.pem");
        let err = load(&cert, &key).expect_err("missing").to_string();
        assert!(err.contains(&cert.display().to_string()), "{err}");
        std::fs::write(&cert, "not pem\n").expect("write");
        std::fs::write(&key, "").expect("write");
        let err = load(&cert, &key).expect_err("no certificate").to_string();
        assert!(
            err.contains(&cert.display().to_string()) && err.contains("CERTIFICATE"),
            "{err}"
        );
    }
}
