//! One muxrpc connection over a secret-handshake box stream, on tokio.
//!
//! Two tasks own the socket: a reader that decodes packets and routes each
//! answer to the call waiting for it, and a writer that sends the packets
//! callers queue. Callers only touch channels, so a call that times out or
//! is dropped half-way never leaves half a packet on the wire, and a late
//! answer to it is simply discarded.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use futures_util::io::{AsyncReadExt as _, AsyncWriteExt as _};
use kuska_handshake::async_std::{BoxStreamRead, BoxStreamWrite};
use serde_json::Value;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::compat::Compat;

use crate::frame::{self, BodyType, CallType, Header, HEADER_LEN};
use crate::quickack::QuickAckRead;
use crate::SbotError;

/// The decrypting half of the box stream, over tokio's read half.
pub(crate) type BoxReader = BoxStreamRead<Compat<QuickAckRead>>;
/// The encrypting half of the box stream, over tokio's write half.
pub(crate) type BoxWriter = BoxStreamWrite<Compat<OwnedWriteHalf>>;

/// Why a call failed, before the address and method are added.
#[derive(Debug)]
enum Failure {
    /// The server answered with an error.
    Remote(String),
    /// The answer could not be decoded.
    Decode(String),
    /// The connection ended first.
    Closed(String),
}

/// One item of a source stream, as routed by the reader.
#[derive(Debug)]
enum Item {
    Value(Value),
    End,
    Failed(Failure),
}

/// A call waiting for its answer.
enum Pending {
    Async(oneshot::Sender<Result<Value, Failure>>),
    Source(mpsc::UnboundedSender<Item>),
}

/// What the writer task is asked to do.
enum Outgoing {
    /// Send these bytes (one or more whole packets) and flush.
    Packet(Vec<u8>),
    /// Say goodbye (muxrpc, then box stream), shut the socket, then answer.
    Close(oneshot::Sender<()>),
}

/// State shared by callers and the two tasks.
struct State {
    /// Calls waiting for answers, by request number.
    pending: HashMap<i32, Pending>,
    /// Set once the connection is over, with the reason; no new calls then.
    closed: Option<String>,
    /// The next request number to use (muxrpc numbers from 1 upwards).
    next_req: i32,
}

struct Shared {
    addr: SocketAddr,
    state: Mutex<State>,
    out: mpsc::UnboundedSender<Outgoing>,
}

impl Shared {
    /// Locks the state; a poisoned lock (a panic elsewhere while holding it)
    /// still holds consistent data, since every critical section is a few
    /// map operations.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the connection closed and fails every waiting call.
    fn close_all(&self, reason: &str) {
        let pending = {
            let mut state = self.state();
            if state.closed.is_none() {
                state.closed = Some(reason.to_owned());
            }
            std::mem::take(&mut state.pending)
        };
        for (_, call) in pending {
            match call {
                Pending::Async(tx) => {
                    let _ = tx.send(Err(Failure::Closed(reason.to_owned())));
                }
                Pending::Source(tx) => {
                    let _ = tx.send(Item::Failed(Failure::Closed(reason.to_owned())));
                }
            }
        }
    }

    /// The reason the connection closed, for a call that lost its channel.
    fn closed_reason(&self) -> String {
        self.state()
            .closed
            .clone()
            .unwrap_or_else(|| "connection lost".to_owned())
    }

    /// Registers a call and queues its request packet.
    fn start(
        &self,
        method: &str,
        call: CallType,
        args: &Value,
        pending: Pending,
    ) -> Result<i32, SbotError> {
        let mut state = self.state();
        if let Some(reason) = &state.closed {
            return Err(SbotError::Disconnected {
                addr: self.addr,
                method: method.to_owned(),
                reason: reason.clone(),
            });
        }
        let req = state.next_req;
        // After 2^31 calls on one connection, start again at 1: by then the
        // early numbers are long answered.
        state.next_req = req.checked_add(1).unwrap_or(1);
        let parts: Vec<&str> = method.split('.').collect();
        let packet = frame::request_packet(req, call, &parts, args);
        if self.out.send(Outgoing::Packet(packet)).is_err() {
            return Err(SbotError::Disconnected {
                addr: self.addr,
                method: method.to_owned(),
                reason: "the writer has stopped".to_owned(),
            });
        }
        state.pending.insert(req, pending);
        Ok(req)
    }

    fn error(&self, method: &str, failure: Failure) -> SbotError {
        let addr = self.addr;
        let method = method.to_owned();
        match failure {
            Failure::Remote(message) => SbotError::Rpc {
                addr,
                method,
                message,
            },
            Failure::Decode(reason) => SbotError::Decode {
                addr,
                method,
                reason,
            },
            Failure::Closed(reason) => SbotError::Disconnected {
                addr,
                method,
                reason,
            },
        }
    }
}

/// A live muxrpc connection. Dropping it fails the calls still waiting,
/// stops the reader and has the writer say goodbye.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
}

