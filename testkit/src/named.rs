//! BIND 9's `named` on loopback: a dynamic primary zone that accepts updates
//! signed with BIND's session key (what `nsupdate -l` and the server's
//! `bind-local` backend use) and with a TSIG key (the `rfc2136` backend), and
//! optional secondaries that follow it by NOTIFY and IXFR.
//!
//! The arrangement, found by trying BIND 9.18: one zone with
//! `update-policy { grant local-ddns zonesub any; grant "<tsig>" zonesub any; };`.
//! The first rule is what `update-policy local;` expands to; `local` cannot
//! be combined with other rules, so it is spelled out. named writes the
//! `local-ddns` key to `session-keyfile` at every start whether or not a
//! zone refers to it, with a new secret each time.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use nix::sys::signal::Signal;
use rand_core::{OsRng, RngCore};
use tempfile::TempDir;

use crate::dns;
use crate::error::{or_panic, Error, Result};
use crate::process::{self, find_program, read_file, write_file, Daemon};

/// The zone a [`Named`] serves unless told otherwise: the zone of the
/// example pub in the design.
pub const DEFAULT_ZONE: &str = "peach.dinosaur.is";
/// Name of the TSIG key a [`Named`] generates unless told otherwise.
const DEFAULT_TSIG_NAME: &str = "testkit-tsig";
/// Where Debian puts `named` and `tsig-keygen`, often not in a user's PATH.
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];
/// How long named gets to load its zone. It answers about 25 ms after start
/// on an idle machine; a secondary first transfers the zone; a loaded CI
/// machine building Rust on both cores is much slower.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an `nsupdate` run may take before it is killed.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Seconds `nsupdate` waits for an answer (`-t`); below [`TOOL_TIMEOUT`] so
/// nsupdate reports the failure itself.
const NSUPDATE_TIMEOUT_SECS: &str = "10";
/// How often [`Named::wait_for`] asks again.
const WAIT_FOR_INTERVAL: Duration = Duration::from_millis(50);
/// What named logs once a reload (SIGHUP) is complete.
const RELOAD_DONE: &str = "reloading configuration succeeded";
/// TTL of the records in the initial zone file; short, like a dyndns zone.
const ZONE_TTL: u32 = 60;

/// A TSIG key as named and `nsupdate -k` read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// Key name, e.g. `testkit-tsig` or `local-ddns`.
    pub name: String,
    /// Algorithm as BIND spells it; always `hmac-sha256` here.
    pub algorithm: String,
    /// The secret, standard base64 with padding.
    pub secret: String,
}

impl TsigKey {
    /// A new `hmac-sha256` key with 32 random bytes, like
    /// `tsig-keygen -a hmac-sha256 <name>` makes.
    pub fn generate(name: &str) -> Self {
        // 32 bytes = the HMAC-SHA256 output size, as tsig-keygen uses.
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        TsigKey {
            name: name.to_string(),
            algorithm: String::from("hmac-sha256"),
            secret: BASE64.encode(secret),
        }
    }

    /// The secret's bytes.
    ///
    /// # Panics
    ///
    /// If the secret is not valid base64 (only when a caller built a bad key).
    pub fn secret_bytes(&self) -> Vec<u8> {
        BASE64
            .decode(&self.secret)
            .unwrap_or_else(|e| panic!("TSIG key {} has a bad base64 secret: {e}", self.name))
    }

    /// The key as a `key "…" { … };` statement, the format of named.conf,
    /// of named's session key file and of `nsupdate -k`.
    pub fn to_conf(&self) -> String {
        format!(
            "key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
            self.name, self.algorithm, self.secret
        )
    }

