//! Checking the result in DNS: after the pub accepted an update, ask the
//! pub's DNS server for the name's A and AAAA records.
//!
//! The server asked is `dns.server` when configured; otherwise the zone's
//! first NS (looked up through the system resolver named in
//! `dns.resolv_conf`); otherwise the update URL's host on port 53. Queries
//! are single UDP messages built with hickory-proto, sent without recursion
//! (the pub's server is authoritative for the zone).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use reqwest::Url;

use crate::config::DnsConfig;
use crate::ip::Addresses;
use crate::BoxFuture;

/// The standard DNS port.
const DNS_PORT: u16 = 53;
/// Largest UDP answer read (EDNS-less DNS is 512 bytes; a little margin
/// for servers that send more anyway).
const MAX_UDP_ANSWER: usize = 4096;

/// Why the DNS check could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// No server to ask could be found.
    #[error("no DNS server to ask for {domain}: {detail}")]
    NoServer {
        /// The zone.
        domain: String,
        /// What was tried.
        detail: String,
    },
    /// The query failed.
    #[error("DNS query to {server} for {name} {rtype} failed: {detail}")]
    Query {
        /// Whom we asked.
        server: SocketAddr,
        /// The name.
        name: String,
        /// A or AAAA.
        rtype: String,
        /// What happened.
        detail: String,
    },
    /// The name is not a valid DNS name.
    #[error("{name:?} is not a DNS name: {detail}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        detail: String,
    },
}

/// What the pub's DNS answered for the name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsAnswer {
    /// The server that answered.
    pub server: Option<SocketAddr>,
    /// A records.
    pub a: Vec<Ipv4Addr>,
    /// AAAA records.
    pub aaaa: Vec<Ipv6Addr>,
}

impl DnsAnswer {
    /// Whether DNS serves exactly the addresses sent: each family we sent
    /// has exactly that one record, and a family we did not send is absent
    /// or ignored (the pub deletes records we stop sending).
    pub fn matches(&self, sent: &Addresses) -> bool {
        let v4 = match sent.ip {
            Some(ip) => self.a == [ip],
            None => true,
        };
        let v6 = match sent.ip6 {
            Some(ip) => self.aaaa == [ip],
            None => true,
        };
        v4 && v6 && !sent.is_empty()
    }
}

/// What the update loop asks of DNS. The real one is [`UdpDns`].
pub trait DnsCheck: Send + Sync {
    /// The A and AAAA records of `fqdn` at the pub's DNS.
    fn lookup<'a>(
        &'a self,
        config: &'a DnsConfig,
        fqdn: &'a str,
        domain: &'a str,
        update_url: &'a Url,
    ) -> BoxFuture<'a, Result<DnsAnswer, DnsError>>;
}

/// DNS over plain UDP with hickory-proto messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpDns;

impl DnsCheck for UdpDns {
    fn lookup<'a>(
        &'a self,
        config: &'a DnsConfig,
        fqdn: &'a str,
        domain: &'a str,
        update_url: &'a Url,
    ) -> BoxFuture<'a, Result<DnsAnswer, DnsError>> {
        Box::pin(async move {
            let timeout = config.timeout();
            let server = find_server(config, domain, update_url, timeout).await?;
            let name = parse_name(fqdn)?;
            let mut answer = DnsAnswer {
                server: Some(server),
                ..DnsAnswer::default()
            };
            for rtype in [RecordType::A, RecordType::AAAA] {
                let reply = query(server, &name, rtype, false, timeout).await?;
                for record in &reply.answers {
                    match &record.data {
                        RData::A(a) => answer.a.push(a.0),
                        RData::AAAA(aaaa) => answer.aaaa.push(aaaa.0),
                        _ => {}
                    }
                }
            }
            Ok(answer)
        })
    }
}

