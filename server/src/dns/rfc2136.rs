//! An in-process RFC 2136 client: one TSIG-signed UPDATE per change.
//!
//! A `Set` is one message: delete the name's A rrset, delete its AAAA
//! rrset, add the present addresses. The server applies a message
//! atomically, so a reader never sees the name half-changed, and sending it
//! twice does no harm (the retry after a lost reply relies on that).
//!
//! A client keeps a few UPDATEs at the server at once ([`BIND_LOCAL_IN_FLIGHT`],
//! [`RFC2136_IN_FLIGHT`]); the others wait here, first come first served,
//! not in the server's socket buffer, where named picks them up in no
//! particular order and a few wait far longer than the rest.
//!
//! The message goes over UDP, from a small pool of connected sockets (a
//! connected socket hears ICMP "port unreachable", so a stopped server is
//! reported at once instead of after the timeout). A reply with TC set is
//! followed by the same message over TCP. Success needs a reply with our
//! id, NOERROR and a TSIG signature that verifies with our key; anything
//! else is an error that names the server.
//!
//! The `bind-local` backend is this client with BIND's session key
//! (`update-policy local;`, key `local-ddns`), which is what `nsupdate -l`
//! does. named writes a new session key at every start, so on a BADKEY or
//! BADSIG reply the key file is read again and, if it changed, the update
//! is sent once more (the `rfc2136` backend does the same, so an operator
//! can rotate its key file without a restart).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, timeout_at, Instant};

use super::key::TsigKey;
use super::{
    challenge_fqdn, fqdn, zone_name, BoxFut, ChallengeChange, DnsError, DynamicLabels, ZoneBackend,
    ZoneChange,
};

/// How long one UDP attempt waits for the reply. named answers an update in
/// about a millisecond on loopback; two seconds covers a busy server or a
/// slow link without stalling the HTTP request that waits on it for long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// UDP attempts per update: the first send and one retry.
const ATTEMPTS: u32 = 2;
/// Sockets kept for reuse. Enough for the concurrency an HTTP server sees
/// (the benchmark uses 16 tasks); more are opened on demand and closed.
/// Measured here: opening, connecting and closing a socket costs about
/// 40 µs of system calls, five times the 7 µs of building, signing and
/// parsing an update. Throughput is the same either way (named is the
/// bottleneck), so the pool is about the pub's CPU, not speed.
const POOL_SIZE: usize = 32;
/// UPDATEs the `bind-local` backend has at named at once. named applies a
/// zone's updates one at a time, so more in flight only queue inside named
/// (its socket buffer and task queue), where they are taken in no fair
/// order: at 64 in flight, p99 was 3 to 5 times the mean. A queue here is
/// FIFO (tokio's semaphore is fair). Measured on loopback (the benchmark's
/// raw BIND runs): 1 in flight reaches about 90% of named's best rate,
/// 16 the best; 4 keeps named busy while one reply is on its way back and
/// the next request is being signed.
pub const BIND_LOCAL_IN_FLIGHT: usize = 4;
/// … for the `rfc2136` backend, whose server may be across a network:
/// with a round trip of a few ms, more in flight keep it busy.
pub const RFC2136_IN_FLIGHT: usize = 16;
/// Receive buffer: an UPDATE reply is the header, the zone, and the TSIG
/// record (about 150 bytes); 4096 leaves room for servers that echo more.
const RECV_BUFFER: usize = 4096;

/// An RFC 2136 client for one zone on one server, with one TSIG key.
pub struct Rfc2136 {
    /// `rfc2136` or `bind-local`, for logs and `/health`.
    kind: &'static str,
    /// The primary server for the zone.
    server: SocketAddr,
    /// The zone, absolute and lower case.
    zone: Name,
    /// Where the key comes from, to read it again after BADKEY/BADSIG.
    key_file: PathBuf,
    /// The key name and algorithm the config insists on (`None` for BIND's
    /// session key: the file says).
    want_name: Option<String>,
    /// See `want_name`.
    want_algorithm: Option<String>,
    /// The key in use and its signer, swapped when the file changes.
    key: RwLock<Arc<LoadedKey>>,
    /// Connected UDP sockets not in use right now.
    pool: Mutex<Vec<UdpSocket>>,
    /// Per-attempt timeout (tests shorten it).
    attempt_timeout: Duration,
    /// Permits for UPDATEs at the server (see [`BIND_LOCAL_IN_FLIGHT`]);
    /// the rest of the callers wait here in order.
    in_flight: tokio::sync::Semaphore,
    /// The number of permits, for [`Rfc2136::max_in_flight`].
    max_in_flight: usize,
}

