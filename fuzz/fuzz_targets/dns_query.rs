//! The embedded DNS server's reading of one raw query (`EmbeddedDns::answer`,
//! what its UDP and TCP sockets call with the bytes they received), against
//! a zone holding a few names. Every answer parses as DNS, carries the
//! query's id, and fits the transport's limit (512 bytes over UDP without
//! EDNS, 1232 with it).
#![no_main]

use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use peach_dyndns_server::dns::{EmbeddedDns, NameRecords, Transport, ZoneBackend, ZoneChange};

static DNS: LazyLock<EmbeddedDns> = LazyLock::new(|| {
    let dns = EmbeddedDns::new(
        "peach.dinosaur.is",
        &["ns1.peach.dinosaur.is".into(), "ns.example.net".into()],
        None,
    )
    .expect("the zone builds");
    let changes = [
        ("eb4890", Some("24.12.12.12"), Some("2a01:4f8::1")),
        ("v4only", Some("24.1.1.1"), None),
        ("ns1", Some("24.2.2.2"), None),
    ]
    .map(|(name, ip, ip6)| {
        ZoneChange::Set(NameRecords {
            name: name.into(),
            ip: ip.map(|a| a.parse().expect("ip")),
            ip6: ip6.map(|a| a.parse().expect("ip6")),
            ttl: 60,
        })
    });
    // The embedded backend applies at once: its future is ready when first polled.
    let mut apply = dns.apply_all(&changes);
    match apply.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result.expect("the changes apply"),
        Poll::Pending => panic!("the embedded zone applies without waiting"),
    }
    drop(apply);
    dns
});

fuzz_target!(|query: &[u8]| {
    let plain_udp = Message::from_vec(query).is_ok_and(|m| m.edns.is_none());
    for transport in [Transport::Udp, Transport::Tcp] {
        let Some(answer) = DNS.answer(query, transport) else {
            continue;
        };
        let parsed = Message::from_vec(&answer).expect("every answer parses as DNS");
        assert_eq!(answer[..2], query[..2], "the answer carries the query's id");
        assert!(parsed.metadata.message_type == hickory_proto::op::MessageType::Response);
        if transport == Transport::Udp {
            let limit = if plain_udp { 512 } else { 1232 };
            assert!(answer.len() <= limit, "{} bytes over UDP", answer.len());
        }
    }
});
