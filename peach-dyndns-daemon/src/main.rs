//! `peach-dyndns-daemon`: command line → logging → config → runtime → run.
//!
//! - `peach-dyndns-daemon [run]`: the daemon (SIGTERM/SIGINT stop it within
//!   a second, SIGHUP reloads the config).
//! - `peach-dyndns-daemon --once`: one check and update; the exit code says
//!   how it went (see `OnceOutcome::exit_code`).
//! - `peach-dyndns-daemon status`: asks the running daemon and prints it.
//! - `peach-dyndns-daemon acme-hook set|clear`: the DNS-01 step for
//!   certbot, acme.sh and lego (see `acme::hook`).

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use peach_dyndns_daemon::config::{self, Config, DEFAULT_CONFIG_PATH};
use peach_dyndns_daemon::daemon::{once, real_services, Daemon, OnceOutcome};
use peach_dyndns_daemon::status::{render, unix_ms, Status};

/// `--help`. The command line is parsed by hand ([`parse_args`]): four
/// options and two commands did not need clap, whose code (about 0.1 MiB)
/// is resident in every daemon (docs/benchmarks-daemon.md).
const HELP: &str = concat!(
    env!("CARGO_PKG_DESCRIPTION"),
    "

Usage: peach-dyndns-daemon [OPTIONS] [COMMAND]

Commands:
  run     Run the daemon (the default). SIGTERM or SIGINT stop it within a
          second, SIGHUP reloads the config
  status  Ask the running daemon for its status and print it. Exit codes as
          for --once; 1 if the daemon does not answer
  acme-hook set|clear [DOMAIN [VALUE]]
          Set or clear the ACME DNS-01 TXT value of this Pi's name at its
          pub (certbot: CERTBOT_DOMAIN and CERTBOT_VALIDATION; acme.sh and
          lego: the arguments). Exit code 0 once the pub's DNS serves it

Options:
  -c, --config <PATH>  The config file [default: /etc/peach-dyndns/daemon.toml]
      --once           Check and update once, then exit. Exit codes: 0 online,
                       1 error before checking (config, secret), 2 not
                       configured or disabled, 3 failed (retry later),
                       4 refused (change the config), 5 accepted but the
                       pub's DNS does not show it yet
  -h, --help           Print help
  -V, --version        Print version
"
);

/// The one-line reminder printed with a command-line error.
const USAGE: &str =
    "Usage: peach-dyndns-daemon [-c PATH] [--once] [run | status | acme-hook set|clear]";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    /// The config file.
    config: PathBuf,
    /// Check and update once, then exit.
    once: bool,
    /// What to do.
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Ask the running daemon for its status and print it.
    Status,
}

/// A parsed command line: run, or just print something.
#[derive(Debug, PartialEq, Eq)]
enum Invocation {
    /// Do what [`Args`] says.
    Run(Args),
    /// Print [`HELP`].
    Help,
    /// Print the version.
    Version,
    /// `acme-hook …`: the config file and the arguments after `acme-hook`.
    Hook(PathBuf, Vec<String>),
}

/// Parses the arguments after the program name. Options and the command
/// come in any order; `--config PATH`, `--config=PATH` and `-c PATH` are
/// the same. Paths need not be UTF-8.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, String> {
    let mut config = None;
    let mut once = false;
    let mut command = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-h" | "--help" | "help" => return Ok(Invocation::Help),
            "-V" | "--version" => return Ok(Invocation::Version),
            "--once" => once = true,
            "-c" | "--config" => {
                let path = args
                    .next()
                    .ok_or_else(|| format!("`{text}` needs a PATH"))?;
                config = Some(PathBuf::from(path));
            }
            "acme-hook" => {
                let rest = args.map(|a| a.to_string_lossy().to_string()).collect();
                let config = config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
                return Ok(Invocation::Hook(config, rest));
            }
            "run" | "status" => {
                if command.is_some() {
                    return Err(format!(
                        "unexpected argument `{text}`: one command at a time"
                    ));
                }
                command = Some(if text == "run" {
                    Command::Run
                } else {
                    Command::Status
                });
            }
            other => match other.strip_prefix("--config=") {
                Some(path) if !path.is_empty() => config = Some(PathBuf::from(path)),
                _ => return Err(format!("unexpected argument `{other}`")),
            },
        }
    }
    let command = command.unwrap_or(Command::Run);
    if once && command == Command::Status {
        return Err("`--once` goes with `run`, not `status`".into());
    }
    Ok(Invocation::Run(Args {
        config: config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH)),
        once,
        command,
    }))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Invocation::Run(args)) => args,
        Ok(Invocation::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Version) => {
            println!("peach-dyndns-daemon {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Hook(config, rest)) => {
            init_logging();
            return match acme_hook(&config, &rest) {
                Ok(done) => {
                    println!("{done}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("peach-dyndns-daemon acme-hook: {e:#}");
                    ExitCode::from(1)
                }
            };
        }
        Err(e) => {
            // 2, as for any command-line error (clap's and most tools').
            eprintln!("peach-dyndns-daemon: {e}\n{USAGE}\nFor more, try --help.");
            return ExitCode::from(2);
        }
    };
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
        Command::Status => runtime.block_on(status(&args.config)),
        Command::Run => {
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

/// `acme-hook`: one challenge step through the pub, then exit.
fn acme_hook(path: &std::path::Path, args: &[String]) -> anyhow::Result<String> {
    use peach_dyndns_daemon::acme::hook;
    let call =
        hook::parse_call(args, |name| std::env::var(name).ok()).map_err(anyhow::Error::msg)?;
    let config = config::load(path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(hook::run(&config, &call))
        .map_err(anyhow::Error::msg)
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
    let client = peach_dyndns_daemon::pubapi::http_client(Duration::from_secs(5), None)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, String> {
        parse_args(args.iter().map(OsString::from))
    }

    fn run(config: &str, once: bool, command: Command) -> Result<Invocation, String> {
        Ok(Invocation::Run(Args {
            config: PathBuf::from(config),
            once,
            command,
        }))
    }

    /// Every form the unit file, the scripts, the tests and the man page
    /// use.
    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse(&[]), run(DEFAULT_CONFIG_PATH, false, Command::Run));
        assert_eq!(
            parse(&["run", "--config", "/etc/x.toml"]),
            run("/etc/x.toml", false, Command::Run)
        );
        assert_eq!(
            parse(&["--config", "/x.toml", "status"]),
            run("/x.toml", false, Command::Status)
        );
        assert_eq!(
            parse(&["status", "-c", "/x.toml"]),
            run("/x.toml", false, Command::Status)
        );
        assert_eq!(
            parse(&["--once", "--config=/x.toml"]),
            run("/x.toml", true, Command::Run)
        );
        assert_eq!(
            parse(&["--config", "/x.toml", "--once"]),
            run("/x.toml", true, Command::Run)
        );
        assert_eq!(parse(&["--version"]), Ok(Invocation::Version));
        assert_eq!(parse(&["-V"]), Ok(Invocation::Version));
        assert_eq!(parse(&["status", "--help"]), Ok(Invocation::Help));
        assert_eq!(parse(&["help"]), Ok(Invocation::Help));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for args in [
            &["--bogus"][..],
            &["--config"],
            &["--config="],
            &["run", "status"],
            &["status", "--once"],
            &["runn"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn help_names_every_option_and_command() {
        for word in ["--config", "--once", "--help", "--version", "run", "status"] {
            assert!(HELP.contains(word), "{word}");
        }
    }
}
