//! Wiring: the shared handle the RPC works through, the real services, the
//! daemon's `run` (loop + listener + LED until shutdown) and `--once`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{self, Config, ConfigError, RegistrationEdit};
use crate::directory::{merge_with_config, Announcement, DirectoryError, NoSbot, PubDirectory};
use crate::dns::UdpDns;
use crate::ip::SourceChain;
use crate::pubapi::{http_client, HttpPubApi};
use crate::status::{unix_ms, Phase, Problem, Status};
use crate::updater::{random_jitter, Command, Services, Updater};
use crate::{led, sbot, web};

/// How long `update_now` waits for the loop's check (HTTP timeouts of the
/// address check and the update, plus DNS, fit in it).
const UPDATE_NOW_TIMEOUT: Duration = Duration::from_secs(30);
/// After the loop stopped, how long the listener may take to close its
/// connections before it is dropped (the whole stop stays under a second).
const LISTENER_GRACE: Duration = Duration::from_millis(200);
/// `--once`: how long to wait for the pub's DNS to show an accepted update.
const ONCE_DNS_WAIT: Duration = Duration::from_secs(15);
/// `--once`: pause between DNS checks while waiting.
const ONCE_DNS_STEP: Duration = Duration::from_secs(1);

/// What the RPC methods can fail with, besides bad params.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The config file could not be read or written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The local sbot failed.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The update loop has stopped (the daemon is shutting down).
    #[error("the daemon is stopping")]
    Stopping,
    /// The loop did not finish the check in time.
    #[error("the update did not finish within {} s", .0.as_secs())]
    Timeout(Duration),
}

/// What the RPC handlers share with the loop: the config, the status, and
/// a way to ask for an update. Cheap to clone behind an `Arc`.
pub struct Shared {
    /// The config file, when there is one (`configure` and SIGHUP re-read
    /// it).
    config_path: Option<PathBuf>,
    /// The current config; the loop follows it.
    config: watch::Sender<Arc<Config>>,
    /// The loop's status.
    status: watch::Receiver<Status>,
    /// Requests to the loop.
    commands: mpsc::Sender<Command>,
    /// The pub API and the directory (for `check_name`, `list_pubs`,
    /// `accept_invite`).
    services: Services,
    /// One `configure` at a time (each reads, edits and writes the file).
    edit_lock: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The current config.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// The config file, if any.
    pub fn config_path(&self) -> Option<&PathBuf> {
        self.config_path.as_ref()
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The services.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Installs a new config (the loop picks it up at once).
    pub fn set_config(&self, config: Config) {
        self.config.send_if_modified(|old| {
            if **old == config {
                false
            } else {
                *old = Arc::new(config);
                true
            }
        });
    }

    /// Re-reads the config file (SIGHUP). A bad file is refused and the
    /// running config kept.
    pub fn reload(&self) -> Result<(), ConfigError> {
        if let Some(path) = &self.config_path {
            let config = config::load(path)?;
            self.set_config(config);
        }
        Ok(())
    }

    /// Writes the registration into the config file and applies it; with
    /// no file, applies it in memory only.
    pub async fn configure(&self, edit: RegistrationEdit) -> Result<Arc<Config>, HandleError> {
        let _guard = self.edit_lock.lock().await;
        let config = match &self.config_path {
            Some(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || config::edit_registration(&path, &edit))
                    .await
                    .map_err(|_| HandleError::Stopping)??
            }
            None => {
                let mut config = (*self.config()).clone();
                if let Some(enabled) = edit.enabled {
                    config.enabled = enabled;
                }
                config.registration.name = edit.name;
                config.registration.pub_id = edit.pub_id;
                config.registration.url = edit.url;
                config.registration.domain = edit.domain;
                config.validate(std::path::Path::new("<in memory>"))?;
                config
            }
        };
        self.set_config(config);
        Ok(self.config())
    }

    /// Checks and sends now; answers with the status after the check.
    pub async fn update_now(&self) -> Result<Status, HandleError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::UpdateNow(tx))
            .await
            .map_err(|_| HandleError::Stopping)?;
        match tokio::time::timeout(UPDATE_NOW_TIMEOUT, rx).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(_)) => Err(HandleError::Stopping),
            Err(_) => Err(HandleError::Timeout(UPDATE_NOW_TIMEOUT)),
        }
    }

    /// Every pub on offer: the configured one, then the sbot's.
    pub async fn list_pubs(&self) -> Result<Vec<Announcement>, HandleError> {
        let from_sbot = self.services.directory.announcements().await?;
        Ok(merge_with_config(&self.config(), from_sbot))
    }

    /// Accepts an SSB invite through the local sbot.
    pub async fn accept_invite(&self, invite: &str) -> Result<(), HandleError> {
        Ok(self.services.directory.accept_invite(invite).await?)
    }
}

/// The real services for a config: reqwest for HTTP, UDP for DNS, the
/// local sbot for pubs (unless `sbot.enabled = false`).
pub fn real_services(config: &Config) -> Result<Services, reqwest::Error> {
    let client = http_client(config.http_timeout())?;
    let directory: Arc<dyn PubDirectory> = if config.sbot.enabled {
        Arc::new(sbot::SbotDirectory::new(
            config.sbot.clone(),
            config.secret_path.clone(),
        ))
    } else {
        Arc::new(NoSbot)
    };
    Ok(Services {
        discover: Arc::new(SourceChain::new(client.clone())),
        pub_api: Arc::new(HttpPubApi::new(client)),
        dns: Arc::new(UdpDns),
        directory,
        jitter: random_jitter(),
        clock: Arc::new(unix_ms),
    })
}

/// A daemon ready to run: the loop, and the handle the RPC uses.
pub struct Daemon {
    /// The shared handle.
    shared: Arc<Shared>,
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
            shared: Arc::new(Shared {
                config_path,
                config: config_tx,
                status: status_rx,
                commands,
                services,
                edit_lock: tokio::sync::Mutex::new(()),
            }),
            updater,
            config_rx,
            commands_rx,
        }
    }

    /// The handle for RPC, signals and tests.
    pub fn handle(&self) -> Arc<Shared> {
        self.shared.clone()
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
            tokio::spawn(web::serve(self.shared.clone(), listener, stopped()))
        });
        let led = led::open(&self.shared.config().led);
        let led_task = tokio::spawn(led::drive(led, self.shared.subscribe(), stopped()));
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
