//! Finding the Pi's public addresses.
//!
//! Sources are asked in the design's order: the pub's `GET /ip`, then the
//! configured HTTP echo services, then (for IPv6 only) a network interface's
//! one stable global address. An answer is believed only if it is exactly
//! one address, and (unless `allow_private_addresses`) a globally routable
//! one. Nothing is ever taken from headers or error pages: a non-2xx answer,
//! a body that is not one address, or an oversized body is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use peach_dyndns_protocol::rules::non_global_reason;
use reqwest::Url;

use crate::config::Config;
use crate::BoxFuture;

/// The most an answer body may hold: the longest IPv6 text is 45 bytes,
/// `{"ip":"…"}` with some spacing fits easily; more is not an address.
const MAX_ANSWER_BYTES: usize = 256;

/// Why a source gave no usable address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpError {
    /// The request failed or the answer was not a 2xx.
    #[error("{source_name}: {detail}")]
    Http {
        /// Which source.
        source_name: String,
        /// What happened.
        detail: String,
    },
    /// The answer was not exactly one address.
    #[error("{source_name}: the answer is not one IP address: {detail}")]
    Answer {
        /// Which source.
        source_name: String,
        /// What it looked like.
        detail: String,
    },
    /// The address is not globally routable.
    #[error("{source_name}: {addr} is {reason}, not a public address (set ip.allow_private_addresses for a LAN)")]
    NotGlobal {
        /// Which source.
        source_name: String,
        /// The address.
        addr: IpAddr,
        /// Which range it is in.
        reason: &'static str,
    },
    /// The interface gave no single stable global IPv6 address.
    #[error("interface {interface}: {detail}")]
    Interface {
        /// The interface.
        interface: String,
        /// What is wrong.
        detail: String,
    },
    /// No source gave a usable address.
    #[error("no public address found ({})", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    NoAddress(Vec<IpError>),
}

/// One place that tells the Pi one of its addresses.
pub trait IpSource: Send + Sync {
    /// A name for logs and errors (the URL or the interface).
    fn name(&self) -> String;
    /// Asks once; exactly one address or an error.
    fn address(&self) -> BoxFuture<'_, Result<IpAddr, IpError>>;
}

/// The addresses to register.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Addresses {
    /// For the A record.
    pub ip: Option<Ipv4Addr>,
    /// For the AAAA record.
    pub ip6: Option<Ipv6Addr>,
}

impl Addresses {
    /// Neither family found.
    pub fn is_empty(&self) -> bool {
        self.ip.is_none() && self.ip6.is_none()
    }
}

impl std::fmt::Display for Addresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.ip, self.ip6) {
            (Some(a), Some(b)) => write!(f, "{a} and {b}"),
            (Some(a), None) => write!(f, "{a}"),
            (None, Some(b)) => write!(f, "{b}"),
            (None, None) => f.write_str("no address"),
        }
    }
}

/// What the update loop asks: the current addresses, given the config and
/// the pub's `/ip` URL. The real one is [`SourceChain`]; tests use fakes.
pub trait Discover: Send + Sync {
    /// Finds the addresses to register.
    fn discover<'a>(
        &'a self,
        config: &'a Config,
        pub_ip_url: Option<&'a Url>,
    ) -> BoxFuture<'a, Result<Addresses, IpError>>;
}

/// The real discovery: HTTP sources in order, then the interface.
#[derive(Debug, Clone)]
pub struct SourceChain {
    /// Shared HTTP client (no proxy: a proxy would report its own address).
    client: reqwest::Client,
}

impl SourceChain {
    /// A chain that uses `client` for the HTTP sources.
    pub fn new(client: reqwest::Client) -> SourceChain {
        SourceChain { client }
    }

    /// The sources for a config, in the order they are asked.
    pub fn sources(&self, config: &Config, pub_ip_url: Option<&Url>) -> Vec<Box<dyn IpSource>> {
        let mut sources: Vec<Box<dyn IpSource>> = Vec::new();
        if config.ip.use_pub {
            if let Some(url) = pub_ip_url {
                sources.push(Box::new(HttpSource::new(self.client.clone(), url.clone())));
            }
        }
        for url in &config.ip.echo_urls {
            // Checked when the config was loaded.
            if let Ok(url) = Url::parse(url) {
                sources.push(Box::new(HttpSource::new(self.client.clone(), url)));
            }
        }
        sources
    }
}

