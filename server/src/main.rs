//! `peach-dyndns-server`: arguments → tracing → config → runtime → run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use peach_dyndns_server::config::{Config, DEFAULT_CONFIG_PATH};
use peach_dyndns_server::{build_state, control, operator, run, Listeners};

/// Dynamic DNS for PeachCloud: accepts signed, sealed updates from the SSB
/// peers this pub follows and keeps its DNS zone in step.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The config file.
    #[arg(long, short, global = true, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTP API (and the embedded DNS, if configured). The default.
    Serve,
    /// Write BIND's zone file and named.conf snippet for the sub-zone, and check them.
    Init {
        /// The sub-zone this pub serves, e.g. peach.dinosaur.is.
        #[arg(long)]
        domain: String,
        /// A name server of the sub-zone (repeat for more); the first is the SOA primary.
        #[arg(long = "ns", required = true)]
        nameservers: Vec<String>,
        /// SOA contact mailbox as a name (default hostmaster.<domain>).
        #[arg(long)]
        hostmaster: Option<String>,
        /// Zone file to write (default /var/lib/bind/db.<domain>).
        #[arg(long)]
        zone_file: Option<PathBuf>,
        /// named.conf snippet to write.
        #[arg(long, default_value = "/etc/bind/named.conf.peach-dyndns")]
        conf_file: PathBuf,
        /// The server's own TSIG key (kept if it exists, unless --force).
        #[arg(long, default_value = "/etc/bind/peach-dyndns.key")]
        key_file: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
        /// Do not run named-checkzone and named-checkconf.
        #[arg(long)]
        skip_checks: bool,
        /// Let BIND sign the zone (DNSSEC): `dnssec-policy default;` with inline signing.
        #[arg(long)]
        dnssec: bool,
    },
    /// Publish the peach-dyndns announcement on the pub's SSB feed.
    Announce,
    /// List the registered names.
    Names,
    /// Remove a name (from DNS, then from the registry), whoever owns it.
    Revoke {
        /// The label, e.g. eb4890.
        name: String,
    },
    /// Forget a key's last accepted seq, so its next update (seq within a
    /// day of now) is accepted again: for a Pi whose seq was pushed ahead.
    ResetSeq {
        /// The key, @<base64>.ed25519.
        key: String,
    },
    /// Check the config, the secret, the registry, and reach DNS and ssb-server;
    /// then the zone's serial, NS names, secondaries and signatures.
    Check,
    /// Write a new SSB identity (secret file, mode 0600) for a pub without
    /// ssb-server, or for trying things out; prints its id.
    Keygen {
        /// Where to write it; refused if it exists.
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peach-dyndns-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(args: Args) -> anyhow::Result<()> {
    if let Some(Cmd::Init {
        domain,
        nameservers,
        hostmaster,
        zone_file,
        conf_file,
        key_file,
        force,
        skip_checks,
        dnssec,
    }) = args.command
    {
        // init needs no config: it is what an operator runs first.
        let report = operator::init(&operator::InitArgs {
            domain,
            nameservers,
            hostmaster,
            zone_file,
            conf_file,
            key_file,
            force,
            skip_checks,
            dnssec,
        })?;
        print!("{report}");
        return Ok(());
    }
    if let Some(Cmd::Keygen { out }) = &args.command {
        let id = operator::keygen(out)?;
        println!("{id}");
        return Ok(());
    }
    let config = Config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (state, embedded) = build_state(config)?;
        let state = Arc::new(state);
        match args.command.unwrap_or(Cmd::Serve) {
            Cmd::Serve => {
                let shutdown = shutdown_signal()?;
                let listeners = Listeners::bind(&state.config).await?;
                run(state, embedded, listeners, shutdown).await?;
            }
            Cmd::Announce => {
                let key = operator::announce(&state).await?;
                println!("published {key}:\n{}", state.announcement());
            }
            Cmd::Names => {
                let entries = state.registry.all()?;
                let lapses = state.registry.lapses()?;
                print!(
                    "{}",
                    operator::names_table(
                        &entries,
                        &lapses,
                        &state.config.grace,
                        &state.config.domain
                    )
                );
            }
            Cmd::Revoke { name } => {
                let socket = &state.config.control_socket;
                let asked = control::request(socket, &serde_json::json!({ "revoke": name }))
                    .await
                    .with_context(|| format!("control socket {}", socket.display()))?;
                match asked {
                    // The running server removed it from its DNS and the registry.
                    Some(answer) if answer["ok"] == true => println!(
                        "revoked {name}.{} (owner {}) in the running server",
                        state.config.domain,
                        answer["owner"].as_str().unwrap_or("?")
                    ),
                    Some(answer) => anyhow::bail!(
                        "the running server refused: {}",
                        answer["error"].as_str().unwrap_or("no reason given")
                    ),
                    // No server is running: the registry is all there is.
                    None => match control::revoke(&state, &name)
                        .await
                        .map_err(anyhow::Error::msg)?
                    {
                        Some(owner) => println!(
                            "revoked {name}.{} (owner {owner}); no server was running",
                            state.config.domain
                        ),
                        None => anyhow::bail!("{name:?} is not registered"),
                    },
                }
            }
            Cmd::ResetSeq { key } => {
                let key: peach_dyndns_protocol::identity::PublicKey = key
                    .parse()
                    .with_context(|| format!("{key:?} is not an SSB id (@<base64>.ed25519)"))?;
                // Through the running server when there is one (it reads
                // seq from the registry on every request, so both act at once).
                let socket = &state.config.control_socket;
                let asked =
                    control::request(socket, &serde_json::json!({ "reset_seq": key.to_string() }))
                        .await
                        .with_context(|| format!("control socket {}", socket.display()))?;
                let last = match asked {
                    Some(answer) if answer["ok"] == true => answer["last_seq"].as_u64(),
                    Some(answer) => anyhow::bail!(
                        "the running server refused: {}",
                        answer["error"].as_str().unwrap_or("no reason given")
                    ),
                    None => state.registry.reset_seq(&key.to_string()).await?,
                };
                match last {
                    Some(last) => println!("reset {key}: its last seq was {last}"),
                    None => println!("{key} had no seq stored; nothing to reset"),
                }
            }
            Cmd::Check => {
                println!("config: OK ({})", args.config.display());
                println!("secret: OK (pub id {})", state.keypair.id());
                println!("registry: OK ({} names)", state.registry.len()?);
                if let Some(report) =
                    operator::tls_check(&state.config, std::time::SystemTime::now())?
                {
                    print!("{report}");
                }
                let n = state
                    .reapply_registry()
                    .await
                    .context("DNS backend does not accept the registry's records")?;
                println!("dns ({}): OK, {n} names re-applied", state.dns.kind());
                let probe: peach_dyndns_protocol::identity::PublicKey = state.keypair.public();
                state
                    .graph
                    .standing(&probe)
                    .await
                    .context("social graph unavailable")?;
                println!("graph ({}): OK", state.graph.kind());
                let findings = operator::check_dns(&state.config).await;
                for finding in &findings {
                    println!("{finding}");
                }
                let problems = findings.iter().filter(|f| !f.ok).count();
                if problems > 0 {
                    anyhow::bail!("{problems} problem(s) found; see above");
                }
            }
            Cmd::Init { .. } | Cmd::Keygen { .. } => {}
        }
        Ok(())
    })
}

/// Registers for SIGTERM and SIGINT now (before any socket is bound, so a
/// signal that arrives early is never lost to the default action) and
/// returns a future that resolves on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}
