//! DNS backends: how an accepted change reaches the zone.
//!
//! Every backend implements [`ZoneBackend`]. The update pipeline calls
//! [`ZoneBackend::apply`] and commits the registry only when it returned
//! `Ok`, so the registry and DNS never disagree; on start the server calls
//! [`ZoneBackend::apply_all`] with every registered name to re-apply the
//! registry. [`build`] turns the `[dns]` config into a backend.
//! [`ZoneBackend::apply_challenge`] sets and clears a name's ACME DNS-01
//! TXT records ([`ChallengeChange`]), apart from its addresses.
//!
//! Layout:
//! - `mod.rs`: the trait, the change types, [`DnsError`], [`build`] and
//!   [`measure_rate`] (the throughput probe the benchmark command uses).
//! - `key.rs`: [`TsigKey`]: TSIG key files, BIND `key { … }` statements
//!   (named's `session.key` among them) or a bare base64 secret.
//! - `rfc2136.rs`: [`Rfc2136`], an in-process RFC 2136 UPDATE client with
//!   TSIG over UDP (TCP when the reply is truncated); the `rfc2136` and
//!   `bind-local` backends.
//! - `nsupdate.rs`: [`Nsupdate`], which runs `nsupdate -l` per change.
//! - `axfr.rs`: reads a BIND backend's zone back by AXFR (TSIG-signed) to
//!   find [`DynamicLabels`], the names that look like the server's, so the
//!   start-up re-apply can remove those the registry does not hold.
//! - `zone.rs`: the embedded server's zone: the in-memory table and how it
//!   answers a query (pure: bytes in, bytes out).
//! - `embedded.rs`: [`EmbeddedDns`], which serves that zone over UDP and
//!   TCP and is the `embedded` backend.
//! - `transfer.rs`: AXFR/IXFR of that zone to its secondaries (by address,
//!   optionally TSIG); `journal.rs`: the recent changes IXFR is made of;
//!   `notify.rs`: NOTIFY to the secondaries after every change;
//!   `serial.rs`: the file that keeps the serial from going back.

mod axfr;
pub mod embedded;
mod journal;
mod key;
mod notify;
mod nsupdate;
mod rfc2136;
mod serial;
pub mod transfer;
mod zone;

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Name;

use crate::config::DnsConfig;

pub use axfr::DynamicLabels;
pub use embedded::{EmbeddedDns, Transport};
pub use key::TsigKey;
pub use nsupdate::Nsupdate;
pub use rfc2136::{build_challenge_update, build_update, Rfc2136};

/// A boxed future, so backends can be used as `dyn ZoneBackend`.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The records of one name inside the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRecords {
    /// The label (`eb4890`), not the fqdn.
    pub name: String,
    /// The A record, if any.
    pub ip: Option<Ipv4Addr>,
    /// The AAAA record, if any.
    pub ip6: Option<Ipv6Addr>,
    /// TTL in seconds.
    pub ttl: u32,
}

/// One change to the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneChange {
    /// Make the name's A and AAAA records exactly these (an absent address
    /// removes that record; with neither, this is a [`ZoneChange::Remove`]).
    Set(NameRecords),
    /// Remove the name's A and AAAA records.
    Remove {
        /// The label.
        name: String,
    },
}

impl ZoneChange {
    /// The label this change is about.
    pub fn name(&self) -> &str {
        match self {
            ZoneChange::Set(records) => &records.name,
            ZoneChange::Remove { name } => name,
        }
    }
}

