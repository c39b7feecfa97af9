//! The files a test gives the two binaries: small builders for the text of
//! the pub's server config ([`ServerConfig`]) and the Pi's daemon config
//! ([`DaemonConfig`]), and the 0600 secret file both name
//! ([`write_secret`]). testkit does not depend on the
//! crates it tests, so these build TOML text, which each test then hands to
//! the real `Config::from_str` or `load`, the path an operator's file takes.
//!
//! Each builder holds a key only when a test sets it, in the order the
//! crates' example configs use; `top` and `table` take raw TOML for what a
//! single test needs and no other does.

use std::fmt::Display;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::{or_panic, Error, Result};

/// The mode of a secret file: the binaries refuse one that others can read.
const SECRET_MODE: u32 = 0o600;

/// `value` as a TOML basic string: quoted, with `\` and `"` escaped (paths
/// and ids in tests hold neither, but a string is a string).
pub fn toml_string(value: impl Display) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `values` as a TOML array of strings, e.g. `["a", "b"]`.
fn toml_array<T: Display>(values: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = values.into_iter().map(toml_string).collect();
    format!("[{}]", items.join(", "))
}

/// Writes `contents` to `path` with mode 0600 (also when the file was
/// there before) and returns the path: an SSB secret as both binaries
/// accept it.
pub fn try_write_secret(path: &Path, contents: &str) -> Result<PathBuf> {
    let context = || format!("writing the secret file {}", path.display());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(SECRET_MODE)
        .open(path)
        .map_err(|e| Error::io(context(), e))?;
    // The mode above applies to a new file only.
    fs::set_permissions(path, fs::Permissions::from_mode(SECRET_MODE))
        .map_err(|e| Error::io(context(), e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| Error::io(context(), e))?;
    Ok(path.to_path_buf())
}

/// [`try_write_secret`], panicking with the error's message.
#[track_caller]
pub fn write_secret(path: &Path, contents: &str) -> PathBuf {
    or_panic(try_write_secret(path, contents))
}

/// One `key = value` line, the value already TOML.
type Line = (String, String);

/// Lines as TOML text, each ending in a newline.
fn push_lines(out: &mut String, lines: &[Line]) {
    for (key, value) in lines {
        out.push_str(key);
        out.push_str(" = ");
        out.push_str(value);
        out.push('\n');
    }
}

/// Raw TOML as given, with a newline after it unless it is empty.
fn push_raw(out: &mut String, raw: &str) {
    if !raw.is_empty() {
        out.push_str(raw);
        if !raw.ends_with('\n') {
            out.push('\n');
        }
    }
}

/// The text of a peach-dyndns-server config (`server.toml`).
///
/// ```
/// let text = testkit::ServerConfig::new("peach.dinosaur.is")
///     .listen("127.0.0.1:0")
///     .secret("/tmp/secret")
///     .dns_embedded("127.0.0.1:0")
///     .graph_allowlist(["@a.ed25519"])
///     .to_toml();
/// assert!(text.starts_with("domain = \"peach.dinosaur.is\"\nlisten = \"127.0.0.1:0\"\n"));
/// assert!(text.contains("[graph]\nbackend = \"allowlist\"\nallow = [\"@a.ed25519\"]\n"));
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until to_toml()"]
pub struct ServerConfig {
    /// Top-level keys, in order (`domain` first).
    top: Vec<Line>,
    /// Raw top-level TOML after the keys.
    top_raw: Vec<String>,
    /// The `[dns]` table's body, when set.
    dns: Option<String>,
    /// The `[graph]` table's body, when set.
    graph: Option<String>,
    /// Raw tables after `[dns]` and `[graph]`.
    tables: Vec<String>,
}

impl ServerConfig {
    /// A config for `domain`, nothing else set.
    pub fn new(domain: &str) -> Self {
        ServerConfig::default().key("domain", toml_string(domain))
    }

    /// A top-level key with a value that is already TOML.
    fn key(mut self, key: &str, value: String) -> Self {
        self.top.push((key.to_string(), value));
        self
    }

    /// `listen`: the HTTP address.
    pub fn listen(self, addr: impl Display) -> Self {
        self.key("listen", toml_string(addr))
    }

    /// `secret`: the pub's SSB secret file.
    pub fn secret(self, path: impl AsRef<Path>) -> Self {
        self.key("secret", toml_string(path.as_ref().display()))
    }

    /// `database`: the registry file.
    pub fn database(self, path: impl AsRef<Path>) -> Self {
        self.key("database", toml_string(path.as_ref().display()))
    }

    /// `allow_private_addresses`: tests use loopback and documentation
    /// addresses.
    pub fn allow_private_addresses(self, allow: bool) -> Self {
        self.key("allow_private_addresses", allow.to_string())
    }

    /// Raw top-level TOML (keys only, no tables), after the keys above.
    pub fn top(mut self, raw: &str) -> Self {
        self.top_raw.push(raw.to_string());
        self
    }

    /// `[dns]` with the embedded server on `listen`.
    pub fn dns_embedded(self, listen: impl Display) -> Self {
        self.dns(&format!(
            "backend = \"embedded\"\nlisten = {}",
            toml_string(listen)
        ))
    }

    /// `[dns]` with this body (raw TOML, without the header).
    pub fn dns(mut self, body: &str) -> Self {
        self.dns = Some(body.to_string());
        self
    }

    /// `[graph]` with the allowlist backend letting `ids` update.
    pub fn graph_allowlist<T: Display>(self, ids: impl IntoIterator<Item = T>) -> Self {
        self.graph(&format!(
            "backend = \"allowlist\"\nallow = {}",
            toml_array(ids)
        ))
    }

    /// `[graph]` with this body (raw TOML, without the header).
    pub fn graph(mut self, body: &str) -> Self {
        self.graph = Some(body.to_string());
        self
    }

    /// Raw TOML tables (with their headers), after `[dns]` and `[graph]`.
    pub fn table(mut self, raw: &str) -> Self {
        self.tables.push(raw.to_string());
        self
    }

    /// The config text.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        push_lines(&mut out, &self.top);
        for raw in &self.top_raw {
            push_raw(&mut out, raw);
        }
        for (header, body) in [("[dns]", &self.dns), ("[graph]", &self.graph)] {
            if let Some(body) = body {
                out.push_str(header);
                out.push('\n');
                push_raw(&mut out, body);
            }
        }
        for raw in &self.tables {
            push_raw(&mut out, raw);
        }
        out
    }
}

