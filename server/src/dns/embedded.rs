//! The embedded DNS server's sockets: serves the answers of its zone over
//! UDP and TCP, and is the [`ZoneBackend`] the update pipeline writes to.
//! What the answers are is `zone.rs`.
//!
//! Over UDP an answer that does not fit is sent empty with TC set and the
//! client retries over TCP. TCP connections are closed after
//! `tcp_idle_timeout` without a query, at most `max_tcp_connections`
//! are served at once, and one source holds at most
//! `max_tcp_per_source` of them ([`DnsLimits`], the config's
//! `[dns.limits]`).
//!
//! As a primary (RFC 5936, 1995, 1996), it serves AXFR and IXFR over TCP
//! to the configured secondaries (`transfer.rs`) and sends them NOTIFY
//! after every change (`notify.rs`); everyone else is REFUSED a transfer.
//!
//! UDP answers are rate-limited per source prefix (response rate limiting,
//! as BIND's `rate-limit`): an answer is 2.5–5× its query, so without a
//! limit anyone could aim the server at a victim whose address they spoof.
//! Past `rrl_per_second` answers a second to one /24 (IPv6: /56), answers
//! are dropped, except every `rrl_slip`th, which is sent empty with TC
//! set (as small as the query): a real client behind that prefix retries
//! over TCP and is answered, a spoofed victim gets no amplification.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::serial::SerialFile;
use super::transfer::{self, Secondary};
use super::zone::Zone;
use super::{BoxFut, Challenge, ChallengeChange, DnsError, NameRecords, ZoneBackend, ZoneChange};
pub use crate::config::DnsLimits;
use crate::conn::Shares;
use crate::ratelimit::RateLimiter;

pub use super::zone::Transport;

/// The largest query we read over UDP; longer datagrams arrive cut and are
/// answered FORMERR.
const UDP_RECV_BUFFER: usize = 4096;
/// How long reading the rest of a started query, or writing an answer,
/// may take over TCP.
const TCP_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The prefix RRL counts a UDP source against: /24 for IPv4, /56 for IPv6
/// (BIND's defaults).
pub fn rrl_prefix(ip: std::net::IpAddr) -> std::net::IpAddr {
    match crate::addr::canonical_ip(ip) {
        std::net::IpAddr::V4(v4) => std::net::IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()),
        std::net::IpAddr::V6(v6) => {
            std::net::IpAddr::V6((u128::from(v6) & !((1u128 << 72) - 1)).into())
        }
    }
}

/// The answer RRL slips through: the header and question of `answer` with
/// TC set and no records, so it is no larger than the query.
fn truncated(answer: &[u8]) -> Option<Vec<u8>> {
    let msg = hickory_proto::op::Message::from_vec(answer).ok()?;
    msg.truncate().to_vec().ok()
}

/// Pause after a failed `accept` (e.g. out of file descriptors) or an
/// unexpected UDP receive error, so the loop does not spin while the
/// condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The authoritative server for one zone, from an in-memory table.
///
/// A cheap handle (clones share the table): the update pipeline changes it
/// through [`ZoneBackend::apply`] while [`serve`](Self::serve) answers.
#[derive(Debug, Clone)]
pub struct EmbeddedDns {
    /// The zone's data, shared with the TCP connection tasks.
    data: Arc<Zone>,
    /// The secondaries: who may transfer the zone, whom to NOTIFY.
    secondaries: Arc<Vec<Secondary>>,
    /// Rate limit and connection caps of the sockets.
    limits: DnsLimits,
}

impl EmbeddedDns {
    /// A server for `zone` with these name servers (default `ns1.<zone>`)
    /// and SOA contact (default `hostmaster.<zone>`; `hostmaster@example.org`
    /// is accepted too and written as `hostmaster.example.org`).
    pub fn new(
        zone: &str,
        nameservers: &[String],
        hostmaster: Option<&str>,
    ) -> Result<EmbeddedDns, DnsError> {
        Ok(EmbeddedDns {
            data: Arc::new(Zone::new(zone, nameservers, hostmaster)?),
            secondaries: Arc::new(Vec::new()),
            limits: DnsLimits::default(),
        })
    }

    /// The same server with these limits instead of the defaults.
    pub fn with_limits(mut self, limits: DnsLimits) -> EmbeddedDns {
        self.limits = limits;
        self
    }

