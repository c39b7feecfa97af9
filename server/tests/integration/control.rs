//! Operator commands act in the running server at once (issue 10):
//! `revoke` with the embedded DNS used to edit only the command's own copy
//! of the zone, so the name kept resolving.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use peach_dyndns_protocol::identity::Keypair;

use crate::common::*;
use crate::serve::{post_http, start};

const BIN: &str = env!("CARGO_BIN_EXE_peach-dyndns-server");

/// The config file the operator's command reads: the same secret,
/// registry and control socket as the running pub.
fn operator_config(p: &Pub) -> std::path::PathBuf {
    let dir = p.dir.path();
    let text = testkit::ServerConfig::new(DOMAIN)
        .secret(dir.join("secret"))
        .database(dir.join("registry.sqlite3"))
        .top(&format!(
            "control_socket = {}",
            testkit::toml_string(dir.join("control.sock").display())
        ))
        .dns_embedded("127.0.0.1:0")
        .to_toml();
    let path = dir.join("operator.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn run(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_reaches_the_running_server_and_the_name_stops_resolving() {
    let pi = Keypair::generate();
    let p = embedded_pub(&[&pi], "");
    let server = start(&p).await;
    let msg = update(&pi, "eb4890", Ipv4Addr::new(24, 12, 12, 12), 1);
    let (status, json) = post_http(server.http, body(&msg, &pi, &p.keypair)).await;
    assert_eq!(status, 200, "{json}");
    let dns = server.dns;
    let fqdn = "eb4890.peach.dinosaur.is";
    let before = tokio::task::spawn_blocking(move || testkit::dig(dns, fqdn, "A").short())
        .await
        .expect("dig");
    assert_eq!(before, ["24.12.12.12"]);

    let config = operator_config(&p);
    let revoked = Instant::now();
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&config, &["revoke", "eb4890"]))
        .await
        .expect("revoke");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("in the running server"), "{out}");
    let after = tokio::task::spawn_blocking(move || testkit::dig(dns, fqdn, "A").short())
        .await
        .expect("dig");
    assert_eq!(after, Vec::<String>::new(), "the name no longer resolves");
    // The command (a process start included) and the first query after it.
    assert!(
        revoked.elapsed() < Duration::from_secs(3),
        "{:?}",
        revoked.elapsed()
    );
    assert_eq!(p.state.registry.get("eb4890").expect("get"), None);

    // reset-seq goes the same way.
    let config = operator_config(&p);
    let key = pi.id();
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&config, &["reset-seq", &key]))
        .await
        .expect("reset-seq");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("its last seq was 1"), "{out}");
    assert_eq!(p.state.registry.last_seq(&pi.id()).expect("seq"), None);

    // A name that is not registered: refused by the server, exit 1.
    let config = operator_config(&p);
    let (code, _, err) = tokio::task::spawn_blocking(move || run(&config, &["revoke", "nobody"]))
        .await
        .expect("revoke");
    assert_eq!(code, 1);
    assert!(err.contains("not registered"), "{err}");
    server.stop().await;

    // With no server running, the command works on the registry.
    let entry = peach_dyndns_server::registry::Entry {
        name: "spare".into(),
        owner: pi.id(),
        ip: Some(Ipv4Addr::new(24, 1, 1, 1)),
        ip6: None,
        ttl: 60,
        token_sha256: None,
        created_ms: 1,
        updated_ms: 1,
    };
    p.state
        .registry
        .commit_set(&entry, 5)
        .await
        .expect("commit");
    assert!(
        !p.dir.path().join("control.sock").exists(),
        "removed at stop"
    );
    let config = operator_config(&p);
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&config, &["revoke", "spare"]))
        .await
        .expect("revoke");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no server was running"), "{out}");
    assert_eq!(p.state.registry.get("spare").expect("get"), None);
}
