//! Zone transfers from the embedded DNS to its secondaries: AXFR (RFC
//! 5936) and IXFR (RFC 1995) over TCP, to the configured secondaries only,
//! optionally signed with TSIG (RFC 8945).
//!
//! Who may transfer: a query from an address that is not a configured
//! secondary's is REFUSED. A secondary configured with a key must sign its
//! request with that key (unsigned: REFUSED; wrong key or signature:
//! NOTAUTH with the TSIG error), and then every message of the answer is
//! signed, chained as RFC 8945 §5.3.1 says.
//!
//! What it gets: IXFR from the journal when the secondary's serial is in
//! it, otherwise (or for AXFR) the whole zone, in messages of about
//! [`CHUNK_BYTES`]. Until the registry was applied at start, SERVFAIL, so
//! no secondary takes the empty zone of a starting server.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tsig::{make_tsig_record, TsigError, TSIG};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType, TSigner};
use hickory_proto::serialize::binary::BinEncodable as _;

use super::zone::{Transfer, Zone};
use super::{DnsError, TsigKey};

/// The size a transfer message is filled to (records are added while the
/// message, uncompressed, stays below it). BIND sends up to 64 KiB; 16 KiB
/// keeps each write short and is far below the 65,535 TCP limit whatever
/// the last record's size.
pub const CHUNK_BYTES: usize = 16 * 1024;

/// A secondary the embedded DNS serves transfers to and NOTIFYs.
#[derive(Clone)]
pub struct Secondary {
    /// Where NOTIFY goes; transfers are allowed from its IP (any port).
    pub address: SocketAddr,
    /// The TSIG key it must sign with, and that answers are signed with.
    pub key: Option<TSigner>,
}

impl Secondary {
    /// A secondary from its `[[dns.secondaries]]` entry, with its key read
    /// (a bad key file names the file).
    pub fn from_config(config: &crate::config::SecondaryConfig) -> Result<Secondary, DnsError> {
        let key = match &config.tsig_key {
            None => None,
            Some(path) => {
                let key = TsigKey::load(path, config.tsig_key_name.as_deref(), None)?;
                Some(key.signer().map_err(|detail| DnsError::KeyFile {
                    path: path.clone(),
                    detail,
                })?)
            }
        };
        Ok(Secondary {
            address: config.address,
            key,
        })
    }
}

impl std::fmt::Debug for Secondary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secondary")
            .field("address", &self.address)
            .field(
                "key",
                &self.key.as_ref().map(|k| k.signer_name().to_ascii()),
            )
            .finish()
    }
}

/// The answer messages to a transfer query from `peer`, in order; `None`
/// when `query` is not an AXFR or IXFR for the zone (the zone answers it).
pub(crate) fn respond(
    zone: &Zone,
    secondaries: &[Secondary],
    query: &[u8],
    peer: IpAddr,
) -> Option<Vec<Vec<u8>>> {
    let request = Message::from_vec(query).ok()?;
    let [question] = request.queries.as_slice() else {
        return None;
    };
    let qtype = question.query_type();
    if request.metadata.op_code != OpCode::Query
        || !matches!(qtype, RecordType::AXFR | RecordType::IXFR)
        || question.query_class() != DNSClass::IN
        || !zone.name().zone_of(question.name())
        || question.name().num_labels() != zone.name().num_labels()
    {
        return None;
    }
    let peer = crate::addr::canonical_ip(peer);
    let error = |rcode: ResponseCode| {
        let mut response = Message::response(request.metadata.id, OpCode::Query);
        response.add_queries(request.queries.iter().cloned());
        response.metadata.response_code = rcode;
        response.to_vec().ok().map(|bytes| vec![bytes])
    };
    let Some(secondary) = secondaries
        .iter()
        .find(|s| crate::addr::canonical_ip(s.address.ip()) == peer)
    else {
        tracing::info!(%peer, ?qtype, "embedded DNS: transfer refused (not a configured secondary)");
        return error(ResponseCode::Refused);
    };
    let signing = match (&secondary.key, &request.signature) {
        (None, None) => None,
        (Some(_), None) => {
            tracing::warn!(%peer, "embedded DNS: unsigned transfer request from a secondary with a key: refused");
            return error(ResponseCode::Refused);
        }
        (key, Some(tsig)) => match verify_request(key.as_ref(), query) {
            Ok(mac) => key.clone().map(|k| (k, mac)),
            Err(tsig_error) => {
                tracing::warn!(%peer, key = %tsig.name, ?tsig_error, "embedded DNS: transfer request failed TSIG");
                return tsig_failure(&request, tsig, tsig_error).map(|bytes| vec![bytes]);
            }
        },
    };
    let their_serial = match qtype {
        RecordType::IXFR => match request.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        }) {
            Some(serial) => Some(serial),
            // RFC 1995 §3: an IXFR carries the client's SOA.
            None => return error(ResponseCode::FormErr),
        },
        _ => None,
    };
    let records = match zone.transfer_from(their_serial) {
        Transfer::NotReady => return error(ResponseCode::ServFail),
        Transfer::UpToDate(soa) => vec![soa],
        Transfer::Incremental(soa, steps) => {
            let mut records = vec![soa.clone()];
            for (from, removed, to, added) in steps {
                records.push(from);
                records.extend(removed);
                records.push(to);
                records.extend(added);
            }
            records.push(soa);
            records
        }
        Transfer::Full(soa, rest) => {
            let mut records = Vec::with_capacity(rest.len() + 2);
            records.push(soa.clone());
            records.extend(rest);
            records.push(soa);
            records
        }
    };
    tracing::debug!(%peer, ?qtype, ?their_serial, records = records.len(), "embedded DNS: transfer");
    let mut messages = Vec::new();
    let mut previous_mac: Option<Vec<u8>> = None;
    for (index, chunk) in chunks(records).into_iter().enumerate() {
        let mut response = Message::response(request.metadata.id, OpCode::Query);
        response.metadata.authoritative = true;
        if index == 0 {
            response.add_queries(request.queries.iter().cloned());
        }
        response.add_answers(chunk);
        let bytes = match &signing {
            None => response.to_vec().ok()?,
            Some((key, request_mac)) => {
                let unsigned = response.to_vec().ok()?;
                let (mac, tsig) = sign(
                    key,
                    request.metadata.id,
                    &unsigned,
                    previous_mac.as_deref(),
                    request_mac,
                )?;
                previous_mac = Some(mac);
                response.set_signature(tsig);
                response.to_vec().ok()?
            }
        };
        messages.push(bytes);
    }
    Some(messages)
}

