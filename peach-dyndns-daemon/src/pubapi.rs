//! The pub's HTTP API as the daemon uses it: `POST /update` with a sealed
//! envelope, and `GET /names/<label>` for availability. Answers are read
//! according to the design's table, and every failure is sorted into
//! "retry later" or "retrying cannot fix this".

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

pub use peach_dyndns_acme::http::HttpError;

/// The user agent of the daemon's HTTP requests (the pub, echo services,
/// the ACME CA).
pub const USER_AGENT: &str = concat!("peach-dyndns-daemon/", env!("CARGO_PKG_VERSION"));

use peach_dyndns_protocol::seal::Envelope;
use peach_dyndns_protocol::{ErrorCode, MAX_BODY_BYTES};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::BoxFuture;

/// The most of an answer body the daemon reads: the pub's answers are a
/// few hundred bytes; anything far larger is not the pub speaking.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// `Retry-After` from the pub and the CA is read by one function, clamped
/// to a day (`Retry-After: 18446744073709551615` once made the daemon
/// panic in `Instant` arithmetic; a pub that wants a Pi to wait longer
/// than a day is not one to wait for).
pub use peach_dyndns_acme::http::{parse_retry_after, MAX_RETRY_AFTER};

/// The pub's answer to an accepted update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The full name, e.g. `eb4890.peach.dinosaur.is`.
    pub fqdn: String,
    /// The A record now served.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// The AAAA record now served.
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    /// The records' TTL, seconds.
    #[serde(default)]
    pub ttl: Option<u32>,
    /// Whether DNS changed (false when the records were already so).
    #[serde(default)]
    pub changed: bool,
    /// The accepted `seq`.
    pub seq: u64,
}

/// Why an update (or a name check) did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// No answer: connection refused, DNS failure, timeout.
    #[error("the pub at {url} is unreachable: {detail}")]
    Unreachable {
        /// Where we sent it.
        url: String,
        /// What happened.
        detail: String,
    },
    /// The pub answered with an error from the design's table.
    #[error("the pub refused the update ({code}, HTTP {status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The wire code, e.g. [`ErrorCode::NotFollowed`].
        code: ErrorCode,
        /// The pub's words.
        message: String,
        /// With `stale_seq` and `invalid_seq`: the last seq the pub says it
        /// accepted (believed only within a day of our clock).
        last_seq: Option<u64>,
        /// With `invalid_seq`: the largest seq the pub says it accepts now.
        max_seq: Option<u64>,
        /// From the `Retry-After` header, at most [`MAX_RETRY_AFTER`].
        retry_after: Option<Duration>,
    },
    /// Something answered, but not the way the pub's API does.
    #[error("unexpected answer from {url} (HTTP {status}): {detail}")]
    BadAnswer {
        /// Where we sent it.
        url: String,
        /// HTTP status.
        status: u16,
        /// What was wrong.
        detail: String,
        /// From the `Retry-After` header.
        retry_after: Option<Duration>,
    },
}

impl UpdateError {
    /// Whether trying again later may succeed. Transport failures, 5xx,
    /// 429 and the retryable wire codes may; every other refusal needs a
    /// change of config first.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpdateError::Unreachable { .. } => true,
            UpdateError::Refused { code, .. } => code.is_retryable(),
            UpdateError::BadAnswer { status, .. } => {
                *status == 408 || *status == 429 || *status >= 500
            }
        }
    }

    /// The pub's wire code, when it answered with one.
    pub fn wire_code(&self) -> Option<ErrorCode> {
        match self {
            UpdateError::Refused { code, .. } => Some(*code),
            UpdateError::Unreachable { .. } | UpdateError::BadAnswer { .. } => None,
        }
    }

    /// The delay the pub asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpdateError::Refused { retry_after, .. }
            | UpdateError::BadAnswer { retry_after, .. } => *retry_after,
            UpdateError::Unreachable { .. } => None,
        }
    }
}

/// What the daemon asks of a pub. The real one is [`HttpPubApi`]; the
/// update loop's tests use fakes.
pub trait PubApi: Send + Sync {
    /// `POST <url>` with the envelope.
    fn send_update<'a>(
        &'a self,
        url: &'a Url,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Accepted, UpdateError>>;

    /// `GET <update url>/../names/<label>`: the pub's availability answer
    /// (a JSON object with at least `available`).
    fn check_name<'a>(
        &'a self,
        update_url: &'a Url,
        label: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, UpdateError>>;

    /// `GET <update url>/../health`: the pub's own health answer (a JSON
    /// object with `ok` and `domain`), for the panel's "reachable". A
    /// fake that does not answer it says so.
    fn health<'a>(
        &'a self,
        update_url: &'a Url,
    ) -> BoxFuture<'a, Result<serde_json::Value, UpdateError>> {
        Box::pin(async move {
            Err(UpdateError::BadAnswer {
                url: update_url.to_string(),
                status: 0,
                detail: "this pub API has no health check".into(),
                retry_after: None,
            })
        })
    }
}