/// Errors of a DNS backend. Each says which server, file or program.
///
/// Every one of them means the change was not confirmed: the caller must
/// not commit it (the HTTP API answers 503 `dns_unavailable`).
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// No answer from the DNS server in time, after the retry.
    #[error("no answer from DNS server {server} within {waited:?}")]
    Timeout {
        /// The server asked.
        server: SocketAddr,
        /// How long we waited in all.
        waited: Duration,
    },
    /// The DNS server could not be reached (connection refused: nothing
    /// listens there; network unreachable).
    #[error("cannot reach DNS server {server}: {source}")]
    Unreachable {
        /// The server.
        server: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The server answered the UPDATE with an error code (REFUSED: the key
    /// may not change this name; NOTAUTH: not authoritative for the zone or
    /// the key is unknown; NOTZONE, SERVFAIL, …).
    #[error("DNS server {server} refused the update of {fqdn}: {rcode}{hint}")]
    Rejected {
        /// The server.
        server: SocketAddr,
        /// The name being changed.
        fqdn: String,
        /// The response code as BIND prints it (`REFUSED`, `NOTAUTH`, …).
        rcode: String,
        /// A hint for the operator, starting with `; ` (or empty).
        hint: &'static str,
    },
    /// The server did not accept our TSIG key (TSIG error BADKEY, BADSIG,
    /// BADTIME), even after re-reading the key file.
    #[error(
        "DNS server {server} rejected TSIG key {key_name:?} from {key_file}: {tsig_error}{hint}"
    )]
    KeyRejected {
        /// The server.
        server: SocketAddr,
        /// The key's name.
        key_name: String,
        /// Where the key came from.
        key_file: PathBuf,
        /// `BADKEY`, `BADSIG`, `BADTIME`, …
        tsig_error: String,
        /// What it usually means, in parentheses after a space (or empty).
        hint: &'static str,
    },
    /// The reply was not signed with our key, or its signature or time did
    /// not verify: it may be forged, so the change is not believed.
    #[error("reply from DNS server {server} failed TSIG verification: {detail}")]
    BadReplySignature {
        /// The server.
        server: SocketAddr,
        /// What did not verify.
        detail: String,
    },
    /// The reply could not be parsed or does not answer our request.
    #[error("malformed reply from DNS server {server}: {detail}")]
    BadReply {
        /// The server.
        server: SocketAddr,
        /// What is wrong with it.
        detail: String,
    },
    /// A key file could not be read.
    #[error("cannot read TSIG key file {path}: {source}")]
    KeyFileRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A key file was read but holds no usable key.
    #[error("TSIG key file {path}: {detail}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A zone, label or name server name is not a valid DNS name.
    #[error("invalid DNS name {name:?}: {detail}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// `nsupdate` could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `nsupdate` failed; its own words are in `output`.
    #[error("`{command}` failed ({status}): {output}")]
    Program {
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// Its standard error (and output), on one line: the lines are
        /// joined with `; `.
        output: String,
    },
    /// `nsupdate` did not finish in time and was killed.
    #[error("`{command}` did not finish within {waited:?} and was killed")]
    ProgramTimeout {
        /// The command line.
        command: String,
        /// How long it ran.
        waited: Duration,
    },
    /// The embedded DNS's serial file could not be read, parsed or
    /// written (the change is then not made: a serial that could go back
    /// at the next start would leave the secondaries behind).
    #[error("embedded DNS serial file {path}: {detail}")]
    SerialFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The DNS server would not transfer the zone to our key, so records
    /// of names the registry does not hold cannot be found.
    #[error(
        "DNS server {server} refused to transfer {zone} to key {key_name:?} ({detail}); so \
         that records of names the registry does not hold are removed at start, add \
         `allow-transfer {{ key \"{key_name}\"; }};` to the zone's statement in named.conf \
         (`peach-dyndns-server init` writes it) and reload named"
    )]
    TransferRefused {
        /// The server.
        server: SocketAddr,
        /// The zone.
        zone: String,
        /// The key the request was signed with.
        key_name: String,
        /// The response code or TSIG error.
        detail: String,
    },
    /// Building or encoding a DNS message failed (a bug, or an absurd
    /// input such as a name too long for DNS).
    #[error("cannot encode the DNS message for {what}: {detail}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// hickory-proto's reason.
        detail: String,
    },
}

/// Something that can change the zone.
pub trait ZoneBackend: Send + Sync {
    /// Applies one change; `Ok` only once the DNS server accepted it.
    fn apply<'a>(&'a self, change: &'a ZoneChange) -> BoxFut<'a, Result<(), DnsError>>;

    /// Applies many changes, e.g. the whole registry at start. Stops at the
    /// first error (the changes before it stay applied; each change is
    /// idempotent, so running the whole batch again is safe).
    fn apply_all<'a>(&'a self, changes: &'a [ZoneChange]) -> BoxFut<'a, Result<(), DnsError>> {
        Box::pin(async move {
            for change in changes {
                self.apply(change).await?;
            }
            Ok(())
        })
    }

    /// Applies one change to a name's ACME challenge TXT records
    /// (`_acme-challenge.<label>.<zone>`); `Ok` only once the DNS server
    /// accepted it. Never touches the name's A and AAAA records.
    fn apply_challenge<'a>(
        &'a self,
        change: &'a ChallengeChange,
    ) -> BoxFut<'a, Result<(), DnsError>>;

    /// A short name for logs and `/health` (`embedded`, `bind-local`, …).
    fn kind(&self) -> &'static str;

    /// The labels of the zone whose records look like the server's, read
    /// from the DNS server, so the start-up re-apply can remove those the
    /// registry does not hold. `None` (the default) when the backend's zone
    /// holds only what the server put there (the embedded one).
    fn dynamic_labels(&self) -> BoxFut<'_, Result<Option<DynamicLabels>, DnsError>> {
        Box::pin(async { Ok(None) })
    }
}

/// A response code as BIND and `dig` print it.
pub(crate) fn rcode_name(rcode: ResponseCode) -> String {
    let code = u16::from(rcode);
    let name = match code {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        _ => return format!("RCODE{code}"),
    };
    name.to_string()
}

