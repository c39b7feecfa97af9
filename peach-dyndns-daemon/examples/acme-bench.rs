//! `cargo run --example acme-bench -- <daemon binary>`: the time from
//! `[acme] enabled = true` to the certificate on disk against a real
//! Pebble (through a real pub on its embedded DNS, in this process), and
//! the daemon's resident memory idle and during the order.
//!
//! The daemon binary is the one measured (build it with
//! `cargo build --profile release-daemon -p peach-dyndns-daemon`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peach_dyndns_daemon::acme::hook::rpc_status;
use peach_dyndns_protocol::identity::Keypair;
use testkit::procfs::Status as ProcStatus;
use testkit::{DaemonConfig, Pebble, ServerConfig};

const DOMAIN: &str = "peach.dinosaur.is";

fn rss_kib(pid: u32) -> u64 {
    ProcStatus::read(Some(pid))
        .and_then(|s| s.value("VmRSS:"))
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let bin = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: acme-bench <peach-dyndns-daemon binary>"))?;
    let dir = tempfile::tempdir()?;
    let pi = Keypair::generate();
    let pub_key = Keypair::generate();
    testkit::write_secret(&dir.path().join("pi.secret"), &pi.to_secret_file());
    testkit::write_secret(&dir.path().join("pub.secret"), &pub_key.to_secret_file());
    // The pub, in this process.
    let http_port = testkit::free_port();
    let dns_port = testkit::free_port();
    let text = ServerConfig::new(DOMAIN)
        .listen(format!("127.0.0.1:{http_port}"))
        .secret(dir.path().join("pub.secret"))
        .database(dir.path().join("registry.sqlite3"))
        .allow_private_addresses(true)
        .top(&format!(
            "control_socket = {}",
            testkit::toml_string(dir.path().join("c.sock").display())
        ))
        .dns_embedded(format!("127.0.0.1:{dns_port}"))
        .graph_allowlist([pi.id()])
        .to_toml();
    let config = peach_dyndns_server::config::Config::from_str(&text, Path::new("pub.toml"))?;
    let listeners = peach_dyndns_server::Listeners::bind(&config).await?;
    let (state, embedded) = peach_dyndns_server::build_state(config)?;
    tokio::spawn(peach_dyndns_server::run(
        Arc::new(state),
        embedded,
        listeners,
        std::future::pending(),
    ));
    let pebble = Pebble::builder()
        .dns_server(([127, 0, 0, 1], dns_port).into())
        .start();

    let rpc_port = testkit::free_port();
    let rpc: std::net::SocketAddr = ([127, 0, 0, 1], rpc_port).into();
    let cert_dir = dir.path().join("tls");
    let base = DaemonConfig::new()
        .secret_path(dir.path().join("pi.secret"))
        .state_path(dir.path().join("state.json"))
        .fast_timers()
        .registration_name("eb4890")
        .static_pub(
            &pub_key.id(),
            &format!("http://127.0.0.1:{http_port}/update"),
            DOMAIN,
        )
        .allow_private_addresses(true)
        .dns_server(format!("127.0.0.1:{dns_port}"))
        .dns_timeout_secs(1)
        .rpc_listen(rpc)
        .sbot_enabled(false)
        .to_toml();
    let acme = |enabled: bool| {
        format!(
            "\n[acme]\nenabled = {enabled}\ndirectory_url = {}\nwildcard = true\ncert_dir = {}\nca_file = {}\n",
            testkit::toml_string(pebble.directory_url()),
            testkit::toml_string(cert_dir.display()),
            testkit::toml_string(pebble.listener_ca_path().display()),
        )
    };
    let config_path = dir.path().join("daemon.toml");
    std::fs::write(&config_path, base.clone() + &acme(false))?;
    let mut child = Command::new(&bin)
        .args(["run", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("daemon.log"))?)
        .spawn()?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if rpc_status(rpc).await.is_some_and(|s| s["online"] == true) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the daemon did not get online");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Idle: online, a few quiet checks later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_kib(pid);
    std::fs::write(&config_path, base + &acme(true))?;
    let started = Instant::now();
    let hup = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    anyhow::ensure!(hup.success(), "kill -HUP {pid} failed");
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    let took = loop {
        peak = peak.max(rss_kib(pid));
        if cert_dir.join("fullchain.pem").exists() && cert_dir.join("privkey.pem").exists() {
            break started.elapsed();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no certificate within 90 s; see the daemon log"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();
    let size = std::fs::metadata(&bin)?.len();
    println!("acme-bench: {bin}");
    println!(
        "  binary size:                          {size} bytes ({:.2} MiB)",
        size as f64 / 1048576.0
    );
    println!(
        "  enabled = true (SIGHUP) -> cert on disk: {:.2} s",
        took.as_secs_f64()
    );
    println!(
        "  RSS idle (online, ACME off):          {idle} KiB ({:.2} MiB)",
        idle as f64 / 1024.0
    );
    println!(
        "  RSS peak during the order (10 ms):    {peak} KiB ({:.2} MiB)",
        peak as f64 / 1024.0
    );
    println!(
        "  RSS 2 s after the order:              {after} KiB ({:.2} MiB)",
        after as f64 / 1024.0
    );
    Ok(())
}
