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
    /// The zone is signed (DNSSEC) by the BIND the `bind-local`,
    /// `nsupdate` or `rfc2136` backend writes to (`init --dnssec`):
    /// `check` then asks it for signatures. With the `embedded` backend the
    /// signing secondaries are marked `signs = true` instead.
    #[serde(default)]
    pub dnssec: bool,
    /// What happens to the names of keys the pub stops following.
    #[serde(default)]
    pub grace: GraceConfig,
    /// The pub's own HTTPS listener; none when the table is absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `[grace]`: a key that holds names and that the pub no longer follows
/// (or blocks) keeps its names resolving for a grace, then they stop
/// resolving, and after a second grace they are free for anyone.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GraceConfig {
    /// Seconds from when the server sees a key unfollowed until its names
    /// stop resolving (default 7 days).
    #[serde(default = "default_week")]
    pub unfollowed_secs: u64,
    /// The same for a key the pub blocks (default 7 days; 0: at the next
    /// check).
    #[serde(default = "default_week")]
    pub blocked_secs: u64,
    /// Seconds from when the names stopped resolving until they are freed
    /// (default 7 days).
    #[serde(default = "default_week")]
    pub free_after_secs: u64,
    /// How often the server asks the graph about every key holding names
    /// (default 600 s).
    #[serde(default = "default_grace_check")]
    pub check_every_secs: u64,
}

impl Default for GraceConfig {
    fn default() -> GraceConfig {
        GraceConfig {
            unfollowed_secs: default_week(),
            blocked_secs: default_week(),
            free_after_secs: default_week(),
            check_every_secs: default_grace_check(),
        }
    }
}

fn default_week() -> u64 {
    7 * 86_400
}
fn default_grace_check() -> u64 {
    600
}

/// `[tls]`: HTTPS on its own listen address, beside plain HTTP on
/// `listen` (which routers' `/nic/update` and `/ip` keep using). The same
/// routes, deadlines and per-source caps as plain HTTP.
///
/// The certificate comes from files (`certificate` and `key`, e.g.
/// certbot's, reloaded when they change), or with `acme = true` from an
/// ACME CA: the server then answers its own DNS-01 challenge in its zone
/// for `public_url`'s host (one label under `domain`), writes the files
/// under `<database's directory>/tls/` and renews them by itself.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// HTTPS listen address.
    #[serde(default = "default_tls_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain: the server's certificate first, then the
    /// intermediates (certbot's `fullchain.pem`). With `acme = true` it is
    /// `<database's directory>/tls/fullchain.pem` and may not be set.
    #[serde(default)]
    pub certificate: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1;
    /// certbot's `privkey.pem`). With `acme = true`,
    /// `<database's directory>/tls/privkey.pem`.
    #[serde(default)]
    pub key: PathBuf,
    /// Seconds between looks at the two files; a changed file (mtime,
    /// size, inode, as certbot's renewal changes them) is loaded again.
    #[serde(default = "default_tls_reload")]
    pub reload_interval_secs: u64,
    /// Get and renew the certificate for `public_url`'s host from an ACME
    /// CA, answering the DNS-01 challenge in the server's own zone.
    #[serde(default)]
    pub acme: bool,
    /// The CA's RFC 8555 directory (`https://` only).
    #[serde(default = "default_acme_directory")]
    pub acme_directory_url: String,
    /// A contact address for the CA's expiry mails (optional).
    #[serde(default)]
    pub acme_email: Option<String>,
    /// Extra root certificates (PEM) trusted for the CA's own HTTPS,
    /// besides the webpki roots: a private CA, or Pebble in tests.
    #[serde(default)]
    pub acme_ca_file: Option<PathBuf>,
    /// Renew this many days before the certificate's notAfter.
    #[serde(default = "default_renew_before_days")]
    pub acme_renew_before_days: u32,
}

impl TlsConfig {
    /// How often the certificate files are looked at.
    pub fn reload_interval(&self) -> Duration {
        Duration::from_secs(self.reload_interval_secs)
    }

    /// With `acme = true`: where the certificate, its key and the ACME
    /// account are kept (`<database's directory>/tls`).
    pub fn acme_dir(&self) -> Option<&Path> {
        self.acme.then(|| self.certificate.parent()).flatten()
    }
}

