//! HTTP connections from the open internet: the accept loop with its caps
//! and deadlines.
//!
//! warp's own server (`warp::serve`) runs hyper without a timer, so no
//! header, body or idle deadline applies, and nothing caps connections:
//! one host holding a thousand idle sockets used up the service's file
//! descriptors and took the API down. This loop serves the same routes
//! over HTTP/1.1 only, with:
//!
//! - a cap on open connections ([`HttpLimits::max_connections`]), kept below
//!   the unit's file-descriptor limit so DNS and sbot sockets still open;
//! - a bounded share per source (an IPv4 address, or an IPv6 /64, since one
//!   host holds 2^64 addresses there): a source at its share has its new
//!   connections closed at once, so other clients keep being served;
//! - a header-read deadline, which on HTTP/1 keep-alive is also the idle
//!   deadline between requests (hyper starts it when it waits for a head);
//! - the body deadline is the API's, around reading the body
//!   ([`crate::api`]).
//!
//! Why not HTTP/2 (warp's own server sniffs for it): hyper-util's version
//! sniffing reads up to the 24-byte preface with no deadline, so a client
//! sending `P` and then nothing held its slot for ever; and an HTTP/2 peer
//! that answers pings but opens no stream is never idle to hyper. Nobody
//! talking to this port needs it: routers, ddclient, inadyn and the daemon
//! speak HTTP/1.1 (plain HTTP never negotiates HTTP/2 by ALPN).
//!
//! The peer's address reaches the routes as a [`Peer`] request extension.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::addr::source_of;
use crate::config::HttpLimits;

/// The TCP peer of a request, put into its extensions by [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// After an accept error other than a failed connection (out of file
/// descriptors, say), how long to wait before accepting again, so the loop
/// does not spin (warp's own server waits the same).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Open connections per source (also the embedded DNS's TCP shares).
#[derive(Default)]
pub(crate) struct Shares {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`Shares`]; given back on drop.
pub(crate) struct Share {
    shares: Arc<Shares>,
    source: IpAddr,
}

impl Shares {
    /// A place for one more connection of `source`, if it holds fewer
    /// than `max`.
    pub(crate) fn claim(self: &Arc<Self>, source: IpAddr, max: usize) -> Option<Share> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(source).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Share {
            shares: self.clone(),
            source,
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut open = self.shares.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// What one connection holds while it is open.
struct Held {
    _permit: OwnedSemaphorePermit,
    _share: Share,
}

/// Serves `routes` on `listener` until `shutdown` resolves, within
/// `limits`; then stops accepting and waits for the open connections to
/// finish the request they are in (the caller bounds that wait).
/// `exempt` peers (the trusted proxies: every client behind them comes
/// from their address) are not held to the per-source share.
pub async fn serve<F>(
    routes: F,
    listener: TcpListener,
    limits: HttpLimits,
    exempt: Vec<IpAddr>,
    shutdown: impl Future<Output = ()>,
) where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let service = warp::service(routes);
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let shares = Arc::new(Shares::default());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot before accepting: past the cap, new
        // connections wait in the kernel's backlog, costing us nothing.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    if !is_connection_error(&e) {
                        tracing::warn!(error = %e, "cannot accept connections; pausing");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let source = source_of(peer.ip());
        let share_max = if exempt.contains(&source) {
            limits.max_connections
        } else {
            limits.max_connections_per_source
        };
        let Some(share) = shares.claim(source, share_max) else {
            // Closing at once gives the descriptor back; the source can
            // come back when one of its connections ends.
            tracing::debug!(%source, "connection refused: the source holds its share");
            drop(stream);
            continue;
        };
        let held = Held {
            _permit: permit,
            _share: share,
        };
        let svc = tower_service_with_peer(service.clone(), Peer(peer));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let first_byte = limits.header_timeout;
        tokio::spawn(async move {
            // hyper's header deadline starts only once it reads a head, and
            // the auto connection first sniffs for the HTTP/2 preface with
            // no deadline: a socket that never sends a byte would be held
            // for ever without this.
            let mut one = [0u8; 1];
            match tokio::time::timeout(first_byte, stream.peek(&mut one)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    tracing::debug!(%peer, "no request within the header deadline; closed");
                    return;
                }
            }
            // `serve_connection`, not `…_with_upgrades`: only the former
            // honours `http1_only` and skips the version sniffing.
            let conn =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(held);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Wraps a service so every request carries the connection's [`Peer`].
fn tower_service_with_peer<S>(inner: S, peer: Peer) -> WithPeer<S> {
    WithPeer { inner, peer }
}

/// A tower service that inserts [`Peer`] into each request.
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: Peer,
}

impl<S, B> tower_service::Service<warp::http::Request<B>> for WithPeer<S>
where
    S: tower_service::Service<warp::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: warp::http::Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.peer);
        self.inner.call(req)
    }
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
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_share_and_gives_it_back() {
        let shares = Arc::new(Shares::default());
        let a: IpAddr = "24.1.1.1".parse().expect("ip");
        let b: IpAddr = "24.2.2.2".parse().expect("ip");
        let first = shares.claim(a, 2).expect("1");
        let second = shares.claim(a, 2).expect("2");
        assert!(shares.claim(a, 2).is_none(), "a holds its share");
        assert!(shares.claim(b, 2).is_some(), "b is served");
        drop(first);
        assert!(shares.claim(a, 2).is_some(), "given back");
        drop(second);
    }
}