    /// The limits its sockets apply.
    pub fn limits(&self) -> DnsLimits {
        self.limits
    }

    /// A server that is also the primary for `secondaries` (transfers and
    /// NOTIFY), keeping its serial's high-water mark in `serial_file` so
    /// the serial never goes back across restarts.
    pub fn primary(
        zone: &str,
        nameservers: &[String],
        hostmaster: Option<&str>,
        secondaries: Vec<Secondary>,
        serial_file: Option<&std::path::Path>,
    ) -> Result<EmbeddedDns, DnsError> {
        let mut data = Zone::new(zone, nameservers, hostmaster)?;
        if let Some(path) = serial_file {
            data.keep_serial_in(SerialFile::new(path))?;
        }
        Ok(EmbeddedDns {
            data: Arc::new(data),
            secondaries: Arc::new(secondaries),
            limits: DnsLimits::default(),
        })
    }

    /// Gives the in-zone name server `host` its addresses (A/AAAA, the
    /// zone's TTL), before the registry is applied: they are part of the
    /// zone from the start, in answers and transfers alike.
    pub fn set_nameserver_address(
        &self,
        host: &str,
        addrs: &[std::net::IpAddr],
    ) -> Result<(), DnsError> {
        self.data.set_static(host, addrs)
    }

    /// The configured secondaries.
    pub fn secondaries(&self) -> &[Secondary] {
        &self.secondaries
    }

    /// The SOA serial now.
    pub fn serial(&self) -> u32 {
        self.data.serial()
    }

    /// The records of `label`, if it has any.
    pub fn records(&self, label: &str) -> Option<NameRecords> {
        self.data.records(label)
    }

    /// How many names have records.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// The ACME challenge of `label`, if one is set.
    pub fn challenge(&self, label: &str) -> Option<Challenge> {
        self.data.challenge(label)
    }
    /// Whether no name has records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The answer to one wire-format query, or `None` to stay silent (a
    /// response, or too short to hold a header). What the sockets use;
    /// public for tests and benchmarks.
    pub fn answer(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        self.data.answer(query, transport)
    }

    /// Answers DNS on `udp` and `tcp` until `shutdown` resolves; open TCP
    /// connections are then dropped. Errors on single packets or
    /// connections are logged and never stop the server.
    pub async fn serve(
        &self,
        udp: UdpSocket,
        tcp: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) {
        tracing::info!(
            zone = %self.data.name(),
            udp = ?udp.local_addr().ok(),
            tcp = ?tcp.local_addr().ok(),
            "embedded DNS serving"
        );
        // NOTIFY senders, one per secondary; dropped with this future.
        let mut notifiers = JoinSet::new();
        for secondary in self.secondaries.iter() {
            notifiers.spawn(super::notify::follow(
                Arc::clone(&self.data),
                secondary.clone(),
                self.data.subscribe(),
            ));
        }
        tokio::select! {
            () = self.serve_udp(udp) => {}
            () = self.serve_tcp(tcp) => {}
            () = shutdown => {}
        }
        tracing::info!(zone = %self.data.name(), "embedded DNS stopped");
    }

