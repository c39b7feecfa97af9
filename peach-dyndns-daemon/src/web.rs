//! The HTTP side of the listener on `127.0.0.1:5116`: JSON-RPC at
//! `POST /rpc` (and `POST /`, where PeachCloud's JSON-RPC clients post),
//! and the web panel at `GET /` with its `panel.css` and `panel.js`, all
//! embedded in the binary.
//!
//! Every request must carry a `Host` that is loopback or one of
//! `rpc.allowed_hosts` (so a web page cannot reach the daemon through DNS
//! rebinding), an `Origin`, when present, must be one of those too, and an
//! RPC must be `Content-Type: application/json` (so a cross-site form
//! cannot post one). No CORS headers are ever sent.
//!
//! [`serve`] runs the routes on the listener over HTTP/1.1.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use warp::http::{header, StatusCode};
use warp::{Filter, Rejection, Reply};

use crate::handle::Handle;
use crate::rpc;

/// Largest JSON-RPC request body: the biggest call (`configure`) is a few
/// hundred bytes.
const RPC_BODY_LIMIT: u64 = 64 * 1024;

/// The panel's page.
const INDEX_HTML: &str = include_str!("panel/index.html");
/// The panel's style sheet.
const PANEL_CSS: &str = include_str!("panel/panel.css");
/// The panel's script.
const PANEL_JS: &str = include_str!("panel/panel.js");

/// Content-Security-Policy of the panel: only its own files, no inline
/// script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Refused: a Host or Origin that is not ours.
#[derive(Debug)]
struct ForeignHost(String);
impl warp::reject::Reject for ForeignHost {}

/// Refused: an RPC without `Content-Type: application/json`.
#[derive(Debug)]
struct NotJson;
impl warp::reject::Reject for NotJson {}

/// The host part of a `Host` header value (`name`, `name:port`,
/// `[v6]:port`), lowercased.
fn host_only(value: &str) -> String {
    let value = value.trim();
    let host = if let Some(rest) = value.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        value.rsplit_once(':').map_or(value, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a host name is loopback or configured.
fn host_allowed(host: &str, extra: &[String]) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1")
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
        || extra
            .iter()
            .any(|h| h.trim_end_matches('.').eq_ignore_ascii_case(host))
}

/// The Host and Origin check.
fn guard(shared: Arc<Handle>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("host")
        .and(warp::header::optional::<String>("origin"))
        .and_then(move |host: Option<String>, origin: Option<String>| {
            let shared = shared.clone();
            async move {
                let extra = shared.config().rpc.allowed_hosts.clone();
                let Some(host) = host else {
                    return Err(warp::reject::custom(ForeignHost("no Host header".into())));
                };
                if !host_allowed(&host_only(&host), &extra) {
                    return Err(warp::reject::custom(ForeignHost(format!("Host {host:?}"))));
                }
                if let Some(origin) = origin {
                    let origin_host = reqwest::Url::parse(&origin)
                        .ok()
                        .and_then(|u| u.host_str().map(host_only_url));
                    match origin_host {
                        Some(h) if host_allowed(&h, &extra) => {}
                        _ => {
                            return Err(warp::reject::custom(ForeignHost(format!(
                                "Origin {origin:?}"
                            ))))
                        }
                    }
                }
                Ok(())
            }
        })
        .untuple_one()
}

/// A URL's host as [`host_only`] gives it (no brackets, lowercase).
fn host_only_url(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn json_content_type() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and_then(|ct: Option<String>| async move {
            let is_json = ct.as_deref().is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
            if is_json {
                Ok(())
            } else {
                Err(warp::reject::custom(NotJson))
            }
        })
        .untuple_one()
}

/// The daemon's routes: the guard, then JSON-RPC and the panel. Tests
/// drive this with `warp::test::request()`.
pub fn routes(
    shared: Arc<Handle>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let io = Arc::new(rpc::handler(shared.clone()));
    let rpc_path = warp::path("rpc")
        .and(warp::path::end())
        .or(warp::path::end())
        .unify();
    // Paths before methods, so an unknown path is a 404 and a known one
    // with the wrong method a 405.
    let rpc = rpc_path
        .and(warp::post())
        .and(json_content_type())
        .and(warp::body::content_length_limit(RPC_BODY_LIMIT))
        .and(warp::body::bytes())
        .and_then(move |body: Bytes| {
            let io = io.clone();
            async move { Ok::<_, Rejection>(handle_rpc(&io, &body).await) }
        });
    let page = |body: &'static str, content_type: &'static str| {
        move || {
            let mut res = warp::reply::Response::new(body.into());
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(content_type),
            );
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                header::HeaderValue::from_static(CSP),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                header::HeaderValue::from_static("nosniff"),
            );
            h.insert(
                header::X_FRAME_OPTIONS,
                header::HeaderValue::from_static("DENY"),
            );
            h.insert(
                header::REFERRER_POLICY,
                header::HeaderValue::from_static("no-referrer"),
            );
            h.insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-cache"),
            );
            res
        }
    };
    let index = warp::path::end()
        .and(warp::get())
        .map(page(INDEX_HTML, "text/html; charset=utf-8"));
    let css = warp::path!("panel.css")
        .and(warp::get())
        .map(page(PANEL_CSS, "text/css; charset=utf-8"));
    let js = warp::path!("panel.js")
        .and(warp::get())
        .map(page(PANEL_JS, "text/javascript; charset=utf-8"));
    guard(shared)
        .and(rpc.or(index).or(css).or(js))
        .recover(recover)
}

