//! The `--phase` child: the server in-process on 127.0.0.1:0, exactly as
//! `peach-dyndns-server` builds it (config text → [`Config::from_str`] →
//! [`build_state`] → [`run`]), driven by `--client` children.
//!
//! Each phase is a fresh process, so its resident memory says what this
//! server holds and nothing earlier phases left behind, and its CPU time
//! (read from `/proc/self/stat` between the client's `go` and its result)
//! is the server's alone.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_server::config::Config;
use peach_dyndns_server::dns::ZoneChange;
use peach_dyndns_server::metrics::Stage;
use peach_dyndns_server::pipeline::now_ms;
use peach_dyndns_server::registry::{Entry, MAX_BATCH};
use peach_dyndns_server::{build_state, run, Listeners, State};
use sha2::{Digest as _, Sha256};
use testkit::procfs;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

use crate::ceiling::{NamedAt, RawBind};
use crate::spec::{
    bench_key, BackendSpec, ClientResult, ClientSpec, PhaseReport, PhaseSpec, Reapply, RunKind,
    RunReport, RESULT_PREFIX,
};

/// How long a client child may take to build its requests and connect.
/// Building is about 0.1 ms of CPU per request on this machine's cores.
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long past its own time limit a client child may take to report
/// (its requests time out after 10 s).
const RESULT_GRACE: Duration = Duration::from_secs(60);
/// How long the server may take to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// `seq` of the first change run; no-change runs stay below it.
const CHANGE_SEQ_BASE: u64 = 1_000_000_000;

/// Entry point of the `--phase` role.
pub fn main(spec: &PhaseSpec) -> anyhow::Result<()> {
    let (rss_start_kb, _) = procfs::rss_kb()?;
    let dir = tempfile::Builder::new()
        .prefix("peach-dyndns-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    if spec.log {
        let file = std::fs::File::create(dir.path().join("server.log"))?;
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init();
    }
    // The server's own runtime shape: `main.rs` builds a default
    // multi-threaded runtime, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(phase(spec, dir.path(), rss_start_kb))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{RESULT_PREFIX}{}", serde_json::to_string(&report)?)?;
    stdout.flush()?;
    Ok(())
}

/// A server running on loopback.
struct Server {
    state: Arc<State>,
    http: SocketAddr,
    pub_id: String,
    /// The config file, for a second server state on the same registry
    /// (the restart measurement).
    config_path: std::path::PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), peach_dyndns_server::StartError>>,
}

/// Writes the config and the pub's secret into `dir` and starts the server.
async fn start(spec: &PhaseSpec, dir: &Path) -> anyhow::Result<Server> {
    use std::os::unix::fs::PermissionsExt as _;
    let keypair = Keypair::generate();
    let secret = dir.join("secret");
    std::fs::write(&secret, keypair.to_secret_file())?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    let allow: Vec<String> = (0..spec.keys)
        .map(|k| format!("\"{}\"", bench_key(k).id()))
        .collect();
    let dns = match &spec.backend {
        BackendSpec::Embedded => "backend = \"embedded\"\nlisten = \"127.0.0.1:0\"".to_string(),
        BackendSpec::BindLocal {
            server,
            session_key,
            ..
        } => format!(
            "backend = \"bind-local\"\nserver = \"{server}\"\nsession_key = \"{}\"",
            session_key.display()
        ),
    };
    let text = format!(
        "domain = \"{domain}\"\n\
         listen = \"127.0.0.1:0\"\n\
         secret = \"{secret}\"\n\
         database = \"{database}\"\n\
         allow_private_addresses = true\n\
         max_names_per_key = 1\n\
         [dns]\n{dns}\n\
         [graph]\nbackend = \"allowlist\"\nallow = [{allow}]\n\
         # Far above what the benchmark sends, so they never refuse it.\n\
         [rate_limit]\nper_key_per_minute = 600000000\nper_key_burst = 1000000\n\
         failures_per_ip_per_minute = 600000000\n\
         # Every client connects from 127.0.0.1 (the default allows 32 per\n\
         # source), and may wait for `go` a long while on a busy machine.\n\
         [http]\nmax_connections_per_source = 512\nheader_timeout_secs = 600\n",
        domain = spec.domain,
        secret = secret.display(),
        database = dir.join("registry.sqlite3").display(),
        allow = allow.join(", "),
    );
    let config_path = dir.join("server.toml");
    std::fs::write(&config_path, &text)?;
    let config = Config::load(&config_path)?;
    let listeners = Listeners::bind(&config).await?;
    let http = listeners.http.local_addr()?;
    let (state, embedded) = build_state(config)?;
    let state = Arc::new(state);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(state.clone(), embedded, listeners, async move {
        let _ = stopped.await;
    }));
    Ok(Server {
        state,
        http,
        pub_id: keypair.id(),
        config_path,
        stop,
        task,
    })
}

