//! The embedded DNS server's zone: the in-memory table of names and how it
//! answers one query, bytes in, bytes out. No sockets: `embedded.rs` serves
//! these answers over UDP and TCP.
//!
//! What it answers, for zone `Z` (e.g. `peach.dinosaur.is`):
//! - `Z`: SOA and NS (ANY gives both); other types: NODATA.
//! - `<label>.Z` for a registered label: A and/or AAAA (ANY gives both);
//!   other types, or a missing address family: NODATA.
//! - `_acme-challenge.<label>.Z` while the label's ACME challenge is set:
//!   its TXT values (ANY gives them too); other types: NODATA.
//! - any other name under `Z`: NXDOMAIN.
//! - names outside `Z`, classes other than IN: REFUSED; zone transfers
//!   too, unless `transfer.rs` (which sees them first, over TCP) serves
//!   them to a configured secondary.
//! - opcodes other than QUERY: NOTIMP; unparseable queries: FORMERR (when
//!   the header can be read; otherwise no answer); responses are never
//!   answered, so two servers cannot ping-pong.
//!
//! Answers inside the zone are authoritative (AA). NODATA and NXDOMAIN
//! carry the SOA in the authority section for negative caching (RFC 2308).
//! The SOA serial starts at the current Unix time and goes up with every
//! change, so it also goes up across restarts.
//!
//! An answer that does not fit its transport's limit (over UDP 512 bytes
//! without EDNS, the client's EDNS size capped at 1232 with it) is the
//! question alone with TC set, so the client retries over TCP.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::journal::{Delta, Journal};
use super::serial::{self, SerialFile};
use super::{
    fqdn, zone_name, Challenge, ChallengeChange, DnsError, NameRecords, ZoneChange, CHALLENGE_LABEL,
};

/// TTL of the SOA and NS records, and the negative-caching TTL (SOA
/// minimum): one minute, like the records the server writes by default,
/// so a name that was just registered resolves within a minute even where
/// its absence was cached.
const ZONE_TTL: u32 = 60;
/// SOA refresh/retry/expire, for secondaries (`transfer.rs`): they hear
/// of changes by NOTIFY at once, so the refresh is only the fallback for a
/// lost NOTIFY. BIND's defaults.
const SOA_REFRESH: i32 = 3600;
/// See [`SOA_REFRESH`].
const SOA_RETRY: i32 = 600;
/// How long a secondary keeps serving the zone without reaching this
/// server: a week, as in the zone `init` writes for BIND, so the names
/// resolve through a long outage of the pub.
const SOA_EXPIRE: i32 = 604_800;
/// The UDP payload limit without EDNS (RFC 1035 §4.2.1).
const PLAIN_UDP_LIMIT: usize = 512;
/// The largest UDP answer we send with EDNS, and the size we advertise:
/// the DNS Flag Day 2020 value, which avoids IP fragmentation.
const EDNS_UDP_LIMIT: u16 = 1232;

/// How a query arrived; decides the size limit of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: 512 bytes, or the client's EDNS size up to 1232.
    Udp,
    /// TCP: up to 65535 bytes.
    Tcp,
}

/// One zone's data and answers: what [`EmbeddedDns`](super::EmbeddedDns)
/// serves. The table sits behind a lock, so the update pipeline changes it
/// while the sockets answer from it.
#[derive(Debug)]
pub(crate) struct Zone {
    /// The zone, absolute and lower case.
    zone: Name,
    /// The zone's name servers (NS records, SOA MNAME is the first).
    nameservers: Vec<Name>,
    /// The SOA RNAME (`hostmaster.<zone>.`).
    hostmaster: Name,
    /// The names and the serial.
    table: RwLock<Table>,
    /// Where the serial's high-water mark is kept across restarts; `None`:
    /// the clock alone keeps it moving (tests, `EmbeddedDns::new`).
    serial_file: Option<SerialFile>,
    /// Every new serial, for the NOTIFY senders (`notify.rs`).
    serials: tokio::sync::watch::Sender<u32>,
}

/// The zone's changing part.
#[derive(Debug)]
struct Table {
    /// Lower-case label → its records.
    names: HashMap<String, Entry>,
    /// Lower-case label → its ACME challenge (TXT values and their TTL),
    /// served at `_acme-challenge.<label>`.
    challenges: HashMap<String, (Vec<String>, u32)>,
    /// The SOA serial.
    serial: u32,
    /// The last changes, for IXFR.
    journal: Journal,
    /// The high-water mark in the serial file (`None`: none written by
    /// this run yet).
    reserved: Option<u32>,
    /// Whether the registry was applied (the first `apply_changes`): until
    /// then the table is empty, and transfers are refused so that no
    /// secondary takes an empty zone at a start.
    loaded: bool,
}

/// The records of one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// A.
    ip: Option<Ipv4Addr>,
    /// AAAA.
    ip6: Option<Ipv6Addr>,
    /// TTL of both.
    ttl: u32,
}