/// A key and the signer made from it.
struct LoadedKey {
    /// The key, to tell whether the file changed.
    key: TsigKey,
    /// hickory's signer (cheap to clone: an `Arc`).
    signer: TSigner,
}

impl std::fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136")
            .field("kind", &self.kind)
            .field("server", &self.server)
            .field("zone", &self.zone.to_ascii())
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// What went wrong in one exchange, before it becomes a [`DnsError`].
enum Failure {
    /// The server refused our key: re-reading the file may help.
    Key(TsigError),
    /// Anything else.
    Other(DnsError),
}

impl From<DnsError> for Failure {
    fn from(e: DnsError) -> Self {
        Failure::Other(e)
    }
}

impl Rfc2136 {
    /// The `rfc2136` backend: any RFC 2136 server with a named TSIG key.
    /// `key_file` is a BIND `key` statement (which must name `key_name`
    /// with `key_algorithm`) or a bare base64 secret.
    pub fn with_key_file(
        server: SocketAddr,
        zone: &str,
        key_file: &Path,
        key_name: &str,
        key_algorithm: &str,
    ) -> Result<Rfc2136, DnsError> {
        Rfc2136::new(
            "rfc2136",
            server,
            zone,
            key_file,
            Some(key_name.to_string()),
            Some(key_algorithm.to_string()),
            RFC2136_IN_FLIGHT,
        )
    }

    /// The `bind-local` backend: the local BIND with its session key file
    /// (`session-keyfile`, key `local-ddns`), like `nsupdate -l`.
    pub fn bind_local(
        server: SocketAddr,
        zone: &str,
        session_key: &Path,
    ) -> Result<Rfc2136, DnsError> {
        Rfc2136::new(
            "bind-local",
            server,
            zone,
            session_key,
            None,
            None,
            BIND_LOCAL_IN_FLIGHT,
        )
    }

    /// Reads the key and sets up the client.
    fn new(
        kind: &'static str,
        server: SocketAddr,
        zone: &str,
        key_file: &Path,
        want_name: Option<String>,
        want_algorithm: Option<String>,
        max_in_flight: usize,
    ) -> Result<Rfc2136, DnsError> {
        let zone = zone_name(zone)?;
        let loaded = load_key(key_file, want_name.as_deref(), want_algorithm.as_deref())?;
        Ok(Rfc2136 {
            kind,
            server,
            zone,
            key_file: key_file.to_owned(),
            want_name,
            want_algorithm,
            key: RwLock::new(Arc::new(loaded)),
            pool: Mutex::new(Vec::new()),
            attempt_timeout: ATTEMPT_TIMEOUT,
            in_flight: tokio::sync::Semaphore::new(max_in_flight),
            max_in_flight,
        })
    }

    /// Allows `n` (at least 1) UPDATEs at the server at once instead of the
    /// backend's default (the benchmark measures named's own ceiling with
    /// one per loop).
    pub fn with_max_in_flight(mut self, n: usize) -> Rfc2136 {
        let n = n.max(1);
        self.in_flight = tokio::sync::Semaphore::new(n);
        self.max_in_flight = n;
        self
    }

