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
//!   at the cap, a new connection closes the oldest one of the source that
//!   holds the most (when that source holds more than the newcomer's, or
//!   is the newcomer's own), so a few hosts holding their full shares
//!   cannot fill the cap and keep everyone else waiting in the backlog
//!   until a header deadline;
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
//! The same loop serves HTTPS ([`Transport::Tls`], from [`crate::tls`]): the
//! handshake runs under the header deadline, inside the connection's slot
//! and its source's share, which plain and TLS connections draw from
//! together ([`serve_all`]).
//!
//! The peer's address reaches the routes as a [`Peer`] request extension.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::AbortHandle;

use crate::addr::source_of;
use crate::config::HttpLimits;

/// The TCP peer of a request, put into its extensions by [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// After an accept error other than a failed connection (out of file
/// descriptors, say), how long to wait before accepting again, so the loop
/// does not spin (warp's own server waits the same).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// At the cap, how long the accept loop waits for the slot of the
/// connection it closed to come free (the aborted task only has to be
/// dropped, so this bounds a machine in trouble; it is not a wait).
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// The HTTP connections open now, per source and oldest first, each with
/// the handle that ends its task: what the accept loop closes to make
/// room for a newcomer when it is at the cap.
#[derive(Default)]
struct Open {
    inner: Mutex<OpenInner>,
}

#[derive(Default)]
struct OpenInner {
    /// The id of the next connection.
    next_id: u64,
    /// Per source, its connections, oldest first.
    by_source: HashMap<IpAddr, VecDeque<(u64, AbortHandle)>>,
}

/// One connection's place in [`Open`]; removed on drop (the task ended or
/// was aborted).
struct OpenEntry {
    open: Arc<Open>,
    source: IpAddr,
    id: u64,
}

impl Open {
    fn lock(&self) -> std::sync::MutexGuard<'_, OpenInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection of `source`, filled by
    /// [`OpenInner::add`] once its task is spawned.
    fn entry(self: &Arc<Self>, source: IpAddr) -> OpenEntry {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id = inner.next_id.wrapping_add(1);
        OpenEntry {
            open: self.clone(),
            source,
            id,
        }
    }

    /// At the cap, for a newcomer from `source`: ends the oldest
    /// connection of the source holding the most, if that is `source`
    /// itself or holds more than `source` would with the newcomer.
    /// Whether one was ended.
    fn evict_for(&self, source: IpAddr) -> bool {
        let mut inner = self.lock();
        let mine = inner.by_source.get(&source).map_or(0, VecDeque::len) + 1;
        let Some((victim, held)) = inner
            .by_source
            .iter()
            .map(|(ip, list)| (*ip, list.len()))
            .max_by_key(|(_, n)| *n)
        else {
            return false;
        };
        if victim != source && held <= mine {
            return false;
        }
        let list = inner
            .by_source
            .get_mut(&victim)
            .expect("invariant: the victim was just found in the map");
        let oldest = list.pop_front();
        if list.is_empty() {
            inner.by_source.remove(&victim);
        }
        // Aborted after the lock is let go: the task's entry takes it
        // when it is dropped.
        drop(inner);
        match oldest {
            Some((_, task)) => {
                task.abort();
                tracing::debug!(%victim, held, for_source = %source, "at the cap: closed the oldest connection of the source holding the most");
                true
            }
            None => false,
        }
    }
}

impl OpenInner {
    /// Records the task of the connection `id` of `source`.
    fn add(&mut self, source: IpAddr, id: u64, task: AbortHandle) {
        self.by_source
            .entry(source)
            .or_default()
            .push_back((id, task));
    }
}

impl Drop for OpenEntry {
    fn drop(&mut self) {
        let mut inner = self.open.lock();
        if let Some(list) = inner.by_source.get_mut(&self.source) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                inner.by_source.remove(&self.source);
            }
        }
    }
}

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
    _open: OpenEntry,
}

/// How a listener's connections are spoken: plain HTTP, or HTTP inside TLS.
#[derive(Clone)]
pub enum Transport {
    /// HTTP/1.1 on the bare TCP stream.
    Plain,
    /// A TLS handshake first (rustls; ALPN `http/1.1`), then HTTP/1.1.
    Tls(tokio_rustls::TlsAcceptor),
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
    serve_all(
        routes,
        vec![(listener, Transport::Plain)],
        limits,
        exempt,
        shutdown,
    )
    .await;
}

/// What every accept loop of one [`serve_all`] shares: the connection cap
/// and the per-source shares count plain and TLS connections together, so
/// a second port gives a source no second share.
struct Gate<F> {
    /// The routes, made into a service per connection.
    routes: F,
    /// hyper's HTTP/1.1-only connection builder, with the header deadline.
    builder: auto::Builder<TokioExecutor>,
    /// Deadlines and caps.
    limits: HttpLimits,
    /// Sources not held to the per-source share (trusted proxies).
    exempt: Vec<IpAddr>,
    /// One permit per open connection, `max_connections` in all.
    slots: Arc<Semaphore>,
    /// Open connections per source, plain and TLS together.
    shares: Arc<Shares>,
    /// Every open connection's abort handle, for eviction at the cap.
    open: Arc<Open>,
}

