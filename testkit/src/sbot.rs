//! ssb-server 16.0.1 (npm, pinned in `testkit/ssb/`) on 127.0.0.1 with its
//! own HOME and app name, and helpers that drive it through its own command
//! line (`ssb-server <method> …`, which talks to the running server over its
//! unix socket and needs the `manifest.json` the server writes at start).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tempfile::TempDir;

use crate::error::{or_panic, Error, Result};
use crate::process::{self, find_program, read_file, write_file, Daemon};

/// Environment variable that points the harness at another `ssb-server`.
const SSB_SERVER_ENV: &str = "PEACH_SSB_SERVER";
/// How long ssb-server gets to come up. Under a second on an idle machine;
/// node loading 650 packages on a CI machine busy compiling takes longer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one CLI call may take; a call spawns node (about 0.3 s).
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a `whoami` probe may take while waiting for readiness.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Numbers the app names of sbots started by this process.
static NEXT_APP: AtomicUsize = AtomicUsize::new(0);

/// Options for starting an [`Sbot`]; from [`Sbot::builder`].
#[derive(Debug, Clone, Default)]
pub struct SbotBuilder {
    /// An explicit ssb-server instead of `PEACH_SSB_SERVER` or the npm tree.
    binary: Option<PathBuf>,
    /// Sets `allowPrivate`, which `invite.create` needs for a loopback invite.
    allow_private: bool,
    /// Extra top-level config keys, replacing the defaults of the same name.
    config: Map<String, Value>,
}

impl SbotBuilder {
    /// Use this `ssb-server` (instead of `PEACH_SSB_SERVER` or
    /// `testkit/ssb/node_modules/.bin/ssb-server`).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Set `"allowPrivate": true`, so `invite.create` hands out invites for
    /// 127.0.0.1 (a pub in tests).
    pub fn allow_private(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    /// Set a top-level config key, e.g. `"gossip"`, replacing the default.
    pub fn config(mut self, key: &str, value: Value) -> Self {
        self.config.insert(key.to_string(), value);
        self
    }

    /// Starts ssb-server and waits until it answers `whoami`.
    pub fn try_start(self) -> Result<Sbot> {
        let binary = find_ssb_server(self.binary.as_deref())?;
        find_program(
            "Node.js `node` (ssb-server runs on it; Debian package nodejs)",
            "node",
            None,
            &[],
        )?;
        let home = tempfile::Builder::new()
            .prefix("testkit-sbot-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary HOME for ssb-server", e))?;
        let appname = format!(
            "testkit-{}-{}",
            std::process::id(),
            NEXT_APP.fetch_add(1, Ordering::Relaxed)
        );
        let port = crate::free_port();
        let config_dir = home.path().join(format!(".{appname}"));
        std::fs::create_dir_all(&config_dir)
            .map_err(|e| Error::io(format!("creating {}", config_dir.display()), e))?;
        let config = sbot_config(port, self.allow_private, self.config);
        write_file(&config_dir.join("config"), &format!("{config:#}\n"))?;
        let log = home.path().join("ssb-server.log");
        let daemon = spawn_sbot(&binary, home.path(), &appname, &log)?;
        let mut sbot = Sbot {
            daemon,
            binary,
            port,
            appname,
            id: String::new(),
            secret: Value::Null,
            home,
        };
        sbot.wait_ready()?;
        sbot.secret = parse_secret(&read_file(&sbot.secret_path())?).map_err(|detail| {
            Error::unexpected(format!("reading {}", sbot.secret_path().display()), detail)
        })?;
        sbot.id = sbot.secret["id"].as_str().unwrap_or_default().to_string();
        let whoami = sbot.try_whoami()?;
        if whoami != sbot.id {
            return Err(Error::unexpected(
                "checking ssb-server's identity",
                format!(
                    "whoami says {whoami} but {} holds {}",
                    sbot.secret_path().display(),
                    sbot.id
                ),
            ));
        }
        Ok(sbot)
    }

    /// [`try_start`](Self::try_start), panicking with the error's message.
    #[track_caller]
    pub fn start(self) -> Sbot {
        or_panic(self.try_start())
    }
}