impl Discover for SourceChain {
    fn discover<'a>(
        &'a self,
        config: &'a Config,
        pub_ip_url: Option<&'a Url>,
    ) -> BoxFuture<'a, Result<Addresses, IpError>> {
        Box::pin(async move {
            let http = self.sources(config, pub_ip_url);
            let interface = config.ip.interface.as_ref().map(|name| InterfaceSource {
                interface: name.clone(),
                table: config.ip.if_inet6_path.clone(),
                allow_private: config.ip.allow_private_addresses,
            });
            discover_from(
                &http,
                interface.as_ref().map(|s| s as &dyn IpSource),
                config.ip.ipv4,
                config.ip.ipv6,
                config.ip.allow_private_addresses,
            )
            .await
        })
    }
}

/// The discovery rule, over any sources: the first HTTP source whose answer
/// is acceptable and of a wanted family wins; then, if IPv6 is wanted and
/// not yet found, the interface.
pub async fn discover_from(
    http: &[Box<dyn IpSource>],
    interface: Option<&dyn IpSource>,
    want_v4: bool,
    want_v6: bool,
    allow_private: bool,
) -> Result<Addresses, IpError> {
    let mut found = Addresses::default();
    let mut errors = Vec::new();
    for source in http {
        match source
            .address()
            .await
            .and_then(|ip| accept(&source.name(), ip, allow_private))
        {
            Ok(IpAddr::V4(v4)) if want_v4 => {
                found.ip = Some(v4);
                break;
            }
            Ok(IpAddr::V6(v6)) if want_v6 => {
                found.ip6 = Some(v6);
                break;
            }
            Ok(other) => {
                tracing::debug!(source = %source.name(), %other, "address of an unwanted family")
            }
            Err(e) => {
                tracing::debug!(error = %e, "address source failed");
                errors.push(e);
            }
        }
    }
    if want_v6 && found.ip6.is_none() {
        if let Some(source) = interface {
            match source
                .address()
                .await
                .and_then(|ip| accept(&source.name(), ip, allow_private))
            {
                Ok(IpAddr::V6(v6)) => found.ip6 = Some(v6),
                Ok(IpAddr::V4(_)) => {}
                Err(e) => errors.push(e),
            }
        }
    }
    if found.is_empty() {
        return Err(IpError::NoAddress(errors));
    }
    Ok(found)
}

/// Refuses a non-global address unless private ones are allowed.
fn accept(source_name: &str, ip: IpAddr, allow_private: bool) -> Result<IpAddr, IpError> {
    match non_global_reason(ip) {
        Some(reason) if !allow_private => Err(IpError::NotGlobal {
            source_name: source_name.to_string(),
            addr: ip,
            reason,
        }),
        _ => Ok(ip),
    }
}

/// An HTTP source: the pub's `/ip` or an echo service.
#[derive(Debug, Clone)]
pub struct HttpSource {
    /// The client (timeouts and no proxy set by the caller).
    client: reqwest::Client,
    /// What to GET.
    url: Url,
}

impl HttpSource {
    /// A source that GETs `url`.
    pub fn new(client: reqwest::Client, url: Url) -> HttpSource {
        HttpSource { client, url }
    }

    async fn fetch(&self) -> Result<IpAddr, IpError> {
        let http = |detail: String| IpError::Http {
            source_name: self.url.to_string(),
            detail,
        };
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "text/plain, application/json")
            .send()
            .await
            .map_err(|e| http(crate::pubapi::describe_reqwest(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(http(format!("answered HTTP {status}")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| http(crate::pubapi::describe_reqwest(&e)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER_BYTES {
                return Err(IpError::Answer {
                    source_name: self.url.to_string(),
                    detail: format!("the body is longer than {MAX_ANSWER_BYTES} bytes"),
                });
            }
        }
        parse_answer(&body).map_err(|detail| IpError::Answer {
            source_name: self.url.to_string(),
            detail,
        })
    }
}

impl IpSource for HttpSource {
    fn name(&self) -> String {
        self.url.to_string()
    }

    fn address(&self) -> BoxFuture<'_, Result<IpAddr, IpError>> {
        Box::pin(self.fetch())
    }
}

/// Reads one address from an answer body: plain text (surrounding
/// whitespace allowed) or a JSON object with one `ip` string.
pub fn parse_answer(body: &[u8]) -> Result<IpAddr, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    let text = text.trim();
    if text.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}"))?;
        return match value.get("ip").and_then(|v| v.as_str()) {
            Some(ip) => ip
                .parse()
                .map_err(|_| format!("{:?} is not an IP address", cut(ip))),
            None => Err("the JSON has no `ip` string".into()),
        };
    }
    text.parse()
        .map_err(|_| format!("{:?} is not an IP address", cut(text)))
}