    /// Parses a `key "…" { algorithm …; secret "…"; };` statement, such as
    /// named's session key file.
    pub fn parse_conf(text: &str) -> Result<Self> {
        let context = "parsing a BIND key statement";
        let quoted_after = |keyword: &str| -> Option<String> {
            let rest = &text[text.find(keyword)? + keyword.len()..];
            let rest = &rest[rest.find('"')? + 1..];
            Some(rest[..rest.find('"')?].to_string())
        };
        let name = quoted_after("key").ok_or_else(|| Error::unexpected(context, "no key name"))?;
        let secret =
            quoted_after("secret").ok_or_else(|| Error::unexpected(context, "no secret"))?;
        let algorithm = text
            .find("algorithm")
            .and_then(|at| {
                let rest = &text[at + "algorithm".len()..];
                Some(rest[..rest.find(';')?].trim().trim_matches('"').to_string())
            })
            .ok_or_else(|| Error::unexpected(context, "no algorithm"))?;
        Ok(TsigKey {
            name,
            algorithm,
            secret,
        })
    }
}

/// Whether a [`Named`] is the primary of its zone or follows another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Primary with a dynamic zone.
    Primary,
    /// Secondary of the primary listening on this port on 127.0.0.1.
    Secondary {
        /// The primary's port.
        primary_port: u16,
    },
}

/// Options for starting a [`Named`]; from [`Named::builder`].
#[derive(Debug, Clone)]
pub struct NamedBuilder {
    /// The zone to serve.
    zone: String,
    /// Name of the generated TSIG key.
    tsig_name: String,
    /// An explicit `named` binary instead of looking in PATH and /usr/sbin.
    binary: Option<PathBuf>,
}

impl Default for NamedBuilder {
    fn default() -> Self {
        NamedBuilder {
            zone: DEFAULT_ZONE.to_string(),
            tsig_name: DEFAULT_TSIG_NAME.to_string(),
            binary: None,
        }
    }
}

impl NamedBuilder {
    /// Serve `zone` (default [`DEFAULT_ZONE`]).
    pub fn zone(mut self, zone: &str) -> Self {
        self.zone = zone.trim_end_matches('.').to_string();
        self
    }

    /// Name the TSIG key `name` (default `testkit-tsig`).
    pub fn tsig_key_name(mut self, name: &str) -> Self {
        self.tsig_name = name.to_string();
        self
    }

    /// Use this `named` binary instead of looking in PATH and /usr/sbin.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Starts named as a primary and waits until it answers for the zone.
    pub fn try_start(self) -> Result<Named> {
        let binary = find_named(self.binary.as_deref())?;
        let tsig = TsigKey::generate(&self.tsig_name);
        Named::launch(binary, self.zone, tsig, Role::Primary)
    }

    /// [`try_start`](Self::try_start), panicking with the error's message.
    #[track_caller]
    pub fn start(self) -> Named {
        or_panic(self.try_start())
    }
}

/// A running BIND `named` on 127.0.0.1 and `::1`, in a temporary directory;
/// stopped (SIGTERM, then SIGKILL) and its directory removed on drop.
#[derive(Debug)]
pub struct Named {
    /// The process. Declared first so it is stopped before `dir` goes.
    daemon: Daemon,
    /// The `named` binary, kept for [`restart`](Self::restart).
    binary: PathBuf,
    /// Primary or secondary.
    role: Role,
    /// The port on both loopback addresses, UDP and TCP.
    port: u16,
    /// The zone, without a trailing dot.
    zone: String,
    /// The TSIG key the primary accepts updates with.
    tsig: TsigKey,
    /// Ports of secondaries to NOTIFY (primary only); a Mutex because
    /// [`start_secondary`](Self::start_secondary) borrows the primary shared.
    notify_ports: Mutex<Vec<u16>>,
    /// Holds named.conf, the zone, journals, session key, log.
    dir: TempDir,
}

impl Named {
    /// Options for a primary: zone, key name, binary.
    pub fn builder() -> NamedBuilder {
        NamedBuilder::default()
    }

    /// Starts a primary for [`DEFAULT_ZONE`].
    pub fn try_start() -> Result<Named> {
        Named::builder().try_start()
    }

