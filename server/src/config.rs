//! The server's TOML configuration: `load(path)` → [`Config::from_str`] →
//! validated, typed values. A bad config names the file, the key and what
//! is wrong.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use peach_dyndns_protocol::identity::PublicKey;
use peach_dyndns_protocol::rules;
use serde::Deserialize;

/// The default config path of the Debian package.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/peach-dyndns/server.toml";

/// Errors loading the config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is not valid or has an unknown or mistyped key.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, which names the key and line.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("config file {path}: key `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The whole server config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The zone this pub serves, e.g. `peach.dinosaur.is`.
    pub domain: String,
    /// HTTP listen address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The pub's SSB secret file: the key updates are sealed to, and the
    /// identity the server uses towards ssb-server.
    #[serde(default = "default_secret")]
    pub secret: PathBuf,
    /// The registry database (SQLite).
    #[serde(default = "default_database")]
    pub database: PathBuf,
    /// TTL of the records the server writes, in seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// How many names one key may hold.
    #[serde(default = "default_max_names")]
    pub max_names_per_key: u32,
    /// Seconds an ACME challenge's TXT values live unless `acme_clear`
    /// removes them sooner (the sweep removes them, also after a restart).
    #[serde(default = "default_acme_lifetime")]
    pub acme_lifetime_secs: u64,
    /// Labels refused besides the built-in ones (`ns`, `ns1`, `ns2`, `www`, `mail`).
    #[serde(default)]
    pub reserved: Vec<String>,
    /// Accept addresses that are not globally routable (tests, LAN setups).
    #[serde(default)]
    pub allow_private_addresses: bool,
    /// Proxies whose `X-Forwarded-For` is believed by `GET /ip`.
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
    /// The public URL of `POST /update`, published in the announcement.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The unix socket through which `revoke` and `reset-seq` reach the
    /// running server (systemd's `RuntimeDirectory=` makes its folder).
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    /// DNS backend.
    #[serde(default)]
    pub dns: DnsConfig,
    /// Social graph backend.
    #[serde(default)]
    pub graph: GraphConfig,
    /// Rate limits.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Deadlines and caps of HTTP connections.
    #[serde(default)]
    pub http: HttpConfig,
}

/// `[http]`: deadlines and caps of HTTP connections, in the config's units.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Seconds a client has to send a request's head; on a keep-alive
    /// connection also the idle time allowed between requests.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's body (at most 4 KiB).
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Open connections at most. Keep it well below the service's
    /// file-descriptor limit (1,024 by systemd's default): DNS updates,
    /// sbot and SQLite need descriptors too.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections one source (an IPv4 address or an IPv6 /64) may
    /// hold at once.
    #[serde(default = "default_max_per_source")]
    pub max_connections_per_source: usize,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            header_timeout_secs: default_header_timeout(),
            body_timeout_secs: default_body_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_source: default_max_per_source(),
        }
    }
}

fn default_header_timeout() -> u64 {
    10
}
fn default_body_timeout() -> u64 {
    10
}
fn default_max_connections() -> usize {
    512
}
fn default_max_per_source() -> usize {
    32
}

/// The HTTP limits as the server uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// See [`HttpConfig::header_timeout_secs`].
    pub header_timeout: Duration,
    /// See [`HttpConfig::body_timeout_secs`].
    pub body_timeout: Duration,
    /// See [`HttpConfig::max_connections`].
    pub max_connections: usize,
    /// See [`HttpConfig::max_connections_per_source`].
    pub max_connections_per_source: usize,
}

impl HttpConfig {
    /// The limits, as durations.
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
        }
    }
}

fn default_listen() -> SocketAddr {
    // 8053: an unprivileged port that reads as "DNS over HTTP-ish" and is
    // the one the design's announcement example uses.
    SocketAddr::from(([0, 0, 0, 0], 8053))
}
fn default_secret() -> PathBuf {
    PathBuf::from("/var/lib/ssb-server/.ssb/secret")
}
fn default_control_socket() -> PathBuf {
    PathBuf::from("/run/peach-dyndns-server/control.sock")
}
fn default_database() -> PathBuf {
    PathBuf::from("/var/lib/peach-dyndns-server/registry.sqlite3")
}
fn default_ttl() -> u32 {
    // One minute: a home address change shows within a minute, and the
    // query load on the pub stays small.
    60
}
fn default_max_names() -> u32 {
    1
}
fn default_acme_lifetime() -> u64 {
    // Ten minutes: an ACME order's validation takes seconds; values left
    // by a client that died mid-order go soon after.
    600
}

