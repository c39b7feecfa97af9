//! HTTPS for the ACME client and the pub: the daemon's reqwest client with
//! the webpki roots plus the optional `ca_file`, behind instant-acme's
//! [`HttpClient`] trait, so there is one TLS stack in the binary and the
//! CA's `Retry-After` reaches the renewal schedule.

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use crate::pubapi::{parse_retry_after, MAX_RETRY_AFTER};

/// Errors building the client; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The `ca_file` could not be read.
    #[error("cannot read ca_file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `ca_file` holds no usable certificate.
    #[error("ca_file {path}: {detail}")]
    Certificates {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// reqwest could not build the client.
    #[error("cannot set up HTTPS: {0}")]
    Build(#[from] reqwest::Error),
}

/// The extra roots of `ca_file`, every certificate in it.
pub fn extra_roots(path: &Path) -> Result<Vec<reqwest::Certificate>, HttpError> {
    let text = std::fs::read(path).map_err(|source| HttpError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |detail: String| HttpError::Certificates {
        path: path.to_path_buf(),
        detail,
    };
    let blocks = pem::parse_many(&text).map_err(|e| bad(format!("not PEM: {e}")))?;
    let certs = blocks
        .iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| reqwest::Certificate::from_der(b.contents()).map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(bad("holds no CERTIFICATE".into()));
    }
    Ok(certs)
}

/// A reqwest client like [`crate::pubapi::http_client`] (timeouts, no
/// proxy, no redirects) that also trusts `ca_file`'s roots.
pub fn client_with_roots(
    timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<reqwest::Client, HttpError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(true)
        .user_agent(concat!("peach-dyndns-daemon/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        for cert in extra_roots(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

/// instant-acme's HTTP over reqwest. It remembers the last `Retry-After`
/// the CA sent with a 429 or 503, so a rate-limited order waits as long as
/// the CA asked.
#[derive(Clone)]
pub struct AcmeHttp {
    /// The client (HTTPS only, the daemon's roots).
    client: reqwest::Client,
    /// The last `Retry-After` of a 429/503, at most [`MAX_RETRY_AFTER`].
    retry_after: Arc<Mutex<Option<Duration>>>,
}

impl AcmeHttp {
    /// Over `client`.
    pub fn new(client: reqwest::Client) -> AcmeHttp {
        AcmeHttp {
            client,
            retry_after: Arc::new(Mutex::new(None)),
        }
    }

    /// Takes the last `Retry-After` the CA asked for, if any.
    pub fn take_retry_after(&self) -> Option<Duration> {
        self.retry_after
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>
    {
        let client = self.client.clone();
        let remember = self.retry_after.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = reqwest::Body::wrap(body);
            let url = parts.uri.to_string();
            let response = client
                .request(parts.method, url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let status = response.status().as_u16();
            if status == 429 || status == 503 {
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
                    .map(|d| d.min(MAX_RETRY_AFTER));
                *remember.lock().unwrap_or_else(|p| p.into_inner()) = wait;
            }
            let response: http::Response<reqwest::Body> = response.into();
            Ok(BytesResponse::from(response))
        })
    }
}
