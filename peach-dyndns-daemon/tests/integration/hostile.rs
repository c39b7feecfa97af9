//! A hostile pub, against the real parts: a second real peach-dyndns-server
//! with its own key announces the same domain on SSB (a real ssb-server),
//! and a relay in front of it answers `/ip` with a forged statement, replays
//! the Pi's update at the real pub (the v1 attack), answers `stale_seq` with
//! `last_seq = 2^64 - 2` and then `Retry-After: 18446744073709551615`.
//!
//! The daemon does not list it until the Pi follows it, then lists both
//! pubs marked as claiming one domain; it never signs the forged address,
//! never moves its seq past the bound, does not crash; the real pub refuses
//! the replay (`wrong_pub`) and holds nothing for the name until the daemon
//! registers there itself.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use peach_dyndns_daemon::state::StateStore;
use peach_dyndns_daemon::status::unix_ms;
use peach_dyndns_protocol::identity::{parse_secret_file, Keypair};
use peach_dyndns_protocol::message::UpdateMsg;
use peach_dyndns_protocol::rules::SEQ_AHEAD_MS;
use peach_dyndns_protocol::{ip_answer, seal};
use serde_json::{json, Value};
use testkit::{DaemonConfig, Sbot};
use tokio::net::TcpListener;

use crate::common::*;

/// What the relay saw and did.
#[derive(Default)]
struct Seen {
    /// Updates it opened with the hostile pub's key.
    updates: Vec<UpdateMsg>,
    /// The real pub's answers to the replays: (HTTP status, body).
    replays: Vec<(u16, Value)>,
}

/// The hostile pub's front: forged `/ip`, a replay of every update at the
/// real pub, then the two hostile answers.
struct Relay {
    url: String,
    seen: Arc<Mutex<Seen>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(hostile: Keypair, real_pub: &TestPub) -> Relay {
        use warp::Filter as _;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let real_id = real_pub.keypair.public();
        let real_url = real_pub.update_url();
        let forger = hostile.clone();
        // `/ip`: a statement that claims to be the real pub's, for an
        // address of the hostile's choice, signed by the hostile key.
        let ip = warp::path("ip")
            .and(warp::query::<std::collections::HashMap<String, String>>())
            .map(move |q: std::collections::HashMap<String, String>| {
                let nonce = q.get("nonce").cloned().unwrap_or_default();
                let mut forged = ip_answer::sign("6.6.6.6".parse().expect("ip"), &nonce, &forger)
                    .map(|a| serde_json::to_value(a).expect("json"))
                    .unwrap_or_else(|_| json!({"ip": "6.6.6.6"}));
                forged["pub"] = json!(real_id.to_string());
                warp::reply::json(&forged)
            });
        let s = seen.clone();
        let update = warp::path("update")
            .and(warp::post())
            .and(warp::body::bytes())
            .then(move |body| {
                let (seen, hostile, real_url) = (s.clone(), hostile.clone(), real_url.clone());
                async move { relay_update(body, &hostile, &real_id, &real_url, &seen).await }
            });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let task = tokio::spawn(warp::serve(ip.or(update)).incoming(listener).run());
        Relay {
            url: format!("http://{addr}/update"),
            seen,
            _task: task,
        }
    }
}

async fn relay_update(
    body: impl AsRef<[u8]>,
    hostile: &Keypair,
    real_id: &peach_dyndns_protocol::identity::PublicKey,
    real_url: &str,
    seen: &Mutex<Seen>,
) -> warp::http::Response<String> {
    // Open as the pub the Pi sealed to, re-seal to the real pub, replay.
    let body = body.as_ref();
    let sealed = seal::parse_envelope(body).expect("envelope");
    let plaintext = seal::open(&sealed, hostile).expect("sealed to the hostile pub");
    let opened = seal::open_envelope(body, hostile).expect("open");
    let resealed = seal::seal(&plaintext, real_id).expect("seal");
    let envelope = json!({
        "v": 2,
        "sealed": base64::engine::general_purpose::STANDARD.encode(resealed),
    });
    let answer = reqwest::Client::new()
        .post(real_url)
        .json(&envelope)
        .send()
        .await
        .expect("the real pub answers");
    let status = answer.status().as_u16();
    let value: Value = answer.json().await.unwrap_or(Value::Null);
    let step = {
        let mut seen = seen.lock().expect("seen");
        seen.updates.push(opened.msg);
        seen.replays.push((status, value));
        seen.updates.len()
    };
    let builder = warp::http::Response::builder().header("content-type", "application/json");
    if step == 1 {
        builder
            .status(409)
            .body(
                json!({"ok": false, "error": "stale_seq", "message": "seq is not above the last",
                       "last_seq": u64::MAX - 1})
                .to_string(),
            )
            .expect("response")
    } else {
        builder
            .status(429)
            .header("retry-after", "18446744073709551615")
            .body(json!({"ok": false, "error": "rate_limited", "message": "wait"}).to_string())
            .expect("response")
    }
}