    /// [`try_start`](Self::try_start), panicking with the error's message.
    #[track_caller]
    pub fn start() -> Named {
        or_panic(Named::try_start())
    }

    /// Starts a second named that is a secondary of `primary`'s zone: the
    /// primary is reconfigured (SIGHUP) to NOTIFY it, and it answers once it
    /// has transferred the zone. Later updates reach it by NOTIFY and IXFR.
    /// It shares the primary's TSIG key name and secret but accepts no
    /// updates itself.
    pub fn try_start_secondary(primary: &Named) -> Result<Named> {
        if let Role::Secondary { .. } = primary.role {
            return Err(Error::unexpected(
                "starting a secondary",
                "the given Named is itself a secondary; pass the primary",
            ));
        }
        let port = crate::free_port();
        primary.add_notify_target(port)?;
        Named::launch_on(
            primary.binary.clone(),
            primary.zone.clone(),
            primary.tsig.clone(),
            Role::Secondary {
                primary_port: primary.port,
            },
            port,
        )
    }

    /// [`try_start_secondary`](Self::try_start_secondary), panicking with the error's message.
    #[track_caller]
    pub fn start_secondary(primary: &Named) -> Named {
        or_panic(Named::try_start_secondary(primary))
    }

    /// Writes the config and starts named on a fresh port.
    fn launch(binary: PathBuf, zone: String, tsig: TsigKey, role: Role) -> Result<Named> {
        Named::launch_on(binary, zone, tsig, role, crate::free_port())
    }