impl Connection {
    /// Starts the reader and writer tasks on an established box stream.
    /// Must be called within a tokio runtime.
    pub(crate) fn start(addr: SocketAddr, reader: BoxReader, writer: BoxWriter) -> Connection {
        let (out, out_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            addr,
            state: Mutex::new(State {
                pending: HashMap::new(),
                closed: None,
                next_req: 1,
            }),
            out,
        });
        tokio::spawn(write_loop(writer, out_rx, Arc::downgrade(&shared)));
        let reader = tokio::spawn(read_loop(reader, Arc::clone(&shared)));
        Connection { shared, reader }
    }

    /// The server's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Makes an async call (`method` dotted, e.g. `friends.isFollowing`)
    /// and waits at most `timeout` for the answer.
    pub(crate) async fn call(
        &self,
        method: &str,
        args: &Value,
        timeout: Duration,
    ) -> Result<Value, SbotError> {
        let (tx, rx) = oneshot::channel();
        let req = self
            .shared
            .start(method, CallType::Async, args, Pending::Async(tx))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(failure))) => Err(self.shared.error(method, failure)),
            Ok(Err(_)) => Err(self
                .shared
                .error(method, Failure::Closed(self.shared.closed_reason()))),
            Err(_) => {
                // Forget the call: a late answer is dropped by the reader.
                self.shared.state().pending.remove(&req);
                Err(SbotError::Timeout {
                    addr: self.shared.addr,
                    method: method.to_owned(),
                    after: timeout,
                })
            }
        }
    }

    /// Opens a source stream.
    pub(crate) fn source(&self, method: &str, args: &Value) -> Result<Source, SbotError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let req = self
            .shared
            .start(method, CallType::Source, args, Pending::Source(tx))?;
        Ok(Source {
            shared: Arc::clone(&self.shared),
            req,
            method: method.to_owned(),
            rx,
            done: false,
        })
    }

    /// Says goodbye and shuts the socket, waiting at most `timeout`.
    pub(crate) async fn close(self, timeout: Duration) -> Result<(), SbotError> {
        let (tx, rx) = oneshot::channel();
        if self.shared.out.send(Outgoing::Close(tx)).is_err() {
            // The writer is gone already: nothing left to close.
            return Ok(());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(_) => Ok(()),
            Err(_) => Err(SbotError::Timeout {
                addr: self.shared.addr,
                method: "close".to_owned(),
                after: timeout,
            }),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // No answer can be read any more: fail whatever still waits, then
        // let the writer say goodbye and shut the socket on its own.
        self.reader.abort();
        self.shared.close_all("the client was closed");
        let (done, _) = oneshot::channel();
        let _ = self.shared.out.send(Outgoing::Close(done));
    }
}

/// An open source stream (`messagesByType`, `createHistoryStream`, …).
/// Dropping it before the end tells the server to stop sending.
pub struct Source {
    shared: Arc<Shared>,
    req: i32,
    method: String,
    rx: mpsc::UnboundedReceiver<Item>,
    /// The stream has ended (normally or not); nothing to cancel on drop.
    done: bool,
}

impl Source {
    /// The next item: `None` at the end of the stream, or an error (after
    /// which the stream is over). It waits as long as the server sends
    /// nothing: wrap it in `tokio::time::timeout` for live streams.
    pub async fn next(&mut self) -> Option<Result<Value, SbotError>> {
        if self.done {
            return None;
        }
        let item = match self.rx.recv().await {
            Some(item) => item,
            None => Item::Failed(Failure::Closed(self.shared.closed_reason())),
        };
        match item {
            Item::Value(value) => Some(Ok(value)),
            Item::End => {
                self.done = true;
                None
            }
            Item::Failed(failure) => {
                // A bad item is not the end of the stream on the wire, but
                // the caller has no use for the rest: cancel it.
                if matches!(failure, Failure::Decode(_)) {
                    self.cancel();
                }
                self.done = true;
                Some(Err(self.shared.error(&self.method, failure)))
            }
        }
    }

    /// Reads the stream to its end, waiting at most `timeout` in all.
    pub async fn collect(mut self, timeout: Duration) -> Result<Vec<Value>, SbotError> {
        let read_all = async {
            let mut items = Vec::new();
            while let Some(item) = self.next().await {
                items.push(item?);
            }
            Ok(items)
        };
        match tokio::time::timeout(timeout, read_all).await {
            Ok(result) => result,
            Err(_) => Err(SbotError::Timeout {
                addr: self.shared.addr,
                method: self.method.clone(),
                after: timeout,
            }),
        }
    }