/// The pub's `GET /ip`, beside its update URL (`…/update` → `…/ip`).
pub fn ip_url(update_url: &Url) -> Option<Url> {
    update_url.join("ip").ok()
}

/// The pub's `GET /names/<label>`, beside its update URL.
pub fn names_url(update_url: &Url, label: &str) -> Option<Url> {
    update_url.join(&format!("names/{label}")).ok()
}

/// The real pub API over reqwest.
#[derive(Debug, Clone)]
pub struct HttpPubApi {
    /// Shared client with timeouts set.
    client: reqwest::Client,
}

impl HttpPubApi {
    /// An API client over `client`.
    pub fn new(client: reqwest::Client) -> HttpPubApi {
        HttpPubApi { client }
    }

    async fn post_update(&self, url: &Url, envelope: &Envelope) -> Result<Accepted, UpdateError> {
        let body = serde_json::to_vec(envelope).map_err(|e| UpdateError::BadAnswer {
            url: url.to_string(),
            status: 0,
            detail: format!("cannot encode the envelope: {e}"),
            retry_after: None,
        })?;
        debug_assert!(body.len() <= MAX_BODY_BYTES);
        let response = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| UpdateError::Unreachable {
                url: url.to_string(),
                detail: describe_reqwest(&e),
            })?;
        let (status, retry_after, value) = read_json(url, response).await?;
        if value.get("ok").and_then(|v| v.as_bool()) == Some(true) && status == 200 {
            return serde_json::from_value(value).map_err(|e| UpdateError::BadAnswer {
                url: url.to_string(),
                status,
                detail: format!("the success answer does not have the expected fields: {e}"),
                retry_after,
            });
        }
        Err(refusal(url, status, retry_after, &value))
    }

    async fn get_name(
        &self,
        update_url: &Url,
        label: &str,
    ) -> Result<serde_json::Value, UpdateError> {
        let url = names_url(update_url, label).ok_or_else(|| UpdateError::BadAnswer {
            url: update_url.to_string(),
            status: 0,
            detail: "cannot build the /names URL".into(),
            retry_after: None,
        })?;
        let (status, retry_after, value) = self.get_json(&url).await?;
        if (200..300).contains(&status) && value.get("available").is_some_and(|v| v.is_boolean()) {
            return Ok(value);
        }
        Err(refusal(&url, status, retry_after, &value))
    }
}

impl HttpPubApi {
    async fn get_health(&self, update_url: &Url) -> Result<serde_json::Value, UpdateError> {
        let url = update_url
            .join("health")
            .map_err(|e| UpdateError::BadAnswer {
                url: update_url.to_string(),
                status: 0,
                detail: format!("cannot build the /health URL: {e}"),
                retry_after: None,
            })?;
        let (status, retry_after, value) = self.get_json(&url).await?;
        if status == 200 && value.get("ok").and_then(|v| v.as_bool()) == Some(true) {
            return Ok(value);
        }
        Err(refusal(&url, status, retry_after, &value))
    }

    /// `GET url` asking for JSON: the status, `Retry-After` and the body
    /// (`/names/<label>` and `/health` each judge the answer themselves).
    async fn get_json(
        &self,
        url: &Url,
    ) -> Result<(u16, Option<Duration>, serde_json::Value), UpdateError> {
        let response = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| UpdateError::Unreachable {
                url: url.to_string(),
                detail: describe_reqwest(&e),
            })?;
        read_json(url, response).await
    }
}

impl PubApi for HttpPubApi {
    fn send_update<'a>(
        &'a self,
        url: &'a Url,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Accepted, UpdateError>> {
        Box::pin(self.post_update(url, envelope))
    }

    fn check_name<'a>(
        &'a self,
        update_url: &'a Url,
        label: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, UpdateError>> {
        Box::pin(self.get_name(update_url, label))
    }

    fn health<'a>(
        &'a self,
        update_url: &'a Url,
    ) -> BoxFuture<'a, Result<serde_json::Value, UpdateError>> {
        Box::pin(self.get_health(update_url))
    }
}

/// Reads status, `Retry-After` and a JSON body of bounded size.
async fn read_json(
    url: &Url,
    mut response: reqwest::Response,
) -> Result<(u16, Option<Duration>, serde_json::Value), UpdateError> {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let bad = |detail: String| UpdateError::BadAnswer {
        url: url.to_string(),
        status,
        detail,
        retry_after,
    };
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| bad(format!("reading the answer: {}", describe_reqwest(&e))))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER_BYTES {
            return Err(bad(format!("the answer is over {MAX_ANSWER_BYTES} bytes")));
        }
    }
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
        let text: String = String::from_utf8_lossy(&body).chars().take(80).collect();
        bad(format!("the answer is not JSON: {text:?}"))
    })?;
    if !value.is_object() {
        return Err(bad("the answer is not a JSON object".into()));
    }
    Ok((status, retry_after, value))
}