/// A running ssb-server on 127.0.0.1 with the default network key, in a
/// temporary HOME; stopped (SIGTERM to its process group, then SIGKILL) and
/// its HOME removed on drop.
#[derive(Debug)]
pub struct Sbot {
    /// The node process. Declared first so it is stopped before `home` goes.
    daemon: Daemon,
    /// The `ssb-server` script, for the CLI helpers and restarts.
    binary: PathBuf,
    /// The shs (secret handshake) TCP port on 127.0.0.1.
    port: u16,
    /// `ssb_appname`: the config directory is `<home>/.<appname>`.
    appname: String,
    /// The feed ID, `@<base64>.ed25519`, from the secret file.
    id: String,
    /// The secret file's JSON (`curve`, `public`, `private`, `id`).
    secret: Value,
    /// The temporary HOME.
    home: TempDir,
}

impl Sbot {
    /// Options: binary, `allowPrivate`, other config keys.
    pub fn builder() -> SbotBuilder {
        SbotBuilder::default()
    }

    /// Starts an sbot with the default options.
    pub fn try_start() -> Result<Sbot> {
        Sbot::builder().try_start()
    }

    /// [`try_start`](Self::try_start), panicking with the error's message.
    #[track_caller]
    pub fn start() -> Sbot {
        or_panic(Sbot::try_start())
    }

    /// Polls until `manifest.json` exists and `whoami` answers.
    fn wait_ready(&mut self) -> Result<()> {
        let manifest = self.config_dir().join("manifest.json");
        let mut probe = self.cli_command(&["whoami"]);
        self.daemon.wait_ready(READY_TIMEOUT, || {
            if !manifest.exists() {
                return Err(format!("{} not written yet", manifest.display()));
            }
            match process::run_unchecked(&mut probe, None, PROBE_TIMEOUT) {
                Ok(out) if out.status.success() => Ok(true),
                Ok(out) => Err(format!(
                    "`ssb-server whoami` failed ({}): {}",
                    out.status,
                    out.stderr.trim()
                )),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    /// Stops ssb-server and starts it again with the same HOME, app name,
    /// port and identity.
    pub fn try_restart(&mut self) -> Result<()> {
        self.daemon.stop();
        // A stale manifest would make the readiness probe pass too early.
        let _ = std::fs::remove_file(self.config_dir().join("manifest.json"));
        let log = self.daemon.log().to_path_buf();
        self.daemon = spawn_sbot(&self.binary, self.home.path(), &self.appname, &log)?;
        self.wait_ready()
    }

    /// [`try_restart`](Self::try_restart), panicking with the error's message.
    #[track_caller]
    pub fn restart(&mut self) {
        or_panic(self.try_restart());
    }

    /// Kills ssb-server with SIGKILL (a crash) and leaves it down;
    /// [`restart`](Self::restart) brings it back with the same identity,
    /// port and feed.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// The shs TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The multiserver address, `net:127.0.0.1:<port>~shs:<public key>`.
    pub fn address(&self) -> String {
        let key = self.id.trim_start_matches('@').trim_end_matches(".ed25519");
        format!("net:127.0.0.1:{}~shs:{key}", self.port)
    }

    /// node's PID (also its process group ID).
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The temporary HOME.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The app name (`ssb_appname`), unique per sbot.
    pub fn appname(&self) -> &str {
        &self.appname
    }

    /// The config directory, `<home>/.<appname>` (config, secret, flume log).
    pub fn config_dir(&self) -> PathBuf {
        self.home.path().join(format!(".{}", self.appname))
    }

    /// The secret file (`#` comment lines around JSON, mode 0400).
    pub fn secret_path(&self) -> PathBuf {
        self.config_dir().join("secret")
    }

    /// The secret file's JSON: `curve`, `public`, `private` (base64 of
    /// seed‖public + `.ed25519`), `id`. Enough to act as this sbot.
    pub fn secret(&self) -> &Value {
        &self.secret
    }

    /// The feed ID, `@<base64>.ed25519`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// ssb-server's log (its standard output and error).
    pub fn log_path(&self) -> &Path {
        self.daemon.log()
    }

    /// The last lines of ssb-server's log, for messages.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    /// `ssb-server <args…>` with this sbot's HOME and app name.
    fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.env("HOME", self.home.path())
            .env("ssb_appname", &self.appname)
            .current_dir(self.home.path())
            .args(args);
        cmd
    }

    /// Runs `ssb-server <args…>` against this sbot, with `stdin` on its
    /// standard input, and returns its standard output. On failure the error
    /// carries the command's output and the tail of the server's log.
    pub fn try_cli(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let cmd = self.cli_command(args);
        match process::run(cmd, stdin, CLI_TIMEOUT) {
            Ok(out) => Ok(out.stdout),
            Err(Error::Command {
                command,
                status,
                stdout,
                stderr,
            }) => Err(Error::Command {
                command,
                status,
                stdout,
                stderr: format!(
                    "{stderr}\n--- last lines of {} ---\n{}",
                    self.log_path().display(),
                    self.log_tail()
                ),
            }),
            Err(e) => Err(e),
        }
    }

    /// [`try_cli`](Self::try_cli), panicking with the error's message.
    #[track_caller]
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        or_panic(self.try_cli(args, stdin))
    }

    /// Runs a CLI call that answers one JSON value and parses it.
    pub fn try_cli_json(&self, args: &[&str], stdin: Option<&str>) -> Result<Value> {
        let out = self.try_cli(args, stdin)?;
        serde_json::from_str(&out).map_err(|e| {
            Error::unexpected(
                format!("parsing the output of `ssb-server {}`", args.join(" ")),
                format!("{e}: {out}"),
            )
        })
    }

    /// Runs a CLI call that answers a stream (a source, e.g.
    /// `messagesByType`): JSON values one after another.
    pub fn try_cli_stream(&self, args: &[&str]) -> Result<Vec<Value>> {
        let out = self.try_cli(args, None)?;
        serde_json::Deserializer::from_str(&out)
            .into_iter::<Value>()
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::unexpected(
                    format!("parsing the output of `ssb-server {}`", args.join(" ")),
                    format!("{e}: {out}"),
                )
            })
    }

