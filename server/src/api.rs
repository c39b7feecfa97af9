//! The HTTP API: [`routes`] builds the whole warp filter, so tests drive
//! the real router with `warp::test::request()`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use futures_util::{Stream, StreamExt};
use peach_dyndns_protocol::{rules, ErrorCode, MAX_BODY_BYTES};
use serde_json::json;
use warp::reply::Response;
use warp::{Buf, Filter, Rejection};

use crate::addr::canonical_ip;
use crate::conn::Peer;
use crate::dyndns2;
use crate::http::{error_reply, json_reply, reply};
use crate::pipeline::ApiError;
use crate::update::handle_update;
use crate::State;

fn with_state(
    state: Arc<State>,
) -> impl Filter<Extract = (Arc<State>,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Reads a body of at most `limit` bytes; `None` if it is longer. Works
/// whether or not the client sent `Content-Length`.
async fn read_limited<S, B>(mut stream: S, limit: usize) -> Result<Option<Vec<u8>>, warp::Error>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk?;
        if body.len() + chunk.remaining() > limit {
            return Ok(None);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            body.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(Some(body))
}

/// The address a request came from: the socket peer, or, when the peer is
/// a trusted proxy, the last address in `X-Forwarded-For` that is not one.
pub fn client_ip(
    state: &State,
    peer: Option<SocketAddr>,
    forwarded: Option<&str>,
) -> Option<IpAddr> {
    forwarded_client(&state.config.trusted_proxies, peer, forwarded)
}

/// The TCP peer: the [`Peer`] that [`crate::conn::serve`] puts into each
/// request, or warp's own remote address (`warp::test`'s `remote_addr`).
fn peer() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<Peer>()
        .and(warp::addr::remote())
        .map(|ours: Option<Peer>, warps: Option<SocketAddr>| ours.map(|p| p.0).or(warps))
}

/// Every `X-Forwarded-For` line of a request, joined in order with `,`
/// (a proxy may add its own line instead of extending the first). A line
/// that is not text becomes an empty hop, which ends what is believed.
fn forwarded_for() -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Clone {
    warp::header::headers_cloned().map(|headers: warp::http::HeaderMap| forwarded_lines(&headers))
}

fn forwarded_lines(headers: &warp::http::HeaderMap) -> Option<String> {
    let lines: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    (!lines.is_empty()).then(|| lines.join(","))
}

fn forwarded_client(
    trusted: &[IpAddr],
    peer: Option<SocketAddr>,
    forwarded: Option<&str>,
) -> Option<IpAddr> {
    let peer = canonical_ip(peer?.ip());
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let Some(forwarded) = forwarded else {
        return Some(peer);
    };
    let mut chosen = peer;
    for hop in forwarded.rsplit(',') {
        match hop.trim().parse::<IpAddr>().map(canonical_ip) {
            Ok(ip) => {
                chosen = ip;
                if !trusted.contains(&ip) {
                    break;
                }
            }
            // A hop we cannot read ends what we can believe.
            Err(_) => break,
        }
    }
    Some(chosen)
}