/// The first label of a name's ACME DNS-01 challenge (RFC 8555 §8.4).
pub const CHALLENGE_LABEL: &str = "_acme-challenge";

/// The ACME DNS-01 challenge TXT records of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The label (`eb4890`) whose `_acme-challenge.<label>.<zone>` answers.
    pub name: String,
    /// The TXT values, one record each (one per identifier of the order:
    /// `name` and `*.name` share the TXT name).
    pub txt: Vec<String>,
    /// TTL of the records in seconds.
    pub ttl: u32,
}

/// One change to a name's challenge records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeChange {
    /// Make `_acme-challenge.<label>.<zone>` answer exactly these values.
    Set(Challenge),
    /// Remove every TXT record there.
    Clear {
        /// The label.
        name: String,
    },
}

impl ChallengeChange {
    /// The label this change is about.
    pub fn name(&self) -> &str {
        match self {
            ChallengeChange::Set(challenge) => &challenge.name,
            ChallengeChange::Clear { name } => name,
        }
    }

    /// The TXT values to set (none for `Clear`), each checked by
    /// [`check_txt_value`].
    pub(crate) fn checked_values(&self) -> Result<&[String], DnsError> {
        match self {
            ChallengeChange::Set(challenge) => {
                for value in &challenge.txt {
                    check_txt_value(value)?;
                }
                Ok(&challenge.txt)
            }
            ChallengeChange::Clear { .. } => Ok(&[]),
        }
    }
}

/// `_acme-challenge.<label>.<zone>`, after the checks of [`fqdn`].
pub(crate) fn challenge_fqdn(label: &str, zone: &Name) -> Result<Name, DnsError> {
    let name = fqdn(label, zone)?;
    name.prepend_label(CHALLENGE_LABEL)
        .map_err(|e| DnsError::InvalidName {
            name: label.to_string(),
            detail: e.to_string(),
        })
}

/// The backends' own guard on a TXT value: 1 to 255 characters of
/// base64url. The protocol allows exactly 43 of them; this check is what
/// keeps a value from changing the meaning of an `nsupdate` script or
/// overflowing a TXT string, whoever calls the backend.
pub(crate) fn check_txt_value(value: &str) -> Result<(), DnsError> {
    // 255: the longest character-string in a TXT record (RFC 1035 §3.3).
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(DnsError::InvalidName {
            name: value.to_string(),
            detail: "a challenge TXT value is 1 to 255 characters of base64url".into(),
        })
    }
}

/// The backend the config asked for.
pub struct Backend {
    /// What the update pipeline calls.
    pub zone: Arc<dyn ZoneBackend>,
    /// For `embedded` only: the DNS server the caller must run with
    /// [`EmbeddedDns::serve`] on sockets bound to the configured `listen`
    /// address. The same object as `zone`.
    pub embedded: Option<Arc<EmbeddedDns>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("kind", &self.zone.kind())
            .field("embedded", &self.embedded.is_some())
            .finish()
    }
}

/// Builds the backend `cfg` describes for `zone` (e.g. `peach.dinosaur.is`).
///
/// Key files are read here, so a wrong path or a bad key stops the server
/// at start with the path in the message. `bind-local` re-reads BIND's
/// session key later on its own when named rejects it (named writes a new
/// one at every start); `nsupdate` leaves the key file to `nsupdate`.
pub fn build(cfg: &DnsConfig, zone: &str) -> Result<Backend, DnsError> {
    match cfg {
        DnsConfig::Embedded {
            nameservers,
            nameserver_addresses,
            hostmaster,
            secondaries,
            serial_file,
            limits,
            ..
        } => {
            let secondaries = secondaries
                .iter()
                .map(transfer::Secondary::from_config)
                .collect::<Result<Vec<_>, _>>()?;
            let dns = EmbeddedDns::primary(
                zone,
                nameservers,
                hostmaster.as_deref(),
                secondaries,
                serial_file.as_deref(),
            )?
            .with_limits(limits.limits());
            for (host, addrs) in nameserver_addresses {
                dns.set_nameserver_address(host, addrs)?;
            }
            let dns = Arc::new(dns);
            Ok(Backend {
                zone: Arc::clone(&dns) as Arc<dyn ZoneBackend>,
                embedded: Some(dns),
            })
        }
        DnsConfig::BindLocal {
            server,
            session_key,
        } => Ok(Backend {
            zone: Arc::new(Rfc2136::bind_local(*server, zone, session_key)?),
            embedded: None,
        }),
        DnsConfig::Nsupdate {
            program,
            port,
            session_key,
        } => Ok(Backend {
            zone: Arc::new(Nsupdate::new(program, *port, session_key, zone)?),
            embedded: None,
        }),
        DnsConfig::Rfc2136 {
            server,
            key_name,
            key_algorithm,
            key_file,
        } => Ok(Backend {
            zone: Arc::new(Rfc2136::with_key_file(
                *server,
                zone,
                key_file,
                key_name,
                key_algorithm,
            )?),
            embedded: None,
        }),
    }
}