impl Zone {
    /// A zone `zone` with these name servers (default `ns1.<zone>`) and SOA
    /// contact (default `hostmaster.<zone>`; `hostmaster@example.org` is
    /// accepted too and written as `hostmaster.example.org`).
    pub(crate) fn new(
        zone: &str,
        nameservers: &[String],
        hostmaster: Option<&str>,
    ) -> Result<Zone, DnsError> {
        let zone = zone_name(zone)?;
        let absolute = |text: &str| -> Result<Name, DnsError> {
            let mut name = Name::from_ascii(text.trim_end_matches('.')).map_err(|e| {
                DnsError::InvalidName {
                    name: text.to_string(),
                    detail: e.to_string(),
                }
            })?;
            name.set_fqdn(true);
            Ok(name)
        };
        let nameservers = if nameservers.is_empty() {
            vec![fqdn("ns1", &zone)?]
        } else {
            nameservers
                .iter()
                .map(|ns| absolute(ns))
                .collect::<Result<Vec<_>, _>>()?
        };
        let hostmaster = match hostmaster {
            Some(mailbox) => absolute(&mailbox.replacen('@', ".", 1))?,
            None => fqdn("hostmaster", &zone)?,
        };
        let serial = unix_serial();
        Ok(Zone {
            zone,
            nameservers,
            hostmaster,
            table: RwLock::new(Table {
                names: HashMap::new(),
                serial,
                journal: Journal::default(),
                reserved: None,
                loaded: false,
                challenges: HashMap::new(),
            }),
            serial_file: None,
            serials: tokio::sync::watch::channel(serial).0,
        })
    }

    /// The zone's name, absolute and lower case.
    pub(crate) fn name(&self) -> &Name {
        &self.zone
    }

    /// The SOA serial now.
    pub(crate) fn serial(&self) -> u32 {
        self.read().serial
    }

    /// The records of `label`, if it has any.
    pub(crate) fn records(&self, label: &str) -> Option<NameRecords> {
        let key = label.to_ascii_lowercase();
        self.read().names.get(&key).map(|e| NameRecords {
            name: key.clone(),
            ip: e.ip,
            ip6: e.ip6,
            ttl: e.ttl,
        })
    }

    /// How many names have records.
    pub(crate) fn len(&self) -> usize {
        self.read().names.len()
    }

    /// The answer to one wire-format query, or `None` to stay silent (a
    /// response, or too short to hold a header).
    pub(crate) fn answer(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        // 12: the DNS header (RFC 1035 §4.1.1).
        if query.len() < 12 {
            return None;
        }
        if query[2] & 0x80 != 0 {
            return None; // QR set: a response; never answer those.
        }
        let request = match Message::from_vec(query) {
            Ok(request) => request,
            Err(_) => return Some(header_only_error(query, ResponseCode::FormErr)),
        };
        let limit = match (transport, &request.edns) {
            (Transport::Tcp, _) => usize::from(u16::MAX),
            (Transport::Udp, None) => PLAIN_UDP_LIMIT,
            (Transport::Udp, Some(edns)) => {
                usize::from(edns.max_payload().clamp(512, EDNS_UDP_LIMIT))
            }
        };
        let response = self.respond(&request);
        Some(
            encode_within(response, limit)
                .unwrap_or_else(|| header_only_error(query, ResponseCode::ServFail)),
        )
    }

