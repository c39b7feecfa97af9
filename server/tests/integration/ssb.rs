//! The social graph from a real ssb-server: follow, not followed, block,
//! sbot down; and `announce`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use peach_dyndns_protocol::identity::{parse_secret_file, Keypair};
use peach_dyndns_server::config::Config;
use peach_dyndns_server::registry::Registry;
use peach_dyndns_server::{dns, graph::SsbGraph, operator, State};
use testkit::{Sbot, ServerConfig};

use crate::common::*;

/// A pub whose keypair is the sbot's own, with the ssb graph backend.
fn ssb_pub(sbot: &Sbot, cache_seconds: u64) -> (Arc<State>, Keypair, tempfile::TempDir) {
    let (state, keypair, dir, _) = ssb_pub_with(sbot, cache_seconds, "");
    (state, keypair, dir)
}

/// [`ssb_pub`] with extra config `tables`, and its embedded zone.
fn ssb_pub_with(
    sbot: &Sbot,
    cache_seconds: u64,
    tables: &str,
) -> (
    Arc<State>,
    Keypair,
    tempfile::TempDir,
    Arc<dns::embedded::EmbeddedDns>,
) {
    let dir = tempfile::tempdir().expect("tmp");
    let secret = std::fs::read_to_string(sbot.secret_path()).expect("sbot secret");
    let keypair = parse_secret_file(&secret).expect("sbot secret parses");
    let secret = testkit::write_secret(&dir.path().join("secret"), &keypair.to_secret_file());
    let text = ServerConfig::new(DOMAIN)
        .secret(secret)
        .database(dir.path().join("r.sqlite3"))
        .allow_private_addresses(true)
        .graph(&format!(
            "backend = \"ssb\"\naddr = \"127.0.0.1:{}\"\ncache_seconds = {cache_seconds}",
            sbot.port()
        ))
        .table(tables)
        .to_toml();
    let config = Config::from_str(&text, Path::new("ssb.toml")).expect("config");
    let registry = Registry::open(&config.database).expect("registry");
    let backend = dns::build(&config.dns, &config.domain).expect("dns");
    let graph = Arc::new(SsbGraph::new(
        config_addr(&config),
        keypair.id(),
        keypair.signing_key().clone(),
        config.graph_cache(),
    ));
    let state = Arc::new(State::new(
        config,
        keypair.clone(),
        registry,
        backend.zone,
        graph,
    ));
    let zone = backend.embedded.expect("the default backend is embedded");
    (state, keypair, dir, zone)
}

