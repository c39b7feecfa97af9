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
        // A slow HTTP/1 head, the start of the HTTP/2 preface (which
        // warp's own server would wait on for ever), or nothing at all.
        match i % 3 {
            0 => {
                let _ = s.write_all(b"G").await;
            }
            1 => {
                let _ = s.write_all(b"P").await;
            }
            _ => {}
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

/// Posts `body` through the real router as if from `from`.
async fn post_from(p: &Pub, body: &[u8], from: &str) -> (u16, String) {
    let resp = warp::test::request()
        .method("POST")
        .path("/update")
        .header("content-type", "application/json")
        .remote_addr(from.parse().expect("addr"))
        .body(body)
        .reply(&peach_dyndns_server::api::routes(p.state.clone()))
        .await;
    let json: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
    (
        resp.status().as_u16(),
        json["error"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn refusals_after_the_signature_cost_the_sender_per_address_and_per_64() {
    let followed = Keypair::generate();
    let p = pub_with(
        std::sync::Arc::new(peach_dyndns_server::graph::Allowlist::new([
            followed.public()
        ])),
        "",
        "[rate_limit]\nfailures_per_ip_per_minute = 5",
    );
    let ip = "24.1.2.3".parse().expect("ip");
    // Fresh unfollowed keys, each correctly signed: 403 until the
    // address's budget is used up, then 429.
    let mut got = Vec::new();
    for _ in 0..8 {
        let stranger = Keypair::generate();
        let b = body(&update(&stranger, "eb4890", ip, 1), &stranger, &p.keypair);
        got.push(post_from(&p, &b, "24.66.66.66:4000").await);
    }
    assert_eq!(
        got[..5].iter().filter(|g| g.1 == "not_followed").count(),
        5,
        "{got:?}"
    );
    assert!(got[5..].iter().all(|g| g.0 == 429), "{got:?}");
    // Another address is not affected: the followed key gets through.
    let b = body(&update(&followed, "eb4890", ip, 1), &followed, &p.keypair);
    assert_eq!(post_from(&p, &b, "24.77.77.77:4000").await.0, 200);
    // A /64 is one source: other addresses inside it share its budget.
    for i in 0..5 {
        let stranger = Keypair::generate();
        let b = body(&update(&stranger, "other", ip, 1), &stranger, &p.keypair);
        let from = format!("[2001:db8:1:2::{:x}]:4000", i + 1);
        assert_eq!(post_from(&p, &b, &from).await.1, "not_followed");
    }
    let stranger = Keypair::generate();
    let b = body(&update(&stranger, "other", ip, 1), &stranger, &p.keypair);
    assert_eq!(
        post_from(&p, &b, "[2001:db8:1:2:ffff::9]:4000").await.0,
        429
    );
    assert_eq!(
        post_from(&p, &b, "[2001:db8:1:3::1]:4000").await.1,
        "not_followed"
    );
    // Nothing of theirs reached the registry.
    assert_eq!(p.state.registry.get("other").expect("get"), None);
}

/// A graph where lookups of keys not in `followed` hang until released,
/// like a slow sbot flooded with strangers.
struct SlowGraph {
    followed: Vec<peach_dyndns_protocol::identity::PublicKey>,
    entered: std::sync::atomic::AtomicUsize,
    release: tokio::sync::Notify,
}

impl peach_dyndns_server::graph::SocialGraph for SlowGraph {
    fn standing<'a>(
        &'a self,
        key: &'a peach_dyndns_protocol::identity::PublicKey,
    ) -> peach_dyndns_server::dns::BoxFut<
        'a,
        Result<peach_dyndns_server::graph::Standing, peach_dyndns_server::graph::GraphError>,
    > {
        use peach_dyndns_server::graph::Standing;
        Box::pin(async move {
            if self.followed.contains(key) {
                return Ok(Standing::Followed);
            }
            // Registered before it counts, so a release after the count
            // always reaches it.
            let released = self.release.notified();
            self.entered
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            released.await;
            Ok(Standing::NotFollowed)
        })
    }

    fn kind(&self) -> &'static str {
        "slow"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_of_new_keys_are_bounded_and_never_hold_up_the_pubs_own_pis() {
    let pi = Keypair::generate();
    let graph = std::sync::Arc::new(SlowGraph {
        followed: vec![pi.public()],
        entered: std::sync::atomic::AtomicUsize::new(0),
        release: tokio::sync::Notify::new(),
    });
    let p = std::sync::Arc::new(pub_with(
        graph.clone(),
        "",
        "[rate_limit]\nfailures_per_ip_per_minute = 1",
    ));
    let ip = "24.1.2.3".parse().expect("ip");
    let b = body(&update(&pi, "eb4890", ip, 1), &pi, &p.keypair);
    assert_eq!(post_from(&p, &b, "24.1.1.1:4000").await.0, 200);
    // Two strangers' lookups hang in the graph.
    let mut stuck = Vec::new();
    for i in 0..2 {
        let p = p.clone();
        stuck.push(tokio::spawn(async move {
            let k = Keypair::generate();
            let b = body(&update(&k, "x", ip, 1), &k, &p.keypair);
            post_from(&p, &b, &format!("24.2.2.{}:4000", i + 1)).await
        }));
    }
    let started = Instant::now();
    while graph.entered.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "lookups started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A third is told to come back at once instead of queueing.
    let k = Keypair::generate();
    let b = body(&update(&k, "y", ip, 1), &k, &p.keypair);
    let asked = Instant::now();
    let third = tokio::time::timeout(Duration::from_secs(2), post_from(&p, &b, "24.3.3.3:4000"))
        .await
        .expect("answered at once, not queued behind the stuck lookups");
    assert_eq!(third, (503, "graph_unavailable".to_string()));
    // Turned away for a reason the sender caused, it paid for it: its
    // address's budget (1 here) is used up.
    let k = Keypair::generate();
    let b = body(&update(&k, "z", ip, 1), &k, &p.keypair);
    assert_eq!(post_from(&p, &b, "24.3.3.3:4000").await.0, 429);
    assert!(asked.elapsed() < Duration::from_secs(1));
    // The pub's own Pi (it holds a name) is looked up and served.
    let b = body(
        &update(&pi, "eb4890", "24.1.2.4".parse().expect("ip"), 2),
        &pi,
        &p.keypair,
    );
    assert_eq!(post_from(&p, &b, "24.1.1.1:4000").await.0, 200);
    graph.release.notify_waiters();
    for task in stuck {
        assert_eq!(task.await.expect("task"), (403, "not_followed".to_string()));
    }
}
