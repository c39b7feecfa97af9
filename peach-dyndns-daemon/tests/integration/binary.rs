//! The built binary: `--once` exit codes, `run` with `status`, SIGHUP and
//! SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_peach-dyndns-daemon");

/// The daemon process; killed if the test fails before it is stopped.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run_once(config: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["--once", "--config"])
        .arg(config)
        .output()
        .expect("run the daemon binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exit_codes() {
    let pi = Pi::new();
    let pub_ = TestPub::start(&[&pi.keypair]).await;
    pi.write_config(&pi.config_text(&pub_, "", ""));
    let path = pi.config_path();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run_once(&path))
        .await
        .expect("join");
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("peach-dyndns: online"), "{stdout}");
    assert!(stdout.contains("eb4890.peach.dinosaur.is"), "{stdout}");
    assert_eq!(
        testkit::dig(pub_.dns, "eb4890.peach.dinosaur.is", "A")
            .time_secs(1)
            .short(),
        ["127.0.0.1"]
    );

    // Not configured: 2.
    let empty = pi.dir.path().join("empty.toml");
    std::fs::write(&empty, "[sbot]\nenabled = false\n").expect("write");
    let (code, stdout, _) = run_once(&empty);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("unconfigured"), "{stdout}");

    // A bad config: 1, naming the file and the key.
    let bad = pi.dir.path().join("bad.toml");
    std::fs::write(&bad, "check_interval_secs = -1\n").expect("write");
    let (code, _, stderr) = run_once(&bad);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("check_interval_secs"),
        "{stderr}"
    );

    let out = Command::new(BIN)
        .arg("--version")
        .output()
        .expect("version");
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// The daemon as a process: `status` asks it over JSON-RPC, SIGHUP
/// reloads its config, SIGTERM stops it within a second with state saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_status_sighup_and_sigterm() {
    let pi = Pi::new();
    let pub_ = TestPub::start(&[&pi.keypair]).await;
    let port = testkit::free_port();
    let text = pi.config_text(&pub_, "", "").replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    pi.write_config(&text);
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(pi.config_path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(pi.dir.path().join("daemon.log")).expect("log file"))
        .spawn()
        .expect("start the daemon");
    let pid = child.id();
    let mut guard = KillOnDrop(Some(child));
    let status = |path: std::path::PathBuf| {
        let out = Command::new(BIN)
            .args(["status", "--config"])
            .arg(path)
            .output()
            .expect("status");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let path = pi.config_path();
    let waited = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (code, out) = status(path.clone());
            if code == 0 || Instant::now() > deadline {
                return (code, out);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .expect("join");
    assert_eq!(waited.0, 0, "{}", waited.1);
    assert!(waited.1.contains("peach-dyndns: online"), "{}", waited.1);
    assert!(
        waited.1.contains("eb4890.peach.dinosaur.is"),
        "{}",
        waited.1
    );

    // SIGHUP with a new name: the daemon registers it.
    std::fs::write(
        pi.config_path(),
        text.replace("name = \"eb4890\"", "name = \"renamed\""),
    )
    .expect("write");
    let kill = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    };
    kill("-HUP");
    let deadline = Instant::now() + Duration::from_secs(15);
    while testkit::dig(pub_.dns, "renamed.peach.dinosaur.is", "A")
        .time_secs(1)
        .short()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the reloaded name never appeared; log:\n{}",
            std::fs::read_to_string(pi.dir.path().join("daemon.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    kill("-TERM");
    let started = Instant::now();
    let mut child = guard.0.take().expect("the daemon process");
    let exit = tokio::task::spawn_blocking(move || child.wait().expect("wait"))
        .await
        .expect("join");
    let took = started.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(took < Duration::from_secs(1), "stopping took {took:?}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pi.dir.path().join("state.json")).expect("state"))
            .expect("state json");
    assert_eq!(state["fqdn"], "renamed.peach.dinosaur.is");
    // v2: the seq is kept per pub.
    assert!(state["seqs"][pub_.keypair.id()].is_u64(), "{state}");

    // With the daemon gone, `status` says so: exit 1.
    let (code, _) = status(pi.config_path());
    assert_eq!(code, 1);
}

/// The config the Debian package installs loads as it is, and with every
/// commented-out example key switched on (so a renamed key is caught).
#[test]
fn the_packaged_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../debian/daemon.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is part of the package: {e}", path.display()));
    let config = peach_dyndns_daemon::Config::from_str(&text, &path).expect("packaged config");
    assert_eq!(config, peach_dyndns_daemon::Config::default());
    let uncommented: String = text
        .lines()
        .map(|line| {
            let rest = line.trim_start().strip_prefix('#').unwrap_or("");
            let is_key = rest.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            });
            if is_key {
                rest
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            "@<the pub's id>.ed25519",
            &peach_dyndns_protocol::identity::Keypair::generate().id(),
        );
    peach_dyndns_daemon::Config::from_str(&uncommented, &path).unwrap_or_else(|e| {
        panic!(
            "the examples in {} do not load: {e}\n{uncommented}",
            path.display()
        )
    });
}