/// A query other than a transfer (the SOA a secondary asks before it
/// transfers) that is signed: its answer `answer` signed with the
/// secondary's key, or NOTAUTH with the TSIG error when the signature or
/// key does not verify. `None` for unsigned queries: their answers go
/// out as they are.
pub(crate) fn sign_answer(
    secondaries: &[Secondary],
    query: &[u8],
    peer: IpAddr,
    answer: Vec<u8>,
) -> Vec<u8> {
    // 10..12: ARCOUNT; a TSIG is an additional record, so most queries
    // are passed through without being parsed again.
    if query.len() < 12 || query[10..12] == [0, 0] {
        return answer;
    }
    let Ok(request) = Message::from_vec(query) else {
        return answer;
    };
    let Some(tsig) = &request.signature else {
        return answer;
    };
    let peer = crate::addr::canonical_ip(peer);
    let key = secondaries
        .iter()
        .find(|s| crate::addr::canonical_ip(s.address.ip()) == peer)
        .and_then(|s| s.key.as_ref());
    let Ok(mut response) = Message::from_vec(&answer) else {
        return answer;
    };
    match verify_request(key, query) {
        Ok(request_mac) => {
            let Some(key) = key else {
                return answer;
            };
            response.signature = None;
            let Ok(unsigned) = response.to_vec() else {
                return answer;
            };
            match sign(key, request.metadata.id, &unsigned, None, &request_mac) {
                Some((_, record)) => {
                    response.set_signature(record);
                    response.to_vec().unwrap_or(answer)
                }
                None => answer,
            }
        }
        Err(tsig_error) => {
            tracing::debug!(%peer, key = %tsig.name, ?tsig_error, "embedded DNS: query failed TSIG");
            tsig_failure(&request, tsig, tsig_error).unwrap_or(answer)
        }
    }
}

/// NOTAUTH with the TSIG error, unsigned (RFC 8945 §5.3.2: we cannot
/// sign with a key the request did not prove).
fn tsig_failure(request: &Message, tsig: &Record<TSIG>, tsig_error: TsigError) -> Option<Vec<u8>> {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.add_queries(request.queries.iter().cloned());
    response.metadata.response_code = ResponseCode::NotAuth;
    let stub = TSIG::new(
        tsig.data.algorithm.clone(),
        unix_now(),
        tsig.data.fudge,
        Vec::new(),
        request.metadata.id,
        Some(tsig_error),
        Vec::new(),
    );
    response.set_signature(Box::new(make_tsig_record(tsig.name.clone(), stub)));
    response.to_vec().ok()
}