fn config_addr(config: &Config) -> std::net::SocketAddr {
    match &config.graph {
        peach_dyndns_server::config::GraphConfig::Ssb { addr, .. } => *addr,
        _ => panic!("ssb graph expected"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_accepted_unfollowed_refused_blocked_refused() {
    let sbot = Sbot::start();
    let (state, pubkp, _dir) = ssb_pub(&sbot, 0);
    let (friend, stranger, foe) = (
        Keypair::generate(),
        Keypair::generate(),
        Keypair::generate(),
    );
    sbot.follow(&friend.id());
    sbot.follow(&foe.id());
    sbot.block(&foe.id());
    let ip = Ipv4Addr::new(24, 12, 12, 12);
    let (status, json, _) = post(
        &state,
        &body(&update(&friend, "friend", ip, 1), &friend, &pubkp),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let (status, json, _) = post(
        &state,
        &body(&update(&stranger, "stranger", ip, 1), &stranger, &pubkp),
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (403, Some("not_followed")),
        "{json}"
    );
    let (status, json, _) = post(&state, &body(&update(&foe, "foe", ip, 1), &foe, &pubkp)).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (403, Some("blocked")),
        "{json}"
    );
    assert_eq!(state.registry.len().expect("len"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sbot_down_is_503_and_nothing_changes() {
    let sbot = Sbot::start();
    let (state, pubkp, _dir) = ssb_pub(&sbot, 0);
    let friend = Keypair::generate();
    sbot.follow(&friend.id());
    let ip = Ipv4Addr::new(24, 12, 12, 12);
    assert_eq!(
        post(
            &state,
            &body(&update(&friend, "friend", ip, 1), &friend, &pubkp)
        )
        .await
        .0,
        200
    );
    drop(sbot);
    let got = post(
        &state,
        &body(
            &update(&friend, "friend", Ipv4Addr::new(24, 7, 7, 7), 2),
            &friend,
            &pubkp,
        ),
    )
    .await;
    assert_eq!(
        (got.0, got.1["error"].as_str()),
        (503, Some("graph_unavailable")),
        "{}",
        got.1
    );
    let entry = state.registry.get("friend").expect("get").expect("entry");
    assert_eq!(entry.ip, Some(ip), "nothing changed");
    assert_eq!(state.registry.last_seq(&friend.id()).expect("seq"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_publishes_what_messages_by_type_returns() {
    let sbot = Sbot::start();
    let (state, pubkp, _dir) = ssb_pub(&sbot, 30);
    let key = tokio::time::timeout(Duration::from_secs(20), operator::announce(&state))
        .await
        .expect("announce in time")
        .expect("announce");
    assert!(key.starts_with('%'), "{key}");
    let msgs = sbot.messages_by_type("peach-dyndns");
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let value = &msgs[0]["value"];
    assert_eq!(value["author"], pubkp.id());
    assert_eq!(value["content"]["domain"], DOMAIN);
    assert_eq!(value["content"]["url"], state.config.announced_url());
    assert_eq!(value["content"]["ttl"], 60);
}

/// Unfollowed: the names resolve through the grace, then stop, then are
/// free; a block with grace 0 stops them at the next sweep; a key followed
/// again before the grace ends keeps its name. Sweeps run at chosen
/// times against a real ssb-server, checked in the zone and the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfollowed_names_stop_resolving_after_the_grace_and_are_freed_after_the_second() {
    use peach_dyndns_server::sweep;
    let sbot = Sbot::start();
    let grace = "[grace]\nunfollowed_secs = 100\nblocked_secs = 0\nfree_after_secs = 50\n";
    let (state, pubkp, _dir, zone) = ssb_pub_with(&sbot, 0, grace);
    let (gone, foe, back) = (
        Keypair::generate(),
        Keypair::generate(),
        Keypair::generate(),
    );
    for k in [&gone, &foe, &back] {
        sbot.follow(&k.id());
    }
    let ip = Ipv4Addr::new(24, 12, 12, 12);
    for (k, name) in [(&gone, "gone"), (&foe, "foe"), (&back, "back")] {
        let (status, json, _) = post(&state, &body(&update(k, name, ip, 1), k, &pubkp)).await;
        assert_eq!(status, 200, "{json}");
    }
    // Everyone followed: a sweep changes nothing.
    let t0 = peach_dyndns_server::pipeline::now_ms();
    let swept = sweep::sweep(&state, t0).await.expect("sweep");
    assert_eq!((swept.keys, swept.suspended, swept.stopped), (3, 0, None));

    sbot.unfollow(&gone.id());
    sbot.unfollow(&back.id());
    sbot.block(&foe.id());
    // The owner hears it in the refusal, with the dates.
    let (status, json, _) = post(&state, &body(&update(&gone, "gone", ip, 2), &gone, &pubkp)).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (403, Some("not_followed")),
        "{json}"
    );
    let message = json["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("its names (gone) stop resolving at") && message.contains("GMT"),
        "{message}"
    );

    let swept = sweep::sweep(&state, t0 + 1_000).await.expect("sweep");
    assert_eq!(
        swept.suspended, 1,
        "the block (grace 0) stops at once: {swept:?}"
    );
    assert!(
        zone.records("foe").is_none(),
        "a blocked name stops resolving"
    );
    assert!(
        zone.records("gone").is_some() && zone.records("back").is_some(),
        "within the grace"
    );
    let foe_entry = state.registry.get("foe").expect("get").expect("still held");
    assert_eq!((foe_entry.ip, foe_entry.owner), (None, foe.id()));
    // Someone else cannot take a suspended name.
    let other = Keypair::generate();
    sbot.follow(&other.id());
    let (status, json, _) =
        post(&state, &body(&update(&other, "foe", ip, 1), &other, &pubkp)).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (409, Some("name_taken")),
        "{json}"
    );

    sbot.follow(&back.id());
    let swept = sweep::sweep(&state, t0 + 2_000).await.expect("sweep");
    assert_eq!((swept.cleared, swept.suspended), (1, 0), "{swept:?}");
    assert_eq!(state.registry.lapse(&back.id()).expect("lapse"), None);

    // The refusal recorded when the pub was first seen not following `gone`.
    let since = state
        .registry
        .lapse(&gone.id())
        .expect("lapse")
        .expect("recorded by the refusal")
        .since_ms;
    assert!(since >= t0, "{since} {t0}");
    // The block's second grace (50 s after t0 + 1 s) is over: `foe` is free.
    let swept = sweep::sweep(&state, since + 99_000).await.expect("sweep");
    assert_eq!((swept.suspended, swept.freed), (0, 1), "{swept:?}");
    assert_eq!(state.registry.get("foe").expect("get"), None, "free");
    let swept = sweep::sweep(&state, since + 100_000).await.expect("sweep");
    assert_eq!(swept.suspended, 1, "{swept:?}");
    assert!(zone.records("gone").is_none(), "the grace is over");
    assert!(
        zone.records("back").is_some(),
        "followed again: it keeps resolving"
    );
    assert!(
        state.registry.get("gone").expect("get").is_some(),
        "still held"
    );
    let swept = sweep::sweep(&state, since + 149_000).await.expect("sweep");
    assert_eq!(swept.freed, 0, "not yet: {swept:?}");
    let swept = sweep::sweep(&state, since + 150_000).await.expect("sweep");
    assert_eq!(swept.freed, 1, "{swept:?}");
    assert_eq!(state.registry.get("gone").expect("get"), None);
    // Now the name is anyone's.
    let (status, json, _) =
        post(&state, &body(&update(&other, "foe", ip, 2), &other, &pubkp)).await;
    assert_eq!(status, 200, "{json}");

    // sbot down: the sweep stops and changes nothing.
    drop(sbot);
    let swept = sweep::sweep(&state, t0 + 10_000_000).await.expect("sweep");
    assert!(swept.stopped.is_some(), "{swept:?}");
    assert!(zone.records("back").is_some() && zone.records("foe").is_some());
}
