//! The daemon's TOML config (`/etc/peach-dyndns/daemon.toml`): types with
//! named defaults, [`load`], and validation into typed values (ids are
//! [`PublicKey`]s and URLs [`Url`]s from the moment the file is read). The
//! in-place edit the `configure` RPC makes is [`crate::configure`].
//!
//! Every key has a default, so an empty file is a valid (unconfigured)
//! daemon. An unknown key is an error, and every error names the file, the
//! key and what is wrong with it.

use std::net::{IpAddr, SocketAddr};
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
    /// wrong type (or one that is not an id, a URL, …).
    #[error("config file {path}: {}{message}", key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The dotted key at toml's error position, when there is one.
        key: Option<String>,
        /// toml's message: line, column, the line itself, and what is
        /// wrong.
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
    #[serde(
        rename = "check_interval_secs",
        default = "defaults::check_interval",
        with = "duration::interval_secs"
    )]
    pub check_interval: Duration,
    /// Milliseconds between checks, overriding `check_interval_secs`: a
    /// knob for the benchmark (`examples/bench/` compresses an hour of
    /// checks into seconds) and tests, left out of the config reference
    /// because no Pi should ask its pub more than once a minute.
    #[serde(
        rename = "check_interval_ms",
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::interval_ms"
    )]
    pub check_interval_override: Option<Duration>,
    /// Seconds after which an update is sent even if nothing changed, so a
    /// pub that lost its records gets them back.
    #[serde(
        rename = "refresh_interval_secs",
        default = "defaults::refresh_interval",
        with = "duration::interval_secs"
    )]
    pub refresh_interval: Duration,
    /// First delay after a failure, in seconds; doubles per failure.
    #[serde(
        rename = "backoff_min_secs",
        default = "defaults::backoff_min",
        with = "duration::interval_secs"
    )]
    pub backoff_min: Duration,
    /// Longest delay after failures, in seconds.
    #[serde(
        rename = "backoff_max_secs",
        default = "defaults::backoff_max",
        with = "duration::interval_secs"
    )]
    pub backoff_max: Duration,
    /// Timeout of one HTTP request to the pub or an echo service, seconds.
    #[serde(
        rename = "http_timeout_secs",
        default = "defaults::http_timeout",
        with = "duration::timeout_secs"
    )]
    pub http_timeout: Duration,
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
    /// The certificate for the name (ACME DNS-01 through the pub).
    #[serde(default)]
    pub acme: crate::acme::config::AcmeConfig,
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
    pub pub_id: Option<PublicKey>,
    /// The pub's update URL, e.g. `http://dinosaur.is:8053/update`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "http_url::option"
    )]
    pub url: Option<Url>,
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
    #[serde(default, with = "http_url::list")]
    pub echo_urls: Vec<Url>,
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
    pub server: Option<HostPort>,
    /// Where the system resolver is configured (for the NS lookup).
    #[serde(default = "defaults::resolv_conf")]
    pub resolv_conf: PathBuf,
    /// Timeout of one DNS query, seconds.
    #[serde(
        rename = "timeout_secs",
        default = "defaults::dns_timeout",
        with = "duration::timeout_secs"
    )]
    pub timeout: Duration,
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
    pub address: HostPort,
    /// Timeout of one call, seconds.
    #[serde(
        rename = "timeout_secs",
        default = "defaults::sbot_timeout",
        with = "duration::timeout_secs"
    )]
    pub timeout: Duration,
    /// Believe pub URLs, announced or configured (`registration.url`), that
    /// point at a loopback, private or other non-public address or a
    /// local-only name (tests, a pub on the LAN). Off, a pub URL must be
    /// `https://` or `http://` to a public server.
    #[serde(default)]
    pub allow_private_pub_urls: bool,
}

/// A `host:port` whose host is a name or an address (resolved when it is
/// used, so a name may follow DNS), checked when the config is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPort(String);

impl HostPort {
    /// Checks `text`: a non-empty host, a colon, a port number.
    pub fn new(text: &str) -> Result<HostPort, String> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not host:port"))?;
        if host.is_empty() {
            return Err(format!("{text:?} has no host"));
        }
        port.parse::<u16>()
            .map_err(|_| format!("{text:?}: {port:?} is not a port number"))?;
        Ok(HostPort(text.to_string()))
    }

    /// The text, as `tokio::net::lookup_host` takes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HostPort {
    type Error = String;
    fn try_from(text: String) -> Result<HostPort, String> {
        HostPort::new(&text)
    }
}