/// Let's Encrypt's production directory: the default CA of `tls.acme`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

fn default_acme_directory() -> String {
    LETS_ENCRYPT.to_string()
}
fn default_renew_before_days() -> u32 {
    // Let's Encrypt's own advice for 90-day certificates.
    30
}

fn default_tls_listen() -> SocketAddr {
    // 8443: unprivileged, and the usual "second HTTPS port".
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_tls_reload() -> u64 {
    // A renewal shows within seconds; a stat of two files every 5 s costs nothing.
    5
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
        /// Addresses of the name servers inside the zone (their A/AAAA
        /// records, so resolvers need no glue from the parent), e.g.
        /// `{ "ns1.peach.dinosaur.is" = ["192.0.2.53", "2001:db8::53"] }`:
        /// at most one IPv4 and one IPv6 address each.
        #[serde(default)]
        nameserver_addresses: std::collections::BTreeMap<String, Vec<IpAddr>>,
        /// The SOA contact mailbox as a name; default `hostmaster.<domain>`.
        #[serde(default)]
        hostmaster: Option<String>,
        /// Secondaries (`[[dns.secondaries]]`): they may transfer the zone
        /// (AXFR/IXFR) and get NOTIFY after every change; every other
        /// address is refused transfers.
        #[serde(default)]
        secondaries: Vec<SecondaryConfig>,
        /// Where the SOA serial's high-water mark is kept, so the serial
        /// never goes back across restarts; default `embedded-dns.serial`
        /// beside `database`.
        #[serde(default)]
        serial_file: Option<PathBuf>,
        /// `[dns.limits]`: what one source may take of the server.
        #[serde(default)]
        limits: DnsLimitsConfig,
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
            nameserver_addresses: Default::default(),
            hostmaster: None,
            secondaries: Vec::new(),
            serial_file: None,
            limits: DnsLimitsConfig::default(),
        }
    }
}

/// `[dns.limits]` of the embedded backend: response rate limiting of UDP
/// answers (as BIND's `rate-limit`) and the caps on TCP connections, in
/// the config's units.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DnsLimitsConfig {
    /// UDP answers a second to one source prefix (an IPv4 /24, an IPv6
    /// /56) before the rest are dropped; also the burst allowed at once.
    #[serde(default = "default_rrl_per_second")]
    pub rrl_per_second: u32,
    /// Of the answers dropped, every this-many-th is sent empty with TC
    /// set, so a real client behind the prefix retries over TCP (BIND's
    /// `slip`); 0 sends none.
    #[serde(default = "default_rrl_slip")]
    pub rrl_slip: u32,
    /// TCP connections served at once; more are accepted and closed.
    #[serde(default = "default_max_tcp_connections")]
    pub max_tcp_connections: usize,
    /// TCP connections one source (an IPv4 address or an IPv6 /64) may
    /// hold at once.
    #[serde(default = "default_max_tcp_per_source")]
    pub max_tcp_per_source: usize,
    /// Seconds a TCP connection may sit without a query before it is closed.
    #[serde(default = "default_tcp_idle_timeout")]
    pub tcp_idle_timeout_secs: u64,
}

impl Default for DnsLimitsConfig {
    fn default() -> DnsLimitsConfig {
        DnsLimitsConfig {
            rrl_per_second: default_rrl_per_second(),
            rrl_slip: default_rrl_slip(),
            max_tcp_connections: default_max_tcp_connections(),
            max_tcp_per_source: default_max_tcp_per_source(),
            tcp_idle_timeout_secs: default_tcp_idle_timeout(),
        }
    }
}

fn default_rrl_per_second() -> u32 {
    // BIND's documentation suggests 5–20 for an authoritative server;
    // resolvers cache our answers for the TTL, so 20 is generous.
    20
}
fn default_rrl_slip() -> u32 {
    // BIND's default `slip 2`: every second dropped answer goes out empty
    // with TC, no larger than the query, so no amplification.
    2
}
fn default_max_tcp_connections() -> usize {
    // Below BIND's default `tcp-clients` (150): a flood of idle
    // connections cannot use up memory or descriptors.
    128
}
fn default_max_tcp_per_source() -> usize {
    // A resolver needs one or two; eight leaves room for a NAT.
    8
}
fn default_tcp_idle_timeout() -> u64 {
    // RFC 7766 §6.2.3 asks servers to close idle connections; BIND waits
    // 30 s, but our answers are single queries from resolvers, so 10 s
    // keeps slots free.
    10
}