    /// How many UPDATEs this client has at the server at most.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Waits `timeout` for each of the two UDP attempts instead of 2 s.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Rfc2136 {
        self.attempt_timeout = timeout;
        self
    }

    /// The server updates go to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The key in use now.
    fn current_key(&self) -> Arc<LoadedKey> {
        let guard = self.key.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&guard)
    }

    /// Reads the key file again; swaps the key in and returns `true` when
    /// it differs from `used` (the key the rejected request was signed with).
    fn reload_key(&self, used: &LoadedKey) -> Result<bool, DnsError> {
        let fresh = load_key(
            &self.key_file,
            self.want_name.as_deref(),
            self.want_algorithm.as_deref(),
        )?;
        if fresh.key == used.key {
            return Ok(false);
        }
        tracing::info!(
            backend = self.kind,
            key_file = %self.key_file.display(),
            "TSIG key file changed; using the new key"
        );
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(true)
    }

    /// Applies one change, re-reading the key once if the server rejects it.
    async fn apply_change(&self, change: &ZoneChange) -> Result<(), DnsError> {
        let name = fqdn(change.name(), &self.zone)?;
        self.send_update(&name, || build_update(&self.zone, &name, change))
            .await
    }

    /// Applies one change of a name's challenge records.
    async fn apply_challenge_change(&self, change: &ChallengeChange) -> Result<(), DnsError> {
        let name = challenge_fqdn(change.name(), &self.zone)?;
        let values = change.checked_values()?;
        let ttl = match change {
            ChallengeChange::Set(challenge) => challenge.ttl,
            ChallengeChange::Clear { .. } => 0,
        };
        self.send_update(&name, || {
            build_challenge_update(&self.zone, &name, values, ttl)
        })
        .await
    }

    /// Sends the UPDATE `build` makes for `name`, re-reading the key once
    /// if the server rejects it (a fresh message each time: signing
    /// changes it).
    async fn send_update(&self, name: &Name, build: impl Fn() -> Message) -> Result<(), DnsError> {
        // Held for the whole exchange, retries included. The semaphore is
        // never closed, so acquiring fails only if that invariant breaks.
        let _permit = self
            .in_flight
            .acquire()
            .await
            .expect("invariant: the in-flight semaphore is never closed");
        let mut reloaded = false;
        loop {
            let key = self.current_key();
            match self.exchange(name, build(), &key.signer).await {
                Ok(()) => return Ok(()),
                Err(Failure::Other(e)) => return Err(e),
                Err(Failure::Key(error)) => {
                    let retry = matches!(error, TsigError::BadKey | TsigError::BadSig)
                        && !reloaded
                        && self.reload_key(&key)?;
                    if retry {
                        reloaded = true;
                        continue;
                    }
                    return Err(self.key_rejected(&key.key, error));
                }
            }
        }
    }

    /// The error for a key the server would not take.
    fn key_rejected(&self, key: &TsigKey, error: TsigError) -> DnsError {
        let (tsig_error, hint) = match error {
            TsigError::BadKey => (
                "BADKEY".to_string(),
                " (the server has no key of this name and algorithm)",
            ),
            TsigError::BadSig => (
                "BADSIG".to_string(),
                " (the secret differs from the server's)",
            ),
            TsigError::BadTime => (
                "BADTIME".to_string(),
                " (this machine's clock and the server's differ by more than 300 s)",
            ),
            TsigError::BadTrunc => ("BADTRUNC".to_string(), ""),
            TsigError::Unknown(code) => (format!("TSIG error {code}"), ""),
        };
        DnsError::KeyRejected {
            server: self.server,
            key_name: key.name().to_string(),
            key_file: self.key_file.clone(),
            tsig_error,
            hint,
        }
    }

    /// One signed UPDATE and its checked reply.
    async fn exchange(
        &self,
        name: &Name,
        mut message: Message,
        signer: &TSigner,
    ) -> Result<(), Failure> {
        let id = message.metadata.id;
        let encode_error = |detail: String| DnsError::Encode {
            what: format!("the update of {name}"),
            detail,
        };
        let verifier = message
            .finalize(signer, unix_now())
            .map_err(|e| encode_error(e.to_string()))?
            .ok_or_else(|| encode_error("the signer gave no reply verifier".into()))?;
        let request = message.to_vec().map_err(|e| encode_error(e.to_string()))?;
        let mut reply = self.send_udp(&request, id).await?;
        let mut parsed = self.parse_reply(&reply, id)?;
        if parsed.metadata.truncation {
            reply = self.send_tcp(&request).await?;
            parsed = self.parse_reply(&reply, id)?;
        }
        self.check_reply(&parsed, &reply, name, verifier)
    }

    /// Sends over UDP and returns the first datagram carrying our id.
    async fn send_udp(&self, request: &[u8], id: u16) -> Result<Vec<u8>, DnsError> {
        let socket = self.take_socket().await?;
        let unreachable = |source| DnsError::Unreachable {
            server: self.server,
            source,
        };
        let mut buf = vec![0u8; RECV_BUFFER];
        for _ in 0..ATTEMPTS {
            socket.send(request).await.map_err(unreachable)?;
            let deadline = Instant::now() + self.attempt_timeout;
            loop {
                match timeout_at(deadline, socket.recv(&mut buf)).await {
                    // No answer in time: send again, or give up.
                    Err(_) => break,
                    // ICMP port unreachable shows up here as ECONNREFUSED.
                    Ok(Err(e)) => return Err(unreachable(e)),
                    Ok(Ok(len)) => {
                        // A late reply to an earlier request on this pooled
                        // socket, or junk: not ours, keep listening.
                        if len < 12 || u16::from_be_bytes([buf[0], buf[1]]) != id {
                            continue;
                        }
                        buf.truncate(len);
                        self.return_socket(socket);
                        return Ok(buf);
                    }
                }
            }
        }
        Err(DnsError::Timeout {
            server: self.server,
            waited: self.attempt_timeout * ATTEMPTS,
        })
    }

    /// Sends over TCP (after a truncated UDP reply) and returns the reply.
    async fn send_tcp(&self, request: &[u8]) -> Result<Vec<u8>, DnsError> {
        let unreachable = |source| DnsError::Unreachable {
            server: self.server,
            source,
        };
        let exchange = async {
            let mut stream = TcpStream::connect(self.server).await.map_err(unreachable)?;
            let len = u16::try_from(request.len()).map_err(|_| DnsError::Encode {
                what: "a TCP request".into(),
                detail: format!("{} bytes is too long for DNS over TCP", request.len()),
            })?;
            let mut framed = Vec::with_capacity(request.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(request);
            stream.write_all(&framed).await.map_err(unreachable)?;
            let len = stream.read_u16().await.map_err(unreachable)?;
            let mut reply = vec![0u8; usize::from(len)];
            stream.read_exact(&mut reply).await.map_err(unreachable)?;
            Ok(reply)
        };
        timeout(self.attempt_timeout, exchange)
            .await
            .unwrap_or(Err(DnsError::Timeout {
                server: self.server,
                waited: self.attempt_timeout,
            }))
    }

    /// A pooled socket, or a new one connected to the server.
    async fn take_socket(&self) -> Result<UdpSocket, DnsError> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(socket) = pooled {
            return Ok(socket);
        }
        let unreachable = |source| DnsError::Unreachable {
            server: self.server,
            source,
        };
        let local: SocketAddr = match self.server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await.map_err(unreachable)?;
        socket.connect(self.server).await.map_err(unreachable)?;
        Ok(socket)
    }

    /// Keeps a socket that finished a clean exchange for the next request.
    /// Sockets that saw an error or a timeout are dropped instead, so a
    /// stale ICMP error cannot fail a later request.
    fn return_socket(&self, socket: UdpSocket) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_SIZE {
            pool.push(socket);
        }
    }

    /// Parses a reply and checks it answers our request.
    fn parse_reply(&self, reply: &[u8], id: u16) -> Result<Message, DnsError> {
        let bad = |detail: String| DnsError::BadReply {
            server: self.server,
            detail,
        };
        let message = Message::from_vec(reply).map_err(|e| bad(e.to_string()))?;
        if message.metadata.id != id {
            return Err(bad(format!(
                "id {} does not match the request's {id}",
                message.metadata.id
            )));
        }
        if message.metadata.message_type != MessageType::Response
            || message.metadata.op_code != OpCode::Update
        {
            return Err(bad("not a response to an UPDATE".into()));
        }
        Ok(message)
    }

    /// Success needs NOERROR and a reply signed with our key. A TSIG error
    /// in the reply is reported as such (those replies are unsigned by
    /// design, RFC 8945 §5.3.2); other error codes are believed without a
    /// signature too, since a forged failure only costs a retry.
    fn check_reply(
        &self,
        reply: &Message,
        bytes: &[u8],
        name: &Name,
        mut verifier: hickory_proto::rr::TSigVerifier,
    ) -> Result<(), Failure> {
        if let Some(error) = reply.signature().and_then(|sig| sig.data.error) {
            return Err(Failure::Key(error));
        }
        let rcode = reply.metadata.response_code;
        if rcode != ResponseCode::NoError {
            return Err(Failure::Other(DnsError::Rejected {
                server: self.server,
                fqdn: name.to_ascii(),
                rcode: super::rcode_name(rcode),
                hint: rcode_hint(rcode),
            }));
        }
        if reply.signature().is_none() {
            return Err(Failure::Other(DnsError::BadReplySignature {
                server: self.server,
                detail: "the reply is not signed".into(),
            }));
        }
        verifier.verify(bytes).map_err(|e| {
            Failure::Other(DnsError::BadReplySignature {
                server: self.server,
                detail: e.to_string(),
            })
        })?;
        Ok(())
    }
}

