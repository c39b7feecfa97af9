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
//! Exit code: 0 all targets met, 2 a target missed, 1 the run failed. With
//! `--memory-only`, 0 and 2 judge the daemon's VmRSS and VmHWM alone: the
//! daemon's RSS step of `scripts/test` (`scripts/test.d/50-daemon-rss`),
//! where the CPU figures would depend on what else the machine runs.

mod args;
mod binaries;
mod inadyn;
mod measure;
mod procs;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use testkit::{procfs, DaemonConfig, Process, ServerConfig};

use crate::args::{Args, DAEMON_NAME, DOMAIN};

/// The server's count of the daemon's checks: `GET /ip` answered with the
/// signed statement (protocol v2; the plain `ok` answer is inadyn's).
const DAEMON_CHECK: (&str, &str) = ("ip", "signed");
use crate::binaries::{binary_size, build, keygen};
use crate::inadyn::{run_inadyn, INADYN_PERIOD_SECS};
use crate::measure::{sample, Metrics};
use crate::procs::{free_tcp_port, free_udp_port, wait_for};
use crate::report::{mib, print_machine, print_samples, thousands, Summary};

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
    // The children run in process groups of their own (`testkit::Process`),
    // so a terminal's Ctrl-C reaches the bench alone: dropping `run` then
    // drops their handles, which stop them.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(args) => outcome,
            e = interrupted() => Err(e),
        }
    });
    match outcome {
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
        ServerConfig::new(DOMAIN)
            .listen(format!("127.0.0.1:{http_port}"))
            .secret(dir.join("pub.secret"))
            .database(dir.join("registry.sqlite3"))
            .allow_private_addresses(true)
            .dns_embedded(format!("127.0.0.1:{dns_port}"))
            .graph_allowlist([&pi_id, &inadyn_id])
            // The daemon checks DNS at every check (A and AAAA): hundreds
            // of queries a second from one address, which the embedded
            // DNS's response rate limit (20/s per source) would slip.
            .table("[dns.limits]\nrrl_per_second = 1000")
            .to_toml(),
    )?;
    std::fs::write(
        dir.join("daemon.toml"),
        DaemonConfig::new()
            .secret_path(dir.join("pi.secret"))
            .state_path(dir.join("state.json"))
            .top(&format!("check_interval_ms = {}", args.interval_ms))
            .registration_name(DAEMON_NAME)
            .static_pub(&pub_id, &format!("{base}/update"), DOMAIN)
            .allow_private_addresses(true)
            .dns_server(format!("127.0.0.1:{dns_port}"))
            .rpc_listen(format!("127.0.0.1:{rpc_port}"))
            .sbot_enabled(false)
            .to_toml(),
    )?;

    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;

    let mut cmd = Command::new(&server_bin);
    cmd.arg("--config")
        .arg(dir.join("server.toml"))
        .arg("serve")
        .env("RUST_LOG", "warn");
    let mut server = Process::spawn(cmd, "peach-dyndns-server", &dir.join("server.log"))?;
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
    let mut cmd = Command::new(&daemon_bin);
    cmd.arg("--config")
        .arg(dir.join("daemon.toml"))
        .env_remove("RUST_LOG");
    let mut daemon = Process::spawn(cmd, "peach-dyndns-daemon", &dir.join("daemon.log"))?;
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
                daemon.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d_start = sample(&metrics, daemon.pid(), DAEMON_CHECK).await?;
    let marks = [args.checks / 10, args.checks];
    // Generous: the interval plus a loaded machine's round trip, tripled.
    let budget =
        Duration::from_millis(args.checks * (args.interval_ms + 5) * 3) + Duration::from_secs(60);
    let started = Instant::now();
    let mut d_samples = vec![("after start (online)".to_string(), d_start)];
    for mark in marks {
        loop {
            daemon.check_alive()?;
            if metrics.count(DAEMON_CHECK.0, DAEMON_CHECK.1).await? >= mark {
                break;
            }
            if started.elapsed() > budget {
                bail!("the daemon did not reach {mark} checks in {budget:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        d_samples.push((
            format!("after {} checks", thousands(mark)),
            sample(&metrics, daemon.pid(), DAEMON_CHECK).await?,
        ));
    }
    let elapsed = started.elapsed();
    let smaps = procfs::smaps_breakdown(Some(daemon.pid()))?;
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

    let verdict = report::print_targets(&d, i.as_ref(), stripped_size);
    if args.memory_only {
        println!(
            "--memory-only: the exit code says whether VmRSS and VmHWM are within {} KiB",
            report::TARGET_RSS_KIB
        );
        return Ok(verdict.memory);
    }
    Ok(verdict.all)
}

/// Resolves on SIGINT; never when the handler cannot be installed.
async fn interrupted() -> anyhow::Error {
    match tokio::signal::ctrl_c().await {
        Ok(()) => anyhow::anyhow!("interrupted; the bench's children were stopped"),
        Err(_) => std::future::pending().await,
    }
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