/// The embedded DNS's limits as the server uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsLimits {
    /// See [`DnsLimitsConfig::rrl_per_second`].
    pub rrl_per_second: u32,
    /// See [`DnsLimitsConfig::rrl_slip`].
    pub rrl_slip: u32,
    /// See [`DnsLimitsConfig::max_tcp_connections`].
    pub max_tcp_connections: usize,
    /// See [`DnsLimitsConfig::max_tcp_per_source`].
    pub max_tcp_per_source: usize,
    /// See [`DnsLimitsConfig::tcp_idle_timeout_secs`].
    pub tcp_idle_timeout: Duration,
}

impl Default for DnsLimits {
    fn default() -> DnsLimits {
        DnsLimitsConfig::default().limits()
    }
}

impl DnsLimitsConfig {
    /// The limits, with the timeout as a duration.
    pub fn limits(&self) -> DnsLimits {
        DnsLimits {
            rrl_per_second: self.rrl_per_second,
            rrl_slip: self.rrl_slip,
            max_tcp_connections: self.max_tcp_connections,
            max_tcp_per_source: self.max_tcp_per_source,
            tcp_idle_timeout: Duration::from_secs(self.tcp_idle_timeout_secs),
        }
    }
}

/// `[dns.limits]`: each value within its bounds.
fn check_dns_limits(
    config: &Config,
    invalid: &dyn Fn(&'static str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let DnsConfig::Embedded { limits, .. } = &config.dns else {
        return Ok(());
    };
    // 1000: BIND's own ceiling for `responses-per-second`.
    if limits.rrl_per_second == 0 || limits.rrl_per_second > 1000 {
        return Err(invalid(
            "dns.limits.rrl_per_second",
            "must be between 1 and 1000".into(),
        ));
    }
    // 10: BIND's ceiling for `slip`.
    if limits.rrl_slip > 10 {
        return Err(invalid(
            "dns.limits.rrl_slip",
            "must be between 0 (never) and 10".into(),
        ));
    }
    if limits.max_tcp_connections == 0 || limits.max_tcp_connections > 65_536 {
        return Err(invalid(
            "dns.limits.max_tcp_connections",
            "must be between 1 and 65536".into(),
        ));
    }
    if limits.max_tcp_per_source == 0 || limits.max_tcp_per_source > limits.max_tcp_connections {
        return Err(invalid(
            "dns.limits.max_tcp_per_source",
            "must be at least 1 and at most dns.limits.max_tcp_connections".into(),
        ));
    }
    // 300: past five minutes an idle connection only holds a slot.
    if limits.tcp_idle_timeout_secs == 0 || limits.tcp_idle_timeout_secs > 300 {
        return Err(invalid(
            "dns.limits.tcp_idle_timeout_secs",
            "must be between 1 and 300 seconds".into(),
        ));
    }
    Ok(())
}

/// `dns.nameserver_addresses`: each key one of the zone's name servers,
/// one label directly under the zone, with at most one address per family.
fn check_nameserver_addresses(
    config: &Config,
    invalid: &dyn Fn(&'static str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let DnsConfig::Embedded {
        nameservers,
        nameserver_addresses,
        ..
    } = &config.dns
    else {
        return Ok(());
    };
    let key = "dns.nameserver_addresses";
    let zone = config.domain.trim_end_matches('.').to_ascii_lowercase();
    let default_ns = format!("ns1.{zone}");
    for (host, addrs) in nameserver_addresses {
        let host_lc = host.trim_end_matches('.').to_ascii_lowercase();
        let listed = if nameservers.is_empty() {
            host_lc == default_ns
        } else {
            nameservers
                .iter()
                .any(|ns| ns.trim_end_matches('.').eq_ignore_ascii_case(&host_lc))
        };
        if !listed {
            return Err(invalid(
                key,
                format!("{host:?} is not one of the zone's nameservers"),
            ));
        }
        let label = host_lc.strip_suffix(&format!(".{zone}"));
        if !label.is_some_and(|l| !l.is_empty() && !l.contains('.')) {
            return Err(invalid(
                key,
                format!(
                    "{host:?} is not a name directly under {zone}: only in-zone name servers \
                     need (and can have) their addresses here"
                ),
            ));
        }
        let v4 = addrs.iter().filter(|a| a.is_ipv4()).count();
        let v6 = addrs.len() - v4;
        if addrs.is_empty() || v4 > 1 || v6 > 1 {
            return Err(invalid(
                key,
                format!("{host:?}: give one IPv4 address, one IPv6 address, or one of each"),
            ));
        }
    }
    Ok(())
}

