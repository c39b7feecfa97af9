//! `peach-dyndns-daemon`: command line → logging → config → runtime → run.
//!
//! - `peach-dyndns-daemon [run]`: the daemon (SIGTERM/SIGINT stop it within
//!   a second, SIGHUP reloads the config).
//! - `peach-dyndns-daemon --once`: one check and update; the exit code says
//!   how it went (see `OnceOutcome::exit_code`).
//! - `peach-dyndns-daemon status`: asks the running daemon and prints it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use peach_dyndns_daemon::config::{self, Config, DEFAULT_CONFIG_PATH};
use peach_dyndns_daemon::daemon::{once, real_services, Daemon, OnceOutcome};
use peach_dyndns_daemon::status::{render, unix_ms, Status};

/// Keeps a PeachCloud Pi's name pointed at its public address, with trust
/// from Secure Scuttlebutt.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The config file.
    #[arg(short, long, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH, global = true)]
    config: PathBuf,
    /// Check and update once, then exit. Exit codes: 0 online, 1 error
    /// before checking (config, secret), 2 not configured or disabled,
    /// 3 failed (retry later), 4 refused (change the config), 5 accepted
    /// but the pub's DNS does not show it yet.
    #[arg(long)]
    once: bool,
    /// What to do (default: run).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Ask the running daemon for its status and print it. Exit codes as
    /// for --once; 1 if the daemon does not answer.
    Status,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    match real_main(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("peach-dyndns-daemon: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs to stderr at `RUST_LOG`'s levels (`info` when unset, empty or not
/// understood). `RUST_LOG` is read as `Targets` (`level`,
/// `target=level`, comma-separated): the same syntax as `EnvFilter` minus
/// span and field filters, and without the regex engine those need, which
/// is code the binary no longer carries nor keeps resident (about 0.1 MiB,
/// docs/benchmarks-daemon.md). Colours only on a terminal: under systemd
/// stderr is the journal, which would store the escape codes.
fn init_logging() {
    use std::io::IsTerminal as _;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|text| !text.trim().is_empty())
        .and_then(|text| text.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .init();
}

fn real_main(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the async runtime")?;
    match args.command {
        Some(Command::Status) => runtime.block_on(status(&args.config)),
        Some(Command::Run) | None => {
            let config = config::load(&args.config)?;
            if args.once {
                let services = real_services(&config).context("cannot set up HTTP")?;
                let outcome = runtime.block_on(once(&config, services));
                print!("{}", render(&outcome.status, unix_ms() / 1000));
                Ok(ExitCode::from(u8::try_from(outcome.exit_code).unwrap_or(1)))
            } else {
                runtime.block_on(run(config, args.config))?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

async fn run(config: Config, path: PathBuf) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let services = real_services(&config).context("cannot set up HTTP")?;
    let listener = if config.rpc.enabled {
        Some(
            tokio::net::TcpListener::bind(config.rpc.listen)
                .await
                .with_context(|| format!("cannot listen on {} (rpc.listen)", config.rpc.listen))?,
        )
    } else {
        None
    };
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let daemon = Daemon::new(config, Some(path.clone()), services);
    let handle = daemon.handle();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match handle.reload() {
                Ok(()) => tracing::info!(path = %path.display(), "config reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "config not reloaded; keeping the running one")
                }
            }
        }
    });
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting");
    daemon
        .run(listener, async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
            }
        })
        .await;
    Ok(())
}

/// Asks the running daemon over JSON-RPC and prints the answer.
async fn status(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(config::ConfigError::Read { .. }) => Config::default(),
        Err(e) => return Err(e.into()),
    };
    let mut addr = config.rpc.listen;
    if addr.ip().is_unspecified() {
        addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port());
    }
    let url = format!("http://{addr}/rpc");
    let client = peach_dyndns_daemon::pubapi::http_client(Duration::from_secs(5))?;
    let answer: serde_json::Value = client
        .post(&url)
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "status"}))
        .send()
        .await
        .with_context(|| format!("the daemon does not answer at {url}"))?
        .json()
        .await
        .with_context(|| format!("the daemon at {url} did not answer with JSON"))?;
    if let Some(err) = answer.get("error") {
        anyhow::bail!("the daemon answered with an error: {err}");
    }
    let status: Status = serde_json::from_value(answer.get("result").cloned().unwrap_or_default())
        .context("the daemon's status is not in the expected form")?;
    print!("{}", render(&status, unix_ms() / 1000));
    Ok(ExitCode::from(
        u8::try_from(OnceOutcome::exit_code(&status)).unwrap_or(1),
    ))
}
