//! Every row of the error table, each from a request that really produces
//! it, through the real router; and the small endpoints.

use std::net::Ipv4Addr;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_protocol::message::Op;
use peach_dyndns_server::graph::SsbGraph;

use crate::common::*;

const HOME: Ipv4Addr = Ipv4Addr::new(24, 12, 12, 12);

fn assert_error(got: &(u16, serde_json::Value, warp::http::HeaderMap), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["ok"], false, "{}", got.1);
    assert_eq!(got.1["error"], code, "{}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message for a person: {}",
        got.1
    );
}

#[tokio::test]
async fn accepted_then_no_change_then_release() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    let (status, json, _) = post(
        &p.state,
        &body(&update(&pi, "eb4890", HOME, 10), &pi, &p.keypair),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["fqdn"], "eb4890.peach.dinosaur.is");
    assert_eq!(json["ip"], "24.12.12.12");
    assert_eq!(json["changed"], true);
    assert_eq!(json["seq"], 10);
    assert!(json.get("ip6").is_none(), "absent, not null: {json}");
    let (status, json, _) = post(
        &p.state,
        &body(&update(&pi, "eb4890", HOME, 11), &pi, &p.keypair),
    )
    .await;
    assert_eq!(
        (status, &json["changed"]),
        (200, &serde_json::json!(false)),
        "{json}"
    );
    let entry = p
        .state
        .registry
        .get("eb4890")
        .expect("get")
        .expect("registered");
    assert_eq!(entry.owner, pi.id());
    let mut release = update(&pi, "eb4890", HOME, 12);
    release.op = Op::Release;
    release.ip = None;
    let (status, json, _) = post(&p.state, &body(&release, &pi, &p.keypair)).await;
    assert_eq!(
        (status, &json["changed"]),
        (200, &serde_json::json!(true)),
        "{json}"
    );
    assert_eq!(p.state.registry.get("eb4890").expect("get"), None);
    // A released name is free for another key.
    let other = Keypair::generate();
    let q = embedded_pub(&[&pi, &other], "");
    let _ = post(
        &q.state,
        &body(&update(&pi, "free", HOME, 1), &pi, &q.keypair),
    )
    .await;
}

#[tokio::test]
async fn replayed_envelope_is_stale_and_changes_nothing() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    let first = body(&update(&pi, "eb4890", HOME, 100), &pi, &p.keypair);
    assert_eq!(post(&p.state, &first).await.0, 200);
    let got = post(&p.state, &first).await;
    assert_error(&got, 409, "stale_seq");
    assert_eq!(got.1["last_seq"], 100);
    let older = body(
        &update(&pi, "eb4890", Ipv4Addr::new(24, 1, 1, 1), 99),
        &pi,
        &p.keypair,
    );
    assert_error(&post(&p.state, &older).await, 409, "stale_seq");
    let entry = p.state.registry.get("eb4890").expect("get").expect("entry");
    assert_eq!(entry.ip, Some(HOME), "the stale update changed nothing");
}

#[tokio::test]
async fn second_key_on_the_same_name_is_refused() {
    let (a, b) = (Keypair::generate(), Keypair::generate());
    let p = embedded_pub(&[&a, &b], "");
    assert_eq!(
        post(
            &p.state,
            &body(&update(&a, "eb4890", HOME, 1), &a, &p.keypair)
        )
        .await
        .0,
        200
    );
    let got = post(
        &p.state,
        &body(
            &update(&b, "eb4890", Ipv4Addr::new(24, 6, 6, 6), 1),
            &b,
            &p.keypair,
        ),
    )
    .await;
    assert_error(&got, 409, "name_taken");
    assert_eq!(
        p.state
            .registry
            .get("eb4890")
            .expect("get")
            .expect("entry")
            .owner,
        a.id()
    );
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "allow_private_addresses = false");
    for (i, ip) in ["192.168.1.10", "10.0.0.1", "127.0.0.1", "192.0.2.1"]
        .iter()
        .enumerate()
    {
        let msg = update(&pi, "eb4890", ip.parse().expect("ip"), i as u64 + 1);
        assert_error(
            &post(&p.state, &body(&msg, &pi, &p.keypair)).await,
            422,
            "invalid_ip",
        );
    }
    let mut v6 = update(&pi, "eb4890", HOME, 50);
    v6.ip6 = Some("fe80::1".parse().expect("ip6"));
    assert_error(
        &post(&p.state, &body(&v6, &pi, &p.keypair)).await,
        422,
        "invalid_ip",
    );
    assert_eq!(p.state.registry.len().expect("len"), 0);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let p = embedded_pub(&[], "");
    let big = format!("{{\"v\":2,\"sealed\":\"{}\"}}", "A".repeat(5 * 1024));
    assert_error(&post(&p.state, big.as_bytes()).await, 413, "too_large");
}