/// One `[[dns.secondaries]]` entry of the embedded backend.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecondaryConfig {
    /// The secondary's DNS address: NOTIFY goes there, and transfers are
    /// allowed from its IP (any source port).
    pub address: SocketAddr,
    /// A BIND `key` statement file (`tsig-keygen -a hmac-sha256 NAME`): the
    /// secondary must sign its transfer requests with it, and the answers
    /// and NOTIFYs are signed with it.
    #[serde(default)]
    pub tsig_key: Option<PathBuf>,
    /// The key's name in `tsig_key`, when the file holds several.
    #[serde(default)]
    pub tsig_key_name: Option<String>,
    /// This secondary signs the zone it receives (BIND `dnssec-policy`
    /// with `inline-signing yes`): `check` asks it for signatures.
    #[serde(default)]
    pub signs: bool,
}

/// The file name of the embedded DNS's serial mark beside the database.
pub const SERIAL_FILE_NAME: &str = "embedded-dns.serial";

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
        let grace = &config.grace;
        // Ten years: beyond that a grace is a typo, and ms arithmetic on
        // it stays far from overflowing.
        const MAX_GRACE: u64 = 10 * 366 * 86_400;
        for (key, secs) in [
            ("grace.unfollowed_secs", grace.unfollowed_secs),
            ("grace.blocked_secs", grace.blocked_secs),
            ("grace.free_after_secs", grace.free_after_secs),
        ] {
            if secs > MAX_GRACE {
                return Err(invalid(key, format!("{secs} is more than ten years")));
            }
        }
        if grace.check_every_secs == 0 || grace.check_every_secs > 86_400 {
            return Err(invalid(
                "grace.check_every_secs",
                "must be between 1 and 86400 seconds".into(),
            ));
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
        validate_tls(&mut config, &invalid)?;
        if let Some(url) = &config.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "public_url",
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        validate_secondaries(&mut config, &invalid)?;
        for label in config.own_labels() {
            if !config.reserved.contains(&label) {
                config.reserved.push(label);
            }
        }
        Ok(config)
    }

    /// The embedded backend's secondaries (none for the other backends).
    pub fn secondaries(&self) -> &[SecondaryConfig] {
        match &self.dns {
            DnsConfig::Embedded { secondaries, .. } => secondaries,
            _ => &[],
        }
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

    /// The update URL announced to Pis: `public_url`, or else the HTTPS
    /// port when `[tls]` is set, or else the plain HTTP port.
    pub fn announced_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| match &self.tls {
            Some(tls) => format!("https://{}:{}/update", self.domain, tls.listen.port()),
            None => format!("http://{}:{}/update", self.domain, self.listen.port()),
        })
    }

    /// With `tls.acme = true`: the label of `public_url`'s host, whose
    /// `_acme-challenge` the server sets in its own zone.
    pub fn own_acme_label(&self) -> Option<String> {
        self.tls.as_ref().filter(|tls| tls.acme)?;
        let host = self.public_host()?;
        label_under(&host, &self.domain).map(str::to_string)
    }

    /// The host of `public_url`, lower case, without a port (brackets of
    /// an IPv6 literal removed): the name the HTTPS certificate must cover.
    pub fn public_host(&self) -> Option<String> {
        let url = self.public_url.as_deref()?;
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            authority.split(':').next().unwrap_or("")
        };
        (!host.is_empty()).then(|| rules::normalize_domain(host))
    }
}

