//! ACME DNS-01 through the one pipeline: `acme_set`/`acme_clear` make
//! `_acme-challenge.<name>.<domain>` answer exactly the given TXT values,
//! on the embedded DNS (asked by the real `dig`) and on BIND's `named`
//! (`bind-local`); values expire on time, also across a restart; refused
//! requests change nothing.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_protocol::message::{Op, UpdateMsg};
use peach_dyndns_server::graph::Allowlist;
use peach_dyndns_server::registry::Registry;
use peach_dyndns_server::{dns, State};
use testkit::Named;

use crate::common::*;
use crate::serve::{post_http, start, start_with};

const HOME: Ipv4Addr = Ipv4Addr::new(24, 12, 12, 12);
/// Two digests, as an order for `name` and `*.name` asks for.
const TXT_1: &str = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
/// See [`TXT_1`].
const TXT_2: &str = "9ihDbjxdIu-rZJiMsBv0I_9Mm1ZgIxCzHWMg1ZCLfvs";
/// A third, for replacing.
const TXT_3: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn acme_set(kp: &Keypair, name: &str, txt: &[&str], seq: u64) -> UpdateMsg {
    let mut msg = update(kp, name, HOME, seq);
    msg.op = Op::AcmeSet;
    msg.ip = None;
    msg.txt = Some(txt.iter().map(|s| s.to_string()).collect());
    msg
}

fn acme_clear(kp: &Keypair, name: &str, seq: u64) -> UpdateMsg {
    let mut msg = update(kp, name, HOME, seq);
    msg.op = Op::AcmeClear;
    msg.ip = None;
    msg
}

fn challenge_name(name: &str) -> String {
    format!("_acme-challenge.{name}.{DOMAIN}")
}

/// The TXT values `server` answers for the name's challenge, sorted,
/// without dig's quotes.
async fn txt_at(server: SocketAddr, name: &str) -> Vec<String> {
    let fqdn = challenge_name(name);
    let mut got =
        tokio::task::spawn_blocking(move || testkit::dig(server, &fqdn, "TXT").tries(1).short())
            .await
            .expect("dig");
    for value in &mut got {
        *value = value.trim_matches('"').to_string();
    }
    got.sort();
    got
}

/// The TTL of the first TXT answer, from the real `dig`'s answer section.
async fn txt_ttl(server: SocketAddr, name: &str) -> Option<u32> {
    let fqdn = challenge_name(name);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("dig")
            .args([
                &format!("@{}", server.ip()),
                "-p",
                &server.port().to_string(),
                &fqdn,
                "TXT",
                "+noall",
                "+answer",
                "+tries=1",
            ])
            .output()
            .expect("dig runs (scripts/install-test-deps installs bind9-dnsutils)")
    })
    .await
    .expect("dig");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|ttl| ttl.parse().ok())
}