impl From<HostPort> for String {
    fn from(host_port: HostPort) -> String {
        host_port.0
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
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
    use std::time::Duration;

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
    pub fn check_interval() -> Duration {
        Duration::from_secs(60)
    }
    /// A day: long enough to be no load on a pub, short enough that a pub
    /// that lost its records recovers the same day.
    pub fn refresh_interval() -> Duration {
        Duration::from_secs(24 * 60 * 60)
    }
    /// Half a check interval: a short outage is retried soon.
    pub fn backoff_min() -> Duration {
        Duration::from_secs(30)
    }
    /// Half an hour: a pub that is down for long sees at most two tries an
    /// hour from each Pi.
    pub fn backoff_max() -> Duration {
        Duration::from_secs(30 * 60)
    }
    /// Ten seconds covers a slow home uplink and still leaves most of a
    /// check interval.
    pub fn http_timeout() -> Duration {
        Duration::from_secs(10)
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
    pub fn dns_timeout() -> Duration {
        Duration::from_secs(3)
    }
    /// Loopback only, next to PeachCloud's own services (5110–5115).
    pub fn rpc_listen() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 5116))
    }
    /// ssb-server's and go-sbot's default muxrpc port.
    pub fn sbot_address() -> super::HostPort {
        super::HostPort::new("127.0.0.1:8008").expect("invariant: a literal host:port")
    }
    /// Ten seconds: an invite makes the sbot dial the pub.
    pub fn sbot_timeout() -> Duration {
        Duration::from_secs(10)
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
        Config::from_str("", Path::new("<defaults>"))
            .expect("invariant: every key has a valid named default, so an empty file parses")
    }
}

macro_rules! impl_default_from_empty {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> $t {
                toml::from_str("")
                    .expect("invariant: every field has a serde default, so an empty table parses")
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
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            key: e.span().and_then(|span| key_at(text, span.start)),
            message: e.to_string().trim_end().to_string(),
        })?;
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
        if self.backoff_min > self.backoff_max {
            return Err(invalid(
                "backoff_min_secs",
                format!(
                    "{} is more than backoff_max_secs ({})",
                    self.backoff_min.as_secs(),
                    self.backoff_max.as_secs()
                ),
            ));
        }
        let reg = &self.registration;
        if let Some(name) = &reg.name {
            rules::check_label(name).map_err(|e| invalid("registration.name", e.to_string()))?;
        }
        if let Some(url) = &reg.url {
            check_pub_url(url.as_str(), self.sbot.allow_private_pub_urls)
                .map_err(|reason| invalid("registration.url", reason))?;
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
            check_http_url(url.as_str())
                .map_err(|reason| invalid(&format!("ip.echo_urls[{i}]"), reason))?;
        }
        if !self.ip.ipv4 && !self.ip.ipv6 {
            return Err(invalid(
                "ip.ipv6",
                "`ipv4` and `ipv6` are both false: there is nothing to register".into(),
            ));
        }
        for (i, host) in self.rpc.allowed_hosts.iter().enumerate() {
            if host.is_empty() || host.contains(['/', ' ', '@']) {
                return Err(invalid(
                    &format!("rpc.allowed_hosts[{i}]"),
                    format!("{host:?} is not a host name"),
                ));
            }
        }
        self.acme
            .check()
            .map_err(|(key, reason)| invalid(key, reason))?;
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
        self.check_interval_override
            .unwrap_or(self.check_interval)
            .min(max_interval())
    }

    /// The forced refresh period.
    pub fn refresh_interval(&self) -> Duration {
        self.refresh_interval.min(max_interval())
    }

    /// The first backoff delay.
    pub fn backoff_min(&self) -> Duration {
        self.backoff_min.min(max_interval())
    }

    /// The longest backoff delay.
    pub fn backoff_max(&self) -> Duration {
        self.backoff_max.min(max_interval())
    }

    /// The HTTP request timeout.
    pub fn http_timeout(&self) -> Duration {
        self.http_timeout.min(max_timeout())
    }

    /// The pub's key, when configured.
    pub fn pub_id(&self) -> Option<PublicKey> {
        self.registration.pub_id
    }

    /// The pub, when the config names it completely (key, URL and zone).
    pub fn static_pub(&self) -> Option<StaticPub> {
        let reg = &self.registration;
        Some(StaticPub {
            pub_id: reg.pub_id?,
            url: reg.url.clone()?,
            domain: rules::normalize_domain(reg.domain.as_ref()?),
        })
    }
}

/// [`MAX_INTERVAL_SECS`] as a duration.
pub fn max_interval() -> Duration {
    Duration::from_secs(MAX_INTERVAL_SECS)
}