/// Which DNS backend writes the zone.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "backend", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DnsConfig {
    /// The server answers DNS for its zone itself.
    Embedded {
        /// UDP and TCP listen address.
        #[serde(default = "default_dns_listen")]
        listen: SocketAddr,
        /// The zone's name servers (NS records); default `ns1.<domain>`.
        #[serde(default)]
        nameservers: Vec<String>,
        /// The SOA contact mailbox as a name; default `hostmaster.<domain>`.
        #[serde(default)]
        hostmaster: Option<String>,
    },
    /// RFC 2136 to the local BIND with its session key (`nsupdate -l`).
    BindLocal {
        /// BIND's address; default 127.0.0.1:53.
        #[serde(default = "default_bind_server")]
        server: SocketAddr,
        /// BIND's session key file.
        #[serde(default = "default_session_key")]
        session_key: PathBuf,
    },
    /// Spawns `nsupdate -l` for each change.
    Nsupdate {
        /// The `nsupdate` program.
        #[serde(default = "default_nsupdate")]
        program: PathBuf,
        /// BIND's port (`-p`).
        #[serde(default = "default_dns_port")]
        port: u16,
        /// BIND's session key file (`-k`).
        #[serde(default = "default_session_key")]
        session_key: PathBuf,
    },
    /// RFC 2136 to any server with a named TSIG key.
    Rfc2136 {
        /// The server's address.
        server: SocketAddr,
        /// The TSIG key's name.
        key_name: String,
        /// `hmac-sha256`, `hmac-sha384` or `hmac-sha512`.
        #[serde(default = "default_algorithm")]
        key_algorithm: String,
        /// A file holding the base64 secret, or a BIND `key { … }` block.
        key_file: PathBuf,
    },
}

impl Default for DnsConfig {
    fn default() -> DnsConfig {
        DnsConfig::Embedded {
            listen: default_dns_listen(),
            nameservers: Vec::new(),
            hostmaster: None,
        }
    }
}

fn default_dns_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 53))
}
fn default_bind_server() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 53))
}
fn default_session_key() -> PathBuf {
    PathBuf::from("/run/named/session.key")
}
fn default_nsupdate() -> PathBuf {
    PathBuf::from("nsupdate")
}
fn default_dns_port() -> u16 {
    53
}
fn default_algorithm() -> String {
    "hmac-sha256".into()
}

/// Who may update.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "backend", rename_all = "kebab-case", deny_unknown_fields)]
pub enum GraphConfig {
    /// Keys listed here.
    Allowlist {
        /// SSB ids allowed to update.
        #[serde(default)]
        allow: Vec<String>,
    },
    /// Whom the pub follows, asked of its ssb-server over muxrpc.
    Ssb {
        /// ssb-server's muxrpc address.
        #[serde(default = "default_sbot_addr")]
        addr: SocketAddr,
        /// ssb-server's id; default the id in `secret` (the pub's own sbot).
        #[serde(default)]
        server_id: Option<String>,
        /// How long an answer is believed, in seconds.
        #[serde(default = "default_cache_secs")]
        cache_seconds: u64,
    },
}

impl Default for GraphConfig {
    fn default() -> GraphConfig {
        GraphConfig::Ssb {
            addr: default_sbot_addr(),
            server_id: None,
            cache_seconds: default_cache_secs(),
        }
    }
}

fn default_sbot_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8008))
}
fn default_cache_secs() -> u64 {
    // Short enough that an unfollow or block takes effect within a minute,
    // long enough that a burst of updates asks sbot once.
    30
}

/// Rate limits.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Accepted updates a minute per key.
    #[serde(default = "default_per_key")]
    pub per_key_per_minute: u32,
    /// Burst per key.
    #[serde(default = "default_burst")]
    pub per_key_burst: u32,
    /// Requests a minute per source address that fail before the signature
    /// is verified, so garbage cannot burn the CPU.
    #[serde(default = "default_per_ip")]
    pub failures_per_ip_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            per_key_per_minute: default_per_key(),
            per_key_burst: default_burst(),
            failures_per_ip_per_minute: default_per_ip(),
        }
    }
}

fn default_per_key() -> u32 {
    10
}
fn default_burst() -> u32 {
    5
}
fn default_per_ip() -> u32 {
    60
}