/// Verifies a signed request with `key`; the request's MAC, which the
/// first answer's MAC covers. The errors are the TSIG error to answer.
fn verify_request(key: Option<&TSigner>, query: &[u8]) -> Result<Vec<u8>, TsigError> {
    let key = key.ok_or(TsigError::BadKey)?;
    let (mac, _, valid) = key
        .verify_message_byte(query, None, true)
        .map_err(|e| match e {
            hickory_proto::dnssec::DnsSecError::TsigWrongKey => TsigError::BadKey,
            _ => TsigError::BadSig,
        })?;
    if !valid.contains(&unix_now()) {
        return Err(TsigError::BadTime);
    }
    Ok(mac)
}

/// Signs one answer message `unsigned` (its bytes without TSIG): the first
/// over the request's MAC and the full TSIG variables, later ones over the
/// previous MAC and the timers only (RFC 8945 §5.3.1). Returns the MAC and
/// the TSIG record to add.
fn sign(
    key: &TSigner,
    id: u16,
    unsigned: &[u8],
    previous_mac: Option<&[u8]>,
    request_mac: &[u8],
) -> Option<(Vec<u8>, Box<Record<TSIG>>)> {
    let now = unix_now();
    let stub = TSIG::new(
        key.algorithm().clone(),
        now,
        key.fudge(),
        Vec::new(),
        id,
        None,
        Vec::new(),
    );
    let tbs = match previous_mac {
        None => key.encode_response_tbs(request_mac, unsigned, &stub).ok()?,
        Some(previous) => {
            let mut tbs = Vec::with_capacity(previous.len() + unsigned.len() + 10);
            tbs.extend_from_slice(&u16::try_from(previous.len()).ok()?.to_be_bytes());
            tbs.extend_from_slice(previous);
            tbs.extend_from_slice(unsigned);
            // Time signed (48 bits) and fudge.
            tbs.extend_from_slice(&now.to_be_bytes()[2..]);
            tbs.extend_from_slice(&key.fudge().to_be_bytes());
            tbs
        }
    };
    let mac = key.sign(&tbs).ok()?;
    let record = make_tsig_record(key.signer_name().clone(), stub.set_mac(mac.clone()));
    Some((mac, Box::new(record)))
}

