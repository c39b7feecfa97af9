//! A tiny DNS client for one question: "is this server authoritative for the
//! zone yet?". Polling with a UDP socket takes well under a millisecond,
//! where spawning `dig` takes about 20 ms; the harness polls named's
//! readiness with it, and the `dig` helper stays the real tool for tests.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use rand_core::{OsRng, RngCore};

/// DNS type code of SOA (RFC 1035 §3.2.2).
const TYPE_SOA: u16 = 6;
/// DNS class IN (RFC 1035 §3.2.4).
const CLASS_IN: u16 = 1;
/// Header flag QR: the message is a response.
const FLAG_QR: u16 = 0x8000;
/// Header flag AA: the answer is authoritative (the zone is loaded).
const FLAG_AA: u16 = 0x0400;
/// How long one probe waits for an answer; the caller polls again after it.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// RCODE names for messages (RFC 1035 §4.1.1, RFC 2136 §2.2).
const RCODES: [&str; 11] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE",
];

/// Asks `server` for the SOA of `zone` over UDP. `Ok(())` when it answers
/// authoritatively with at least one record; otherwise the reason, for the
/// "not ready" message.
pub(crate) fn soa_is_authoritative(server: SocketAddr, zone: &str) -> Result<(), String> {
    let id = u16::try_from(OsRng.next_u32() & 0xffff).unwrap_or(0);
    let query = soa_query(id, zone);
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
    socket
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    // Connected, so a port nobody listens on yet fails at once
    // (ECONNREFUSED from the ICMP reply) instead of after the timeout.
    socket
        .connect(server)
        .map_err(|e| format!("connect to {server}: {e}"))?;
    socket
        .send(&query)
        .map_err(|e| format!("sending SOA query to {server}: {e}"))?;
    let mut buf = [0u8; 4096];
    loop {
        let len = socket
            .recv(&mut buf)
            .map_err(|e| format!("no answer to SOA {zone} from {server}: {e}"))?;
        if len < 12 || u16::from_be_bytes([buf[0], buf[1]]) != id {
            continue; // Not our answer; keep listening until the timeout.
        }
        let flags = u16::from_be_bytes([buf[2], buf[3]]);
        let rcode = usize::from(flags & 0x000f);
        let answers = u16::from_be_bytes([buf[6], buf[7]]);
        if flags & FLAG_QR == 0 {
            return Err(String::from("answer without the QR flag"));
        }
        if rcode != 0 {
            let name = RCODES.get(rcode).copied().unwrap_or("RCODE?");
            return Err(format!("SOA {zone} answered {name} ({rcode})"));
        }
        if flags & FLAG_AA == 0 || answers == 0 {
            return Err(format!(
                "SOA {zone} answered without an authoritative record"
            ));
        }
        return Ok(());
    }
}

/// A query message: header with one question, no recursion desired.
fn soa_query(id: u16, zone: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&0u16.to_be_bytes()); // Flags: standard query, RD off.
    msg.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    msg.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // ANCOUNT, NSCOUNT, ARCOUNT
    for label in zone.trim_end_matches('.').split('.') {
        // Zone names here are short test names; a label over 63 bytes would
        // be a bug in the caller and named answers FORMERR, which we report.
        let len = u8::try_from(label.len()).unwrap_or(u8::MAX);
        msg.push(len);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&TYPE_SOA.to_be_bytes());
    msg.extend_from_slice(&CLASS_IN.to_be_bytes());
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_well_formed() {
        let q = soa_query(0x1234, "peach.dinosaur.is");
        assert_eq!(&q[..12], &[0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..18], b"\x05peach");
        assert_eq!(&q[q.len() - 5..], &[0, 0, 6, 0, 1]);
    }
}
