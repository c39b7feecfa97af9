//! [`Pebble`]: Let's Encrypt's test CA (Debian's `pebble`) on loopback,
//! validating DNS-01 challenges against the DNS server the test names.
//!
//! The package ships no config and no certificate for Pebble's own HTTPS
//! listener, so the harness makes a small CA with `openssl` (a root with
//! `CA:TRUE` and a leaf for `localhost`, `127.0.0.1`, `::1` with `CA:FALSE`:
//! webpki refuses a self-signed leaf as an end-entity certificate) and
//! writes the config. Pebble runs with `PEBBLE_VA_NOSLEEP=1` (no random
//! validation delay), `PEBBLE_WFE_NONCEREJECT=0` (no fake bad-nonce
//! errors) and `PEBBLE_AUTHZREUSE=0` (every order validates afresh).
//!
//! ```no_run
//! let named = testkit::Named::start();
//! let pebble = testkit::Pebble::builder().dns_server(named.addr()).start();
//! let dir = pebble.directory_url();      // https://127.0.0.1:<port>/dir
//! let trust = pebble.listener_ca_path();  // ca_file for the ACME client
//! let root = pebble.root_pem();           // what issued certificates chain to
//! ```

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::error::{or_panic, Result};
use crate::process::{self, find_program, write_file, Daemon};

/// How long Pebble may take to listen (it makes its root keys first).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// `openssl` and `curl` runs.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`Pebble`].
#[derive(Debug, Clone, Default)]
pub struct PebbleBuilder {
    /// Where Pebble asks for `_acme-challenge` TXT records.
    dns_server: Option<SocketAddr>,
    /// `certificateValidityPeriod` in seconds (Pebble's default: 5 years).
    validity_secs: Option<u64>,
    /// Names Pebble refuses to issue for (`domainBlocklist`).
    blocklist: Vec<String>,
}

impl PebbleBuilder {
    /// The DNS server challenges are checked against (the pub's DNS).
    pub fn dns_server(mut self, addr: SocketAddr) -> Self {
        self.dns_server = Some(addr);
        self
    }

    /// The life of issued certificates, in seconds.
    pub fn validity_secs(mut self, secs: u64) -> Self {
        self.validity_secs = Some(secs);
        self
    }

    /// Names Pebble refuses (a refused order).
    pub fn blocklist(mut self, names: &[&str]) -> Self {
        self.blocklist = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Starts Pebble and waits until it listens.
    pub fn try_start(self) -> Result<Pebble> {
        let binary = find_program(
            "Let's Encrypt's test CA `pebble` (Debian package pebble)",
            "pebble",
            None,
            &[],
        )?;
        let openssl = find_program("`openssl` (Debian package openssl)", "openssl", None, &[])?;
        let dir = tempfile::Builder::new()
            .prefix("testkit-pebble-")
            .tempdir()
            .map_err(|e| crate::Error::Spawn {
                program: binary.clone(),
                source: e,
            })?;
        make_listener_certificate(&openssl, dir.path())?;
        let port = crate::free_port();
        let management_port = crate::free_port();
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.path().join("leaf.pem"),
            "privateKey": dir.path().join("leaf.key"),
            // HTTP-01 and TLS-ALPN-01 are not used; their ports must be free.
            "httpPort": crate::free_port(),
            "tlsPort": crate::free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(secs) = self.validity_secs {
            pebble["certificateValidityPeriod"] = secs.into();
        }
        if !self.blocklist.is_empty() {
            pebble["domainBlocklist"] = self.blocklist.clone().into();
        }
        let config = serde_json::json!({ "pebble": pebble });
        let config_path = dir.path().join("pebble.json");
        write_file(&config_path, &config.to_string())?;
        let mut cmd = Command::new(&binary);
        cmd.arg("-config").arg(&config_path);
        if let Some(dns) = self.dns_server {
            cmd.arg("-dnsserver").arg(dns.to_string());
        }
        cmd.env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .current_dir(dir.path());
        let mut daemon = Daemon::spawn(cmd, "pebble", &dir.path().join("pebble.log"))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mgmt: SocketAddr = ([127, 0, 0, 1], management_port).into();
        daemon.wait_ready(READY_TIMEOUT, || {
            let up =
                |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok();
            Ok(up(&addr) && up(&mgmt))
        })?;
        let curl = find_program("`curl` (Debian package curl)", "curl", None, &[])?;
        Ok(Pebble {
            daemon,
            curl,
            port,
            management_port,
            dir,
        })
    }

    /// [`try_start`](Self::try_start), panicking with the error's message.
    #[track_caller]
    pub fn start(self) -> Pebble {
        or_panic(self.try_start())
    }
}

/// A running Pebble on 127.0.0.1; stopped and its directory removed on drop.
#[derive(Debug)]
pub struct Pebble {
    /// The process. Declared first so it is stopped before `dir` goes.
    daemon: Daemon,
    /// `curl`, to read the management API.
    curl: PathBuf,
    /// The ACME listener's port.
    port: u16,
    /// The management listener's port (roots, intermediates).
    management_port: u16,
    /// Holds the config, the listener's CA and the log.
    dir: TempDir,
}

impl Pebble {
    /// Options: the DNS server, certificate life, blocklist.
    pub fn builder() -> PebbleBuilder {
        PebbleBuilder::default()
    }

    /// The ACME directory, `https://127.0.0.1:<port>/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The CA that signed Pebble's own HTTPS listener (PEM): what an ACME
    /// client must trust to talk to it (its `ca_file`).
    pub fn listener_ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The root that issued certificates chain to (PEM), from the
    /// management API; Pebble makes a new one at every start.
    pub fn try_root_pem(&self) -> Result<String> {
        self.management_get("/roots/0")
    }

    /// [`try_root_pem`](Self::try_root_pem), panicking with the error.
    #[track_caller]
    pub fn root_pem(&self) -> String {
        or_panic(self.try_root_pem())
    }

    /// The intermediate of issued chains (PEM).
    #[track_caller]
    pub fn intermediate_pem(&self) -> String {
        or_panic(self.management_get("/intermediates/0"))
    }

    fn management_get(&self, path: &str) -> Result<String> {
        let mut cmd = Command::new(&self.curl);
        cmd.args(["-sS", "--fail", "--cacert"])
            .arg(self.listener_ca_path())
            .arg(format!("https://127.0.0.1:{}{path}", self.management_port));
        Ok(process::run(cmd, None, TOOL_TIMEOUT)?.stdout)
    }

    /// Pebble's log so far.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    /// Pebble's process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The directory holding the config and the listener's CA.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes `ca.pem`/`ca.key` (a root) and `leaf.pem`/`leaf.key` (for
/// localhost, 127.0.0.1 and ::1, signed by it) into `dir`.
fn make_listener_certificate(openssl: &Path, dir: &Path) -> Result<()> {
    let run = |args: &[&str]| {
        let mut cmd = Command::new(openssl);
        cmd.args(args).current_dir(dir);
        process::run(cmd, None, TOOL_TIMEOUT).map(|_| ())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "7",
        "-subj",
        "/CN=testkit pebble listener CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&ca)?;
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&csr)?;
    write_file(
        &dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n",
    )?;
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "7",
        "-extfile",
        "leaf.ext",
    ])
}
