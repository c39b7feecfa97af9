//! The whole server on loopback sockets: embedded DNS answered to real
//! `dig`, dyndns2 driven by real `curl`, graceful shutdown.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_protocol::rules::token_hash;
use peach_dyndns_server::{run, Listeners};
use tokio::net::{TcpListener, UdpSocket};

use crate::common::*;

/// A running server; stops when dropped.
pub struct Running {
    pub http: std::net::SocketAddr,
    /// The embedded DNS, UDP and TCP on one port of 127.0.0.1.
    pub dns: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("server stops within 5 s")
                .expect("server task");
        }
    }
}

pub async fn start(p: &Pub) -> Running {
    start_with(p.state.clone(), p.embedded.clone()).await
}

/// Runs the server on `state` (a restart builds a new one from the same
/// config) with fresh loopback sockets.
pub async fn start_with(
    state: Arc<peach_dyndns_server::State>,
    embedded: Option<Arc<peach_dyndns_server::dns::EmbeddedDns>>,
) -> Running {
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    // A UDP port the kernel picks may be taken for TCP by someone else
    // (other tests run at the same time): try again with another.
    let mut pair = None;
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let dns = udp.local_addr().expect("addr");
        if let Ok(tcp) = TcpListener::bind(dns).await {
            pair = Some((udp, tcp, dns));
            break;
        }
    }
    let (udp, tcp, dns) = pair.expect("a port free for both UDP and TCP");
    let addr = http.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let listeners = Listeners {
            http,
            https: None,
            dns_udp: Some(udp),
            dns_tcp: Some(tcp),
        };
        run(state, embedded, listeners, async move {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    Running {
        http: addr,
        dns,
        stop: Some(tx),
        task: Some(task),
    }
}

pub fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.trim().to_string(), code.to_string())
}

