//! `[acme]` against Let's Encrypt's test CA: the daemon gets a
//! certificate for `eb4890.<zone>` and `*.eb4890.<zone>` from a real Pebble
//! through the real pub (embedded DNS, and bind-local with real named);
//! the chain verifies against Pebble's root; the TXT records are gone
//! afterwards; a renewal replaces the files atomically; a failed order
//! writes nothing and clears its TXT values.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testkit::{Named, Pebble};

use crate::common::*;

/// An order on loopback takes seconds; a loaded CI machine more.
const ORDER_WAIT: Duration = Duration::from_secs(90);

fn acme_table(pebble_dir: &str, ca: &Path, cert_dir: &Path, extra: &str) -> String {
    format!(
        "\n[acme]\nenabled = true\ndirectory_url = {}\nwildcard = true\ncert_dir = {}\nca_file = {}\n{extra}\n",
        testkit::toml_string(pebble_dir),
        testkit::toml_string(cert_dir.display()),
        testkit::toml_string(ca.display()),
    )
}

fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (scripts/install-test-deps installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Splits a PEM chain into its certificates.
fn certificates(chain: &str) -> Vec<String> {
    chain
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|c| c.contains("BEGIN CERTIFICATE"))
        .map(|c| format!("{}\n", c.trim()))
        .collect()
}

/// Checks the files against Pebble's root and the names; returns the leaf's
/// serial.
fn check_files(cert_dir: &Path, pebble: &Pebble, fqdn: &str) -> String {
    check_files_for(
        cert_dir,
        pebble,
        &[fqdn.to_string(), format!("*.{fqdn}")],
        0o640,
    )
}

/// [`check_files`] for any names and key mode.
fn check_files_for(cert_dir: &Path, pebble: &Pebble, names: &[String], key_mode: u32) -> String {
    let work = tempfile::tempdir().expect("tmp");
    let chain = std::fs::read_to_string(cert_dir.join("fullchain.pem")).expect("fullchain.pem");
    let certs = certificates(&chain);
    assert!(certs.len() >= 2, "leaf and intermediate: {chain}");
    std::fs::write(work.path().join("leaf.pem"), &certs[0]).expect("write");
    std::fs::write(work.path().join("rest.pem"), certs[1..].concat()).expect("write");
    std::fs::write(work.path().join("root.pem"), pebble.root_pem()).expect("write");
    let verified = openssl(
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "rest.pem",
            "leaf.pem",
        ],
        work.path(),
    );
    assert!(verified.contains("leaf.pem: OK"), "{verified}");
    let text = openssl(
        &[
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
        work.path(),
    );
    let sans: Vec<&str> = text
        .split([',', '\n'])
        .filter_map(|part| part.trim().strip_prefix("DNS:"))
        .collect();
    assert_eq!(sans, names, "{text}");
    // The key on disk is the certificate's, and only those it is for read it.
    let key = cert_dir.join("privkey.pem");
    let mode = std::fs::metadata(&key)
        .expect("privkey.pem")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, key_mode, "privkey.pem mode");
    let cert_pub = openssl(
        &["x509", "-in", "leaf.pem", "-noout", "-pubkey"],
        work.path(),
    );
    let key_pub = openssl(
        &["pkey", "-in", &key.display().to_string(), "-pubout"],
        work.path(),
    );
    assert_eq!(
        cert_pub, key_pub,
        "privkey.pem is not the certificate's key"
    );
    openssl(
        &["x509", "-in", "leaf.pem", "-noout", "-serial"],
        work.path(),
    )
}

fn txt_at(dns: std::net::SocketAddr, fqdn: &str) -> Vec<String> {
    testkit::dig(dns, &format!("_acme-challenge.{fqdn}"), "TXT")
        .tries(1)
        .short()
}