    fn cancel(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if self.shared.state().pending.remove(&self.req).is_some() {
            let _ = self
                .shared
                .out
                .send(Outgoing::Packet(frame::stream_end_packet(self.req, None)));
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("addr", &self.shared.addr)
            .field("method", &self.method)
            .field("req", &self.req)
            .field("done", &self.done)
            .finish()
    }
}

/// Sends queued packets until asked to close, the channel ends, or a write
/// fails. It holds `shared` weakly: the channel's sender lives there, so a
/// strong handle would keep the channel open for ever.
async fn write_loop(
    mut writer: BoxWriter,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    weak: Weak<Shared>,
) {
    let mut ack = None;
    while let Some(job) = rx.recv().await {
        match job {
            Outgoing::Packet(bytes) => {
                let sent = async {
                    writer.write_all(&bytes).await?;
                    writer.flush().await
                };
                if let Err(e) = sent.await {
                    if let Some(shared) = weak.upgrade() {
                        shared.close_all(&format!("write failed: {e}"));
                    }
                    return;
                }
            }
            Outgoing::Close(done) => {
                ack = Some(done);
                break;
            }
        }
    }
    // Both goodbyes, best effort: the server may be gone already.
    let _ = writer.write_all(&frame::goodbye_packet()).await;
    let _ = writer.close().await;
    if let Some(shared) = weak.upgrade() {
        shared.close_all("the client said goodbye");
    }
    if let Some(done) = ack {
        let _ = done.send(());
    }
}

async fn read_loop(mut reader: BoxReader, shared: Arc<Shared>) {
    // Streams the server opened towards us and we have already refused.
    let mut refused = HashSet::new();
    let reason = loop {
        let mut header = [0u8; HEADER_LEN];
        if let Err(e) = reader.read_exact(&mut header).await {
            break describe_read_error(&e);
        }
        let header = match Header::decode(&header) {
            Ok(header) => header,
            Err(e) => break e,
        };
        if header.is_goodbye() {
            break "ssb-server said goodbye".to_owned();
        }
        // `decode` caps the length at 1 MiB, so this fits any usize.
        let mut body = vec![0u8; usize::try_from(header.body_len).unwrap_or(0)];
        if let Err(e) = reader.read_exact(&mut body).await {
            break describe_read_error(&e);
        }
        if header.req > 0 {
            refuse_request(&shared, &mut refused, header, &body);
        } else if let Some(req) = header.req.checked_neg() {
            route_answer(&shared, req, header, &body);
        }
    };
    tracing::debug!(addr = %shared.addr, %reason, "muxrpc connection ended");
    shared.close_all(&reason);
}

fn describe_read_error(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "ssb-server closed the connection".to_owned()
    } else {
        format!("read failed: {e}")
    }
}

/// Answers a call the server makes of us (ssb-server's plugins may call
/// methods on every connection): this client offers no methods.
fn refuse_request(shared: &Shared, refused: &mut HashSet<i32>, header: Header, body: &[u8]) {
    let name = || {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("name").map(Value::to_string))
            .unwrap_or_default()
    };
    let reply = if !header.stream {
        if header.end_or_error {
            return;
        }
        tracing::debug!(addr = %shared.addr, method = %name(), "refusing a call from ssb-server");
        frame::async_error_packet(header.req, "peach-dyndns-sbot offers no muxrpc methods")
    } else if header.end_or_error {
        // The server ended its side: end ours, unless we did already.
        if refused.remove(&header.req) {
            return;
        }
        frame::stream_end_packet(-header.req, None)
    } else if refused.insert(header.req) {
        tracing::debug!(addr = %shared.addr, method = %name(), "refusing a stream from ssb-server");
        frame::stream_end_packet(
            -header.req,
            Some("peach-dyndns-sbot offers no muxrpc methods"),
        )
    } else {
        // More data on a stream we refused already.
        return;
    };
    let _ = shared.out.send(Outgoing::Packet(reply));
}

/// Hands an answer packet to the call waiting for request `req`.
fn route_answer(shared: &Shared, req: i32, header: Header, body: &[u8]) {
    let mut state = shared.state();
    match state.pending.get(&req) {
        None => {
            // An answer to a call that timed out, or more items of a stream
            // we cancelled: nobody wants it.
            tracing::trace!(addr = %shared.addr, req, "dropping an answer nobody waits for");
            return;
        }
        Some(Pending::Source(tx)) if !header.end_or_error => {
            let item = match frame::body_value(header.body_type, body) {
                Ok(value) => Item::Value(value),
                Err(reason) => Item::Failed(Failure::Decode(reason)),
            };
            let _ = tx.send(item);
            return;
        }
        Some(_) => {}
    }
    let Some(call) = state.pending.remove(&req) else {
        return;
    };
    drop(state);
    match call {
        Pending::Async(tx) => {
            let result = if header.end_or_error {
                Err(Failure::Remote(frame::error_message(
                    header.body_type,
                    body,
                )))
            } else {
                frame::body_value(header.body_type, body).map_err(Failure::Decode)
            };
            let _ = tx.send(result);
        }
        Pending::Source(tx) => {
            let normal_end = header.body_type == BodyType::Json
                && serde_json::from_slice::<Value>(body).is_ok_and(|v| v == Value::Bool(true));
            let item = if normal_end {
                Item::End
            } else {
                Item::Failed(Failure::Remote(frame::error_message(
                    header.body_type,
                    body,
                )))
            };
            let _ = tx.send(item);
            // muxrpc streams are closed from both sides: end ours too.
            let _ = shared
                .out
                .send(Outgoing::Packet(frame::stream_end_packet(req, None)));
        }
    }
}
