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
    (state, keypair, dir)
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
