//! Helpers: a real pub (peach-dyndns-server in-process on loopback), a Pi
//! identity and config, an echo service, a DNS lookup.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peach_dyndns_daemon::config::Config;
use peach_dyndns_daemon::daemon::{real_services, Daemon};
use peach_dyndns_daemon::handle::Handle;
use peach_dyndns_protocol::identity::Keypair;
use serde_json::{json, Value};
use tempfile::TempDir;
use testkit::{DaemonConfig, ServerConfig};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const DOMAIN: &str = "peach.dinosaur.is";

/// Which DNS the pub drives.
#[derive(Clone)]
pub enum PubDns {
    /// The server's own embedded DNS on a loopback port.
    Embedded,
    /// The `[dns]` table's body (without its header) for another backend,
    /// and the server to ask.
    Other { table: String, server: SocketAddr },
}

/// A running peach-dyndns-server on loopback with the allowlist graph.
pub struct TestPub {
    pub keypair: Keypair,
    pub http: SocketAddr,
    pub dns: SocketAddr,
    pub dir: Arc<TempDir>,
    allowed: Vec<String>,
    pub_dns: PubDns,
    https: Option<Https>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// HTTPS for a [`TestPub`]: its `public_url`, the `[tls]` table's body
/// (without `listen`) and the HTTPS address.
#[derive(Clone)]
pub struct Https {
    pub public_url: String,
    pub table: String,
    pub listen: SocketAddr,
}

impl TestPub {
    /// A pub on its embedded DNS that lets `allowed` update.
    pub async fn start(allowed: &[&Keypair]) -> TestPub {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let keypair = Keypair::generate();
        testkit::write_secret(&dir.path().join("secret"), &keypair.to_secret_file());
        let allowed = allowed.iter().map(|k| k.id()).collect();
        TestPub::start_in(dir, keypair, allowed, PubDns::Embedded, None, None).await
    }

    /// A pub on its embedded DNS at `dns` with HTTPS as `https` says.
    pub async fn start_https(allowed: &[&Keypair], dns: SocketAddr, https: Https) -> TestPub {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let keypair = Keypair::generate();
        testkit::write_secret(&dir.path().join("secret"), &keypair.to_secret_file());
        let allowed = allowed.iter().map(|k| k.id()).collect();
        let http = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
        TestPub::start_in(
            dir,
            keypair,
            allowed,
            PubDns::Embedded,
            Some((http, dns)),
            Some(https),
        )
        .await
    }

    /// A pub on its embedded DNS with a given identity and files.
    pub async fn start_as(dir: Arc<TempDir>, keypair: Keypair, allowed: &[&Keypair]) -> TestPub {
        let allowed = allowed.iter().map(|k| k.id()).collect();
        TestPub::start_in(dir, keypair, allowed, PubDns::Embedded, None, None).await
    }

    /// A pub with another DNS backend.
    pub async fn start_with_dns(allowed: &[&Keypair], pub_dns: PubDns) -> TestPub {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let keypair = Keypair::generate();
        testkit::write_secret(&dir.path().join("secret"), &keypair.to_secret_file());
        let allowed = allowed.iter().map(|k| k.id()).collect();
        TestPub::start_in(dir, keypair, allowed, pub_dns, None, None).await
    }

