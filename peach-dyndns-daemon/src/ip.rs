//! Finding the Pi's public addresses.
//!
//! Sources are asked in the design's order: the pub's signed `GET /ip`,
//! then the configured HTTP echo services, then (for IPv6 only) a network
//! interface's one stable global address. The pub's answer is believed only
//! when it is the pub's signed statement over a nonce drawn fresh for the
//! request, signed by the very pub the update goes to
//! ([`ip_answer::verify`]); anything else (an unsigned `{"ip":…}`, a
//! statement by another key, an old nonce) is skipped with its reason,
//! which the status shows. An answer is believed only if it is exactly
//! one address, and (unless `allow_private_addresses`) a globally routable
//! one. Nothing is ever taken from headers or error pages: a non-2xx answer,
//! a body that is not one address, or an oversized body is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use peach_dyndns_protocol::identity::PublicKey;
use peach_dyndns_protocol::ip_answer;
use peach_dyndns_protocol::rules::non_global_reason;
use reqwest::Url;

use crate::config::Config;
use crate::BoxFuture;

/// The most an answer body may hold: the longest IPv6 text is 45 bytes,
/// `{"ip":"…"}` with some spacing fits easily; more is not an address.
const MAX_ANSWER_BYTES: usize = 256;
/// The most the pub's signed statement may hold: address (45), nonce (32),
/// pub id (53) and signature (~100) with their keys are under 300 bytes.
const MAX_SIGNED_ANSWER_BYTES: usize = 1024;

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
    /// The pub's `/ip` answer is not its statement signed over our nonce.
    #[error("{source_name}: not believed: {detail}")]
    NotSigned {
        /// Which source.
        source_name: String,
        /// Why (unsigned, another key, another nonce, bad signature).
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

/// The pub to ask for a signed `/ip`: the URL beside its update URL and
/// the key its statement must be signed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubIp {
    /// `GET` this with `?nonce=…`.
    pub url: Url,
    /// The pub the update goes to.
    pub pub_id: PublicKey,
}

/// What discovery found: the addresses, and the sources skipped on the way
/// with why (the status shows them, so a forged `/ip` is visible).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The addresses to register.
    pub addrs: Addresses,
    /// Sources that failed or were not believed, in words.
    pub skipped: Vec<String>,
}

/// What the update loop asks: the current addresses, given the config and
/// the pub being updated. The real one is [`SourceChain`]; tests use fakes.
pub trait Discover: Send + Sync {
    /// Finds the addresses to register.
    fn discover<'a>(
        &'a self,
        config: &'a Config,
        pub_ip: Option<&'a PubIp>,
    ) -> BoxFuture<'a, Result<Found, IpError>>;
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
    pub fn sources(&self, config: &Config, pub_ip: Option<&PubIp>) -> Vec<Box<dyn IpSource>> {
        let mut sources: Vec<Box<dyn IpSource>> = Vec::new();
        if config.ip.use_pub {
            if let Some(p) = pub_ip {
                sources.push(Box::new(SignedPubSource::new(
                    self.client.clone(),
                    p.clone(),
                )));
            }
        }
        for url in &config.ip.echo_urls {
            sources.push(Box::new(HttpSource::new(self.client.clone(), url.clone())));
        }
        sources
    }
}

impl Discover for SourceChain {
    fn discover<'a>(
        &'a self,
        config: &'a Config,
        pub_ip: Option<&'a PubIp>,
    ) -> BoxFuture<'a, Result<Found, IpError>> {
        Box::pin(async move {
            let http = self.sources(config, pub_ip);
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
) -> Result<Found, IpError> {
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
                tracing::info!(error = %e, "address source skipped");
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
    Ok(Found {
        addrs: found,
        skipped: errors.iter().map(|e| e.to_string()).collect(),
    })
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
        let name = self.url.to_string();
        let body = get_bounded(
            &self.client,
            self.url.clone(),
            "text/plain, application/json",
            MAX_ANSWER_BYTES,
            &name,
        )
        .await?;
        parse_answer(&body).map_err(|detail| IpError::Answer {
            source_name: name,
            detail,
        })
    }
}

