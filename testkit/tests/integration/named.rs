//! BIND `named`: start, updates with the session key and with TSIG, a
//! secondary that follows by NOTIFY and IXFR, restart, and failure when the
//! binary is missing.

use std::time::Duration;

use testkit::{Error, Named};

/// How long a secondary may take to see an update: NOTIFY and IXFR on
/// loopback take milliseconds; a busy CI machine gets slack.
const PROPAGATION: Duration = Duration::from_secs(20);

#[test]
fn starts_and_serves_soa_and_ns() {
    let named = Named::start();
    assert_eq!(named.zone(), "peach.dinosaur.is");
    let soa = named.dig("peach.dinosaur.is", "SOA");
    assert_eq!(soa.len(), 1, "one SOA: {soa:?}");
    assert!(soa[0].starts_with("ns1.peach.dinosaur.is. "), "{soa:?}");
    assert_eq!(
        named.dig("peach.dinosaur.is", "NS"),
        ["ns1.peach.dinosaur.is."]
    );
    assert!(
        named.session_key_path().is_file(),
        "named writes the session key"
    );
    let session = named.session_key();
    assert_eq!(session.name, "local-ddns");
    assert_eq!(session.algorithm, "hmac-sha256");
    assert_eq!(named.tsig_key().secret_bytes().len(), 32);
}

#[test]
fn session_key_update_via_nsupdate_local() {
    let named = Named::start();
    named.nsupdate_local(
        "update add pi.peach.dinosaur.is 60 A 192.0.2.10\n\
         update add pi.peach.dinosaur.is 60 AAAA 2001:db8::10\n\
         send\n",
    );
    assert_eq!(named.dig("pi.peach.dinosaur.is", "A"), ["192.0.2.10"]);
    assert_eq!(named.dig("pi.peach.dinosaur.is", "AAAA"), ["2001:db8::10"]);
}

#[test]
fn tsig_update_via_nsupdate_k() {
    let named = Named::start();
    named.nsupdate_tsig(
        "update add router.peach.dinosaur.is 60 A 192.0.2.20\n\
         update add router.peach.dinosaur.is 60 AAAA 2001:db8::20\n\
         send\n",
    );
    assert_eq!(named.dig("router.peach.dinosaur.is", "A"), ["192.0.2.20"]);
    assert_eq!(
        named.dig("router.peach.dinosaur.is", "AAAA"),
        ["2001:db8::20"]
    );
}

#[test]
fn update_with_a_wrong_tsig_secret_is_refused() {
    let named = Named::start();
    let mut bad = named.tsig_key().clone();
    bad.secret = testkit::TsigKey::generate("x").secret;
    let key_file = named.dir().join("bad.key");
    std::fs::write(&key_file, bad.to_conf()).expect("write bad key file");
    let out = std::process::Command::new("nsupdate")
        .arg("-k")
        .arg(&key_file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            let script = format!(
                "server 127.0.0.1 {}\nupdate add evil.peach.dinosaur.is 60 A 192.0.2.66\nsend\n",
                named.port()
            );
            child
                .stdin
                .take()
                .expect("nsupdate stdin")
                .write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run nsupdate");
    assert!(!out.status.success(), "a wrong secret must be refused");
    assert!(named.dig("evil.peach.dinosaur.is", "A").is_empty());
}

#[test]
fn custom_zone() {
    let named = Named::builder().zone("dyn.example.test").start();
    named.nsupdate_local("update add a.dyn.example.test 60 A 192.0.2.1\nsend\n");
    assert_eq!(named.dig("a.dyn.example.test", "A"), ["192.0.2.1"]);
    // Outside the zone: refused, and the error says what nsupdate said.
    let err = named
        .try_nsupdate_local("update add a.other.test 60 A 192.0.2.1\nsend\n")
        .expect_err("an update outside the zone fails");
    assert!(matches!(err, Error::Command { .. }), "{err}");
}

#[test]
fn secondary_follows_updates_by_notify() {
    let primary = Named::start();
    primary.nsupdate_local("update add before.peach.dinosaur.is 60 A 192.0.2.1\nsend\n");
    let secondary = Named::start_secondary(&primary);
    assert!(secondary.is_secondary());
    assert_ne!(secondary.port(), primary.port());
    // The initial transfer brought the record that was there before.
    secondary.wait_for("before.peach.dinosaur.is", "A", &["192.0.2.1"], PROPAGATION);

    primary.nsupdate_local("update add pi.peach.dinosaur.is 60 A 192.0.2.30\nsend\n");
    secondary.wait_for("pi.peach.dinosaur.is", "A", &["192.0.2.30"], PROPAGATION);
    primary.nsupdate_tsig(
        "update delete pi.peach.dinosaur.is A\n\
         update add pi.peach.dinosaur.is 60 A 192.0.2.31\n\
         send\n",
    );
    secondary.wait_for("pi.peach.dinosaur.is", "A", &["192.0.2.31"], PROPAGATION);
    // The changes travelled as increments, not whole-zone copies.
    let log = std::fs::read_to_string(primary.log_path()).expect("primary log");
    assert!(
        log.contains("IXFR started"),
        "primary served IXFR:\n{}",
        primary.log_tail()
    );
}

#[test]
fn restart_keeps_updates_and_renews_session_key() {
    let mut named = Named::start();
    named.nsupdate_local("update add kept.peach.dinosaur.is 60 A 192.0.2.40\nsend\n");
    let key_before = named.session_key();
    let pid_before = named.pid();
    named.restart();
    assert_ne!(named.pid(), pid_before);
    assert_eq!(named.dig("kept.peach.dinosaur.is", "A"), ["192.0.2.40"]);
    assert_ne!(named.session_key().secret, key_before.secret);
    named.nsupdate_local("update add after.peach.dinosaur.is 60 A 192.0.2.41\nsend\n");
    assert_eq!(named.dig("after.peach.dinosaur.is", "A"), ["192.0.2.41"]);
}

#[test]
fn drop_stops_named() {
    let named = Named::start();
    let pid = named.pid();
    let dir = named.dir().to_path_buf();
    drop(named);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "named (pid {pid}) still running after drop"
    );
    assert!(!dir.exists(), "temporary directory removed");
}

#[test]
fn missing_named_binary_fails_with_a_clear_message() {
    let err = Named::builder()
        .binary("/nonexistent/sbin/named")
        .try_start()
        .expect_err("a missing named must fail, never skip");
    let msg = err.to_string();
    assert!(matches!(err, Error::Missing { .. }), "{msg}");
    assert!(msg.contains("named"), "{msg}");
    assert!(msg.contains("/nonexistent/sbin/named"), "{msg}");
    assert!(msg.contains("scripts/test"), "{msg}");
}

#[test]
#[should_panic(expected = "scripts/test")]
fn missing_named_binary_panics_in_the_convenience_api() {
    let _named = Named::builder().binary("/nonexistent/sbin/named").start();
}

#[test]
fn named_that_exits_at_once_reports_its_log() {
    // `false` exits 1 immediately: the start fails with the exit status
    // instead of waiting out the timeout.
    let err = Named::builder()
        .binary("/bin/false")
        .try_start()
        .expect_err("a named that exits must fail the start");
    let msg = err.to_string();
    assert!(matches!(err, Error::NotReady { .. }), "{msg}");
    assert!(msg.contains("exited"), "{msg}");
}