fn parse_name(name: &str) -> Result<Name, DnsError> {
    let mut n = Name::from_ascii(name).map_err(|e| DnsError::BadName {
        name: name.to_string(),
        detail: e.to_string(),
    })?;
    n.set_fqdn(true);
    Ok(n)
}

/// The server to ask: configured, else the zone's NS, else the URL's host.
async fn find_server(
    config: &DnsConfig,
    domain: &str,
    update_url: &Url,
    timeout: Duration,
) -> Result<SocketAddr, DnsError> {
    let mut tried = Vec::new();
    if let Some(server) = &config.server {
        return resolve_host_port(server.as_str())
            .await
            .map_err(|detail| DnsError::NoServer {
                domain: domain.to_string(),
                detail: format!("dns.server {server}: {detail}"),
            });
    }
    match zone_ns(&config.resolv_conf, domain, timeout).await {
        Ok(addr) => return Ok(addr),
        Err(e) => tried.push(format!("NS lookup: {e}")),
    }
    if let Some(host) = update_url.host_str() {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match resolve_host_port(&format_host_port(host, DNS_PORT)).await {
            Ok(addr) => return Ok(addr),
            Err(e) => tried.push(format!("the update URL's host {host}: {e}")),
        }
    }
    Err(DnsError::NoServer {
        domain: domain.to_string(),
        detail: tried.join("; "),
    })
}

fn format_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn resolve_host_port(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    tokio::net::lookup_host(text)
        .await
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "no address".to_string())
}

/// The first `nameserver` of a resolv.conf.
pub fn resolver_from_resolv_conf(text: &str) -> Option<SocketAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .next()
}

/// The address of the zone's first NS, asked of the system resolver.
async fn zone_ns(
    resolv_conf: &Path,
    domain: &str,
    timeout: Duration,
) -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string(resolv_conf)
        .map_err(|e| format!("cannot read {}: {e}", resolv_conf.display()))?;
    let resolver = resolver_from_resolv_conf(&text)
        .ok_or_else(|| format!("no nameserver in {}", resolv_conf.display()))?;
    let zone = parse_name(domain).map_err(|e| e.to_string())?;
    let reply = query(resolver, &zone, RecordType::NS, true, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let ns: Vec<&Name> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(ns) => Some(&ns.0),
            _ => None,
        })
        .collect();
    let first = ns
        .first()
        .ok_or_else(|| format!("the resolver {resolver} knows no NS for {domain}"))?;
    let host = first.to_ascii();
    resolve_host_port(&format_host_port(host.trim_end_matches('.'), DNS_PORT))
        .await
        .map_err(|e| format!("NS {host}: {e}"))
}

