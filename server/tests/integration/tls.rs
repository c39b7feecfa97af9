//! The pub's own HTTPS (`[tls]`) with the real binary: a test CA, an
//! intermediate and certificates made here with rcgen; real `curl
//! --cacert` and reqwest with that root as clients; the certificate files
//! replaced on disk the way certbot does (symlinks into an archive).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use peach_dyndns_protocol::identity::Keypair;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use testkit::{toml_string, write_secret, Process, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{body, update};

const BIN: &str = env!("CARGO_BIN_EXE_peach-dyndns-server");

/// The server binary the tests start: the test build, or the one
/// `PEACH_DYNDNS_TLS_BENCH_SERVER` names (to time a release build).
fn server_bin() -> String {
    std::env::var("PEACH_DYNDNS_TLS_BENCH_SERVER").unwrap_or_else(|_| BIN.to_string())
}
const DOMAIN: &str = crate::common::DOMAIN;

/// A certificate authority made for one test.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// Its own certificate, PEM.
    pem: String,
}

/// A certificate and its key, PEM; `chain` is what a `fullchain.pem` holds.
struct Leaf {
    chain: String,
    key: String,
}

/// Sets the validity of `params` from `SystemTime`s (rcgen takes the
/// `time` crate's type, reached from its epoch here).
fn set_validity(params: &mut CertificateParams, from: SystemTime, to: SystemTime) {
    let since = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
    };
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since(from);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since(to);
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl Ca {
    /// A self-signed root.
    fn root(name: &str) -> Ca {
        let params = ca_params(name);
        let key = KeyPair::generate().expect("key");
        let pem = params.self_signed(&key).expect("self-sign").pem();
        Ca { params, key, pem }
    }

    /// An intermediate CA signed by this one.
    fn intermediate(&self, name: &str) -> Ca {
        let params = ca_params(name);
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let pem = params.signed_by(&key, &issuer).expect("sign").pem();
        Ca { params, key, pem }
    }

    /// A server certificate for `names`, valid over `validity` (rcgen's
    /// default, 1975–4096, when `None`), its chain ending with this CA's
    /// certificate when `with_ca` (an intermediate's), else alone.
    fn leaf(
        &self,
        names: &[&str],
        validity: Option<(SystemTime, SystemTime)>,
        with_ca: bool,
    ) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("names");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if let Some((from, to)) = validity {
            set_validity(&mut params, from, to);
        }
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let mut chain = params.signed_by(&key, &issuer).expect("sign").pem();
        if with_ca {
            chain.push_str(&self.pem);
        }
        Leaf {
            chain,
            key: key.serialize_pem(),
        }
    }
}

const DAY: Duration = Duration::from_secs(86_400);

