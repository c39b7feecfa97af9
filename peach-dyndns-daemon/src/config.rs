//! The daemon's TOML config (`/etc/peach-dyndns/daemon.toml`): types with
//! named defaults, [`load`], validation into typed values, and the in-place
//! edit that the `configure` RPC makes.
//!
//! Every key has a default, so an empty file is a valid (unconfigured)
//! daemon. An unknown key is an error, and every error names the file, the
//! key and what is wrong with it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use peach_dyndns_protocol::identity::PublicKey;
use peach_dyndns_protocol::rules;
use reqwest::Url;
use serde::{Deserialize, Serialize};

/// Where the daemon looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/peach-dyndns/daemon.toml";
/// The longest interval the config may set (checks, refresh, backoff): a
/// week. Intervals meet `Instant` arithmetic, where a huge value panics;
/// a Pi that checks less than weekly is not keeping a name up to date.
pub const MAX_INTERVAL_SECS: u64 = 7 * 24 * 60 * 60;
/// The longest timeout the config may set (HTTP, DNS, sbot): an hour, far
/// beyond any answer worth waiting for.
pub const MAX_TIMEOUT_SECS: u64 = 60 * 60;

/// What went wrong reading, checking or writing the config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the
    /// wrong type.
    #[error("config file {path}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The line of the problem, when known.
        line: Option<usize>,
        /// What is wrong, naming the key when it can be found.
        message: String,
    },
    /// A value has the right type but is not acceptable.
    #[error("config file {path}: key `{key}`: {reason}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The dotted key, e.g. `registration.name`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file could not be written (the `configure` RPC).
    #[error("cannot write config file {path}: {source}")]
    Write {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `false` stops all updates (the LED goes off); the RPC still answers.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// The SSB secret whose key signs updates: the Pi's sbot identity, the
    /// one the pub follows after an invite.
    #[serde(default = "defaults::secret_path")]
    pub secret_path: PathBuf,
    /// The state file: last seq, last addresses, last result.
    #[serde(default = "defaults::state_path")]
    pub state_path: PathBuf,
    /// Seconds between address checks.
    #[serde(default = "defaults::check_interval_secs")]
    pub check_interval_secs: u64,
    /// Milliseconds between checks, overriding `check_interval_secs`: a
    /// knob for the benchmark (`examples/bench.rs` compresses an hour of
    /// checks into seconds) and tests, left out of the config reference
    /// because no Pi should ask its pub more than once a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_interval_ms: Option<u64>,
    /// Seconds after which an update is sent even if nothing changed, so a
    /// pub that lost its records gets them back.
    #[serde(default = "defaults::refresh_interval_secs")]
    pub refresh_interval_secs: u64,
    /// First delay after a failure, in seconds; doubles per failure.
    #[serde(default = "defaults::backoff_min_secs")]
    pub backoff_min_secs: u64,
    /// Longest delay after failures, in seconds.
    #[serde(default = "defaults::backoff_max_secs")]
    pub backoff_max_secs: u64,
    /// Timeout of one HTTP request to the pub or an echo service, seconds.
    #[serde(default = "defaults::http_timeout_secs")]
    pub http_timeout_secs: u64,
    /// Which name at which pub (what the panel's setup writes).
    #[serde(default)]
    pub registration: Registration,
    /// How the public addresses are found.
    #[serde(default)]
    pub ip: IpConfig,
    /// How the result is checked in DNS.
    #[serde(default)]
    pub dns: DnsConfig,
    /// The JSON-RPC and web panel listener.
    #[serde(default)]
    pub rpc: RpcConfig,
    /// The Pi's local sbot (pub discovery, invites).
    #[serde(default)]
    pub sbot: SbotConfig,
    /// The status LED.
    #[serde(default)]
    pub led: LedConfig,
}