impl ZoneBackend for Rfc2136 {
    fn apply<'a>(&'a self, change: &'a ZoneChange) -> BoxFut<'a, Result<(), DnsError>> {
        Box::pin(async move {
            let result = self.apply_change(change).await;
            if let Err(e) = &result {
                tracing::debug!(backend = self.kind, name = change.name(), error = %e, "update failed");
            }
            result
        })
    }

    fn apply_challenge<'a>(
        &'a self,
        change: &'a ChallengeChange,
    ) -> BoxFut<'a, Result<(), DnsError>> {
        Box::pin(async move {
            let result = self.apply_challenge_change(change).await;
            if let Err(e) = &result {
                tracing::debug!(backend = self.kind, name = change.name(), error = %e, "challenge update failed");
            }
            result
        })
    }

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn dynamic_labels(&self) -> BoxFut<'_, Result<Option<DynamicLabels>, DnsError>> {
        Box::pin(async move {
            let key = self.current_key();
            super::axfr::dynamic_labels(self.server, &self.zone, &key.signer, key.key.name())
                .await
                .map(Some)
        })
    }
}

/// Reads the key file and makes a signer.
fn load_key(
    path: &Path,
    want_name: Option<&str>,
    want_algorithm: Option<&str>,
) -> Result<LoadedKey, DnsError> {
    let key = TsigKey::load(path, want_name, want_algorithm)?;
    let signer = key.signer().map_err(|detail| DnsError::KeyFile {
        path: path.to_owned(),
        detail,
    })?;
    Ok(LoadedKey { key, signer })
}

