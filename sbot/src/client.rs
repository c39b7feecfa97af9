//! [`Sbot`]: connect with the secret handshake, then the typed calls
//! peach-dyndns makes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use kuska_handshake::async_std::{handshake_client, BoxStream};
use kuska_handshake::sodiumoxide::crypto::{auth, sign::ed25519};
use peach_dyndns_protocol::identity::PublicKey;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_util::compat::{TokioAsyncReadCompatExt as _, TokioAsyncWriteCompatExt as _};

use crate::conn::{Connection, Source};
use crate::quickack::QuickAckRead;
use crate::SbotError;

/// The network key of the main SSB network ("shs key" / "caps.shs"): the
/// one every ssb-server and go-sbot uses unless configured otherwise.
/// Base64 `1KHLiKZvAvjbY1ziZEHMXawbCEIM6qwjCDm3VYRan/s=`.
pub const MAIN_NETWORK_KEY: [u8; 32] = [
    0xd4, 0xa1, 0xcb, 0x88, 0xa6, 0x6f, 0x02, 0xf8, 0xdb, 0x63, 0x5c, 0xe2, 0x64, 0x41, 0xcc, 0x5d,
    0xac, 0x1b, 0x08, 0x42, 0x0c, 0xea, 0xac, 0x23, 0x08, 0x39, 0xb7, 0x55, 0x84, 0x5a, 0x9f, 0xfb,
];

/// Size of the box stream's buffers, as kuska-ssb uses (32 KiB). A box is
/// at most 4 KiB of plaintext, so this holds several.
const BOX_STREAM_CAPACITY: usize = 0x8000;

/// Where the ssb-server is and who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SbotConfig {
    /// Address of the server's `net` listener (ssb-server's default port is 8008).
    pub addr: SocketAddr,
    /// The server's feed id, `@<base64>.ed25519`: the handshake proves the
    /// server holds that key.
    pub server_id: String,
    /// The network key (`caps.shs`); `None` means the main SSB network's
    /// ([`MAIN_NETWORK_KEY`]).
    pub network_key: Option<[u8; 32]>,
}

impl SbotConfig {
    /// A config for the main SSB network.
    pub fn new(addr: SocketAddr, server_id: impl Into<String>) -> SbotConfig {
        SbotConfig {
            addr,
            server_id: server_id.into(),
            network_key: None,
        }
    }
}

/// A muxrpc client connected to an ssb-server.
///
/// Connect with the server's own key (the key in its `secret` file) to be
/// treated as the server's owner, which `publish`, `invite.accept` and
/// `gossip.add` require; other keys may only make the calls ssb-server
/// allows anonymous peers.
///
/// Methods take `&self` and may run concurrently (share it in an `Arc`);
/// each waits at most [`timeout`](Sbot::timeout) for its answer. After the
/// connection ends every call fails with [`SbotError::Disconnected`]: make a
/// new `Sbot` then.
pub struct Sbot {
    conn: Connection,
    /// How long each call waits for its answer.
    timeout: Duration,
    /// Our own feed id, for [`Sbot::id`].
    id: String,
}

