//! The server's load benchmark: a command that prints numbers, not a test.
//!
//! ```text
//! cargo run --release -p peach-dyndns-server --example bench -- [--quick]
//! ```
//!
//! It measures, in one run and on loopback only:
//!
//! 1. the ceilings: one core's cost of `open_envelope` (unseal + verify)
//!    and of each primitive alone, with libsodium (`crypto_box_seal_open`,
//!    `crypto_sign_verify_detached`) and with the pure-Rust crates
//!    (crypto_box, ed25519-dalek): the best unseal plus the best verify is
//!    the run's crypto floor; and named's update rate from the server's own
//!    RFC 2136 client (`bind-local`, N concurrent loops, one UPDATE in
//!    flight each, against testkit's `named`);
//! 2. the server in-process on 127.0.0.1:0, first with the embedded DNS,
//!    then with `bind-local` against the same named: 64 keep-alive HTTP/1.1
//!    clients `POST /update` with requests sealed and signed by 2,000 keys
//!    before the clock starts, in a no-change run (same address, higher
//!    `seq`) and a change run (a new address on every request); the
//!    embedded phase repeats the change run with one registry commit (one
//!    fsync) per update, against the group commit;
//! 3. the server's CPU per accepted update (its own process; the client is
//!    another) and its resident memory;
//! 4. resident memory and update rate with 1,000, 10,000 and 100,000
//!    registered names, and at each level a restart (a second server state
//!    re-applying the registry file into a fresh zone) with its peak RSS;
//!
//! and ends with the tables of the targets of issues 3 and 14 (every
//! figure of issue 14 beside its ceiling from the same run, the ratio,
//! PASS or MISS) and the two figures an operator asks first. Any failed
//! request is printed loudly and makes the exit code 1.
//!
//! `--quick` takes about a minute (smoke use); the full run a few minutes.
//!
//! # Processes
//!
//! The command re-runs itself: the parent measures the ceilings and starts
//! named; each server phase is a child (`--phase <json>`), a fresh process
//! whose memory and CPU time are the server's; each timed run inside a
//! phase is a grandchild (`--client <json>`) that builds its requests,
//! connects, says `ready`, and starts on `go`.
//!
//! # Layout
//!
//! - `bench.rs`: arguments, the plan, the parent's work, the tables.
//! - `bench/spec.rs`: what the processes pass each other; the bench keys
//!   and the addresses each run sends.
//! - `bench/ceiling.rs`: the crypto and raw BIND ceilings.
//! - `bench/phase.rs`: the `--phase` child: the server, its runs.
//! - `bench/client.rs`: the `--client` child: the load generator.
//! - CPU time, RSS and the machine from `/proc`: `testkit::procfs`, shared
//!   with the daemon's benchmark.

// A crate root looks for modules beside it; these live in `bench/`.
#[path = "bench/ceiling.rs"]
mod ceiling;
#[path = "bench/client.rs"]
mod client;
#[path = "bench/phase.rs"]
mod phase;
#[path = "bench/spec.rs"]
mod spec;

use std::io::BufRead as _;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use testkit::Named;

use crate::spec::{BackendSpec, PhaseReport, PhaseSpec, RunKind, RunReport, RESULT_PREFIX};

/// Load benchmark of peach-dyndns-server on loopback (see the file's docs).
#[derive(Parser)]
struct Args {
    /// Finish in about a minute: shorter runs, fewer requests.
    #[arg(long)]
    quick: bool,
    /// Concurrent keep-alive HTTP clients.
    #[arg(long, default_value_t = 64)]
    clients: u32,
    /// Do not write the server's info log during the runs (by default it
    /// goes to a file, one line per accepted update, as in production).
    #[arg(long)]
    no_log: bool,
    /// Print only the crypto ceiling and stop (to compare builds, e.g.
    /// with other optimisation levels, a few times in turn).
    #[arg(long)]
    crypto_only: bool,
    /// Internal: run as a load client with this JSON spec.
    #[arg(long, hide = true)]
    client: Option<String>,
    /// Internal: run as a server phase with this JSON spec.
    #[arg(long, hide = true)]
    phase: Option<String>,
}