fn secret_of(sbot: &Sbot) -> Keypair {
    parse_secret_file(&std::fs::read_to_string(sbot.secret_path()).expect("secret"))
        .expect("secret")
}

/// Waits (real time) until `list_pubs` has `n` entries.
async fn wait_for_pubs(d: &RunningDaemon, n: usize, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let pubs = d.result("list_pubs", None).await;
        if pubs.as_array().map(Vec::len) == Some(n) {
            return pubs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "list_pubs never had {n} entries: {pubs}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_pub_claiming_the_same_domain() {
    let pi_sbot = Sbot::start();
    let hostile_sbot = Sbot::start();
    let pi_key = secret_of(&pi_sbot);
    let hostile_key = secret_of(&hostile_sbot);

    let real_pub = TestPub::start(&[&pi_key]).await;
    let hostile_dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    testkit::write_secret(
        &hostile_dir.path().join("secret"),
        &hostile_key.to_secret_file(),
    );
    let hostile_pub = TestPub::start_as(hostile_dir, hostile_key.clone(), &[&pi_key]).await;
    let relay = Relay::start(hostile_key.clone(), &real_pub).await;
    let echo = Echo::start("127.0.0.3\n").await;

    // The hostile pub announces the real pub's domain. Its message reaches
    // the Pi's sbot (added as-is, signed by the hostile feed), but the Pi
    // does not follow it.
    let announcement = hostile_sbot.publish(json!({
        "type": "peach-dyndns", "domain": DOMAIN, "url": relay.url, "ttl": 60
    }));
    // ssb-server checks the message's key order, so it goes across as the
    // text the hostile sbot stored (`get` answers the message value).
    let key = announcement["key"].as_str().expect("message key");
    let raw = hostile_sbot.cli(&["get", key], None);
    pi_sbot.cli(&["add", "."], Some(&raw));

    let pi = Pi::new();
    let state_path = pi.dir.path().join("state.json");
    let config_for = |with_pub: DaemonConfig, dns: SocketAddr| {
        with_pub
            .secret_path(pi_sbot.secret_path())
            .state_path(&state_path)
            .fast_timers()
            .registration_name("eb4890")
            .allow_private_addresses(true)
            .echo_urls([&echo.url])
            .dns_server(dns)
            .dns_timeout_secs(1)
            .rpc_listen("127.0.0.1:0")
            .sbot_address(format!("127.0.0.1:{}", pi_sbot.port()))
            .allow_private_pub_urls(true)
            .to_toml()
    };
    // The owner picked the hostile pub by its id (from its announcement).
    let config = pi.write_config(&config_for(
        DaemonConfig::new().pub_id(&hostile_key.id()),
        hostile_pub.dns,
    ));
    let mut d = RunningDaemon::start(&pi, config).await;

    // Not followed: not listed, not used.
    let st = d
        .wait_until("no pub", Duration::from_secs(30), |s| {
            s["last_error_code"] == "no_pub"
        })
        .await;
    assert_eq!(st["state"], "error", "{st:#}");
    assert_eq!(d.result("list_pubs", None).await, json!([]));
    assert!(relay.seen.lock().expect("seen").updates.is_empty());

    // Followed: listed with its full URL and id, and used.
    pi_sbot.follow(&hostile_key.id());
    let pubs = wait_for_pubs(&d, 1, Duration::from_secs(30)).await;
    assert_eq!(pubs[0]["pub_id"], json!(hostile_key.id()), "{pubs}");
    assert_eq!(pubs[0]["url"], json!(relay.url), "{pubs}");

    // Its answer `last_seq = 2^64 - 2` is not believed: parked.
    let st = d
        .wait_until("parked on the pub's seq", Duration::from_secs(30), |s| {
            s["last_error_code"] == "seq_not_believed"
        })
        .await;
    assert_eq!(st["parked"], true, "{st:#}");
    // The forged /ip was skipped, with the reason in the status.
    let skipped = st["skipped_sources"].to_string();
    assert!(
        skipped.contains("/ip") && skipped.contains("not believed"),
        "{st:#}"
    );

    // Forced again: `Retry-After: 18446744073709551615`, clamped to a day.
    let before = unix_ms() / 1000;
    let st = d.result("update_now", None).await;
    assert_eq!(st["last_error_code"], "rate_limited", "{st:#}");
    let next = st["next_check_at"].as_u64().expect("a retry is scheduled");
    assert!(
        next >= before + 86_000 && next <= before + 86_400 + 5,
        "{next} vs {before}: {st:#}"
    );
    // Still alive and answering.
    assert_eq!(d.result("ping", None).await, "success");

    {
        let seen = relay.seen.lock().expect("seen");
        assert_eq!(
            seen.updates.len(),
            2,
            "one try each, no retry past the claim"
        );
        let bound = unix_ms() + SEQ_AHEAD_MS;
        for m in &seen.updates {
            assert_ne!(m.ip, Some("6.6.6.6".parse().expect("ip")), "{m:?}");
            assert_eq!(m.ip, Some("127.0.0.3".parse().expect("ip")), "{m:?}");
            assert_eq!(m.pub_id, hostile_key.public());
            assert!(m.seq <= bound, "{m:?}");
        }
        // The replay at the real pub is refused: the message names its pub.
        for (status, body) in &seen.replays {
            assert_eq!(*status, 422, "{body}");
            assert_eq!(body["error"], "wrong_pub", "{body}");
        }
    }
    let state = StateStore::new(&state_path).load().expect("state");
    for (pub_id, seq) in &state.seqs {
        assert!(*seq <= unix_ms() + SEQ_AHEAD_MS, "{pub_id}: {seq}");
    }
    assert!(
        testkit::dig(real_pub.dns, "eb4890.peach.dinosaur.is", "A")
            .time_secs(1)
            .short()
            .is_empty(),
        "the real pub holds nothing for the name"
    );

    // The owner switches to the real pub (configured completely): both
    // pubs are listed, both marked, and the real one registers, with the
    // real pub's signed /ip, within the seq bound.
    std::fs::write(
        pi.config_path(),
        config_for(
            DaemonConfig::new().static_pub(&real_pub.keypair.id(), &real_pub.update_url(), DOMAIN),
            real_pub.dns,
        ),
    )
    .expect("write config");
    d.shared.reload().expect("reload");
    let pubs = wait_for_pubs(&d, 2, Duration::from_secs(30)).await;
    for p in pubs.as_array().expect("array") {
        assert_eq!(p["conflict"], true, "{pubs}");
        assert_eq!(
            p["same_domain_as"].as_array().map(Vec::len),
            Some(1),
            "{pubs}"
        );
    }
    assert_eq!(pubs[0]["pub_id"], json!(real_pub.keypair.id()), "{pubs}");
    assert_eq!(
        pubs[0]["same_domain_as"][0],
        json!(hostile_key.id()),
        "{pubs}"
    );
    d.result("update_now", None).await;
    let st = d
        .wait_until("online at the real pub", Duration::from_secs(30), |s| {
            s["state"] == "online"
        })
        .await;
    assert_eq!(st["ip"], "127.0.0.1", "{st:#}");
    assert_eq!(
        testkit::dig(real_pub.dns, "eb4890.peach.dinosaur.is", "A")
            .time_secs(1)
            .short(),
        ["127.0.0.1"]
    );
    let state = StateStore::new(&state_path).load().expect("state");
    let real_seq = state
        .seq(&real_pub.keypair.public())
        .expect("a seq for the real pub");
    assert!(real_seq <= unix_ms() + SEQ_AHEAD_MS, "{real_seq}");
    assert_eq!(relay.seen.lock().expect("seen").updates.len(), 2);
    d.stop().await;
    drop(hostile_pub);
}