pub async fn post_http(addr: std::net::SocketAddr, body: Vec<u8>) -> (u16, serde_json::Value) {
    let out = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("body.json");
        std::fs::write(&file, body).expect("write");
        curl(&[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", file.display()),
            &format!("http://{addr}/update"),
        ])
    })
    .await
    .expect("curl task");
    (
        out.1.parse().unwrap_or(0),
        serde_json::from_str(&out.0).unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_dns_answers_what_http_updates() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    let server = start(&p).await;
    let mut msg = update(&pi, "eb4890", Ipv4Addr::new(24, 12, 12, 12), 1);
    msg.ip6 = Some("2a01:4f8::1".parse().expect("ip6"));
    let (status, json) = post_http(server.http, body(&msg, &pi, &p.keypair)).await;
    assert_eq!(status, 200, "{json}");
    let dns = server.dns;
    let fqdn = "eb4890.peach.dinosaur.is";
    let answers = tokio::task::spawn_blocking(move || {
        (
            testkit::dig(dns, fqdn, "A").tries(1).short(),
            testkit::dig(dns, fqdn, "AAAA").tcp(true).tries(1).short(),
            testkit::dig(dns, "peach.dinosaur.is", "SOA")
                .tries(1)
                .short(),
            testkit::dig(dns, "peach.dinosaur.is", "NS")
                .tries(1)
                .short(),
        )
    })
    .await
    .expect("dig");
    assert_eq!(answers.0, ["24.12.12.12"]);
    assert_eq!(answers.1, ["2a01:4f8::1"]);
    assert_eq!(answers.2.len(), 1, "{:?}", answers.2);
    assert!(
        answers.2[0].starts_with("ns1.peach.dinosaur.is."),
        "{:?}",
        answers.2
    );
    assert_eq!(answers.3, ["ns1.peach.dinosaur.is."]);
    // Release: the name stops resolving.
    let mut release = update(&pi, "eb4890", Ipv4Addr::new(24, 12, 12, 12), 2);
    release.op = peach_dyndns_protocol::message::Op::Release;
    release.ip = None;
    let (status, _) = post_http(server.http, body(&release, &pi, &p.keypair)).await;
    assert_eq!(status, 200);
    let gone = tokio::task::spawn_blocking(move || testkit::dig(dns, fqdn, "A").tries(1).short())
        .await
        .expect("dig");
    assert!(gone.is_empty(), "{gone:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dyndns2_with_real_curl() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    let server = start(&p).await;
    // The owner registers a token through a signed update.
    let mut msg = update(&pi, "router", Ipv4Addr::new(24, 1, 1, 1), 1);
    msg.token_sha256 = Some(token_hash("s3cret-token"));
    let (status, json) = post_http(server.http, body(&msg, &pi, &p.keypair)).await;
    assert_eq!(status, 200, "{json}");
    let base = format!("http://{}/nic/update", server.http);
    let dns = server.dns;
    let results = tokio::task::spawn_blocking(move || {
        let fqdn = "router.peach.dinosaur.is";
        let good = curl(&[
            "-u",
            &format!("{fqdn}:s3cret-token"),
            &format!("{base}?hostname={fqdn}&myip=24.2.2.2"),
        ]);
        let after = testkit::dig(dns, fqdn, "A").tries(1).short();
        let nochg = curl(&[
            "-u",
            &format!("{fqdn}:s3cret-token"),
            &format!("{base}?hostname={fqdn}&myip=24.2.2.2"),
        ]);
        let badauth = curl(&[
            "-u",
            &format!("{fqdn}:wrong"),
            &format!("{base}?hostname={fqdn}&myip=24.3.3.3"),
        ]);
        let noauth = curl(&[&format!("{base}?hostname={fqdn}&myip=24.3.3.3")]);
        let nohost = curl(&[
            "-u",
            &format!("{fqdn}:s3cret-token"),
            &format!("{base}?hostname=nobody.peach.dinosaur.is&myip=24.3.3.3"),
        ]);
        let notfqdn = curl(&[
            "-u",
            &format!("{fqdn}:s3cret-token"),
            &format!("{base}?hostname=router.example.org&myip=24.3.3.3"),
        ]);
        let both = curl(&[
            "-u",
            &format!("{fqdn}:s3cret-token"),
            &format!("{base}?hostname={fqdn}&myip=24.4.4.4,2a01::4"),
        ]);
        let aaaa = testkit::dig(dns, fqdn, "AAAA").tries(1).short();
        (
            good, after, nochg, badauth, noauth, nohost, notfqdn, both, aaaa,
        )
    })
    .await
    .expect("curl");
    assert_eq!(results.0, ("good 24.2.2.2".into(), "200".into()));
    assert_eq!(results.1, ["24.2.2.2"]);
    assert_eq!(results.2, ("nochg 24.2.2.2".into(), "200".into()));
    assert_eq!(results.3, ("badauth".into(), "401".into()));
    assert_eq!(results.4, ("badauth".into(), "401".into()));
    assert_eq!(results.5 .0, "nohost");
    assert_eq!(results.6 .0, "notfqdn");
    assert_eq!(results.7 .0, "good 24.4.4.4,2a01::4");
    assert_eq!(results.8, ["2a01::4"]);
    let entry = p.state.registry.get("router").expect("get").expect("entry");
    assert_eq!(entry.ip, Some(Ipv4Addr::new(24, 4, 4, 4)));
    assert_eq!(
        entry.token_sha256.as_deref(),
        Some(token_hash("s3cret-token").as_str()),
        "only the hash is stored"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reapplies_the_registry_to_embedded_dns() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    let server = start(&p).await;
    let (status, _) = post_http(
        server.http,
        body(
            &update(&pi, "eb4890", Ipv4Addr::new(24, 9, 9, 9), 1),
            &pi,
            &p.keypair,
        ),
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await;
    // A new server process: fresh in-memory DNS, same registry file.
    let config = p.state.config.clone();
    let (state, embedded) = peach_dyndns_server::build_state(config).expect("state");
    let q = Pub {
        keypair: p.keypair.clone(),
        state: Arc::new(state),
        embedded,
        dir: tempfile::tempdir().expect("tmp"),
    };
    let server = start(&q).await;
    let dns = server.dns;
    let a = tokio::task::spawn_blocking(move || {
        testkit::dig(dns, "eb4890.peach.dinosaur.is", "A")
            .tries(1)
            .short()
    })
    .await
    .expect("dig");
    assert_eq!(a, ["24.9.9.9"]);
    server.stop().await;
}