fn cut(s: &str) -> String {
    s.chars().take(60).collect()
}

/// The one stable global IPv6 address of an interface, read from the
/// kernel's `/proc/net/if_inet6`.
#[derive(Debug, Clone)]
pub struct InterfaceSource {
    /// The interface name, e.g. `eth0`.
    pub interface: String,
    /// The address table (configurable for tests).
    pub table: PathBuf,
    /// Whether unique-local addresses count.
    pub allow_private: bool,
}

impl IpSource for InterfaceSource {
    fn name(&self) -> String {
        format!("interface {}", self.interface)
    }

    fn address(&self) -> BoxFuture<'_, Result<IpAddr, IpError>> {
        Box::pin(async move {
            let text = std::fs::read_to_string(&self.table).map_err(|e| IpError::Interface {
                interface: self.interface.clone(),
                detail: format!("cannot read {}: {e}", self.table.display()),
            })?;
            stable_global_v6(&text, &self.interface, self.allow_private)
                .map(IpAddr::V6)
                .map_err(|detail| IpError::Interface {
                    interface: self.interface.clone(),
                    detail,
                })
        })
    }
}

/// Kernel address flags (`IFA_F_*` in `linux/if_addr.h`) that make an
/// address unfit to publish: temporary (privacy, RFC 4941, it rotates),
/// duplicate-address detection failed, deprecated (on its way out),
/// tentative (not yet usable).
const IFA_F_TEMPORARY: u32 = 0x01;
const IFA_F_DADFAILED: u32 = 0x08;
const IFA_F_DEPRECATED: u32 = 0x20;
const IFA_F_TENTATIVE: u32 = 0x40;
/// The kernel's scope value for global addresses (`RT_SCOPE_UNIVERSE`).
const SCOPE_GLOBAL: u32 = 0x00;