    /// The response message to a parsed request.
    fn respond(&self, request: &Message) -> Message {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.checking_disabled = request.metadata.checking_disabled;
        response.add_queries(request.queries.iter().cloned());
        if let Some(edns) = &request.edns {
            let mut ours = Edns::new();
            ours.set_max_payload(EDNS_UDP_LIMIT).set_version(0);
            response.set_edns(ours);
            if edns.version() > 0 {
                // RFC 6891 §6.1.3: we only speak EDNS version 0.
                response.metadata.response_code = ResponseCode::BADVERS;
                return response;
            }
        }
        if request.metadata.op_code != OpCode::Query {
            response.metadata.response_code = ResponseCode::NotImp;
            return response;
        }
        let [question] = request.queries.as_slice() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return response;
        };
        let qname = question.name();
        let qtype = question.query_type();
        if !self.zone.zone_of(qname)
            || question.query_class() != DNSClass::IN
            || matches!(qtype, RecordType::AXFR | RecordType::IXFR)
        {
            response.metadata.response_code = ResponseCode::Refused;
            return response;
        }
        response.metadata.authoritative = true;
        let table = self.read();
        let depth = qname.num_labels().saturating_sub(self.zone.num_labels());
        let mut answers = Vec::new();
        let exists = match depth {
            0 => {
                if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                    answers.push(self.soa_record(table.serial));
                }
                if matches!(qtype, RecordType::NS | RecordType::ANY) {
                    answers.extend(self.nameservers.iter().map(|ns| {
                        Record::from_rdata(self.zone.clone(), ZONE_TTL, RData::NS(NS(ns.clone())))
                    }));
                }
                true
            }
            1 => {
                let entry = qname
                    .iter()
                    .next()
                    .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
                    .and_then(|label| table.names.get(&label).copied());
                match entry {
                    Some(entry) => {
                        if let (Some(ip), RecordType::A | RecordType::ANY) = (entry.ip, qtype) {
                            answers.push(Record::from_rdata(
                                qname.clone(),
                                entry.ttl,
                                RData::A(A(ip)),
                            ));
                        }
                        if let (Some(ip6), RecordType::AAAA | RecordType::ANY) = (entry.ip6, qtype)
                        {
                            answers.push(Record::from_rdata(
                                qname.clone(),
                                entry.ttl,
                                RData::AAAA(AAAA(ip6)),
                            ));
                        }
                        true
                    }
                    None => false,
                }
            }
            2 => challenge_answer(&table, qname, qtype, &mut answers),
            // Nothing else lives below a registered label.
            _ => false,
        };
        if !exists {
            response.metadata.response_code = ResponseCode::NXDomain;
        }
        if answers.is_empty() {
            // NXDOMAIN or NODATA: the SOA for negative caching (RFC 2308 §3).
            response.add_authority(self.soa_record(table.serial));
        } else {
            response.add_answers(answers);
        }
        response
    }

    /// The zone's SOA record.
    fn soa_record(&self, serial: u32) -> Record {
        let mname = self
            .nameservers
            .first()
            .cloned()
            .unwrap_or_else(|| self.zone.clone());
        let soa = SOA::new(
            mname,
            self.hostmaster.clone(),
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            ZONE_TTL,
        );
        Record::from_rdata(self.zone.clone(), ZONE_TTL, RData::SOA(soa))
    }

    /// Reads the table. Every change is made whole under the write lock,
    /// so a panic elsewhere cannot leave it half-changed: poisoning is
    /// ignored.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies changes under one write lock, with one serial bump if
    /// anything changed. Every label is checked first, so a bad one
    /// changes nothing.
    pub(crate) fn apply_changes(&self, changes: &[ZoneChange]) -> Result<(), DnsError> {
        let mut keyed = Vec::with_capacity(changes.len());
        for change in changes {
            fqdn(change.name(), &self.zone)?;
            keyed.push((change.name().to_ascii_lowercase(), change));
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        // Transfers: the mark first (an error changes nothing), then what
        // the touched labels held before.
        self.reserve_serial(&mut table)?;
        let labels: Vec<String> = keyed.iter().map(|(label, _)| label.clone()).collect();
        let before = self.records_of(&table, &labels);
        let from = table.serial;
        let mut changed = false;
        for (label, change) in keyed {
            let entry = match change {
                ZoneChange::Set(r) if r.ip.is_some() || r.ip6.is_some() => Some(Entry {
                    ip: r.ip,
                    ip6: r.ip6,
                    ttl: r.ttl,
                }),
                _ => None,
            };
            let before = match entry {
                Some(entry) => table.names.insert(label, entry),
                None => table.names.remove(&label),
            };
            changed |= before != entry;
        }
        if changed {
            // Serial arithmetic (RFC 1982) wraps; the clock keeps it ahead
            // of what an earlier run of the server handed out.
            table.serial = next_serial(table.serial);
            let after = self.records_of(&table, &labels);
            self.journal_change(&mut table, from, before, after);
        }
        if !table.loaded && !changed {
            // The first apply is the registry: the NOTIFY senders start
            // now, even for an empty registry.
            self.serials.send_replace(table.serial);
        }
        table.loaded = true;
        Ok(())
    }
}

/// What a secondary asking for the zone from some serial gets
/// ([`Zone::transfer_from`]).
#[derive(Debug)]
pub(crate) enum Transfer {
    /// The registry is not applied yet: refuse for now (SERVFAIL).
    NotReady,
    /// The secondary has the current serial (or a later one): the SOA.
    UpToDate(Record),
    /// The changes since its serial: the current SOA, then each change as
    /// (SOA before, removed, SOA after, added).
    Incremental(Record, Vec<(Record, Vec<Record>, Record, Vec<Record>)>),
    /// The whole zone: the SOA and every other record (the SOA again
    /// closes the transfer).
    Full(Record, Vec<Record>),
}

/// The embedded zone as a primary: every record for transfers, the
/// journal, the serial's mark and the NOTIFY feed. Apart from the zone's
/// answers, so that what a query answers and what a secondary gets are
/// two jobs that change separately.
impl Zone {
    /// Keeps the serial's high-water mark in `file`: the serial starts
    /// after the mark a previous run wrote (or at the clock, if later).
    pub(crate) fn keep_serial_in(&mut self, file: SerialFile) -> Result<(), DnsError> {
        let mark = file.load()?;
        let table = self.table.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(mark) = mark {
            let start = mark.wrapping_add(1);
            if serial::is_after(start, table.serial) {
                table.serial = start;
            }
        }
        self.serials.send_replace(table.serial);
        self.serial_file = Some(file);
        Ok(())
    }

    /// The zone's SOA record now.
    pub(crate) fn soa_now(&self) -> Record {
        self.soa_record(self.read().serial)
    }

