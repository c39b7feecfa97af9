//! ssb-server: start, identity, publish and read back, follow and block,
//! invites, two side by side, restart, and failure when it is missing.

use serde_json::json;
use testkit::{Error, Sbot};

#[test]
fn starts_and_whoami_matches_secret() {
    let sbot = Sbot::start();
    let id = sbot.whoami();
    assert_eq!(id, sbot.id());
    assert_eq!(sbot.secret()["id"], id.as_str());
    assert_eq!(sbot.secret()["curve"], "ed25519");
    assert!(id.starts_with('@') && id.ends_with(".ed25519"), "{id}");
    assert!(sbot.secret_path().is_file());
    assert!(sbot.address().starts_with("net:127.0.0.1:"));
    assert!(sbot
        .address()
        .ends_with(&format!("~shs:{}", &id[1..id.len() - 8])));
    // Only loopback: the shs port is bound on 127.0.0.1.
    std::net::TcpStream::connect(("127.0.0.1", sbot.port())).expect("shs port answers");
}

#[test]
fn publish_then_messages_by_type() {
    let sbot = Sbot::start();
    let content = json!({
        "type": "peach-dyndns",
        "domain": "peach.dinosaur.is",
        "url": "http://127.0.0.1:8053/update",
        "ttl": 60,
        // Stays a string: content goes in as JSON, not as CLI flags.
        "name": "0123"
    });
    let msg = sbot.publish(content.clone());
    assert_eq!(msg["value"]["author"], sbot.id());
    assert_eq!(msg["value"]["content"], content);
    let found = sbot.messages_by_type("peach-dyndns");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["key"], msg["key"]);
    assert_eq!(found[0]["value"]["content"]["name"], "0123");
    assert!(sbot.messages_by_type("no-such-type").is_empty());
}

#[test]
fn follow_and_block() {
    let pub_ = Sbot::start();
    let pi = Sbot::start(); // A second sbot beside the first.
    assert_ne!(pub_.id(), pi.id());
    assert_ne!(pub_.port(), pi.port());
    assert!(!pub_.is_following(pub_.id(), pi.id()));
    pub_.follow(pi.id());
    assert!(pub_.is_following(pub_.id(), pi.id()));
    assert!(!pub_.is_blocking(pub_.id(), pi.id()));
    pub_.block(pi.id());
    assert!(!pub_.is_following(pub_.id(), pi.id()));
    assert!(pub_.is_blocking(pub_.id(), pi.id()));
    // The other sbot is unaffected and still answers.
    assert_eq!(pi.whoami(), pi.id());
}

#[test]
fn invite_create_gives_a_loopback_invite() {
    let sbot = Sbot::builder().allow_private(true).start();
    let invite = sbot.invite_create(1);
    let prefix = format!("127.0.0.1:{}:{}~", sbot.port(), sbot.id());
    assert!(
        invite.starts_with(&prefix),
        "{invite} should start with {prefix}"
    );
}

#[test]
fn restart_keeps_identity_and_messages() {
    let mut sbot = Sbot::start();
    let id = sbot.id().to_string();
    let pid = sbot.pid();
    sbot.publish(json!({"type": "peach-dyndns", "domain": "peach.dinosaur.is"}));
    sbot.restart();
    assert_ne!(sbot.pid(), pid);
    assert_eq!(sbot.whoami(), id);
    assert_eq!(sbot.messages_by_type("peach-dyndns").len(), 1);
}

#[test]
fn drop_stops_sbot() {
    let sbot = Sbot::start();
    let pid = sbot.pid();
    let home = sbot.home().to_path_buf();
    drop(sbot);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "ssb-server (pid {pid}) still running after drop"
    );
    assert!(!home.exists(), "temporary HOME removed");
}

#[test]
fn cli_errors_carry_the_output() {
    let sbot = Sbot::start();
    let err = sbot
        .try_publish(json!({"type": "x"}))
        .expect_err("a type under 3 characters is invalid");
    assert!(matches!(err, Error::Command { .. }), "{err}");
    assert!(err.to_string().contains("type must be a string"), "{err}");
}

#[test]
fn missing_ssb_server_fails_with_a_clear_message() {
    let err = Sbot::builder()
        .binary("/nonexistent/node_modules/.bin/ssb-server")
        .try_start()
        .expect_err("a missing ssb-server must fail, never skip");
    let msg = err.to_string();
    assert!(matches!(err, Error::Missing { .. }), "{msg}");
    assert!(msg.contains("ssb-server"), "{msg}");
    assert!(msg.contains("scripts/test"), "{msg}");
}