/// The zone as an absolute, lower-case DNS name.
pub(crate) fn zone_name(zone: &str) -> Result<Name, DnsError> {
    let invalid = |detail: String| DnsError::InvalidName {
        name: zone.to_string(),
        detail,
    };
    let trimmed = zone.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(invalid("the zone must not be the root".into()));
    }
    let mut name = Name::from_ascii(trimmed).map_err(|e| invalid(e.to_string()))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// `label.zone`, after checking that `label` is one DNS label of letters,
/// digits, `-` and `_`. The protocol's rules are stricter; this check is
/// the backends' own guard, since `nsupdate` takes the name in a script
/// where a space or newline would change the meaning.
pub(crate) fn fqdn(label: &str, zone: &Name) -> Result<Name, DnsError> {
    let invalid = |detail: &str| DnsError::InvalidName {
        name: label.to_string(),
        detail: detail.to_string(),
    };
    // 63: the longest DNS label (RFC 1035 §2.3.4).
    if label.is_empty() || label.len() > 63 {
        return Err(invalid("a label has 1 to 63 characters"));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "only letters, digits, '-' and '_' may appear in a label",
        ));
    }
    zone.prepend_label(label.to_ascii_lowercase())
        .map_err(|e| invalid(&e.to_string()))
}

/// What [`measure_rate`] counted.
#[derive(Debug, Clone, PartialEq)]
pub struct RateReport {
    /// Changes the backend confirmed.
    pub ok: u64,
    /// Changes that failed.
    pub failed: u64,
    /// The first error seen, if any, for the message.
    pub first_error: Option<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl RateReport {
    /// Confirmed changes per second.
    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }
}

/// Drives `backend` with `tasks` concurrent loops for `duration`, each
/// task setting its own name (`<prefix><task>`) to a new address in turn,
/// and counts the confirmed changes. The names are removed at the end.
/// Uses real time (this measures a real server).
pub async fn measure_rate(
    backend: Arc<dyn ZoneBackend>,
    prefix: &str,
    tasks: usize,
    duration: Duration,
) -> RateReport {
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let backend = Arc::clone(&backend);
        let name = format!("{prefix}{task}");
        set.spawn(async move {
            let (mut ok, mut failed, mut first_error) = (0u64, 0u64, None);
            let mut i: u32 = 0;
            while Instant::now() < deadline {
                // 192.0.2.0/24 (TEST-NET-1): a documentation address that
                // changes every round, so each update really changes the zone.
                let [_, _, c, d] = i.to_be_bytes();
                let change = ZoneChange::Set(NameRecords {
                    name: name.clone(),
                    ip: Some(Ipv4Addr::new(192, 0, c, d)),
                    ip6: None,
                    ttl: 60,
                });
                match backend.apply(&change).await {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                i = i.wrapping_add(1);
            }
            let _ = backend.apply(&ZoneChange::Remove { name }).await;
            (ok, failed, first_error)
        });
    }
    let mut report = RateReport {
        ok: 0,
        failed: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((ok, failed, first_error)) => {
                report.ok += ok;
                report.failed += failed;
                if report.first_error.is_none() {
                    report.first_error = first_error;
                }
            }
            Err(e) => {
                report.failed += 1;
                report.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    // The measured window ends at the deadline, not after the clean-up.
    report.elapsed = duration.min(start.elapsed());
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcode_names_match_bind() {
        assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_name(ResponseCode::NotAuth), "NOTAUTH");
        assert_eq!(rcode_name(ResponseCode::from_low(15)), "RCODE15");
    }

    #[test]
    fn zone_names_are_absolute_and_lower_case() {
        let zone = zone_name("Peach.Dinosaur.is.").expect("valid");
        assert_eq!(zone.to_ascii(), "peach.dinosaur.is.");
        assert!(zone_name("").is_err());
        assert!(zone_name("a..b").is_err());
    }

    #[test]
    fn labels_are_checked_before_use() {
        let zone = zone_name("peach.dinosaur.is").expect("valid");
        assert_eq!(
            fqdn("EB4890", &zone).expect("valid").to_ascii(),
            "eb4890.peach.dinosaur.is."
        );
        for bad in ["", "a.b", "a b", "a\nsend", &"x".repeat(64), "é"] {
            let err = fqdn(bad, &zone).expect_err(bad);
            assert!(
                matches!(err, DnsError::InvalidName { .. }),
                "{bad:?}: {err}"
            );
        }
    }
}