    /// Writes the config and starts named on `port`.
    fn launch_on(
        binary: PathBuf,
        zone: String,
        tsig: TsigKey,
        role: Role,
        port: u16,
    ) -> Result<Named> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-named-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory for named", e))?;
        let d = dir.path();
        write_file(&d.join("tsig.key"), &tsig.to_conf())?;
        if role == Role::Primary {
            write_file(&d.join("primary.zone"), &initial_zone(&zone))?;
        }
        let conf = named_conf(d, port, &zone, &tsig, role, &[]);
        write_file(&d.join("named.conf"), &conf)?;
        let daemon = spawn_named(&binary, d, &zone, role)?;
        let mut named = Named {
            daemon,
            binary,
            role,
            port,
            zone,
            tsig,
            notify_ports: Mutex::new(Vec::new()),
            dir,
        };
        named.wait_ready()?;
        Ok(named)
    }

    /// Polls a SOA query until named answers authoritatively for the zone.
    fn wait_ready(&mut self) -> Result<()> {
        let addr = self.addr();
        let zone = self.zone.clone();
        self.daemon.wait_ready(READY_TIMEOUT, || {
            dns::soa_is_authoritative(addr, &zone).map(|()| true)
        })
    }

    /// Adds a secondary's port to `also-notify`, rewrites named.conf and
    /// reloads it with SIGHUP, waiting until named logs the reload.
    fn add_notify_target(&self, port: u16) -> Result<()> {
        let ports = {
            let mut ports = self
                .notify_ports
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            ports.push(port);
            ports.clone()
        };
        let conf = named_conf(
            self.dir.path(),
            self.port,
            &self.zone,
            &self.tsig,
            self.role,
            &ports,
        );
        write_file(&self.conf_path(), &conf)?;
        let log = self.daemon.log().to_path_buf();
        let reloads_before = read_file(&log)?.matches(RELOAD_DONE).count();
        self.daemon.signal(Signal::SIGHUP)?;
        let start = Instant::now();
        while start.elapsed() < READY_TIMEOUT {
            if read_file(&log)?.matches(RELOAD_DONE).count() > reloads_before {
                return Ok(());
            }
            std::thread::sleep(WAIT_FOR_INTERVAL);
        }
        Err(self.daemon.not_ready(
            start.elapsed(),
            format!("no \"{RELOAD_DONE}\" after SIGHUP (adding also-notify port {port})"),
        ))
    }

    /// Stops named and starts it again in the same directory on the same
    /// port; the zone keeps its updates (named replays its journal). named
    /// writes a new session key, so read [`session_key`](Self::session_key)
    /// again afterwards.
    pub fn try_restart(&mut self) -> Result<()> {
        self.daemon.stop();
        let ports = self
            .notify_ports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let conf = named_conf(
            self.dir.path(),
            self.port,
            &self.zone,
            &self.tsig,
            self.role,
            &ports,
        );
        write_file(&self.conf_path(), &conf)?;
        let _ = std::fs::remove_file(self.session_key_path());
        self.daemon = spawn_named(&self.binary, self.dir.path(), &self.zone, self.role)?;
        self.wait_ready()
    }

    /// [`try_restart`](Self::try_restart), panicking with the error's message.
    #[track_caller]
    pub fn restart(&mut self) {
        or_panic(self.try_restart());
    }

    /// Kills named with SIGKILL (a crash: no clean shutdown, journals as
    /// they were) and leaves it down; [`restart`](Self::restart) brings it
    /// back on the same port with its zone.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// The port named listens on (UDP and TCP, 127.0.0.1 and `::1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// named's PID.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The temporary directory with named.conf, the zone, journals and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// named.conf.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.path().join("named.conf")
    }

    /// named's log (its standard output and error; `-g` logs there).
    pub fn log_path(&self) -> &Path {
        self.daemon.log()
    }

    /// The last lines of named's log, for messages.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    /// The zone served, without a trailing dot.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Whether this is a secondary.
    pub fn is_secondary(&self) -> bool {
        matches!(self.role, Role::Secondary { .. })
    }

    /// The session key file named writes (`session-keyfile`), holding key
    /// `local-ddns`; what `nsupdate -l -k` and the `bind-local` backend read.
    pub fn session_key_path(&self) -> PathBuf {
        self.dir.path().join("session.key")
    }

    /// The session key, read from [`session_key_path`](Self::session_key_path)
    /// now (named makes a new one at every start).
    pub fn try_session_key(&self) -> Result<TsigKey> {
        TsigKey::parse_conf(&read_file(&self.session_key_path())?)
    }

    /// [`try_session_key`](Self::try_session_key), panicking with the error's message.
    #[track_caller]
    pub fn session_key(&self) -> TsigKey {
        or_panic(self.try_session_key())
    }

    /// The TSIG key the zone accepts updates with (`rfc2136` backend).
    pub fn tsig_key(&self) -> &TsigKey {
        &self.tsig
    }

    /// The TSIG key as a `key` statement file, for `nsupdate -k`.
    pub fn tsig_key_path(&self) -> PathBuf {
        self.dir.path().join("tsig.key")
    }

    /// Runs `dig @127.0.0.1 -p <port> +short +norecurse <name> <rtype>` and
    /// returns its non-empty output lines (empty for NXDOMAIN or no records);
    /// [`crate::dig`] asks with other options.
    pub fn try_dig(&self, name: &str, rtype: &str) -> Result<Vec<String>> {
        crate::dig(self.addr(), name, rtype).norecurse().try_short()
    }

    /// [`try_dig`](Self::try_dig), panicking with the error's message.
    #[track_caller]
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        or_panic(self.try_dig(name, rtype))
    }

    /// Polls [`try_dig`](Self::try_dig) until its answer is exactly
    /// `expected` (in any order), e.g. on a secondary after an update on the
    /// primary. Fails after `timeout` with the last answer.
    pub fn try_wait_for(
        &self,
        name: &str,
        rtype: &str,
        expected: &[&str],
        timeout: Duration,
    ) -> Result<()> {
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        let start = Instant::now();
        loop {
            let mut got = self.try_dig(name, rtype)?;
            got.sort();
            if got == want {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(Error::unexpected(
                    format!(
                        "waiting {timeout:?} for {name} {rtype} = {want:?} at named port {}",
                        self.port
                    ),
                    format!(
                        "last answer {got:?}\n--- last lines of named's log ---\n{}",
                        self.log_tail()
                    ),
                ));
            }
            std::thread::sleep(WAIT_FOR_INTERVAL);
        }
    }

    /// [`try_wait_for`](Self::try_wait_for), panicking with the error's message.
    #[track_caller]
    pub fn wait_for(&self, name: &str, rtype: &str, expected: &[&str], timeout: Duration) {
        or_panic(self.try_wait_for(name, rtype, expected, timeout));
    }

    /// Runs `nsupdate -l -p <port> -k <session key>` with `script` on its
    /// standard input (the same path as the seed's `nsupdate -l`). The
    /// script has no `server` line and should end with `send`, e.g.
    /// `"update add pi.peach.dinosaur.is 60 A 192.0.2.1\nsend\n"`.
    pub fn try_nsupdate_local(&self, script: &str) -> Result<()> {
        let mut cmd = Command::new(find_nsupdate()?);
        cmd.arg("-l")
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.session_key_path())
            .args(["-t", NSUPDATE_TIMEOUT_SECS]);
        process::run(cmd, Some(script), TOOL_TIMEOUT).map(drop)
    }

    /// [`try_nsupdate_local`](Self::try_nsupdate_local), panicking with the error's message.
    #[track_caller]
    pub fn nsupdate_local(&self, script: &str) {
        or_panic(self.try_nsupdate_local(script));
    }

    /// Runs `nsupdate -k <tsig key file>` with `server 127.0.0.1 <port>`
    /// followed by `script` on its standard input. The script should end
    /// with `send`.
    pub fn try_nsupdate_tsig(&self, script: &str) -> Result<()> {
        let mut cmd = Command::new(find_nsupdate()?);
        cmd.arg("-k")
            .arg(self.tsig_key_path())
            .args(["-t", NSUPDATE_TIMEOUT_SECS]);
        let input = format!("server 127.0.0.1 {}\n{script}", self.port);
        process::run(cmd, Some(&input), TOOL_TIMEOUT).map(drop)
    }

    /// [`try_nsupdate_tsig`](Self::try_nsupdate_tsig), panicking with the error's message.
    #[track_caller]
    pub fn nsupdate_tsig(&self, script: &str) {
        or_panic(self.try_nsupdate_tsig(script));
    }
}

