//! A BIND `named` on loopback whose zone statements the test writes: for
//! snippets an operator is told to use (a secondary of the embedded DNS, a
//! signing secondary, the zone `init --dnssec` writes), tested as written.
//!
//! The `options` block is testkit's (loopback, its own port, pid, lock and
//! session key files in the temporary directory, no recursion); the zones,
//! keys and files come from the test. `{dir}` in the text is replaced by
//! the temporary directory.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::dns;
use crate::error::{or_panic, Error, Result};
use crate::process::{find_program, write_file, Daemon};

/// Where Debian puts `named`, often not in a user's PATH.
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];
/// How long named gets to load (a secondary first transfers the zone, a
/// signing one also signs it; a loaded CI machine is slow).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`NamedWith::wait_for`] asks again.
const WAIT_FOR_INTERVAL: Duration = Duration::from_millis(20);

/// A running `named` with the test's zone statements; stopped (SIGTERM,
/// then SIGKILL) and its directory removed on drop.
#[derive(Debug)]
pub struct NamedWith {
    /// The process. Declared first so it is stopped before `dir` goes.
    daemon: Daemon,
    /// The binary, for [`restart`](Self::restart).
    binary: PathBuf,
    /// The port on 127.0.0.1 and `::1`, UDP and TCP.
    port: u16,
    /// The zone it serves (readiness waits for its SOA).
    zone: String,
    /// named.conf, zone files, keys, journals and the log.
    dir: TempDir,
}

impl NamedWith {
    /// Writes `files` (name → text) and named.conf with testkit's options
    /// and `zones` into a new temporary directory (`{dir}` replaced in
    /// all of them), starts named on `port` (from [`crate::free_port`], so
    /// a primary can be told it first) and waits until it answers the SOA
    /// of `zone` authoritatively.
    pub fn try_start(
        zone: &str,
        port: u16,
        zones: &str,
        files: &[(&str, &str)],
    ) -> Result<NamedWith> {
        let binary = find_program(
            "BIND 9 `named` (Debian package bind9)",
            "named",
            None,
            SBIN_DIRS,
        )?;
        let dir = tempfile::Builder::new()
            .prefix("testkit-named-with-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory for named", e))?;
        let d = dir.path().display().to_string();
        for (name, text) in files {
            write_file(&dir.path().join(name), &text.replace("{dir}", &d))?;
        }
        let conf = format!(
            "// Written by testkit (NamedWith)\n\
             options {{\n\
             \tdirectory \"{d}\";\n\
             \tpid-file \"{d}/named.pid\";\n\
             \tlock-file \"{d}/named.lock\";\n\
             \tsession-keyfile \"{d}/session.key\";\n\
             \tlisten-on port {port} {{ 127.0.0.1; }};\n\
             \tlisten-on-v6 port {port} {{ ::1; }};\n\
             \trecursion no;\n\
             \tdnssec-validation no;\n\
             \tallow-query {{ localhost; }};\n\
             \tnotify explicit;\n\
             }};\n\
             controls {{ }};\n\
             {}",
            zones.replace("{dir}", &d)
        );
        write_file(&dir.path().join("named.conf"), &conf)?;
        let daemon = spawn(&binary, dir.path(), zone)?;
        let mut named = NamedWith {
            daemon,
            binary,
            port,
            zone: zone.trim_end_matches('.').to_string(),
            dir,
        };
        named.wait_ready()?;
        Ok(named)
    }

    /// [`try_start`](Self::try_start), panicking with the error's message.
    #[track_caller]
    pub fn start(zone: &str, port: u16, zones: &str, files: &[(&str, &str)]) -> NamedWith {
        or_panic(NamedWith::try_start(zone, port, zones, files))
    }

    /// Polls the zone's SOA until named answers it authoritatively.
    fn wait_ready(&mut self) -> Result<()> {
        let addr = self.addr();
        let zone = self.zone.clone();
        self.daemon.wait_ready(READY_TIMEOUT, || {
            dns::soa_is_authoritative(addr, &zone).map(|()| true)
        })
    }

    /// Stops named and starts it again on the same port and directory.
    #[track_caller]
    pub fn restart(&mut self) {
        self.daemon.stop();
        self.daemon = or_panic(spawn(&self.binary, self.dir.path(), &self.zone));
        or_panic(self.wait_ready());
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The port (UDP and TCP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of named's log.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    /// named's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.daemon.log()).unwrap_or_default()
    }

    /// `dig +short +norecurse` at this named.
    #[track_caller]
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        crate::dig(self.addr(), name, rtype).norecurse().short()
    }

    /// Polls until `name rtype` is exactly `expected` (any order); returns
    /// how long it took. Fails after `timeout` with the last answer and the
    /// log's tail.
    pub fn try_wait_for(
        &self,
        name: &str,
        rtype: &str,
        expected: &[&str],
        timeout: Duration,
    ) -> Result<Duration> {
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        let start = Instant::now();
        loop {
            let mut got = crate::dig(self.addr(), name, rtype)
                .norecurse()
                .try_short()?;
            got.sort();
            if got == want {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= timeout {
                return Err(Error::unexpected(
                    format!(
                        "waiting {timeout:?} for {name} {rtype} = {want:?} at named port {}",
                        self.port
                    ),
                    format!(
                        "last answer {got:?}\n--- named's log ---\n{}",
                        self.log_tail()
                    ),
                ));
            }
            std::thread::sleep(WAIT_FOR_INTERVAL);
        }
    }

    /// [`try_wait_for`](Self::try_wait_for), panicking with the error's message.
    #[track_caller]
    pub fn wait_for(
        &self,
        name: &str,
        rtype: &str,
        expected: &[&str],
        timeout: Duration,
    ) -> Duration {
        or_panic(self.try_wait_for(name, rtype, expected, timeout))
    }
}

/// Starts `named -g -c <dir>/named.conf` with its output in `<dir>/named.log`.
fn spawn(binary: &Path, dir: &Path, zone: &str) -> Result<Daemon> {
    let mut cmd = Command::new(binary);
    cmd.arg("-g").arg("-c").arg(dir.join("named.conf"));
    cmd.current_dir(dir);
    Daemon::spawn(
        cmd,
        format!("named (test's zones, {zone})"),
        &dir.join("named.log"),
    )
}