/// The text of a peach-dyndns-daemon config (`daemon.toml`), table by
/// table: top level, `[registration]`, `[ip]`, `[dns]`, `[rpc]`, `[sbot]`.
/// A table with nothing set is left out.
///
/// ```
/// let text = testkit::DaemonConfig::new()
///     .secret_path("/tmp/secret")
///     .registration_name("eb4890")
///     .dns_server("127.0.0.1:5300")
///     .sbot_enabled(false)
///     .to_toml();
/// assert_eq!(
///     text,
///     "secret_path = \"/tmp/secret\"\n[registration]\nname = \"eb4890\"\n\
///      [dns]\nserver = \"127.0.0.1:5300\"\n[sbot]\nenabled = false\n"
/// );
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until to_toml()"]
pub struct DaemonConfig {
    /// Top-level keys, in order.
    top: Vec<Line>,
    /// Raw top-level TOML after the keys.
    top_raw: Vec<String>,
    /// `[registration]`.
    registration: Vec<Line>,
    /// Raw TOML at the end of `[registration]`.
    registration_raw: Vec<String>,
    /// `[ip]`.
    ip: Vec<Line>,
    /// Raw TOML at the end of `[ip]`.
    ip_raw: Vec<String>,
    /// `[dns]`.
    dns: Vec<Line>,
    /// `[rpc]`.
    rpc: Vec<Line>,
    /// `[sbot]`.
    sbot: Vec<Line>,
}

impl DaemonConfig {
    /// An empty config.
    pub fn new() -> Self {
        DaemonConfig::default()
    }

    /// `secret_path`: the Pi's SSB secret file.
    pub fn secret_path(mut self, path: impl AsRef<Path>) -> Self {
        let value = toml_string(path.as_ref().display());
        self.top.push(("secret_path".into(), value));
        self
    }

    /// `state_path`: where the daemon keeps its seqs and last status.
    pub fn state_path(mut self, path: impl AsRef<Path>) -> Self {
        let value = toml_string(path.as_ref().display());
        self.top.push(("state_path".into(), value));
        self
    }

    /// Timers for tests on real time: a check every second, backoff 1–2 s,
    /// HTTP requests given 2 s.
    pub fn fast_timers(mut self) -> Self {
        for (key, secs) in [
            ("check_interval_secs", 1),
            ("backoff_min_secs", 1),
            ("backoff_max_secs", 2),
            ("http_timeout_secs", 2),
        ] {
            self.top.push((key.into(), secs.to_string()));
        }
        self
    }

    /// Raw top-level TOML (keys only), after the keys above.
    pub fn top(mut self, raw: &str) -> Self {
        self.top_raw.push(raw.to_string());
        self
    }

    /// `[registration] name`: the subdomain.
    pub fn registration_name(mut self, name: &str) -> Self {
        self.registration.push(("name".into(), toml_string(name)));
        self
    }

    /// `[registration] pub_id`, `url` and `domain`: a pub configured
    /// completely, so no sbot is needed to find it.
    ///
    /// The tests' pubs are on loopback, which a pub URL may only point at
    /// with `[sbot] allow_private_pub_urls`: that is set too.
    pub fn static_pub(mut self, pub_id: &str, url: &str, domain: &str) -> Self {
        self.registration
            .push(("pub_id".into(), toml_string(pub_id)));
        self.registration.push(("url".into(), toml_string(url)));
        self.registration
            .push(("domain".into(), toml_string(domain)));
        self.allow_private_pub_urls(true)
    }