/// Every route of the server.
pub fn routes(state: Arc<State>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let forwarded = forwarded_for();

    let update = warp::path!("update")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(peer())
        .and(forwarded.clone())
        .and(warp::body::stream())
        .then(
            |state: Arc<State>, peer, fwd: Option<String>, body| async move {
                let started = Instant::now();
                let ip = client_ip(&state, peer, fwd.as_deref());
                let deadline = state.config.http.limits().body_timeout;
                let read =
                    tokio::time::timeout(deadline, read_limited(Box::pin(body), MAX_BODY_BYTES));
                let result = match read.await {
                    // In a task of its own: hyper drops this future when the
                    // client hangs up, and a pipeline cut between the DNS
                    // write and the commit would leave them apart.
                    Ok(Ok(Some(bytes))) => {
                        let st = state.clone();
                        tokio::spawn(async move { handle_update(&st, &bytes, ip).await })
                            .await
                            .unwrap_or_else(|e| {
                                Err(ApiError::internal(format!("the update's task failed: {e}")))
                            })
                    }
                    Ok(Ok(None)) => Err(ApiError::new(
                        ErrorCode::TooLarge,
                        format!("the body is over the limit of {MAX_BODY_BYTES} bytes"),
                    )),
                    Ok(Err(e)) => Err(ApiError::new(
                        ErrorCode::Malformed,
                        format!("could not read the body: {e}"),
                    )),
                    Err(_) => Err(ApiError::new(
                        ErrorCode::Malformed,
                        format!("the body did not arrive within {deadline:?}"),
                    )),
                };
                state.metrics.observe_update(started.elapsed());
                match result {
                    Ok(ok) => {
                        state.metrics.count("update", "ok");
                        json_reply(
                            200,
                            &serde_json::to_value(&ok)
                                .expect("invariant: an accepted answer always serialises"),
                        )
                    }
                    Err(e) => {
                        state.metrics.count("update", e.code.as_str());
                        error_reply(&e)
                    }
                }
            },
        );

    let ip = warp::path!("ip")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(peer())
        .and(forwarded.clone())
        .and(warp::header::optional::<String>("accept"))
        .and(warp::query::<HashMap<String, String>>())
        .map(
            |state: Arc<State>,
             peer,
             fwd: Option<String>,
             accept: Option<String>,
             query: HashMap<String, String>| {
                let json = accept.is_some_and(|a| a.contains("application/json"));
                ip_answer(
                    &state,
                    client_ip(&state, peer, fwd.as_deref()),
                    json,
                    &query,
                )
            },
        );

    let names = warp::path!("names" / String)
        .and(warp::get())
        .and(with_state(state.clone()))
        .map(|label: String, state: Arc<State>| {
            state.metrics.count("names", "ok");
            name_availability(&state, &label)
        });

    let health = warp::path!("health")
        .and(warp::get())
        .and(with_state(state.clone()))
        .map(|state: Arc<State>| match state.registry.len() {
            Ok(names) => json_reply(
                200,
                &json!({"ok": true, "domain": state.config.domain, "dns": state.dns.kind(),
                        "graph": state.graph.kind(), "names": names,
                        "version": env!("CARGO_PKG_VERSION")}),
            ),
            Err(e) => json_reply(
                503,
                &json!({"ok": false, "error": "internal", "message": e.to_string()}),
            ),
        });

    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_state(state.clone()))
        .map(|state: Arc<State>| {
            let names = state.registry.len().unwrap_or(0);
            reply(
                200,
                "text/plain; version=0.0.4",
                state.metrics.render(names, state.registry.commits()),
            )
        });

    let announcement = warp::path!(".well-known" / "peach-dyndns")
        .and(warp::get())
        .and(with_state(state.clone()))
        .map(|state: Arc<State>| json_reply(200, &state.announcement()));

    let nic = warp::path!("nic" / "update")
        .and(warp::get())
        .and(with_state(state))
        .and(peer())
        .and(forwarded)
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::<HashMap<String, String>>())
        .then(
            |state: Arc<State>,
             peer,
             fwd: Option<String>,
             auth: Option<String>,
             q: HashMap<String, String>| async move {
                let ip = client_ip(&state, peer, fwd.as_deref());
                // A task of its own, as for `/update`.
                tokio::spawn(async move { dyndns2::handle(&state, auth.as_deref(), &q, ip).await })
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "a dyndns2 task failed");
                        reply(500, "text/plain; charset=utf-8", "911\n")
                    })
            },
        );

    update
        .or(ip)
        .unify()
        .or(names)
        .unify()
        .or(health)
        .unify()
        .or(metrics)
        .unify()
        .or(announcement)
        .unify()
        .or(nic)
        .unify()
        .recover(handle_rejection)
        .unify()
}

/// `GET /ip`: the caller's address as plain text, as `{"ip":…}` with
/// `Accept: application/json`, and with `?nonce=<32 hex>` as the pub's
/// signed statement (protocol v2), which a daemon can verify.
fn ip_answer(
    state: &State,
    ip: Option<IpAddr>,
    json: bool,
    query: &HashMap<String, String>,
) -> Response {
    let Some(ip) = ip else {
        state.metrics.count("ip", "internal");
        return error_reply(&ApiError::internal("the caller's address is unknown"));
    };
    match query.get("nonce") {
        Some(nonce) => match peach_dyndns_protocol::ip_answer::sign(ip, nonce, &state.keypair) {
            Ok(answer) => {
                state.metrics.count("ip", "signed");
                json_reply(
                    200,
                    &serde_json::to_value(answer)
                        .expect("invariant: an IpAnswer always serialises"),
                )
            }
            Err(e) => {
                state.metrics.count("ip", "malformed");
                error_reply(&e.into())
            }
        },
        None if json => {
            state.metrics.count("ip", "ok");
            json_reply(200, &json!({"ip": ip.to_string()}))
        }
        None => {
            state.metrics.count("ip", "ok");
            reply(200, "text/plain; charset=utf-8", format!("{ip}\n"))
        }
    }
}