/// `[registration]`: the name and the pub.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The label to register, e.g. `eb4890` for `eb4890.<domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The pub's SSB id: whom updates are sealed to. With `url` and
    /// `domain` also set, the pub needs no announcement on SSB; otherwise
    /// both come from the pub's latest `peach-dyndns` message in the local
    /// sbot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pub_id: Option<String>,
    /// The pub's update URL, e.g. `http://dinosaur.is:8053/update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The pub's zone, e.g. `peach.dinosaur.is`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// `[ip]`: address discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpConfig {
    /// Ask the pub's `GET /ip` first.
    #[serde(default = "defaults::yes")]
    pub use_pub: bool,
    /// HTTP echo services asked next, in order; each must answer with one
    /// address as plain text (or `{"ip": …}`).
    #[serde(default)]
    pub echo_urls: Vec<String>,
    /// A network interface whose one stable global IPv6 address is used
    /// when no HTTP source gave an IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Register an A record.
    #[serde(default = "defaults::yes")]
    pub ipv4: bool,
    /// Register an AAAA record.
    #[serde(default = "defaults::yes")]
    pub ipv6: bool,
    /// Believe private, loopback and other non-global addresses (tests and
    /// LAN setups; the pub must allow them too).
    #[serde(default)]
    pub allow_private_addresses: bool,
    /// The kernel's IPv6 address table (flags tell stable from temporary).
    #[serde(default = "defaults::if_inet6_path")]
    pub if_inet6_path: PathBuf,
}

/// `[dns]`: checking that the name resolves to us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Ask the pub's DNS after an accepted update.
    #[serde(default = "defaults::yes")]
    pub verify: bool,
    /// `host:port` of the DNS server to ask. Unset: the zone's NS (found
    /// through the resolver in `resolv_conf`), else the update URL's host
    /// on port 53.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Where the system resolver is configured (for the NS lookup).
    #[serde(default = "defaults::resolv_conf")]
    pub resolv_conf: PathBuf,
    /// Timeout of one DNS query, seconds.
    #[serde(default = "defaults::dns_timeout_secs")]
    pub timeout_secs: u64,
}

/// `[rpc]`: the JSON-RPC and panel listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcConfig {
    /// Serve JSON-RPC and the panel.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Address to listen on. PeachCloud's services use 5110–5115.
    #[serde(default = "defaults::rpc_listen")]
    pub listen: SocketAddr,
    /// Host names besides loopback that requests may carry in `Host` (and
    /// `Origin`), e.g. `peach.local` when peach-web proxies the panel.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// `[sbot]`: the Pi's local SSB server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SbotConfig {
    /// Use the local sbot for pub discovery and invites.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// `host:port` of its muxrpc (secret handshake) listener.
    #[serde(default = "defaults::sbot_address")]
    pub address: String,
    /// Timeout of one call, seconds.
    #[serde(default = "defaults::sbot_timeout_secs")]
    pub timeout_secs: u64,
    /// Believe announcements whose URL points at a loopback, private or
    /// other non-public address (tests, a pub on the LAN). Off, an
    /// announced URL must be `https://`, or `http://` to a public address.
    #[serde(default)]
    pub allow_private_pub_urls: bool,
}

/// Which status LED to drive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedKind {
    /// No LED.
    #[default]
    None,
    /// A kernel LED under `sysfs_root`.
    Sysfs,
    /// A GPIO pin (needs the `gpio` feature).
    Gpio,
}

/// `[led]`: the status LED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedConfig {
    /// `none`, `sysfs` or `gpio`.
    #[serde(default)]
    pub kind: LedKind,
    /// The kernel's LED class directory.
    #[serde(default = "defaults::sysfs_root")]
    pub sysfs_root: PathBuf,
    /// The LED under `sysfs_root` (`led0` is the Pi's green ACT LED).
    #[serde(default = "defaults::sysfs_name")]
    pub sysfs_name: String,
    /// BCM pin number, for `kind = "gpio"`.
    #[serde(default = "defaults::gpio_pin")]
    pub gpio_pin: u8,
}

/// The named defaults. Each says why it is what it is.
pub mod defaults {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::path::PathBuf;

