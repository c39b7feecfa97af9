//! HTTPS for the ACME client (and the daemon's pub client): a reqwest
//! client with the webpki roots plus the optional `ca_file`, behind
//! instant-acme's [`HttpClient`] trait, so there is one TLS stack in each
//! binary and the CA's `Retry-After` reaches the renewal schedule.

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

/// The longest `Retry-After` believed: a day. A server that asks for more
/// (or for 2^64 seconds) gets a day, so a number from outside can neither
/// overflow an `Instant` nor park a renewal or an update for months.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// `Retry-After` in delta-seconds, clamped to [`MAX_RETRY_AFTER`]; a
/// number too large even for `u64` is the maximum too. HTTP dates are not
/// used by the pub and are ignored (the backoff applies instead).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let digits = value.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = digits.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

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

/// `builder` with `ca_file`'s roots added to the webpki roots.
pub fn with_roots(
    mut builder: reqwest::ClientBuilder,
    ca_file: Option<&Path>,
) -> Result<reqwest::ClientBuilder, HttpError> {
    if let Some(path) = ca_file {
        for cert in extra_roots(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

/// A reqwest client builder as both binaries want one: request and
/// connect `timeout`, no proxy (a proxy would make the pub's `/ip` report
/// the proxy's address), no redirects (a 3xx is never followed anywhere,
/// so an answer cannot bounce a request to a host it would not have been
/// sent to), `user_agent` (the binary and its version), and `ca_file`'s
/// roots besides the webpki roots.
pub fn client_builder(
    timeout: Duration,
    ca_file: Option<&Path>,
    user_agent: &'static str,
) -> Result<reqwest::ClientBuilder, HttpError> {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(user_agent);
    with_roots(builder, ca_file)
}

/// The ACME client's reqwest client: [`client_builder`], HTTPS only.
pub fn client_with_roots(
    timeout: Duration,
    ca_file: Option<&Path>,
    user_agent: &'static str,
) -> Result<reqwest::Client, HttpError> {
    Ok(client_builder(timeout, ca_file, user_agent)?
        .https_only(true)
        .build()?)
}

/// instant-acme's HTTP over reqwest. It remembers the last `Retry-After`
/// the CA sent with a 429 or 503, so a rate-limited order waits as long as
/// the CA asked.
#[derive(Clone)]
pub struct AcmeHttp {
    /// The client (HTTPS only, the binary's roots).
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
                    .and_then(parse_retry_after);
                *remember.lock().unwrap_or_else(|p| p.into_inner()) = wait;
            }
            let response: http::Response<reqwest::Body> = response.into();
            Ok(BytesResponse::from(response))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 5 "), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-5"), None);
        assert_eq!(parse_retry_after(""), None);
    }

    /// Regression: `Retry-After: 18446744073709551615` (and larger) made
    /// the daemon panic adding it to an `Instant`; it is clamped to a day.
    #[test]
    fn a_huge_retry_after_is_clamped_to_a_day() {
        for huge in ["18446744073709551615", "99999999999999999999999", "86401"] {
            assert_eq!(parse_retry_after(huge), Some(MAX_RETRY_AFTER), "{huge}");
        }
        assert_eq!(
            parse_retry_after("86400"),
            Some(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("roots.pem");
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let err = extra_roots(&path).expect_err("no certificate").to_string();
        assert!(
            err.contains("roots.pem") && err.contains("CERTIFICATE"),
            "{err}"
        );
        let err = extra_roots(&dir.path().join("none.pem"))
            .expect_err("missing")
            .to_string();
        assert!(err.contains("none.pem"), "{err}");
    }
}