/// Splits the records into the messages' answer sections, each below
/// [`CHUNK_BYTES`] uncompressed (and at least one record each).
fn chunks(records: Vec<Record>) -> Vec<Vec<Record>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for record in records {
        // An unencodable record would fail the message too; count it big.
        let len = record.to_bytes().map_or(CHUNK_BYTES, |b| b.len());
        if !current.is_empty() && size + len > CHUNK_BYTES {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.push(record);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Seconds since the epoch, for TSIG.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{NameRecords, ZoneChange};
    use hickory_proto::op::Query;
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
    use hickory_proto::rr::rdata::SOA;
    use hickory_proto::rr::Name;

    const ZONE: &str = "peach.dinosaur.is";

    fn zone() -> Zone {
        Zone::new(ZONE, &[], None).expect("zone")
    }

    fn set(name: &str, last: u8) -> ZoneChange {
        ZoneChange::Set(NameRecords {
            name: name.into(),
            ip: Some(std::net::Ipv4Addr::new(192, 0, 2, last)),
            ip6: None,
            ttl: 60,
        })
    }

    fn request(rtype: RecordType, serial: Option<u32>) -> Message {
        let mut msg = Message::query();
        msg.add_query(Query::query(
            Name::from_ascii("peach.dinosaur.is.").expect("name"),
            rtype,
        ));
        if let Some(serial) = serial {
            let soa = SOA::new(
                Name::from_ascii("ns1.peach.dinosaur.is.").expect("n"),
                Name::from_ascii("h.peach.dinosaur.is.").expect("n"),
                serial,
                0,
                0,
                0,
                0,
            );
            msg.authorities.push(Record::from_rdata(
                Name::from_ascii("peach.dinosaur.is.").expect("name"),
                0,
                RData::SOA(soa),
            ));
        }
        msg
    }

    fn secondary(key: Option<TSigner>) -> Vec<Secondary> {
        vec![Secondary {
            address: "127.0.0.9:53".parse().expect("addr"),
            key,
        }]
    }

    fn answers(messages: &[Vec<u8>]) -> Vec<Record> {
        messages
            .iter()
            .flat_map(|m| Message::from_vec(m).expect("decode").answers)
            .collect()
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 9));

    #[test]
    fn only_secondaries_transfer_and_not_before_the_registry() {
        let z = zone();
        let q = request(RecordType::AXFR, None).to_vec().expect("enc");
        let rcode = |m: &[Vec<u8>]| {
            Message::from_vec(&m[0])
                .expect("dec")
                .metadata
                .response_code
        };
        let stranger: IpAddr = "127.0.0.10".parse().expect("ip");
        let out = respond(&z, &secondary(None), &q, stranger).expect("a transfer query");
        assert_eq!(rcode(&out), ResponseCode::Refused);
        let out = respond(&z, &secondary(None), &q, PEER).expect("answered");
        assert_eq!(
            rcode(&out),
            ResponseCode::ServFail,
            "registry not applied yet"
        );
        z.apply_changes(&[set("pi", 7)]).expect("apply");
        let out = respond(&z, &secondary(None), &q, PEER).expect("answered");
        let records = answers(&out);
        assert_eq!(
            records.first().map(Record::record_type),
            Some(RecordType::SOA)
        );
        assert_eq!(
            records.last().map(Record::record_type),
            Some(RecordType::SOA)
        );
        assert!(records.iter().any(|r| r.data.to_string() == "192.0.2.7"));
        // A normal query is not a transfer.
        let a = request(RecordType::A, None).to_vec().expect("enc");
        assert!(respond(&z, &secondary(None), &a, PEER).is_none());
    }

    #[test]
    fn ixfr_sends_the_changes_or_the_whole_zone() {
        let z = zone();
        z.apply_changes(&[set("a", 1), set("b", 2), set("c", 3)])
            .expect("apply");
        let s1 = z.serial();
        z.apply_changes(&[set("a", 9)]).expect("apply");
        let s2 = z.serial();
        let ixfr = |serial| {
            let q = request(RecordType::IXFR, Some(serial))
                .to_vec()
                .expect("enc");
            answers(&respond(&z, &secondary(None), &q, PEER).expect("answered"))
        };
        let delta = ixfr(s1);
        // SOA(s2), SOA(s1), -a 1, SOA(s2), +a 9, SOA(s2).
        let text: Vec<String> = delta.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(delta.len(), 6, "{text:?}");
        assert!(text[2] == "192.0.2.1" && text[4] == "192.0.2.9", "{text:?}");
        let RData::SOA(soa) = &delta[1].data else {
            panic!("{text:?}")
        };
        assert_eq!(soa.serial, s1);
        // Up to date: one SOA.
        assert_eq!(ixfr(s2).len(), 1);
        // Unknown serial: the whole zone (SOA, NS, 3 A, SOA).
        assert_eq!(ixfr(s1.wrapping_sub(5)).len(), 6);
    }

    #[test]
    fn big_zones_come_in_several_messages() {
        let z = zone();
        let batch: Vec<_> = (0..3000).map(|i| set(&format!("name{i}"), 1)).collect();
        z.apply_changes(&batch).expect("apply");
        let q = request(RecordType::AXFR, None).to_vec().expect("enc");
        let out = respond(&z, &secondary(None), &q, PEER).expect("answered");
        assert!(out.len() > 3, "{} messages", out.len());
        assert!(out.iter().all(|m| m.len() < 65_535));
        assert_eq!(answers(&out).len(), 3000 + 3);
    }

    #[test]
    fn a_keyed_secondary_must_sign_and_gets_signed_answers() {
        let z = zone();
        z.apply_changes(&[set("pi", 7)]).expect("apply");
        let key = |secret: &[u8]| {
            TSigner::new(
                secret.to_vec(),
                TsigAlgorithm::HmacSha256,
                Name::from_ascii("xfr").expect("n"),
                300,
            )
            .expect("signer")
        };
        let ours = secondary(Some(key(b"0123456789abcdef0123456789abcdef")));
        let unsigned = request(RecordType::AXFR, None).to_vec().expect("enc");
        let out = respond(&z, &ours, &unsigned, PEER).expect("answered");
        assert_eq!(
            Message::from_vec(&out[0])
                .expect("dec")
                .metadata
                .response_code,
            ResponseCode::Refused
        );
        let mut wrong = request(RecordType::AXFR, None);
        wrong
            .finalize(&key(b"another secret, not the right one"), unix_now())
            .expect("sign");
        let out = respond(&z, &ours, &wrong.to_vec().expect("enc"), PEER).expect("answered");
        assert_eq!(
            Message::from_vec(&out[0])
                .expect("dec")
                .metadata
                .response_code,
            ResponseCode::NotAuth
        );
        let mut right = request(RecordType::AXFR, None);
        let mut verifier = right
            .finalize(&key(b"0123456789abcdef0123456789abcdef"), unix_now())
            .expect("sign")
            .expect("verifier");
        // Several messages, so the chained MACs of the later ones count.
        let batch: Vec<_> = (0..3000).map(|i| set(&format!("name{i}"), 1)).collect();
        z.apply_changes(&batch).expect("apply");
        let out = respond(&z, &ours, &right.to_vec().expect("enc"), PEER).expect("answered");
        assert!(out.len() > 3, "{} messages", out.len());
        for (i, message) in out.iter().enumerate() {
            let verified = verifier
                .verify(message)
                .unwrap_or_else(|e| panic!("message {i} does not verify: {e}"));
            assert_eq!(verified.metadata.response_code, ResponseCode::NoError);
        }
    }
}