/// Picks the interface's one stable global IPv6 address from the text of
/// `/proc/net/if_inet6` (lines: address hex, ifindex, prefix length, scope,
/// flags, name). More than one candidate is an error: the design believes
/// only an answer that is exactly one address.
pub fn stable_global_v6(
    table: &str,
    interface: &str,
    allow_private: bool,
) -> Result<Ipv6Addr, String> {
    let mut found = Vec::new();
    for line in table.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [hex, _index, _plen, scope, flags, name] = fields[..] else {
            continue;
        };
        if name != interface {
            continue;
        }
        let (Ok(raw), Ok(scope), Ok(flags)) = (
            u128::from_str_radix(hex, 16),
            u32::from_str_radix(scope, 16),
            u32::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        let addr = Ipv6Addr::from(raw);
        if scope != SCOPE_GLOBAL
            || flags & (IFA_F_TEMPORARY | IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE) != 0
        {
            continue;
        }
        if !allow_private && non_global_reason(IpAddr::V6(addr)).is_some() {
            continue;
        }
        found.push(addr);
    }
    match found[..] {
        [one] => Ok(one),
        [] => Err("no stable global IPv6 address".into()),
        _ => Err(format!(
            "{} stable global IPv6 addresses ({}); expected exactly one",
            found.len(),
            found
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, Result<IpAddr, ()>);
    impl IpSource for Fixed {
        fn name(&self) -> String {
            self.0.to_string()
        }
        fn address(&self) -> BoxFuture<'_, Result<IpAddr, IpError>> {
            let r = self.1.map_err(|()| IpError::Http {
                source_name: self.0.to_string(),
                detail: "connection refused".into(),
            });
            Box::pin(async move { r })
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn boxed(list: Vec<Fixed>) -> Vec<Box<dyn IpSource>> {
        list.into_iter()
            .map(|s| Box::new(s) as Box<dyn IpSource>)
            .collect()
    }

    #[tokio::test]
    async fn first_good_http_answer_wins_and_failures_fall_through() {
        let http = boxed(vec![
            Fixed("pub", Err(())),
            Fixed("echo1", Ok(ip("192.168.1.2"))),
            Fixed("echo2", Ok(ip("24.12.12.12"))),
            Fixed("echo3", Ok(ip("8.8.8.8"))),
        ]);
        let got = discover_from(&http, None, true, true, false)
            .await
            .expect("found");
        assert_eq!(got.ip, Some("24.12.12.12".parse().expect("v4")));
        assert_eq!(got.ip6, None);
    }

    #[tokio::test]
    async fn interface_adds_ipv6_and_private_is_allowed_only_when_asked() {
        let http = boxed(vec![Fixed("pub", Ok(ip("127.0.0.1")))]);
        let iface = Fixed("eth0", Ok(ip("2a01:4f8::1")));
        let got = discover_from(&http, Some(&iface), true, true, false)
            .await
            .expect("found");
        assert_eq!(
            (got.ip, got.ip6),
            (None, Some("2a01:4f8::1".parse().expect("v6")))
        );
        let got = discover_from(&http, Some(&iface), true, true, true)
            .await
            .expect("found");
        assert_eq!(got.ip, Some(Ipv4Addr::LOCALHOST));
        // IPv6 off: the interface is not asked.
        let err = discover_from(&http, Some(&iface), true, false, false)
            .await
            .expect_err("nothing");
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[test]
    fn answers_must_be_exactly_one_address() {
        assert_eq!(parse_answer(b"24.12.12.12\n"), Ok(ip("24.12.12.12")));
        assert_eq!(parse_answer(b"  2a01:4f8::1 "), Ok(ip("2a01:4f8::1")));
        assert_eq!(
            parse_answer(br#"{"ip":"24.12.12.12"}"#),
            Ok(ip("24.12.12.12"))
        );
        for bad in [
            &b"24.12.12.12, 8.8.8.8"[..],
            b"<html>24.12.12.12</html>",
            b"",
            b"24.12.12.12 8.8.8.8",
            br#"{"address":"1.2.3.4"}"#,
            b"\xff\xfe",
        ] {
            assert!(
                parse_answer(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    const TABLE: &str = "\
00000000000000000000000000000001 01 80 10 80       lo
fe80000000000000020c29fffe5c4b31 02 40 20 80     eth0
2a0104f8000000000000000000000002 02 40 00 01     eth0
2a0104f8000000000000000000000003 02 40 00 20     eth0
2a0104f8000000000000000000000004 02 40 00 40     eth0
2a0104f8000000000000000000000001 02 40 00 00     eth0
fd000000000000000000000000000001 02 40 00 80     eth0
2a0104f8000000000000000000000009 03 40 00 80    wlan0
2a0104f800000000000000000000000a 03 40 00 80    wlan0
";

    #[test]
    fn only_the_stable_global_address_is_taken() {
        // Temporary, deprecated, tentative, link-local and ULA are skipped.
        assert_eq!(
            stable_global_v6(TABLE, "eth0", false),
            Ok("2a01:4f8::1".parse().expect("v6"))
        );
        // With private addresses allowed the ULA is a second candidate.
        let err = stable_global_v6(TABLE, "eth0", true).expect_err("two");
        assert!(err.contains("expected exactly one"), "{err}");
        let err = stable_global_v6(TABLE, "wlan0", false).expect_err("two");
        assert!(err.contains("2 stable"), "{err}");
        assert!(stable_global_v6(TABLE, "eth1", false).is_err());
    }

    #[tokio::test]
    async fn interface_source_reads_the_configured_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("if_inet6");
        std::fs::write(&path, TABLE).expect("write");
        let source = InterfaceSource {
            interface: "eth0".into(),
            table: path,
            allow_private: false,
        };
        assert_eq!(source.address().await, Ok(ip("2a01:4f8::1")));
    }
}
