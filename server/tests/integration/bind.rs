//! The server against a real BIND `named`: updates through `bind-local`,
//! `nsupdate` and `rfc2136` reach the zone; a restart re-applies the
//! registry.

use std::net::Ipv4Addr;
use std::sync::Arc;

use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_protocol::message::Op;
use peach_dyndns_server::graph::Allowlist;
use testkit::Named;

use crate::common::*;

fn bind_pub(named: &Named, pi: &Keypair, tables: &str) -> Pub {
    let _ = named;
    pub_with(Arc::new(Allowlist::new([pi.public()])), "", tables)
}

fn bind_local(named: &Named) -> String {
    format!(
        "[dns]\nbackend = \"bind-local\"\nserver = \"{}\"\nsession_key = \"{}\"",
        named.addr(),
        named.session_key_path().display()
    )
}

async fn update_release_cycle(named: &Named, tables: &str, name: &str) {
    let pi = Keypair::generate();
    let p = bind_pub(named, &pi, tables);
    let mut msg = update(&pi, name, Ipv4Addr::new(24, 12, 12, 12), 1);
    msg.ip6 = Some("2a01:4f8::7".parse().expect("ip6"));
    let (status, json, _) = post(&p.state, &body(&msg, &pi, &p.keypair)).await;
    assert_eq!(status, 200, "{json}");
    let fqdn = format!("{name}.{DOMAIN}");
    assert_eq!(named.dig(&fqdn, "A"), ["24.12.12.12"]);
    assert_eq!(named.dig(&fqdn, "AAAA"), ["2a01:4f8::7"]);
    // Only an A now: the AAAA goes.
    let msg = update(&pi, name, Ipv4Addr::new(24, 12, 12, 13), 2);
    assert_eq!(post(&p.state, &body(&msg, &pi, &p.keypair)).await.0, 200);
    assert_eq!(named.dig(&fqdn, "A"), ["24.12.12.13"]);
    assert!(named.dig(&fqdn, "AAAA").is_empty());
    let mut release = update(&pi, name, Ipv4Addr::new(24, 12, 12, 13), 3);
    release.op = Op::Release;
    release.ip = None;
    assert_eq!(
        post(&p.state, &body(&release, &pi, &p.keypair)).await.0,
        200
    );
    assert!(named.dig(&fqdn, "A").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_local_sets_and_releases() {
    let named = Named::start();
    update_release_cycle(&named, &bind_local(&named), "viabindlocal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsupdate_sets_and_releases() {
    let named = Named::start();
    let tables = format!(
        "[dns]\nbackend = \"nsupdate\"\nport = {}\nsession_key = \"{}\"",
        named.port(),
        named.session_key_path().display()
    );
    update_release_cycle(&named, &tables, "viansupdate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc2136_sets_and_releases() {
    let named = Named::start();
    let tables = format!(
        "[dns]\nbackend = \"rfc2136\"\nserver = \"{}\"\nkey_name = \"{}\"\nkey_file = \"{}\"",
        named.addr(),
        named.tsig_key().name,
        named.tsig_key_path().display()
    );
    update_release_cycle(&named, &tables, "viarfc2136").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reapplies_the_registry_to_bind() {
    let named = Named::start();
    let pi = Keypair::generate();
    let p = bind_pub(&named, &pi, &bind_local(&named));
    let msg = update(&pi, "eb4890", Ipv4Addr::new(24, 5, 5, 5), 1);
    assert_eq!(post(&p.state, &body(&msg, &pi, &p.keypair)).await.0, 200);
    let fqdn = format!("eb4890.{DOMAIN}");
    // The record vanishes behind the server's back (a zone restored from
    // an old backup, say), and one nobody holds appears.
    named.nsupdate_local(&format!("update delete {fqdn} A\nsend\n"));
    assert!(named.dig(&fqdn, "A").is_empty());
    let stray = format!("stray.{DOMAIN}");
    named.nsupdate_local(&format!("update add {stray} 60 A 192.0.2.66\nsend\n"));
    // The next start re-applies the registry, and reads the zone back with
    // the session key to remove the stray.
    let (state, _) = peach_dyndns_server::build_state(p.state.config.clone()).expect("state");
    assert_eq!(state.reapply_registry().await.expect("reapply"), 1);
    assert_eq!(named.dig(&fqdn, "A"), ["24.5.5.5"]);
    assert!(
        named.dig(&stray, "A").is_empty(),
        "bind-local removed the stray"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsupdate_backend_removes_records_the_registry_does_not_hold() {
    let named = Named::start();
    let tables = format!(
        "[dns]\nbackend = \"nsupdate\"\nport = {}\nsession_key = \"{}\"",
        named.port(),
        named.session_key_path().display()
    );
    let pi = Keypair::generate();
    let p = bind_pub(&named, &pi, &tables);
    let msg = update(&pi, "eb4890", Ipv4Addr::new(24, 5, 5, 5), 1);
    assert_eq!(post(&p.state, &body(&msg, &pi, &p.keypair)).await.0, 200);
    let stray = format!("stray.{DOMAIN}");
    named.nsupdate_local(&format!("update add {stray} 60 A 192.0.2.66\nsend\n"));
    let (state, _) = peach_dyndns_server::build_state(p.state.config.clone()).expect("state");
    assert_eq!(state.reapply_registry().await.expect("reapply"), 1);
    assert!(
        named.dig(&stray, "A").is_empty(),
        "nsupdate removed the stray"
    );
    assert_eq!(named.dig(&format!("eb4890.{DOMAIN}"), "A"), ["24.5.5.5"]);
    // The zone's own name server (ns1, in the zone) keeps its address.
    assert_eq!(named.dig(&format!("ns1.{DOMAIN}"), "A"), ["127.0.0.1"]);
}

/// Runs `nsupdate` against `named` with its session key (any record type
/// anywhere in the zone: what an operator editing by hand can do).
fn nsupdate_by_hand(named: &testkit::NamedWith, lines: &str) {
    use std::io::Write as _;
    let script = format!(
        "server 127.0.0.1 {}\nzone {DOMAIN}.\n{lines}\nsend\n",
        named.port()
    );
    let mut child = std::process::Command::new("nsupdate")
        .arg("-k")
        .arg(named.dir().join("session.key"))
        .arg("-t")
        .arg("10")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nsupdate (bind9-dnsutils)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script");
    let out = child.wait_with_output().expect("nsupdate");
    assert!(
        out.status.success(),
        "nsupdate failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `init`'s zone and key, served by a real named with `zone_statement`
/// (init's snippet, or a changed one), and a pub on it with the
/// `rfc2136` backend as `init` tells the operator to configure it.
fn init_zone(
    dir: &std::path::Path,
    change: impl Fn(String) -> String,
) -> (testkit::NamedWith, String) {
    use peach_dyndns_server::operator;
    operator::init(&operator::InitArgs {
        domain: DOMAIN.into(),
        nameservers: vec!["ns1.dinosaur.is".into()],
        hostmaster: None,
        zone_file: Some(dir.join("db.peach.dinosaur.is")),
        conf_file: dir.join("named.conf.peach-dyndns"),
        key_file: dir.join("peach-dyndns.key"),
        force: false,
        // named-checkzone and named-checkconf pass on what it wrote.
        skip_checks: false,
        dnssec: false,
    })
    .expect("init");
    let conf = std::fs::read_to_string(dir.join("named.conf.peach-dyndns")).expect("conf");
    let named = testkit::NamedWith::start(DOMAIN, testkit::free_port(), &change(conf), &[]);
    let tables = format!(
        "[dns]\nbackend = \"rfc2136\"\nserver = \"{}\"\nkey_name = \"peach-dyndns\"\nkey_file = {}",
        named.addr(),
        testkit::toml_string(dir.join("peach-dyndns.key").display())
    );
    (named, tables)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_removes_records_of_names_the_registry_does_not_hold() {
    let dir = tempfile::tempdir().expect("tmp");
    let (named, tables) = init_zone(dir.path(), |conf| conf);
    let pi = Keypair::generate();
    let p = pub_with(
        Arc::new(Allowlist::new([pi.public()])),
        "reserved = [\"keepme\"]\npublic_url = \"https://dyn.peach.dinosaur.is/update\"",
        &tables,
    );
    let msg = update(&pi, "eb4890", Ipv4Addr::new(24, 5, 5, 5), 1);
    let (status, json, _) = post(&p.state, &body(&msg, &pi, &p.keypair)).await;
    assert_eq!(status, 200, "{json}");
    let z = DOMAIN;
    let by_hand = format!(
        // Dynamic-looking, held by nobody: these go.
        "update add stray.{z}. 60 A 192.0.2.66\n\
         update add stray.{z}. 60 AAAA 2001:db8::66\n\
         update add _acme-challenge.gone.{z}. 60 TXT \"token\"\n\
         update add _acme-challenge.eb4890.{z}. 60 TXT \"held\"\n\
         update add {z}. 60 A 192.0.2.1\n\
         update add {z}. 60 NS nsx.{z}.\n\
         update add nsx.{z}. 60 A 192.0.2.53\n\
         update add www.{z}. 60 A 192.0.2.80\n\
         update add keepme.{z}. 60 A 192.0.2.81\n\
         update add dyn.{z}. 60 A 192.0.2.82\n\
         update add mail2.{z}. 60 A 192.0.2.25\n\
         update add mail2.{z}. 60 MX 10 mail2.{z}.\n\
         update add host.deep.{z}. 60 A 192.0.2.26\n\
         update add deep.{z}. 60 A 192.0.2.27"
    );
    nsupdate_by_hand(&named, &by_hand);
    assert_eq!(named.dig(&format!("stray.{z}"), "A"), ["192.0.2.66"]);
    // The next start: build the state again and re-apply, as `run` does.
    let (state, _) = peach_dyndns_server::build_state(p.state.config.clone()).expect("state");
    assert_eq!(state.reapply_registry().await.expect("reapply"), 1);
    let dig = |name: &str, rtype: &str| named.dig(&format!("{name}{z}"), rtype);
    assert!(dig("stray.", "A").is_empty(), "the stray A is gone");
    assert!(dig("stray.", "AAAA").is_empty(), "the stray AAAA is gone");
    assert!(
        dig("_acme-challenge.gone.", "TXT").is_empty(),
        "a challenge of a name nobody holds is gone"
    );
    // What stays: the registered name and its challenge, the apex, its
    // NS and SOA, the in-zone name server, reserved and configured labels,
    // the public_url host, and labels holding more than addresses.
    assert_eq!(dig("eb4890.", "A"), ["24.5.5.5"]);
    assert_eq!(dig("_acme-challenge.eb4890.", "TXT"), ["\"held\""]);
    assert_eq!(dig("", "A"), ["192.0.2.1"]);
    let mut ns = dig("", "NS");
    ns.sort();
    assert_eq!(ns, ["ns1.dinosaur.is.", format!("nsx.{z}.").as_str()]);
    assert_eq!(dig("", "SOA").len(), 1);
    for (name, ip) in [
        ("nsx.", "192.0.2.53"),
        ("www.", "192.0.2.80"),
        ("keepme.", "192.0.2.81"),
        ("dyn.", "192.0.2.82"),
        ("mail2.", "192.0.2.25"),
        ("deep.", "192.0.2.27"),
        ("host.deep.", "192.0.2.26"),
    ] {
        assert_eq!(dig(name, "A"), [ip], "{name} stays");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_transfer_leaves_the_zone_and_the_start_goes_on() {
    let dir = tempfile::tempdir().expect("tmp");
    // A zone statement that allows no transfer (BIND 9.18's default is
    // `any`, so only an explicit list can leave the server's key out).
    let (named, tables) = init_zone(dir.path(), |conf| {
        let allowed = "allow-transfer { key peach-dyndns; key local-ddns; };";
        assert!(conf.contains(allowed), "{conf}");
        conf.replace(allowed, "allow-transfer { none; };")
    });
    let pi = Keypair::generate();
    let p = pub_with(Arc::new(Allowlist::new([pi.public()])), "", &tables);
    let z = DOMAIN;
    nsupdate_by_hand(&named, &format!("update add stray.{z}. 60 A 192.0.2.66"));
    let (state, _) = peach_dyndns_server::build_state(p.state.config.clone()).expect("state");
    let err = state
        .dns
        .dynamic_labels()
        .await
        .expect_err("the transfer is refused");
    let text = err.to_string();
    assert!(
        text.contains("REFUSED") && text.contains("allow-transfer { key \"peach-dyndns\"; };"),
        "the warning says what to add: {text}"
    );
    assert_eq!(
        state.reapply_registry().await.expect("the start goes on"),
        0
    );
    assert_eq!(named.dig(&format!("stray.{z}"), "A"), ["192.0.2.66"]);
}