/// An error answer: the design's `{"ok":false,"error","message"}`, or a
/// bad answer when it is not that shape. A code this daemon does not know
/// is a bad answer too (its HTTP status then decides whether to retry), so
/// the daemon never acts on a guessed code.
fn refusal(
    url: &Url,
    status: u16,
    retry_after: Option<Duration>,
    value: &serde_json::Value,
) -> UpdateError {
    let bad = |detail: String| UpdateError::BadAnswer {
        url: url.to_string(),
        status,
        detail,
        retry_after,
    };
    let Some(wire) = value.get("error").and_then(|v| v.as_str()) else {
        return bad("the answer has no `error` code".into());
    };
    let Some(code) = ErrorCode::from_wire(wire) else {
        let wire: String = wire.chars().take(40).collect();
        return bad(format!("the answer has an unknown error code {wire:?}"));
    };
    UpdateError::Refused {
        status,
        code,
        message: value
            .get("message")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .chars()
            .take(500)
            .collect(),
        last_seq: value.get("last_seq").and_then(|v| v.as_u64()),
        max_seq: value.get("max_seq").and_then(|v| v.as_u64()),
        retry_after,
    }
}

/// A reqwest error in words, with its cause chain (reqwest's own Display
/// hides the useful part, e.g. "connection refused").
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut last = String::new();
    while let Some(s) = source {
        let s_text = s.to_string();
        if s_text != last && !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        last = s_text;
        source = s.source();
    }
    text
}

/// The daemon's HTTP client: request timeout, no proxy (a proxy would make
/// `/ip` report the proxy's address), no redirects (a pub or echo service
/// that answers 3xx is not followed anywhere, so an announced URL cannot
/// bounce the Pi's requests to a host it would not have asked), a user
/// agent naming the daemon. HTTPS is verified against the webpki roots
/// plus those of `ca_file` (`acme.ca_file`: a pub or CA with a private
/// root).
pub fn http_client(
    timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<reqwest::Client, HttpError> {
    Ok(http_client_builder(timeout, ca_file)?.build()?)
}

/// What [`http_client`] builds, before it is built.
pub fn http_client_builder(
    timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<reqwest::ClientBuilder, HttpError> {
    peach_dyndns_acme::http::client_builder(timeout, ca_file, USER_AGENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: &str) -> UpdateError {
        let url = Url::parse("http://x/update").expect("url");
        refusal(
            &url,
            status,
            None,
            &serde_json::json!({"ok": false, "error": code, "message": ""}),
        )
    }

    #[test]
    fn retryable_follows_the_table() {
        assert!(refused(429, "rate_limited").is_retryable());
        assert!(refused(503, "dns_unavailable").is_retryable());
        assert!(refused(503, "graph_unavailable").is_retryable());
        for code in [
            "not_followed",
            "blocked",
            "name_taken",
            "invalid_name",
            "wrong_domain",
        ] {
            assert!(!refused(403, code).is_retryable(), "{code}");
        }
        assert!(refused(503, "some_future_code").is_retryable());
        assert!(!refused(418, "some_future_code").is_retryable());
        let unreachable = UpdateError::Unreachable {
            url: "http://x".into(),
            detail: "refused".into(),
        };
        assert!(unreachable.is_retryable());
        let html = |status| UpdateError::BadAnswer {
            url: "http://x".into(),
            status,
            detail: String::new(),
            retry_after: None,
        };
        assert!(html(502).is_retryable());
        assert!(!html(404).is_retryable());
    }

    /// Codes are read into [`ErrorCode`] once; an unknown one is no code
    /// at all (a bad answer), never a guess.
    #[test]
    fn wire_codes_are_typed() {
        assert_eq!(
            refused(409, "stale_seq").wire_code(),
            Some(ErrorCode::StaleSeq)
        );
        assert_eq!(refused(418, "some_future_code").wire_code(), None);
        let url = Url::parse("http://x/update").expect("url");
        let e = refusal(
            &url,
            422,
            None,
            &serde_json::json!({"ok": false, "error": "invalid_seq", "message": "ahead",
                                "last_seq": 5, "max_seq": 86_400_005u64}),
        );
        assert!(
            matches!(
                e,
                UpdateError::Refused {
                    code: ErrorCode::InvalidSeq,
                    last_seq: Some(5),
                    max_seq: Some(86_400_005),
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn urls_beside_the_update_url() {
        let u = Url::parse("http://dinosaur.is:8053/update").expect("url");
        assert_eq!(
            ip_url(&u).map(String::from).as_deref(),
            Some("http://dinosaur.is:8053/ip")
        );
        assert_eq!(
            names_url(&u, "eb4890").map(String::from).as_deref(),
            Some("http://dinosaur.is:8053/names/eb4890")
        );
        let prefixed = Url::parse("https://pub.example/dyndns/update").expect("url");
        assert_eq!(
            ip_url(&prefixed).map(String::from).as_deref(),
            Some("https://pub.example/dyndns/ip")
        );
    }
}
