//! Wiring: the secret, the sockets, the state, and [`run`], which serves
//! until the shutdown signal.

use std::future::Future;
use std::sync::Arc;

use peach_dyndns_sbot::secret::{load_secret, SecretError};
use tokio::net::{TcpListener, UdpSocket};

use crate::config::{self, Config, GraphConfig};
use crate::graph::{self, SocialGraph};
use crate::registry::{self, Registry};
use crate::state::{ReapplyError, State};
use crate::tls::{Tls, TlsError};
use crate::{api, conn, control, dns};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The secret file could not be used (the error names the file:
    /// systemd's credential or the config's `secret`).
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The registry could not be opened or read.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// The DNS backend could not be set up.
    #[error("DNS backend: {0}")]
    Dns(String),
    /// Re-applying the registry to DNS failed.
    #[error(transparent)]
    Reapply(#[from] ReapplyError),
    /// The `[tls]` certificate or key cannot be used (the error names the file).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// `[tls]` and the HTTPS listener handed to [`run`] disagree.
    #[error("{0}")]
    TlsListener(&'static str),
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The sockets the server serves on, bound by the caller (tests bind
/// `127.0.0.1:0`).
pub struct Listeners {
    /// HTTP.
    pub http: TcpListener,
    /// HTTPS: present exactly when the config has `[tls]`.
    pub https: Option<TcpListener>,
    /// The embedded DNS's UDP socket (only with the `embedded` backend).
    pub dns_udp: Option<UdpSocket>,
    /// The embedded DNS's TCP listener (only with the `embedded` backend).
    pub dns_tcp: Option<TcpListener>,
}

impl Listeners {
    /// Binds what `config` asks for.
    pub async fn bind(config: &Config) -> Result<Listeners, StartError> {
        let bind_err = |addr: String| move |source| StartError::Bind { addr, source };
        let http = TcpListener::bind(config.listen)
            .await
            .map_err(bind_err(config.listen.to_string()))?;
        let https = match &config.tls {
            Some(tls) => Some(
                TcpListener::bind(tls.listen)
                    .await
                    .map_err(bind_err(format!("tls {}", tls.listen)))?,
            ),
            None => None,
        };
        let (dns_udp, dns_tcp) = match &config.dns {
            config::DnsConfig::Embedded { listen, .. } => (
                Some(
                    UdpSocket::bind(listen)
                        .await
                        .map_err(bind_err(format!("udp {listen}")))?,
                ),
                Some(
                    TcpListener::bind(listen)
                        .await
                        .map_err(bind_err(format!("tcp {listen}")))?,
                ),
            ),
            _ => (None, None),
        };
        Ok(Listeners {
            http,
            https,
            dns_udp,
            dns_tcp,
        })
    }
}

/// Builds the state from a config: secret, registry, DNS backend, graph.
/// Returns the embedded DNS server too when that backend is chosen.
pub fn build_state(
    config: Config,
) -> Result<(State, Option<Arc<dns::embedded::EmbeddedDns>>), StartError> {
    // systemd's private copy (`$CREDENTIALS_DIRECTORY/ssb-secret`) when the
    // service was given one, so the server's own user never needs to read
    // ssb-server's files; otherwise the config's `secret`.
    let keypair = load_secret(&config.secret)?;
    if let Some(dir) = config.database.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| StartError::Bind {
                addr: dir.display().to_string(),
                source: e,
            })?;
        }
    }
    let registry = Registry::open(&config.database)?;
    let backend =
        dns::build(&config.dns, &config.domain).map_err(|e| StartError::Dns(e.to_string()))?;
    let graph: Arc<dyn SocialGraph> = match &config.graph {
        GraphConfig::Allowlist { allow } => {
            Arc::new(graph::Allowlist::new(allow.iter().map(|id| {
                id.parse()
                    .expect("invariant: Config::from_str checked graph.allow")
            })))
        }
        GraphConfig::Ssb {
            addr, server_id, ..
        } => Arc::new(graph::SsbGraph::new(
            *addr,
            server_id.clone().unwrap_or_else(|| keypair.id()),
            keypair.signing_key().clone(),
            config.graph_cache(),
        )),
    };
    let state = State::new(config, keypair, registry, backend.zone, graph);
    Ok((state, backend.embedded))
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn run(
    state: Arc<State>,
    embedded: Option<Arc<dns::embedded::EmbeddedDns>>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    // The certificate first: a broken [tls] stops the start before
    // anything is served.
    let https = match (&state.config.tls, listeners.https) {
        (Some(config), Some(listener)) => {
            let tls = Arc::new(Tls::new(config)?);
            warn_about_certificate(&tls, state.config.public_host().as_deref());
            Some((tls, listener))
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(StartError::TlsListener(
                "[tls] is configured but no HTTPS listener was given",
            ))
        }
        (None, Some(_)) => {
            return Err(StartError::TlsListener(
                "an HTTPS listener was given but the config has no [tls]",
            ))
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut dns_task = None;
    if let (Some(embedded), Some(udp), Some(tcp)) = (embedded, listeners.dns_udp, listeners.dns_tcp)
    {
        let mut rx = stop_rx.clone();
        dns_task = Some(tokio::spawn(async move {
            embedded
                .serve(udp, tcp, async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
        }));
    }
    let reapplied = state.reapply_registry().await?;
    let challenges = crate::acme::reconcile(&state).await?;
    let sweeper = {
        let mut rx = stop_rx.clone();
        tokio::spawn(crate::acme::run_sweeper(state.clone(), async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }))
    };
    tracing::info!(
        domain = %state.config.domain,
        dns = state.dns.kind(),
        graph = state.graph.kind(),
        names = reapplied,
        challenges,
        http = ?listeners.http.local_addr().ok(),
        https = ?https.as_ref().and_then(|(_, l)| l.local_addr().ok()),
        "peach-dyndns-server ready"
    );
    let control_path = state.config.control_socket.clone();
    let control_task = match control::bind(&control_path) {
        Ok(listener) => {
            let mut rx = stop_rx.clone();
            let state = state.clone();
            Some(tokio::spawn(async move {
                control::serve(state, listener, async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
            }))
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                path = %state.config.control_socket.display(),
                "no control socket: revoke and reset-seq will edit the registry only, and \
                 with the embedded DNS a revoked name resolves until the next restart"
            );
            None
        }
    };
    let sweep_task = {
        let mut rx = stop_rx.clone();
        let state = state.clone();
        tokio::spawn(crate::sweep::run(state, async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }))
    };
    let mut transports = vec![(listeners.http, conn::Transport::Plain)];
    let mut tls_tasks = Vec::new();
    if let Some((tls, listener)) = https {
        transports.push((listener, conn::Transport::Tls(tls.acceptor())));
        let mut rx = stop_rx.clone();
        tls_tasks.push(tokio::spawn(tls.clone().watch(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        })));
        // `acme = true`: order and renew; the zone already answers.
        let mut rx = stop_rx.clone();
        tls_tasks.push(tokio::spawn(crate::own_cert::run(
            state.clone(),
            tls,
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            },
        )));
    }
    let mut http_rx = stop_rx;
    let limits = state.config.http.limits();
    let exempt = state
        .config
        .trusted_proxies
        .iter()
        .map(|ip| crate::addr::source_of(*ip))
        .collect();
    let server = conn::serve_all(
        api::routes(state.clone()),
        transports,
        limits,
        exempt,
        async move {
            let _ = http_rx.wait_for(|stop| *stop).await;
        },
    );
    let http_task = tokio::spawn(server);
    shutdown.await;
    tracing::info!("shutting down: finishing requests in flight");
    let _ = stop_tx.send(true);
    // Requests in flight get this long to finish; a client holding an idle
    // keep-alive connection open must not hold up a restart.
    let grace = std::time::Duration::from_millis(800);
    let deadline = tokio::time::Instant::now() + grace;
    let mut http_task = http_task;
    if tokio::time::timeout_at(deadline, &mut http_task)
        .await
        .is_err()
    {
        tracing::warn!("requests still open after {grace:?}; closing them");
        http_task.abort();
    }
    sweep_task.abort();
    for task in tls_tasks {
        task.abort();
    }
    sweeper.abort();
    if let Some(task) = control_task {
        task.abort();
        let _ = std::fs::remove_file(&control_path);
    }
    if let Some(mut task) = dns_task {
        if tokio::time::timeout_at(deadline + grace, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
    // The no-change updates' seqs still deferred (at most DEFER old).
    if let Err(e) = state.registry.sync().await {
        tracing::error!(error = %e, "the last writes could not be made durable");
    }
    Ok(())
}

/// Logs what is served at start, with a warning for a certificate that
/// has expired, expires within 14 days, or does not cover `public_url`'s host.
fn warn_about_certificate(tls: &Tls, public_host: Option<&str>) {
    let (Some(info), Some(current)) = (tls.info(), tls.current()) else {
        tracing::info!("no TLS certificate yet: ordering one from the ACME CA (HTTPS handshakes fail until it is issued)");
        return;
    };
    tracing::info!(
        names = ?info.names,
        not_after = %info.not_after_utc(),
        "TLS certificate loaded"
    );
    for warning in crate::tls::warnings(&info, &current, public_host, std::time::SystemTime::now())
    {
        tracing::warn!("{warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    use peach_dyndns_protocol::identity::Keypair;

    /// The secret is loaded by `peach_dyndns_sbot::secret` (tested there);
    /// here, that `build_state` uses it and its error keeps the path.
    #[test]
    fn build_state_refuses_a_secret_others_can_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("secret");
        std::fs::write(&path, Keypair::generate().to_secret_file()).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let text = format!(
            "domain = \"peach.dinosaur.is\"\nsecret = {:?}\ndatabase = {:?}\n\
             [graph]\nbackend = \"allowlist\"\n",
            path,
            dir.path().join("r.sqlite3")
        );
        let config = Config::from_str(&text, &dir.path().join("server.toml")).expect("config");
        let Err(err) = build_state(config) else {
            panic!("an insecure secret was accepted");
        };
        assert!(matches!(err, StartError::Secret(_)), "{err:?}");
        let err = err.to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("chmod 600"),
            "{err}"
        );
    }
}
