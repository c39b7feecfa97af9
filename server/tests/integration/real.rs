//! The built `peach-dyndns-server` binary as a process (for the tests that
//! hold sockets against it, kill it, or watch its memory), and a small
//! HTTP/1.1 client that sends from any loopback source address.

#![allow(dead_code)] // shared by held, faults and soak; each uses a part

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_protocol::message::{Op, UpdateMsg};
use tempfile::TempDir;
use testkit::{Process, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{body, DOMAIN};

/// The binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_peach-dyndns-server");
/// How long a start may take before the test fails (the re-apply of a
/// few hundred names to BIND is the slow part).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one request may take before the client gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The server binary running on loopback with its files in a temp dir.
pub struct RealServer {
    /// The pub's identity (updates are sealed to it).
    pub keypair: Keypair,
    /// The HTTP API.
    pub http: SocketAddr,
    /// The embedded DNS, UDP and TCP, when the config has it.
    pub dns: Option<SocketAddr>,
    /// The config file the process reads.
    pub config_path: PathBuf,
    /// The registry file.
    pub database: PathBuf,
    /// The process; `None` once killed or stopped.
    process: Option<Process>,
    /// Starts so far, to name each start's log.
    starts: usize,
    /// Holds the secret, config, registry and logs.
    pub dir: TempDir,
}

/// What a test configures besides the files and the HTTP port.
pub struct Setup<'a> {
    /// The `[dns]` table's body; `None`: the embedded DNS on a free port.
    pub dns: Option<&'a str>,
    /// The `[graph]` table's body.
    pub graph: &'a str,
    /// Top-level TOML.
    pub top: &'a str,
    /// Further tables (`[http]`, `[rate_limit]`).
    pub tables: &'a str,
}

impl RealServer {
    /// Starts the binary as the pub `keypair` and waits until `/health`
    /// answers.
    pub fn start(keypair: Keypair, setup: Setup<'_>) -> RealServer {
        let dir = tempfile::tempdir().expect("tmp");
        let secret = testkit::write_secret(&dir.path().join("secret"), &keypair.to_secret_file());
        let http = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
        let database = dir.path().join("registry.sqlite3");
        let mut text = ServerConfig::new(DOMAIN)
            .listen(http)
            .secret(&secret)
            .database(&database)
            .allow_private_addresses(true)
            .top(&format!(
                "control_socket = {}",
                testkit::toml_string(dir.path().join("control.sock").display())
            ))
            .top(setup.top)
            .graph(setup.graph)
            .table(setup.tables);
        let dns = match setup.dns {
            Some(table) => {
                text = text.dns(table);
                None
            }
            None => {
                let addr = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
                text = text.dns_embedded(addr);
                Some(addr)
            }
        };
        let config_path = dir.path().join("server.toml");
        std::fs::write(&config_path, text.to_toml()).expect("write config");
        let mut server = RealServer {
            keypair,
            http,
            dns,
            config_path,
            database,
            process: None,
            starts: 0,
            dir,
        };
        server.launch();
        server
    }

    /// Starts the process (again) on the same files and ports.
    pub fn launch(&mut self) {
        assert!(self.process.is_none(), "the server is running already");
        self.starts += 1;
        let log = self.dir.path().join(format!("server-{}.log", self.starts));
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(&self.config_path);
        cmd.env("RUST_LOG", "info");
        let mut process = Process::spawn(cmd, "peach-dyndns-server", &log).expect("spawn server");
        let started = Instant::now();
        loop {
            if let Err(e) = process.check_alive() {
                panic!("the server exited during its start: {e}");
            }
            if health(self.http).is_ok_and(|status| status == 200) {
                break;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "the server did not answer /health within {START_TIMEOUT:?}\n{}",
                process.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.process = Some(process);
    }

    /// The process's PID while it runs.
    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("running").pid()
    }

    /// Its resident memory now, KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        testkit::procfs::Status::read(Some(self.pid()))
            .and_then(|s| s.value("VmRSS:"))
            .expect("the server's /proc status")
    }

