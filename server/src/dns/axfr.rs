//! Reading a BIND backend's zone back (AXFR, RFC 5936, signed with the
//! backend's TSIG key) to find the names whose records look like the
//! server's own, so the start-up re-apply can remove those the registry
//! does not hold (left by a crash before the commit of a new name, by an
//! older version, or added by hand under a dynamic-looking label).
//!
//! What counts as the server's own is narrow on purpose: a label directly
//! under the zone whose records are A and AAAA and nothing else, and
//! `_acme-challenge.<label>` holding TXT records and nothing else. The
//! apex, the labels of the zone's in-zone name servers (its NS targets),
//! a label with any other record type or with names below it besides its
//! challenge: all left alone. The caller leaves out reserved labels too.
//! Signatures and NSEC/NSEC3 records of a signed zone are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use super::{DnsError, CHALLENGE_LABEL};

/// How long the whole transfer may take. A zone of 100,000 names is about
/// 5 MB, which named sends over loopback in well under a second.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The labels directly under the zone whose records look like the
/// server's: candidates for removal when the registry does not hold them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DynamicLabels {
    /// Labels whose records are A and AAAA only.
    pub addresses: BTreeSet<String>,
    /// Labels whose `_acme-challenge.<label>` holds TXT records only.
    pub challenges: BTreeSet<String>,
}

impl DynamicLabels {
    /// Keeps only the labels `keep` says yes to, in both sets.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.addresses.retain(|l| keep(l));
        self.challenges.retain(|l| keep(l));
    }

    /// Forgets `label` (the registry holds it).
    pub fn remove(&mut self, label: &str) {
        self.addresses.remove(label);
        self.challenges.remove(label);
    }

    /// Whether neither set holds a label.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.challenges.is_empty()
    }
}

/// What one label of the zone was seen to hold.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// A or AAAA at `<label>`.
    address: bool,
    /// TXT at `_acme-challenge.<label>`.
    challenge: bool,
    /// Anything else at `<label>`, or a name below it besides the challenge.
    other: bool,
    /// Anything but TXT at `_acme-challenge.<label>`, or below it.
    challenge_other: bool,
}

/// Sorts a transfer's records into [`DynamicLabels`].
#[derive(Debug)]
pub(crate) struct Collector {
    /// The zone, absolute and lower case.
    zone: Name,
    /// What each label held.
    seen: BTreeMap<String, Seen>,
    /// Labels of in-zone name servers (the apex's NS targets).
    nameservers: BTreeSet<String>,
}

impl Collector {
    /// An empty collector for `zone` (absolute, lower case).
    pub(crate) fn new(zone: &Name) -> Collector {
        Collector {
            zone: zone.clone(),
            seen: BTreeMap::new(),
            nameservers: BTreeSet::new(),
        }
    }

    /// The label directly under the zone that `name` is or is below, and
    /// the labels between (outermost first): `x.pi.zone` → (`pi`, [`x`]).
    fn split(&self, name: &Name) -> Option<(String, Vec<String>)> {
        let name = name.to_lowercase();
        if !self.zone.zone_of(&name) {
            return None;
        }
        // Counted by hand: `num_labels` leaves out a leading `*`.
        let extra = name.iter().count().checked_sub(self.zone.iter().count())?;
        if extra == 0 {
            return None;
        }
        let labels: Vec<String> = name
            .iter()
            .take(extra)
            .map(|l| String::from_utf8_lossy(l).to_string())
            .collect();
        let (top, below) = labels.split_last()?;
        Some((top.clone(), below.to_vec()))
    }

    /// Takes one record of the transfer.
    pub(crate) fn add(&mut self, record: &Record) {
        let name = record.name.to_lowercase();
        let rtype = record.record_type();
        // A signed zone (`init --dnssec`) sends its signatures and denial
        // records along; they follow the names and say nothing of who
        // made them.
        if matches!(
            rtype,
            RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3 | RecordType::NSEC3PARAM
        ) {
            return;
        }
        if name == self.zone {
            if let RData::NS(ns) = &record.data {
                if let Some((label, below)) = self.split(&ns.0) {
                    if below.is_empty() {
                        self.nameservers.insert(label);
                    }
                }
            }
            return;
        }
        let Some((label, below)) = self.split(&name) else {
            return;
        };
        let seen = self.seen.entry(label).or_default();
        match below.as_slice() {
            [] if matches!(rtype, RecordType::A | RecordType::AAAA) => seen.address = true,
            [] => seen.other = true,
            [challenge] if challenge == CHALLENGE_LABEL && rtype == RecordType::TXT => {
                seen.challenge = true
            }
            [.., challenge] if challenge == CHALLENGE_LABEL => seen.challenge_other = true,
            _ => seen.other = true,
        }
    }

    /// The labels that look like the server's.
    pub(crate) fn finish(self) -> DynamicLabels {
        let mut out = DynamicLabels::default();
        for (label, seen) in self.seen {
            if self.nameservers.contains(&label) || seen.other {
                continue;
            }
            if seen.address {
                out.addresses.insert(label.clone());
            }
            if seen.challenge && !seen.challenge_other {
                out.challenges.insert(label);
            }
        }
        out
    }
}