    /// A feed of the zone's serial: it changes after every change.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u32> {
        self.serials.subscribe()
    }

    /// What a secondary at `serial` (`None`: it has nothing, AXFR) needs,
    /// read under one lock so the pieces agree.
    pub(crate) fn transfer_from(&self, serial: Option<u32>) -> Transfer {
        let table = self.read();
        if !table.loaded {
            return Transfer::NotReady;
        }
        let soa = self.soa_record(table.serial);
        if let Some(theirs) = serial {
            if !serial::is_after(table.serial, theirs) {
                return Transfer::UpToDate(soa);
            }
            if let Some(deltas) = table.journal.since(theirs) {
                let size: usize = deltas.iter().map(|d| d.removed.len() + d.added.len()).sum();
                // RFC 1995 §4: the whole zone when that is smaller.
                if size <= table.names.len() * 2 + self.nameservers.len() {
                    let steps = deltas
                        .into_iter()
                        .map(|d| {
                            (
                                self.soa_record(d.from),
                                d.removed.clone(),
                                self.soa_record(d.to),
                                d.added.clone(),
                            )
                        })
                        .collect();
                    return Transfer::Incremental(soa, steps);
                }
            }
        }
        let mut records: Vec<Record> = self
            .nameservers
            .iter()
            .map(|ns| Record::from_rdata(self.zone.clone(), ZONE_TTL, RData::NS(NS(ns.clone()))))
            .collect();
        let mut labels: Vec<&String> = table.names.keys().collect();
        labels.sort();
        for label in labels {
            records.extend(self.label_records(&table, label));
        }
        Transfer::Full(soa, records)
    }

    /// Every record the zone holds for `label`, as served (lower-case
    /// owner). Transfers and the journal are built from this, so every
    /// record type the zone answers for a label must be listed here.
    fn label_records(&self, table: &Table, label: &str) -> Vec<Record> {
        let Ok(owner) = fqdn(label, &self.zone) else {
            return Vec::new();
        };
        let mut records = Vec::new();
        if let Some((values, ttl)) = table.challenges.get(label) {
            if let Ok(challenge) =
                Name::from_ascii(CHALLENGE_LABEL).and_then(|first| first.append_domain(&owner))
            {
                records.extend(values.iter().map(|value| {
                    Record::from_rdata(
                        challenge.clone(),
                        *ttl,
                        RData::TXT(TXT::new(vec![value.clone()])),
                    )
                }));
            }
        }
        let Some(entry) = table.names.get(label) else {
            return records;
        };
        if let Some(ip) = entry.ip {
            records.push(Record::from_rdata(
                owner.clone(),
                entry.ttl,
                RData::A(A(ip)),
            ));
        }
        if let Some(ip6) = entry.ip6 {
            records.push(Record::from_rdata(owner, entry.ttl, RData::AAAA(AAAA(ip6))));
        }
        records
    }

    /// The records of these labels.
    fn records_of(&self, table: &Table, labels: &[String]) -> Vec<Record> {
        labels
            .iter()
            .flat_map(|label| self.label_records(table, label))
            .collect()
    }

    /// Before a change: makes sure the serial file's mark is beyond the
    /// serial the change may bring, writing a new mark when it is not.
    fn reserve_serial(&self, table: &mut Table) -> Result<(), DnsError> {
        let Some(file) = &self.serial_file else {
            return Ok(());
        };
        let next = next_serial(table.serial);
        if table
            .reserved
            .is_some_and(|mark| !serial::is_after(next, mark))
        {
            return Ok(());
        }
        let mark = next.wrapping_add(serial::RESERVE);
        file.store(mark)?;
        table.reserved = Some(mark);
        Ok(())
    }

    /// After a change from serial `from`: journals what went and came
    /// (records in both are unchanged) and tells the NOTIFY senders.
    fn journal_change(
        &self,
        table: &mut Table,
        from: u32,
        before: Vec<Record>,
        after: Vec<Record>,
    ) {
        let removed: Vec<Record> = before
            .iter()
            .filter(|r| !after.contains(r))
            .cloned()
            .collect();
        let added: Vec<Record> = after
            .iter()
            .filter(|r| !before.contains(r))
            .cloned()
            .collect();
        table.journal.push(Delta {
            from,
            to: table.serial,
            removed,
            added,
        });
        self.serials.send_replace(table.serial);
    }
}

/// The serial after `serial`: one more, or the clock when that is later
/// (so it also goes up across restarts without a serial file).
fn next_serial(serial: u32) -> u32 {
    serial.wrapping_add(1).max(unix_serial())
}

