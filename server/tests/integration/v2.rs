//! Protocol v2 and the one pipeline: each test here is a regression test
//! of an attack that worked against v1 (issue 9), or of a front door that
//! drifted from the pipeline.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use peach_dyndns_protocol::identity::{Keypair, PublicKey};
use peach_dyndns_protocol::message::Op;
use peach_dyndns_protocol::rules::{token_hash, SEQ_AHEAD_MS};
use peach_dyndns_protocol::{ip_answer, ErrorCode};
use peach_dyndns_server::dns::BoxFut;
use peach_dyndns_server::graph::{GraphError, SocialGraph, Standing};
use peach_dyndns_server::pipeline::now_ms;
use peach_dyndns_server::registry::Entry;
use tokio::sync::Notify;

use crate::common::*;
use crate::serve::{curl, post_http, start};

const HOME: Ipv4Addr = Ipv4Addr::new(24, 12, 12, 12);

fn code(got: &(u16, serde_json::Value, warp::http::HeaderMap)) -> (u16, String) {
    (got.0, got.1["error"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn a_message_resealed_by_a_hostile_pub_is_refused_as_wrong_pub() {
    // The hostile pub announces the same domain; the Pi seals to it. It
    // opens the update and re-seals the same signed JSON to the real pub.
    let pi = Keypair::generate();
    let real = embedded_pub(&[&pi], "");
    let hostile = Keypair::generate();
    let mut msg = update(&pi, "eb4890", HOME, 5);
    msg.pub_id = hostile.public();
    // What the Pi sent the hostile pub, re-sealed to the real one.
    let resealed = body_as_is(&msg, &pi, &real.keypair);
    let got = post(&real.state, &resealed).await;
    assert_eq!(code(&got), (422, "wrong_pub".into()), "{}", got.1);
    assert_eq!(real.state.registry.get("eb4890").expect("get"), None);
    assert_eq!(real.state.registry.last_seq(&pi.id()).expect("seq"), None);
    // The same message bound to the real pub is accepted.
    let got = post(&real.state, &body(&msg, &pi, &real.keypair)).await;
    assert_eq!(got.0, 200, "{}", got.1);
}

#[tokio::test]
async fn a_seq_more_than_a_day_ahead_is_refused_and_freezes_nothing() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    let got = post(
        &p.state,
        &body(&update(&pi, "eb4890", HOME, 7), &pi, &p.keypair),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    for seq in [u64::MAX, u64::MAX - 1, now_ms() + SEQ_AHEAD_MS + 60_000] {
        let got = post(
            &p.state,
            &body(&update(&pi, "eb4890", HOME, seq), &pi, &p.keypair),
        )
        .await;
        assert_eq!(code(&got), (422, "invalid_seq".into()), "{}", got.1);
        assert_eq!(got.1["last_seq"], 7, "{}", got.1);
        let max = got.1["max_seq"].as_u64().expect("max_seq");
        assert!(
            max >= now_ms() + SEQ_AHEAD_MS - 60_000 && max < seq,
            "{max}"
        );
    }
    assert_eq!(p.state.registry.last_seq(&pi.id()).expect("seq"), Some(7));
    // The key can still move on: today's clock is within the bound.
    let next = now_ms();
    let got = post(
        &p.state,
        &body(&update(&pi, "eb4890", HOME, next), &pi, &p.keypair),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(
        p.state.registry.last_seq(&pi.id()).expect("seq"),
        Some(next)
    );
}

#[tokio::test]
async fn ip_with_a_nonce_is_the_pubs_signed_statement() {
    let p = embedded_pub(&[], "");
    let nonce = ip_answer::nonce_from([0x5a; 16]);
    let resp = warp::test::request()
        .method("GET")
        .path(&format!("/ip?nonce={nonce}"))
        .header("accept", "application/json")
        .remote_addr("[::ffff:24.12.12.12]:40000".parse().expect("addr"))
        .reply(&peach_dyndns_server::api::routes(p.state.clone()))
        .await;
    assert_eq!(resp.status(), 200);
    // IPv4-mapped peers are answered as IPv4, signed by this pub.
    let ip = ip_answer::verify(resp.body(), &p.keypair.public(), &nonce).expect("verifies");
    assert_eq!(ip, std::net::IpAddr::V4(HOME));
    // Another pub's key does not verify it.
    let other = Keypair::generate().public();
    assert!(ip_answer::verify(resp.body(), &other, &nonce).is_err());
    // A nonce that is not 32 hex digits is malformed.
    let (status, text) = get(&p.state, "/ip?nonce=xyz").await;
    assert_eq!(status, 400, "{text}");
    // Without a nonce, plain text as before.
    let (status, text) = get(&p.state, "/ip").await;
    assert_eq!((status, text.as_str()), (200, "24.12.12.12\n"));
}

#[tokio::test]
async fn names_says_taken_but_not_by_whom() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    let got = post(
        &p.state,
        &body(&update(&pi, "eb4890", HOME, 1), &pi, &p.keypair),
    )
    .await;
    assert_eq!(got.0, 200);
    let (status, text) = get(&p.state, "/names/eb4890").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(json["available"], false);
    assert_eq!(json["reason"], "name_taken");
    assert!(json.get("owner").is_none(), "{json}");
    assert!(!text.contains(&pi.id()), "{text}");
}

#[tokio::test]
async fn each_op_is_checked_before_anything_changes() {
    let pi = Keypair::generate();
    let other = Keypair::generate();
    let p = embedded_pub(&[&pi, &other], "");
    let txt = vec!["LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0".to_string()];
    // ACME ops need a name the key holds.
    let mut acme = update(&pi, "eb4890", HOME, 1);
    acme.op = Op::AcmeSet;
    acme.ip = None;
    acme.txt = Some(txt.clone());
    let got = post(&p.state, &body(&acme, &pi, &p.keypair)).await;
    assert_eq!(code(&got), (422, "not_registered".into()), "{}", got.1);
    assert_eq!(p.state.registry.last_seq(&pi.id()).expect("seq"), None);
    // A bad txt value.
    acme.txt = Some(vec!["not-43-characters".into()]);
    let got = post(&p.state, &body(&acme, &pi, &p.keypair)).await;
    assert_eq!(code(&got), (422, "invalid_txt".into()), "{}", got.1);
    // Fields of another op are malformed.
    let mut release = update(&pi, "eb4890", HOME, 2);
    release.op = Op::Release;
    let got = post(&p.state, &body(&release, &pi, &p.keypair)).await;
    assert_eq!(code(&got), (400, "malformed".into()), "{}", got.1);
    // Held by another key: not_registered for ACME, name_taken for update.
    let got = post(
        &p.state,
        &body(&update(&other, "eb4890", HOME, 1), &other, &p.keypair),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    acme.txt = Some(txt);
    acme.seq = 3;
    let got = post(&p.state, &body(&acme, &pi, &p.keypair)).await;
    assert_eq!(code(&got), (422, "not_registered".into()), "{}", got.1);
    let got = post(
        &p.state,
        &body(&update(&pi, "eb4890", HOME, 4), &pi, &p.keypair),
    )
    .await;
    assert_eq!(code(&got), (409, "name_taken".into()), "{}", got.1);
    assert_eq!(p.state.registry.last_seq(&pi.id()).expect("seq"), None);
    assert_eq!(
        p.state
            .registry
            .get("eb4890")
            .expect("get")
            .map(|e| e.owner),
        Some(other.id())
    );
}

#[tokio::test]
async fn an_empty_token_hash_withdraws_the_token() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    let mut msg = update(&pi, "router", HOME, 1);
    msg.token_sha256 = Some(token_hash("tok"));
    assert_eq!(post(&p.state, &body(&msg, &pi, &p.keypair)).await.0, 200);
    // An update without the field keeps it.
    let msg = update(&pi, "router", HOME, 2);
    assert_eq!(post(&p.state, &body(&msg, &pi, &p.keypair)).await.0, 200);
    let entry = p.state.registry.get("router").expect("get").expect("entry");
    assert_eq!(entry.token_sha256, Some(token_hash("tok")));
    let mut msg = update(&pi, "router", HOME, 3);
    msg.token_sha256 = Some(String::new());
    assert_eq!(post(&p.state, &body(&msg, &pi, &p.keypair)).await.0, 200);
    let entry = p.state.registry.get("router").expect("get").expect("entry");
    assert_eq!(entry.token_sha256, None);
}

/// A graph that, once armed, stops in the middle of a lookup until the
/// test lets it go: the window in which a name can change hands.
struct GatedGraph {
    armed: AtomicBool,
    entered: Notify,
    release: Notify,
}

impl SocialGraph for GatedGraph {
    fn standing<'a>(&'a self, _key: &'a PublicKey) -> BoxFut<'a, Result<Standing, GraphError>> {
        Box::pin(async move {
            if self.armed.swap(false, Ordering::SeqCst) {
                self.entered.notify_one();
                self.release.notified().await;
            }
            Ok(Standing::Followed)
        })
    }

    fn kind(&self) -> &'static str {
        "gated"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_changes_hands_during_the_graph_lookup_is_not_moved_by_the_old_token() {
    let old = Keypair::generate();
    let new = Keypair::generate();
    let graph = Arc::new(GatedGraph {
        armed: AtomicBool::new(false),
        entered: Notify::new(),
        release: Notify::new(),
    });
    let p = pub_with(graph.clone(), "", "");
    let mut msg = update(&old, "router", Ipv4Addr::new(24, 1, 1, 1), 1);
    msg.token_sha256 = Some(token_hash("old-token"));
    assert_eq!(post(&p.state, &body(&msg, &old, &p.keypair)).await.0, 200);

    graph.armed.store(true, Ordering::SeqCst);
    let state = p.state.clone();
    let router = tokio::spawn(async move {
        let auth = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                "router.peach.dinosaur.is:old-token"
            )
        );
        let resp = warp::test::request()
            .method("GET")
            .path("/nic/update?hostname=router.peach.dinosaur.is&myip=24.6.6.6")
            .header("authorization", auth)
            .remote_addr("24.6.6.6:40000".parse().expect("addr"))
            .reply(&peach_dyndns_server::api::routes(state))
            .await;
        String::from_utf8_lossy(resp.body()).trim().to_string()
    });
    graph.entered.notified().await;
    // Meanwhile the operator revokes the name and another key registers it.
    p.state.registry.revoke("router").await.expect("revoke");
    let taken = Entry {
        name: "router".into(),
        owner: new.id(),
        ip: Some(Ipv4Addr::new(24, 9, 9, 9)),
        ip6: None,
        ttl: 60,
        token_sha256: Some(token_hash("new-token")),
        created_ms: 1,
        updated_ms: 1,
    };
    p.state
        .registry
        .commit_set(&taken, 1)
        .await
        .expect("commit");
    graph.release.notify_one();
    let answer = router.await.expect("request");
    assert_eq!(answer, "badauth");
    assert_eq!(p.state.registry.get("router").expect("get"), Some(taken));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dyndns2_words_from_real_curl_and_one_family_keeps_the_other() {
    let pi = Keypair::generate();
    // Real addresses only, and a key budget small enough to run out.
    let p = pub_with(
        Arc::new(peach_dyndns_server::graph::Allowlist::new([pi.public()])),
        "allow_private_addresses = false",
        "[rate_limit]\nper_key_per_minute = 1\nper_key_burst = 2",
    );
    let server = start(&p).await;
    let mut msg = update(&pi, "router", Ipv4Addr::new(24, 1, 1, 1), 1);
    msg.ip6 = Some("2a01::1".parse::<Ipv6Addr>().expect("ip6"));
    msg.token_sha256 = Some(token_hash("tok"));
    let (status, json) = post_http(server.http, body(&msg, &pi, &p.keypair)).await;
    assert_eq!(status, 200, "{json}");
    let base = format!("http://{}/nic/update", server.http);
    let dns = server.dns;
    let (v4_only, aaaa, private, abuse) = tokio::task::spawn_blocking(move || {
        let fqdn = "router.peach.dinosaur.is";
        let ask = |myip: &str| {
            curl(&[
                "-u",
                &format!("{fqdn}:tok"),
                &format!("{base}?hostname={fqdn}&myip={myip}"),
            ])
        };
        let v4_only = ask("24.2.2.2");
        let aaaa = testkit::dig(dns, fqdn, "AAAA").tries(1).short();
        let private = ask("10.0.0.1");
        let abuse = ask("24.3.3.3");
        (v4_only, aaaa, private, abuse)
    })
    .await
    .expect("curl");
    assert_eq!(v4_only, ("good 24.2.2.2".into(), "200".into()));
    assert_eq!(aaaa, ["2a01::1"], "a v4-only myip keeps the AAAA record");
    assert_eq!(private.0, "dnserr");
    assert_eq!(abuse.0, "abuse");
    let entry = p.state.registry.get("router").expect("get").expect("entry");
    assert_eq!(entry.ip, Some(Ipv4Addr::new(24, 2, 2, 2)));
    assert_eq!(entry.ip6, Some("2a01::1".parse().expect("ip6")));
    server.stop().await;
}

/// A graph whose sbot is gone: every lookup fails.
struct DownGraph;

impl SocialGraph for DownGraph {
    fn standing<'a>(&'a self, _key: &'a PublicKey) -> BoxFut<'a, Result<Standing, GraphError>> {
        Box::pin(async move {
            Err(GraphError {
                addr: "127.0.0.1:1".parse().expect("addr"),
                source: peach_dyndns_sbot::SbotError::Connect {
                    addr: "127.0.0.1:1".parse().expect("addr"),
                    source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                },
            })
        })
    }

    fn kind(&self) -> &'static str {
        "down"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dyndns2_answers_911_when_the_graph_is_down_and_changes_nothing() {
    let pi = Keypair::generate();
    let p = pub_with(Arc::new(DownGraph), "", "");
    // The name and its token, as a signed update would have left them.
    let entry = Entry {
        name: "router".into(),
        owner: pi.id(),
        ip: Some(Ipv4Addr::new(24, 1, 1, 1)),
        ip6: None,
        ttl: 60,
        token_sha256: Some(token_hash("tok")),
        created_ms: 1,
        updated_ms: 1,
    };
    p.state
        .registry
        .commit_set(&entry, 1)
        .await
        .expect("commit");
    let server = start(&p).await;
    let base = format!("http://{}/nic/update", server.http);
    let answer = tokio::task::spawn_blocking(move || {
        let fqdn = "router.peach.dinosaur.is";
        curl(&[
            "-u",
            &format!("{fqdn}:tok"),
            &format!("{base}?hostname={fqdn}&myip=24.2.2.2"),
        ])
    })
    .await
    .expect("curl");
    assert_eq!(answer.0, "911");
    assert_eq!(p.state.registry.get("router").expect("get"), Some(entry));
    server.stop().await;
    assert_eq!(ErrorCode::GraphUnavailable.http_status(), 503);
}