    /// A fresh install updates as soon as it is configured.
    pub fn enabled() -> bool {
        true
    }
    /// Used by the boolean switches that are on unless turned off.
    pub fn yes() -> bool {
        true
    }
    /// PeachCloud's sbot keeps its identity in the `peach` user's home.
    pub fn secret_path() -> PathBuf {
        PathBuf::from("/home/peach/.ssb/secret")
    }
    /// The Debian package owns `/var/lib/peach-dyndns`.
    pub fn state_path() -> PathBuf {
        PathBuf::from("/var/lib/peach-dyndns/state.json")
    }
    /// One minute, like ddclient's floor: a home address rarely changes
    /// faster, and a check that finds no change costs one small request.
    pub fn check_interval_secs() -> u64 {
        60
    }
    /// A day: long enough to be no load on a pub, short enough that a pub
    /// that lost its records recovers the same day.
    pub fn refresh_interval_secs() -> u64 {
        24 * 60 * 60
    }
    /// Half a check interval: a short outage is retried soon.
    pub fn backoff_min_secs() -> u64 {
        30
    }
    /// Half an hour: a pub that is down for long sees at most two tries an
    /// hour from each Pi.
    pub fn backoff_max_secs() -> u64 {
        30 * 60
    }
    /// Ten seconds covers a slow home uplink and still leaves most of a
    /// check interval.
    pub fn http_timeout_secs() -> u64 {
        10
    }
    /// The Linux kernel's table of IPv6 addresses with their flags.
    pub fn if_inet6_path() -> PathBuf {
        PathBuf::from("/proc/net/if_inet6")
    }
    /// The system resolver's config.
    pub fn resolv_conf() -> PathBuf {
        PathBuf::from("/etc/resolv.conf")
    }
    /// Three seconds: an authoritative server answers in milliseconds.
    pub fn dns_timeout_secs() -> u64 {
        3
    }
    /// Loopback only, next to PeachCloud's own services (5110–5115).
    pub fn rpc_listen() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 5116))
    }
    /// ssb-server's and go-sbot's default muxrpc port.
    pub fn sbot_address() -> String {
        "127.0.0.1:8008".to_string()
    }
    /// Ten seconds: an invite makes the sbot dial the pub.
    pub fn sbot_timeout_secs() -> u64 {
        10
    }
    /// Where Linux lists its LEDs.
    pub fn sysfs_root() -> PathBuf {
        PathBuf::from("/sys/class/leds")
    }
    /// The Raspberry Pi's green activity LED.
    pub fn sysfs_name() -> String {
        "led0".to_string()
    }
    /// BCM 17 (header pin 11), the first plain GPIO pin, free on a Pi
    /// without HATs.
    pub fn gpio_pin() -> u8 {
        17
    }
}

impl Default for Config {
    fn default() -> Config {
        // An empty document takes every default; that cannot fail.
        Config::from_str("", Path::new("<defaults>")).unwrap_or_else(|_| unreachable!())
    }
}

macro_rules! impl_default_from_empty {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> $t {
                // Every field has a serde default; an empty table parses.
                toml::from_str("").unwrap_or_else(|_| unreachable!())
            }
        }
    )*};
}
impl_default_from_empty!(IpConfig, DnsConfig, RpcConfig, SbotConfig, LedConfig);

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Config::from_str(&text, path)
}

/// The pub to send to, when the config names it completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPub {
    /// The pub's key.
    pub pub_id: PublicKey,
    /// The update URL.
    pub url: Url,
    /// The zone.
    pub domain: String,
}

