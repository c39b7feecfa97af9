//! The daemon's state directory full or read-only (issue 10): a clear
//! error in the status, the state file on disk still the last one written
//! whole, and the error gone once the directory can be written again.
//!
//! The directory is a real small filesystem: a 64 KiB tmpfs mounted for
//! the test (the tests run as root, as CI does), filled with a file, or
//! remounted read-only.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use testkit::DaemonConfig;

use crate::common::*;

/// A tmpfs mounted on a temp dir; unmounted when dropped.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tmp");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "these tests mount a small tmpfs for the state directory and must run as root \
             (CI does): mount said {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `mount -o remount,<opts>`.
    fn remount(&self, opts: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(self.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

/// The Pi's config for `pub_` with its state file at `state`.
fn config_with_state(pi: &Pi, pub_: &TestPub, state: &Path) -> String {
    DaemonConfig::new()
        .secret_path(pi.dir.path().join("secret"))
        .state_path(state)
        .fast_timers()
        .registration_name("eb4890")
        .static_pub(&pub_.keypair.id(), &pub_.update_url(), DOMAIN)
        .allow_private_addresses(true)
        .dns_server(pub_.dns)
        .dns_timeout_secs(1)
        .rpc_listen("127.0.0.1:0")
        .sbot_enabled(false)
        .to_toml()
}

/// The state file as JSON, and its seq for `pub_`; panics when it is not
/// the JSON the daemon writes (a corrupt file).
fn saved_seq(state: &Path, pub_: &TestPub) -> u64 {
    let bytes = std::fs::read(state).expect("the state file is there");
    let json: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "state file corrupt ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    json["seqs"][pub_.keypair.id()]
        .as_u64()
        .unwrap_or_else(|| panic!("a seq for the pub: {json}"))
}

/// Files in `dir` other than `keep`: a temporary file left behind.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| !keep.iter().any(|k| p.file_name().is_some_and(|n| n == *k)))
        .collect()
}

/// Starts a daemon with its state on a fresh tmpfs and waits until it is
/// online: the pub, the daemon, the mount and the state file.
async fn online_on_tmpfs() -> (TestPub, RunningDaemon, Tmpfs, PathBuf, Pi) {
    let pi = Pi::new();
    let pub_ = TestPub::start(&[&pi.keypair]).await;
    let fs = Tmpfs::mount("64k");
    let state = fs.path().join("state.json");
    let config = pi.write_config(&config_with_state(&pi, &pub_, &state));
    let d = RunningDaemon::start(&pi, config).await;
    d.wait_until("online", Duration::from_secs(10), |s| {
        s["state"] == "online"
    })
    .await;
    (pub_, d, fs, state, pi)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_directory_is_a_clear_error_and_the_file_stays_whole() {
    let (pub_, mut d, fs, state, _pi) = online_on_tmpfs().await;
    let before = saved_seq(&state, &pub_);
    let old_bytes = std::fs::read(&state).expect("read");
    // Fill the filesystem to the last byte.
    let filler = fs.path().join("filler");
    let mut f = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![0u8; 4096];
    let mut written = 0usize;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC: {e}");
                break;
            }
        }
    }
    drop(f);
    assert!(written > 0);
    let st = d.result("update_now", None).await;
    let error = st["state_error"]
        .as_str()
        .unwrap_or_else(|| panic!("{st:#}"));
    println!("state directory full: status.state_error = {error:?}");
    assert!(
        error.contains(&state.display().to_string()) && error.contains("No space left on device"),
        "{error}"
    );
    // What is on disk is the last state written whole, and no temporary
    // file was left to fill the directory further.
    assert_eq!(std::fs::read(&state).expect("read"), old_bytes);
    assert_eq!(saved_seq(&state, &pub_), before);
    assert!(leftovers(fs.path(), &["state.json", "filler"]).is_empty());
    // `status` over the binary's own words says so too.
    let text = peach_dyndns_daemon::status::render(
        &serde_json::from_value(st.clone()).expect("status"),
        0,
    );
    assert!(
        text.contains("state file:") && text.contains("NOT SAVED"),
        "{text}"
    );
    // Room again: the next save works and the error goes.
    std::fs::remove_file(&filler).expect("rm filler");
    let st = d.result("update_now", None).await;
    assert_eq!(st["state_error"], Value::Null, "{st:#}");
    assert!(saved_seq(&state, &pub_) > before, "the new seq was saved");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_state_directory_is_a_clear_error_and_the_file_stays_whole() {
    let (pub_, mut d, fs, state, _pi) = online_on_tmpfs().await;
    let before = saved_seq(&state, &pub_);
    let old_bytes = std::fs::read(&state).expect("read");
    fs.remount("ro");
    let st = d.result("update_now", None).await;
    let error = st["state_error"]
        .as_str()
        .unwrap_or_else(|| panic!("{st:#}"));
    println!("state directory read-only: status.state_error = {error:?}");
    assert!(
        error.contains(&state.display().to_string()) && error.contains("Read-only file system"),
        "{error}"
    );
    assert_eq!(std::fs::read(&state).expect("read"), old_bytes);
    fs.remount("rw");
    assert!(leftovers(fs.path(), &["state.json"]).is_empty());
    let st = d.result("update_now", None).await;
    assert_eq!(st["state_error"], Value::Null, "{st:#}");
    assert!(saved_seq(&state, &pub_) > before, "the new seq was saved");
    d.stop().await;
}
