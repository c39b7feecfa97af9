//! A scripted muxrpc peer, for what a real ssb-server will not do on
//! demand: answer late, call us, end a stream with an error, send garbage.
//! It speaks the real secret handshake and box stream (kuska-handshake's
//! server side) and writes muxrpc packets by hand.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures_util::io::{AsyncReadExt as _, AsyncWriteExt as _};
use kuska_handshake::async_std::{handshake_server, BoxStream, BoxStreamRead, BoxStreamWrite};
use kuska_handshake::sodiumoxide::crypto::{auth, sign::ed25519};
use serde_json::{json, Value};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt as _, TokioAsyncWriteCompatExt as _};

use peach_dyndns_sbot::{Sbot, SbotConfig, SbotError, MAIN_NETWORK_KEY};

use super::{feed_id, random_key};

/// One muxrpc packet as the fake sees it.
#[derive(Debug)]
struct Packet {
    stream: bool,
    end: bool,
    /// 0 binary, 1 UTF-8, 2 JSON.
    body_type: u8,
    req: i32,
    body: Vec<u8>,
}

impl Packet {
    fn json(&self) -> Value {
        assert_eq!(self.body_type, 2, "the client sends JSON bodies");
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// The server end of one connection.
struct Peer {
    read: BoxStreamRead<Compat<OwnedReadHalf>>,
    write: BoxStreamWrite<Compat<OwnedWriteHalf>>,
}

impl Peer {
    /// The next packet, or `None` at the muxrpc goodbye.
    async fn recv(&mut self) -> Option<Packet> {
        let mut header = [0u8; 9];
        self.read
            .read_exact(&mut header)
            .await
            .expect("read header");
        if header == [0; 9] {
            return None;
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let mut body = vec![0; usize::try_from(len).expect("fits")];
        self.read.read_exact(&mut body).await.expect("read body");
        Some(Packet {
            stream: header[0] & 0b1000 != 0,
            end: header[0] & 0b100 != 0,
            body_type: header[0] & 0b11,
            req: i32::from_be_bytes([header[5], header[6], header[7], header[8]]),
            body,
        })
    }

    /// Sends a packet with a header claiming `len` bytes of body.
    async fn send_raw(&mut self, flags: u8, len: u32, req: i32, body: &[u8]) {
        let mut packet = vec![flags];
        packet.extend_from_slice(&len.to_be_bytes());
        packet.extend_from_slice(&req.to_be_bytes());
        packet.extend_from_slice(body);
        self.write.write_all(&packet).await.expect("write");
        self.write.flush().await.expect("flush");
    }

    async fn send(&mut self, stream: bool, end: bool, req: i32, body: &Value) {
        let body = body.to_string();
        let flags = 2 | if stream { 0b1000 } else { 0 } | if end { 0b100 } else { 0 };
        let len = u32::try_from(body.len()).expect("small body");
        self.send_raw(flags, len, req, body.as_bytes()).await;
    }
}

/// Starts a fake server running `script` on the first connection and
/// connects a client to it.
async fn fake<F, Fut>(timeout: Duration, script: F) -> (Sbot, tokio::task::JoinHandle<()>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server_key: SigningKey = random_key();
    let cfg = SbotConfig::new(addr, feed_id(&server_key));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut stream = tcp.compat();
        let done = handshake_server(
            &mut stream,
            auth::Key(MAIN_NETWORK_KEY),
            ed25519::PublicKey(server_key.verifying_key().to_bytes()),
            ed25519::SecretKey(server_key.to_keypair_bytes()),
        )
        .await
        .expect("handshake");
        let (r, w) = stream.into_inner().into_split();
        let (read, write) = BoxStream::from_handshake(r.compat(), w.compat_write(), done, 0x8000)
            .split_read_write();
        script(Peer { read, write }).await;
    });
    let client = Sbot::connect(&cfg, &random_key(), timeout)
        .await
        .expect("connect to the fake");
    (client, server)
}

#[tokio::test(start_paused = true)]
async fn a_late_answer_is_dropped_and_the_connection_goes_on() {
    let (client, server) = fake(Duration::from_secs(5), |mut peer| async move {
        let first = peer.recv().await.expect("first call");
        assert_eq!(first.json()["name"], json!(["whoami"]));
        let second = peer.recv().await.expect("second call");
        // Answer the first (now timed out) call, then the second.
        peer.send(false, false, -first.req, &json!({"id": "@late"}))
            .await;
        peer.send(false, false, -second.req, &json!({"id": "@second"}))
            .await;
        assert!(peer.recv().await.is_none(), "goodbye");
    })
    .await;
    let err = client.whoami().await.expect_err("no answer in time");
    match err {
        SbotError::Timeout { method, after, .. } => {
            assert_eq!(method, "whoami");
            assert_eq!(after, Duration::from_secs(5));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(client.whoami().await.expect("second whoami"), "@second");
    client.close().await.expect("close");
    server.await.expect("fake server");
}

#[tokio::test]
async fn calls_from_the_server_are_refused() {
    let (client, server) = fake(Duration::from_secs(20), |mut peer| async move {
        peer.send(
            false,
            false,
            1,
            &json!({"name": ["blobs", "has"], "type": "async", "args": []}),
        )
        .await;
        peer.send(
            true,
            false,
            2,
            &json!({"name": ["createHistoryStream"], "type": "source", "args": [{}]}),
        )
        .await;
        let mut answers = Vec::new();
        while answers.len() < 2 {
            let packet = peer.recv().await.expect("a packet");
            if packet.req > 0 {
                // The client's whoami: answer it.
                peer.send(false, false, -packet.req, &json!({"id": "@me"}))
                    .await;
            } else {
                answers.push(packet);
            }
        }
        answers.sort_by_key(|p| -p.req);
        let (refused_call, refused_stream) = (&answers[0], &answers[1]);
        assert_eq!(refused_call.req, -1);
        assert!(refused_call.end && !refused_call.stream);
        assert!(refused_call.json()["message"].is_string());
        assert_eq!(refused_stream.req, -2);
        assert!(refused_stream.end && refused_stream.stream);
        assert!(refused_stream.json()["message"].is_string());
        // Our own end of the refused stream: the client, having ended its
        // side already, must not answer it (the next packet is the goodbye).
        peer.send(true, true, 2, &json!(true)).await;
        assert!(peer.recv().await.is_none(), "goodbye");
    })
    .await;
    assert_eq!(client.whoami().await.expect("whoami"), "@me");
    client.close().await.expect("close");
    server.await.expect("fake server");
}

#[tokio::test]
async fn a_stream_ending_in_an_error_is_an_rpc_error() {
    let (client, server) = fake(Duration::from_secs(20), |mut peer| async move {
        let open = peer.recv().await.expect("source request");
        assert!(open.stream && !open.end);
        assert_eq!(open.json()["type"], json!("source"));
        peer.send(true, false, -open.req, &json!({"key": "%one"}))
            .await;
        peer.send(
            true,
            true,
            -open.req,
            &json!({"name": "Error", "message": "boom", "stack": "Error: boom\n    at x"}),
        )
        .await;
        // The client closes its side of the stream.
        let end = peer.recv().await.expect("end of our side");
        assert_eq!(end.req, open.req);
        assert!(end.stream && end.end);
        assert!(peer.recv().await.is_none(), "goodbye");
    })
    .await;
    let mut source = client
        .source("messagesByType", json!([{"type": "x"}]))
        .expect("open");
    assert_eq!(
        source.next().await.expect("item").expect("ok"),
        json!({"key": "%one"})
    );
    match source.next().await {
        Some(Err(SbotError::Rpc {
            method, message, ..
        })) => {
            assert_eq!(method, "messagesByType");
            assert_eq!(message, "boom");
        }
        other => panic!("expected an Rpc error, got {other:?}"),
    }
    assert!(source.next().await.is_none());
    drop(source);
    client.close().await.expect("close");
    server.await.expect("fake server");
}

#[tokio::test]
async fn dropping_a_source_tells_the_server_to_stop() {
    let (client, server) = fake(Duration::from_secs(20), |mut peer| async move {
        let open = peer.recv().await.expect("source request");
        peer.send(true, false, -open.req, &json!(1)).await;
        let end = peer.recv().await.expect("cancel");
        assert_eq!(end.req, open.req);
        assert!(end.stream && end.end);
        assert_eq!(end.json(), json!(true));
        // Items already in flight are ignored, and so is our end's echo.
        peer.send(true, false, -open.req, &json!(2)).await;
        peer.send(true, true, -open.req, &json!(true)).await;
        let call = peer.recv().await.expect("whoami");
        peer.send(false, false, -call.req, &json!({"id": "@me"}))
            .await;
        assert!(peer.recv().await.is_none(), "goodbye");
    })
    .await;
    let mut source = client
        .source("messagesByType", json!([{"type": "x", "live": true}]))
        .expect("open");
    assert_eq!(source.next().await.expect("item").expect("ok"), json!(1));
    drop(source);
    assert_eq!(client.whoami().await.expect("whoami"), "@me");
    client.close().await.expect("close");
    server.await.expect("fake server");
}

#[tokio::test]
async fn strings_come_back_as_utf8_bodies_and_binary_is_refused() {
    let (client, server) = fake(Duration::from_secs(20), |mut peer| async move {
        let call = peer.recv().await.expect("invite.create");
        // muxrpc sends a string value as a bare UTF-8 body (type 1).
        let code = b"127.0.0.1:8008:@x.ed25519~seed";
        peer.send_raw(
            1,
            u32::try_from(code.len()).expect("small"),
            -call.req,
            code,
        )
        .await;
        let call = peer.recv().await.expect("blobs call");
        peer.send_raw(0, 3, -call.req, &[1, 2, 3]).await;
        assert!(peer.recv().await.is_none(), "goodbye");
    })
    .await;
    assert_eq!(
        client
            .call("invite.create", json!([1]))
            .await
            .expect("code"),
        json!("127.0.0.1:8008:@x.ed25519~seed")
    );
    let err = client
        .call("blobs.get", json!([]))
        .await
        .expect_err("binary");
    assert!(matches!(err, SbotError::Decode { .. }), "{err:?}");
    client.close().await.expect("close");
    server.await.expect("fake server");
}

#[tokio::test]
async fn an_oversized_packet_ends_the_connection() {
    let (client, server) = fake(Duration::from_secs(20), |mut peer| async move {
        let call = peer.recv().await.expect("whoami");
        // Claims 2 GiB of body: the client must not try to read it.
        peer.send_raw(2, 1 << 31, -call.req, b"{}").await;
    })
    .await;
    let err = client.whoami().await.expect_err("garbage");
    match &err {
        SbotError::Disconnected { reason, .. } => assert!(reason.contains("limit"), "{reason}"),
        other => panic!("expected Disconnected, got {other:?}"),
    }
    // Later calls fail at once with the same reason.
    let again = client.whoami().await.expect_err("still closed");
    assert!(matches!(again, SbotError::Disconnected { .. }), "{again:?}");
    server.await.expect("fake server");
}

#[tokio::test]
async fn the_server_hanging_up_fails_waiting_calls() {
    let (client, server) = fake(Duration::from_secs(20), |mut peer| async move {
        let _ = peer.recv().await.expect("whoami");
        // Box-stream goodbye, then the socket closes when `peer` drops.
        peer.write.close().await.expect("goodbye");
    })
    .await;
    let err = client.whoami().await.expect_err("hung up");
    assert!(matches!(err, SbotError::Disconnected { .. }), "{err:?}");
    server.await.expect("fake server");
}