    /// `ssb-server whoami`: the feed ID the running server reports.
    pub fn try_whoami(&self) -> Result<String> {
        let answer = self.try_cli_json(&["whoami"], None)?;
        answer["id"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| Error::unexpected("`ssb-server whoami`", format!("no id in {answer}")))
    }

    /// [`try_whoami`](Self::try_whoami), panicking with the error's message.
    #[track_caller]
    pub fn whoami(&self) -> String {
        or_panic(self.try_whoami())
    }

    /// Publishes `content` (a JSON object with a `type` of 3 to 52
    /// characters) as this sbot and returns the stored message
    /// (`{"key", "value": {…, "content"}, "timestamp"}`). The content goes
    /// in on standard input (`ssb-server publish .`), so strings that look
    /// like numbers stay strings.
    pub fn try_publish(&self, content: Value) -> Result<Value> {
        self.try_cli_json(&["publish", "."], Some(&content.to_string()))
    }

    /// [`try_publish`](Self::try_publish), panicking with the error's message.
    #[track_caller]
    pub fn publish(&self, content: Value) -> Value {
        or_panic(self.try_publish(content))
    }

    /// Publishes a `contact` message following `id`.
    #[track_caller]
    pub fn follow(&self, id: &str) -> Value {
        self.publish(json!({"type": "contact", "contact": id, "following": true}))
    }

    /// Publishes a `contact` message that stops following `id`.
    #[track_caller]
    pub fn unfollow(&self, id: &str) -> Value {
        self.publish(json!({"type": "contact", "contact": id, "following": false}))
    }

    /// Publishes a `contact` message blocking `id` (and not following it).
    #[track_caller]
    pub fn block(&self, id: &str) -> Value {
        self.publish(json!({
            "type": "contact", "contact": id, "following": false, "blocking": true
        }))
    }

    /// `friends.isFollowing --source <src> --dest <dest>`, as this sbot
    /// sees the graph.
    #[track_caller]
    pub fn is_following(&self, src: &str, dest: &str) -> bool {
        self.graph_bool("friends.isFollowing", src, dest)
    }

    /// `friends.isBlocking --source <src> --dest <dest>`.
    #[track_caller]
    pub fn is_blocking(&self, src: &str, dest: &str) -> bool {
        self.graph_bool("friends.isBlocking", src, dest)
    }

    /// A friends call with `--source`/`--dest` that answers a boolean.
    #[track_caller]
    fn graph_bool(&self, method: &str, src: &str, dest: &str) -> bool {
        let answer = or_panic(self.try_cli_json(&[method, "--source", src, "--dest", dest], None));
        answer.as_bool().unwrap_or_else(|| {
            panic!("testkit: `ssb-server {method}` answered {answer}, not a boolean")
        })
    }

