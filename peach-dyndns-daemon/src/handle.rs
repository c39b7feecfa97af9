//! The handle the RPC, the web panel, signals and tests work through: the
//! current config (and the file it came from), the loop's status, and a
//! way to ask the loop for an update. [`crate::daemon`] makes it and hands
//! it to [`crate::web`] and [`crate::rpc`]; it imports neither.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{self, Config, ConfigError};
use crate::configure::{self, RegistrationEdit};
use crate::directory::{merge_with_config, Announcement, DirectoryError};
use crate::status::Status;
use crate::updater::{Command, Services};

/// How long `update_now` waits for the loop's check (HTTP timeouts of the
/// address check and the update, plus DNS, fit in it).
const UPDATE_NOW_TIMEOUT: Duration = Duration::from_secs(30);
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
    /// The release was not made (no name held, the pub refused or could
    /// not be reached).
    #[error("{0}")]
    Release(String),
}

/// What the RPC handlers (and signals, and tests) share with the loop: the config, the status, and
/// a way to ask for an update. Cheap to clone behind an `Arc`.
pub struct Handle {
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
    /// The ACME task's part of the status (`crate::acme::run` sets it).
    tls: watch::Sender<Option<crate::acme::status::TlsStatus>>,
}

impl Handle {
    /// A handle over the loop's channels; [`crate::daemon::Daemon::new`]
    /// makes the one the daemon uses.
    pub(crate) fn new(
        config_path: Option<PathBuf>,
        config: watch::Sender<Arc<Config>>,
        status: watch::Receiver<Status>,
        commands: mpsc::Sender<Command>,
        services: Services,
    ) -> Handle {
        Handle {
            config_path,
            config,
            status,
            commands,
            services,
            edit_lock: tokio::sync::Mutex::new(()),
            tls: watch::channel(None).0,
        }
    }

    /// The current config.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// The config file, if any.
    pub fn config_path(&self) -> Option<&PathBuf> {
        self.config_path.as_ref()
    }

    /// The current status, with the ACME task's `tls` part.
    pub fn status(&self) -> Status {
        let mut status = self.status.borrow().clone();
        status.tls = self.tls.borrow().clone();
        status
    }

    /// Sets the `tls` part of the status.
    pub fn set_tls(&self, tls: Option<crate::acme::status::TlsStatus>) {
        self.tls.send_if_modified(|old| {
            if *old == tls {
                false
            } else {
                *old = tls;
                true
            }
        });
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
                tokio::task::spawn_blocking(move || configure::edit_registration(&path, &edit))
                    .await
                    .map_err(|_| HandleError::Stopping)??
            }
            None => {
                let mut config = (*self.config()).clone();
                if let Some(enabled) = edit.enabled {
                    config.enabled = enabled;
                }
                let path = std::path::Path::new("<in memory>");
                config.registration = edit.registration(path)?;
                config.validate(path)?;
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

    /// The recent events, newest first.
    pub fn events(&self) -> Vec<crate::events::Event> {
        self.status.borrow().events.newest_first()
    }

    /// The owner's release: removes the name from the config (so the loop
    /// stops registering it; the pub stays chosen), then has the loop send
    /// a signed `release` for the name the state file holds. A pub that
    /// refuses or cannot be reached leaves the name held (and in the state
    /// file), so the owner can try again.
    pub async fn release(&self) -> Result<Status, HandleError> {
        let config = self.config();
        let reg = &config.registration;
        if reg.name.is_some() {
            self.configure(RegistrationEdit {
                name: None,
                pub_id: reg.pub_id.map(|id| id.to_string()),
                url: reg.url.as_ref().map(|u| u.to_string()),
                domain: reg.domain.clone(),
                enabled: None,
            })
            .await?;
        }
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Release(tx))
            .await
            .map_err(|_| HandleError::Stopping)?;
        match tokio::time::timeout(UPDATE_NOW_TIMEOUT, rx).await {
            Ok(Ok(Ok(status))) => Ok(status),
            Ok(Ok(Err(why))) => Err(HandleError::Release(why)),
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