async fn phase(spec: &PhaseSpec, dir: &Path, rss_start_kb: u64) -> anyhow::Result<PhaseReport> {
    let server = start(spec, dir).await?;
    // Let `run` re-apply the (empty) registry and start serving.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss_idle_kb, _) = procfs::rss_kb()?;
    let named_pid = match &spec.backend {
        BackendSpec::BindLocal { named_pid, .. } => Some(*named_pid),
        BackendSpec::Embedded => None,
    };
    let client =
        |kind: RunKind, rounds: u32, seq_base: u64, ip_tag: u32, max_secs: f64| ClientSpec {
            addr: server.http,
            pub_id: server.pub_id.clone(),
            domain: spec.domain.clone(),
            keys: spec.keys,
            kind,
            rounds,
            seq_base,
            ip_tag,
            clients: spec.clients,
            max_secs,
        };
    let mut runs = Vec::new();
    let mut raw_around = Vec::new();
    let mut reapply = Vec::new();
    // Every key registers its name first (not a target, but reported).
    let register = client(RunKind::Register, 1, 1, 0, spec.run_secs.max(60.0));
    runs.push(timed_run(&server, &register, named_pid, &spec.label).await?);

    if spec.memory_levels.is_empty() {
        if spec.nochange_rounds > 0 {
            let nochange = client(RunKind::NoChange, spec.nochange_rounds, 2, 0, spec.run_secs);
            runs.push(timed_run(&server, &nochange, named_pid, &spec.label).await?);
        }
        if spec.change_rounds > 0 {
            raw_around.extend(raw(spec).await?);
            let change = client(
                RunKind::Change,
                spec.change_rounds,
                CHANGE_SEQ_BASE,
                0,
                spec.run_secs,
            );
            runs.push(timed_run(&server, &change, named_pid, &spec.label).await?);
            raw_around.extend(raw(spec).await?);
        }
        if spec.full_commit_rounds > 0 {
            // The same changing load, each update committed (and fsynced)
            // on its own, then the group commit again for what follows.
            server.state.registry.set_max_batch(1);
            let full = client(
                RunKind::ChangeFull,
                spec.full_commit_rounds,
                2 * CHANGE_SEQ_BASE,
                1,
                spec.run_secs,
            );
            let run = timed_run(&server, &full, named_pid, &spec.label).await;
            server.state.registry.set_max_batch(MAX_BATCH);
            runs.push(run?);
        }
        if spec.ip_rounds > 0 {
            let ip = client(RunKind::Ip, spec.ip_rounds, 0, 0, spec.run_secs);
            runs.push(timed_run(&server, &ip, named_pid, &spec.label).await?);
        }
    } else {
        // Memory: fill the registry (and the zone) to each level with
        // names of other owners, then time changing updates at that size.
        let mut filled = 0u32;
        for (j, level) in spec.memory_levels.iter().enumerate() {
            let others = level.saturating_sub(spec.keys);
            let started = std::time::Instant::now();
            prefill(&server.state, filled, others).await?;
            eprintln!(
                "  [{}] registry filled to {} names in {:.1} s",
                spec.label,
                server.state.registry.len()?,
                started.elapsed().as_secs_f64()
            );
            filled = filled.max(others);
            let j = u32::try_from(j).unwrap_or(0);
            let change = client(
                RunKind::Change,
                spec.change_rounds,
                CHANGE_SEQ_BASE * u64::from(j + 1),
                // Tags 1, 2, 3: each level's first round differs from the
                // last round of the level before.
                j % 3 + 1,
                spec.run_secs,
            );
            runs.push(timed_run(&server, &change, named_pid, &spec.label).await?);
            reapply.push(restart(&server, &spec.label).await?);
        }
    }

    let _ = server.stop.send(());
    match timeout(STOP_TIMEOUT, server.task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => anyhow::bail!("the server failed: {e}"),
        Ok(Err(e)) => anyhow::bail!("the server task failed: {e}"),
        Err(_) => anyhow::bail!("the server did not stop within {STOP_TIMEOUT:?}"),
    }
    Ok(PhaseReport {
        label: spec.label.clone(),
        rss_start_kb,
        rss_idle_kb,
        runs,
        reapply,
        raw_around,
    })
}