    async fn start_in(
        dir: Arc<TempDir>,
        keypair: Keypair,
        allowed: Vec<String>,
        pub_dns: PubDns,
        ports: Option<(SocketAddr, SocketAddr)>,
        https: Option<Https>,
    ) -> TestPub {
        let mut text = ServerConfig::new(DOMAIN)
            .listen("127.0.0.1:0")
            .secret(dir.path().join("secret"))
            .database(dir.path().join("registry.sqlite3"))
            .allow_private_addresses(true);
        if let Some(https) = &https {
            text = text
                .top(&format!(
                    "public_url = {}",
                    testkit::toml_string(&https.public_url)
                ))
                .table(&format!(
                    "[tls]\nlisten = {}\n{}",
                    testkit::toml_string(https.listen),
                    https.table
                ));
        }
        let text = match &pub_dns {
            PubDns::Embedded => text.dns_embedded("127.0.0.1:0"),
            PubDns::Other { table, .. } => text.dns(table),
        };
        let text = text.graph_allowlist(&allowed).to_toml();
        let config = peach_dyndns_server::config::Config::from_str(&text, Path::new("pub.toml"))
            .expect("pub config");
        let (state, embedded) = peach_dyndns_server::build_state(config).expect("pub state");
        // Ports from the harness (free for TCP and UDP, below the ephemeral
        // range), so a restart can bind the same ones again.
        let (http_addr, dns_addr) = ports.unwrap_or_else(|| {
            (
                SocketAddr::from(([127, 0, 0, 1], testkit::free_port())),
                SocketAddr::from(([127, 0, 0, 1], testkit::free_port())),
            )
        });
        let http = TcpListener::bind(http_addr).await.expect("bind http");
        let (dns_udp, dns_tcp, dns) = match &pub_dns {
            PubDns::Embedded => {
                let udp = UdpSocket::bind(dns_addr).await.expect("bind dns udp");
                let addr = udp.local_addr().expect("addr");
                let tcp = TcpListener::bind(addr).await.expect("bind dns tcp");
                (Some(udp), Some(tcp), addr)
            }
            PubDns::Other { server, .. } => (None, None, *server),
        };
        let http_addr = http.local_addr().expect("addr");
        let https_listener = match &https {
            Some(h) => Some(TcpListener::bind(h.listen).await.expect("bind https")),
            None => None,
        };
        let listeners = peach_dyndns_server::Listeners {
            http,
            https: https_listener,
            dns_udp,
            dns_tcp,
        };
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let r = peach_dyndns_server::run(Arc::new(state), embedded, listeners, async {
                let _ = stop_rx.await;
            })
            .await;
            if let Err(e) = r {
                panic!("the pub stopped with an error: {e}");
            }
        });
        TestPub {
            keypair,
            http: http_addr,
            dns,
            dir,
            allowed,
            pub_dns,
            https,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Its `public_url` with HTTPS, else plain HTTP on loopback.
    pub fn update_url(&self) -> String {
        match &self.https {
            Some(https) => https.public_url.clone(),
            None => format!("http://{}/update", self.http),
        }
    }

    /// Stops the server (its files stay).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Starts it again on the same ports with the same registry.
    pub async fn restart(&mut self) {
        self.stop().await;
        let again = TestPub::start_in(
            self.dir.clone(),
            self.keypair.clone(),
            self.allowed.clone(),
            self.pub_dns.clone(),
            Some((self.http, self.dns)),
            self.https.clone(),
        )
        .await;
        *self = again;
    }
}

impl Drop for TestPub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A Pi: identity and files in a temp dir.
pub struct Pi {
    pub keypair: Keypair,
    pub dir: TempDir,
}

impl Pi {
    pub fn new() -> Pi {
        let dir = tempfile::tempdir().expect("tempdir");
        let keypair = Keypair::generate();
        testkit::write_secret(&dir.path().join("secret"), &keypair.to_secret_file());
        Pi { keypair, dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("daemon.toml")
    }

    /// A config for `pub_` (configured completely, so no sbot is needed)
    /// with fast timers (real time), private addresses allowed and the RPC
    /// on 127.0.0.1:0.
    pub fn config(&self, pub_: &TestPub) -> DaemonConfig {
        DaemonConfig::new()
            .secret_path(self.dir.path().join("secret"))
            .state_path(self.dir.path().join("state.json"))
            .fast_timers()
            .registration_name("eb4890")
            .static_pub(&pub_.keypair.id(), &pub_.update_url(), DOMAIN)
            .allow_private_addresses(true)
            .dns_server(pub_.dns)
            .dns_timeout_secs(1)
            .rpc_listen("127.0.0.1:0")
            .sbot_enabled(false)
    }

    /// [`config`](Self::config) as text, with `top` added to the top level
    /// and `ip_table` to the `[ip]` table.
    pub fn config_text(&self, pub_: &TestPub, top: &str, ip_table: &str) -> String {
        self.config(pub_).top(top).ip(ip_table).to_toml()
    }

    /// Writes the config file and loads it.
    pub fn write_config(&self, text: &str) -> Config {
        std::fs::write(self.config_path(), text).expect("write config");
        peach_dyndns_daemon::load(&self.config_path()).expect("daemon config")
    }
}

/// A daemon running in-process with its listener on 127.0.0.1:0.
pub struct RunningDaemon {
    pub shared: Arc<Handle>,
    pub rpc: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningDaemon {
    pub async fn start(pi: &Pi, config: Config) -> RunningDaemon {
        let services = real_services(&config).expect("services");
        RunningDaemon::start_with(pi, config, services).await
    }

    /// With the given services (e.g. an HTTP client with a name pinned).
    pub async fn start_with(
        pi: &Pi,
        config: Config,
        services: peach_dyndns_daemon::updater::Services,
    ) -> RunningDaemon {
        init_logs();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind rpc");
        let rpc = listener.local_addr().expect("addr");
        let daemon = Daemon::new(config, Some(pi.config_path()), services);
        let shared = daemon.handle();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(daemon.run(Some(listener), async {
            let _ = stop_rx.await;
        }));
        RunningDaemon {
            shared,
            rpc,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A JSON-RPC call over the real listener; the whole answer.
    pub async fn call(&self, method: &str, params: Option<Value>) -> Value {
        let mut body = json!({"jsonrpc": "2.0", "id": 1, "method": method});
        if let Some(p) = params {
            body["params"] = p;
        }
        reqwest::Client::new()
            .post(format!("http://{}/rpc", self.rpc))
            .json(&body)
            .send()
            .await
            .expect("rpc answer")
            .json()
            .await
            .expect("rpc json")
    }

    pub async fn result(&self, method: &str, params: Option<Value>) -> Value {
        let v = self.call(method, params).await;
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    /// Waits (real time) until the status satisfies `pred`.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let st = self.result("status", None).await;
            if pred(&st) {
                return st;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; status: {st:#}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// An echo service: `GET /` answers the current text.
pub struct Echo {
    pub url: String,
    pub answer: Arc<Mutex<String>>,
    _task: JoinHandle<()>,
}

impl Echo {
    pub async fn start(initial: &str) -> Echo {
        use warp::Filter as _;
        let answer = Arc::new(Mutex::new(initial.to_string()));
        let a = answer.clone();
        let route = warp::any().map(move || a.lock().map(|s| s.clone()).unwrap_or_default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(warp::serve(route).incoming(listener).run());
        Echo {
            url: format!("http://{addr}/"),
            answer,
            _task: task,
        }
    }

    pub fn set(&self, text: &str) {
        if let Ok(mut a) = self.answer.lock() {
            *a = text.to_string();
        }
    }
}

/// Loopback address text, for comparisons.
pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// Logs to the test's output (shown for failing tests); `RUST_LOG` picks
/// the level, `info` by default.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