impl Config {
    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_str(&text, path)
    }

    /// Parses and validates config text; `path` is only for messages.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |key, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        config.domain = rules::normalize_domain(&config.domain);
        if config.domain.is_empty()
            || config
                .domain
                .split('.')
                .any(|label| rules::check_label(label).is_err())
        {
            return Err(invalid(
                "domain",
                format!("{:?} is not a domain name of valid labels", config.domain),
            ));
        }
        if config.ttl == 0 || config.ttl > 86_400 {
            return Err(invalid("ttl", "must be between 1 and 86400 seconds".into()));
        }
        if config.acme_lifetime_secs == 0 || config.acme_lifetime_secs > 86_400 {
            return Err(invalid(
                "acme_lifetime_secs",
                "must be between 1 and 86400 seconds".into(),
            ));
        }
        if config.max_names_per_key == 0 {
            return Err(invalid("max_names_per_key", "must be at least 1".into()));
        }
        for name in &config.reserved {
            if let Err(e) = rules::check_label(name) {
                return Err(invalid("reserved", e.to_string()));
            }
        }
        if let GraphConfig::Allowlist { allow } = &config.graph {
            for id in allow {
                if let Err(e) = id.parse::<PublicKey>() {
                    return Err(invalid("graph.allow", e.to_string()));
                }
            }
        }
        if let GraphConfig::Ssb {
            server_id: Some(id),
            ..
        } = &config.graph
        {
            if let Err(e) = id.parse::<PublicKey>() {
                return Err(invalid("graph.server_id", e.to_string()));
            }
        }
        if let DnsConfig::Rfc2136 { key_algorithm, .. } = &config.dns {
            if !["hmac-sha256", "hmac-sha384", "hmac-sha512"].contains(&key_algorithm.as_str()) {
                return Err(invalid(
                    "dns.key_algorithm",
                    format!("{key_algorithm:?}: use hmac-sha256, hmac-sha384 or hmac-sha512"),
                ));
            }
        }
        let http = &config.http;
        for (key, secs) in [
            ("http.header_timeout_secs", http.header_timeout_secs),
            ("http.body_timeout_secs", http.body_timeout_secs),
        ] {
            if secs == 0 || secs > 3600 {
                return Err(invalid(key, "must be between 1 and 3600 seconds".into()));
            }
        }
        if http.max_connections == 0 || http.max_connections > 65_536 {
            return Err(invalid(
                "http.max_connections",
                "must be between 1 and 65536".into(),
            ));
        }
        if http.max_connections_per_source == 0
            || http.max_connections_per_source > http.max_connections
        {
            return Err(invalid(
                "http.max_connections_per_source",
                "must be at least 1 and at most http.max_connections".into(),
            ));
        }
        let rl = &config.rate_limit;
        if rl.per_key_per_minute == 0 || rl.per_key_burst == 0 || rl.failures_per_ip_per_minute == 0
        {
            return Err(invalid("rate_limit", "limits must be at least 1".into()));
        }
        if let Some(url) = &config.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "public_url",
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        for label in config.own_labels() {
            if !config.reserved.contains(&label) {
                config.reserved.push(label);
            }
        }
        Ok(config)
    }

    /// The labels of the zone that name the pub's own machinery and so can
    /// never be registered: the label under the zone of every in-zone
    /// name server of the config and of the `public_url` host (e.g.
    /// `dyndns` for `https://dyndns.peach.dinosaur.is:8443/update`).
    pub fn own_labels(&self) -> Vec<String> {
        let zone = rules::normalize_domain(&self.domain);
        let mut hosts: Vec<String> = match &self.dns {
            DnsConfig::Embedded { nameservers, .. } => nameservers.clone(),
            _ => Vec::new(),
        };
        if let Some(url) = &self.public_url {
            let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
            let host = rest.split(['/', ':', '?', '#']).next().unwrap_or("");
            hosts.push(host.to_string());
        }
        let suffix = format!(".{zone}");
        let mut labels = Vec::new();
        for host in hosts {
            let host = rules::normalize_domain(&host);
            if let Some(inside) = host.strip_suffix(&suffix) {
                if let Some(label) = inside.rsplit('.').next() {
                    if !label.is_empty() && !labels.iter().any(|l| l == label) {
                        labels.push(label.to_string());
                    }
                }
            }
        }
        labels
    }

    /// How long a social-graph answer is cached.
    pub fn graph_cache(&self) -> Duration {
        match &self.graph {
            GraphConfig::Ssb { cache_seconds, .. } => Duration::from_secs(*cache_seconds),
            GraphConfig::Allowlist { .. } => Duration::ZERO,
        }
    }

    /// The update URL to announce.
    /// The `peach-dyndns` announcement of the pub `pub_id`: published on
    /// the pub's SSB feed and served at `/.well-known/peach-dyndns`.
    pub fn announcement(&self, pub_id: &str) -> serde_json::Value {
        serde_json::json!({
            "type": "peach-dyndns",
            "domain": self.domain,
            "url": self.announced_url(),
            "ttl": self.ttl,
            "pub_id": pub_id,
        })
    }

    /// The update URL announced to Pis.
    pub fn announced_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}/update", self.domain, self.listen.port()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_str(text, Path::new("/etc/peach-dyndns/server.toml"))
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse("domain = \"Peach.Dinosaur.is.\"").expect("valid");
        assert_eq!(c.domain, "peach.dinosaur.is");
        assert_eq!(c.ttl, 60);
        assert_eq!(c.max_names_per_key, 1);
        assert!(matches!(c.dns, DnsConfig::Embedded { .. }));
        assert!(matches!(c.graph, GraphConfig::Ssb { .. }));
        assert_eq!(c.rate_limit.per_key_per_minute, 10);
        assert_eq!(c.announced_url(), "http://peach.dinosaur.is:8053/update");
    }

    #[test]
    fn in_zone_nameservers_and_the_public_host_are_reserved() {
        let c = parse(
            "domain = \"peach.dinosaur.is\"\n\
             public_url = \"https://dyndns.peach.dinosaur.is:8443/update\"\n\
             [dns]\nbackend = \"embedded\"\n\
             nameservers = [\"a.dns.Peach.Dinosaur.is.\", \"ns.elsewhere.org\", \"pub.peach.dinosaur.is\"]",
        )
        .expect("valid");
        for label in ["dns", "pub", "dyndns"] {
            assert!(
                c.reserved.iter().any(|r| r == label),
                "{label}: {:?}",
                c.reserved
            );
        }
        assert!(
            !c.reserved.iter().any(|r| r == "elsewhere" || r == "a"),
            "{:?}",
            c.reserved
        );
        assert!(rules::check_name("pub", &c.reserved).is_err());
        assert!(rules::check_name("eb4890", &c.reserved).is_ok());
    }

    #[test]
    fn http_limits_have_defaults_and_bounds() {
        let c = parse("domain = \"a.b\"").expect("valid");
        let l = c.http.limits();
        assert_eq!(l.header_timeout, Duration::from_secs(10));
        assert_eq!((l.max_connections, l.max_connections_per_source), (512, 32));
        for (bad, key) in [
            (
                "[http]\nheader_timeout_secs = 0",
                "http.header_timeout_secs",
            ),
            (
                "[http]\nbody_timeout_secs = 99999999999",
                "http.body_timeout_secs",
            ),
            ("[http]\nmax_connections = 0", "http.max_connections"),
            (
                "[http]\nmax_connections = 10\nmax_connections_per_source = 11",
                "http.max_connections_per_source",
            ),
        ] {
            let err = parse(&format!("domain = \"a.b\"\n{bad}"))
                .expect_err(bad)
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn backends_parse() {
        let c = parse(
            "domain = \"a.b\"\n[dns]\nbackend = \"rfc2136\"\nserver = \"127.0.0.1:5353\"\n\
             key_name = \"k\"\nkey_file = \"/k\"\n[graph]\nbackend = \"allowlist\"\nallow = []",
        )
        .expect("valid");
        assert!(matches!(c.dns, DnsConfig::Rfc2136 { .. }));
        assert_eq!(c.graph, GraphConfig::Allowlist { allow: vec![] });
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let cases = [
            ("domain = \"a.b\"\nttl = 0", "key `ttl`"),
            ("domain = \"a..b\"", "key `domain`"),
            ("domain = \"a.b\"\nbogus = 1", "bogus"),
            (
                "domain = \"a.b\"\n[graph]\nbackend = \"allowlist\"\nallow = [\"x\"]",
                "graph.allow",
            ),
            (
                "domain = \"a.b\"\n[dns]\nbackend = \"carrier-pigeon\"",
                "carrier-pigeon",
            ),
            ("domain = \"a.b\"\nreserved = [\"A!\"]", "key `reserved`"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains("/etc/peach-dyndns/server.toml"), "{err}");
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