/// The real server with `[tls]`, plain HTTP and the embedded DNS on loopback.
struct Https {
    process: Process,
    /// Plain HTTP port.
    http: u16,
    /// HTTPS port.
    https: u16,
    /// The pub's key (updates are sealed to it).
    pub_key: Keypair,
    /// A key the allowlist lets update.
    pi: Keypair,
    /// The `[tls]` files (symlinks into `archive/`, as certbot makes them).
    cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

/// Writes `leaf` as `archive/<tag>.{crt,key}` under `dir`.
fn archive(dir: &Path, tag: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let archive = dir.join("archive");
    std::fs::create_dir_all(&archive).expect("archive");
    let (crt, key) = (
        archive.join(format!("{tag}.crt")),
        archive.join(format!("{tag}.key")),
    );
    std::fs::write(&crt, &leaf.chain).expect("write crt");
    std::fs::write(&key, &leaf.key).expect("write key");
    (crt, key)
}

/// Points the symlink `link` at `target` in one rename, as certbot does.
fn point(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("symlink");
    std::fs::rename(&tmp, link).expect("rename");
}

/// The config text for a server in `dir` with `leaf` in place.
fn config_text(dir: &Path, http: u16, https: u16, pi: &Keypair, top: &str, tables: &str) -> String {
    ServerConfig::new(DOMAIN)
        .listen(format!("127.0.0.1:{http}"))
        .secret(dir.join("secret"))
        .database(dir.join("registry.sqlite3"))
        .allow_private_addresses(true)
        .top(&format!(
            "control_socket = {}",
            toml_string(dir.join("control.sock").display())
        ))
        .top(top)
        .dns_embedded(format!("127.0.0.1:{}", testkit::free_port()))
        .graph_allowlist([pi.id()])
        .table(&format!(
            "[tls]\nlisten = \"127.0.0.1:{https}\"\ncertificate = {}\nkey = {}\n\
             reload_interval_secs = 1",
            toml_string(dir.join("live/fullchain.pem").display()),
            toml_string(dir.join("live/privkey.pem").display()),
        ))
        .table(tables)
        .to_toml()
}

impl Https {
    /// Starts the binary serving `leaf`; `top` and `tables` are extra TOML.
    fn start(dir: &Path, leaf: &Leaf, top: &str, tables: &str) -> Https {
        let pub_key = Keypair::generate();
        let pi = Keypair::generate();
        std::fs::create_dir_all(dir).expect("dir");
        write_secret(&dir.join("secret"), &pub_key.to_secret_file());
        let (crt, key) = archive(dir, "first", leaf);
        std::fs::create_dir_all(dir.join("live")).expect("live");
        let (cert_link, key_link) = (dir.join("live/fullchain.pem"), dir.join("live/privkey.pem"));
        point(&cert_link, &crt);
        point(&key_link, &key);
        let (http, https) = (testkit::free_port(), testkit::free_port());
        let cfg = dir.join("server.toml");
        std::fs::write(&cfg, config_text(dir, http, https, &pi, top, tables)).expect("config");
        let mut cmd = Command::new(server_bin());
        cmd.arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let mut process =
            Process::spawn(cmd, "peach-dyndns-server", &dir.join("server.log")).expect("spawn");
        let started = Instant::now();
        loop {
            process.check_alive().expect("server runs");
            if std::net::TcpStream::connect(("127.0.0.1", https)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", http)).is_ok()
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "server did not listen: {}",
                process.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Https {
            process,
            http,
            https,
            pub_key,
            pi,
            cert: cert_link,
            key: key_link,
            dir: dir.to_owned(),
        }
    }

    fn https_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.https))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.process.log()).unwrap_or_default()
    }

    /// A sealed, signed update of `eb4890` to `ip` with `seq`.
    fn update_body(&self, ip: Ipv4Addr, seq: u64) -> Vec<u8> {
        body(
            &update(&self.pi, "eb4890", ip, seq),
            &self.pi,
            &self.pub_key,
        )
    }
}

/// What one curl run gave.
#[derive(Debug)]
struct Curl {
    /// curl's exit code (0, or e.g. 60 for a certificate it refused).
    exit: i32,
    body: String,
    /// `%{http_code}` (`000` when no answer came).
    status: String,
    /// `%{http_version}`.
    version: String,
    stderr: String,
}