impl Config {
    /// Parses and checks config text; `path` is only used in messages.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| parse_error(text, path, &e))?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks the values that TOML types alone do not.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        let positive = [
            ("check_interval_secs", self.check_interval_secs),
            ("refresh_interval_secs", self.refresh_interval_secs),
            ("backoff_min_secs", self.backoff_min_secs),
            ("backoff_max_secs", self.backoff_max_secs),
            ("http_timeout_secs", self.http_timeout_secs),
            ("dns.timeout_secs", self.dns.timeout_secs),
            ("sbot.timeout_secs", self.sbot.timeout_secs),
        ];
        for (i, (key, value)) in positive.into_iter().enumerate() {
            if value == 0 {
                return Err(invalid(key, "must be at least 1 (second)".into()));
            }
            // The first four are intervals, the rest timeouts.
            let max = if i < 4 {
                MAX_INTERVAL_SECS
            } else {
                MAX_TIMEOUT_SECS
            };
            if value > max {
                return Err(invalid(
                    key,
                    format!("{value} is more than the maximum, {max} (seconds)"),
                ));
            }
        }
        if self.check_interval_ms == Some(0) {
            return Err(invalid(
                "check_interval_ms",
                "must be at least 1 (millisecond)".into(),
            ));
        }
        if let Some(ms) = self.check_interval_ms {
            let max = MAX_INTERVAL_SECS * 1000;
            if ms > max {
                return Err(invalid(
                    "check_interval_ms",
                    format!("{ms} is more than the maximum, {max} (milliseconds)"),
                ));
            }
        }
        if self.backoff_min_secs > self.backoff_max_secs {
            return Err(invalid(
                "backoff_min_secs",
                format!(
                    "{} is more than backoff_max_secs ({})",
                    self.backoff_min_secs, self.backoff_max_secs
                ),
            ));
        }
        let reg = &self.registration;
        if let Some(name) = &reg.name {
            rules::check_label(name).map_err(|e| invalid("registration.name", e.to_string()))?;
        }
        if let Some(id) = &reg.pub_id {
            id.parse::<PublicKey>()
                .map_err(|e| invalid("registration.pub_id", e.to_string()))?;
        }
        if let Some(url) = &reg.url {
            check_http_url(url).map_err(|reason| invalid("registration.url", reason))?;
        }
        if let Some(domain) = &reg.domain {
            check_domain(domain).map_err(|reason| invalid("registration.domain", reason))?;
        }
        if reg.url.is_some() != reg.domain.is_some() {
            let missing = if reg.url.is_some() { "domain" } else { "url" };
            return Err(invalid(
                &format!("registration.{missing}"),
                "`url` and `domain` are set together (or both left to the pub's announcement)"
                    .into(),
            ));
        }
        if reg.url.is_some() && reg.pub_id.is_none() {
            return Err(invalid(
                "registration.pub_id",
                "is needed with `url`: updates are sealed to the pub's key".into(),
            ));
        }
        for (i, url) in self.ip.echo_urls.iter().enumerate() {
            check_http_url(url).map_err(|reason| invalid(&format!("ip.echo_urls[{i}]"), reason))?;
        }
        if !self.ip.ipv4 && !self.ip.ipv6 {
            return Err(invalid(
                "ip.ipv6",
                "`ipv4` and `ipv6` are both false: there is nothing to register".into(),
            ));
        }
        if let Some(server) = &self.dns.server {
            check_host_port(server).map_err(|reason| invalid("dns.server", reason))?;
        }
        check_host_port(&self.sbot.address).map_err(|reason| invalid("sbot.address", reason))?;
        for (i, host) in self.rpc.allowed_hosts.iter().enumerate() {
            if host.is_empty() || host.contains(['/', ' ', '@']) {
                return Err(invalid(
                    &format!("rpc.allowed_hosts[{i}]"),
                    format!("{host:?} is not a host name"),
                ));
            }
        }
        if self.led.sysfs_name.is_empty() || self.led.sysfs_name.contains('/') {
            return Err(invalid(
                "led.sysfs_name",
                format!("{:?} is not an LED name", self.led.sysfs_name),
            ));
        }
        Ok(())
    }

    /// Time between checks: `check_interval_ms` when set, else
    /// `check_interval_secs`. Like every interval here it is clamped to
    /// [`MAX_INTERVAL_SECS`] even for a config that skipped
    /// [`Config::validate`] (fields are public), so it is safe to add to an
    /// `Instant`.
    pub fn check_interval(&self) -> Duration {
        match self.check_interval_ms {
            Some(ms) => Duration::from_millis(ms),
            None => Duration::from_secs(self.check_interval_secs),
        }
        .min(max_interval())
    }

    /// The forced refresh period.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_secs(self.refresh_interval_secs).min(max_interval())
    }

    /// The first backoff delay.
    pub fn backoff_min(&self) -> Duration {
        Duration::from_secs(self.backoff_min_secs).min(max_interval())
    }

    /// The longest backoff delay.
    pub fn backoff_max(&self) -> Duration {
        Duration::from_secs(self.backoff_max_secs).min(max_interval())
    }

    /// The HTTP request timeout.
    pub fn http_timeout(&self) -> Duration {
        Duration::from_secs(self.http_timeout_secs.min(MAX_TIMEOUT_SECS))
    }

    /// The pub's key, when configured (validated at load).
    pub fn pub_id(&self) -> Option<PublicKey> {
        self.registration.pub_id.as_ref()?.parse().ok()
    }

    /// The pub, when the config names it completely (key, URL and zone).
    pub fn static_pub(&self) -> Option<StaticPub> {
        let reg = &self.registration;
        Some(StaticPub {
            pub_id: self.pub_id()?,
            url: Url::parse(reg.url.as_ref()?).ok()?,
            domain: rules::normalize_domain(reg.domain.as_ref()?),
        })
    }
}