    /// `invite.create <uses>`: an invite code such as
    /// `127.0.0.1:<port>:@<id>~<seed>` (needs
    /// [`SbotBuilder::allow_private`] for a loopback address).
    #[track_caller]
    pub fn invite_create(&self, uses: u32) -> String {
        let answer = or_panic(self.try_cli_json(&["invite.create", &uses.to_string()], None));
        answer
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| panic!("testkit: `ssb-server invite.create` answered {answer}"))
    }

    /// `messagesByType --type <t>`: every message of that type in this
    /// sbot's database, oldest first.
    #[track_caller]
    pub fn messages_by_type(&self, message_type: &str) -> Vec<Value> {
        or_panic(self.try_cli_stream(&["messagesByType", "--type", message_type]))
    }
}

/// Finds ssb-server: `explicit`, else `$PEACH_SSB_SERVER`, else the npm tree
/// in `testkit/ssb/node_modules`.
fn find_ssb_server(explicit: Option<&Path>) -> Result<PathBuf> {
    let what = "ssb-server (npm, pinned in testkit/ssb; `npm ci` there installs it)";
    if let Some(path) = explicit {
        return find_program(what, "ssb-server", Some(path), &[]);
    }
    if let Some(path) = std::env::var_os(SSB_SERVER_ENV) {
        return find_program(what, "ssb-server", Some(Path::new(&path)), &[]).map_err(|e| {
            Error::Missing {
                what: what.to_string(),
                detail: format!("{SSB_SERVER_ENV}={}: {e}", PathBuf::from(&path).display()),
            }
        });
    }
    find_program(what, "ssb-server", Some(&npm_ssb_server()), &[])
}

/// testkit's npm ssb-server. Found from the package under test at run
/// time (cargo sets `CARGO_MANIFEST_DIR` to it, a sibling of `testkit/`),
/// because the path compiled in may be of another clone that shared the
/// build cache and is gone; the compiled-in path is the fallback.
fn npm_ssb_server() -> PathBuf {
    const REL: &str = "ssb/node_modules/.bin/ssb-server";
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        let dir = Path::new(&dir);
        for candidate in [dir.join("../testkit").join(REL), dir.join(REL)] {
            if candidate.exists() {
                return candidate;
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(REL)
}

/// Starts `ssb-server start` with `HOME` and `ssb_appname` set.
fn spawn_sbot(binary: &Path, home: &Path, appname: &str, log: &Path) -> Result<Daemon> {
    let mut cmd = Command::new(binary);
    cmd.arg("start")
        .env("HOME", home)
        .env("ssb_appname", appname)
        .current_dir(home);
    Daemon::spawn(cmd, format!("ssb-server ({appname})"), log)
}

/// The config: shs on 127.0.0.1:`port` only, the CLI over a unix socket
/// without auth, no LAN broadcast and no gossip to pubs.
fn sbot_config(port: u16, allow_private: bool, extra: Map<String, Value>) -> Value {
    let mut config = json!({
        "connections": {
            "incoming": {
                "net": [{"scope": ["device", "local"], "host": "127.0.0.1", "port": port, "transform": "shs"}],
                "unix": [{"scope": ["device", "local"], "transform": "noauth"}]
            },
            "outgoing": {"net": [{"transform": "shs"}]}
        },
        // local: false turns off LAN broadcast; nothing leaves loopback.
        "gossip": {"local": false, "connections": 0, "pub": false}
    });
    if allow_private {
        config["allowPrivate"] = Value::Bool(true);
    }
    if let Value::Object(map) = &mut config {
        map.extend(extra);
    }
    config
}

/// The JSON inside a secret file: the lines that are not `#` comments.
fn parse_secret(text: &str) -> std::result::Result<Value, String> {
    let json: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let value: Value = serde_json::from_str(&json).map_err(|e| format!("not JSON: {e}"))?;
    match value["id"].as_str() {
        Some(id) if id.starts_with('@') && id.ends_with(".ed25519") => Ok(value),
        _ => Err(format!("no @….ed25519 id in {value}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_secret_with_comments() {
        let text = "# this is your SECRET name.\n# comment\n{\n  \"curve\": \"ed25519\",\n  \"id\": \"@abc=.ed25519\"\n}\n\n# WARNING\n";
        let secret = parse_secret(text).expect("parse");
        assert_eq!(secret["id"], "@abc=.ed25519");
    }

    #[test]
    fn config_keeps_to_loopback() {
        let config = sbot_config(1234, true, Map::new());
        assert_eq!(
            config["connections"]["incoming"]["net"][0]["host"],
            "127.0.0.1"
        );
        assert_eq!(config["gossip"]["local"], false);
        assert_eq!(config["allowPrivate"], true);
    }
}