impl Zone {
    /// A record set that is not the registry's: the address of an in-zone
    /// name server `host` (`ns1.<zone>`). Does not count as the registry's
    /// first apply, nor bump the serial (it is there from the start).
    pub(crate) fn set_static(
        &self,
        host: &str,
        addrs: &[std::net::IpAddr],
    ) -> Result<(), DnsError> {
        let name =
            Name::from_ascii(host.trim_end_matches('.')).map_err(|e| DnsError::InvalidName {
                name: host.to_string(),
                detail: e.to_string(),
            })?;
        let outside = || DnsError::InvalidName {
            name: host.to_string(),
            detail: format!("not a name directly under {}", self.zone),
        };
        let mut absolute = name.clone();
        absolute.set_fqdn(true);
        if absolute.num_labels() != self.zone.num_labels() + 1 || !self.zone.zone_of(&absolute) {
            return Err(outside());
        }
        let label = name
            .iter()
            .next()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .ok_or_else(outside)?;
        let mut entry = Entry {
            ip: None,
            ip6: None,
            ttl: ZONE_TTL,
        };
        for addr in addrs {
            match addr {
                std::net::IpAddr::V4(a) => entry.ip = Some(*a),
                std::net::IpAddr::V6(a) => entry.ip6 = Some(*a),
            }
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        table.names.insert(label, entry);
        Ok(())
    }

    /// The ACME challenge of `label`, if one is set.
    pub(crate) fn challenge(&self, label: &str) -> Option<Challenge> {
        let key = label.to_ascii_lowercase();
        self.read()
            .challenges
            .get(&key)
            .map(|(txt, ttl)| Challenge {
                name: key.clone(),
                txt: txt.clone(),
                ttl: *ttl,
            })
    }

    /// Applies changes to challenges under one write lock, with one serial
    /// bump if anything changed. Every label and value is checked first,
    /// so a bad one changes nothing.
    pub(crate) fn apply_challenges(&self, changes: &[ChallengeChange]) -> Result<(), DnsError> {
        let mut keyed = Vec::with_capacity(changes.len());
        for change in changes {
            fqdn(change.name(), &self.zone)?;
            change.checked_values()?;
            keyed.push((change.name().to_ascii_lowercase(), change));
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        // As for names: the serial's mark first, then what the touched
        // labels held, so secondaries get the TXT records by IXFR too.
        self.reserve_serial(&mut table)?;
        let labels: Vec<String> = keyed.iter().map(|(label, _)| label.clone()).collect();
        let records_before = self.records_of(&table, &labels);
        let from = table.serial;
        let mut changed = false;
        for (label, change) in keyed {
            let before = match change {
                ChallengeChange::Set(c) if !c.txt.is_empty() => {
                    let new = (c.txt.clone(), c.ttl);
                    let before = table.challenges.insert(label, new.clone());
                    changed |= before.as_ref() != Some(&new);
                    continue;
                }
                _ => table.challenges.remove(&label),
            };
            changed |= before.is_some();
        }
        if changed {
            table.serial = next_serial(table.serial);
            let after = self.records_of(&table, &labels);
            self.journal_change(&mut table, from, records_before, after);
        }
        Ok(())
    }
}

/// The answer for a name two labels below the zone: a challenge's TXT
/// records when the name is `_acme-challenge.<label>` and `<label>` has
/// one set. Returns whether the name exists.
fn challenge_answer(
    table: &Table,
    qname: &Name,
    qtype: RecordType,
    answers: &mut Vec<Record>,
) -> bool {
    let mut labels = qname.iter();
    let first = labels
        .next()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase());
    let label = labels
        .next()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase());
    let (Some(first), Some(label)) = (first, label) else {
        return false;
    };
    if first != CHALLENGE_LABEL {
        return false;
    }
    let Some((values, ttl)) = table.challenges.get(&label) else {
        return false;
    };
    if matches!(qtype, RecordType::TXT | RecordType::ANY) {
        answers.extend(values.iter().map(|value| {
            Record::from_rdata(
                qname.clone(),
                *ttl,
                RData::TXT(TXT::new(vec![value.clone()])),
            )
        }));
    }
    true
}

/// Encodes `response`; when it is longer than `limit`, sends the question
/// alone with TC set (the client asks again over TCP). `None` if even that
/// cannot be encoded.
fn encode_within(mut response: Message, limit: usize) -> Option<Vec<u8>> {
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => return Some(bytes),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "embedded DNS: cannot encode an answer"),
    }
    response.answers.clear();
    response.authorities.clear();
    response.additionals.clear();
    response.metadata.truncation = true;
    response.to_vec().ok().filter(|bytes| bytes.len() <= limit)
}

/// A 12-byte header answering `query` with `rcode` and no sections: for
/// queries we cannot parse. Copies id, opcode and RD (RFC 1035 §4.1.1).
fn header_only_error(query: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let mut header = vec![0u8; 12];
    header[0] = query[0];
    header[1] = query[1];
    // QR=1, opcode and RD from the query; AA, TC cleared.
    header[2] = 0x80 | (query[2] & 0x79);
    header[3] = u8::try_from(u16::from(rcode) & 0x0f).unwrap_or(2);
    header
}