/// [`MAX_INTERVAL_SECS`] as a duration.
pub fn max_interval() -> Duration {
    Duration::from_secs(MAX_INTERVAL_SECS)
}

/// Whether `url` is an absolute http(s) URL with a host.
pub fn check_http_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?} is not an http or https URL"));
    }
    if parsed.host_str().is_none() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(parsed)
}

/// Whether `domain` looks like a zone name: dot-separated labels.
pub fn check_domain(domain: &str) -> Result<(), String> {
    let d = rules::normalize_domain(domain);
    if d.is_empty() || d.len() > 253 {
        return Err(format!("{domain:?} is not a domain name"));
    }
    for label in d.split('.') {
        rules::check_label(label).map_err(|e| format!("{domain:?}: {e}"))?;
    }
    Ok(())
}

fn check_host_port(text: &str) -> Result<(), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not host:port"))?;
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{text:?}: {port:?} is not a port number"))?;
    Ok(())
}

/// Turns toml's error into one that names the line and the dotted key.
fn parse_error(text: &str, path: &Path, err: &toml::de::Error) -> ConfigError {
    let (line, key) = match err.span() {
        Some(span) => locate_key(text, span.start),
        None => (None, None),
    };
    let message = match key {
        Some(key) => format!("key `{key}`: {}", err.message()),
        None => err.message().to_string(),
    };
    ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// The 1-based line of byte `offset`, and the dotted key on it (the key of
/// that line prefixed with the `[table]` it sits in), when it has one.
fn locate_key(text: &str, offset: usize) -> (Option<usize>, Option<String>) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line_no = before.matches('\n').count() + 1;
    let mut table: Option<String> = None;
    for line in before.lines() {
        let t = line.trim();
        if t.starts_with('[') && !t.starts_with("[[") {
            table = t
                .trim_start_matches('[')
                .split(']')
                .next()
                .map(|s| s.trim().to_string());
        }
    }
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let key = if line.starts_with('[') {
        line.trim_start_matches('[')
            .split(']')
            .next()
            .map(|s| s.trim().to_string())
    } else {
        line.split_once('=').map(|(k, _)| {
            let k = k.trim().trim_matches('"');
            match &table {
                Some(t) => format!("{t}.{k}"),
                None => k.to_string(),
            }
        })
    };
    (Some(line_no), key.filter(|k| !k.is_empty()))
}

/// The `[registration]` values the `configure` RPC sets. `None` removes the
/// key from the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrationEdit {
    /// The label.
    pub name: Option<String>,
    /// The pub's id.
    pub pub_id: Option<String>,
    /// The update URL (with `domain`), or `None` to use the announcement.
    pub url: Option<String>,
    /// The zone (with `url`).
    pub domain: Option<String>,
    /// Set `enabled` too, when given.
    pub enabled: Option<bool>,
}

