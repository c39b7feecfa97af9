//! The `peach-dyndns-server` binary as an operator meets it: clear errors
//! and exit code 1 for broken config and secrets, clean exit on SIGTERM.

use std::io::Read as _;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peach_dyndns_protocol::identity::Keypair;

use testkit::{write_secret, ServerConfig};

const BIN: &str = env!("CARGO_BIN_EXE_peach-dyndns-server");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn write_config(dir: &Path, body: &str) -> String {
    let path = dir.join("server.toml");
    std::fs::write(&path, body).expect("write config");
    path.display().to_string()
}

#[test]
fn broken_config_names_file_and_key_and_exits_1() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(
        dir.path(),
        &ServerConfig::new("peach.dinosaur.is")
            .top("ttl = \"soon\"")
            .to_toml(),
    );
    let (code, _, err) = run(&["--config", &cfg, "check"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&cfg) && err.contains("ttl"), "{err}");
    let (code, _, err) = run(&["--config", "/nonexistent/server.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/server.toml"), "{err}");
}

#[test]
fn readable_secret_is_refused_with_its_path() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tmp");
    let secret = write_secret(
        &dir.path().join("secret"),
        &Keypair::generate().to_secret_file(),
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let cfg = write_config(
        dir.path(),
        &ServerConfig::new("peach.dinosaur.is")
            .secret(&secret)
            .database(dir.path().join("r.sqlite3"))
            .to_toml(),
    );
    let (code, _, err) = run(&["--config", &cfg, "names"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&secret.display().to_string()) && err.contains("chmod 600"),
        "{err}"
    );
    assert!(
        !dir.path().join("r.sqlite3").exists(),
        "nothing was created"
    );
}

#[test]
fn serves_then_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tmp");
    let pi = Keypair::generate();
    let secret = write_secret(
        &dir.path().join("secret"),
        &Keypair::generate().to_secret_file(),
    );
    let (http, dns) = (testkit::free_port(), testkit::free_port());
    let cfg = write_config(
        dir.path(),
        &ServerConfig::new("peach.dinosaur.is")
            .listen(format!("127.0.0.1:{http}"))
            .secret(&secret)
            .database(dir.path().join("r.sqlite3"))
            .dns_embedded(format!("127.0.0.1:{dns}"))
            .graph_allowlist([pi.id()])
            .to_toml(),
    );
    let mut child = Command::new(BIN)
        .args(["--config", &cfg])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A client that keeps an idle keep-alive connection open (as the Pi's
    // daemon does) must not hold up the stop.
    let mut idle = TcpStream::connect(("127.0.0.1", http)).expect("connect");
    std::io::Write::write_all(
        &mut idle,
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n",
    )
    .expect("send");
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).expect("answer");
    assert_eq!(&first, b"HTTP/1.1 200");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let stopping = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(2),
            "did not stop within 2 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut log = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut log);
    }
    assert!(exit.success(), "exit {exit:?}: {log}");
    assert!(
        log.contains("peach-dyndns-server ready") && log.contains("shutting down"),
        "{log}"
    );
    let secret_text = std::fs::read_to_string(&secret).expect("secret");
    let private = secret_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"private\": \""))
        .expect("private line");
    assert!(
        !log.contains(&private[..40]),
        "the secret never reaches the log"
    );
}

#[test]
fn init_writes_a_zone_bind_accepts() {
    let dir = tempfile::tempdir().expect("tmp");
    let zone = dir.path().join("db.peach.dinosaur.is");
    let conf = dir.path().join("named.conf.peach");
    let key = dir.path().join("peach-dyndns.key");
    let (code, out, err) = run(&[
        "init",
        "--key-file",
        &key.display().to_string(),
        "--domain",
        "peach.dinosaur.is",
        "--ns",
        "ns1.dinosaur.is",
        "--zone-file",
        &zone.display().to_string(),
        "--conf-file",
        &conf.display().to_string(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("named-checkconf: OK") && out.contains("loaded serial 1"),
        "{out}"
    );
    assert!(out.contains("backend = \"rfc2136\""), "{out}");
    // The key is one the rfc2136 backend reads.
    let cfg = ServerConfig::new("peach.dinosaur.is")
        .dns(&format!(
            "backend = \"rfc2136\"\nserver = \"127.0.0.1:53\"\n\
             key_name = \"peach-dyndns\"\nkey_file = {}",
            testkit::toml_string(key.display())
        ))
        .to_toml();
    let config =
        peach_dyndns_server::config::Config::from_str(&cfg, Path::new("t.toml")).expect("config");
    peach_dyndns_server::dns::build(&config.dns, &config.domain).expect("rfc2136 reads the key");
    let (code, _, err) = run(&[
        "init",
        "--key-file",
        &key.display().to_string(),
        "--domain",
        "peach.dinosaur.is",
        "--ns",
        "ns1.dinosaur.is",
        "--zone-file",
        &zone.display().to_string(),
        "--conf-file",
        &conf.display().to_string(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--force"), "{err}");
}

#[test]
fn systemd_credential_is_preferred_over_the_config_secret() {
    let dir = tempfile::tempdir().expect("tmp");
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).expect("mkdir");
    let pub_kp = Keypair::generate();
    // The config names a secret that does not exist: only the credential
    // can make this work.
    write_secret(&creds.join("ssb-secret"), &pub_kp.to_secret_file());
    let cfg = write_config(
        dir.path(),
        &ServerConfig::new("peach.dinosaur.is")
            .secret("/nonexistent/secret")
            .database(dir.path().join("r.sqlite3"))
            .graph("backend = \"allowlist\"")
            .to_toml(),
    );
    let out = Command::new(BIN)
        .args(["--config", &cfg, "check"])
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&pub_kp.id()), "{text}");
    let (code, _, err) = run(&["--config", &cfg, "check"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/secret"), "{err}");
}

#[test]
fn reset_seq_forgets_a_keys_seq_and_refuses_a_bad_key() {
    use peach_dyndns_server::registry::Registry;
    let dir = tempfile::tempdir().expect("tmp");
    let secret = write_secret(
        &dir.path().join("secret"),
        &Keypair::generate().to_secret_file(),
    );
    let db = dir.path().join("r.sqlite3");
    let cfg = write_config(
        dir.path(),
        &ServerConfig::new("peach.dinosaur.is")
            .secret(&secret)
            .database(&db)
            .to_toml(),
    );
    let pi = Keypair::generate();
    // A key frozen far ahead, as a v1 pub could leave it.
    Registry::open(&db)
        .expect("registry")
        .commit_seq(&pi.id(), u64::MAX - 1)
        .wait()
        .expect("seq");
    let (code, out, err) = run(&["--config", &cfg, "reset-seq", &pi.id()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&(u64::MAX - 1).to_string()), "{out}");
    let registry = Registry::open(&db).expect("registry");
    assert_eq!(registry.last_seq(&pi.id()).expect("seq"), None);
    let (code, _, err) = run(&["--config", &cfg, "reset-seq", "@nope.ed25519"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("@nope.ed25519"), "{err}");
}