    /// The UDP loop: one datagram in, at most one out. Answering takes
    /// microseconds, so one loop keeps up with any load a pub sees.
    async fn serve_udp(&self, socket: UdpSocket) {
        let mut buf = vec![0u8; UDP_RECV_BUFFER];
        let rate = self.limits.rrl_per_second;
        // The config bounds the rate to 1000, so a minute's worth fits.
        let limits: RateLimiter<std::net::IpAddr> = RateLimiter::new(rate.saturating_mul(60), rate);
        let slip = u64::from(self.limits.rrl_slip);
        let mut dropped: u64 = 0;
        loop {
            let (len, peer) = match socket.recv_from(&mut buf).await {
                Ok(received) => received,
                Err(e) => {
                    tracing::debug!(error = %e, "embedded DNS: UDP receive failed");
                    // A queued ICMP error or an interruption concerns one
                    // packet; anything else may last, so do not spin on it.
                    if !matches!(
                        e.kind(),
                        ErrorKind::ConnectionRefused
                            | ErrorKind::ConnectionReset
                            | ErrorKind::Interrupted
                    ) {
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            };
            if let Some(answer) = self.data.answer(&buf[..len], Transport::Udp) {
                // A secondary's signed SOA query gets a signed answer.
                let answer =
                    transfer::sign_answer(&self.secondaries, &buf[..len], peer.ip(), answer);
                let answer = if limits.take(&rrl_prefix(peer.ip())).is_ok() {
                    answer
                } else {
                    dropped = dropped.wrapping_add(1);
                    // Slip 0: every dropped answer stays dropped.
                    if slip == 0 || dropped % slip != 0 {
                        continue;
                    }
                    match truncated(&answer) {
                        Some(slip) => slip,
                        None => continue,
                    }
                };
                if let Err(e) = socket.send_to(&answer, peer).await {
                    tracing::debug!(%peer, error = %e, "embedded DNS: UDP send failed");
                }
            }
        }
    }

    /// The TCP accept loop; each connection is a task in a `JoinSet`, so
    /// they all end when this future is dropped at shutdown.
    async fn serve_tcp(&self, listener: TcpListener) {
        let limits = self.limits;
        let slots = Arc::new(Semaphore::new(limits.max_tcp_connections));
        let shares = Arc::new(Shares::default());
        let mut connections: JoinSet<()> = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match (
                        shares.claim(crate::addr::source_of(peer.ip()), limits.max_tcp_per_source),
                        Arc::clone(&slots).try_acquire_owned(),
                    ) {
                        (Some(share), Ok(slot)) => {
                            let data = Arc::clone(&self.data);
                            let secondaries = Arc::clone(&self.secondaries);
                            connections.spawn(async move {
                                serve_connection(&data, &secondaries, stream, peer, limits.tcp_idle_timeout).await;
                                drop(slot);
                                drop(share);
                            });
                        }
                        // Over the limit, or the source over its share:
                        // close at once rather than queue.
                        _ => {
                            tracing::debug!(%peer, "embedded DNS: too many TCP connections");
                            drop(stream);
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "embedded DNS: TCP accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
}

impl ZoneBackend for EmbeddedDns {
    fn apply<'a>(&'a self, change: &'a ZoneChange) -> BoxFut<'a, Result<(), DnsError>> {
        Box::pin(async move { self.data.apply_changes(std::slice::from_ref(change)) })
    }

    fn apply_all<'a>(&'a self, changes: &'a [ZoneChange]) -> BoxFut<'a, Result<(), DnsError>> {
        Box::pin(async move { self.data.apply_changes(changes) })
    }

    fn apply_challenge<'a>(
        &'a self,
        change: &'a ChallengeChange,
    ) -> BoxFut<'a, Result<(), DnsError>> {
        Box::pin(async move { self.data.apply_challenges(std::slice::from_ref(change)) })
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}

/// Serves one TCP connection: length-prefixed queries in, answers out
/// (RFC 1035 §4.2.2), one at a time, until idle, closed or broken.
async fn serve_connection(
    data: &Zone,
    secondaries: &[Secondary],
    mut stream: TcpStream,
    peer: SocketAddr,
    idle_timeout: Duration,
) {
    loop {
        let len = match timeout(idle_timeout, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            // Idle too long, closed, or reset.
            _ => return,
        };
        let mut query = vec![0u8; len];
        match timeout(TCP_IO_TIMEOUT, stream.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        // A zone transfer: several messages; anything else: one answer.
        let answers = match transfer::respond(data, secondaries, &query, peer.ip()) {
            Some(messages) => messages,
            // A query we do not answer (a response, a runt): over TCP the
            // client would wait for nothing, so close.
            None => match data.answer(&query, Transport::Tcp) {
                Some(answer) => vec![transfer::sign_answer(
                    secondaries,
                    &query,
                    peer.ip(),
                    answer,
                )],
                None => return,
            },
        };
        // Each message gets its own write deadline, so a large transfer
        // is not cut by one deadline meant for a single answer.
        for answer in answers {
            // encode_within and the transfer's chunks keep answers within u16::MAX.
            let Ok(answer_len) = u16::try_from(answer.len()) else {
                return;
            };
            let mut framed = Vec::with_capacity(answer.len() + 2);
            framed.extend_from_slice(&answer_len.to_be_bytes());
            framed.extend_from_slice(&answer);
            if !matches!(
                timeout(TCP_IO_TIMEOUT, stream.write_all(&framed)).await,
                Ok(Ok(()))
            ) {
                tracing::debug!(%peer, "embedded DNS: TCP write failed or timed out");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};

    const ZONE: &str = "peach.dinosaur.is";

    fn server() -> EmbeddedDns {
        EmbeddedDns::new(ZONE, &[], None).expect("server")
    }

    fn query(name: &str, rtype: RecordType) -> Vec<u8> {
        let mut msg = Message::query();
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
        msg.to_vec().expect("encode")
    }

    /// Starts `dns` on loopback; returns the addresses and the stop switch.
    async fn start(
        dns: &EmbeddedDns,
    ) -> (SocketAddr, SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("tcp");
        let addrs = (
            udp.local_addr().expect("addr"),
            tcp.local_addr().expect("addr"),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let dns = dns.clone();
        tokio::spawn(async move {
            dns.serve(udp, tcp, async {
                let _ = stopped.await;
            })
            .await;
        });
        (addrs.0, addrs.1, stop)
    }

    /// A TCP connection from `source` (any 127/8 address is loopback).
    async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{source}:0").parse().expect("addr"))
            .expect("bind");
        socket.connect(to).await.expect("connect")
    }

    /// Opens `share` TCP connections from `source`, each answered, and
    /// checks that one more from it is closed at once. Returns the held ones.
    async fn fill_share(tcp: SocketAddr, source: &str, share: usize) -> Vec<TcpStream> {
        let mut held = Vec::new();
        for _ in 0..share {
            let mut stream = connect_from(source, tcp).await;
            tcp_ask(&mut stream, "peach.dinosaur.is.").await;
            held.push(stream);
        }
        let mut extra = connect_from(source, tcp).await;
        let mut byte = [0u8; 1];
        assert_eq!(
            extra.read(&mut byte).await.unwrap_or(0),
            0,
            "the connection past {source}'s share of {share} is closed at once"
        );
        held
    }

    #[tokio::test]
    async fn one_source_holds_at_most_its_share_of_tcp_connections() {
        let dns = server();
        let (_, tcp, stop) = start(&dns).await;
        let _held = fill_share(tcp, "127.0.2.1", DnsLimits::default().max_tcp_per_source).await;
        // Another source is served meanwhile.
        let mut other = connect_from("127.0.2.2", tcp).await;
        let reply = tcp_ask(&mut other, "peach.dinosaur.is.").await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn a_udp_flood_from_one_prefix_is_rate_limited_with_slip_and_others_are_answered() {
        let dns = server();
        let (udp, _, stop) = start(&dns).await;
        let flood = UdpSocket::bind("127.0.3.1:0").await.expect("udp");
        let q = query("peach.dinosaur.is.", RecordType::SOA);
        let sent = 200;
        for _ in 0..sent {
            flood.send_to(&q, udp).await.expect("send");
        }
        let (mut full, mut slipped) = (0, 0);
        let mut buf = vec![0u8; 4096];
        while let Ok(Ok(n)) = timeout(Duration::from_millis(300), flood.recv(&mut buf)).await {
            let msg = Message::from_vec(&buf[..n]).expect("decode");
            if msg.metadata.truncation {
                assert!(n <= q.len() + 12, "a slip is no larger than the query: {n}");
                slipped += 1;
            } else {
                full += 1;
            }
        }
        // The burst is answered, the rest dropped but every second slipped.
        let rate = DnsLimits::default().rrl_per_second as usize;
        assert!(full <= rate + 5, "{full} full answers");
        assert!(full >= rate - 1, "{full} full answers");
        let dropped = sent - full;
        assert!(
            slipped >= dropped / 2 - 5 && slipped <= dropped / 2 + 5,
            "{slipped} slipped of {dropped} dropped"
        );
        // Another prefix is answered in full while the flood's is limited.
        let other = UdpSocket::bind("127.0.4.1:0").await.expect("udp");
        other.send_to(&q, udp).await.expect("send");
        let n = timeout(Duration::from_secs(2), other.recv(&mut buf))
            .await
            .expect("an answer")
            .expect("recv");
        let msg = Message::from_vec(&buf[..n]).expect("decode");
        assert!(!msg.metadata.truncation);
        assert!(!msg.answers.is_empty());
        assert_eq!(
            rrl_prefix("24.1.2.3".parse().expect("ip")),
            "24.1.2.0".parse::<std::net::IpAddr>().expect("ip")
        );
        assert_eq!(
            rrl_prefix("2001:db8:1:2ff::1".parse().expect("ip")),
            "2001:db8:1:200::".parse::<std::net::IpAddr>().expect("ip")
        );
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn configured_limits_replace_the_defaults() {
        let limits = DnsLimits {
            rrl_per_second: 5,
            rrl_slip: 0,
            max_tcp_connections: 16,
            max_tcp_per_source: 2,
            tcp_idle_timeout: Duration::from_secs(10),
        };
        let dns = server().with_limits(limits);
        let (udp, tcp, stop) = start(&dns).await;
        // RRL at 5 a second, and slip 0: the rest is dropped, none slipped.
        let flood = UdpSocket::bind("127.0.5.1:0").await.expect("udp");
        let q = query("peach.dinosaur.is.", RecordType::SOA);
        for _ in 0..60 {
            flood.send_to(&q, udp).await.expect("send");
        }
        let (mut full, mut slipped) = (0, 0);
        let mut buf = vec![0u8; 4096];
        while let Ok(Ok(n)) = timeout(Duration::from_millis(300), flood.recv(&mut buf)).await {
            let msg = Message::from_vec(&buf[..n]).expect("decode");
            if msg.metadata.truncation {
                slipped += 1;
            } else {
                full += 1;
            }
        }
        assert!((5..=7).contains(&full), "{full} full answers");
        assert_eq!(slipped, 0, "slip 0 sends no truncated answers");
        // Two TCP connections from one source, not eight.
        let _held = fill_share(tcp, "127.0.5.2", 2).await;
        let _ = stop.send(());
    }

    /// One query over a TCP stream.
    async fn tcp_ask(stream: &mut TcpStream, name: &str) -> Message {
        let q = query(name, RecordType::A);
        let mut framed = u16::try_from(q.len()).expect("len").to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        stream.write_all(&framed).await.expect("write");
        let len = stream.read_u16().await.expect("len");
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.expect("read");
        Message::from_vec(&buf).expect("decode")
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tcp_connections_are_closed() {
        let dns = server();
        let (_, tcp, _stop) = start(&dns).await;
        let mut stream = TcpStream::connect(tcp).await.expect("connect");
        // Served while active…
        let reply = tcp_ask(&mut stream, "peach.dinosaur.is.").await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        // …then closed after the idle timeout (the paused clock jumps there).
        let started = tokio::time::Instant::now();
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte).await.expect("read");
        assert_eq!(read, 0, "EOF");
        assert!(started.elapsed() >= DnsLimits::default().tcp_idle_timeout);
    }

    #[tokio::test]
    async fn tcp_connections_over_the_limit_are_closed_at_once() {
        let dns = server();
        let (_, tcp, stop) = start(&dns).await;
        let mut held = Vec::new();
        for i in 0..DnsLimits::default().max_tcp_connections {
            // One source each, so the per-source share is not what stops them.
            let mut stream = connect_from(&format!("127.0.1.{}", i + 1), tcp).await;
            // An answer proves the connection holds a slot.
            tcp_ask(&mut stream, "pi.peach.dinosaur.is.").await;
            held.push(stream);
        }
        let mut extra = TcpStream::connect(tcp).await.expect("connect");
        let mut byte = [0u8; 1];
        let read = extra.read(&mut byte).await.unwrap_or(0);
        assert_eq!(read, 0, "closed without an answer");
        // Freeing one slot lets the next client in.
        drop(held.pop());
        let mut next = None;
        for _ in 0..100 {
            let mut stream = TcpStream::connect(tcp).await.expect("connect");
            let q = query("pi.peach.dinosaur.is.", RecordType::A);
            let mut framed = u16::try_from(q.len()).expect("len").to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            if stream.write_all(&framed).await.is_ok() && stream.read_u16().await.is_ok() {
                next = Some(stream);
                break;
            }
            // The slot is released when the server notices the close.
            tokio::task::yield_now().await;
        }
        assert!(next.is_some(), "a freed slot is reused");
        let _ = stop.send(());
    }
}