    /// `[registration] pub_id` alone: the rest comes from the pub's
    /// announcement in the local sbot.
    pub fn pub_id(mut self, pub_id: &str) -> Self {
        self.registration
            .push(("pub_id".into(), toml_string(pub_id)));
        self
    }

    /// Raw TOML at the end of `[registration]`.
    pub fn registration(mut self, raw: &str) -> Self {
        self.registration_raw.push(raw.to_string());
        self
    }

    /// `[ip] allow_private_addresses`.
    pub fn allow_private_addresses(mut self, allow: bool) -> Self {
        self.ip
            .push(("allow_private_addresses".into(), allow.to_string()));
        self
    }

    /// `[ip] echo_urls`.
    pub fn echo_urls<T: Display>(mut self, urls: impl IntoIterator<Item = T>) -> Self {
        self.ip.push(("echo_urls".into(), toml_array(urls)));
        self
    }

    /// Raw TOML at the end of `[ip]`.
    pub fn ip(mut self, raw: &str) -> Self {
        self.ip_raw.push(raw.to_string());
        self
    }

    /// `[dns] server`: where the daemon checks its name.
    pub fn dns_server(mut self, addr: impl Display) -> Self {
        self.dns.push(("server".into(), toml_string(addr)));
        self
    }

    /// `[dns] timeout_secs`.
    pub fn dns_timeout_secs(mut self, secs: u64) -> Self {
        self.dns.push(("timeout_secs".into(), secs.to_string()));
        self
    }

    /// `[rpc] listen`: the JSON-RPC and panel address.
    pub fn rpc_listen(mut self, addr: impl Display) -> Self {
        self.rpc.push(("listen".into(), toml_string(addr)));
        self
    }

    /// `[sbot] enabled`.
    pub fn sbot_enabled(mut self, enabled: bool) -> Self {
        self.sbot.push(("enabled".into(), enabled.to_string()));
        self
    }

    /// `[sbot] address`: the local ssb-server.
    pub fn sbot_address(mut self, addr: impl Display) -> Self {
        self.sbot.push(("address".into(), toml_string(addr)));
        self
    }

    /// `[sbot] allow_private_pub_urls`: believe pub URLs (announced or
    /// configured) on loopback, as the tests' pubs have. Set once: a
    /// second call replaces the first.
    pub fn allow_private_pub_urls(mut self, allow: bool) -> Self {
        self.sbot.retain(|(key, _)| key != "allow_private_pub_urls");
        self.sbot
            .push(("allow_private_pub_urls".into(), allow.to_string()));
        self
    }

    /// The config text.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        push_lines(&mut out, &self.top);
        for raw in &self.top_raw {
            push_raw(&mut out, raw);
        }
        let tables: [(&str, &[Line], &[String]); 5] = [
            ("registration", &self.registration, &self.registration_raw),
            ("ip", &self.ip, &self.ip_raw),
            ("dns", &self.dns, &[]),
            ("rpc", &self.rpc, &[]),
            ("sbot", &self.sbot, &[]),
        ];
        for (name, lines, raw) in tables {
            if lines.is_empty() && raw.iter().all(String::is_empty) {
                continue;
            }
            out.push_str(&format!("[{name}]\n"));
            push_lines(&mut out, lines);
            for raw in raw {
                push_raw(&mut out, raw);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_and_escaped() {
        assert_eq!(toml_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(toml_array(["x", "y"]), r#"["x", "y"]"#);
        assert_eq!(toml_array(Vec::<String>::new()), "[]");
    }

    #[test]
    fn server_config_in_order() {
        let text = ServerConfig::new("z.example")
            .listen("127.0.0.1:0")
            .secret("/s")
            .database("/d")
            .allow_private_addresses(true)
            .top("ttl = 30")
            .graph("backend = \"ssb\"")
            .dns_embedded("127.0.0.1:53")
            .table("[rate_limit]\nper_key_burst = 3")
            .to_toml();
        assert_eq!(
            text,
            "domain = \"z.example\"\nlisten = \"127.0.0.1:0\"\nsecret = \"/s\"\n\
             database = \"/d\"\nallow_private_addresses = true\nttl = 30\n\
             [dns]\nbackend = \"embedded\"\nlisten = \"127.0.0.1:53\"\n\
             [graph]\nbackend = \"ssb\"\n[rate_limit]\nper_key_burst = 3\n"
        );
    }

    #[test]
    fn daemon_config_leaves_out_empty_tables() {
        let text = DaemonConfig::new()
            .fast_timers()
            .allow_private_addresses(true)
            .ip("")
            .sbot_address("127.0.0.1:8008")
            .to_toml();
        assert_eq!(
            text,
            "check_interval_secs = 1\nbackoff_min_secs = 1\nbackoff_max_secs = 2\n\
             http_timeout_secs = 2\n[ip]\nallow_private_addresses = true\n\
             [sbot]\naddress = \"127.0.0.1:8008\"\n"
        );
    }

    #[test]
    fn secret_files_are_0600() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("secret");
        fs::write(&path, "old").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(write_secret(&path, "{}"), path);
        let meta = fs::metadata(&path).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&path).expect("read"), "{}");
    }
}