fn name_availability(state: &State, label: &str) -> Response {
    let fqdn = format!("{label}.{}", state.config.domain);
    if let Err(e) = rules::check_name(label, &state.config.reserved) {
        return json_reply(
            200,
            &json!({"name": label, "fqdn": fqdn, "available": false,
                    "reason": e.code().as_str(), "message": e.to_string()}),
        );
    }
    match state.registry.get(label) {
        // Availability only: who holds a name is not said, since it would
        // link an SSB identity to a home address.
        Ok(Some(_)) => json_reply(
            200,
            &json!({"name": label, "fqdn": fqdn, "available": false, "reason": "name_taken",
                    "message": format!("{fqdn} is registered")}),
        ),
        Ok(None) => json_reply(
            200,
            &json!({"name": label, "fqdn": fqdn, "available": true}),
        ),
        Err(e) => error_reply(&ApiError::internal(e.to_string())),
    }
}

async fn handle_rejection(r: Rejection) -> Result<Response, Infallible> {
    let (status, error, message) = if r.is_not_found() {
        (404, "not_found", "no such endpoint".to_string())
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            405,
            "method_not_allowed",
            "this endpoint does not take that method".to_string(),
        )
    } else if let Some(e) = r.find::<warp::reject::InvalidQuery>() {
        (400, "malformed", e.to_string())
    } else {
        (400, "malformed", format!("{r:?}"))
    };
    Ok(json_reply(
        status,
        &json!({"ok": false, "error": error, "message": message}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.2".parse().expect("ip");
        let peer = |ip: &str| Some(SocketAddr::new(ip.parse().expect("ip"), 1234));
        let xff = Some("6.6.6.6, 24.1.2.3");
        // Not a proxy: the header is ignored.
        assert_eq!(
            forwarded_client(&[proxy], peer("24.9.9.9"), xff),
            Some("24.9.9.9".parse().expect("ip"))
        );
        // A trusted proxy: the last hop it saw, not what the client claims.
        assert_eq!(
            forwarded_client(&[proxy], peer("10.0.0.2"), xff),
            Some("24.1.2.3".parse().expect("ip"))
        );
        // Chained trusted proxies are skipped.
        let chain = Some("24.1.2.3, 10.0.0.3");
        let both: [IpAddr; 2] = [proxy, "10.0.0.3".parse().expect("ip")];
        assert_eq!(
            forwarded_client(&both, peer("10.0.0.2"), chain),
            Some("24.1.2.3".parse().expect("ip"))
        );
        // Garbage ends what can be believed: the proxy itself.
        assert_eq!(
            forwarded_client(&[proxy], peer("10.0.0.2"), Some("junk")),
            Some(proxy)
        );
        assert_eq!(forwarded_client(&[proxy], None, xff), None);
        // IPv4-mapped peers and hops are IPv4.
        let mapped = Some(SocketAddr::new("::ffff:24.9.9.9".parse().expect("ip"), 1));
        assert_eq!(
            forwarded_client(&[proxy], mapped, None),
            Some("24.9.9.9".parse().expect("ip"))
        );
        let mapped_proxy = Some(SocketAddr::new("::ffff:10.0.0.2".parse().expect("ip"), 1));
        assert_eq!(
            forwarded_client(&[proxy], mapped_proxy, Some("::ffff:24.1.2.3")),
            Some("24.1.2.3".parse().expect("ip"))
        );
    }

    #[test]
    fn every_forwarded_for_line_is_read_from_the_right() {
        let mut headers = warp::http::HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("24.1.2.3, 10.0.0.3"),
        );
        let got = forwarded_lines(&headers);
        assert_eq!(got.as_deref(), Some("6.6.6.6,24.1.2.3, 10.0.0.3"));
        let trusted: [IpAddr; 2] = [
            "10.0.0.2".parse().expect("ip"),
            "10.0.0.3".parse().expect("ip"),
        ];
        let peer = Some(SocketAddr::new("10.0.0.2".parse().expect("ip"), 1));
        // The client's own claim (first line) is not believed.
        assert_eq!(
            forwarded_client(&trusted, peer, got.as_deref()),
            Some("24.1.2.3".parse().expect("ip"))
        );
        assert_eq!(forwarded_lines(&warp::http::HeaderMap::new()), None);
        // A line that is not text ends what is believed.
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff").expect("bytes"),
        );
        assert_eq!(
            forwarded_client(&trusted, peer, forwarded_lines(&headers).as_deref()),
            Some("10.0.0.2".parse().expect("ip"))
        );
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_cut_off() {
        let chunks: Vec<Result<&[u8], warp::Error>> =
            vec![Ok(&[1u8; 3000][..]), Ok(&[1u8; 3000][..])];
        let got = read_limited(futures_util::stream::iter(chunks), 4096).await;
        assert!(matches!(got, Ok(None)));
        let chunks: Vec<Result<&[u8], warp::Error>> = vec![Ok(&[1u8; 3][..]), Ok(&[2u8; 2][..])];
        let got = read_limited(futures_util::stream::iter(chunks), 4096).await;
        assert_eq!(got.ok().flatten(), Some(vec![1, 1, 1, 2, 2]));
    }
}