impl std::fmt::Debug for Sbot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sbot")
            .field("addr", &self.conn.addr())
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Sbot {
    /// Connects over TCP, runs the secret handshake as `key` and starts
    /// muxrpc. `timeout` bounds the TCP connect and the handshake, each,
    /// and becomes the timeout of every later call.
    ///
    /// Must be called within a tokio runtime (it spawns the connection's
    /// reader and writer tasks).
    pub async fn connect(
        cfg: &SbotConfig,
        key: &SigningKey,
        timeout: Duration,
    ) -> Result<Sbot, SbotError> {
        let addr = cfg.addr;
        let server_pk: PublicKey = cfg
            .server_id
            .parse()
            .map_err(|source| SbotError::InvalidId { source })?;
        let handshake_error = |reason: String| SbotError::Handshake {
            addr,
            server_id: cfg.server_id.clone(),
            reason,
        };
        let timed_out = |method: &str| SbotError::Timeout {
            addr,
            method: method.to_owned(),
            after: timeout,
        };

        // libsodium needs its one-time initialisation (it picks the random
        // source the handshake's ephemeral keys come from); repeat calls are
        // no-ops.
        kuska_handshake::sodiumoxide::init()
            .map_err(|()| handshake_error("libsodium failed to initialise".to_owned()))?;
        let net_key = auth::Key(cfg.network_key.unwrap_or(MAIN_NETWORK_KEY));
        let our_pk = ed25519::PublicKey(key.verifying_key().to_bytes());
        let our_sk = ed25519::SecretKey(key.to_keypair_bytes());
        let their_pk = ed25519::PublicKey(*server_pk.as_bytes());

        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out("connect"))?
            .map_err(|source| SbotError::Connect { addr, source })?;
        // Calls are small request/answer pairs: send each at once.
        tcp.set_nodelay(true)
            .map_err(|source| SbotError::Connect { addr, source })?;

        let mut stream = tcp.compat();
        let done = tokio::time::timeout(
            timeout,
            handshake_client(&mut stream, net_key, our_pk, our_sk, their_pk),
        )
        .await
        .map_err(|_| timed_out("handshake"))?
        .map_err(|e| handshake_error(describe_handshake_error(&e)))?;

        let (read, write) = stream.into_inner().into_split();
        let (reader, writer) = BoxStream::from_handshake(
            QuickAckRead(read).compat(),
            write.compat_write(),
            done,
            BOX_STREAM_CAPACITY,
        )
        .split_read_write();
        Ok(Sbot {
            conn: Connection::start(addr, reader, writer),
            timeout,
            id: PublicKey::from(key.verifying_key()).to_string(),
        })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.conn.addr()
    }

    /// Our own feed id (of the key we connected with).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How long each call waits for its answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes how long each call waits for its answer.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Makes any async (or sync) muxrpc call: `method` is dotted
    /// (`friends.isFollowing`), `args` the JSON array of arguments.
    pub async fn call(&self, method: &str, args: Value) -> Result<Value, SbotError> {
        self.conn.call(method, &args, self.timeout).await
    }

    /// Opens any source stream (`messagesByType`, `createHistoryStream`, …).
    /// Read it with [`Source::next`] or [`Source::collect`]; drop it to stop.
    pub fn source(&self, method: &str, args: Value) -> Result<Source, SbotError> {
        self.conn.source(method, &args)
    }

    /// `whoami`: the server's feed id.
    pub async fn whoami(&self) -> Result<String, SbotError> {
        let method = "whoami";
        let answer = self.call(method, json!([])).await?;
        answer
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| self.decode_error(method, "expected {\"id\": \"@….ed25519\"}", &answer))
    }

    /// `friends.isFollowing`: whether `source` follows `dest` in the
    /// server's view of the social graph (within its hops).
    pub async fn is_following(&self, source: &str, dest: &str) -> Result<bool, SbotError> {
        self.friends_relation("friends.isFollowing", source, dest)
            .await
    }

    /// `friends.isBlocking`: whether `source` blocks `dest`.
    pub async fn is_blocking(&self, source: &str, dest: &str) -> Result<bool, SbotError> {
        self.friends_relation("friends.isBlocking", source, dest)
            .await
    }

    /// A `friends.*` call on `{source, dest}` that answers true or false.
    async fn friends_relation(
        &self,
        method: &str,
        source: &str,
        dest: &str,
    ) -> Result<bool, SbotError> {
        let answer = self
            .call(method, json!([{ "source": source, "dest": dest }]))
            .await?;
        answer
            .as_bool()
            .ok_or_else(|| self.decode_error(method, "expected true or false", &answer))
    }

    /// `friends.hops`: the distance of every feed the graph reaches from
    /// `start` (default: the server itself), up to `max` hops (default: the
    /// server's replication hops). A negative distance means blocked.
    ///
    /// Sent as an async call: kuska-ssb's helper sends a source call, which
    /// ssb-server 16 refuses.
    pub async fn hops(
        &self,
        start: Option<&str>,
        max: Option<u32>,
    ) -> Result<BTreeMap<String, f64>, SbotError> {
        let method = "friends.hops";
        let mut opts = serde_json::Map::new();
        if let Some(start) = start {
            opts.insert("start".to_owned(), json!(start));
        }
        if let Some(max) = max {
            opts.insert("max".to_owned(), json!(max));
        }
        let answer = self.call(method, json!([opts])).await?;
        let shape = "expected an object of feed id to number";
        let object = answer
            .as_object()
            .ok_or_else(|| self.decode_error(method, shape, &answer))?;
        object
            .iter()
            .map(|(id, hops)| {
                hops.as_f64()
                    .map(|hops| (id.clone(), hops))
                    .ok_or_else(|| self.decode_error(method, shape, &answer))
            })
            .collect()
    }

    /// `publish`: appends a message with `content` (an object with a
    /// `type`) to the server's own feed; returns the new message's key
    /// (`%<base64>.sha256`).
    pub async fn publish(&self, content: &Value) -> Result<String, SbotError> {
        let method = "publish";
        let answer = self.call(method, json!([content])).await?;
        answer
            .get("key")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| self.decode_error(method, "expected a message with a \"key\"", &answer))
    }

    /// `messagesByType`: every message of type `msg_type` the server has
    /// (its own and those it replicated), oldest first, each as
    /// `{"key", "value": {"author", "sequence", "content", …}, "timestamp"}`.
    /// Not live: it reads the stream to its end, within the timeout.
    pub async fn messages_by_type(&self, msg_type: &str) -> Result<Vec<Value>, SbotError> {
        self.source(
            "messagesByType",
            json!([{ "type": msg_type, "live": false }]),
        )?
        .collect(self.timeout)
        .await
    }

    /// `invite.accept`: uses an invite code (`host:port:@key~seed`) from a
    /// pub. The pub follows us and we follow the pub.
    ///
    /// On the Pi call [`gossip_add`](Sbot::gossip_add) with the pub's
    /// address first: ssb-server 16.0.1 otherwise crashes a few seconds
    /// later in its gossip scheduler.
    pub async fn invite_accept(&self, code: &str) -> Result<(), SbotError> {
        self.call("invite.accept", json!([code])).await.map(drop)
    }

    /// `gossip.add`: tells the server about a peer (`key` its feed id) so
    /// its gossip scheduler knows the address. Sent with source `"seed"`.
    pub async fn gossip_add(&self, host: &str, port: u16, key: &str) -> Result<(), SbotError> {
        self.call(
            "gossip.add",
            json!([{ "host": host, "port": port, "key": key }, "seed"]),
        )
        .await
        .map(drop)
    }

    /// Says goodbye and closes the connection (dropping the `Sbot` does the
    /// same without waiting).
    pub async fn close(self) -> Result<(), SbotError> {
        let timeout = self.timeout;
        self.conn.close(timeout).await
    }

    fn decode_error(&self, method: &str, expected: &str, answer: &Value) -> SbotError {
        let mut got = answer.to_string();
        /// Enough of the answer to see what it was.
        const MAX_SHOWN: usize = 200;
        if got.len() > MAX_SHOWN {
            let cut = (0..=MAX_SHOWN)
                .rev()
                .find(|&i| got.is_char_boundary(i))
                .unwrap_or(0);
            got.truncate(cut);
            got.push('…');
        }
        SbotError::Decode {
            addr: self.addr(),
            method: method.to_owned(),
            reason: format!("{expected}, got {got}"),
        }
    }
}

/// Words for a failed handshake. The server hangs up when our auth message
/// does not open with its key (wrong server id) or our hello has the wrong
/// network key, which shows up here as an early end of stream.
fn describe_handshake_error(e: &kuska_handshake::async_std::Error) -> String {
    match e {
        kuska_handshake::async_std::Error::Io(io)
            if io.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            "the server hung up during the handshake".to_owned()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_key_is_the_main_net() {
        use base64::Engine as _;
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(MAIN_NETWORK_KEY),
            "1KHLiKZvAvjbY1ziZEHMXawbCEIM6qwjCDm3VYRan/s="
        );
    }

    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}

    /// The server shares one `Sbot` between request handlers on a
    /// multi-threaded runtime: it and its call futures must be `Send`.
    /// (Checked by compiling; never called.)
    #[allow(dead_code)]
    fn sbot_and_its_futures_cross_threads(
        sbot: &Sbot,
        source: &Source,
        cfg: &SbotConfig,
        key: &SigningKey,
    ) {
        send_sync(sbot);
        send(source);
        send(&sbot.is_following("@a", "@b"));
        send(&sbot.messages_by_type("peach-dyndns"));
        send(&Sbot::connect(cfg, key, Duration::ZERO));
    }
}