#[tokio::test]
async fn bit_flipped_seal_is_undecryptable() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    let body = body(&update(&pi, "eb4890", HOME, 1), &pi, &p.keypair);
    let mut env: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let mut sealed = B64
        .decode(env["sealed"].as_str().expect("str"))
        .expect("b64");
    sealed[40] ^= 0x01;
    env["sealed"] = B64.encode(sealed).into();
    let got = post(&p.state, env.to_string().as_bytes()).await;
    assert_error(&got, 401, "undecryptable");
    // Sealed to another pub: the same.
    let other = Keypair::generate();
    let got = post(
        &p.state,
        &crate::common::body(&update(&pi, "eb4890", HOME, 1), &pi, &other),
    )
    .await;
    assert_error(&got, 401, "undecryptable");
}

#[tokio::test]
async fn signature_of_another_message_is_bad_signature() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    let mut signed = update(&pi, "eb4890", HOME, 1).sign(&pi);
    signed.signature = update(&pi, "eb4890", HOME, 2).sign(&pi).signature;
    let env = peach_dyndns_protocol::seal::seal_update(&signed, &p.keypair.public()).expect("seal");
    let got = post(&p.state, &serde_json::to_vec(&env).expect("json")).await;
    assert_error(&got, 401, "bad_signature");
    assert_eq!(p.state.registry.last_seq(&pi.id()).expect("seq"), None);
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let p = embedded_pub(&[], "");
    for bad in [
        &b"not json"[..],
        br#"{"v":3,"sealed":"AAAA"}"#,
        br#"{"v":1,"sealed":"AAAA"}"#,
        br#"{"v":2,"sealed":"***"}"#,
        br#"{"v":2}"#,
    ] {
        assert_error(&post(&p.state, bad).await, 400, "malformed");
    }
}

#[tokio::test]
async fn unfollowed_keys_get_403() {
    let stranger = Keypair::generate();
    let p = embedded_pub(&[], "");
    let got = post(
        &p.state,
        &body(&update(&stranger, "eb4890", HOME, 1), &stranger, &p.keypair),
    )
    .await;
    assert_error(&got, 403, "not_followed");
}

#[tokio::test]
async fn name_and_domain_rules_are_422() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "reserved = [\"admin\"]");
    let mut wrong = update(&pi, "eb4890", HOME, 1);
    wrong.domain = "other.example.org".into();
    assert_error(
        &post(&p.state, &body(&wrong, &pi, &p.keypair)).await,
        422,
        "wrong_domain",
    );
    for reserved in ["www", "ns1", "admin"] {
        let msg = update(&pi, reserved, HOME, 2);
        assert_error(
            &post(&p.state, &body(&msg, &pi, &p.keypair)).await,
            422,
            "reserved_name",
        );
    }
    for invalid in ["UPPER", "-dash", "a_b"] {
        let msg = update(&pi, invalid, HOME, 3);
        assert_error(
            &post(&p.state, &body(&msg, &pi, &p.keypair)).await,
            422,
            "invalid_name",
        );
    }
}

#[tokio::test]
async fn one_name_per_key_by_default() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    assert_eq!(
        post(
            &p.state,
            &body(&update(&pi, "one", HOME, 1), &pi, &p.keypair)
        )
        .await
        .0,
        200
    );
    let got = post(
        &p.state,
        &body(&update(&pi, "two", HOME, 2), &pi, &p.keypair),
    )
    .await;
    assert_error(&got, 422, "too_many_names");
    assert_eq!(p.state.registry.get("two").expect("get"), None);
}