/// Finds `named`: `explicit`, else PATH, else the sbin directories.
fn find_named(explicit: Option<&Path>) -> Result<PathBuf> {
    find_program(
        "BIND 9 `named` (Debian package bind9)",
        "named",
        explicit,
        SBIN_DIRS,
    )
}

/// Finds `nsupdate`.
fn find_nsupdate() -> Result<PathBuf> {
    find_program(
        "`nsupdate` (Debian package bind9-dnsutils)",
        "nsupdate",
        None,
        &[],
    )
}

/// Starts `named -g -c <dir>/named.conf` with its output in `<dir>/named.log`.
/// `-g` keeps it in the foreground and logs to standard error (it ignores
/// any `logging` block); as root it needs no `-u`.
fn spawn_named(binary: &Path, dir: &Path, zone: &str, role: Role) -> Result<Daemon> {
    let mut cmd = Command::new(binary);
    cmd.arg("-g").arg("-c").arg(dir.join("named.conf"));
    cmd.current_dir(dir);
    let what = match role {
        Role::Primary => format!("named (primary for {zone})"),
        Role::Secondary { primary_port } => {
            format!("named (secondary for {zone} from port {primary_port})")
        }
    };
    Daemon::spawn(cmd, what, &dir.join("named.log"))
}

/// The zone file a primary starts with: SOA, NS and the name server's A.
fn initial_zone(zone: &str) -> String {
    format!(
        "$TTL {ZONE_TTL}\n\
         @\tIN\tSOA\tns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 {ZONE_TTL}\n\
         @\tIN\tNS\tns1.{zone}.\n\
         ns1\tIN\tA\t127.0.0.1\n"
    )
}

