//! The daemon's footprint benchmark: a command that prints numbers, not a
//! test.
//!
//! ```text
//! cargo run -p peach-dyndns-daemon --example bench -- [--checks 10000] [--interval-ms 2]
//! ```
//!
//! In one run, on loopback only, it:
//!
//! 1. builds the daemon with the `release-daemon` profile (what the `.deb`
//!    ships: LTO, `panic = "abort"`, stripped) and the server (debug by
//!    default: only the daemon is measured), and reports the daemon's
//!    stripped size;
//! 2. starts a real `peach-dyndns-server` with its embedded DNS and an
//!    allowlist, and the daemon with a throwaway identity and
//!    `check_interval_ms` (the benchmark's knob: an hour of one-second
//!    checks, 3,600, takes seconds instead);
//! 3. once the daemon is online (registered, DNS verified), reads its
//!    `VmRSS`/`VmHWM` and CPU time from `/proc` after start, after a tenth
//!    of the checks and after all of them (10,000 by default), every one a
//!    no-change check (`GET /ip`, same address, nothing sent); the check
//!    count is the server's `/ip` counter, so the daemon is not disturbed;
//! 4. registers a dyndns2 token for a second name with a signed update
//!    (`token_sha256`, built with the protocol crate), points inadyn (the
//!    Debian package) at the same server's `/ip` and `/nic/update`, and
//!    measures it the same way. inadyn's period cannot go below a second
//!    of sleep granularity, so its checks are driven by its own "check
//!    now" signal (SIGUSR2), one at a time;
//! 5. prints both side by side and the targets of issue 4, PASS or MISS.
//!
//! CPU per check is measured between the first sample after start and the
//! last, so start-up costs (first update, key loading) are left out, as
//! they would be over an hour. `utime + stime` comes in clock ticks (10 ms);
//! `schedstat` (nanoseconds of CPU, living threads) is printed beside it.
//!
//! Resident memory here is mostly the daemon's code, mapped from its file
//! in 64 KiB windows around every page it touches (the kernel's
//! fault-around), so it depends a little on how that file sits in the page
//! cache: `--cold` starts the daemon as after a reboot. See
//! `docs/benchmarks-daemon.md`.
//!
//! Exit code: 0 all targets met, 2 a target missed, 1 the run failed.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use peach_dyndns_daemon::pubapi::{HttpPubApi, PubApi as _};
use peach_dyndns_protocol::identity::PublicKey;
use peach_dyndns_protocol::message::{Op, UpdateMsg};
use peach_dyndns_protocol::rules::token_hash;
use peach_dyndns_protocol::seal::seal_update;

/// The zone the bench's server serves.
const DOMAIN: &str = "peach.localhost";
/// The daemon's name.
const DAEMON_NAME: &str = "benchpi";
/// inadyn's name (registered by the bench with a dyndns2 token).
const INADYN_NAME: &str = "inadyn";
/// inadyn's dyndns2 password; only its SHA-256 reaches the server.
const INADYN_TOKEN: &str = "bench-token-not-a-secret";
/// Where inadyn's name points before inadyn runs, so its first update is
/// a real change (`good`), not `nochg`.
const INADYN_FIRST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// inadyn's period in its config: the brief's 10 s (inadyn 2.10 accepts
/// it; its sleep granularity is 1 s). The measured checks are driven by
/// SIGUSR2 on top of it.
const INADYN_PERIOD_SECS: u32 = 10;

/// Issue 4's targets.
const TARGET_RSS_KIB: u64 = 4608; // 4.5 MiB
const TARGET_CPU_MS: f64 = 0.5;
const TARGET_BINARY_BYTES: u64 = 8 * 1024 * 1024;
/// Peers measured on this kind of machine (issue 4), for the table.
const PEERS: [(&str, &str, &str); 2] = [
    ("inadyn 2.10 (issue 4)", "4.7 MB", "0.40 ms"),
    ("ddclient 3.10 (issue 4)", "15.8 MB", "2.4 ms"),
];