async fn get_certificate(
    pub_: &TestPub,
    pi: &Pi,
    pebble: &Pebble,
    cert_dir: &Path,
    extra: &str,
) -> Duration {
    let text = pi.config_text(pub_, "", "")
        + &acme_table(
            &pebble.directory_url(),
            &pebble.listener_ca_path(),
            cert_dir,
            extra,
        );
    let config = pi.write_config(&text);
    let started = Instant::now();
    let mut daemon = RunningDaemon::start(pi, config).await;
    let status = daemon
        .wait_until("a certificate", ORDER_WAIT, |st| {
            st["tls"]["state"] == "valid"
        })
        .await;
    let took = started.elapsed();
    let fqdn = format!("eb4890.{DOMAIN}");
    assert_eq!(
        status["tls"]["names"],
        serde_json::json!([fqdn, format!("*.{fqdn}")]),
        "{status}"
    );
    assert!(status["tls"]["not_after"].as_u64().is_some(), "{status}");
    assert!(status["tls"]["last_error"].is_null(), "{status}");
    daemon.stop().await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_pebble_through_the_embedded_pub_and_its_renewal() {
    let pi = Pi::new();
    let pub_ = TestPub::start(&[&pi.keypair]).await;
    let pebble = Pebble::builder().dns_server(pub_.dns).start();
    let cert_dir = pi.dir.path().join("tls");
    let took = get_certificate(&pub_, &pi, &pebble, &cert_dir, "").await;
    eprintln!("acme: enabled = true to certificate on disk: {took:?} (embedded DNS)");
    let fqdn = format!("eb4890.{DOMAIN}");
    let dns = pub_.dns;
    let f = fqdn.clone();
    let txt = tokio::task::spawn_blocking(move || txt_at(dns, &f))
        .await
        .expect("dig");
    assert!(txt.is_empty(), "TXT left behind: {txt:?}");
    let serial = check_files(&cert_dir, &pebble, &fqdn);
    let key_before = std::fs::read(cert_dir.join("privkey.pem")).expect("key");
    let account_before = std::fs::read(cert_dir.join("account.json")).expect("account");

    // Renewal: a window longer than the certificate's life (Pebble's are
    // five years) makes the certificate on disk due at once.
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let reading = reading.clone();
        let path: PathBuf = cert_dir.join("fullchain.pem");
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while reading.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&path).expect("fullchain.pem is always there");
                let n = certificates(&text).len();
                assert!(
                    n >= 2 && text.trim_end().ends_with("-----END CERTIFICATE-----"),
                    "a reader saw a partial fullchain.pem ({n} certificates, {} bytes)",
                    text.len()
                );
                reads += 1;
            }
            reads
        })
    };
    let text = pi.config_text(&pub_, "", "")
        + &acme_table(
            &pebble.directory_url(),
            &pebble.listener_ca_path(),
            &cert_dir,
            "renew_before_days = 3650",
        );
    let config = pi.write_config(&text);
    let mut daemon = RunningDaemon::start(&pi, config).await;
    let deadline = Instant::now() + ORDER_WAIT;
    let renewed = loop {
        let st = daemon.result("status", None).await;
        if st["tls"]["state"] == "valid" || st["tls"]["state"] == "error" {
            let now = check_files(&cert_dir, &pebble, &fqdn);
            if now != serial {
                break now;
            }
            assert!(st["tls"]["last_error"].is_null(), "{st}");
        }
        assert!(Instant::now() < deadline, "no renewal; status {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    daemon.stop().await;
    reading.store(false, Ordering::Relaxed);
    let reads = reader.join().expect("the reader saw only whole files");
    assert!(reads > 0);
    assert_ne!(renewed, serial);
    // The certificate's key and the account are kept across restarts.
    assert_eq!(
        std::fs::read(cert_dir.join("privkey.pem")).expect("key"),
        key_before
    );
    assert_eq!(
        std::fs::read(cert_dir.join("account.json")).expect("account"),
        account_before
    );
    let txt = tokio::task::spawn_blocking(move || txt_at(dns, &fqdn))
        .await
        .expect("dig");
    assert!(txt.is_empty(), "TXT left behind after the renewal: {txt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_pebble_through_bind_local_with_real_named() {
    let named = Named::start();
    let pi = Pi::new();
    let table = format!(
        "backend = \"bind-local\"\nserver = \"{}\"\nsession_key = \"{}\"",
        named.addr(),
        named.session_key_path().display()
    );
    let pub_ = TestPub::start_with_dns(
        &[&pi.keypair],
        PubDns::Other {
            table,
            server: named.addr(),
        },
    )
    .await;
    let pebble = Pebble::builder().dns_server(named.addr()).start();
    let cert_dir = pi.dir.path().join("tls");
    let took = get_certificate(&pub_, &pi, &pebble, &cert_dir, "").await;
    eprintln!("acme: enabled = true to certificate on disk: {took:?} (bind-local, named)");
    let fqdn = format!("eb4890.{DOMAIN}");
    check_files(&cert_dir, &pebble, &fqdn);
    assert!(named
        .dig(&format!("_acme-challenge.{fqdn}"), "TXT")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_order_writes_nothing_and_clears_its_txt_values() {
    let pi = Pi::new();
    let pub_ = TestPub::start(&[&pi.keypair]).await;
    // Pebble asks a DNS server where nothing answers: validation fails.
    let nowhere: std::net::SocketAddr = ([127, 0, 0, 1], testkit::free_port()).into();
    let pebble = Pebble::builder().dns_server(nowhere).start();
    let cert_dir = pi.dir.path().join("tls");
    // A long backoff, so no second order is in flight when DNS is asked.
    let text = pi
        .config_text(&pub_, "", "")
        .replace("backoff_min_secs = 1", "backoff_min_secs = 300")
        .replace("backoff_max_secs = 2", "backoff_max_secs = 600")
        + &acme_table(
            &pebble.directory_url(),
            &pebble.listener_ca_path(),
            &cert_dir,
            "",
        );
    assert!(text.contains("backoff_min_secs = 300"), "{text}");
    let config = pi.write_config(&text);
    let mut daemon = RunningDaemon::start(&pi, config).await;
    let st = daemon
        .wait_until("a failed order", ORDER_WAIT, |st| {
            st["tls"]["state"] == "error"
        })
        .await;
    assert!(
        st["tls"]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{st}"
    );
    assert!(st["tls"]["next_attempt_at"].as_u64().is_some(), "{st}");
    // The update side is unaffected: still online.
    assert_eq!(st["online"], true, "{st}");
    daemon.stop().await;
    assert!(!cert_dir.join("fullchain.pem").exists());
    assert!(!cert_dir.join("privkey.pem").exists());
    let dns = pub_.dns;
    let txt = tokio::task::spawn_blocking(move || txt_at(dns, &format!("eb4890.{DOMAIN}")))
        .await
        .expect("dig");
    assert!(txt.is_empty(), "TXT left behind by a failed order: {txt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_with_the_acme_hook_gets_a_certificate_from_pebble() {
    let certbot = which("certbot");
    let pi = Pi::new();
    let pub_ = TestPub::start(&[&pi.keypair]).await;
    let pebble = Pebble::builder().dns_server(pub_.dns).start();
    // The daemon registers the name first (the hook acts for a name the
    // key holds); ACME itself stays off: certbot does it.
    let hook_dir = pi.dir.path().join("tls");
    let text = pi.config_text(&pub_, "", "")
        + &format!(
            "\n[acme]\nenabled = false\ncert_dir = {}\n",
            testkit::toml_string(hook_dir.display())
        );
    let config = pi.write_config(&text);
    let mut daemon = RunningDaemon::start(&pi, config).await;
    daemon
        .wait_until("online", ORDER_WAIT, |st| st["online"] == true)
        .await;
    daemon.stop().await;

    let fqdn = format!("eb4890.{DOMAIN}");
    let work = pi.dir.path().join("certbot");
    let bin = env!("CARGO_BIN_EXE_peach-dyndns-daemon");
    let config_path = pi.config_path();
    let hook = |op: &str| format!("{bin} -c {} acme-hook {op}", config_path.display());
    let mut cmd = Command::new(certbot);
    cmd.env("REQUESTS_CA_BUNDLE", pebble.listener_ca_path())
        .args(["certonly", "-n", "--server", &pebble.directory_url()])
        .arg("--config-dir")
        .arg(work.join("config"))
        .arg("--work-dir")
        .arg(work.join("work"))
        .arg("--logs-dir")
        .arg(work.join("logs"))
        .args([
            "--register-unsafely-without-email",
            "--agree-tos",
            "--manual",
            "--preferred-challenges",
            "dns",
            "--manual-auth-hook",
            &hook("set"),
            "--manual-cleanup-hook",
            &hook("clear"),
            "-d",
            &fqdn,
            "-d",
            &format!("*.{fqdn}"),
        ]);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("certbot runs"))
        .await
        .expect("join");
    let log = std::fs::read_to_string(work.join("logs/letsencrypt.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "certbot failed: {}\n{}\n--- letsencrypt.log (tail) ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        log.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("acme: certbot with the hook: {:?}", started.elapsed());
    let live = work.join("config/live").join(&fqdn);
    // certbot writes fullchain.pem and privkey.pem like the daemon does;
    // the key's mode is certbot's own (0600), so only the chain is checked.
    let chain =
        std::fs::read_to_string(live.join("fullchain.pem")).expect("certbot's fullchain.pem");
    let check = tempfile::tempdir().expect("tmp");
    let certs = certificates(&chain);
    std::fs::write(check.path().join("leaf.pem"), &certs[0]).expect("write");
    std::fs::write(check.path().join("rest.pem"), certs[1..].concat()).expect("write");
    std::fs::write(check.path().join("root.pem"), pebble.root_pem()).expect("write");
    let verified = openssl(
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "rest.pem",
            "leaf.pem",
        ],
        check.path(),
    );
    assert!(verified.contains("leaf.pem: OK"), "{verified}");
    let dns = pub_.dns;
    let txt = tokio::task::spawn_blocking(move || txt_at(dns, &fqdn))
        .await
        .expect("dig");
    assert!(
        txt.is_empty(),
        "TXT left behind by the cleanup hook: {txt:?}"
    );
}

/// A program the test needs, or a failure saying how to get it.
fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{program}` is missing; scripts/install-test-deps installs it (Debian package {program})")
        })
}

/// `[tls] acme = true`: the pub gets its own certificate for `dyndns.<zone>`
/// from Pebble, answering the DNS-01 challenge in its own embedded zone,
/// and serves it; the challenge is gone afterwards and the certificate is
/// kept across a restart (no second order). The daemon then updates over
/// HTTPS, trusting Pebble's root through `acme.ca_file`; a daemon without
/// that root refuses the pub's certificate and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pubs_own_certificate_from_pebble_then_the_daemon_updates_over_https() {
    let pi = Pi::new();
    let dns = std::net::SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let pebble = Pebble::builder().dns_server(dns).start();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let host = format!("dyndns.{DOMAIN}");
    let https = Https {
        public_url: format!("https://{host}:{}/update", listen.port()),
        table: format!(
            "acme = true\nacme_directory_url = {}\nacme_ca_file = {}\n",
            testkit::toml_string(pebble.directory_url()),
            testkit::toml_string(pebble.listener_ca_path().display()),
        ),
        listen,
    };
    let started = Instant::now();
    let mut pub_ = TestPub::start_https(&[&pi.keypair], dns, https).await;
    let root = pi.dir.path().join("pebble-root.pem");
    std::fs::write(&root, pebble.root_pem()).expect("write root");
    // A client that knows where the name is and trusts only Pebble's root.
    let pinned = |ca: Option<&Path>| {
        peach_dyndns_daemon::pubapi::http_client_builder(Duration::from_secs(5), ca)
            .expect("client")
            .resolve(&host, listen)
            .build()
            .expect("client")
    };
    let health = format!("https://{host}:{}/health", listen.port());
    let trusting = pinned(Some(&root));
    let mut answered = None;
    while started.elapsed() < ORDER_WAIT {
        if let Ok(r) = trusting.get(&health).send().await {
            answered = Some(r.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    assert_eq!(
        answered,
        Some(reqwest::StatusCode::OK),
        "no HTTPS answer with a certificate from Pebble within {ORDER_WAIT:?}; pebble: {}",
        pebble.log_tail()
    );
    eprintln!("server acme = true: start to certificate served: {took:?}");
    let tls_dir = pub_.dir.path().join("tls");
    check_files_for(&tls_dir, &pebble, std::slice::from_ref(&host), 0o600);
    let h = host.clone();
    let txt = tokio::task::spawn_blocking(move || txt_at(dns, &h))
        .await
        .expect("dig");
    assert!(
        txt.is_empty(),
        "the server's challenge was left behind: {txt:?}"
    );

    // A restart serves the certificate on disk at once, without ordering.
    let chain_before = std::fs::read(tls_dir.join("fullchain.pem")).expect("chain");
    pub_.restart().await;
    let r = trusting
        .get(&health)
        .send()
        .await
        .expect("HTTPS after a restart");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    assert_eq!(
        std::fs::read(tls_dir.join("fullchain.pem")).expect("chain"),
        chain_before,
        "a restart ordered again"
    );

    // The daemon without Pebble's root: the certificate is refused.
    let text = pi.config_text(&pub_, "", "");
    let config = pi.write_config(&text);
    let services = peach_dyndns_daemon::daemon::services_with(&config, pinned(None));
    let mut daemon = RunningDaemon::start_with(&pi, config, services).await;
    let st = daemon
        .wait_until("a refused certificate", ORDER_WAIT, |st| {
            st["state"] == "error"
        })
        .await;
    let error = st["last_error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("certificate"), "{st}");
    daemon.stop().await;
    assert!(
        testkit::dig(dns, &format!("eb4890.{DOMAIN}"), "A")
            .tries(1)
            .short()
            .is_empty(),
        "an update got through a certificate the daemon cannot verify"
    );

    // With `acme.ca_file` naming Pebble's root: online over HTTPS.
    let text = pi.config_text(&pub_, "", "")
        + &format!(
            "\n[acme]\nca_file = {}\n",
            testkit::toml_string(root.display())
        );
    let config = pi.write_config(&text);
    assert!(config
        .registration
        .url
        .as_ref()
        .is_some_and(|u| u.scheme() == "https"));
    let client = peach_dyndns_daemon::pubapi::http_client_builder(
        config.http_timeout(),
        config.acme.ca_file(),
    )
    .expect("client with acme.ca_file")
    .resolve(&host, listen)
    .build()
    .expect("client");
    let services = peach_dyndns_daemon::daemon::services_with(&config, client);
    let mut daemon = RunningDaemon::start_with(&pi, config, services).await;
    let st = daemon
        .wait_until("online over HTTPS", ORDER_WAIT, |st| {
            st["state"] == "online" && st["dns_verified"] == true
        })
        .await;
    assert_eq!(st["url"], pub_.update_url(), "{st}");
    daemon.stop().await;
    pub_.stop().await;
}