#[tokio::test]
async fn per_key_rate_limit_is_429_with_retry_after() {
    let pi = Keypair::generate();
    let p = pub_with(
        Arc::new(peach_dyndns_server::graph::Allowlist::new([pi.public()])),
        "",
        "[rate_limit]\nper_key_per_minute = 1\nper_key_burst = 2",
    );
    for seq in 1..=2 {
        assert_eq!(
            post(
                &p.state,
                &body(&update(&pi, "eb4890", HOME, seq), &pi, &p.keypair)
            )
            .await
            .0,
            200
        );
    }
    let got = post(
        &p.state,
        &body(&update(&pi, "eb4890", HOME, 3), &pi, &p.keypair),
    )
    .await;
    assert_error(&got, 429, "rate_limited");
    let retry: u64 = got.2["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
}

#[tokio::test]
async fn garbage_from_one_address_is_cut_off_before_crypto() {
    let p = pub_with(
        Arc::new(peach_dyndns_server::graph::Allowlist::new([])),
        "",
        "[rate_limit]\nfailures_per_ip_per_minute = 3",
    );
    for _ in 0..3 {
        assert_error(
            &post(&p.state, br#"{"v":2,"sealed":"AAAA"}"#).await,
            401,
            "undecryptable",
        );
    }
    assert_error(
        &post(&p.state, br#"{"v":2,"sealed":"AAAA"}"#).await,
        429,
        "rate_limited",
    );
}

#[tokio::test]
async fn graph_unavailable_is_503_and_changes_nothing() {
    let pi = Keypair::generate();
    // An ssb graph pointing at a port nothing listens on: fail closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let sbot_key = Keypair::generate();
    let graph = Arc::new(SsbGraph::new(
        addr,
        sbot_key.id(),
        sbot_key.signing_key().clone(),
        std::time::Duration::from_secs(30),
    ));
    let p = pub_with(graph, "", "");
    let got = post(
        &p.state,
        &body(&update(&pi, "eb4890", HOME, 1), &pi, &p.keypair),
    )
    .await;
    assert_error(&got, 503, "graph_unavailable");
    assert!(got.2.contains_key("retry-after"));
    assert_eq!(p.state.registry.len().expect("len"), 0);
    assert_eq!(p.state.registry.last_seq(&pi.id()).expect("seq"), None);
}

#[tokio::test]
async fn dns_unavailable_is_503_and_changes_nothing() {
    let pi = Keypair::generate();
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("session.key");
    std::fs::write(&key, "key \"local-ddns\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=\";\n};\n").expect("key");
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let tables = format!(
        "[dns]\nbackend = \"bind-local\"\nserver = \"{addr}\"\nsession_key = \"{}\"",
        key.display()
    );
    let p = pub_with(
        Arc::new(peach_dyndns_server::graph::Allowlist::new([pi.public()])),
        "",
        &tables,
    );
    let got = post(
        &p.state,
        &body(&update(&pi, "eb4890", HOME, 1), &pi, &p.keypair),
    )
    .await;
    assert_error(&got, 503, "dns_unavailable");
    assert!(got.2.contains_key("retry-after"));
    assert_eq!(p.state.registry.len().expect("len"), 0);
    assert_eq!(
        p.state.registry.last_seq(&pi.id()).expect("seq"),
        None,
        "seq not consumed"
    );
}

#[tokio::test]
async fn small_endpoints() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    assert_eq!(get(&p.state, "/ip").await, (200, "24.12.12.12\n".into()));
    let (status, text) = get(&p.state, "/names/eb4890").await;
    assert_eq!(status, 200);
    assert!(text.contains("\"available\":true"), "{text}");
    assert_eq!(
        post(
            &p.state,
            &body(&update(&pi, "eb4890", HOME, 1), &pi, &p.keypair)
        )
        .await
        .0,
        200
    );
    let (_, text) = get(&p.state, "/names/eb4890").await;
    assert!(
        text.contains("\"available\":false") && text.contains("name_taken"),
        "{text}"
    );
    let (_, text) = get(&p.state, "/names/www").await;
    assert!(text.contains("reserved_name"), "{text}");
    let (status, text) = get(&p.state, "/health").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("\"names\":1") && text.contains("\"dns\":\"embedded\""),
        "{text}"
    );
    let (_, text) = get(&p.state, "/metrics").await;
    assert!(
        text.contains("peach_dyndns_requests_total{endpoint=\"update\",result=\"ok\"} 1"),
        "{text}"
    );
    assert!(text.contains("peach_dyndns_names 1"), "{text}");
    let (_, text) = get(&p.state, "/.well-known/peach-dyndns").await;
    let ann: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(ann["type"], "peach-dyndns");
    assert_eq!(ann["domain"], DOMAIN);
    assert_eq!(ann["pub_id"], p.keypair.id());
    let (status, text) = get(&p.state, "/nope").await;
    assert_eq!(status, 404);
    assert!(text.contains("not_found"), "{text}");
}

/// A no-change update confirms records already on disk: it is answered
/// without waiting for an fsync of its `seq`, which goes with the next
/// commit (at most `DEFER` later). Replays of it are refused at once all
/// the same, and its `seq` is on disk after that commit.
#[tokio::test]
async fn no_change_updates_share_a_deferred_commit_and_replays_stay_refused() {
    let pi = Keypair::generate();
    let p = pub_with(
        Arc::new(peach_dyndns_server::graph::Allowlist::new([pi.public()])),
        "",
        "[rate_limit]\nper_key_per_minute = 1000\nper_key_burst = 1000",
    );
    let first = body(&update(&pi, "eb4890", HOME, 1), &pi, &p.keypair);
    assert_eq!(post(&p.state, &first).await.0, 200);
    let before = p.state.registry.commits();
    let mut last = Vec::new();
    for seq in 2..=21 {
        last = body(&update(&pi, "eb4890", HOME, seq), &pi, &p.keypair);
        let (status, json, _) = post(&p.state, &last).await;
        assert_eq!(
            (status, &json["changed"]),
            (200, &serde_json::json!(false)),
            "{json}"
        );
        assert_eq!(json["seq"], seq, "{json}");
    }
    let during = p.state.registry.commits() - before;
    // One commit per update before; now the deferred writes share one
    // (two if the window closed in the middle of the run).
    assert!(during <= 2, "20 no-change updates made {during} commits");
    let replay = post(&p.state, &last).await;
    assert_error(&replay, 409, "stale_seq");
    assert_eq!(replay.1["last_seq"], 21);
    tokio::time::sleep(peach_dyndns_server::registry::DEFER * 3).await;
    assert!(
        p.state.registry.commits() > before,
        "the deferred seq was committed within its window"
    );
    let (_, text) = get(&p.state, "/metrics").await;
    assert!(
        text.contains(&format!(
            "peach_dyndns_registry_commits_total {}",
            p.state.registry.commits()
        )),
        "{text}"
    );
    let on_disk = peach_dyndns_server::registry::Registry::open(&p.state.config.database)
        .expect("a second connection")
        .last_seq(&pi.id())
        .expect("seq");
    assert_eq!(on_disk, Some(21), "the last no-change seq is on disk");
}

#[tokio::test]
async fn replays_do_not_use_up_the_owners_rate_limit() {
    let pi = Keypair::generate();
    let p = pub_with(
        Arc::new(peach_dyndns_server::graph::Allowlist::new([pi.public()])),
        "",
        "[rate_limit]\nper_key_per_minute = 1\nper_key_burst = 2",
    );
    let captured = body(&update(&pi, "eb4890", HOME, 1), &pi, &p.keypair);
    assert_eq!(post(&p.state, &captured).await.0, 200);
    for _ in 0..5 {
        assert_error(&post(&p.state, &captured).await, 409, "stale_seq");
    }
    // The owner still has the second token of its burst.
    let next = body(
        &update(&pi, "eb4890", Ipv4Addr::new(24, 3, 3, 3), 2),
        &pi,
        &p.keypair,
    );
    let (status, json, _) = post(&p.state, &next).await;
    assert_eq!(status, 200, "{json}");
}
