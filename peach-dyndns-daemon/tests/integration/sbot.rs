//! Pub discovery through real ssb-servers: the pub's sbot announces, the
//! Pi's sbot accepts the pub's invite (through the daemon's
//! `accept_invite`), the daemon finds the pub's announcement in its own
//! sbot and registers.

use std::time::Duration;

use peach_dyndns_protocol::identity::parse_secret_file;
use serde_json::json;
use testkit::{DaemonConfig, Sbot};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_pub_through_its_announcement_and_registers() {
    let pub_sbot = Sbot::builder().allow_private(true).start();
    let pi_sbot = Sbot::start();
    let pi_key =
        parse_secret_file(&std::fs::read_to_string(pi_sbot.secret_path()).expect("pi secret"))
            .expect("pi secret");
    let pub_key =
        parse_secret_file(&std::fs::read_to_string(pub_sbot.secret_path()).expect("pub secret"))
            .expect("pub secret");

    // The dyndns server seals to the pub sbot's key and lets the Pi in.
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
    testkit::write_secret(&dir.path().join("secret"), &pub_key.to_secret_file());
    let server = TestPub::start_as(dir, pub_key.clone(), &[&pi_key]).await;
    pub_sbot.publish(json!({
        "type": "peach-dyndns", "domain": DOMAIN, "url": server.update_url(), "ttl": 60
    }));
    let invite = pub_sbot.cli(&["invite.create", "1"], None);
    let invite = invite.trim().trim_matches('"').to_string();

    let pi = Pi::new();
    // Only the pub's id: its URL and domain come from its announcement.
    // v2: the pub announces a loopback URL, which only a config that
    // allows private pub URLs believes.
    let text = DaemonConfig::new()
        .secret_path(pi_sbot.secret_path())
        .state_path(pi.dir.path().join("state.json"))
        .fast_timers()
        .registration_name("eb4890")
        .pub_id(&server.keypair.id())
        .allow_private_addresses(true)
        .dns_server(server.dns)
        .dns_timeout_secs(1)
        .rpc_listen("127.0.0.1:0")
        .sbot_address(format!("127.0.0.1:{}", pi_sbot.port()))
        .allow_private_pub_urls(true)
        .to_toml();
    let config = pi.write_config(&text);
    assert!(config.static_pub().is_none());
    let mut d = RunningDaemon::start(&pi, config).await;

    let r = d
        .call("accept_invite", Some(json!({"invite": invite})))
        .await;
    assert_eq!(r["result"], true, "{r}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pubs = d.result("list_pubs", None).await;
        if pubs.as_array().is_some_and(|a| !a.is_empty()) {
            assert_eq!(pubs[0]["pub_id"], json!(pub_key.id()), "{pubs}");
            assert_eq!(pubs[0]["origin"], "sbot");
            assert_eq!(pubs[0]["url"], json!(server.update_url()));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the announcement never arrived"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    d.result("update_now", None).await;
    d.wait_until("online", Duration::from_secs(30), |s| {
        s["state"] == "online"
    })
    .await;
    assert_eq!(
        testkit::dig(server.dns, "eb4890.peach.dinosaur.is", "A")
            .time_secs(1)
            .short(),
        ["127.0.0.1"]
    );
    d.stop().await;
}