/// Runs curl with `args`, resolving `host` to 127.0.0.1 for the HTTPS port.
fn curl(args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(args)
        .output()
        .expect("curl runs (scripts/install-test-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (status, version) = tail.split_once(' ').unwrap_or((tail, ""));
    Curl {
        exit: out.status.code().unwrap_or(-1),
        body: body.trim().to_string(),
        status: status.to_string(),
        version: version.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// `curl --cacert <ca> https://<host>:<port><path>` with `host` resolved to loopback.
fn curl_https(ca: &Path, host: &str, port: u16, path: &str, extra: &[&str]) -> Curl {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{path}");
    let ca = ca.display().to_string();
    let mut args = vec!["--cacert", &ca, "--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

fn write_ca(dir: &Path, name: &str, ca: &Ca) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, &ca.pem).expect("write ca");
    path
}

/// reqwest trusting only `ca_pem`, with `host` resolved to `addr`.
fn reqwest_client(ca_pem: &str, host: &str, addr: SocketAddr, reuse: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca pem"))
        .resolve(host, addr)
        .timeout(Duration::from_secs(10));
    if !reuse {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().expect("client")
}

/// The whole error chain of a reqwest error, for matching rustls's reason.
fn chain(e: &reqwest::Error) -> String {
    let mut out = format!("{e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(&format!(" / {s:?}"));
        source = s.source();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_health_and_signed_updates_to_curl_and_reqwest_and_plain_http_stays() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = Ca::root("peach-dyndns test root");
    let inter = root.intermediate("peach-dyndns test intermediate");
    // The chain file holds the leaf and the intermediate; the client knows
    // only the root, so the chain is what makes it verify.
    let leaf = inter.leaf(&["localhost", "dyndns.peach.dinosaur.is"], None, true);
    let server = Https::start(
        dir.path(),
        &leaf,
        "public_url = \"https://dyndns.peach.dinosaur.is/update\"",
        "",
    );
    let ca = write_ca(dir.path(), "root.pem", &root);
    let port = server.https;

    // curl: /health, and ALPN gives HTTP/1.1 even to a client offering h2.
    let got = tokio::task::spawn_blocking({
        let ca = ca.clone();
        move || {
            curl_https(
                &ca,
                "dyndns.peach.dinosaur.is",
                port,
                "/health",
                &["--http2"],
            )
        }
    })
    .await
    .expect("curl");
    assert_eq!((got.exit, got.status.as_str()), (0, "200"), "{got:?}");
    assert_eq!(got.version, "1.1", "{got:?}");

    // curl: a signed update over HTTPS.
    let body_file = dir.path().join("update.json");
    std::fs::write(
        &body_file,
        server.update_body(Ipv4Addr::new(24, 12, 12, 12), 1),
    )
    .expect("body");
    let got = tokio::task::spawn_blocking({
        let (ca, file) = (ca.clone(), format!("@{}", body_file.display()));
        move || {
            curl_https(
                &ca,
                "localhost",
                port,
                "/update",
                &[
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    &file,
                ],
            )
        }
    })
    .await
    .expect("curl");
    assert_eq!((got.exit, got.status.as_str()), (0, "200"), "{got:?}");
    let json: serde_json::Value = serde_json::from_str(&got.body).expect("json");
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["fqdn"], "eb4890.peach.dinosaur.is", "{json}");

    // reqwest with the root: /health and the next update.
    let client = reqwest_client(&root.pem, "localhost", server.https_addr(), true);
    let base = format!("https://localhost:{port}");
    let health = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let resp = client
        .post(format!("{base}/update"))
        .header("content-type", "application/json")
        .body(server.update_body(Ipv4Addr::new(24, 12, 12, 13), 2))
        .send()
        .await
        .expect("update");
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        (json["ok"].clone(), json["changed"].clone()),
        (true.into(), true.into()),
        "{json}"
    );

    // Plain HTTP is still there on its own port, for /ip and routers.
    let http = server.http;
    let got = tokio::task::spawn_blocking(move || curl(&[&format!("http://127.0.0.1:{http}/ip")]))
        .await
        .expect("curl");
    assert_eq!(
        (got.exit, got.status.as_str(), got.body.as_str()),
        (0, "200", "127.0.0.1"),
        "{got:?}"
    );
    // …and the TLS port speaks no plain HTTP.
    let got = tokio::task::spawn_blocking(move || curl(&[&format!("http://127.0.0.1:{port}/ip")]))
        .await
        .expect("curl");
    assert_ne!(got.status, "200", "{got:?}");

    let log = server.log();
    assert!(
        log.contains("TLS certificate loaded") && log.contains("dyndns.peach.dinosaur.is"),
        "{log}"
    );
    assert!(!log.contains("does not cover"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_or_an_expired_certificate_fails_the_client() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = Ca::root("root");
    let ca = write_ca(dir.path(), "root.pem", &root);

    // A certificate for localhost, asked for another name.
    let good = Https::start(
        &dir.path().join("good"),
        &root.leaf(&["localhost"], None, false),
        "",
        "",
    );
    let port = good.https;
    let (right, wrong) = tokio::task::spawn_blocking({
        let ca = ca.clone();
        move || {
            (
                curl_https(&ca, "localhost", port, "/health", &[]),
                curl_https(&ca, "wrong.peach.test", port, "/health", &[]),
            )
        }
    })
    .await
    .expect("curl");
    assert_eq!((right.exit, right.status.as_str()), (0, "200"), "{right:?}");
    // curl: 60, the peer's certificate cannot be authenticated.
    assert_eq!(
        (wrong.exit, wrong.status.as_str()),
        (60, "000"),
        "{wrong:?}"
    );
    assert!(wrong.stderr.contains("wrong.peach.test"), "{wrong:?}");
    let err = reqwest_client(&root.pem, "wrong.peach.test", good.https_addr(), false)
        .get(format!("https://wrong.peach.test:{port}/health"))
        .send()
        .await
        .expect_err("wrong host accepted");
    assert!(chain(&err).contains("NotValidForName"), "{}", chain(&err));

    // A certificate that expired yesterday.
    let now = SystemTime::now();
    let expired = root.leaf(&["localhost"], Some((now - 10 * DAY, now - DAY)), false);
    let old = Https::start(&dir.path().join("expired"), &expired, "", "");
    let port = old.https;
    let (refused, insecure) = tokio::task::spawn_blocking({
        let ca = ca.clone();
        move || {
            (
                curl_https(&ca, "localhost", port, "/health", &[]),
                curl_https(&ca, "localhost", port, "/health", &["--insecure"]),
            )
        }
    })
    .await
    .expect("curl");
    assert_eq!(
        (refused.exit, refused.status.as_str()),
        (60, "000"),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("expired"), "{refused:?}");
    // What is refused is only the date: the server did answer.
    assert_eq!(
        (insecure.exit, insecure.status.as_str()),
        (0, "200"),
        "{insecure:?}"
    );
    let err = reqwest_client(&root.pem, "localhost", old.https_addr(), false)
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await
        .expect_err("expired certificate accepted");
    assert!(chain(&err).contains("Expired"), "{}", chain(&err));
    assert!(
        old.log().contains("the TLS certificate expired at"),
        "{}",
        old.log()
    );
}

/// Polls `f` every 100 ms until it is true or `within` passed; returns
/// how long it took.
async fn until(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if f() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_within_the_reload_interval_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().expect("tmp");
    let (ca1, ca2, ca3) = (Ca::root("one"), Ca::root("two"), Ca::root("three"));
    let server = Https::start(dir.path(), &ca1.leaf(&["localhost"], None, false), "", "");
    let (p1, p2, p3) = (
        write_ca(dir.path(), "ca1.pem", &ca1),
        write_ca(dir.path(), "ca2.pem", &ca2),
        write_ca(dir.path(), "ca3.pem", &ca3),
    );
    let port = server.https;
    let ok = |ca: &Path| curl_https(ca, "localhost", port, "/health", &[]).exit == 0;
    assert!(ok(&p1) && !ok(&p2), "the first certificate is served");

    // certbot's renewal: new files in the archive, then the symlinks moved.
    let (crt2, key2) = archive(dir.path(), "second", &ca2.leaf(&["localhost"], None, false));
    point(&server.key, &key2);
    point(&server.cert, &crt2);
    let took = until(Duration::from_secs(4), || ok(&p2))
        .await
        .unwrap_or_else(|| panic!("the new certificate was not served: {}", server.log()));
    eprintln!(
        "reload: the new certificate was served {took:?} after the files changed (interval 1 s)"
    );
    assert!(took <= Duration::from_millis(2_500), "{took:?}");
    assert!(!ok(&p1), "the old certificate is no longer served");
    assert!(
        server.log().contains("TLS certificate reloaded"),
        "{}",
        server.log()
    );

    // A broken replacement: the new certificate, with the old key still in
    // place (a half-done renewal). The second certificate stays.
    let want = format!(
        "key file {} does not belong to the certificate in {}",
        server.key.display(),
        server.cert.display()
    );
    // (The renewal above may have been seen half-done, and logged, too.)
    let before = server.log().matches(&want).count();
    let (crt3, key3) = archive(dir.path(), "third", &ca3.leaf(&["localhost"], None, false));
    point(&server.cert, &crt3);
    until(Duration::from_secs(4), || {
        server.log().matches(&want).count() > before
    })
    .await
    .unwrap_or_else(|| panic!("no clear error logged: {}", server.log()));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(ok(&p2) && !ok(&p3), "the previous certificate is kept");
    assert_eq!(
        server.log().matches(&want).count(),
        before + 1,
        "logged once, not at every look: {}",
        server.log()
    );
    // Garbage in the certificate file: still the second one.
    std::fs::write(
        &crt3,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    until(Duration::from_secs(4), || {
        server
            .log()
            .contains(&format!("certificate file {}", server.cert.display()))
    })
    .await
    .unwrap_or_else(|| panic!("no error for the garbage: {}", server.log()));
    assert!(ok(&p2), "the previous certificate is kept");

    // The renewal completes: the key arrives, and the pair loads.
    let leaf3 = ca3.leaf(&["localhost"], None, false);
    std::fs::write(&crt3, &leaf3.chain).expect("write");
    std::fs::write(&key3, &leaf3.key).expect("write");
    point(&server.key, &key3);
    until(Duration::from_secs(4), || ok(&p3))
        .await
        .unwrap_or_else(|| panic!("the completed renewal was not served: {}", server.log()));
    assert!(!server.dir.join("live/fullchain.new").exists());
}

/// A TCP connection to `addr` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source");
    socket.connect(addr).await.expect("connect")
}

/// Reads until EOF or an error; how long that took, or `None` after `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(
            within.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_on_the_tls_port_is_cut_at_the_header_deadline_and_keeps_no_one_out() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = Ca::root("root");
    let ca = write_ca(dir.path(), "root.pem", &root);
    let server = Https::start(
        dir.path(),
        &root.leaf(&["localhost"], None, false),
        "",
        "[http]\nheader_timeout_secs = 1\nmax_connections_per_source = 3",
    );
    let (tls_addr, plain_addr) = (
        server.https_addr(),
        SocketAddr::from((Ipv4Addr::LOCALHOST, server.http)),
    );
    // 127.0.0.2 is another source (loopback answers all of 127/8): it
    // takes its whole share with connections that never finish a handshake.
    let silent = Ipv4Addr::new(127, 0, 0, 2);
    let opened = Instant::now();
    let mut held = Vec::new();
    for i in 0..3 {
        let mut s = connect_from(silent, tls_addr).await;
        if i == 0 {
            // The first bytes of a ClientHello record, then nothing.
            s.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01])
                .await
                .expect("write");
        }
        held.push(s);
    }
    // Its share is full, on the plain port too: closed at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = connect_from(silent, plain_addr).await;
    let cut = closed_within(&mut extra, Duration::from_millis(500)).await;
    assert!(
        cut.is_some(),
        "a fourth connection of the source was served"
    );

    // Others are served meanwhile, over TLS.
    let port = server.https;
    let got = tokio::task::spawn_blocking({
        let ca = ca.clone();
        move || curl_https(&ca, "localhost", port, "/health", &[])
    })
    .await
    .expect("curl");
    assert_eq!((got.exit, got.status.as_str()), (0, "200"), "{got:?}");
    assert!(
        opened.elapsed() < Duration::from_millis(900),
        "served before the deadline"
    );

    // The silent ones are cut at the 1 s deadline (not before, not never).
    for s in &mut held {
        let left = Duration::from_secs(4).saturating_sub(opened.elapsed());
        assert!(
            closed_within(s, left).await.is_some(),
            "a silent client kept its slot"
        );
    }
    let cut_after = opened.elapsed();
    eprintln!("silent TLS clients cut {cut_after:?} after they connected (header deadline 1 s)");
    assert!(
        cut_after >= Duration::from_millis(950) && cut_after < Duration::from_secs(3),
        "{cut_after:?}"
    );
    // And the source is served again.
    let got = tokio::task::spawn_blocking(move || {
        curl_https(
            &ca,
            "localhost",
            port,
            "/health",
            &["--interface", "127.0.0.2"],
        )
    })
    .await
    .expect("curl");
    assert_eq!((got.exit, got.status.as_str()), (0, "200"), "{got:?}");
}

/// Runs the binary with `args`: exit code, stdout, stderr.
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn broken_tls_config_fails_start_up_with_the_file_named_and_check_reports_the_certificate() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let root = Ca::root("root");
    let pi = Keypair::generate();
    write_secret(&d.join("secret"), &Keypair::generate().to_secret_file());
    let now = SystemTime::now();
    // Five days left, and not the public_url's host.
    let leaf = root.leaf(
        &["dyndns.peach.dinosaur.is"],
        Some((now - DAY, now + 5 * DAY)),
        false,
    );
    let other = root.leaf(&["dyndns.peach.dinosaur.is"], None, false);
    std::fs::create_dir_all(d.join("live")).expect("live");
    let (cert, key) = (d.join("live/fullchain.pem"), d.join("live/privkey.pem"));
    let cfg = d.join("server.toml");
    let write_cfg = || {
        std::fs::write(
            &cfg,
            config_text(
                d,
                testkit::free_port(),
                testkit::free_port(),
                &pi,
                "public_url = \"https://other.peach.dinosaur.is:8443/update\"",
                "",
            ),
        )
        .expect("config");
    };
    let cfg_arg = cfg.display().to_string();
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    // (what, certificate file text, key file text, what the error must say)
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Vec<&'a str>);
    let cases: [Case<'_>; 4] = [
        (
            "missing certificate",
            None,
            Some(&leaf.key),
            vec!["cannot read certificate file", &c],
        ),
        (
            "key of another certificate",
            Some(&leaf.chain),
            Some(&other.key),
            vec!["does not belong", &k, &c],
        ),
        (
            "no key in the key file",
            Some(&leaf.chain),
            Some(&leaf.chain),
            vec!["key file", &k, "no PRIVATE KEY"],
        ),
        (
            "a key file that is not PEM",
            Some(&leaf.chain),
            Some("garbage"),
            vec!["key file", &k],
        ),
    ];
    for (what, cert_text, key_text, wants) in &cases {
        let _ = std::fs::remove_file(&cert);
        let _ = std::fs::remove_file(&key);
        if let Some(t) = cert_text {
            std::fs::write(&cert, t).expect("cert");
        }
        if let Some(t) = key_text {
            std::fs::write(&key, t).expect("key");
        }
        write_cfg();
        for command in [
            &["--config", &cfg_arg][..],
            &["--config", &cfg_arg, "check"][..],
        ] {
            let started = Instant::now();
            let (code, _, err) = run(command);
            assert_eq!(code, 1, "{what} {command:?}: {err}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{what}: did not fail at once"
            );
            for want in wants {
                assert!(
                    err.contains(want),
                    "{what} {command:?}: {want:?} not in {err}"
                );
            }
        }
    }

    // A good pair: check names it, its date, and both warnings.
    std::fs::write(&cert, &leaf.chain).expect("cert");
    std::fs::write(&key, &leaf.key).expect("key");
    write_cfg();
    let (code, out, err) = run(&["--config", &cfg_arg, "check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("tls: OK") && out.contains("names dyndns.peach.dinosaur.is;"),
        "{out}"
    );
    let not_after = utc_date(now + 5 * DAY);
    assert!(
        out.contains(&format!("not after {not_after}")),
        "{not_after}: {out}"
    );
    assert!(
        out.contains("warning: the TLS certificate expires within 14 days"),
        "{out}"
    );
    assert!(
        out.contains(
            "warning: the TLS certificate does not cover public_url's host other.peach.dinosaur.is"
        ),
        "{out}"
    );
}

/// `YYYY-MM-DD` of a time, by `date -u` (not by the code under test).
fn utc_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%d"])
        .output()
        .expect("date runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Median of some durations, in milliseconds.
fn median_ms(mut xs: Vec<Duration>) -> f64 {
    xs.sort();
    xs[xs.len() / 2].as_secs_f64() * 1000.0
}

/// curl's own timings of one transfer (process start excluded): TCP
/// connected, TLS handshake done (0 on plain HTTP), answer complete.
struct CurlTimes {
    connect: Duration,
    handshake: Duration,
    total: Duration,
}

/// POSTs `body` to `url` with a new curl (so a new connection) and returns
/// its timings; the answer must be a 200.
fn curl_timed_update(url: &str, ca: &Path, resolve: &str, body: &Path) -> CurlTimes {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "10"])
        .args([
            "-w",
            "%{http_code} %{time_connect} %{time_appconnect} %{time_total}",
        ])
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", resolve, "-H", "Content-Type: application/json"])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let f: Vec<&str> = text.split(' ').collect();
    assert_eq!(
        f.first().copied(),
        Some("200"),
        "{url}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs = |i: usize| Duration::from_secs_f64(f[i].parse::<f64>().expect("curl time"));
    let (connect, appconnect, total) = (secs(1), secs(2), secs(3));
    CurlTimes {
        connect,
        handshake: appconnect.saturating_sub(connect),
        total,
    }
}

/// Times signed updates over plain HTTP and HTTPS on loopback, median of
/// N (40; 300 with `PEACH_DYNDNS_SLOW=1`): new connections with curl (its
/// own timings, OpenSSL's client), and new and kept-alive connections with
/// reqwest (rustls). `PEACH_DYNDNS_TLS_BENCH_SERVER` names another server
/// binary to time (a release build); the default is the test build.
/// Prints the table; asserts that every update was a 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_of_https_against_plain_http() {
    let n: usize = if std::env::var("PEACH_DYNDNS_SLOW").as_deref() == Ok("1") {
        300
    } else {
        40
    };
    let dir = tempfile::tempdir().expect("tmp");
    let root = Ca::root("root");
    let ca = write_ca(dir.path(), "root.pem", &root);
    let server = Https::start(
        dir.path(),
        &root.leaf(&["localhost"], None, false),
        "",
        "[rate_limit]\nper_key_per_minute = 100000\nper_key_burst = 100000",
    );
    let addr = server.https_addr();
    let plain_url = format!("http://127.0.0.1:{}/update", server.http);
    let tls_url = format!("https://localhost:{}/update", server.https);
    let resolve = format!("localhost:{}:127.0.0.1", server.https);
    let mut seq = 0u64;
    let mut next_body = || {
        seq += 1;
        // A new address each time, so every update writes DNS.
        let ip = Ipv4Addr::new(24, 12, (seq / 250) as u8, (seq % 250) as u8 + 1);
        server.update_body(ip, seq)
    };
    let mut lines = Vec::new();

    // New connections, curl.
    let file = dir.path().join("body.json");
    for (label, url) in [("plain HTTP", &plain_url), ("HTTPS", &tls_url)] {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            std::fs::write(&file, next_body()).expect("body");
            times.push(curl_timed_update(url, &ca, &resolve, &file));
        }
        lines.push(format!(
            "curl, new connection, {label:<10}: connect {:.3} ms, TLS handshake {:.3} ms, \
             total (connect + handshake + update) {:.3} ms",
            median_ms(times.iter().map(|t| t.connect).collect()),
            median_ms(times.iter().map(|t| t.handshake).collect()),
            median_ms(times.iter().map(|t| t.total).collect()),
        ));
    }

    // reqwest, new and kept-alive connections.
    let plain_fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let plain_kept = reqwest::Client::builder().build().expect("client");
    let tls_fresh = reqwest_client(&root.pem, "localhost", addr, false);
    let tls_kept = reqwest_client(&root.pem, "localhost", addr, true);
    for (label, client, url) in [
        ("new connection, plain HTTP", &plain_fresh, &plain_url),
        ("new connection, HTTPS", &tls_fresh, &tls_url),
        ("kept-alive connection, plain HTTP", &plain_kept, &plain_url),
        ("kept-alive connection, HTTPS", &tls_kept, &tls_url),
    ] {
        let mut times = Vec::with_capacity(n);
        for i in 0..=n {
            let body = next_body();
            let started = Instant::now();
            let resp = client
                .post(url.as_str())
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("update sent");
            let status = resp.status();
            let text = resp.text().await.expect("answer");
            let took = started.elapsed();
            assert_eq!(status, 200, "{label} #{i}: {text}");
            // The first of a kept-alive series opens the connection.
            if i > 0 {
                times.push(took);
            }
        }
        lines.push(format!("reqwest, {label:<34}: {:.3} ms", median_ms(times)));
    }
    eprintln!(
        "signed update latency on loopback, median of {n}, server {}:",
        std::env::var("PEACH_DYNDNS_TLS_BENCH_SERVER").unwrap_or_else(|_| "(test build)".into())
    );
    for line in &lines {
        eprintln!("  {line}");
    }
    assert_eq!(lines.len(), 6);
}