/// Footprint benchmark of peach-dyndns-daemon against inadyn, on loopback.
#[derive(Parser)]
struct Args {
    /// No-change checks the daemon makes after start; samples are taken
    /// after a tenth of them and after all.
    #[arg(long, default_value_t = 10_000)]
    checks: u64,
    /// The daemon's check interval in milliseconds (`check_interval_ms`).
    #[arg(long, default_value_t = 2)]
    interval_ms: u64,
    /// Checks inadyn makes (driven by SIGUSR2); 0 skips inadyn.
    #[arg(long, default_value_t = 1_000)]
    inadyn_checks: u64,
    /// Milliseconds between inadyn's checks (0: the next as soon as one is
    /// done). Set it to --interval-ms to compare both at the same pace.
    #[arg(long, default_value_t = 0)]
    inadyn_pace_ms: u64,
    /// Build the server with the release profile (slower to build; the
    /// daemon's numbers do not depend on it).
    #[arg(long)]
    release_server: bool,
    /// Use the binaries already built.
    #[arg(long)]
    no_build: bool,
    /// Measure this daemon binary instead of the release-daemon build (to
    /// compare builds; implies nothing about building the server).
    #[arg(long, value_name = "PATH")]
    daemon: Option<PathBuf>,
    /// Drop the daemon binary's pages from the page cache first (`dd
    /// iflag=nocache`), so it starts as after a reboot: its code then comes
    /// in through readahead, and its RSS varies more from run to run.
    #[arg(long)]
    cold: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start a runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("bench: FAILED: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    if args.checks < 10 {
        bail!("--checks must be at least 10");
    }
    if args.interval_ms == 0 {
        bail!("--interval-ms must be at least 1");
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the daemon crate has no parent directory")?
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let server_profile = if args.release_server {
        "release"
    } else {
        "debug"
    };
    if !args.no_build {
        build(&workspace, args.release_server, args.daemon.is_none())?;
    }
    let daemon_bin = args
        .daemon
        .clone()
        .unwrap_or_else(|| target.join("release-daemon/peach-dyndns-daemon"));
    let server_bin = target.join(server_profile).join("peach-dyndns-server");
    for bin in [&daemon_bin, &server_bin] {
        if !bin.is_file() {
            bail!("{} is missing (run without --no-build)", bin.display());
        }
    }

    let dir = tempfile::Builder::new()
        .prefix("peach-dyndns-bench.")
        .tempdir()
        .context("cannot make a temp dir")?;
    let dir = dir.path();
    let (built_size, stripped_size) = binary_size(&daemon_bin, dir)?;

    print_machine();
    println!(
        "daemon: {}, {} bytes as built, {} stripped ({:.2} MiB)",
        daemon_bin.display(),
        built_size,
        stripped_size,
        mib(stripped_size)
    );
    println!("server: {} ({server_profile})", server_bin.display());

    // Identities: the pub, the Pi, and inadyn's owner.
    let pub_id = keygen(&server_bin, &dir.join("pub.secret"))?;
    let pi_id = keygen(&server_bin, &dir.join("pi.secret"))?;
    let inadyn_id = keygen(&server_bin, &dir.join("inadyn.secret"))?;

    let http_port = free_tcp_port()?;
    let dns_port = free_udp_port()?;
    let rpc_port = free_tcp_port()?;
    let base = format!("http://127.0.0.1:{http_port}");
    std::fs::write(
        dir.join("server.toml"),
        format!(
            "domain = \"{DOMAIN}\"\nlisten = \"127.0.0.1:{http_port}\"\n\
             secret = \"{pub_secret}\"\ndatabase = \"{db}\"\n\
             allow_private_addresses = true\n\
             [dns]\nbackend = \"embedded\"\nlisten = \"127.0.0.1:{dns_port}\"\n\
             [graph]\nbackend = \"allowlist\"\nallow = [\"{pi_id}\", \"{inadyn_id}\"]\n",
            pub_secret = dir.join("pub.secret").display(),
            db = dir.join("registry.sqlite3").display(),
        ),
    )?;
    std::fs::write(
        dir.join("daemon.toml"),
        format!(
            "secret_path = \"{secret}\"\nstate_path = \"{state}\"\n\
             check_interval_ms = {interval}\n\
             [registration]\nname = \"{DAEMON_NAME}\"\npub_id = \"{pub_id}\"\n\
             url = \"{base}/update\"\ndomain = \"{DOMAIN}\"\n\
             [ip]\nallow_private_addresses = true\n\
             [dns]\nserver = \"127.0.0.1:{dns_port}\"\n\
             [rpc]\nlisten = \"127.0.0.1:{rpc_port}\"\n\
             [sbot]\nenabled = false\n",
            secret = dir.join("pi.secret").display(),
            state = dir.join("state.json").display(),
            interval = args.interval_ms,
        ),
    )?;

    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;

    let mut server = Proc::spawn(
        "server",
        Command::new(&server_bin)
            .arg("--config")
            .arg(dir.join("server.toml"))
            .arg("serve")
            .env("RUST_LOG", "warn"),
        &dir.join("server.log"),
    )?;
    wait_for(Duration::from_secs(30), "the server's /health", || async {
        Ok(client
            .get(format!("{base}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()))
    })
    .await?;
    server.check_alive()?;
    let metrics = Metrics {
        client: client.clone(),
        url: format!("{base}/metrics"),
    };

    // The daemon.
    println!(
        "interval: check_interval_ms = {} ({} checks ≈ {:.1} hours at one a second, {:.1} days at the default 60 s)",
        args.interval_ms,
        args.checks,
        args.checks as f64 / 3600.0,
        args.checks as f64 * 60.0 / 86_400.0,
    );
    if args.cold {
        let dropped = Command::new("dd")
            .arg(format!("if={}", daemon_bin.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .context("cannot run dd")?;
        if !dropped.success() {
            bail!(
                "dd could not drop {} from the page cache",
                daemon_bin.display()
            );
        }
        println!("cold start: the daemon's binary was dropped from the page cache");
    }
    let mut daemon = Proc::spawn(
        "daemon",
        Command::new(&daemon_bin)
            .arg("--config")
            .arg(dir.join("daemon.toml"))
            .env_remove("RUST_LOG"),
        &dir.join("daemon.log"),
    )?;
    let rpc_url = format!("http://127.0.0.1:{rpc_port}/rpc");
    let start = Instant::now();
    loop {
        daemon.check_alive()?;
        let status = rpc_status(&client, &rpc_url).await.unwrap_or_default();
        if status["state"] == "online" {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "the daemon is not online after 30 s ({status}); its log:\n{}",
                tail(&dir.join("daemon.log"))
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d_start = sample(&metrics, daemon.pid, "ip").await?;
    let marks = [args.checks / 10, args.checks];
    // Generous: the interval plus a loaded machine's round trip, tripled.
    let budget =
        Duration::from_millis(args.checks * (args.interval_ms + 5) * 3) + Duration::from_secs(60);
    let started = Instant::now();
    let mut d_samples = vec![("after start (online)".to_string(), d_start)];
    for mark in marks {
        loop {
            daemon.check_alive()?;
            if metrics.count("ip", "ok").await? >= mark {
                break;
            }
            if started.elapsed() > budget {
                bail!("the daemon did not reach {mark} checks in {budget:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        d_samples.push((
            format!("after {} checks", thousands(mark)),
            sample(&metrics, daemon.pid, "ip").await?,
        ));
    }
    let elapsed = started.elapsed();
    let smaps = smaps_breakdown(daemon.pid)?;
    let status = rpc_status(&client, &rpc_url).await?;
    daemon.stop(Duration::from_secs(5))?;
    if status["state"] != "online" || status["failures"] != 0 {
        bail!("the daemon is not online after the checks: {status}");
    }
    println!(
        "daemon: {} checks in {:.1} s; its own count: {}, state {}",
        thousands(d_samples[d_samples.len() - 1].1.checks),
        elapsed.as_secs_f64(),
        status["checks"],
        status["state"]
    );

    // inadyn against the same server.
    let inadyn = if args.inadyn_checks > 0 {
        Some(run_inadyn(&client, &metrics, dir, &base, &pub_id, http_port, &args).await?)
    } else {
        None
    };
    server.stop(Duration::from_secs(5))?;

    // Tables.
    println!();
    println!("peach-dyndns-daemon (interval {} ms)", args.interval_ms);
    print_samples(&d_samples);
    let d = Summary::of(&d_samples);
    d.print();
    println!("  where the resident memory is (/proc/<pid>/smaps, after all checks):");
    for (mapping, kib) in &smaps {
        println!("    {kib:>6} KiB  {mapping}");
    }
    let i = inadyn.as_ref().map(|(version, samples)| {
        println!();
        println!(
            "{version} (period = {INADYN_PERIOD_SECS}, checks driven by SIGUSR2, {} ms apart)",
            args.inadyn_pace_ms
        );
        print_samples(samples);
        let s = Summary::of(samples);
        s.print();
        s
    });

    println!();
    println!("Targets (issue 4)");
    let mut all = true;
    let mut row = |what: &str, target: &str, ours: String, theirs: String, pass: bool| {
        all &= pass;
        println!(
            "  {what:<34} {target:>10}  {ours:>12}  {theirs:>12}  {}",
            if pass { "PASS" } else { "MISS" }
        );
    };
    println!(
        "  {:<34} {:>10}  {:>12}  {:>12}",
        "", "target", "daemon", "inadyn"
    );
    let na = || "-".to_string();
    row(
        "VmRSS after all checks",
        "≤ 4.5 MiB",
        format!("{:.2} MiB", kib_to_mib(d.last.rss_kib)),
        i.as_ref()
            .map_or_else(na, |s| format!("{:.2} MiB", kib_to_mib(s.last.rss_kib))),
        d.last.rss_kib <= TARGET_RSS_KIB,
    );
    row(
        "VmHWM (peak) after all checks",
        "≤ 4.5 MiB",
        format!("{:.2} MiB", kib_to_mib(d.last.hwm_kib)),
        i.as_ref()
            .map_or_else(na, |s| format!("{:.2} MiB", kib_to_mib(s.last.hwm_kib))),
        d.last.hwm_kib <= TARGET_RSS_KIB,
    );
    row(
        "CPU per no-change check",
        "≤ 0.5 ms",
        format!("{:.3} ms", d.cpu_ms_per_check),
        i.as_ref()
            .map_or_else(na, |s| format!("{:.3} ms", s.cpu_ms_per_check)),
        d.cpu_ms_per_check <= TARGET_CPU_MS,
    );
    row(
        &format!("stripped {} binary", std::env::consts::ARCH),
        "< 8 MiB",
        format!("{:.2} MiB", mib(stripped_size)),
        inadyn_size().map_or_else(na, |b| format!("{:.2} MiB", mib(b))),
        stripped_size < TARGET_BINARY_BYTES,
    );
    row(
        "VmRSS growth, last 90 % of checks",
        "0 KiB",
        format!("{:+} KiB", d.growth_kib),
        i.as_ref()
            .map_or_else(na, |s| format!("{:+} KiB", s.growth_kib)),
        d.growth_kib <= 0,
    );
    println!(
        "  (inadyn's binary is small because its work is in shared libraries, \
         which its RSS counts)"
    );
    println!();
    println!("Peers measured before (issue 4): RSS, CPU per check");
    for (name, rss, cpu) in PEERS {
        println!("  {name:<26} {rss:>8}  {cpu:>8}");
    }
    Ok(all)
}

/// Builds the release daemon (unless another binary is measured) and the
/// server.
fn build(workspace: &Path, release_server: bool, daemon: bool) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut builds = Vec::new();
    if daemon {
        builds.push(vec![
            "build",
            "--profile",
            "release-daemon",
            "-p",
            "peach-dyndns-daemon",
            "--bin",
            "peach-dyndns-daemon",
        ]);
    }
    let mut server = vec![
        "build",
        "-p",
        "peach-dyndns-server",
        "--bin",
        "peach-dyndns-server",
    ];
    if release_server {
        server.push("--release");
    }
    builds.push(server);
    for build in builds {
        eprintln!("bench: cargo {}", build.join(" "));
        let status = Command::new(&cargo)
            .args(&build)
            .current_dir(workspace)
            .status()
            .context("cannot run cargo")?;
        if !status.success() {
            bail!("cargo {} failed: {status}", build.join(" "));
        }
    }
    Ok(())
}

/// The binary's size as built and stripped (`strip` on a copy; the
/// profile strips already, so the two should agree).
fn binary_size(bin: &Path, dir: &Path) -> anyhow::Result<(u64, u64)> {
    let built = std::fs::metadata(bin)
        .with_context(|| format!("cannot stat {}", bin.display()))?
        .len();
    let copy = dir.join("daemon.stripped");
    let stripped = match Command::new("strip").arg("-o").arg(&copy).arg(bin).status() {
        Ok(s) if s.success() => std::fs::metadata(&copy)?.len(),
        _ => {
            eprintln!("bench: `strip` failed or is missing; reporting the size as built");
            built
        }
    };
    Ok((built, stripped))
}

/// inadyn's installed binary size, for the table.
fn inadyn_size() -> Option<u64> {
    std::fs::metadata("/usr/sbin/inadyn").ok().map(|m| m.len())
}

fn keygen(server: &Path, path: &Path) -> anyhow::Result<String> {
    let out = Command::new(server)
        .arg("keygen")
        .arg(path)
        .output()
        .context("cannot run peach-dyndns-server keygen")?;
    if !out.status.success() {
        bail!(
            "keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `probe` every 50 ms until it says yes or `limit` passes.
async fn wait_for<F, Fut>(limit: Duration, what: &str, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out after {limit:?} waiting for {what}")
}

async fn rpc_status(client: &reqwest::Client, url: &str) -> anyhow::Result<serde_json::Value> {
    let answer: serde_json::Value = client
        .post(url)
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "status"}))
        .send()
        .await?
        .json()
        .await?;
    answer
        .get("result")
        .cloned()
        .with_context(|| format!("status answered {answer}"))
}

/// The server's request counters (`GET /metrics`).
struct Metrics {
    client: reqwest::Client,
    url: String,
}

impl Metrics {
    async fn count(&self, endpoint: &str, result: &str) -> anyhow::Result<u64> {
        let text = self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let key =
            format!("peach_dyndns_requests_total{{endpoint=\"{endpoint}\",result=\"{result}\"}} ");
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0))
    }
}

/// What `/proc` says about a process, and the check count at that moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Checks so far (the server's `/ip` count, averaged around the read).
    checks: u64,
    rss_kib: u64,
    hwm_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    threads: u64,
    /// utime + stime, milliseconds (10 ms resolution).
    cpu_ms: f64,
    /// CPU time of the living threads from `schedstat`, nanoseconds.
    sched_ns: u64,
}

/// Reads `/proc/<pid>` between two reads of the server's check count.
async fn sample(metrics: &Metrics, pid: u32, endpoint: &str) -> anyhow::Result<Sample> {
    let before = metrics.count(endpoint, "ok").await?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let mut sched_ns = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let text = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        sched_ns += text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let after = metrics.count(endpoint, "ok").await?;
    let field = |key: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("/proc/{pid}/status has no {key}"))
    };
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15, and the rest starts at field 3.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
    Ok(Sample {
        checks: (before + after) / 2,
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        anon_kib: field("RssAnon:")?,
        file_kib: field("RssFile:")?,
        threads: field("Threads:")?,
        cpu_ms: ticks as f64 * 1000.0 / clock_ticks(),
        sched_ns,
    })
}

/// Resident KiB per mapping (file and permissions, or `[heap]`, …), the
/// largest first; mappings under 8 KiB are summed as "other".
fn smaps_breakdown(pid: u32) -> anyhow::Result<Vec<(String, u64)>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut by_mapping: Vec<(String, u64)> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // `start-end perms offset dev inode [path]`
            let perms = words.next().unwrap_or("");
            let path = words.nth(3).unwrap_or("[anonymous]");
            let name = Path::new(path)
                .file_name()
                .map_or(path.to_string(), |n| n.to_string_lossy().into_owned());
            current = format!("{name} {perms}");
        } else if first == "Rss:" {
            let kib: u64 = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            match by_mapping.iter_mut().find(|(m, _)| *m == current) {
                Some((_, total)) => *total += kib,
                None => by_mapping.push((current.clone(), kib)),
            }
        }
    }
    by_mapping.sort_by_key(|(_, kib)| std::cmp::Reverse(*kib));
    let other: u64 = by_mapping
        .iter()
        .filter(|(_, k)| *k < 8)
        .map(|(_, k)| k)
        .sum();
    by_mapping.retain(|(_, k)| *k >= 8);
    by_mapping.push(("other".into(), other));
    Ok(by_mapping)
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

fn print_samples(samples: &[(String, Sample)]) {
    println!(
        "  {:<24} {:>7} {:>10} {:>10} {:>9} {:>9} {:>4} {:>9}",
        "", "checks", "VmRSS", "VmHWM", "RssAnon", "RssFile", "thr", "CPU ms"
    );
    for (what, s) in samples {
        println!(
            "  {what:<24} {:>7} {:>7} KiB {:>6} KiB {:>5} KiB {:>5} KiB {:>4} {:>9.0}",
            s.checks, s.rss_kib, s.hwm_kib, s.anon_kib, s.file_kib, s.threads, s.cpu_ms
        );
    }
}

/// The numbers the targets are judged on.
struct Summary {
    last: Sample,
    growth_kib: i64,
    anon_growth_kib: i64,
    cpu_ms_per_check: f64,
    sched_ms_per_check: f64,
    checks: u64,
}

impl Summary {
    /// CPU per check between the first sample (after start) and the last;
    /// growth between the middle sample and the last.
    fn of(samples: &[(String, Sample)]) -> Summary {
        let first = samples[0].1;
        let mid = samples[samples.len() - 2].1;
        let last = samples[samples.len() - 1].1;
        let checks = last.checks.saturating_sub(first.checks).max(1);
        Summary {
            last,
            growth_kib: last.rss_kib as i64 - mid.rss_kib as i64,
            anon_growth_kib: last.anon_kib as i64 - mid.anon_kib as i64,
            cpu_ms_per_check: (last.cpu_ms - first.cpu_ms) / checks as f64,
            sched_ms_per_check: last.sched_ns.saturating_sub(first.sched_ns) as f64
                / 1e6
                / checks as f64,
            checks,
        }
    }