/// Transfers `zone` from `server` over TCP, signed with `signer`, every
/// answer message's signature checked, and sorts what came.
///
/// A refusal (REFUSED, NOTAUTH, a TSIG error) is
/// [`DnsError::TransferRefused`], whose message says what to allow in
/// named.conf; `key_name` is for that message.
pub(crate) async fn dynamic_labels(
    server: SocketAddr,
    zone: &Name,
    signer: &TSigner,
    key_name: &str,
) -> Result<DynamicLabels, DnsError> {
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    let unreachable = |source| DnsError::Unreachable { server, source };
    let bad = |detail: String| DnsError::BadReply { server, detail };
    let refused = |detail: String| DnsError::TransferRefused {
        server,
        zone: zone.to_ascii(),
        key_name: key_name.to_string(),
        detail,
    };
    let mut request = Message::query();
    request.metadata.recursion_desired = false;
    let mut query = Query::query(zone.clone(), RecordType::AXFR);
    query.set_query_class(DNSClass::IN);
    request.add_query(query);
    let id = request.metadata.id;
    let encode = |detail: String| DnsError::Encode {
        what: format!("the transfer request for {zone}"),
        detail,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut verifier = request
        .finalize(signer, now)
        .map_err(|e| encode(e.to_string()))?
        .ok_or_else(|| encode("the signer gave no reply verifier".into()))?;
    let bytes = request.to_vec().map_err(|e| encode(e.to_string()))?;
    let len = u16::try_from(bytes.len()).map_err(|_| encode("request too long".into()))?;
    let mut stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(server))
        .await
        .map_err(|_| DnsError::Timeout {
            server,
            waited: CONNECT_TIMEOUT,
        })?
        .map_err(unreachable)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.map_err(unreachable)?;
    let mut collector = Collector::new(zone);
    let mut soas = 0;
    let mut messages = 0usize;
    let timed_out = DnsError::Timeout {
        server,
        waited: TRANSFER_TIMEOUT,
    };
    while soas < 2 {
        let len = match timeout_at(deadline, stream.read_u16()).await {
            Err(_) => return Err(timed_out),
            Ok(Err(e)) => return Err(unreachable(e)),
            Ok(Ok(len)) => usize::from(len),
        };
        let mut reply = vec![0u8; len];
        match timeout_at(deadline, stream.read_exact(&mut reply)).await {
            Err(_) => return Err(timed_out),
            Ok(Err(e)) => return Err(unreachable(e)),
            Ok(Ok(_)) => {}
        }
        let message = Message::from_vec(&reply).map_err(|e| bad(e.to_string()))?;
        if message.metadata.id != id
            || message.metadata.message_type != MessageType::Response
            || message.metadata.op_code != OpCode::Query
        {
            return Err(bad("not an answer to our transfer request".into()));
        }
        if let Some(error) = message.signature().and_then(|sig| sig.data.error) {
            return Err(refused(format!("TSIG error {error:?}")));
        }
        let rcode = message.metadata.response_code;
        if matches!(rcode, ResponseCode::Refused | ResponseCode::NotAuth) {
            return Err(refused(super::rcode_name(rcode)));
        }
        if rcode != ResponseCode::NoError {
            return Err(DnsError::Rejected {
                server,
                fqdn: zone.to_ascii(),
                rcode: super::rcode_name(rcode),
                hint: "",
            });
        }
        // Every message signed and chained (RFC 8945 §5.3.1; named signs
        // each one): what we delete is decided by what this says.
        verifier
            .verify(&reply)
            .map_err(|e| DnsError::BadReplySignature {
                server,
                detail: format!("transfer message {}: {e}", messages + 1),
            })?;
        messages += 1;
        if messages == 1
            && message.answers.first().map(Record::record_type) != Some(RecordType::SOA)
        {
            return Err(bad("the transfer does not start with the SOA".into()));
        }
        for record in &message.answers {
            if record.record_type() == RecordType::SOA && record.name.to_lowercase() == *zone {
                soas += 1;
                continue;
            }
            collector.add(record);
        }
    }
    Ok(collector.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, NS, TXT};

    fn zone() -> Name {
        Name::from_ascii("peach.dinosaur.is.").expect("zone")
    }

    fn record(name: &str, data: RData) -> Record {
        Record::from_rdata(Name::from_ascii(name).expect("name"), 60, data)
    }

    fn a(name: &str) -> Record {
        record(name, RData::A(A::new(192, 0, 2, 1)))
    }

    fn txt(name: &str) -> Record {
        record(name, RData::TXT(TXT::new(vec!["x".into()])))
    }

    #[test]
    fn only_records_like_the_servers_own_are_candidates() {
        let mut c = Collector::new(&zone());
        for r in [
            // The apex and its in-zone name server.
            record(
                "peach.dinosaur.is.",
                RData::NS(NS(Name::from_ascii("ns1.peach.dinosaur.is.").expect("ns"))),
            ),
            a("peach.dinosaur.is."),
            a("ns1.peach.dinosaur.is."),
            // Dynamic-looking.
            a("stray.peach.dinosaur.is."),
            a("Mixed.Peach.Dinosaur.is."),
            txt("_acme-challenge.gone.peach.dinosaur.is."),
            // The operator's: another type, or names below.
            a("mail2.peach.dinosaur.is."),
            record(
                "mail2.peach.dinosaur.is.",
                RData::NS(NS(Name::from_ascii("x.example.").expect("ns"))),
            ),
            a("deep.peach.dinosaur.is."),
            a("host.deep.peach.dinosaur.is."),
            txt("_acme-challenge.odd.peach.dinosaur.is."),
            a("_acme-challenge.odd.peach.dinosaur.is."),
            // Outside the zone.
            a("elsewhere.example."),
        ] {
            c.add(&r);
        }
        let labels = c.finish();
        assert_eq!(
            labels
                .addresses
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["mixed", "stray"]
        );
        assert_eq!(
            labels
                .challenges
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["gone"]
        );
    }
}