/// named's raw rate from this process, with the server idle (bind-local
/// phases that ask for it).
async fn raw(spec: &PhaseSpec) -> anyhow::Result<Option<RawBind>> {
    let BackendSpec::BindLocal {
        server,
        session_key,
        named_pid,
    } = &spec.backend
    else {
        return Ok(None);
    };
    if spec.raw_bind_tasks == 0 {
        return Ok(None);
    }
    let at = NamedAt {
        addr: *server,
        zone: &spec.domain,
        session_key,
        pid: *named_pid,
    };
    let time = Duration::from_secs_f64(spec.raw_bind_secs);
    let raw = crate::ceiling::raw_bind(&at, spec.raw_bind_tasks, time).await?;
    eprintln!("  [{}] {}", spec.label, raw.describe());
    Ok(Some(raw))
}

/// Times what a restart does: a second server state built from the same
/// config (`build_state`: the registry file, a fresh and empty embedded
/// zone), then `State::reapply_registry`, which reads the registry in
/// pages into that zone. The running server is left alone.
async fn restart(server: &Server, label: &str) -> anyhow::Result<Reapply> {
    let config = Config::load(&server.config_path)?;
    let (rss_before_kb, _) = procfs::rss_kb()?;
    procfs::reset_peak()?;
    let cpu_before = procfs::cpu_seconds(None)?;
    let started = std::time::Instant::now();
    let (state, _embedded) = build_state(config)?;
    let names = state.reapply_registry().await? as u64;
    let secs = started.elapsed().as_secs_f64();
    let cpu_s = procfs::cpu_seconds(None)? - cpu_before;
    let (rss_after_kb, peak_kb) = procfs::rss_kb()?;
    drop(state);
    let report = Reapply {
        names,
        secs,
        cpu_s,
        rss_before_kb,
        peak_kb,
        rss_after_kb,
    };
    eprintln!(
        "  [{label}] restart: re-applying {names} names into a fresh zone took {secs:.3} s \
         ({cpu_s:.3} s CPU); \
         RSS {:.1} -> {:.1} MiB, peak {:.1} MiB (transient {:.1} MiB)",
        rss_before_kb as f64 / 1024.0,
        rss_after_kb as f64 / 1024.0,
        peak_kb as f64 / 1024.0,
        report.transient_kb() as f64 / 1024.0
    );
    Ok(report)
}

/// Registers names `m<from>..m<to>` of made-up owners, as the pipeline
/// would: DNS first, then the registry.
async fn prefill(state: &State, from: u32, to: u32) -> anyhow::Result<()> {
    let now = now_ms();
    for i in from..to {
        let owner = format!(
            "@{}.ed25519",
            B64.encode(Sha256::digest(format!("bench-owner-{i}")))
        );
        let entry = Entry {
            name: format!("m{i}"),
            owner,
            ip: Some(Ipv4Addr::from(
                u32::from(Ipv4Addr::new(100, 64, 0, 0)) + (i & 0x003f_ffff),
            )),
            ip6: None,
            ttl: state.config.ttl,
            token_sha256: None,
            created_ms: now,
            updated_ms: now,
        };
        state.dns.apply(&ZoneChange::Set(entry.records())).await?;
        state.registry.commit_set(&entry, 1).await?;
    }
    Ok(())
}