fn sorted(values: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Waits (real time: the server's clock is the system's) until `server`
/// answers `want` for the name's challenge, or panics after `limit`.
async fn wait_txt(server: SocketAddr, name: &str, want: &[&str], limit: Duration) {
    let start = Instant::now();
    let want = sorted(want);
    loop {
        let got = txt_at(server, name).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "after {limit:?} {} answers {got:?}, not {want:?}",
            challenge_name(name)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_set_and_clear_are_served_by_the_embedded_dns() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    let server = start(&p).await;
    let msg = update(&pi, "eb4890", HOME, 1);
    assert_eq!(
        post_http(server.http, body(&msg, &pi, &p.keypair)).await.0,
        200
    );

    let before = peach_dyndns_server::pipeline::now_ms() / 1000;
    let (status, json) = post_http(
        server.http,
        body(
            &acme_set(&pi, "eb4890", &[TXT_1, TXT_2], 2),
            &pi,
            &p.keypair,
        ),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["ok"], true);
    assert_eq!(json["fqdn"], challenge_name("eb4890"));
    assert_eq!(json["txt"], serde_json::json!([TXT_1, TXT_2]));
    assert_eq!(json["seq"], 2);
    let expires_at = json["expires_at"].as_u64().expect("expires_at");
    assert!(
        (before + 600..=before + 602).contains(&expires_at),
        "{expires_at} is not 600 s after {before}"
    );
    assert_eq!(txt_at(server.dns, "eb4890").await, sorted(&[TXT_1, TXT_2]));
    assert_eq!(txt_ttl(server.dns, "eb4890").await, Some(60));
    let stored = p
        .state
        .registry
        .challenge("eb4890")
        .expect("registry")
        .expect("a stored challenge");
    assert_eq!(stored.txt, [TXT_1, TXT_2]);
    assert_eq!(stored.expires_at, expires_at);
    // The name's own records are untouched.
    let dns = server.dns;
    let a = tokio::task::spawn_blocking(move || {
        testkit::dig(dns, &format!("eb4890.{DOMAIN}"), "A").short()
    })
    .await
    .expect("dig");
    assert_eq!(a, ["24.12.12.12"]);

    // A new set replaces the values.
    let (status, json) = post_http(
        server.http,
        body(&acme_set(&pi, "eb4890", &[TXT_3], 3), &pi, &p.keypair),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(txt_at(server.dns, "eb4890").await, [TXT_3]);

    let (status, json) = post_http(
        server.http,
        body(&acme_clear(&pi, "eb4890", 4), &pi, &p.keypair),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["txt"], serde_json::json!([]));
    assert_eq!(json["seq"], 4);
    assert!(txt_at(server.dns, "eb4890").await.is_empty());
    assert_eq!(
        p.state.registry.challenge("eb4890").expect("registry"),
        None
    );
    assert_eq!(p.state.registry.last_seq(&pi.id()).expect("seq"), Some(4));
    server.stop().await;
}

/// Asserts that DNS, the stored challenge and the key's `seq` are as
/// they were before a refused request.
async fn unchanged(
    p: &Pub,
    pi: &Keypair,
    stored: &Option<peach_dyndns_server::registry::StoredChallenge>,
    dns: SocketAddr,
    what: &str,
) {
    assert_eq!(txt_at(dns, "eb4890").await, [TXT_1], "{what}: DNS changed");
    assert_eq!(
        &p.state.registry.challenge("eb4890").expect("registry"),
        stored,
        "{what}: registry changed"
    );
    assert_eq!(
        p.state.registry.last_seq(&pi.id()).expect("seq"),
        Some(2),
        "{what}: seq moved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_acme_ops_change_nothing() {
    let pi = Keypair::generate();
    let other = Keypair::generate();
    let p = embedded_pub(&[&pi, &other], "");
    let server = start(&p).await;
    let post = |msg: UpdateMsg, kp: &Keypair| post_http(server.http, body(&msg, kp, &p.keypair));
    assert_eq!(post(update(&pi, "eb4890", HOME, 1), &pi).await.0, 200);
    assert_eq!(post(acme_set(&pi, "eb4890", &[TXT_1], 2), &pi).await.0, 200);
    let stored = p.state.registry.challenge("eb4890").expect("registry");

    // A key that does not hold the name: not_registered, both ops.
    let (status, json) = post(acme_set(&other, "eb4890", &[TXT_3], 1), &other).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (422, Some("not_registered")),
        "{json}"
    );
    let (status, json) = post(acme_clear(&other, "eb4890", 2), &other).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (422, Some("not_registered")),
        "{json}"
    );
    assert_eq!(p.state.registry.last_seq(&other.id()).expect("seq"), None);
    unchanged(&p, &pi, &stored, server.dns, "another key").await;
    // A name nobody holds.
    let (status, json) = post(acme_set(&pi, "nobody", &[TXT_3], 3), &pi).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (422, Some("not_registered")),
        "{json}"
    );
    assert!(txt_at(server.dns, "nobody").await.is_empty());
    unchanged(&p, &pi, &stored, server.dns, "a free name").await;
    // Bad txt values.
    for bad in [
        vec!["short"],
        vec![TXT_1, TXT_2, TXT_3],
        vec!["LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX="],
        vec!["LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEu\"0"],
    ] {
        let (status, json) = post(acme_set(&pi, "eb4890", &bad, 3), &pi).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (422, Some("invalid_txt")),
            "{bad:?}: {json}"
        );
    }
    let (status, json) = post(acme_set(&pi, "eb4890", &[], 3), &pi).await;
    assert!(matches!(status, 400 | 422), "no values: {status} {json}");
    unchanged(&p, &pi, &stored, server.dns, "bad txt").await;
    // A replayed (or stale) seq.
    let (status, json) = post(acme_set(&pi, "eb4890", &[TXT_3], 2), &pi).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (409, Some("stale_seq")),
        "{json}"
    );
    let (status, json) = post(acme_clear(&pi, "eb4890", 1), &pi).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (409, Some("stale_seq")),
        "{json}"
    );
    unchanged(&p, &pi, &stored, server.dns, "stale seq").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_ops_draw_from_the_keys_rate_limit() {
    let pi = Keypair::generate();
    // A burst of 3 a key, refilled at one a minute.
    let graph = Arc::new(Allowlist::new([pi.public()]));
    let p = pub_with(
        graph,
        "",
        "[rate_limit]\nper_key_per_minute = 1\nper_key_burst = 3",
    );
    assert_eq!(
        post(
            &p.state,
            &body(&update(&pi, "eb4890", HOME, 1), &pi, &p.keypair)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            &p.state,
            &body(&acme_set(&pi, "eb4890", &[TXT_1], 2), &pi, &p.keypair)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            &p.state,
            &body(&acme_clear(&pi, "eb4890", 3), &pi, &p.keypair)
        )
        .await
        .0,
        200
    );
    let (status, json, headers) = post(
        &p.state,
        &body(&acme_set(&pi, "eb4890", &[TXT_2], 4), &pi, &p.keypair),
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (429, Some("rate_limited")),
        "{json}"
    );
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        p.state.registry.challenge("eb4890").expect("registry"),
        None
    );
    assert_eq!(p.state.registry.last_seq(&pi.id()).expect("seq"), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenges_expire_on_time_and_across_a_restart() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "acme_lifetime_secs = 3");
    let server = start(&p).await;
    let post = |msg: UpdateMsg, http| post_http(http, body(&msg, &pi, &p.keypair));
    assert_eq!(
        post(update(&pi, "eb4890", HOME, 1), server.http).await.0,
        200
    );

    // Expiry while running: the sweep removes them from DNS and registry.
    let (status, json) = post(acme_set(&pi, "eb4890", &[TXT_1], 2), server.http).await;
    assert_eq!(status, 200, "{json}");
    let set_at = Instant::now();
    assert_eq!(txt_at(server.dns, "eb4890").await, [TXT_1]);
    wait_txt(server.dns, "eb4890", &[], Duration::from_secs(8)).await;
    assert!(
        set_at.elapsed() >= Duration::from_secs(2),
        "gone after {:?}, before its lifetime",
        set_at.elapsed()
    );
    assert_eq!(
        p.state.registry.challenge("eb4890").expect("registry"),
        None
    );

    // Live across a restart: the new embedded DNS starts empty and the
    // start-up reconcile serves them again, until they expire.
    assert_eq!(
        post(acme_set(&pi, "eb4890", &[TXT_2], 3), server.http)
            .await
            .0,
        200
    );
    server.stop().await;
    let (state, embedded) = restarted(&p, &[&pi]);
    let server = start_with(state, embedded).await;
    wait_txt(server.dns, "eb4890", &[TXT_2], Duration::from_secs(2)).await;
    wait_txt(server.dns, "eb4890", &[], Duration::from_secs(8)).await;

    // Expired while the server was down: gone at start, DNS and registry.
    assert_eq!(
        post(acme_set(&pi, "eb4890", &[TXT_3], 4), server.http)
            .await
            .0,
        200
    );
    server.stop().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (state, embedded) = restarted(&p, &[&pi]);
    assert_eq!(
        state
            .registry
            .challenge("eb4890")
            .expect("registry")
            .map(|c| c.txt),
        Some(vec![TXT_3.to_string()]),
        "still stored before the start"
    );
    let server = start_with(state.clone(), embedded.clone()).await;
    // The reconcile runs before the server answers.
    assert_eq!(txt_at(server.dns, "eb4890").await, Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(5);
    while state
        .registry
        .challenge("eb4890")
        .expect("registry")
        .is_some()
    {
        assert!(Instant::now() < deadline, "the expired row stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(embedded.expect("embedded").challenge("eb4890").is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_removes_the_challenge() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    let server = start(&p).await;
    let post = |msg: UpdateMsg| post_http(server.http, body(&msg, &pi, &p.keypair));
    assert_eq!(post(update(&pi, "eb4890", HOME, 1)).await.0, 200);
    assert_eq!(
        post(acme_set(&pi, "eb4890", &[TXT_1, TXT_2], 2)).await.0,
        200
    );
    let mut release = update(&pi, "eb4890", HOME, 3);
    release.op = Op::Release;
    release.ip = None;
    let (status, json) = post(release).await;
    assert_eq!(status, 200, "{json}");
    assert!(txt_at(server.dns, "eb4890").await.is_empty());
    assert_eq!(
        p.state.registry.challenge("eb4890").expect("registry"),
        None
    );
    // A revoke by the operator does the same.
    assert_eq!(post(update(&pi, "eb4890", HOME, 4)).await.0, 200);
    assert_eq!(post(acme_set(&pi, "eb4890", &[TXT_3], 5)).await.0, 200);
    assert_eq!(txt_at(server.dns, "eb4890").await, [TXT_3]);
    peach_dyndns_server::control::revoke(&p.state, "eb4890")
        .await
        .expect("revoke");
    assert!(txt_at(server.dns, "eb4890").await.is_empty());
    assert_eq!(
        p.state.registry.challenge("eb4890").expect("registry"),
        None
    );
    server.stop().await;
}

/// A new state on the same config and files, as a restarted server has
/// (the same allowlist: the test config names no graph).
fn restarted(p: &Pub, allowed: &[&Keypair]) -> (Arc<State>, Option<Arc<dns::EmbeddedDns>>) {
    let config = p.state.config.clone();
    let registry = Registry::open(&config.database).expect("registry");
    let backend = dns::build(&config.dns, &config.domain).expect("dns backend");
    let graph = Arc::new(Allowlist::new(allowed.iter().map(|k| k.public())));
    let state = State::new(config, p.keypair.clone(), registry, backend.zone, graph);
    (Arc::new(state), backend.embedded)
}

fn bind_local(named: &Named) -> String {
    format!(
        "[rate_limit]\nper_key_burst = 50\n\
         [dns]\nbackend = \"bind-local\"\nserver = \"{}\"\nsession_key = \"{}\"",
        named.addr(),
        named.session_key_path().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_on_bind_local_with_real_named() {
    let named = Named::start();
    let pi = Keypair::generate();
    let other = Keypair::generate();
    let graph = Arc::new(Allowlist::new([pi.public(), other.public()]));
    let p = pub_with(
        graph,
        "acme_lifetime_secs = 3\nttl = 30",
        &bind_local(&named),
    );
    let server = start(&p).await;
    let post = |msg: UpdateMsg, kp: &Keypair| post_http(server.http, body(&msg, kp, &p.keypair));
    assert_eq!(post(update(&pi, "eb4890", HOME, 1), &pi).await.0, 200);

    let (status, json) = post(acme_set(&pi, "eb4890", &[TXT_1, TXT_2], 2), &pi).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        txt_at(named.addr(), "eb4890").await,
        sorted(&[TXT_1, TXT_2])
    );
    // TTL: the zone's 30, lower than 60.
    assert_eq!(txt_ttl(named.addr(), "eb4890").await, Some(30));
    assert_eq!(named.dig(&format!("eb4890.{DOMAIN}"), "A"), ["24.12.12.12"]);

    // Refused: another key; nothing changes in named.
    let (status, json) = post(acme_set(&other, "eb4890", &[TXT_3], 1), &other).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (422, Some("not_registered")),
        "{json}"
    );
    let (status, json) = post(acme_set(&pi, "eb4890", &["bad"], 3), &pi).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (422, Some("invalid_txt")),
        "{json}"
    );
    let (status, json) = post(acme_set(&pi, "eb4890", &[TXT_3], 2), &pi).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (409, Some("stale_seq")),
        "{json}"
    );
    assert_eq!(
        txt_at(named.addr(), "eb4890").await,
        sorted(&[TXT_1, TXT_2])
    );

    // Replace, then clear.
    assert_eq!(post(acme_set(&pi, "eb4890", &[TXT_3], 3), &pi).await.0, 200);
    assert_eq!(txt_at(named.addr(), "eb4890").await, [TXT_3]);
    assert_eq!(post(acme_clear(&pi, "eb4890", 4), &pi).await.0, 200);
    assert!(txt_at(named.addr(), "eb4890").await.is_empty());

    // Expiry: the sweep sends the delete to named.
    assert_eq!(post(acme_set(&pi, "eb4890", &[TXT_1], 5), &pi).await.0, 200);
    wait_txt(named.addr(), "eb4890", &[TXT_1], Duration::from_secs(1)).await;
    wait_txt(named.addr(), "eb4890", &[], Duration::from_secs(8)).await;
    assert_eq!(
        p.state.registry.challenge("eb4890").expect("registry"),
        None
    );

    // Across a restart: values named lost are written again, and values
    // that expired while the server was down are removed from named.
    assert_eq!(post(acme_set(&pi, "eb4890", &[TXT_2], 6), &pi).await.0, 200);
    server.stop().await;
    named.nsupdate_local(&format!(
        "update delete {} TXT\nsend\n",
        challenge_name("eb4890")
    ));
    let (state, _) = restarted(&p, &[&pi]);
    let server = start_with(state, None).await;
    wait_txt(named.addr(), "eb4890", &[TXT_2], Duration::from_secs(2)).await;
    server.stop().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        txt_at(named.addr(), "eb4890").await,
        [TXT_2],
        "named keeps them while the server is down"
    );
    let (state, _) = restarted(&p, &[&pi]);
    let server = start_with(state, None).await;
    wait_txt(named.addr(), "eb4890", &[], Duration::from_secs(2)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_dns_and_commit_is_put_right_at_start() {
    // The intent noted before the DNS write, with no commit after it:
    // what a crash in between leaves. named holds a value the registry
    // never committed; the next start removes it.
    let named = Named::start();
    let pi = Keypair::generate();
    let graph = Arc::new(Allowlist::new([pi.public()]));
    let p = pub_with(graph, "", &bind_local(&named));
    p.state
        .registry
        .note_challenge_intent("eb4890")
        .expect("intent");
    named.nsupdate_local(&format!(
        "update add {} 60 TXT \"{TXT_1}\"\nsend\n",
        challenge_name("eb4890")
    ));
    assert_eq!(txt_at(named.addr(), "eb4890").await, [TXT_1]);
    let (state, _) = restarted(&p, &[&pi]);
    let server = start_with(state, None).await;
    wait_txt(named.addr(), "eb4890", &[], Duration::from_secs(2)).await;
    assert!(p
        .state
        .registry
        .challenge_intents()
        .expect("intents")
        .is_empty());
    server.stop().await;
}
