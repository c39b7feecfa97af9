//! Load held: one host holding more sockets than the server allows, idle
//! or sending its head slowly, does not keep other clients out (issue 10).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peach_dyndns_protocol::identity::Keypair;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;
use crate::serve::start;

/// A connection from `source` (any 127.0.0.0/8 address is loopback).
async fn connect_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().expect("addr"))?;
    socket.connect(to).await
}

/// One HTTP/1.1 request from 127.0.0.1; the status line and how long it took.
async fn get_health(to: SocketAddr) -> (String, Duration) {
    let started = Instant::now();
    let mut s = connect_from("127.0.0.1", to).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: pub\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("an answer within 5 s")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    (
        text.lines().next().unwrap_or("").to_string(),
        started.elapsed(),
    )
}

/// Whether the server closed `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_holding_sockets_does_not_keep_others_out() {
    let pi = Keypair::generate();
    let p = pub_with(
        std::sync::Arc::new(peach_dyndns_server::graph::Allowlist::new([pi.public()])),
        "",
        "[http]\nheader_timeout_secs = 2\nmax_connections = 16\nmax_connections_per_source = 4",
    );
    let server = start(&p).await;
    // The attacker at 127.0.0.2: ten times its share, idle or with a head
    // sent one byte and then nothing.
    let mut held = Vec::new();
    for i in 0..40 {
        let mut s = connect_from("127.0.0.2", server.http)
            .await
            .expect("connect");
        if i % 2 == 0 {
            let _ = s.write_all(b"G").await;
        }
        held.push(s);
    }
    // Past its share, the server hung up at once.
    let mut refused = 0;
    for s in held.iter_mut().skip(4) {
        if closed_within(s, Duration::from_millis(500)).await {
            refused += 1;
        }
    }
    assert_eq!(refused, 36, "all but the attacker's 4 were closed at once");
    // Another client is served, fast, while the attacker holds its share.
    let (status, took) = get_health(server.http).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // And a signed update goes through.
    let body = body(
        &update(&pi, "eb4890", "24.1.2.3".parse().expect("ip"), 1),
        &pi,
        &p.keypair,
    );
    let (status, json) = crate::serve::post_http(server.http, body).await;
    assert_eq!(status, 200, "{json}");
    // The slow heads and idle sockets that were let in are closed at the
    // header deadline (2 s), not held for ever.
    let started = Instant::now();
    for (i, s) in held.iter_mut().take(4).enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(4)).await,
            "connection {i} closed by the deadline ({:?})",
            started.elapsed()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // Its share given back, the attacker's address may connect again.
    let mut again = connect_from("127.0.0.2", server.http)
        .await
        .expect("connect");
    again
        .write_all(b"GET /health HTTP/1.1\r\nHost: pub\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), again.read_to_end(&mut out)).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_is_cut_off_at_the_body_deadline() {
    let p = pub_with(
        std::sync::Arc::new(peach_dyndns_server::graph::Allowlist::new([])),
        "",
        "[http]\nbody_timeout_secs = 2",
    );
    let server = start(&p).await;
    let mut s = connect_from("127.0.0.3", server.http)
        .await
        .expect("connect");
    s.write_all(
        b"POST /update HTTP/1.1\r\nHost: pub\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"v\":2,",
    )
    .await
    .expect("write");
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("did not arrive within"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}