/// How big each part of the benchmark is.
struct Plan {
    /// Keys (one name each) in the embedded and bind-local phases.
    keys: u32,
    /// Time limit of each timed HTTP run.
    run_secs: f64,
    /// Requests per key built for the no-change runs: enough for
    /// `run_secs` at 15,000/s.
    nochange_rounds: u32,
    /// … for the embedded change run (enough at 10,000/s).
    embedded_change_rounds: u32,
    /// … for the bind-local change run (named takes about 2,000/s).
    bind_change_rounds: u32,
    /// … for the `GET /ip` run of the embedded phase (the HTTP layer alone).
    ip_rounds: u32,
    /// Distinct bodies for the crypto ceiling.
    crypto_samples: u32,
    /// Minimum time of the crypto ceiling.
    crypto_time: Duration,
    /// Calls of each registry operation timed.
    registry_calls: u32,
    /// Concurrent loops of the raw BIND runs (the ceiling is the best).
    raw_tasks: Vec<usize>,
    /// Length of each raw BIND run.
    raw_time: Duration,
    /// Registered names at which memory and rate are measured.
    memory_levels: Vec<u32>,
    /// Keys sending updates in the memory phase.
    memory_keys: u32,
    /// Requests per key built for each memory-level run.
    memory_rounds: u32,
    /// Time limit of each memory-level run.
    memory_secs: f64,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                keys: 2_000,
                run_secs: 3.0,
                nochange_rounds: 23,
                embedded_change_rounds: 15,
                bind_change_rounds: 4,
                ip_rounds: 30,
                crypto_samples: 1_000,
                crypto_time: Duration::from_secs(1),
                registry_calls: 2_000,
                raw_tasks: vec![4, 16, 64],
                raw_time: Duration::from_secs(2),
                memory_levels: vec![1_000, 10_000, 100_000],
                memory_keys: 500,
                memory_rounds: 30,
                memory_secs: 2.0,
            }
        } else {
            Plan {
                keys: 2_000,
                run_secs: 10.0,
                nochange_rounds: 75,
                embedded_change_rounds: 50,
                bind_change_rounds: 12,
                ip_rounds: 100,
                crypto_samples: 4_000,
                crypto_time: Duration::from_secs(3),
                registry_calls: 10_000,
                raw_tasks: vec![1, 4, 16, 64],
                raw_time: Duration::from_secs(5),
                memory_levels: vec![1_000, 10_000, 100_000],
                memory_keys: 500,
                memory_rounds: 100,
                memory_secs: 5.0,
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if let Some(json) = &args.client {
        serde_json::from_str(json)
            .context("--client spec")
            .and_then(|spec| client::main(&spec))
            .map(|()| ExitCode::SUCCESS)
    } else if let Some(json) = &args.phase {
        serde_json::from_str(json)
            .context("--phase spec")
            .and_then(|spec| phase::main(&spec))
            .map(|()| ExitCode::SUCCESS)
    } else {
        parent(&args)
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The machine, for the record: cores, CPU model, load.
fn machine() -> String {
    let m = testkit::procfs::Machine::read();
    format!("{} cores, {}, load average {}", m.cores, m.model, m.load)
}

/// The crypto ceilings, printed.
fn print_crypto(c: &ceiling::Crypto) {
    println!(
        "  open_envelope on one core (the server's Opener): {:.1} µs ({} calls) = {:.0} updates/s \
         per core [envelope {:.1} µs, unseal {:.1} µs, verify_signed {:.1} µs]",
        c.open_envelope_us,
        c.calls,
        c.per_core_rate(),
        c.envelope_us,
        c.unseal_us,
        c.verify_us,
    );
    println!(
        "  unseal alone: libsodium crypto_box_seal_open {:.1} µs; crypto_box (pure Rust) unseal \
         {:.1} µs, of which {:.1} µs re-deriving the pub's X25519 public key; crypto_box with \
         that key derived once {:.1} µs",
        c.sodium_unseal_us, c.rust_unseal_us, c.x25519_public_us, c.rust_unseal_cached_us
    );
    println!(
        "  ed25519 verify alone: ed25519-dalek verify_strict {:.1} µs; libsodium \
         crypto_sign_verify_detached {:.1} µs",
        c.dalek_verify_us, c.sodium_verify_us
    );
    println!(
        "  best crypto floor of this run: unseal {:.1} + verify {:.1} = {:.1} µs per update \
         = {:.0} updates/s per core",
        c.best_unseal_us(),
        c.best_verify_us(),
        c.floor_us(),
        1e6 / c.floor_us()
    );
}

/// One raw BIND measurement, printed.
fn raw_bind(
    runtime: &tokio::runtime::Runtime,
    named: &Named,
    tasks: usize,
    time: Duration,
) -> anyhow::Result<ceiling::RawBind> {
    let session_key = named.session_key_path();
    let at = ceiling::NamedAt {
        addr: named.addr(),
        zone: named.zone(),
        session_key: &session_key,
        pid: named.pid(),
    };
    let raw = runtime.block_on(ceiling::raw_bind(&at, tasks, time))?;
    println!("  {}", raw.describe());
    Ok(raw)
}

/// Runs a `--phase` child and returns its report.
fn run_phase(spec: &PhaseSpec) -> anyhow::Result<PhaseReport> {
    let exe = std::env::current_exe().context("finding this program")?;
    let mut child = Command::new(exe)
        .arg("--phase")
        .arg(serde_json::to_string(spec)?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting a phase child")?;
    let stdout = child.stdout.take().context("phase stdout")?;
    let mut report = None;
    // The child bounds its own time (every run has a limit and a grace);
    // its standard error is passed through as it comes.
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        match line.strip_prefix(RESULT_PREFIX) {
            Some(json) => report = Some(serde_json::from_str::<PhaseReport>(json)?),
            None => println!("{line}"),
        }
    }
    let status = child.wait()?;
    anyhow::ensure!(
        status.success(),
        "phase {} exited with {status}",
        spec.label
    );
    report.with_context(|| format!("phase {} gave no result", spec.label))
}

fn parent(args: &Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let plan = Plan::new(args.quick);
    let mode = if args.quick { "--quick" } else { "full" };
    println!("peach-dyndns-server benchmark ({mode})");
    println!("machine: {}", machine());

    println!("\n1. ceilings");
    let crypto = ceiling::crypto(plan.crypto_samples, plan.crypto_time)?;
    print_crypto(&crypto);
    if args.crypto_only {
        return Ok(ExitCode::SUCCESS);
    }
    let registry = ceiling::registry(plan.keys, plan.registry_calls)?;
    println!(
        "  registry (SQLite, {} names, one thread, wall time with fsync): last_seq {:.1} µs (x2 per update), \
         get {:.1} µs, commit_seq {:.1} µs (no-change), commit_set {:.1} µs (change)",
        registry.names,
        registry.last_seq_us,
        registry.get_us,
        registry.commit_seq_us,
        registry.commit_set_us
    );
    let named = Named::try_start().map_err(|e| anyhow::anyhow!("starting named: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut raws = Vec::new();
    for &tasks in &plan.raw_tasks {
        raws.push(raw_bind(&runtime, &named, tasks, plan.raw_time)?);
    }

    let log = !args.no_log;
    let domain = named.zone().to_string();
    let phase_spec = |label: &str, backend: BackendSpec| PhaseSpec {
        label: label.into(),
        backend,
        domain: domain.clone(),
        keys: plan.keys,
        clients: args.clients,
        run_secs: plan.run_secs,
        nochange_rounds: plan.nochange_rounds,
        change_rounds: plan.embedded_change_rounds,
        ip_rounds: 0,
        full_commit_rounds: 0,
        raw_bind_tasks: 0,
        raw_bind_secs: plan.raw_time.as_secs_f64(),
        memory_levels: Vec::new(),
        log,
    };
    println!(
        "\n2. the server, {} keep-alive HTTP/1.1 clients, {} keys",
        args.clients, plan.keys
    );
    let embedded = run_phase(&PhaseSpec {
        ip_rounds: plan.ip_rounds,
        full_commit_rounds: plan.embedded_change_rounds,
        ..phase_spec("embedded", BackendSpec::Embedded)
    })?;
    let bind_local = run_phase(&PhaseSpec {
        change_rounds: plan.bind_change_rounds,
        raw_bind_tasks: args.clients as usize,
        ..phase_spec(
            "bind-local",
            BackendSpec::BindLocal {
                server: named.addr(),
                session_key: named.session_key_path(),
                named_pid: named.pid(),
            },
        )
    })?;
    drop(runtime);
    drop(named);

    println!(
        "\n4. memory: {} keys updating while the registry holds {:?} names",
        plan.memory_keys, plan.memory_levels
    );
    let memory = run_phase(&PhaseSpec {
        keys: plan.memory_keys,
        run_secs: plan.memory_secs,
        nochange_rounds: 0,
        change_rounds: plan.memory_rounds,
        memory_levels: plan.memory_levels.clone(),
        ..phase_spec("memory", BackendSpec::Embedded)
    })?;

    let failed = print_tables(&crypto, &raws, &[&embedded, &bind_local], &memory);
    println!(
        "\nmachine at the end: {}; the benchmark took {:.0} s",
        machine(),
        started.elapsed().as_secs_f64()
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The runs of a phase the targets are about: the no-change and change
/// runs (not the first registration, not `GET /ip`).
fn updates(phase: Option<&PhaseReport>) -> Vec<&RunReport> {
    phase
        .map(|p| {
            p.runs
                .iter()
                .filter(|r| matches!(r.kind, RunKind::NoChange | RunKind::Change))
                .collect()
        })
        .unwrap_or_default()
}

/// Finds the run of `kind` in a phase, if there is the phase.
fn run_of(phase: Option<&PhaseReport>, kind: RunKind) -> Option<&RunReport> {
    phase.and_then(|p| find(p, kind))
}

/// Finds the run of `kind` in a phase.
fn find(phase: &PhaseReport, kind: RunKind) -> Option<&RunReport> {
    phase.runs.iter().find(|r| r.kind == kind)
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

/// Prints every run, the memory levels and the targets; returns whether
/// any request failed.
fn print_tables(
    crypto: &ceiling::Crypto,
    raws: &[ceiling::RawBind],
    phases: &[&PhaseReport],
    memory: &PhaseReport,
) -> bool {
    println!("\n== runs ==");
    println!(
        "{:<10} {:<11} {:>7} {:>8} {:>9} {:>7} {:>7} {:>8} {:>6} {:>7} {:>7} {:>7} {:>5} {:>6} {:>5} {:>6} {:>6}",
        "phase",
        "run",
        "names",
        "updates",
        "per s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "server",
        "named",
        "client",
        "srv",
        "others",
        "idle",
        "RSS",
        "upd/tx"
    );
    let mut errors = raws.iter().map(|r| r.failed).sum::<u64>();
    for phase in phases.iter().chain(std::iter::once(&memory)) {
        for r in &phase.runs {
            let c = &r.client;
            errors += c.errors;
            println!(
                "{:<10} {:<11} {:>7} {:>8} {:>9.0} {:>7.2} {:>7.2} {:>8.2} {:>6} {:>7.3} {:>7} {:>7.3} {:>5.2} {:>6.2} {:>5.2} {:>6.1} {:>6.1}",
                phase.label,
                r.kind.label(),
                r.names,
                c.ok,
                c.rate(),
                c.p50_us as f64 / 1000.0,
                c.p99_us as f64 / 1000.0,
                c.max_us as f64 / 1000.0,
                c.errors,
                r.server_ms_per_update(),
                r.named_cpu_s
                    .map(|s| format!("{:.3}", spec::per_update_ms(s, c.ok)))
                    .unwrap_or_else(|| "-".into()),
                spec::per_update_ms(c.cpu_s, c.ok),
                r.server_cpu_s / c.elapsed_s.max(1e-9),
                r.other_cores(),
                r.idle_cores(),
                mib(r.rss_after_kb),
                r.updates_per_commit(),
            );
        }
    }
    println!(
        "server/named/client: CPU ms per accepted request, each its own process; \
         srv/others/idle: cores used by the server, by other processes on the machine, \
         and left idle, on average over the run; RSS: the server process, MiB; upd/tx: \
         accepted updates per registry commit (one fsync each)"
    );

    println!("\n== memory (embedded backend, fresh process) ==");
    println!(
        "process RSS: {:.1} MiB at start, {:.1} MiB with the server up and idle",
        mib(memory.rss_start_kb),
        mib(memory.rss_idle_kb)
    );
    let levels: Vec<&RunReport> = memory
        .runs
        .iter()
        .filter(|r| r.kind == RunKind::Change)
        .collect();
    println!(
        "{:>8} {:>16} {:>16} {:>10} {:>10}",
        "names", "RSS before MiB", "RSS after MiB", "peak MiB", "updates/s"
    );
    for r in &levels {
        println!(
            "{:>8} {:>16.1} {:>16.1} {:>10.1} {:>10.0}",
            r.names,
            mib(r.rss_before_kb),
            mib(r.rss_after_kb),
            mib(r.hwm_kb),
            r.client.rate()
        );
    }
    println!(
        "restart (build_state on the registry file, then reapply_registry into a fresh zone):"
    );
    println!(
        "{:>8} {:>8} {:>8} {:>16} {:>16} {:>10} {:>14}",
        "names", "secs", "CPU s", "RSS before MiB", "RSS after MiB", "peak MiB", "transient MiB"
    );
    for re in &memory.reapply {
        println!(
            "{:>8} {:>8.3} {:>8.3} {:>16.1} {:>16.1} {:>10.1} {:>14.1}",
            re.names,
            re.secs,
            re.cpu_s,
            mib(re.rss_before_kb),
            mib(re.rss_after_kb),
            mib(re.peak_kb),
            mib(re.transient_kb())
        );
    }

    println!("\n== targets (issue 3) ==");
    println!(
        "ceilings: open_envelope {:.1} µs = {:.0}/s per core; raw BIND {}",
        crypto.open_envelope_us,
        crypto.per_core_rate(),
        raws.iter()
            .map(|r| format!("{:.0}/s ({} loops)", r.rate, r.tasks))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut rows: Vec<(String, String, &'static str)> = Vec::new();
    let raw_best = raws.iter().map(|r| r.rate).fold(0.0, f64::max);
    let by_label = |label: &str| phases.iter().find(|p| p.label == label).copied();
    let (emb, bind) = (by_label("embedded"), by_label("bind-local"));
    if let Some(r) = bind.and_then(|p| find(p, RunKind::Change)) {
        // Compared with named's raw rate measured right before and right
        // after this run (the machine is shared; its load moves), or else
        // with the best of the ceilings.
        let around: Vec<f64> = bind
            .map(|p| p.raw_around.iter().map(|raw| raw.rate).collect())
            .unwrap_or_default();
        let (reference, what) = if around.is_empty() {
            (raw_best, "the best raw".to_string())
        } else {
            let mean = around.iter().sum::<f64>() / around.len() as f64;
            let each = around
                .iter()
                .map(|rate| format!("{rate:.0}"))
                .collect::<Vec<_>>()
                .join(" and ");
            (mean, format!("raw {each} around it, mean"))
        };
        let share = if reference > 0.0 {
            r.client.rate() / reference
        } else {
            0.0
        };
        rows.push((
            "bind-local >= 80% of raw BIND rate".into(),
            format!(
                "{:.0}/s = {:.0}% of {what} {reference:.0}/s",
                r.client.rate(),
                share * 100.0,
            ),
            verdict(share >= 0.8),
        ));
    }
    if let Some(r) = emb.and_then(|p| find(p, RunKind::Change)) {
        rows.push((
            "embedded >= 5,000 updates/s (changing)".into(),
            format!("{:.0}/s", r.client.rate()),
            verdict(r.client.rate() >= 5_000.0),
        ));
    }
    // The targets are about updates: the no-change and change runs.
    for (label, phase) in [("embedded", emb), ("bind-local", bind)] {
        if let Some(worst) = updates(phase).into_iter().max_by_key(|r| r.client.p99_us) {
            let p99 = worst.client.p99_us as f64 / 1000.0;
            rows.push((
                format!("p99 < 50 ms at 64 clients ({label})"),
                format!("{p99:.2} ms (worst: {} run)", worst.kind.label()),
                verdict(p99 < 50.0),
            ));
        }
    }
    for (label, phase) in [("embedded", emb), ("bind-local", bind)] {
        if let Some(r) = phase.and_then(|p| find(p, RunKind::NoChange)) {
            rows.push((
                format!("no-change >= 10,000/s ({label})"),
                format!("{:.0}/s", r.client.rate()),
                verdict(r.client.rate() >= 10_000.0),
            ));
        }
    }
    for (label, phase) in [("embedded", emb), ("bind-local", bind)] {
        let runs = updates(phase);
        if let Some(worst) = runs.iter().max_by(|a, b| {
            a.server_ms_per_update()
                .total_cmp(&b.server_ms_per_update())
        }) {
            let all = runs
                .iter()
                .map(|r| format!("{} {:.3}", r.kind.label(), r.server_ms_per_update()))
                .collect::<Vec<_>>()
                .join(", ");
            rows.push((
                format!("server CPU <= 0.2 ms/update ({label})"),
                format!("{all} ms"),
                verdict(worst.server_ms_per_update() <= 0.2),
            ));
        }
    }
    if let (Some(first), Some(last)) = (levels.first(), levels.last()) {
        let names = last.names.saturating_sub(first.names).max(1);
        let grown_kb = last.rss_after_kb.saturating_sub(first.rss_after_kb);
        let per_name = grown_kb as f64 * 1024.0 / names as f64;
        let rate_share = if first.client.rate() > 0.0 {
            last.client.rate() / first.client.rate()
        } else {
            0.0
        };
        rows.push((
            format!(
                "memory flat {}k -> {}k names",
                first.names / 1000,
                last.names / 1000
            ),
            format!(
                "RSS {:.1} -> {:.1} MiB ({per_name:.0} B/name); rate {:.0}% of the {}k rate",
                mib(first.rss_after_kb),
                mib(last.rss_after_kb),
                rate_share * 100.0,
                first.names / 1000
            ),
            verdict(per_name <= MEMORY_BYTES_PER_NAME && rate_share >= 0.8),
        ));
    }
    rows.push((
        "failed requests = 0".into(),
        errors.to_string(),
        verdict(errors == 0),
    ));
    rows.push((
        "(for scale) nsupdate.info 0.13, same BIND".into(),
        "~110/s, 10.5 ms CPU/request, p99 682 ms at 64 connections".into(),
        "",
    ));
    for (target, measured, result) in rows {
        println!("{target:<40} {measured:<66} {result}");
    }
    print_issue14(crypto, raws, phases, memory);
    print_shared_machine_note(phases);
    if errors > 0 {
        println!("\n!!!!!!!! {errors} FAILED REQUESTS: the numbers above are not valid !!!!!!!!");
    }
    errors > 0
}

/// The figures of issue 14, each beside its ceiling from this run, the
/// ratio and the verdict; then the two an operator asks first.
fn print_issue14(
    crypto: &ceiling::Crypto,
    raws: &[ceiling::RawBind],
    phases: &[&PhaseReport],
    memory: &PhaseReport,
) {
    let floor = crypto.floor_us();
    let by_label = |label: &str| phases.iter().find(|p| p.label == label).copied();
    let (emb, bind) = (by_label("embedded"), by_label("bind-local"));
    let run = run_of;
    let us = |r: &RunReport| r.server_ms_per_update() * 1000.0;
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut row = |figure: &str, now: String, ceiling: String, ratio: String, verdict: &str| {
        rows.push([figure.into(), now, ceiling, ratio, verdict.into()]);
    };
    let unseal_by = if crypto.best_unseal_us() == crypto.sodium_unseal_us {
        "libsodium"
    } else {
        "crypto_box"
    };
    let verify_by = if crypto.best_verify_us() == crypto.dalek_verify_us {
        "dalek"
    } else {
        "libsodium"
    };
    let floor_text = format!(
        "{floor:.1} µs ({unseal_by} unseal {:.1} + {verify_by} verify {:.1})",
        crypto.best_unseal_us(),
        crypto.best_verify_us()
    );
    row(
        "open_envelope per request",
        format!(
            "{:.1} µs (unseal {:.1}, verify_signed {:.1})",
            crypto.open_envelope_us, crypto.unseal_us, crypto.verify_us
        ),
        floor_text.clone(),
        format!("{:.2}x", crypto.open_envelope_us / floor),
        "",
    );
    for (figure, r) in [
        (
            "server CPU per accepted change (embedded)",
            run(emb, RunKind::Change),
        ),
        (
            "server CPU per no-change update (embedded)",
            run(emb, RunKind::NoChange),
        ),
    ] {
        if let Some(r) = r {
            let ratio = us(r) / floor;
            row(
                figure,
                format!("{:.1} µs", us(r)),
                floor_text.clone(),
                format!("{ratio:.2}x (target <= 1.5x)"),
                verdict(ratio <= 1.5),
            );
        }
    }
    for (figure, r) in [
        (
            "server CPU per accepted change (bind-local)",
            run(bind, RunKind::Change),
        ),
        (
            "server CPU per no-change update (bind-local)",
            run(bind, RunKind::NoChange),
        ),
    ] {
        if let Some(r) = r {
            row(
                figure,
                format!("{:.1} µs", us(r)),
                floor_text.clone(),
                format!("{:.2}x", us(r) / floor),
                "",
            );
        }
    }
    if let Some(r) = run(bind, RunKind::Change) {
        let around: Vec<f64> = bind
            .map(|p| p.raw_around.iter().map(|raw| raw.rate).collect())
            .unwrap_or_default();
        let raw_best = raws.iter().map(|r| r.rate).fold(0.0, f64::max);
        let reference = if around.is_empty() {
            raw_best
        } else {
            around.iter().sum::<f64>() / around.len() as f64
        };
        let share = if reference > 0.0 {
            r.client.rate() / reference
        } else {
            0.0
        };
        row(
            "bind-local change rate",
            format!("{:.0}/s", r.client.rate()),
            format!(
                "raw BIND {reference:.0}/s (mean of {} around it, 64 loops)",
                around
                    .iter()
                    .map(|x| format!("{x:.0}"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            format!("{:.0}% (target >= 90%)", share * 100.0),
            verdict(share >= 0.9),
        );
    }
    if let Some(best) = raws.iter().max_by(|a, b| a.rate.total_cmp(&b.rate)) {
        row(
            "named's own ceiling (raw BIND, best loops)",
            format!(
                "{:.0}/s with {} loops; named CPU {:.3} ms/update",
                best.rate, best.tasks, best.named_ms
            ),
            format!(
                "one core of named: {:.0}/s",
                if best.named_ms > 0.0 {
                    1000.0 / best.named_ms
                } else {
                    0.0
                }
            ),
            String::new(),
            "",
        );
    }
    for (label, phase, target) in [("embedded", emb, 20.0), ("bind-local", bind, 50.0)] {
        if let Some(worst) = updates(phase).into_iter().max_by_key(|r| r.client.p99_us) {
            let p99 = worst.client.p99_us as f64 / 1000.0;
            row(
                &format!("p99 at --clients, {label}"),
                format!("{p99:.2} ms (worst: {} run)", worst.kind.label()),
                "-".into(),
                format!("target < {target:.0} ms"),
                verdict(p99 < target),
            );
        }
    }
    if let (Some(nc), Some(ch)) = (run(emb, RunKind::NoChange), run(emb, RunKind::Change)) {
        let ratio = nc.client.rate() / ch.client.rate().max(1e-9);
        row(
            "embedded no-change rate vs change rate",
            format!("{:.0}/s", nc.client.rate()),
            format!("change {:.0}/s", ch.client.rate()),
            format!("{ratio:.2}x (target >= 3x)"),
            verdict(ratio >= 3.0),
        );
    }
    if let (Some(group), Some(full)) = (run(emb, RunKind::Change), run(emb, RunKind::ChangeFull)) {
        row(
            "group commit vs one FULL commit per update",
            format!(
                "group {:.0}/s, {:.1} µs CPU, {:.1} updates/fsync, p99 {:.1} ms",
                group.client.rate(),
                us(group),
                group.updates_per_commit(),
                group.client.p99_us as f64 / 1000.0
            ),
            format!(
                "per-request FULL {:.0}/s, {:.1} µs CPU, {:.1} updates/fsync, p99 {:.1} ms",
                full.client.rate(),
                us(full),
                full.updates_per_commit(),
                full.client.p99_us as f64 / 1000.0
            ),
            format!(
                "{:.2}x the rate",
                group.client.rate() / full.client.rate().max(1e-9)
            ),
            verdict(group.client.rate() >= full.client.rate()),
        );
    }
    if let (Some(first), Some(last)) = (memory.reapply.first(), memory.reapply.last()) {
        let grown = last.transient_kb().saturating_sub(first.transient_kb());
        row(
            &format!("restart with {}k names", last.names / 1000),
            format!(
                "{:.3} s ({:.3} s CPU); transient RSS {}",
                last.secs,
                last.cpu_s,
                memory
                    .reapply
                    .iter()
                    .map(|r| format!("{:.1} MiB at {}k", mib(r.transient_kb()), r.names / 1000))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "-".into(),
            format!(
                "target < 1 s, flat (+{:.1} MiB from {}k; <= 4)",
                mib(grown),
                first.names / 1000
            ),
            // Wall time, as an operator sees it (on a shared machine it
            // counts the waits for a core; the CPU time is beside it).
            verdict(last.secs < 1.0 && grown <= 4 * 1024),
        );
    }
    println!("\n== targets (issue 14): each figure beside its ceiling from this run ==");
    for [figure, now, ceiling, ratio, verdict] in &rows {
        println!("{figure:<46} {now:<62} {ceiling:<66} {ratio:<28} {verdict}");
    }
    println!("\n== for a pub operator ==");
    let per_core = |us: f64| if us > 0.0 { 1e6 / us } else { 0.0 };
    for (label, r) in [
        ("embedded no-change", run(emb, RunKind::NoChange)),
        ("embedded change", run(emb, RunKind::Change)),
        ("bind-local change", run(bind, RunKind::Change)),
    ] {
        if let Some(r) = r {
            println!(
                "{label:<20} {:>6.0} updates/s per core (ceiling {:>6.0}, the crypto alone)   \
                 {:>6.1} µs CPU per update (ceiling {:.1} µs)",
                per_core(us(r)),
                per_core(floor),
                us(r),
                floor
            );
        }
    }
}

/// When other work took CPU during the runs, says so, with what the
/// measured CPU costs imply for a machine that is the benchmark's alone.
fn print_shared_machine_note(phases: &[&PhaseReport]) {
    let runs: Vec<&RunReport> = phases.iter().flat_map(|p| updates(Some(p))).collect();
    if runs.is_empty() {
        return;
    }
    let others = runs.iter().map(|r| r.other_cores()).sum::<f64>() / runs.len() as f64;
    // A quarter of a core: less than that is noise.
    if others < 0.25 {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "\nnote: other processes used {others:.2} of the {cores} cores on average during the \
         update runs (Linux shares CPU between sessions, whatever the nice level), so the \
         rates above are what the benchmark got, not what the machine can do. CPU per \
         update does not depend on that much; what it implies if the cores were the \
         benchmark's alone (an estimate, not a measurement):"
    );
    for phase in phases {
        for r in updates(Some(phase)) {
            let c = &r.client;
            let total = r.server_ms_per_update() + spec::per_update_ms(c.cpu_s, c.ok);
            let named = r.named_cpu_s.map(|s| spec::per_update_ms(s, c.ok));
            let mut rate = cores * 1000.0 / (total + named.unwrap_or(0.0));
            // named applies updates to a zone one at a time: one core at most.
            if let Some(named) = named.filter(|n| *n > 0.0) {
                rate = rate.min(1000.0 / named);
            }
            println!(
                "  {:<10} {:<9} ~{rate:>6.0}/s  (server {:.3} + client {:.3}{} ms CPU per update)",
                phase.label,
                r.kind.label(),
                r.server_ms_per_update(),
                spec::per_update_ms(c.cpu_s, c.ok),
                named.map_or(String::new(), |n| format!(" + named {n:.3}")),
            );
        }
    }
}

/// "Memory flat": what the server keeps per registered name between 1k
/// and 100k names, at most. The embedded backend must hold each name's
/// records in memory to answer DNS (label, addresses, TTL and the hash
/// map's slot: about 100 bytes); anything far above that would be memory
/// spent per name elsewhere (a cache, a leak), so a quarter of a KiB is
/// the bound.
const MEMORY_BYTES_PER_NAME: f64 = 256.0;