/// The current Unix time as a serial (good until 2106; after that the
/// fallback keeps serials moving by the +1 per change).
fn unix_serial() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u32::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, Query};

    const ZONE: &str = "peach.dinosaur.is";

    fn zone() -> Zone {
        Zone::new(ZONE, &[], None).expect("zone")
    }

    /// Applies one change.
    fn apply(zone: &Zone, change: ZoneChange) {
        zone.apply_changes(&[change]).expect("apply");
    }

    fn set(name: &str, ip: Option<&str>, ip6: Option<&str>) -> ZoneChange {
        ZoneChange::Set(NameRecords {
            name: name.into(),
            ip: ip.map(|s| s.parse().expect("ip")),
            ip6: ip6.map(|s| s.parse().expect("ip6")),
            ttl: 60,
        })
    }

    fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut msg = Message::query();
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            msg.set_edns(e);
        }
        msg.to_vec().expect("encode")
    }

    fn ask(dns: &Zone, name: &str, rtype: RecordType) -> Message {
        let answer = dns
            .answer(&query(name, rtype, None), Transport::Udp)
            .expect("an answer");
        Message::from_vec(&answer).expect("decodes")
    }

    fn data(msg: &Message) -> Vec<String> {
        msg.answers.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn in_zone_nameservers_answer_their_addresses_and_are_transferred() {
        let dns = zone();
        dns.set_static(
            "ns1.peach.dinosaur.is",
            &[
                "192.0.2.53".parse().expect("v4"),
                "2001:db8::53".parse().expect("v6"),
            ],
        )
        .expect("in zone");
        assert_eq!(
            data(&ask(&dns, "ns1.peach.dinosaur.is.", RecordType::A)),
            ["192.0.2.53"]
        );
        assert_eq!(
            data(&ask(&dns, "NS1.peach.dinosaur.is.", RecordType::AAAA)),
            ["2001:db8::53"]
        );
        // Not the registry's first apply: transfers still wait for it.
        assert!(matches!(dns.transfer_from(None), Transfer::NotReady));
        apply(&dns, set("pi", Some("192.0.2.7"), None));
        let Transfer::Full(_, records) = dns.transfer_from(None) else {
            panic!("a full transfer");
        };
        let texts: Vec<String> = records.iter().map(|r| r.to_string()).collect();
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("ns1.peach.dinosaur.is.") && t.contains("192.0.2.53")),
            "{texts:?}"
        );
        for outside in [
            "ns1.example.org",
            "a.b.peach.dinosaur.is",
            "peach.dinosaur.is",
        ] {
            assert!(dns.set_static(outside, &[]).is_err(), "{outside}");
        }
    }

    #[test]
    fn answers_a_aaaa_any_and_nodata() {
        let dns = zone();
        apply(&dns, set("pi", Some("192.0.2.7"), Some("2001:db8::7")));
        let a = ask(&dns, "Pi.Peach.Dinosaur.IS.", RecordType::A);
        assert_eq!(a.metadata.message_type, MessageType::Response);
        assert!(a.metadata.authoritative);
        assert!(a.metadata.recursion_desired, "RD is copied");
        assert!(!a.metadata.recursion_available);
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert_eq!(data(&a), ["192.0.2.7"]);
        // The owner name keeps the asker's case (0x20 randomisation).
        assert_eq!(a.answers[0].name.to_ascii(), "Pi.Peach.Dinosaur.IS.");
        assert_eq!(a.answers[0].ttl, 60);
        assert_eq!(
            data(&ask(&dns, "pi.peach.dinosaur.is.", RecordType::AAAA)),
            ["2001:db8::7"]
        );
        assert_eq!(
            ask(&dns, "pi.peach.dinosaur.is.", RecordType::ANY)
                .answers
                .len(),
            2
        );

        apply(&dns, set("pi", Some("192.0.2.8"), None));
        let nodata = ask(&dns, "pi.peach.dinosaur.is.", RecordType::AAAA);
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
        let mx = ask(&dns, "pi.peach.dinosaur.is.", RecordType::MX);
        assert_eq!(
            (mx.metadata.response_code, mx.answers.len()),
            (ResponseCode::NoError, 0)
        );
    }

    #[test]
    fn nxdomain_refused_and_the_apex() {
        let dns = zone();
        apply(&dns, set("pi", Some("192.0.2.7"), None));
        for name in ["nope.peach.dinosaur.is.", "x.pi.peach.dinosaur.is."] {
            let nx = ask(&dns, name, RecordType::A);
            assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert!(nx.metadata.authoritative);
            assert_eq!(nx.authorities.len(), 1);
            assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
        }
        for name in ["example.org.", "dinosaur.is.", "peach.dinosaur.is.evil."] {
            let refused = ask(&dns, name, RecordType::A);
            assert_eq!(
                refused.metadata.response_code,
                ResponseCode::Refused,
                "{name}"
            );
            assert!(!refused.metadata.authoritative);
        }
        let axfr = ask(&dns, "peach.dinosaur.is.", RecordType::AXFR);
        assert_eq!(axfr.metadata.response_code, ResponseCode::Refused);

        let soa = ask(&dns, "peach.dinosaur.is.", RecordType::SOA);
        assert_eq!(soa.answers.len(), 1);
        let text = soa.answers[0].data.to_string();
        assert!(
            text.starts_with("ns1.peach.dinosaur.is. hostmaster.peach.dinosaur.is."),
            "{text}"
        );
        assert_eq!(
            data(&ask(&dns, "peach.dinosaur.is.", RecordType::NS)),
            ["ns1.peach.dinosaur.is."]
        );
        assert_eq!(
            ask(&dns, "peach.dinosaur.is.", RecordType::ANY)
                .answers
                .len(),
            2
        );
        let apex_a = ask(&dns, "peach.dinosaur.is.", RecordType::A);
        assert_eq!(
            (apex_a.metadata.response_code, apex_a.answers.len()),
            (ResponseCode::NoError, 0)
        );

        // Removing makes the name NXDOMAIN again.
        apply(&dns, ZoneChange::Remove { name: "pi".into() });
        let gone = ask(&dns, "pi.peach.dinosaur.is.", RecordType::A);
        assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(dns.len(), 0);
    }

    #[test]
    fn challenges_answer_txt_at_their_own_name_only() {
        let dns = zone();
        apply(&dns, set("pi", Some("192.0.2.7"), None));
        let s0 = dns.serial();
        let values = vec!["a".repeat(43), "b".repeat(43)];
        dns.apply_challenges(&[ChallengeChange::Set(Challenge {
            name: "Pi".into(),
            txt: values.clone(),
            ttl: 30,
        })])
        .expect("set");
        assert!(dns.serial() > s0);
        let txt = ask(
            &dns,
            "_ACME-challenge.pi.peach.dinosaur.is.",
            RecordType::TXT,
        );
        assert_eq!(txt.metadata.response_code, ResponseCode::NoError);
        assert!(txt.metadata.authoritative);
        assert_eq!(data(&txt), values);
        assert!(txt.answers.iter().all(|r| r.ttl == 30));
        // Other types there: NODATA; the name's own records unchanged.
        let a = ask(&dns, "_acme-challenge.pi.peach.dinosaur.is.", RecordType::A);
        assert_eq!(
            (a.metadata.response_code, a.answers.len()),
            (ResponseCode::NoError, 0)
        );
        assert_eq!(
            data(&ask(&dns, "pi.peach.dinosaur.is.", RecordType::A)),
            ["192.0.2.7"]
        );
        assert!(ask(&dns, "pi.peach.dinosaur.is.", RecordType::TXT)
            .answers
            .is_empty());
        // Another label two down, or another name's challenge: NXDOMAIN.
        for name in [
            "_x.pi.peach.dinosaur.is.",
            "_acme-challenge.other.peach.dinosaur.is.",
        ] {
            let nx = ask(&dns, name, RecordType::TXT);
            assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain, "{name}");
        }
        // A bad value anywhere changes nothing; clearing removes them.
        let bad = ChallengeChange::Set(Challenge {
            name: "pi".into(),
            txt: vec!["x y".into()],
            ttl: 60,
        });
        assert!(dns.apply_challenges(&[bad]).is_err());
        assert_eq!(dns.challenge("pi").map(|c| c.txt), Some(values));
        dns.apply_challenges(&[ChallengeChange::Clear { name: "pi".into() }])
            .expect("clear");
        let gone = ask(
            &dns,
            "_acme-challenge.pi.peach.dinosaur.is.",
            RecordType::TXT,
        );
        assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
        assert!(dns.challenge("pi").is_none());
    }

    #[test]
    fn serial_goes_up_with_every_change_and_only_then() {
        let dns = zone();
        let s0 = dns.serial();
        apply(&dns, set("pi", Some("192.0.2.7"), None));
        let s1 = dns.serial();
        assert!(s1 > s0);
        apply(&dns, set("pi", Some("192.0.2.7"), None));
        assert_eq!(dns.serial(), s1, "no change, no new serial");
        apply(&dns, set("pi", Some("192.0.2.8"), None));
        assert!(dns.serial() > s1);
        // A Set with no address is a Remove.
        apply(&dns, set("pi", None, None));
        assert!(dns.records("pi").is_none());
        // A batch is one change of serial.
        let before = dns.serial();
        let batch: Vec<_> = (0..100)
            .map(|i| set(&format!("n{i}"), Some("192.0.2.1"), None))
            .collect();
        dns.apply_changes(&batch).expect("apply_changes");
        assert_eq!(dns.len(), 100);
        assert_eq!(dns.serial(), before.wrapping_add(1).max(unix_serial()));
        // A bad label anywhere in a batch changes nothing.
        let bad = vec![
            set("ok", Some("192.0.2.1"), None),
            set("a b", Some("192.0.2.1"), None),
        ];
        assert!(dns.apply_changes(&bad).is_err());
        assert!(dns.records("ok").is_none());
    }

    #[test]
    fn the_serial_never_goes_back_across_restarts_even_ahead_of_the_clock() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("embedded-dns.serial");
        let start = |path: &std::path::Path| {
            let mut zone = zone();
            zone.keep_serial_in(SerialFile::new(path))
                .expect("serial file");
            zone
        };
        let first = start(&path);
        // 2,500 changes in a burst: the serial runs far ahead of the clock,
        // past two marks.
        for i in 0..2500u32 {
            apply(
                &first,
                set("pi", Some(&format!("192.0.2.{}", i % 200 + 1)), None),
            );
        }
        let last = first.serial();
        assert!(last >= unix_serial() + 2000, "{last}");
        drop(first);
        let second = start(&path);
        assert!(
            serial::is_after(second.serial(), last),
            "{} after {last}",
            second.serial()
        );
        apply(&second, set("pi", Some("192.0.2.250"), None));
        assert!(serial::is_after(second.serial(), last));
        // The mark is ahead of what was served, by at most the reserve.
        let mark: u32 = std::fs::read_to_string(&path)
            .expect("mark")
            .trim()
            .parse()
            .expect("number");
        assert!(serial::is_after(mark, second.serial()));
        assert!(mark - second.serial() <= serial::RESERVE);
    }

    #[test]
    fn malformed_and_odd_packets() {
        let dns = zone();
        // Too short for a header: silence.
        assert_eq!(dns.answer(&[0x12, 0x34, 0, 0], Transport::Udp), None);
        // A response: silence, never a reply to a reply.
        let mut response = query("pi.peach.dinosaur.is.", RecordType::A, None);
        response[2] |= 0x80;
        assert_eq!(dns.answer(&response, Transport::Udp), None);
        // A header claiming a question that is not there: FORMERR.
        let garbage = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        let formerr = dns.answer(&garbage, Transport::Udp).expect("answer");
        assert_eq!(formerr.len(), 12);
        assert_eq!(&formerr[..2], &[0xab, 0xcd]);
        assert_eq!(formerr[2] & 0x80, 0x80, "QR");
        assert_eq!(formerr[2] & 0x01, 0x01, "RD copied");
        assert_eq!(formerr[3] & 0x0f, 1, "FORMERR");
        // Two questions: FORMERR.
        let mut two = Message::query();
        two.add_query(Query::query(
            Name::from_ascii("a.peach.dinosaur.is.").expect("n"),
            RecordType::A,
        ));
        two.add_query(Query::query(
            Name::from_ascii("b.peach.dinosaur.is.").expect("n"),
            RecordType::A,
        ));
        let reply = dns
            .answer(&two.to_vec().expect("enc"), Transport::Udp)
            .expect("answer");
        assert_eq!(
            Message::from_vec(&reply)
                .expect("dec")
                .metadata
                .response_code,
            ResponseCode::FormErr
        );
        // An UPDATE: NOTIMP.
        let mut update = Message::query();
        update.metadata.op_code = OpCode::Update;
        update.add_query(Query::query(
            Name::from_ascii("peach.dinosaur.is.").expect("n"),
            RecordType::SOA,
        ));
        let reply = dns
            .answer(&update.to_vec().expect("enc"), Transport::Udp)
            .expect("answer");
        assert_eq!(
            Message::from_vec(&reply)
                .expect("dec")
                .metadata
                .response_code,
            ResponseCode::NotImp
        );
        // Class CH (version.bind): REFUSED.
        let mut chaos = Message::query();
        let mut q = Query::query(
            Name::from_ascii("version.bind.").expect("n"),
            RecordType::TXT,
        );
        q.set_query_class(DNSClass::CH);
        chaos.add_query(q);
        let reply = dns
            .answer(&chaos.to_vec().expect("enc"), Transport::Udp)
            .expect("answer");
        assert_eq!(
            Message::from_vec(&reply)
                .expect("dec")
                .metadata
                .response_code,
            ResponseCode::Refused
        );
        // EDNS version 1: BADVERS, with our OPT.
        let mut v1 = Message::from_vec(&query("pi.peach.dinosaur.is.", RecordType::A, Some(1232)))
            .expect("dec");
        if let Some(e) = v1.edns.as_mut() {
            e.set_version(1);
        }
        let reply = dns
            .answer(&v1.to_vec().expect("enc"), Transport::Udp)
            .expect("answer");
        let reply = Message::from_vec(&reply).expect("dec");
        // BADVERS and BADSIG share code 16; hickory decodes it as BADSIG.
        assert_eq!(u16::from(reply.metadata.response_code), 16);
        assert_eq!(
            reply.edns.as_ref().map(|e| e.max_payload()),
            Some(EDNS_UDP_LIMIT)
        );
    }

    #[test]
    fn long_answers_are_truncated_over_udp_without_edns() {
        // Twelve long name server names that share no suffix (so name
        // compression cannot shrink them) make the NS answer ~870 bytes.
        let nameservers: Vec<String> = (0..12)
            .map(|i| format!("ns{i}-{}.example{i}", "x".repeat(40)))
            .collect();
        let dns = Zone::new(ZONE, &nameservers, Some("hostmaster@example.org")).expect("zone");
        let plain = dns
            .answer(
                &query("peach.dinosaur.is.", RecordType::NS, None),
                Transport::Udp,
            )
            .expect("a");
        assert!(plain.len() <= 512);
        let plain = Message::from_vec(&plain).expect("dec");
        assert!(plain.metadata.truncation);
        assert!(plain.answers.is_empty());
        assert_eq!(plain.queries.len(), 1, "the question stays");
        // With EDNS 4096 the client gets up to 1232 bytes: enough here.
        assert!(
            dns.answer(
                &query("peach.dinosaur.is.", RecordType::NS, None),
                Transport::Tcp
            )
            .map_or(0, |a| a.len())
                > 512
        );
        let edns = dns
            .answer(
                &query("peach.dinosaur.is.", RecordType::NS, Some(4096)),
                Transport::Udp,
            )
            .expect("a");
        let edns = Message::from_vec(&edns).expect("dec");
        assert!(!edns.metadata.truncation);
        assert_eq!(edns.answers.len(), 12);
        // TCP is never truncated.
        let tcp = dns
            .answer(
                &query("peach.dinosaur.is.", RecordType::NS, None),
                Transport::Tcp,
            )
            .expect("a");
        assert_eq!(Message::from_vec(&tcp).expect("dec").answers.len(), 12);
        // The mailbox form of the contact became a name.
        let soa = ask(&dns, "peach.dinosaur.is.", RecordType::SOA);
        assert!(soa.answers[0]
            .data
            .to_string()
            .contains(" hostmaster.example.org. "));
    }
}