/// The UPDATE message for one change, unsigned, with a random id.
///
/// Zone section: `zone IN SOA`. Update section: delete the A rrset and
/// the AAAA rrset of `name` (class ANY, TTL 0, no data: RFC 2136 §2.5.2),
/// then, for `Set`, add the present addresses with the TTL.
pub fn build_update(zone: &Name, name: &Name, change: &ZoneChange) -> Message {
    // Message::query picks a random id.
    let mut message = Message::query();
    message.metadata.op_code = OpCode::Update;
    message.metadata.recursion_desired = false;
    let mut zone_query = Query::query(zone.clone(), RecordType::SOA);
    zone_query.set_query_class(DNSClass::IN);
    message.add_query(zone_query);
    for rtype in [RecordType::A, RecordType::AAAA] {
        let mut delete = Record::update0(name.clone(), 0, rtype).into_record_of_rdata();
        delete.dns_class = DNSClass::ANY;
        message.add_authority(delete);
    }
    if let ZoneChange::Set(records) = change {
        if let Some(ip) = records.ip {
            message.add_authority(Record::from_rdata(
                name.clone(),
                records.ttl,
                RData::A(A(ip)),
            ));
        }
        if let Some(ip6) = records.ip6 {
            message.add_authority(Record::from_rdata(
                name.clone(),
                records.ttl,
                RData::AAAA(AAAA(ip6)),
            ));
        }
    }
    message
}