/// `host`'s first label when `host` is exactly one label under `domain`.
fn label_under<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    host.strip_suffix(domain)?
        .strip_suffix('.')
        .filter(|label| !label.is_empty() && !label.contains('.'))
}

/// Checks `[tls]`: its port, its interval, a certificate from files or
/// from ACME (then filling in the files' paths beside the database).
fn validate_tls(
    config: &mut Config,
    invalid: &dyn Fn(&'static str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let listen = config.listen;
    let host = config.public_host();
    let domain = config.domain.clone();
    let database = config.database.clone();
    let public_url = config.public_url.clone();
    let Some(tls) = &mut config.tls else {
        return Ok(());
    };
    if tls.reload_interval_secs == 0 || tls.reload_interval_secs > 86_400 {
        return Err(invalid(
            "tls.reload_interval_secs",
            "must be between 1 and 86400 seconds".into(),
        ));
    }
    if tls.listen == listen
        || (tls.listen.port() == listen.port()
            && (tls.listen.ip().is_unspecified() || listen.ip().is_unspecified()))
    {
        return Err(invalid(
            "tls.listen",
            format!(
                "{} overlaps `listen` ({listen}): plain HTTP and HTTPS need their own ports",
                tls.listen
            ),
        ));
    }
    if !tls.acme {
        for (key, path) in [("tls.certificate", &tls.certificate), ("tls.key", &tls.key)] {
            if path.as_os_str().is_empty() {
                return Err(invalid(
                    key,
                    "missing: name the PEM file (or set tls.acme = true)".into(),
                ));
            }
        }
        return Ok(());
    }
    for (key, path) in [("tls.certificate", &tls.certificate), ("tls.key", &tls.key)] {
        if !path.as_os_str().is_empty() {
            return Err(invalid(
                key,
                "not with tls.acme = true: the certificate and key are written to the \
                 `tls` directory beside `database`"
                    .into(),
            ));
        }
    }
    match (&public_url, &host) {
        (Some(url), Some(host)) => {
            label_under(host, &domain).ok_or_else(|| {
                invalid(
                    "tls.acme",
                    format!(
                        "public_url {url:?}: its host must be one label under {domain} \
                         (e.g. https://dyndns.{domain}:{}/update), so the server can answer \
                         the DNS-01 challenge in its own zone; for another host use \
                         certificate files (certbot)",
                        tls.listen.port()
                    ),
                )
            })?;
        }
        _ => {
            return Err(invalid(
                "tls.acme",
                format!(
                    "needs public_url with a host one label under {domain} \
                     (e.g. https://dyndns.{domain}:{}/update)",
                    tls.listen.port()
                ),
            ))
        }
    };
    if !tls.acme_directory_url.starts_with("https://") {
        return Err(invalid(
            "tls.acme_directory_url",
            format!(
                "{:?} is not https:// (RFC 8555 §6.1)",
                tls.acme_directory_url
            ),
        ));
    }
    if tls.acme_renew_before_days == 0 || tls.acme_renew_before_days > 3650 {
        return Err(invalid(
            "tls.acme_renew_before_days",
            format!("{} is not between 1 and 3650", tls.acme_renew_before_days),
        ));
    }
    if let Some(email) = &tls.acme_email {
        if !peach_dyndns_acme::is_mail_address(email) {
            return Err(invalid(
                "tls.acme_email",
                format!("{email:?} is not a mail address"),
            ));
        }
    }
    let dir = database.parent().unwrap_or(Path::new("")).join("tls");
    tls.certificate = peach_dyndns_acme::order::fullchain_path(&dir);
    tls.key = peach_dyndns_acme::order::privkey_path(&dir);
    Ok(())
}

/// Checks `[[dns.secondaries]]` and `dnssec`, and fills in the serial
/// file's default path beside the database.
/// The other `[dns]` checks run from here too: `dns.nameserver_addresses`
/// and `[dns.limits]`.
fn validate_secondaries(
    config: &mut Config,
    invalid: &dyn Fn(&'static str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let database = config.database.clone();
    let dnssec = config.dnssec;
    check_nameserver_addresses(config, invalid)?;
    check_dns_limits(config, invalid)?;
    let DnsConfig::Embedded {
        secondaries,
        serial_file,
        ..
    } = &mut config.dns
    else {
        return Ok(());
    };
    if dnssec {
        return Err(invalid(
            "dnssec",
            "the embedded DNS does not sign; let a BIND secondary sign what it receives and \
             mark it `signs = true` under [[dns.secondaries]] (docs/operator.md, DNSSEC)"
                .into(),
        ));
    }
    for (i, secondary) in secondaries.iter().enumerate() {
        let address = secondary.address;
        if address.ip().is_unspecified() || address.port() == 0 {
            return Err(invalid(
                "dns.secondaries.address",
                format!("{address}: give the secondary's own address and port, e.g. 192.0.2.53:53"),
            ));
        }
        if secondaries[..i].iter().any(|s| {
            crate::addr::canonical_ip(s.address.ip()) == crate::addr::canonical_ip(address.ip())
        }) {
            return Err(invalid(
                "dns.secondaries.address",
                format!("{} is listed twice; one entry per secondary", address.ip()),
            ));
        }
        if secondary.tsig_key_name.is_some() && secondary.tsig_key.is_none() {
            return Err(invalid(
                "dns.secondaries.tsig_key_name",
                format!("{address}: tsig_key_name without tsig_key (the key file)"),
            ));
        }
    }
    if serial_file.is_none() {
        let dir = database.parent().unwrap_or(Path::new(""));
        *serial_file = Some(dir.join(SERIAL_FILE_NAME));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secondaries_parse_and_bad_ones_are_named() {
        let c = parse(
            "domain = \"a.b\"\ndatabase = \"/var/lib/x/registry.sqlite3\"\n\
             [dns]\nbackend = \"embedded\"\n\
             [[dns.secondaries]]\naddress = \"192.0.2.53:53\"\n\
             [[dns.secondaries]]\naddress = \"[2001:db8::53]:5300\"\ntsig_key = \"/etc/x.key\"\nsigns = true",
        )
        .expect("valid");
        assert_eq!(c.secondaries().len(), 2);
        assert!(c.secondaries()[1].signs);
        let DnsConfig::Embedded { serial_file, .. } = &c.dns else {
            panic!("embedded")
        };
        assert_eq!(
            serial_file.as_deref(),
            Some(Path::new("/var/lib/x/embedded-dns.serial"))
        );
        for (bad, key) in [
            ("address = \"0.0.0.0:53\"", "dns.secondaries.address"),
            (
                "address = \"192.0.2.1:53\"\n[[dns.secondaries]]\naddress = \"192.0.2.1:5353\"",
                "listed twice",
            ),
            (
                "address = \"192.0.2.1:53\"\ntsig_key_name = \"k\"",
                "tsig_key_name",
            ),
            ("address = \"192.0.2.1:53\"\nbogus = 1", "bogus"),
        ] {
            let text = format!(
                "domain = \"a.b\"\n[dns]\nbackend = \"embedded\"\n[[dns.secondaries]]\n{bad}"
            );
            let err = parse(&text).expect_err(bad).to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
        let err = parse("domain = \"a.b\"\ndnssec = true").expect_err("embedded does not sign");
        assert!(err.to_string().contains("signs = true"), "{err}");
        assert!(parse("domain = \"a.b\"\ndnssec = true\n[dns]\nbackend = \"bind-local\"").is_ok());
    }

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
    fn nameserver_addresses_are_for_in_zone_nameservers_only() {
        let ok = parse(
            "domain = \"peach.dinosaur.is\"\n[dns]\nbackend = \"embedded\"\n\
             nameservers = [\"ns1.peach.dinosaur.is\", \"ns.example.org\"]\n\
             nameserver_addresses = { \"ns1.peach.dinosaur.is\" = [\"192.0.2.53\", \"2001:db8::53\"] }\n",
        );
        assert!(ok.is_ok(), "{ok:?}");
        for (ns, addrs) in [
            ("ns.example.org", "[\"192.0.2.1\"]"),
            ("ns9.peach.dinosaur.is", "[\"192.0.2.1\"]"),
            ("ns1.peach.dinosaur.is", "[\"192.0.2.1\", \"192.0.2.2\"]"),
            ("ns1.peach.dinosaur.is", "[]"),
        ] {
            let text = format!(
                "domain = \"peach.dinosaur.is\"\n[dns]\nbackend = \"embedded\"\n\
                 nameservers = [\"ns1.peach.dinosaur.is\", \"ns.example.org\"]\n\
                 nameserver_addresses = {{ \"{ns}\" = {addrs} }}\n"
            );
            let err = parse(&text).expect_err(&text).to_string();
            assert!(err.contains("dns.nameserver_addresses"), "{err}");
        }
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
    fn dns_limits_have_defaults_and_bounds() {
        let c = parse("domain = \"a.b\"").expect("valid");
        let DnsConfig::Embedded { limits, .. } = &c.dns else {
            panic!("embedded")
        };
        let l = limits.limits();
        assert_eq!(l, DnsLimits::default());
        assert_eq!((l.rrl_per_second, l.rrl_slip), (20, 2));
        assert_eq!((l.max_tcp_connections, l.max_tcp_per_source), (128, 8));
        assert_eq!(l.tcp_idle_timeout, Duration::from_secs(10));
        let c = parse(
            "domain = \"a.b\"\n[dns]\nbackend = \"embedded\"\n[dns.limits]\n\
             rrl_per_second = 5\nrrl_slip = 0\nmax_tcp_connections = 4\n\
             max_tcp_per_source = 4\ntcp_idle_timeout_secs = 300",
        )
        .expect("valid");
        let DnsConfig::Embedded { limits, .. } = &c.dns else {
            panic!("embedded")
        };
        assert_eq!(
            limits.limits(),
            DnsLimits {
                rrl_per_second: 5,
                rrl_slip: 0,
                max_tcp_connections: 4,
                max_tcp_per_source: 4,
                tcp_idle_timeout: Duration::from_secs(300),
            }
        );
        for (bad, key) in [
            ("rrl_per_second = 0", "dns.limits.rrl_per_second"),
            ("rrl_per_second = 1001", "dns.limits.rrl_per_second"),
            ("rrl_slip = 11", "dns.limits.rrl_slip"),
            ("max_tcp_connections = 0", "dns.limits.max_tcp_connections"),
            (
                "max_tcp_connections = 65537",
                "dns.limits.max_tcp_connections",
            ),
            ("max_tcp_per_source = 0", "dns.limits.max_tcp_per_source"),
            (
                "max_tcp_connections = 4\nmax_tcp_per_source = 5",
                "dns.limits.max_tcp_per_source",
            ),
            (
                "tcp_idle_timeout_secs = 0",
                "dns.limits.tcp_idle_timeout_secs",
            ),
            (
                "tcp_idle_timeout_secs = 301",
                "dns.limits.tcp_idle_timeout_secs",
            ),
            ("rrl_window = 1", "rrl_window"),
        ] {
            let text =
                format!("domain = \"a.b\"\n[dns]\nbackend = \"embedded\"\n[dns.limits]\n{bad}");
            let err = parse(&text).expect_err(bad).to_string();
            assert!(err.contains(key), "{bad}: {err}");
            assert!(err.contains("/etc/peach-dyndns/server.toml"), "{err}");
        }
        // The limits are the embedded server's: other backends have none.
        let err =
            parse("domain = \"a.b\"\n[dns]\nbackend = \"bind-local\"\n[dns.limits]\nrrl_slip = 1")
                .expect_err("bind-local has no limits")
                .to_string();
        assert!(err.contains("limits"), "{err}");
    }

    #[test]
    fn tls_table_has_defaults_and_bounds() {
        let c = parse(
            "domain = \"a.b\"\npublic_url = \"https://Dyn.A.B:8443/update\"\n\
             [tls]\ncertificate = \"/c.pem\"\nkey = \"/k.pem\"",
        )
        .expect("valid");
        let tls = c.tls.as_ref().expect("tls");
        assert_eq!(tls.listen, "0.0.0.0:8443".parse().expect("addr"));
        assert_eq!(tls.reload_interval(), Duration::from_secs(5));
        assert_eq!(c.public_host().as_deref(), Some("dyn.a.b"));
        let c =
            parse("domain = \"a.b\"\n[tls]\ncertificate = \"/c\"\nkey = \"/k\"").expect("valid");
        assert_eq!(c.announced_url(), "https://a.b:8443/update");
        for (bad, want) in [
            ("[tls]\nkey = \"/k\"", "certificate"),
            (
                "[tls]\ncertificate = \"/c\"\nkey = \"/k\"\nreload_interval_secs = 0",
                "tls.reload_interval_secs",
            ),
            (
                "listen = \"0.0.0.0:8443\"\n[tls]\ncertificate = \"/c\"\nkey = \"/k\"",
                "tls.listen",
            ),
            (
                "[tls]\ncertificate = \"/c\"\nkey = \"/k\"\nacme = \"maybe\"",
                "acme",
            ),
        ] {
            let err = parse(&format!("domain = \"a.b\"\n{bad}"))
                .expect_err(bad)
                .to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn tls_acme_needs_a_host_one_label_under_the_zone() {
        let c = parse(
            "domain = \"peach.dinosaur.is\"\ndatabase = \"/var/lib/p/registry.sqlite3\"\n\
             public_url = \"https://dyndns.peach.dinosaur.is:8443/update\"\n\
             [tls]\nacme = true\nacme_email = \"ops@dinosaur.is\"",
        )
        .expect("valid");
        let tls = c.tls.as_ref().expect("tls");
        assert_eq!(tls.certificate, Path::new("/var/lib/p/tls/fullchain.pem"));
        assert_eq!(tls.key, Path::new("/var/lib/p/tls/privkey.pem"));
        assert_eq!(tls.acme_dir(), Some(Path::new("/var/lib/p/tls")));
        assert_eq!(tls.acme_directory_url, LETS_ENCRYPT);
        assert_eq!(tls.acme_renew_before_days, 30);
        assert_eq!(c.own_acme_label().as_deref(), Some("dyndns"));
        // Files: no ACME label, no ACME directory.
        let files = parse(
            "domain = \"a.b\"\npublic_url = \"https://x.a.b/update\"\n\
             [tls]\ncertificate = \"/c\"\nkey = \"/k\"",
        )
        .expect("valid");
        assert_eq!(files.own_acme_label(), None);
        assert_eq!(files.tls.as_ref().and_then(|t| t.acme_dir()), None);
        for (bad, key) in [
            ("[tls]\nacme = true", "tls.acme"),
            (
                "public_url = \"https://a.b/update\"\n[tls]\nacme = true",
                "tls.acme",
            ),
            (
                "public_url = \"https://x.y.a.b/update\"\n[tls]\nacme = true",
                "tls.acme",
            ),
            (
                "public_url = \"https://elsewhere.example/update\"\n[tls]\nacme = true",
                "tls.acme",
            ),
            (
                "public_url = \"https://x.a.b/update\"\n[tls]\nacme = true\ncertificate = \"/c\"",
                "tls.certificate",
            ),
            (
                "public_url = \"https://x.a.b/update\"\n[tls]\nacme = true\n\
                 acme_directory_url = \"http://ca/dir\"",
                "tls.acme_directory_url",
            ),
            (
                "public_url = \"https://x.a.b/update\"\n[tls]\nacme = true\nacme_email = \"nobody\"",
                "tls.acme_email",
            ),
            (
                "public_url = \"https://x.a.b/update\"\n[tls]\nacme = true\nacme_renew_before_days = 0",
                "tls.acme_renew_before_days",
            ),
            ("[tls]\ncertificate = \"/c\"", "tls.key"),
        ] {
            let err = parse(&format!("domain = \"a.b\"\n{bad}"))
                .expect_err(bad)
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn public_host_takes_the_host_alone() {
        for (url, want) in [
            ("http://[2001:db8::1]:8053/update", Some("2001:db8::1")),
            (
                "https://dyndns.peach.dinosaur.is/update",
                Some("dyndns.peach.dinosaur.is"),
            ),
            ("https://x.y.", Some("x.y")),
        ] {
            let c = parse(&format!("domain = \"a.b\"\npublic_url = {url:?}")).expect(url);
            assert_eq!(c.public_host().as_deref(), want, "{url}");
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