/// Writes `edit` into the config file at `path`, keeping every other key,
/// comment and blank line as the owner left them, and returns the new,
/// checked config. The file is replaced atomically; if the result does not
/// validate, the file is left untouched.
pub fn edit_registration(path: &Path, edit: &RegistrationEdit) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::Parse {
                path: path.to_path_buf(),
                line: None,
                message: e.message().to_string(),
            })?;
    if let Some(enabled) = edit.enabled {
        doc["enabled"] = toml_edit::value(enabled);
    }
    let reg = doc
        .entry("registration")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
    let Some(reg) = reg.as_table_like_mut() else {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            key: "registration".into(),
            reason: "is not a table".into(),
        });
    };
    for (key, value) in [
        ("name", &edit.name),
        ("pub_id", &edit.pub_id),
        ("url", &edit.url),
        ("domain", &edit.domain),
    ] {
        match value {
            Some(v) => {
                reg.insert(key, toml_edit::value(v.as_str()));
            }
            None => {
                reg.remove(key);
            }
        }
    }
    let new_text = doc.to_string();
    let config = Config::from_str(&new_text, path)?;
    crate::state::write_atomically(path, new_text.as_bytes()).map_err(|source| {
        ConfigError::Write {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_str(text, Path::new("/etc/peach-dyndns/daemon.toml"))
    }

    #[test]
    fn empty_file_takes_the_named_defaults() {
        let c = parse("").expect("empty config");
        assert_eq!(c, Config::default());
        assert_eq!(c.check_interval(), Duration::from_secs(60));
        assert_eq!(c.refresh_interval(), Duration::from_secs(86_400));
        assert_eq!(c.backoff_min(), Duration::from_secs(30));
        assert_eq!(c.backoff_max(), Duration::from_secs(1_800));
        assert_eq!(c.rpc.listen.to_string(), "127.0.0.1:5116");
        assert_eq!(c.led.kind, LedKind::None);
        assert!(c.static_pub().is_none());
    }

    /// The benchmark's knob: milliseconds win over seconds, and stay out
    /// of `get_config` when unset.
    #[test]
    fn check_interval_ms_overrides_seconds() {
        let c = parse("check_interval_secs = 5\ncheck_interval_ms = 2").expect("config");
        assert_eq!(c.check_interval(), Duration::from_millis(2));
        let json = serde_json::to_value(Config::default()).expect("json");
        assert!(json.get("check_interval_ms").is_none(), "{json}");
    }

    #[test]
    fn a_full_config_parses() {
        let id = peach_dyndns_protocol::identity::Keypair::generate().id();
        let c = parse(&format!(
            r#"
            check_interval_secs = 5
            [registration]
            name = "eb4890"
            pub_id = "{id}"
            url = "http://127.0.0.1:8053/update"
            domain = "Peach.Dinosaur.is."
            [ip]
            echo_urls = ["https://api.ipify.org"]
            interface = "eth0"
            allow_private_addresses = true
            [dns]
            server = "127.0.0.1:5353"
            [rpc]
            allowed_hosts = ["peach.local"]
            [led]
            kind = "sysfs"
            sysfs_name = "led0"
            "#
        ))
        .expect("full config");
        let p = c.static_pub().expect("static pub");
        assert_eq!(p.domain, "peach.dinosaur.is");
        assert_eq!(p.url.as_str(), "http://127.0.0.1:8053/update");
        assert_eq!(p.pub_id.to_string(), id);
    }

    /// Every error names the file and the key (and the line for syntax).
    #[test]
    fn errors_name_file_and_key() {
        let cases = [
            ("check_interval_secs = \"x\"", "key `check_interval_secs`"),
            ("[ip]\necho_url = []", "key `ip.echo_url`"),
            ("bogus = 1", "key `bogus`"),
            ("[registration]\nname = \"Bad_Name\"", "key `registration.name`"),
            ("[registration]\npub_id = \"@nope\"", "key `registration.pub_id`"),
            (
                "[registration]\nurl = \"ftp://x/update\"\ndomain = \"a.b\"\npub_id = \"@AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=.ed25519\"",
                "key `registration.url`",
            ),
            ("check_interval_secs = 0", "key `check_interval_secs`"),
            ("check_interval_ms = 0", "key `check_interval_ms`"),
            ("backoff_min_secs = 100\nbackoff_max_secs = 10", "key `backoff_min_secs`"),
            ("[led]\nkind = \"blinky\"", "key `led.kind`"),
            ("[dns]\nserver = \"nohost\"", "key `dns.server`"),
            ("[ip]\nipv4 = false\nipv6 = false", "key `ip.ipv6`"),
            // Regression: a huge interval panicked in `Instant` arithmetic.
            ("check_interval_secs = 18446744073709551615", "key `check_interval_secs`"),
            ("refresh_interval_secs = 604801", "key `refresh_interval_secs`"),
            ("backoff_max_secs = 18446744073709551615", "key `backoff_max_secs`"),
            ("check_interval_ms = 18446744073709551615", "key `check_interval_ms`"),
            ("http_timeout_secs = 3601", "key `http_timeout_secs`"),
            ("[dns]\ntimeout_secs = 18446744073709551615", "key `dns.timeout_secs`"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains("/etc/peach-dyndns/daemon.toml"), "{err}");
            assert!(err.contains(want), "{text:?} gave {err}");
        }
    }

    /// A week is the longest interval; a config built around validation
    /// still gets clamped durations.
    #[test]
    fn intervals_are_bounded() {
        let c = parse("check_interval_secs = 604800\nrefresh_interval_secs = 604800")
            .expect("a week is fine");
        assert_eq!(c.check_interval(), max_interval());
        let err = parse("check_interval_secs = 604801")
            .expect_err("more than a week")
            .to_string();
        assert!(err.contains("maximum, 604800"), "{err}");
        let mut raw = Config {
            check_interval_secs: u64::MAX,
            refresh_interval_secs: u64::MAX,
            backoff_min_secs: u64::MAX,
            backoff_max_secs: u64::MAX,
            http_timeout_secs: u64::MAX,
            ..Config::default()
        };
        for d in [
            raw.check_interval(),
            raw.refresh_interval(),
            raw.backoff_min(),
            raw.backoff_max(),
        ] {
            assert_eq!(d, max_interval());
        }
        assert_eq!(raw.http_timeout(), Duration::from_secs(MAX_TIMEOUT_SECS));
        raw.check_interval_ms = Some(u64::MAX);
        assert_eq!(raw.check_interval(), max_interval());
    }

    #[test]
    fn url_needs_domain_and_pub_id() {
        let err = parse("[registration]\nurl = \"http://x/update\"")
            .expect_err("url alone")
            .to_string();
        assert!(err.contains("registration.domain"), "{err}");
        let err = parse("[registration]\nurl = \"http://x/update\"\ndomain = \"a.b\"")
            .expect_err("no pub id")
            .to_string();
        assert!(err.contains("registration.pub_id"), "{err}");
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let err = load(Path::new("/nonexistent/daemon.toml")).expect_err("missing");
        assert!(
            err.to_string().contains("/nonexistent/daemon.toml"),
            "{err}"
        );
    }

    #[test]
    fn edit_keeps_comments_and_other_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("daemon.toml");
        std::fs::write(
            &path,
            "# my settings\ncheck_interval_secs = 120 # two minutes\n\n[registration]\nname = \"old\"\n",
        )
        .expect("write");
        let id = peach_dyndns_protocol::identity::Keypair::generate().id();
        let edit = RegistrationEdit {
            name: Some("eb4890".into()),
            pub_id: Some(id.clone()),
            ..RegistrationEdit::default()
        };
        let c = edit_registration(&path, &edit).expect("edit");
        assert_eq!(c.registration.name.as_deref(), Some("eb4890"));
        assert_eq!(c.check_interval_secs, 120);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("# my settings"), "{text}");
        assert!(text.contains("# two minutes"), "{text}");
        assert_eq!(load(&path).expect("reload"), c);

        // A bad edit leaves the file as it was.
        let bad = RegistrationEdit {
            name: Some("NOT OK".into()),
            ..edit
        };
        assert!(edit_registration(&path, &bad).is_err());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }
}
