//! Wiring: the real services, the daemon's `run` (the loop, the
//! JSON-RPC/panel listener over a [`Handle`] and the LED until shutdown)
//! and `--once`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::directory::{NoSbot, PubDirectory};
use crate::dns::UdpDns;
use crate::handle::Handle;
use crate::ip::SourceChain;
use crate::pubapi::{http_client, HttpError, HttpPubApi};
use crate::status::{unix_ms, Phase, Problem, Status};
use crate::updater::{random_jitter, Command, Services, Updater};
use crate::{led, sbot, web};

/// After the loop stopped, how long the listener may take to close its
/// connections before it is dropped (the whole stop stays under a second).
const LISTENER_GRACE: Duration = Duration::from_millis(200);
/// `--once`: how long to wait for the pub's DNS to show an accepted update.
const ONCE_DNS_WAIT: Duration = Duration::from_secs(15);
/// `--once`: pause between DNS checks while waiting.
const ONCE_DNS_STEP: Duration = Duration::from_secs(1);

/// The real services for a config: reqwest for HTTP, UDP for DNS, the
/// local sbot for pubs (unless `sbot.enabled = false`).
pub fn real_services(config: &Config) -> Result<Services, HttpError> {
    let client = http_client(config.http_timeout(), config.acme.ca_file())?;
    Ok(services_with(config, client))
}

/// The real services over a given HTTP client (one from
/// [`crate::pubapi::http_client_builder`], e.g. with a name pinned to an
/// address in a test).
pub fn services_with(config: &Config, client: reqwest::Client) -> Services {
    let directory: Arc<dyn PubDirectory> = if config.sbot.enabled {
        Arc::new(sbot::SbotDirectory::new(
            config.sbot.clone(),
            config.secret_path.clone(),
        ))
    } else {
        Arc::new(NoSbot)
    };
    Services {
        discover: Arc::new(SourceChain::new(client.clone())),
        pub_api: Arc::new(HttpPubApi::new(client)),
        dns: Arc::new(UdpDns),
        directory,
        jitter: random_jitter(),
        clock: Arc::new(unix_ms),
    }
}

/// A daemon ready to run: the loop, and the handle the RPC uses.
pub struct Daemon {
    /// The handle the RPC and the panel work through.
    handle: Arc<Handle>,
    /// The loop (consumed by `run`).
    updater: Updater,
    /// The loop's end of the config channel.
    config_rx: watch::Receiver<Arc<Config>>,
    /// The loop's end of the command channel.
    commands_rx: mpsc::Receiver<Command>,
}

impl Daemon {
    /// A daemon for `config` (read from `config_path`, if any) with the
    /// given services. Nothing runs until [`Daemon::run`].
    pub fn new(config: Config, config_path: Option<PathBuf>, services: Services) -> Daemon {
        let (status_tx, status_rx) = watch::channel(Status::default());
        let updater = Updater::new(&config, services.clone(), status_tx);
        let (config_tx, config_rx) = watch::channel(Arc::new(config));
        // A few queued "update now" requests are plenty; more wait.
        let (commands, commands_rx) = mpsc::channel(8);
        Daemon {
            handle: Arc::new(Handle::new(
                config_path,
                config_tx,
                status_rx,
                commands,
                services,
            )),
            updater,
            config_rx,
            commands_rx,
        }
    }

    /// The handle for RPC, signals and tests.
    pub fn handle(&self) -> Arc<Handle> {
        self.handle.clone()
    }

    /// Runs the loop, the JSON-RPC/panel listener (when given) and the LED
    /// until `shutdown` resolves; then finishes the request in flight (up
    /// to [`crate::updater::SHUTDOWN_GRACE`]), saves state, closes the
    /// listener and turns the LED off. Returns within a second of
    /// `shutdown`.
    pub async fn run(self, listener: Option<TcpListener>, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let server = listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "JSON-RPC and panel listening");
            }
            tokio::spawn(web::serve(self.handle.clone(), listener, stopped()))
        });
        let acme_task = tokio::spawn(crate::acme::run(self.handle.clone(), stopped()));
        let led = led::open(&self.handle.config().led);
        let led_task = tokio::spawn(led::drive(led, self.handle.subscribe(), stopped()));
        self.updater
            .run(self.config_rx, self.commands_rx, shutdown)
            .await;
        let _ = stop_tx.send(true);
        if let Some(server) = server {
            let abort = server.abort_handle();
            if tokio::time::timeout(LISTENER_GRACE, server).await.is_err() {
                abort.abort();
            }
        }
        let _ = tokio::time::timeout(LISTENER_GRACE, led_task).await;
        // An order in flight is dropped: its TXT values expire at the pub.
        acme_task.abort();
        tracing::info!("stopped");
    }
}

/// What `--once` found, and the exit code that says it.
#[derive(Debug, Clone)]
pub struct OnceOutcome {
    /// The status after the check.
    pub status: Status,
    /// The process exit code (see [`OnceOutcome::exit_code`]).
    pub exit_code: i32,
}

impl OnceOutcome {
    /// Exit codes of `--once`: 0 online (the pub accepted the current
    /// addresses and its DNS shows them); 2 not configured or disabled;
    /// 3 failed, retrying later may work; 4 refused, the config must
    /// change; 5 accepted, but the pub's DNS does not show it yet.
    /// (1 is any other error: config file, secret, runtime.)
    pub fn exit_code(status: &Status) -> i32 {
        match status.state {
            Phase::Online => 0,
            Phase::Unconfigured | Phase::Disabled => 2,
            Phase::Error if status.parked => 4,
            Phase::Error if status.problem == Some(Problem::DnsMismatch) => 5,
            Phase::Error => 3,
            Phase::Working => 5,
        }
    }
}

/// One check (and update if needed), then a short wait for the pub's DNS
/// to show an accepted update. State is saved as in the daemon.
pub async fn once(config: &Config, services: Services) -> OnceOutcome {
    let (status_tx, _status_rx) = watch::channel(Status::default());
    let mut updater = Updater::new(config, services, status_tx);
    updater.check(config, false).await;
    let deadline = tokio::time::Instant::now() + ONCE_DNS_WAIT;
    while updater.status().state == Phase::Working && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(ONCE_DNS_STEP).await;
        updater.check(config, false).await;
    }
    let status = updater.status();
    OnceOutcome {
        exit_code: OnceOutcome::exit_code(&status),
        status,
    }
}
