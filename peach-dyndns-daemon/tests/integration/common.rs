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
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const DOMAIN: &str = "peach.dinosaur.is";

/// Writes `kp`'s secret file with mode 0600.
pub fn write_secret(path: &Path, kp: &Keypair) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, kp.to_secret_file()).expect("write secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Which DNS the pub drives.
#[derive(Clone)]
pub enum PubDns {
    /// The server's own embedded DNS on a loopback port.
    Embedded,
    /// `[dns]` table text for another backend, and the server to ask.
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
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestPub {
    /// A pub on its embedded DNS that lets `allowed` update.
    pub async fn start(allowed: &[&Keypair]) -> TestPub {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let keypair = Keypair::generate();
        write_secret(&dir.path().join("secret"), &keypair);
        let allowed = allowed.iter().map(|k| k.id()).collect();
        TestPub::start_in(dir, keypair, allowed, PubDns::Embedded, None).await
    }

    /// A pub on its embedded DNS with a given identity and files.
    pub async fn start_as(dir: Arc<TempDir>, keypair: Keypair, allowed: &[&Keypair]) -> TestPub {
        let allowed = allowed.iter().map(|k| k.id()).collect();
        TestPub::start_in(dir, keypair, allowed, PubDns::Embedded, None).await
    }

    /// A pub with another DNS backend.
    pub async fn start_with_dns(allowed: &[&Keypair], pub_dns: PubDns) -> TestPub {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let keypair = Keypair::generate();
        write_secret(&dir.path().join("secret"), &keypair);
        let allowed = allowed.iter().map(|k| k.id()).collect();
        TestPub::start_in(dir, keypair, allowed, pub_dns, None).await
    }

    async fn start_in(
        dir: Arc<TempDir>,
        keypair: Keypair,
        allowed: Vec<String>,
        pub_dns: PubDns,
        ports: Option<(SocketAddr, SocketAddr)>,
    ) -> TestPub {
        let allow = allowed
            .iter()
            .map(|id| format!("{id:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let dns_table = match &pub_dns {
            PubDns::Embedded => {
                "[dns]\nbackend = \"embedded\"\nlisten = \"127.0.0.1:0\"\n".to_string()
            }
            PubDns::Other { table, .. } => table.clone(),
        };
        let text = format!(
            "domain = \"{DOMAIN}\"\nlisten = \"127.0.0.1:0\"\nsecret = {:?}\ndatabase = {:?}\n\
             allow_private_addresses = true\n{dns_table}\n[graph]\nbackend = \"allowlist\"\nallow = [{allow}]\n",
            dir.path().join("secret"),
            dir.path().join("registry.sqlite3"),
        );
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
        let listeners = peach_dyndns_server::Listeners {
            http,
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
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn update_url(&self) -> String {
        format!("http://{}/update", self.http)
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
        write_secret(&dir.path().join("secret"), &keypair);
        Pi { keypair, dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("daemon.toml")
    }

    /// A config for `pub_` with fast timers (real time), `extra` appended
    /// to the top level and `ip_table` as the `[ip]` table body.
    pub fn config_text(&self, pub_: &TestPub, top: &str, ip_table: &str) -> String {
        format!(
            "secret_path = {:?}\nstate_path = {:?}\ncheck_interval_secs = 1\n\
             backoff_min_secs = 1\nbackoff_max_secs = 2\nhttp_timeout_secs = 2\n{top}\n\
             [registration]\nname = \"eb4890\"\npub_id = \"{}\"\nurl = \"{}\"\ndomain = \"{DOMAIN}\"\n\
             [ip]\nallow_private_addresses = true\n{ip_table}\n\
             [dns]\nserver = \"{}\"\ntimeout_secs = 1\n\
             [rpc]\nlisten = \"127.0.0.1:0\"\n[sbot]\nenabled = false\n",
            self.dir.path().join("secret"),
            self.dir.path().join("state.json"),
            pub_.keypair.id(),
            pub_.update_url(),
            pub_.dns,
        )
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
        init_logs();
        let services = real_services(&config).expect("services");
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

/// `dig @server -p port name rtype +short`, with the real dig.
pub fn dig(server: SocketAddr, name: &str, rtype: &str) -> Vec<String> {
    let out = std::process::Command::new("dig")
        .args([
            &format!("@{}", server.ip()),
            "-p",
            &server.port().to_string(),
            name,
            rtype,
            "+short",
            "+time=1",
            "+tries=2",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("dig is needed for this test (apt-get install bind9-dnsutils): {e}")
        });
    assert!(
        out.status.success(),
        "dig failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
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