/// Starts a client child with `spec`, waits until it is ready, then times
/// it: this process's CPU (and named's) from `go` to its result.
async fn timed_run(
    server: &Server,
    spec: &ClientSpec,
    named_pid: Option<u32>,
    label: &str,
) -> anyhow::Result<RunReport> {
    let exe = std::env::current_exe().context("finding this program")?;
    let mut child = Command::new(exe)
        .arg("--client")
        .arg(serde_json::to_string(spec)?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting a client child")?;
    let mut stdin = child.stdin.take().context("client stdin")?;
    let stdout = child.stdout.take().context("client stdout")?;
    let mut lines = BufReader::new(stdout).lines();

    let ready = timeout(READY_TIMEOUT, lines.next_line())
        .await
        .context("the client did not get ready in time")??
        .context("the client exited before it was ready")?;
    anyhow::ensure!(ready.starts_with("ready"), "client said {ready:?}");

    let (rss_before_kb, _) = procfs::rss_kb()?;
    let commits_before = server.state.registry.commits();
    let dns_before = server.state.metrics.stage_totals(Stage::Dns);
    let commit_wait_before = server.state.metrics.stage_totals(Stage::Commit);
    let server_time_before = server.state.metrics.update_totals();
    let cpu_before = procfs::cpu_seconds(None)?;
    let named_before = named_pid
        .map(|p| procfs::cpu_seconds(Some(p)))
        .transpose()?;
    let machine_before = procfs::machine_seconds()?;
    stdin.write_all(b"go\n").await?;
    stdin.flush().await?;

    let limit = Duration::from_secs_f64(spec.max_secs) + RESULT_GRACE;
    let line = timeout(limit, lines.next_line())
        .await
        .context("the client did not report in time")??
        .context("the client exited without a result")?;
    let server_cpu_s = procfs::cpu_seconds(None)? - cpu_before;
    let commits = server.state.registry.commits() - commits_before;
    let since = |(n, us): (u64, u64), (n0, us0): (u64, u64)| (n - n0, us - us0);
    let dns_wait = since(server.state.metrics.stage_totals(Stage::Dns), dns_before);
    let commit_wait = since(
        server.state.metrics.stage_totals(Stage::Commit),
        commit_wait_before,
    );
    let server_time = since(server.state.metrics.update_totals(), server_time_before);
    let machine_after = procfs::machine_seconds()?;
    let named_cpu_s = match (named_pid, named_before) {
        (Some(pid), Some(before)) => Some(procfs::cpu_seconds(Some(pid))? - before),
        _ => None,
    };
    let (rss_after_kb, hwm_kb) = procfs::rss_kb()?;
    let json = line
        .strip_prefix(RESULT_PREFIX)
        .with_context(|| format!("client said {line:?}"))?;
    let client: ClientResult = serde_json::from_str(json)?;
    let status = timeout(STOP_TIMEOUT, child.wait())
        .await
        .context("the client did not exit")??;
    anyhow::ensure!(status.success(), "the client exited with {status}");

    let report = RunReport {
        kind: spec.kind,
        names: server.state.registry.len()?,
        client,
        server_cpu_s,
        named_cpu_s,
        machine_busy_s: machine_after.0 - machine_before.0,
        machine_idle_s: machine_after.1 - machine_before.1,
        rss_before_kb,
        rss_after_kb,
        hwm_kb,
        commits,
        dns_wait,
        commit_wait,
        server_time,
    };
    let c = &report.client;
    eprintln!(
        "  [{label}] {:<9} {:>7} names: {:>6} ok in {:>5.2} s = {:>7.0}/s  p50 {:>6.2} ms  \
         p99 {:>6.2} ms  max {:>7.2} ms  errors {}  server CPU {:.3} ms/update  RSS {} MiB  \
         {:.1} updates/fsync (cores: server {:.2}, other processes {:.2}, idle {:.2})",
        spec.kind.label(),
        report.names,
        c.ok,
        c.elapsed_s,
        c.rate(),
        c.p50_us as f64 / 1000.0,
        c.p99_us as f64 / 1000.0,
        c.max_us as f64 / 1000.0,
        c.errors,
        report.server_ms_per_update(),
        rss_after_kb / 1024,
        report.updates_per_commit(),
        report.server_cpu_s / c.elapsed_s.max(1e-9),
        report.other_cores(),
        report.idle_cores(),
    );
    let mean_ms = |(n, us): (u64, u64)| {
        if n == 0 {
            0.0
        } else {
            us as f64 / n as f64 / 1000.0
        }
    };
    eprintln!(
        "  [{label}] {:<9} where an update waits (mean): in the server {:.2} ms from its headers \
         to its answer ({} updates), of which DNS backend {:.2} ms ({} updates), \
         registry commit and fsync {:.2} ms ({} updates)",
        spec.kind.label(),
        mean_ms(report.server_time),
        report.server_time.0,
        mean_ms(report.dns_wait),
        report.dns_wait.0,
        mean_ms(report.commit_wait),
        report.commit_wait.0,
    );
    if c.errors > 0 {
        eprintln!(
            "  !!! [{label}] {} ERRORS in the {} run; first: {:?}",
            c.errors,
            spec.kind.label(),
            c.error_samples
        );
    }
    Ok(report)
}