    /// How many sockets the process holds now (its `/proc/<pid>/fd`
    /// entries that are sockets: listeners, connections, DNS and sbot).
    pub fn sockets(&self) -> usize {
        let dir = format!("/proc/{}/fd", self.pid());
        std::fs::read_dir(&dir)
            .expect("the server's fd list")
            .filter_map(Result::ok)
            .filter(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
            })
            .count()
    }

    /// SIGKILL: the process dies where it is, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// The last lines of the current start's log.
    pub fn log_tail(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.log_tail())
            .unwrap_or_default()
    }

    /// The whole log of every start so far.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("server-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGTERM, and the process must exit within 5 s.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop(Duration::from_secs(5)).expect("a clean stop");
        }
    }

    /// The registry's entries by name, read from the file (as `names` does).
    pub fn registry(
        &self,
    ) -> std::collections::BTreeMap<String, (Option<Ipv4Addr>, Option<Ipv6Addr>)> {
        let registry =
            peach_dyndns_server::registry::Registry::open(&self.database).expect("open registry");
        registry
            .all()
            .expect("read registry")
            .into_iter()
            .map(|e| (e.name, (e.ip, e.ip6)))
            .collect()
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.stop(Duration::from_secs(5));
        }
    }
}

/// `GET /health` from 127.0.0.1, blocking: the status.
fn health(to: SocketAddr) -> std::io::Result<u16> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: pub\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(parse_reply(&out).map_or(0, |r| r.status))
}

/// A TCP connection to `to` from `source` (any 127.0.0.0/8 address is
/// this machine).
pub async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// `Retry-After`, when sent.
    pub retry_after: Option<String>,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: serde_json::Value,
}

impl Reply {
    /// The `error` code of a refusal, or `""`.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

/// Takes an HTTP/1.1 answer apart (a plain or chunked body).
fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut retry_after = None;
    let mut chunked = false;
    for line in lines {
        let (k, v) = line.split_once(':')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "retry-after" => retry_after = Some(v.trim().to_string()),
            "transfer-encoding" => chunked = v.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(tail.get(..n)?);
            rest = tail.get(n + 2..)?;
        }
        out
    } else {
        rest.to_string()
    };
    Some(Reply {
        status,
        retry_after,
        json: serde_json::from_str(&body).unwrap_or_default(),
    })
}

/// Sends one request (`Connection: close`) from `source` and reads the
/// answer; an error when the server hung up, refused, or took longer than
/// 10 s.
pub async fn request(
    source: IpAddr,
    to: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<Reply> {
    let exchange = async {
        let mut s = connect_from(source, to).await?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: pub\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        s.write_all(&bytes).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        parse_reply(&out).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an HTTP answer: {:?}", String::from_utf8_lossy(&out)),
            )
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer within 10 s",
            ))
        })
}

/// A client with its own key, name and source address, sending signed
/// updates with `seq = max(last + 1, now_ms)` as the daemon does.
#[derive(Clone)]
pub struct Client {
    /// Its key.
    pub keypair: Keypair,
    /// The label it holds.
    pub name: String,
    /// Where its requests come from.
    pub source: IpAddr,
    /// The last `seq` it signed.
    pub seq: u64,
}

impl Client {
    /// A new key for `name`, sending from `source`.
    pub fn new(name: &str, source: IpAddr) -> Client {
        Client {
            keypair: Keypair::generate(),
            name: name.to_string(),
            source,
            seq: 0,
        }
    }

    /// The body of a signed update of its name to `ip` / `ip6`, sealed to
    /// `to`, with the next `seq`.
    pub fn update_body(
        &mut self,
        to: &Keypair,
        ip: Option<Ipv4Addr>,
        ip6: Option<Ipv6Addr>,
    ) -> Vec<u8> {
        self.seq = (self.seq + 1).max(peach_dyndns_server::pipeline::now_ms());
        let msg = UpdateMsg {
            op: Op::Update,
            name: self.name.clone(),
            domain: DOMAIN.into(),
            ip,
            ip6,
            pub_id: to.public(),
            public_key: self.keypair.public(),
            seq: self.seq,
            token_sha256: None,
            txt: None,
        };
        body(&msg, &self.keypair, to)
    }

    /// Sends an update of its name to `ip` / `ip6` to the server.
    pub async fn update(
        &mut self,
        server: &RealServer,
        ip: Option<Ipv4Addr>,
        ip6: Option<Ipv6Addr>,
    ) -> std::io::Result<Reply> {
        let body = self.update_body(&server.keypair, ip, ip6);
        request(self.source, server.http, "POST", "/update", &body).await
    }

    /// Its full name.
    pub fn fqdn(&self) -> String {
        format!("{}.{DOMAIN}", self.name)
    }
}

/// The `p`-th percentile (0–100) of `sorted` (ascending), nearest rank.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Asks `server` for `fqdn`'s `rtype` over TCP (the embedded DNS limits
/// the rate of UDP answers per source, TCP is not limited): the answers.
pub fn dig_tcp(server: SocketAddr, fqdn: &str, rtype: &str) -> Vec<String> {
    testkit::dig(server, fqdn, rtype).tcp(true).tries(2).short()
}