/// GETs `url` and reads a successful answer's body of at most `limit`
/// bytes; errors name `source_name`.
async fn get_bounded(
    client: &reqwest::Client,
    url: Url,
    accept: &'static str,
    limit: usize,
    source_name: &str,
) -> Result<Vec<u8>, IpError> {
    let http = |detail: String| IpError::Http {
        source_name: source_name.to_string(),
        detail,
    };
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, accept)
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
        if body.len() > limit {
            return Err(IpError::Answer {
                source_name: source_name.to_string(),
                detail: format!("the body is longer than {limit} bytes"),
            });
        }
    }
    Ok(body)
}

impl IpSource for HttpSource {
    fn name(&self) -> String {
        self.url.to_string()
    }

    fn address(&self) -> BoxFuture<'_, Result<IpAddr, IpError>> {
        Box::pin(self.fetch())
    }
}

/// The pub's `GET /ip?nonce=<32 hex>` with `Accept: application/json`:
/// believed only as the pub's signed statement over the nonce drawn for
/// this request.
#[derive(Debug, Clone)]
pub struct SignedPubSource {
    /// The client (timeouts, no proxy and no redirects set by the caller).
    client: reqwest::Client,
    /// Where to ask and whose signature to expect.
    pub_ip: PubIp,
}

impl SignedPubSource {
    /// A source that asks `pub_ip.url` and believes only `pub_ip.pub_id`.
    pub fn new(client: reqwest::Client, pub_ip: PubIp) -> SignedPubSource {
        SignedPubSource { client, pub_ip }
    }

    async fn fetch(&self) -> Result<IpAddr, IpError> {
        let name = self.pub_ip.url.to_string();
        let nonce = fresh_nonce();
        let mut url = self.pub_ip.url.clone();
        url.query_pairs_mut().clear().append_pair("nonce", &nonce);
        let body = get_bounded(
            &self.client,
            url,
            "application/json",
            MAX_SIGNED_ANSWER_BYTES,
            &name,
        )
        .await?;
        verify_pub_answer(&name, &body, &self.pub_ip.pub_id, &nonce)
    }
}

impl IpSource for SignedPubSource {
    fn name(&self) -> String {
        self.pub_ip.url.to_string()
    }

    fn address(&self) -> BoxFuture<'_, Result<IpAddr, IpError>> {
        Box::pin(self.fetch())
    }
}

/// 16 bytes from the OS random source as 32 hex digits.
pub fn fresh_nonce() -> String {
    use rand_core::RngCore as _;
    let mut random = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut random);
    ip_answer::nonce_from(random)
}