/// named.conf for one zone. `notify_ports` are the secondaries' ports on
/// 127.0.0.1 (primary only).
fn named_conf(
    dir: &Path,
    port: u16,
    zone: &str,
    tsig: &TsigKey,
    role: Role,
    notify_ports: &[u16],
) -> String {
    let d = dir.display();
    let mut conf = format!(
        "// Written by testkit; named -g -c {d}/named.conf\n\
         options {{\n\
         \tdirectory \"{d}\";\n\
         \tpid-file \"{d}/named.pid\";\n\
         \t// Per instance, so several named can run side by side.\n\
         \tlock-file \"{d}/named.lock\";\n\
         \tsession-keyfile \"{d}/session.key\";\n\
         \tlisten-on port {port} {{ 127.0.0.1; }};\n\
         \t// nsupdate -l tries ::1 first; without it the fallback sends FORMERR.\n\
         \tlisten-on-v6 port {port} {{ ::1; }};\n\
         \trecursion no;\n\
         \tdnssec-validation no;\n\
         \tallow-query {{ localhost; }};\n\
         \t// Only the secondaries we name, never the NS targets on port 53.\n\
         \tnotify explicit;\n\
         \t// Tell secondaries at once, not 5 s later (the default delay).\n\
         \tnotify-delay 0;\n\
         }};\n\
         // No rndc: tests stop named by PID.\n\
         controls {{ }};\n\
         {key}",
        key = tsig.to_conf(),
    );
    match role {
        Role::Primary => {
            let _ = write!(
                conf,
                "zone \"{zone}\" {{\n\
                 \ttype primary;\n\
                 \tfile \"{d}/primary.zone\";\n\
                 \t// local-ddns: what `update-policy local;` grants, spelled out so\n\
                 \t// that the TSIG key can be granted too.\n\
                 \tupdate-policy {{\n\
                 \t\tgrant local-ddns zonesub any;\n\
                 \t\tgrant \"{tsig}\" zonesub any;\n\
                 \t}};\n\
                 \tallow-transfer {{ 127.0.0.1; ::1; }};\n\
                 \t// Serve IXFR even when the delta outweighs this tiny zone\n\
                 \t// (by default named falls back to AXFR then).\n\
                 \tmax-ixfr-ratio unlimited;\n",
                tsig = tsig.name,
            );
            if !notify_ports.is_empty() {
                conf.push_str("\talso-notify {");
                for p in notify_ports {
                    let _ = write!(conf, " 127.0.0.1 port {p};");
                }
                conf.push_str(" };\n");
            }
            conf.push_str("};\n");
        }
        Role::Secondary { primary_port } => {
            let _ = write!(
                conf,
                "zone \"{zone}\" {{\n\
                 \ttype secondary;\n\
                 \tfile \"{d}/secondary.zone\";\n\
                 \tprimaries {{ 127.0.0.1 port {primary_port}; }};\n\
                 }};\n"
            );
        }
    }
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsig_key_round_trips_through_conf() {
        let key = TsigKey::generate("k1");
        assert_eq!(key.secret_bytes().len(), 32);
        assert_eq!(TsigKey::parse_conf(&key.to_conf()).expect("parse"), key);
    }

    #[test]
    fn parses_named_session_key_file() {
        let text = "key \"local-ddns\" {\n\talgorithm hmac-sha256;\n\tsecret \"kO8WzVzC0fxcnW5u1vHz5siP59D5OIIVIMrJ/EyjG8s=\";\n};\n";
        let key = TsigKey::parse_conf(text).expect("parse");
        assert_eq!(key.name, "local-ddns");
        assert_eq!(key.algorithm, "hmac-sha256");
        assert_eq!(key.secret_bytes().len(), 32);
    }
}