/// [`MAX_TIMEOUT_SECS`] as a duration.
pub fn max_timeout() -> Duration {
    Duration::from_secs(MAX_TIMEOUT_SECS)
}

impl DnsConfig {
    /// The DNS query timeout, clamped to [`MAX_TIMEOUT_SECS`] like every
    /// timeout here.
    pub fn timeout(&self) -> Duration {
        self.timeout.min(max_timeout())
    }
}

impl SbotConfig {
    /// The sbot call timeout, clamped to [`MAX_TIMEOUT_SECS`].
    pub fn timeout(&self) -> Duration {
        self.timeout.min(max_timeout())
    }
}

/// Host names that never name a public server.
const LOCAL_NAME_SUFFIXES: [&str; 6] = [
    "localhost",
    ".localhost",
    ".local",
    ".lan",
    ".home.arpa",
    ".internal",
];

/// Checks a pub's URL, announced or configured (`registration.url`):
/// http(s) with a host, and unless `allow_private`
/// (`sbot.allow_private_pub_urls`), a host that is not a loopback, private
/// or other non-public address or local-only name. (An announced
/// host name is resolved and checked again before use, see
/// [`crate::directory::check_resolved`].)
pub fn check_pub_url(url: &str, allow_private: bool) -> Result<Url, String> {
    let parsed = check_http_url(url)?;
    if allow_private {
        return Ok(parsed);
    }
    let refuse = |why: String| {
        Err(format!(
            "{url:?} points at {why}, not a public server (set sbot.allow_private_pub_urls for a pub on the LAN)"
        ))
    };
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("{url:?} has no host"))?;
    // `host_str` writes an IPv6 host in brackets.
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        if let Some(reason) = rules::non_global_reason(ip) {
            return refuse(format!("{ip}, {reason}"));
        }
    } else {
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if LOCAL_NAME_SUFFIXES
            .iter()
            .any(|s| name == s.trim_start_matches('.') || name.ends_with(s))
        {
            return refuse(format!("{name}, a local name"));
        }
    }
    Ok(parsed)
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

/// serde for the intervals and timeouts: whole seconds (or milliseconds)
/// in the file, at least one and at most the maximum, a [`Duration`] in
/// the config. The bound is checked here, before any `Instant` sees it.
mod duration {
    use std::time::Duration;

    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    use super::{MAX_INTERVAL_SECS, MAX_TIMEOUT_SECS};

    /// A count of `unit`s between 1 and `max`.
    fn bounded<'de, D: Deserializer<'de>>(d: D, max: u64, unit: &str) -> Result<u64, D::Error> {
        let value = u64::deserialize(d)?;
        if value == 0 {
            return Err(D::Error::custom(format!("must be at least 1 ({unit})")));
        }
        if value > max {
            return Err(D::Error::custom(format!(
                "{value} is more than the maximum, {max} ({unit}s)"
            )));
        }
        Ok(value)
    }

    /// Whole seconds, for a config built in code with a huge value too
    /// (`u64::MAX` seconds at most, which a `Duration` always holds).
    fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    /// An interval in seconds (checks, refresh, backoff).
    pub mod interval_secs {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            bounded(d, MAX_INTERVAL_SECS, "second").map(Duration::from_secs)
        }

        pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            secs(d, s)
        }
    }

    /// A timeout in seconds (HTTP, DNS, sbot).
    pub mod timeout_secs {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            bounded(d, MAX_TIMEOUT_SECS, "second").map(Duration::from_secs)
        }

        pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            secs(d, s)
        }
    }

    /// The optional interval in milliseconds (`check_interval_ms`).
    pub mod interval_ms {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            bounded(d, MAX_INTERVAL_SECS * 1000, "millisecond")
                .map(|ms| Some(Duration::from_millis(ms)))
        }

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                // A config built in code may hold more milliseconds than
                // a u64; the file can never say more than u64::MAX.
                Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                None => s.serialize_none(),
            }
        }
    }
}

/// serde for URL fields: the text must be an absolute http(s) URL with a
/// host ([`check_http_url`]); it is kept as a [`Url`] and written back as
/// its text.
mod http_url {
    use reqwest::Url;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    fn parse<'de, D: Deserializer<'de>>(text: &str) -> Result<Url, D::Error> {
        super::check_http_url(text).map_err(D::Error::custom)
    }