/// The pub's answer, believed only when it is `pub_id`'s signed statement
/// over `nonce`.
pub fn verify_pub_answer(
    source_name: &str,
    body: &[u8],
    pub_id: &PublicKey,
    nonce: &str,
) -> Result<IpAddr, IpError> {
    ip_answer::verify(body, pub_id, nonce).map_err(|e| IpError::NotSigned {
        source_name: source_name.to_string(),
        detail: e.to_string(),
    })
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
        assert_eq!(got.addrs.ip, Some("24.12.12.12".parse().expect("v4")));
        assert_eq!(got.addrs.ip6, None);
        assert_eq!(got.skipped.len(), 2, "{:?}", got.skipped);
    }

    #[tokio::test]
    async fn interface_adds_ipv6_and_private_is_allowed_only_when_asked() {
        let http = boxed(vec![Fixed("pub", Ok(ip("127.0.0.1")))]);
        let iface = Fixed("eth0", Ok(ip("2a01:4f8::1")));
        let got = discover_from(&http, Some(&iface), true, true, false)
            .await
            .expect("found");
        assert_eq!(
            (got.addrs.ip, got.addrs.ip6),
            (None, Some("2a01:4f8::1".parse().expect("v6")))
        );
        let got = discover_from(&http, Some(&iface), true, true, true)
            .await
            .expect("found");
        assert_eq!(got.addrs.ip, Some(Ipv4Addr::LOCALHOST));
        // IPv6 off: the interface is not asked.
        let err = discover_from(&http, Some(&iface), true, false, false)
            .await
            .expect_err("nothing");
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    /// A pub `/ip` on loopback that answers what the test chose for the
    /// nonce it got: the signed statement by `signer`, or something else.
    async fn fake_pub_ip(
        answer: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> (Url, tokio::task::JoinHandle<()>) {
        use warp::Filter as _;
        let answer = std::sync::Arc::new(answer);
        let route = warp::path("ip")
            .and(warp::header::exact("accept", "application/json"))
            .and(warp::query::<std::collections::HashMap<String, String>>())
            .map(move |q: std::collections::HashMap<String, String>| {
                answer(q.get("nonce").map(String::as_str).unwrap_or(""))
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(warp::serve(route).incoming(listener).run());
        (Url::parse(&format!("http://{addr}/ip")).expect("url"), task)
    }

    fn client() -> reqwest::Client {
        crate::pubapi::http_client(std::time::Duration::from_secs(2), None).expect("client")
    }

    /// The pub's `/ip` is believed only as its statement signed over the
    /// fresh nonce sent with the request.
    #[tokio::test]
    async fn the_pubs_signed_ip_is_believed() {
        use peach_dyndns_protocol::identity::Keypair;
        let pub_kp = Keypair::generate();
        let signer = pub_kp.clone();
        let (url, _task) = fake_pub_ip(move |nonce| {
            let a = ip_answer::sign(ip("24.12.12.12"), nonce, &signer).expect("sign");
            serde_json::to_string(&a).expect("json")
        })
        .await;
        let source = SignedPubSource::new(
            client(),
            PubIp {
                url,
                pub_id: pub_kp.public(),
            },
        );
        assert_eq!(source.address().await, Ok(ip("24.12.12.12")));
    }

    /// Regression (v1 believed any `/ip` answer): an unsigned answer, one
    /// signed by another key, one replaying an old nonce and one whose
    /// address was changed are skipped with the reason, and the echo
    /// service's address is used instead.
    #[tokio::test]
    async fn a_forged_or_unsigned_pub_ip_is_skipped_with_the_reason() {
        use peach_dyndns_protocol::identity::Keypair;
        let pub_kp = Keypair::generate();
        let hostile = Keypair::generate();
        let sign_as = |kp: &Keypair, nonce: &str, addr: &str| {
            ip_answer::sign(ip(addr), nonce, kp).expect("sign")
        };
        let old_nonce = fresh_nonce();
        let (h, p) = (hostile.clone(), pub_kp.clone());
        type Answer = Box<dyn Fn(&str) -> String + Send + Sync>;
        let forgeries: Vec<(&str, Answer)> = vec![
            (
                "unsigned",
                Box::new(|_: &str| r#"{"ip":"6.6.6.6"}"#.to_string()),
            ),
            ("plain text", Box::new(|_: &str| "6.6.6.6\n".to_string())),
            (
                "another key",
                Box::new(move |n: &str| {
                    serde_json::to_string(&sign_as(&h, n, "6.6.6.6")).expect("json")
                }),
            ),
            (
                "an old nonce",
                Box::new({
                    let p = p.clone();
                    move |_: &str| {
                        serde_json::to_string(&sign_as(&p, &old_nonce, "6.6.6.6")).expect("json")
                    }
                }),
            ),
            (
                "a changed address",
                Box::new(move |n: &str| {
                    let mut a = sign_as(&p, n, "24.12.12.12");
                    a.ip = ip("6.6.6.6");
                    serde_json::to_string(&a).expect("json")
                }),
            ),
        ];
        for (what, answer) in forgeries {
            let (url, _task) = fake_pub_ip(answer).await;
            let http: Vec<Box<dyn IpSource>> = vec![
                Box::new(SignedPubSource::new(
                    client(),
                    PubIp {
                        url: url.clone(),
                        pub_id: pub_kp.public(),
                    },
                )),
                Box::new(Fixed("echo", Ok(ip("24.12.12.13")))),
            ];
            let got = discover_from(&http, None, true, false, false)
                .await
                .expect(what);
            assert_eq!(
                got.addrs.ip,
                Some("24.12.12.13".parse().expect("v4")),
                "{what}"
            );
            assert_eq!(got.skipped.len(), 1, "{what}: {:?}", got.skipped);
            assert!(
                got.skipped[0].contains(url.as_str()) && got.skipped[0].contains("not believed"),
                "{what}: {:?}",
                got.skipped
            );
        }
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