    fn print(&self) {
        println!(
            "  CPU per check over {} checks: {:.3} ms (utime+stime), {:.3} ms (schedstat)",
            thousands(self.checks),
            self.cpu_ms_per_check,
            self.sched_ms_per_check
        );
        println!(
            "  growth between the last two samples: VmRSS {:+} KiB, RssAnon {:+} KiB",
            self.growth_kib, self.anon_growth_kib
        );
    }
}

/// Registers inadyn's name and token, runs inadyn against the same server
/// and samples it like the daemon. Returns its version and samples.
async fn run_inadyn(
    client: &reqwest::Client,
    metrics: &Metrics,
    dir: &Path,
    base: &str,
    pub_id: &str,
    http_port: u16,
    args: &Args,
) -> anyhow::Result<(String, Vec<(String, Sample)>)> {
    let checks = args.inadyn_checks;
    let pace = Duration::from_millis(args.inadyn_pace_ms);
    let version = Command::new("inadyn")
        .arg("--version")
        .output()
        .context("inadyn is not installed (apt-get install inadyn)")?;
    let version = format!("inadyn {}", String::from_utf8_lossy(&version.stdout).trim());

    // A signed update registers the name with the token's hash: the only
    // way the server hands out a dyndns2 password.
    let keypair = peach_dyndns_daemon::secret::load_secret(&dir.join("inadyn.secret"))?;
    let pub_key: PublicKey = pub_id.parse()?;
    let msg = UpdateMsg {
        op: Op::Update,
        name: INADYN_NAME.into(),
        domain: DOMAIN.into(),
        ip: Some(INADYN_FIRST_IP),
        ip6: None,
        pub_id: pub_key,
        public_key: keypair.public(),
        seq: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
            .try_into()?,
        token_sha256: Some(token_hash(INADYN_TOKEN)),
        txt: None,
    };
    let envelope = seal_update(&msg.sign(&keypair), &pub_key)
        .map_err(|e| anyhow::anyhow!("cannot seal: {e}"))?;
    let url = reqwest::Url::parse(&format!("{base}/update"))?;
    HttpPubApi::new(client.clone())
        .send_update(&url, &envelope)
        .await
        .context("registering inadyn's token")?;

    let fqdn = format!("{INADYN_NAME}.{DOMAIN}");
    let conf = dir.join("inadyn.conf");
    std::fs::write(
        &conf,
        format!(
            "period = {INADYN_PERIOD_SECS}\n\
             verify-address = false\n\
             custom bench {{\n\
             \x20   ssl = false\n\
             \x20   checkip-server = 127.0.0.1:{http_port}\n\
             \x20   checkip-path = /ip\n\
             \x20   checkip-ssl = false\n\
             \x20   ddns-server = 127.0.0.1:{http_port}\n\
             \x20   ddns-path = \"/nic/update?hostname=%h&myip=%i\"\n\
             \x20   username = \"{fqdn}\"\n\
             \x20   password = \"{INADYN_TOKEN}\"\n\
             \x20   hostname = \"{fqdn}\"\n\
             }}\n"
        ),
    )?;
    let cache = dir.join("inadyn-cache");
    std::fs::create_dir_all(&cache)?;
    let ip_before = metrics.count("ip", "ok").await?;
    let mut inadyn = Proc::spawn(
        "inadyn",
        Command::new("inadyn")
            .arg("--foreground")
            .arg("--no-pidfile")
            .arg(format!("--cache-dir={}", cache.display()))
            .arg("-f")
            .arg(&conf),
        &dir.join("inadyn.log"),
    )?;
    let start = Instant::now();
    while metrics.count("nic_update", "good").await? < 1 {
        inadyn.check_alive()?;
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "inadyn made no update in 30 s; its log:\n{}",
                tail(&dir.join("inadyn.log"))
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The checks are counted from the server's /ip counter; take the daemon's
    // share out by sampling relative counts.
    let mut samples = vec![(
        "after start (updated)".to_string(),
        sample(metrics, inadyn.pid, "ip").await?,
    )];
    let offset = ip_before;
    samples[0].1.checks -= offset;
    let marks = [checks / 10, checks];
    let mut done = samples[0].1.checks;
    let mut resent = 0u32;
    for mark in marks {
        while done < mark {
            let before = metrics.count("ip", "ok").await?;
            signal(inadyn.pid, "USR2")?;
            let start = Instant::now();
            let next = start + pace;
            loop {
                inadyn.check_alive()?;
                if metrics.count("ip", "ok").await? > before {
                    break;
                }
                if start.elapsed() > Duration::from_secs(3) {
                    // A signal that landed as inadyn reset its command is
                    // lost; ask again (bounded).
                    resent += 1;
                    if resent > 20 {
                        bail!("inadyn stopped answering SIGUSR2");
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            done = metrics.count("ip", "ok").await?.saturating_sub(offset);
            tokio::time::sleep_until(next.into()).await;
        }
        let mut s = sample(metrics, inadyn.pid, "ip").await?;
        s.checks -= offset;
        samples.push((format!("after {} checks", thousands(mark)), s));
    }
    if resent > 0 {
        println!("inadyn: {resent} SIGUSR2 signals were sent again after 3 s without a check");
    }
    inadyn.stop(Duration::from_secs(5))?;
    let good = metrics.count("nic_update", "good").await?;
    println!("inadyn: {good} dyndns2 update(s) accepted (the first; then no change)");
    Ok((version, samples))
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    name: &'static str,
    pid: u32,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> anyhow::Result<Proc> {
        let file = std::fs::File::create(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        Ok(Proc {
            name,
            pid: child.id(),
            child,
            log: log.to_path_buf(),
        })
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the {} exited ({status}); its log:\n{}",
                self.name,
                tail(&self.log)
            );
        }
        Ok(())
    }

    /// SIGTERM, and SIGKILL if it has not exited within `grace`.
    fn stop(&mut self, grace: Duration) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let _ = signal(self.pid, "TERM");
        let start = Instant::now();
        while start.elapsed() < grace {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("the {} did not stop within {grace:?} of SIGTERM", self.name)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(2));
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn print_machine() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut line = String::new();
    let _ = write!(
        line,
        "machine: {model}, {cores} cores, {:.1} GiB, Linux {}, load {}",
        mem as f64 / 1024.0 / 1024.0,
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("{line}");
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// 10000 → "10,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