    /// `Option<Url>`.
    pub mod option {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| parse::<D>(&text))
                .transpose()
        }

        pub fn serialize<S: Serializer>(url: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
            match url {
                Some(url) => s.serialize_some(url.as_str()),
                None => s.serialize_none(),
            }
        }
    }

    /// `Vec<Url>`.
    pub mod list {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Url>, D::Error> {
            Vec::<String>::deserialize(d)?
                .iter()
                .map(|text| parse::<D>(text))
                .collect()
        }

        pub fn serialize<S: Serializer>(urls: &[Url], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(urls.iter().map(Url::as_str))
        }
    }
}

/// The dotted key at byte `offset` of `text` (where toml put its error),
/// found in toml_edit's spans: the key whose name or value holds the
/// offset, inside the `[table]` it belongs to. A syntax error has no
/// document to look in; when it sits at the start of a value (an integer
/// too large for TOML), the text up to it with a stand-in value does.
fn key_at(text: &str, offset: usize) -> Option<String> {
    if let Ok(doc) = toml_edit::ImDocument::parse(text) {
        return key_in(doc.as_table(), offset, "");
    }
    let before = text.get(..offset)?;
    let doc = toml_edit::ImDocument::parse(format!("{before}0")).ok()?;
    key_in(doc.as_table(), offset, "")
}

/// [`key_at`] within one table (or inline table), `prefix` being its key.
fn key_in(table: &dyn toml_edit::TableLike, offset: usize, prefix: &str) -> Option<String> {
    let holds = |span: Option<std::ops::Range<usize>>| {
        span.is_some_and(|s| s.start <= offset && (offset < s.end || s.is_empty()))
    };
    for (name, _) in table.iter() {
        let (key, item) = table.get_key_value(name)?;
        let dotted = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        if let Some(inner) = item.as_table_like() {
            if let Some(found) = key_in(inner, offset, &dotted) {
                return Some(found);
            }
        }
        if holds(key.span()) || holds(item.span()) {
            return Some(dotted);
        }
    }
    None
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
            [sbot]
            allow_private_pub_urls = true
            "#
        ))
        .expect("full config");
        let p = c.static_pub().expect("static pub");
        assert_eq!(p.domain, "peach.dinosaur.is");
        assert_eq!(p.url.as_str(), "http://127.0.0.1:8053/update");
        assert_eq!(p.pub_id.to_string(), id);
    }

    /// A pub URL, configured or announced, may be plain HTTP only to a
    /// public server; loopback, the LAN and local names need
    /// `sbot.allow_private_pub_urls`.
    #[test]
    fn a_configured_pub_url_on_the_lan_needs_the_switch() {
        let id = peach_dyndns_protocol::identity::Keypair::generate().id();
        let table = |url: &str| {
            format!("[registration]\npub_id = \"{id}\"\nurl = \"{url}\"\ndomain = \"a.b\"\n")
        };
        for ok in [
            "https://dyndns.peach.dinosaur.is:8443/update",
            "http://24.12.12.12:8053/update",
            "http://dinosaur.is/update",
        ] {
            assert!(parse(&table(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:8053/update",
            "http://192.168.1.10/update",
            "https://10.0.0.1/update",
            "http://[::1]/update",
            "http://pub.lan/update",
        ] {
            let err = parse(&table(bad)).expect_err(bad).to_string();
            assert!(
                err.contains("registration.url") && err.contains("allow_private_pub_urls"),
                "{bad}: {err}"
            );
            let allowed = table(bad) + "[sbot]\nallow_private_pub_urls = true\n";
            assert!(parse(&allowed).is_ok(), "{bad} with the switch");
        }
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

    /// A syntax or type error carries toml's own position and line, as
    /// well as the key.
    #[test]
    fn parse_errors_carry_tomls_position() {
        let err = parse("[dns]\ntimeout_secs = 18446744073709551615")
            .expect_err("too large for TOML")
            .to_string();
        assert!(err.contains("key `dns.timeout_secs`"), "{err}");
        assert!(err.contains("line 2, column 16"), "{err}");
        let err = parse("[ip]\necho_urls = [\"ftp://x\"]")
            .expect_err("not http")
            .to_string();
        assert!(err.contains("key `ip.echo_urls`"), "{err}");
        assert!(err.contains("is not an http or https URL"), "{err}");
        let err = parse("x = [1").expect_err("unclosed").to_string();
        assert!(err.contains("line 1, column 7"), "{err}");
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
            check_interval: Duration::from_secs(u64::MAX),
            refresh_interval: Duration::from_secs(u64::MAX),
            backoff_min: Duration::from_secs(u64::MAX),
            backoff_max: Duration::from_secs(u64::MAX),
            http_timeout: Duration::from_secs(u64::MAX),
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
        raw.check_interval_override = Some(Duration::from_millis(u64::MAX));
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
}