/// Runs one JSON-RPC request (or batch) through the handler.
async fn handle_rpc(io: &jsonrpc_core::IoHandler, body: &[u8]) -> warp::reply::Response {
    let answer = match std::str::from_utf8(body) {
        Ok(text) => io.handle_request(text).await,
        Err(_) => Some(
            r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}"#
                .to_string(),
        ),
    };
    match answer {
        Some(json) => {
            let mut res = warp::reply::Response::new(json.into());
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            res.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            res
        }
        // A notification (no `id`): nothing to answer.
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn recover(err: Rejection) -> Result<warp::reply::Response, Infallible> {
    let (status, message) = if let Some(ForeignHost(what)) = err.find::<ForeignHost>() {
        tracing::warn!(%what, "refused a request for a foreign host");
        (
            StatusCode::FORBIDDEN,
            "forbidden: this daemon answers only on loopback or its configured host names",
        )
    } else if err.find::<NotJson>().is_some() {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "JSON-RPC requests must be Content-Type: application/json",
        )
    } else if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        (StatusCode::PAYLOAD_TOO_LARGE, "request too large")
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    } else if err.is_not_found() {
        (StatusCode::NOT_FOUND, "not found")
    } else {
        (StatusCode::BAD_REQUEST, "bad request")
    };
    Ok(warp::reply::with_status(message, status).into_response())
}

/// After an accept error other than a failed connection (e.g. out of file
/// descriptors), how long to wait before accepting again, so the loop does
/// not spin (warp's own server waits the same).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Serves [`routes`] on `listener` over HTTP/1.1 until `shutdown`
/// resolves; then closes the listener and waits for the open connections
/// to finish the request they are in (the caller bounds that wait).
///
/// This is `warp::serve(..).incoming(..).graceful(..)` without HTTP/2:
/// warp's server uses hyper-util's "auto" connection, which also speaks
/// HTTP/2, and its code (h2, the auto glue, their tables and relocations:
/// 0.46 MiB of binary, about 0.4 MiB of RSS) would be resident in every
/// daemon. Nothing that talks to this listener uses HTTP/2: peach-web's
/// JSON-RPC client and the panel's browser speak plain `http://`, where
/// browsers never use HTTP/2. See `docs/benchmarks-daemon.md`.
pub async fn serve(shared: Arc<Handle>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let service = TowerToHyperService::new(warp::service(routes(shared)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    if !is_connection_error(&e) {
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service.clone());
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Errors of one incoming connection (the next accept may well work).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[cfg(test)]
mod tests;