/// The UPDATE message for one change of a challenge, unsigned: delete the
/// TXT rrset of `name` (`_acme-challenge.<label>.<zone>`), then add one
/// TXT record per value with `ttl`. One message, so a reader sees the old
/// values or the new ones, never none in between.
pub fn build_challenge_update(zone: &Name, name: &Name, values: &[String], ttl: u32) -> Message {
    let mut message = Message::query();
    message.metadata.op_code = OpCode::Update;
    message.metadata.recursion_desired = false;
    let mut zone_query = Query::query(zone.clone(), RecordType::SOA);
    zone_query.set_query_class(DNSClass::IN);
    message.add_query(zone_query);
    let mut delete = Record::update0(name.clone(), 0, RecordType::TXT).into_record_of_rdata();
    delete.dns_class = DNSClass::ANY;
    message.add_authority(delete);
    for value in values {
        message.add_authority(Record::from_rdata(
            name.clone(),
            ttl,
            RData::TXT(TXT::new(vec![value.clone()])),
        ));
    }
    message
}

/// Seconds since the epoch for the TSIG time. A clock before 1970 signs
/// with 0, which the server rejects with BADTIME: the error says why.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What an UPDATE error code usually means for this client.
fn rcode_hint(rcode: ResponseCode) -> &'static str {
    match u16::from(rcode) {
        5 => "; the key may not change this name (update-policy / allow-update)",
        9 => "; the server is not the primary for the zone, or does not know the key",
        10 => "; the name is not inside the zone",
        2 => "; see the DNS server's log",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::NameRecords;
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;

    fn zone() -> Name {
        zone_name("peach.dinosaur.is").expect("zone")
    }

    fn name() -> Name {
        fqdn("pi", &zone()).expect("name")
    }

    #[test]
    fn set_deletes_both_rrsets_then_adds() {
        let change = ZoneChange::Set(NameRecords {
            name: "pi".into(),
            ip: Some(Ipv4Addr::new(192, 0, 2, 7)),
            ip6: Some("2001:db8::7".parse().expect("ip6")),
            ttl: 60,
        });
        let msg = build_update(&zone(), &name(), &change);
        assert_eq!(msg.metadata.op_code, OpCode::Update);
        assert!(!msg.metadata.recursion_desired);
        assert_eq!(msg.queries.len(), 1);
        assert_eq!(msg.queries[0].query_type(), RecordType::SOA);
        assert_eq!(msg.queries[0].name().to_ascii(), "peach.dinosaur.is.");
        assert!(msg.answers.is_empty(), "no prerequisites");
        let updates: Vec<_> = msg
            .authorities
            .iter()
            .map(|r| (r.record_type(), r.dns_class, r.ttl, r.data.clone()))
            .collect();
        assert_eq!(
            updates,
            vec![
                (
                    RecordType::A,
                    DNSClass::ANY,
                    0,
                    RData::Update0(RecordType::A)
                ),
                (
                    RecordType::AAAA,
                    DNSClass::ANY,
                    0,
                    RData::Update0(RecordType::AAAA)
                ),
                (
                    RecordType::A,
                    DNSClass::IN,
                    60,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 7)))
                ),
                (
                    RecordType::AAAA,
                    DNSClass::IN,
                    60,
                    RData::AAAA(AAAA("2001:db8::7".parse().expect("ip6")))
                ),
            ]
        );
        for record in &msg.authorities {
            assert_eq!(record.name.to_ascii(), "pi.peach.dinosaur.is.");
        }
        // It encodes, and decodes to the same sections.
        let bytes = msg.to_vec().expect("encode");
        let back = Message::from_vec(&bytes).expect("decode");
        assert_eq!(back.authorities.len(), 4);
    }

    #[test]
    fn remove_only_deletes() {
        let msg = build_update(&zone(), &name(), &ZoneChange::Remove { name: "pi".into() });
        assert_eq!(msg.authorities.len(), 2);
        assert!(msg.authorities.iter().all(|r| r.dns_class == DNSClass::ANY));
        // A Set with no address is the same as a Remove.
        let empty = ZoneChange::Set(NameRecords {
            name: "pi".into(),
            ip: None,
            ip6: None,
            ttl: 60,
        });
        assert_eq!(
            build_update(&zone(), &name(), &empty).authorities,
            msg.authorities
        );
    }

    #[test]
    fn signed_message_verifies_with_the_key() {
        let key = TsigKey::new("k1", "hmac-sha256", b"0123456789abcdef".to_vec()).expect("key");
        let signer = key.signer().expect("signer");
        let mut msg = build_update(&zone(), &name(), &ZoneChange::Remove { name: "pi".into() });
        msg.finalize(&signer, unix_now()).expect("sign");
        let bytes = msg.to_vec().expect("encode");
        let back = Message::from_vec(&bytes).expect("decode");
        let sig = back.signature().expect("signed");
        assert_eq!(sig.name.to_ascii(), "k1.");
        assert_eq!(sig.data.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(sig.data.fudge, 300);
        signer
            .verify_message_byte(&bytes, None, true)
            .expect("verifies");
        let other = TsigKey::new("k1", "hmac-sha256", b"another secret".to_vec())
            .expect("key")
            .signer()
            .expect("signer");
        assert!(other.verify_message_byte(&bytes, None, true).is_err());
    }

    /// A key file in a temporary directory, and a client for a server that
    /// never answers: the timeout path, on tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn silent_server_times_out_after_the_retry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_file = dir.path().join("k.key");
        std::fs::write(&key_file, "c2VjcmV0c2VjcmV0").expect("write");
        // A bound socket that reads nothing: no ICMP error, no reply.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let server = silent.local_addr().expect("addr");
        let client =
            Rfc2136::with_key_file(server, "peach.dinosaur.is", &key_file, "k", "hmac-sha256")
                .expect("client");
        let start = Instant::now();
        let err = client
            .apply(&ZoneChange::Remove { name: "pi".into() })
            .await
            .expect_err("no answer");
        assert!(matches!(err, DnsError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains(&server.to_string()), "{err}");
        assert_eq!(start.elapsed(), ATTEMPT_TIMEOUT * ATTEMPTS);
    }

    /// How the fake server of the tests below answers over UDP.
    #[derive(Clone, Copy)]
    enum Fake {
        /// An empty reply with TC set; the signed answer comes over TCP.
        Truncate,
        /// NOERROR without a signature: a forged success.
        Unsigned,
        /// NOERROR signed with another key.
        OtherKey,
    }

    /// A signed NOERROR reply to `request` (wire bytes) with `key`.
    fn signed_reply(request: &[u8], key: &TsigKey) -> Vec<u8> {
        let request = Message::from_vec(request).expect("request decodes");
        let mut reply = Message::response(request.metadata.id, OpCode::Update);
        reply.add_queries(request.queries.iter().cloned());
        let unsigned = reply.to_vec().expect("encode");
        let mac = request
            .signature()
            .expect("signed request")
            .data
            .mac
            .clone();
        let context = hickory_proto::rr::TSigResponseContext::new(
            request.metadata.id,
            unix_now(),
            key.signer().expect("signer"),
            mac,
            None,
        );
        reply.set_signature(context.sign(&unsigned).expect("sign"));
        reply.to_vec().expect("encode")
    }

    /// A server on one loopback port, UDP and TCP, that answers as `fake`
    /// says; the client uses `key` (the fake knows it too).
    async fn fake_server(fake: Fake, key: TsigKey) -> SocketAddr {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("udp");
        let addr = udp.local_addr().expect("addr");
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .expect("tcp on the same port");
        let udp_key = key.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((len, peer)) = udp.recv_from(&mut buf).await {
                let request = &buf[..len];
                let reply = match fake {
                    Fake::Truncate => {
                        let mut header = request[..12].to_vec();
                        header[2] = 0x80 | 0x28 | 0x02; // QR, opcode UPDATE, TC
                        header[3] = 0;
                        header[4..].fill(0);
                        header
                    }
                    Fake::Unsigned => {
                        let id = Message::from_vec(request).expect("decode").metadata.id;
                        Message::response(id, OpCode::Update)
                            .to_vec()
                            .expect("encode")
                    }
                    Fake::OtherKey => {
                        let other = TsigKey::new(udp_key.name(), "hmac-sha256", b"other".to_vec())
                            .expect("key");
                        // Signed over the request as if with our key's MAC.
                        signed_reply(request, &other)
                    }
                };
                let _ = udp.send_to(&reply, peer).await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let len = stream.read_u16().await.expect("len");
                let mut request = vec![0u8; usize::from(len)];
                stream.read_exact(&mut request).await.expect("request");
                let reply = signed_reply(&request, &key);
                let mut framed = u16::try_from(reply.len())
                    .expect("len")
                    .to_be_bytes()
                    .to_vec();
                framed.extend_from_slice(&reply);
                stream.write_all(&framed).await.expect("write");
            }
        });
        addr
    }

    /// Writes `key` as a BIND `key { … };` statement to `path`.
    fn write_key_file(path: &Path, key: &TsigKey) {
        std::fs::write(
            path,
            format!(
                "key \"{}\" {{ algorithm {}; secret \"{}\"; }};",
                key.name(),
                key.algorithm(),
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &key.secret)
            ),
        )
        .expect("write key");
    }

    /// A client for `server` with a key file holding `key`.
    fn client_for(server: SocketAddr, key: &TsigKey, dir: &Path) -> Rfc2136 {
        let path = dir.join("k.key");
        write_key_file(&path, key);
        Rfc2136::with_key_file(
            server,
            "peach.dinosaur.is",
            &path,
            key.name(),
            key.algorithm(),
        )
        .expect("client")
    }

    fn test_key() -> TsigKey {
        TsigKey::new(
            "k1",
            "hmac-sha256",
            b"0123456789abcdef0123456789abcdef".to_vec(),
        )
        .expect("key")
    }

    #[tokio::test]
    async fn a_truncated_reply_is_followed_over_tcp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = fake_server(Fake::Truncate, test_key()).await;
        let client = client_for(server, &test_key(), dir.path());
        client
            .apply(&ZoneChange::Remove { name: "pi".into() })
            .await
            .expect("the signed TCP reply is accepted");
    }

    #[tokio::test]
    async fn a_forged_success_is_not_believed() {
        for fake in [Fake::Unsigned, Fake::OtherKey] {
            let dir = tempfile::tempdir().expect("tempdir");
            let server = fake_server(fake, test_key()).await;
            let client = client_for(server, &test_key(), dir.path());
            let err = client
                .apply(&ZoneChange::Remove { name: "pi".into() })
                .await
                .expect_err("forged");
            assert!(matches!(err, DnsError::BadReplySignature { .. }), "{err}");
        }
    }

    /// 64 updates at once reach the server at most [`BIND_LOCAL_IN_FLIGHT`]
    /// at a time; the rest wait in the client, and all succeed. The fake
    /// holds each reply 5 ms and counts the requests it holds.
    #[tokio::test]
    async fn bind_local_keeps_at_most_its_bound_in_flight() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let key = test_key();
        let udp = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("udp"),
        );
        let server = udp.local_addr().expect("addr");
        let held = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (recv, held_in, most_in, reply_key) =
            (Arc::clone(&udp), held.clone(), most.clone(), key.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((len, peer)) = recv.recv_from(&mut buf).await {
                let now = held_in.fetch_add(1, Ordering::SeqCst) + 1;
                most_in.fetch_max(now, Ordering::SeqCst);
                let reply = signed_reply(&buf[..len], &reply_key);
                let (send, held) = (Arc::clone(&recv), held_in.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    held.fetch_sub(1, Ordering::SeqCst);
                    let _ = send.send_to(&reply, peer).await;
                });
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.key");
        write_key_file(&path, &key);
        let client =
            Arc::new(Rfc2136::bind_local(server, "peach.dinosaur.is", &path).expect("client"));
        assert_eq!(client.max_in_flight(), BIND_LOCAL_IN_FLIGHT);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..64 {
            let client = Arc::clone(&client);
            set.spawn(async move {
                client
                    .apply(&ZoneChange::Remove {
                        name: format!("pi{i}"),
                    })
                    .await
            });
        }
        while let Some(done) = set.join_next().await {
            done.expect("task").expect("update accepted");
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=BIND_LOCAL_IN_FLIGHT).contains(&most),
            "the server held {most} updates at once (bound {BIND_LOCAL_IN_FLIGHT})"
        );
    }
}