/// Sends one query over UDP and waits for the matching answer.
pub async fn query(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    recursion: bool,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let fail = |detail: String| DnsError::Query {
        server,
        name: name.to_ascii(),
        rtype: rtype.to_string(),
        detail,
    };
    let mut msg = Message::query();
    msg.metadata.recursion_desired = recursion;
    msg.add_query(Query::query(name.clone(), rtype));
    let id = msg.metadata.id;
    let bytes = msg.to_vec().map_err(|e| fail(e.to_string()))?;
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| fail(format!("bind: {e}")))?;
    socket
        .connect(server)
        .await
        .map_err(|e| fail(format!("connect: {e}")))?;
    socket
        .send(&bytes)
        .await
        .map_err(|e| fail(format!("send: {e}")))?;
    let receive = async {
        let mut buf = vec![0u8; MAX_UDP_ANSWER];
        loop {
            let n = socket
                .recv(&mut buf)
                .await
                .map_err(|e| fail(format!("receive: {e}")))?;
            // Anything that is not the answer to this query is ignored.
            let Ok(reply) = Message::from_vec(buf.get(..n).unwrap_or(&[])) else {
                continue;
            };
            if reply.metadata.id != id || reply.metadata.message_type != MessageType::Response {
                continue;
            }
            return match reply.metadata.response_code {
                ResponseCode::NoError | ResponseCode::NXDomain => Ok(reply),
                code => Err(fail(format!("the server answered {code}"))),
            };
        }
    };
    tokio::time::timeout(timeout, receive)
        .await
        .map_err(|_| fail(format!("no answer within {} s", timeout.as_secs())))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA};
    use hickory_proto::rr::Record;

    #[test]
    fn answers_match_only_exactly_what_was_sent() {
        let v4: Ipv4Addr = "24.12.12.12".parse().expect("v4");
        let v6: Ipv6Addr = "2a01:4f8::1".parse().expect("v6");
        let sent = Addresses {
            ip: Some(v4),
            ip6: Some(v6),
        };
        let answer = DnsAnswer {
            server: None,
            a: vec![v4],
            aaaa: vec![v6],
        };
        assert!(answer.matches(&sent));
        assert!(answer.matches(&Addresses {
            ip: Some(v4),
            ip6: None
        }));
        assert!(!DnsAnswer {
            a: vec![v4],
            ..DnsAnswer::default()
        }
        .matches(&sent));
        let two = DnsAnswer {
            a: vec![v4, Ipv4Addr::LOCALHOST],
            ..DnsAnswer::default()
        };
        assert!(!two.matches(&Addresses {
            ip: Some(v4),
            ip6: None
        }));
        assert!(!DnsAnswer::default().matches(&Addresses::default()));
    }

    #[test]
    fn resolv_conf_first_nameserver() {
        let text = "# comment\nsearch lan\nnameserver 192.168.1.1\nnameserver 8.8.8.8\n";
        assert_eq!(
            resolver_from_resolv_conf(text),
            Some("192.168.1.1:53".parse().expect("addr"))
        );
        assert_eq!(
            resolver_from_resolv_conf("nameserver fe80::1%eth0\n"),
            Some("[fe80::1]:53".parse().expect("addr"))
        );
        assert_eq!(resolver_from_resolv_conf("search lan\n"), None);
    }

    /// A tiny authoritative server on loopback answers our query; the
    /// lookup reads A and AAAA from it and ignores a stray packet.
    #[tokio::test]
    async fn lookup_against_a_loopback_server() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = server.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            for _ in 0..2 {
                let Ok((n, peer)) = server.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    return;
                };
                // A stray datagram first, which the client must skip.
                let _ = server.send_to(b"junk", peer).await;
                let mut reply = Message::response(req.metadata.id, req.metadata.op_code);
                reply.add_queries(req.queries.clone());
                let q = &req.queries[0];
                let data = if q.query_type() == RecordType::A {
                    RData::A(A("24.12.12.12".parse().expect("v4")))
                } else {
                    RData::AAAA(AAAA("2a01:4f8::1".parse().expect("v6")))
                };
                reply
                    .answers
                    .push(Record::from_rdata(q.name().clone(), 60, data));
                let _ = server.send_to(&reply.to_vec().expect("encode"), peer).await;
            }
        });
        let config = DnsConfig {
            server: Some(crate::config::HostPort::new(&addr.to_string()).expect("host:port")),
            ..DnsConfig::default()
        };
        let url = Url::parse("http://127.0.0.1:1/update").expect("url");
        let answer = UdpDns
            .lookup(
                &config,
                "eb4890.peach.dinosaur.is",
                "peach.dinosaur.is",
                &url,
            )
            .await
            .expect("lookup");
        assert_eq!(answer.server, Some(addr));
        assert_eq!(
            answer.a,
            vec!["24.12.12.12".parse::<Ipv4Addr>().expect("v4")]
        );
        assert_eq!(
            answer.aaaa,
            vec!["2a01:4f8::1".parse::<Ipv6Addr>().expect("v6")]
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out_with_its_address() {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = silent.local_addr().expect("addr");
        let name = parse_name("x.example").expect("name");
        let err = query(
            addr,
            &name,
            RecordType::A,
            false,
            Duration::from_millis(100),
        )
        .await
        .expect_err("timeout");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