/// [`serve`] on several listeners at once, each with its [`Transport`],
/// under one cap, one set of per-source shares and one shutdown.
pub async fn serve_all<F>(
    routes: F,
    listeners: Vec<(TcpListener, Transport)>,
    limits: HttpLimits,
    exempt: Vec<IpAddr>,
    shutdown: impl Future<Output = ()>,
) where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let gate = Gate {
        routes,
        builder,
        limits,
        exempt,
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        shares: Arc::new(Shares::default()),
        open: Arc::new(Open::default()),
    };
    let graceful = GracefulShutdown::new();
    {
        let loops = futures_util::future::join_all(
            listeners
                .into_iter()
                .map(|(listener, transport)| accept_loop(&gate, listener, transport, &graceful)),
        );
        // Dropping the loops drops the listeners: nothing new is accepted.
        tokio::select! {
            _ = loops => {}
            () = shutdown => {}
        }
    }
    graceful.shutdown().await;
}

/// Accepts on one listener for ever (until dropped by [`serve_all`]).
async fn accept_loop<F>(
    gate: &Gate<F>,
    listener: TcpListener,
    transport: Transport,
    graceful: &GracefulShutdown,
) where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    loop {
        // Accept even at the cap, then close the newcomer or an older
        // connection at once: waiting for a free slot before accepting
        // left new connections in the kernel's backlog until a held one
        // reached its header deadline, so a few sources holding their
        // shares kept everyone else out.
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                if !is_connection_error(&e) {
                    tracing::warn!(error = %e, "cannot accept connections; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
                continue;
            }
        };
        let source = source_of(peer.ip());
        let share_max = if gate.exempt.contains(&source) {
            gate.limits.max_connections
        } else {
            gate.limits.max_connections_per_source
        };
        let Some(share) = gate.shares.claim(source, share_max) else {
            // Closing at once gives the descriptor back; the source can
            // come back when one of its connections ends.
            tracing::debug!(%source, "connection refused: the source holds its share");
            drop(stream);
            continue;
        };
        let permit = match gate.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return,
            Err(TryAcquireError::NoPermits) => {
                if !gate.open.evict_for(source) {
                    tracing::debug!(%source, "connection refused: at the cap, and no source holds more");
                    drop(stream);
                    continue;
                }
                match tokio::time::timeout(EVICTION_WAIT, gate.slots.clone().acquire_owned()).await
                {
                    Ok(Ok(p)) => p,
                    _ => {
                        drop(stream);
                        continue;
                    }
                }
            }
        };
        let entry = gate.open.entry(source);
        let id = entry.id;
        let held = Held {
            _permit: permit,
            _share: share,
            _open: entry,
        };
        let svc = TowerToHyperService::new(tower_service_with_peer(
            warp::service(gate.routes.clone()),
            Peer(peer),
        ));
        let builder = gate.builder.clone();
        let watcher = graceful.watcher();
        let first_byte = gate.limits.header_timeout;
        let transport = transport.clone();
        // Locked across the spawn, so the task cannot end (and remove its
        // entry) before the entry is there.
        let mut registry = gate.open.lock();
        let task = tokio::spawn(async move {
            match transport {
                Transport::Plain => {
                    // hyper's header deadline starts only once it reads a
                    // head: a socket that never sends a byte would be held
                    // for ever without this.
                    let mut one = [0u8; 1];
                    match tokio::time::timeout(first_byte, stream.peek(&mut one)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => {
                            tracing::debug!(%peer, "no request within the header deadline; closed");
                            return;
                        }
                    }
                    // `serve_connection`, not `…_with_upgrades`: only the
                    // former honours `http1_only` and skips the version sniffing.
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                Transport::Tls(acceptor) => {
                    // The whole handshake, from the first byte of the
                    // ClientHello to the last of the client's Finished,
                    // within the header deadline: a client that connects
                    // and says nothing, or dribbles, loses its slot then.
                    let tls = match tokio::time::timeout(first_byte, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "no TLS handshake within the header deadline; closed");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(tls), svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(error = %e, "TLS connection ended with an error");
                    }
                }
            }
            drop(held);
        });
        registry.add(source, id, task.abort_handle());
        drop(registry);
    }
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

    #[tokio::test]
    async fn at_the_cap_the_source_holding_the_most_gives_way() {
        let open = Arc::new(Open::default());
        let heavy: IpAddr = "24.1.1.1".parse().expect("ip");
        let light: IpAddr = "24.2.2.2".parse().expect("ip");
        let new: IpAddr = "24.3.3.3".parse().expect("ip");
        // A connection: its entry lives in a task that waits for ever.
        let connect = |source: IpAddr| {
            let entry = open.entry(source);
            let id = entry.id;
            let mut registry = open.lock();
            let task = tokio::spawn(async move {
                let _entry = entry;
                std::future::pending::<()>().await;
            });
            registry.add(source, id, task.abort_handle());
            task
        };
        let heavy_tasks: Vec<_> = (0..3).map(|_| connect(heavy)).collect();
        let light_task = connect(light);
        // A newcomer ends the heavy source's oldest connection.
        assert!(open.evict_for(new));
        let mut heavy_tasks = heavy_tasks.into_iter();
        let oldest = heavy_tasks.next().expect("3");
        assert!(oldest.await.expect_err("aborted").is_cancelled());
        // The light source (1 + 1) may not end the heavy one's at 2, but
        // may replace its own once it holds the most.
        assert!(!open.evict_for(light), "2 is not more than 1 + 1");
        for task in heavy_tasks {
            task.abort();
            let _ = task.await;
        }
        assert!(open.evict_for(light), "its own oldest");
        assert!(light_task.await.expect_err("aborted").is_cancelled());
        assert!(!open.evict_for(new), "nothing is open");
        assert!(open.lock().by_source.is_empty(), "every entry was removed");
    }
}
