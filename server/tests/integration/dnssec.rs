//! DNSSEC with real BIND: the zone `init --dnssec` writes, served by
//! `named` and written through `bind-local`, signs every update (`dig
//! +dnssec` shows RRSIGs, `delv` with the zone's key as trust anchor
//! validates); the same through a signing secondary of the embedded DNS
//! (the snippet of docs/operator.md); and `check` reports a lagging
//! secondary and a missing signature.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_server::graph::Allowlist;
use peach_dyndns_server::operator::{self, Finding};
use testkit::{Named, NamedWith, TsigKey};

use crate::common::*;
use crate::secondary::{secondary_conf, tables, Primary, XFR_KEY};

/// How long named may take to sign a change (inline signing runs right
/// after the update or transfer; a loaded machine is slower).
const SIGNING_WAIT: Duration = Duration::from_secs(20);

/// `dig +dnssec +short` lines for `name A` at `addr`.
fn signed_answer(addr: SocketAddr, name: &str) -> Vec<String> {
    testkit::dig(addr, name, "A")
        .norecurse()
        .flag("+dnssec")
        .short()
}

/// Waits until `name` has `ip` and an RRSIG over it at `addr`; the lines.
fn wait_signed(addr: SocketAddr, name: &str, ip: &str) -> Vec<String> {
    let start = Instant::now();
    loop {
        let lines = signed_answer(addr, name);
        if lines.iter().any(|l| l == ip) && lines.iter().any(|l| l.starts_with("A 13 ")) {
            return lines;
        }
        assert!(
            start.elapsed() < SIGNING_WAIT,
            "no signed {ip} for {name} at {addr} within {SIGNING_WAIT:?}: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `delv` trust-anchor file holding the zone's key-signing key, as
/// `addr` serves it.
fn trust_anchor(dir: &Path, addr: SocketAddr) -> PathBuf {
    let keys = testkit::dig(addr, DOMAIN, "DNSKEY").norecurse().short();
    let ksk = keys
        .iter()
        .find(|k| k.starts_with("257 "))
        .unwrap_or_else(|| panic!("no key-signing key at {addr}: {keys:?}"));
    let fields: Vec<&str> = ksk.split_whitespace().collect();
    let text = format!(
        "trust-anchors {{\n\t{DOMAIN}. static-key {} {} {} \"{}\";\n}};\n",
        fields[0],
        fields[1],
        fields[2],
        fields[3..].concat()
    );
    let path = dir.join(format!("anchor-{}", addr.port()));
    std::fs::write(&path, text).expect("anchor file");
    path
}

/// `delv` for `name A` at `addr` with `anchor`: its output.
fn delv(addr: SocketAddr, anchor: &Path, name: &str) -> String {
    let out = Command::new("delv")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string()])
        .arg("-a")
        .arg(anchor)
        .arg(format!("+root={DOMAIN}"))
        .args([name, "A"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run delv ({e}); it is in Debian's bind9-dnsutils (scripts/install-test-deps)")
        });
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn print(findings: &[Finding]) {
    for f in findings {
        println!("check: {f}");
    }
}

#[test]
fn init_dnssec_signs_every_update_through_bind_local_and_delv_validates() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let report = operator::init(&operator::InitArgs {
        domain: DOMAIN.into(),
        // Resolved by `check` from /etc/hosts: no query leaves the machine.
        nameservers: vec!["localhost".into()],
        hostmaster: None,
        zone_file: Some(d.join("db.peach.dinosaur.is")),
        conf_file: d.join("named.conf.peach-dyndns"),
        key_file: d.join("peach-dyndns.key"),
        force: false,
        // named-checkzone and named-checkconf run on what it wrote.
        skip_checks: false,
        dnssec: true,
    })
    .expect("init --dnssec");
    assert!(report.contains("named-checkconf: OK"), "{report}");
    let conf = std::fs::read_to_string(d.join("named.conf.peach-dyndns")).expect("conf");
    assert!(conf.contains("dnssec-policy default;"), "{conf}");
    // The lines docs/operator.md shows are the ones init writes.
    assert_eq!(
        crate::secondary::snippet("init-dnssec"),
        operator::dnssec_lines(Path::new("/var/lib/bind/db.peach.dinosaur.is"))
    );
    let named = NamedWith::start(DOMAIN, testkit::free_port(), &conf, &[]);

    let pi = Keypair::generate();
    let tables = format!(
        "[dns]\nbackend = \"bind-local\"\nserver = \"{}\"\nsession_key = {}",
        named.addr(),
        testkit::toml_string(named.dir().join("session.key").display())
    );
    let p = pub_with(
        Arc::new(Allowlist::new([pi.public()])),
        "dnssec = true",
        &tables,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let msg = update(&pi, "eb4890", Ipv4Addr::new(24, 12, 12, 12), 1);
    let (status, json, _) = rt.block_on(post(&p.state, &body(&msg, &pi, &p.keypair)));
    assert_eq!(status, 200, "{json}");
    let fqdn = format!("eb4890.{DOMAIN}");
    let lines = wait_signed(named.addr(), &fqdn, "24.12.12.12");
    println!("dig +dnssec: {lines:?}");
    let anchor = trust_anchor(d, named.addr());
    let out = delv(named.addr(), &anchor, &fqdn);
    assert!(
        out.contains("; fully validated"),
        "delv:\n{out}\n{}",
        named.log_tail()
    );
    assert!(out.contains("24.12.12.12"), "{out}");
    // A changed address is signed again.
    let msg = update(&pi, "eb4890", Ipv4Addr::new(24, 12, 12, 13), 2);
    assert_eq!(
        rt.block_on(post(&p.state, &body(&msg, &pi, &p.keypair))).0,
        200
    );
    wait_signed(named.addr(), &fqdn, "24.12.12.13");
    assert!(delv(named.addr(), &anchor, &fqdn).contains("; fully validated"));
    // check sees the signatures.
    let findings = rt.block_on(operator::check_dns(&p.state.config));
    print(&findings);
    assert!(
        findings.iter().any(|f| f.ok && f.what.contains("signed")),
        "{findings:?}"
    );
}

#[test]
fn a_signing_secondary_of_the_embedded_dns_serves_validating_answers() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = TsigKey::generate(XFR_KEY);
    let key_file = dir.path().join("peach-xfr.key");
    testkit::write_secret(&key_file, &key.to_conf());
    let (port, secondary_port) = (testkit::free_port(), testkit::free_port());
    let pi = Keypair::generate();
    let primary = Primary::start(
        dir.path(),
        &tables(port, secondary_port, &key_file, true, &pi),
    );
    let secondary = NamedWith::start(
        DOMAIN,
        secondary_port,
        &secondary_conf("signing-secondary.conf", port, &key),
        &[],
    );
    let fqdn = format!("eb4890.{DOMAIN}");
    let started = Instant::now();
    primary.post(&pi, "eb4890", Some(Ipv4Addr::new(24, 12, 12, 12)), 1);
    let lines = wait_signed(secondary.addr(), &fqdn, "24.12.12.12");
    println!(
        "update → signed at the secondary after {:?}: {lines:?}",
        started.elapsed()
    );
    let anchor = trust_anchor(dir.path(), secondary.addr());
    let out = delv(secondary.addr(), &anchor, &fqdn);
    assert!(
        out.contains("; fully validated"),
        "delv:\n{out}\n{}",
        secondary.log_tail()
    );
    let findings = primary
        .rt
        .block_on(operator::check_dns(&primary.state.config));
    print(&findings);
    assert!(
        findings.iter().any(|f| f.ok && f.what.contains("current")),
        "{findings:?}"
    );
    assert!(
        findings.iter().any(|f| f.ok && f.what.contains("signed")),
        "{findings:?}"
    );
    primary.stop();
}

#[test]
fn check_reports_a_lagging_secondary_and_a_missing_signature() {
    // A named that serves the zone on its own (serial 1, unsigned), listed
    // as a signing secondary: it never follows, and it signs nothing.
    let stale = Named::start();
    let dir = tempfile::tempdir().expect("tmp");
    let key_file = dir.path().join("peach-xfr.key");
    testkit::write_secret(&key_file, &TsigKey::generate(XFR_KEY).to_conf());
    let pi = Keypair::generate();
    let primary = Primary::start(
        dir.path(),
        &tables(testkit::free_port(), stale.port(), &key_file, true, &pi),
    );
    primary.post(&pi, "eb4890", Some(Ipv4Addr::new(24, 12, 12, 12)), 1);
    let findings = primary
        .rt
        .block_on(operator::check_dns(&primary.state.config));
    print(&findings);
    let problem = |needle: &str| {
        findings
            .iter()
            .find(|f| !f.ok && f.what.contains(needle))
            .unwrap_or_else(|| panic!("no problem with {needle:?} in {findings:?}"))
            .clone()
    };
    let lag = problem("lags behind");
    assert!(lag.what.contains(&stale.addr().to_string()), "{lag}");
    assert!(lag.what.contains("serial 1,"), "{lag}");
    assert!(
        lag.fix.as_deref().unwrap_or("").contains("primary"),
        "{lag}"
    );
    let unsigned = problem("without DNSSEC signatures");
    assert!(
        unsigned
            .fix
            .as_deref()
            .unwrap_or("")
            .contains("dnssec-policy default"),
        "{unsigned}"
    );
    assert!(
        findings
            .iter()
            .any(|f| f.ok && f.what.starts_with("name server localhost")),
        "{findings:?}"
    );
    primary.stop();
}
