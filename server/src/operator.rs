//! What the operator commands do: write BIND's zone and config for the
//! sub-zone (`init`), publish the announcement (`announce`), list and
//! revoke names, and check a setup (`check`).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use peach_dyndns_protocol::rules;
use peach_dyndns_sbot::{Sbot, SbotConfig};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::config::{Config, GraceConfig, GraphConfig};
use crate::registry::{Entry, Lapse};
use crate::State;

/// Errors of the operator commands.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// An argument is not acceptable.
    #[error("{0}")]
    Usage(String),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file exists and `--force` was not given.
    #[error("{0} exists; pass --force to overwrite it")]
    Exists(PathBuf),
    /// A BIND check program refused what was written, or could not run.
    #[error("{program} failed: {output}")]
    Check {
        /// `named-checkzone` or `named-checkconf`.
        program: String,
        /// What it printed.
        output: String,
    },
    /// ssb-server could not be reached or refused.
    #[error("ssb-server: {0}")]
    Sbot(String),
}

/// Arguments of `init`.
#[derive(Debug, Clone)]
pub struct InitArgs {
    /// The sub-zone, e.g. `peach.dinosaur.is`.
    pub domain: String,
    /// Its name servers (fqdn), the first is the SOA's primary.
    pub nameservers: Vec<String>,
    /// The SOA contact mailbox as a name; default `hostmaster.<domain>`.
    pub hostmaster: Option<String>,
    /// Where the zone file goes (BIND must be able to write it, for its
    /// journal): default `/var/lib/bind/db.<domain>`.
    pub zone_file: Option<PathBuf>,
    /// Where the `named.conf` snippet goes.
    pub conf_file: PathBuf,
    /// Where the server's own TSIG key goes (BIND `key` block, mode 0640,
    /// group `bind` when that group exists).
    pub key_file: PathBuf,
    /// Overwrite existing files.
    pub force: bool,
    /// Skip running named-checkzone/named-checkconf (not recommended).
    pub skip_checks: bool,
    /// Let BIND sign the zone and every update (`dnssec-policy default;`
    /// with inline signing), keys beside the zone file.
    pub dnssec: bool,
}

fn fqdn_dot(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// The zone file text for a new, empty dynamic zone.
pub fn zone_file_text(
    domain: &str,
    nameservers: &[String],
    hostmaster: &str,
    serial: u32,
) -> String {
    let mut out = String::new();
    let primary = nameservers.first().map(|n| fqdn_dot(n)).unwrap_or_default();
    let _ = writeln!(
        out,
        "; {domain}: dynamic zone managed by peach-dyndns-server."
    );
    let _ = writeln!(
        out,
        "; BIND rewrites this file from its journal; edit with nsupdate, not by hand."
    );
    let _ = writeln!(out, "$ORIGIN {}", fqdn_dot(domain));
    let _ = writeln!(out, "$TTL 60");
    // refresh 1h, retry 10 min, expire 7 d, negative TTL 60 s: names appear
    // and change often, so negative answers must not be cached for long.
    let _ = writeln!(
        out,
        "@ IN SOA {primary} {} ( {serial} 3600 600 604800 60 )",
        fqdn_dot(hostmaster)
    );
    for ns in nameservers {
        let _ = writeln!(out, "@ IN NS {}", fqdn_dot(ns));
    }
    out
}

/// The name of the TSIG key `init` makes for the server.
pub const KEY_NAME: &str = "peach-dyndns";

/// A BIND `key` block holding a fresh random HMAC-SHA256 secret (what
/// `tsig-keygen -a hmac-sha256` prints).
pub fn key_file_text(name: &str) -> String {
    use base64::Engine as _;
    use rand_core::RngCore as _;
    // 32 bytes: the HMAC-SHA256 block-size-safe length tsig-keygen uses.
    let mut secret = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut secret);
    format!(
        "key \"{name}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n",
        base64::engine::general_purpose::STANDARD.encode(secret)
    )
}

/// The `named.conf` snippet for the zone. Two keys may update it: the
/// server's own TSIG key, and only its A, AAAA and TXT records (TXT for
/// the ACME challenges; the `rfc2136`
/// backend, which works for a server running as its own user), and BIND's
/// session key (`bind-local`, `nsupdate`, what `update-policy local;`
/// allows), which only root and `bind` can read. The same two keys may
/// transfer the zone: at start the server reads it back to remove records
/// of names its registry does not hold (secondaries of this BIND are
/// added to that list by the operator).
pub fn named_conf_text(domain: &str, zone_file: &Path, key_file: &Path) -> String {
    format!(
        "// {domain}: written by `peach-dyndns-server init`.\n\
         // Include it from named.conf.local: include \"<this file>\";\n\
         include \"{}\";\n\
         zone \"{domain}\" {{\n    type primary;\n    file \"{}\";\n    \
         update-policy {{\n        grant {KEY_NAME} zonesub A AAAA TXT;\n        \
         grant local-ddns zonesub ANY;\n    }};\n    \
         // The server reads the zone back at start; add your secondaries here.\n    \
         allow-transfer {{ key {KEY_NAME}; key local-ddns; }};\n}};\n",
        key_file.display(),
        zone_file.display()
    )
}

/// The lines `init --dnssec` adds to the zone statement: BIND's default
/// policy (one ECDSA P-256 key that rolls itself, signatures refreshed
/// well before they expire), signing inline so that the zone file and the
/// updates stay unsigned and BIND keeps the signed copy beside them, and
/// the keys in the zone file's folder (which BIND can write).
pub fn dnssec_lines(zone_file: &Path) -> String {
    let dir = zone_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    format!(
        "    dnssec-policy default;\n    inline-signing yes;\n    key-directory \"{}\";\n",
        dir.display()
    )
}

/// `conf` (from [`named_conf_text`]) with [`dnssec_lines`] at the end of
/// its zone statement.
pub fn with_dnssec(conf: &str, zone_file: &Path) -> String {
    match conf.rfind("};") {
        Some(end) => format!(
            "{}{}{}",
            &conf[..end],
            dnssec_lines(zone_file),
            &conf[end..]
        ),
        None => conf.to_string(),
    }
}

/// Makes `path` readable by group `bind` (so the server's user, a member,
/// can read it) when that group exists; otherwise leaves it to root.
fn give_to_bind_group(path: &Path) -> Result<(), OperatorError> {
    use std::os::unix::fs::PermissionsExt as _;
    let write_err = |source| OperatorError::Write {
        path: path.to_owned(),
        source,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).map_err(write_err)?;
    let gid = std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|groups| {
            groups.lines().find_map(|line| {
                let mut fields = line.split(':');
                (fields.next() == Some("bind"))
                    .then(|| fields.nth(1).and_then(|g| g.parse::<u32>().ok()))
                    .flatten()
            })
        });
    if let Some(gid) = gid {
        // Only root may give a file away; as another user it stays ours.
        if let Err(e) = std::os::unix::fs::chown(path, None, Some(gid)) {
            if e.kind() != std::io::ErrorKind::PermissionDenied {
                return Err(write_err(e));
            }
        }
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<(), OperatorError> {
    let _ = std::fs::remove_file(path);
    create_private(path, text)
}

/// Creates `path` with mode 0600 (never over an existing file), writes
/// `text` and syncs it.
fn create_private(path: &Path, text: &str) -> Result<(), OperatorError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let write_err = |source| OperatorError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_err)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_err)
}

fn write_new(path: &Path, text: &str, force: bool) -> Result<(), OperatorError> {
    if path.exists() && !force {
        return Err(OperatorError::Exists(path.to_owned()));
    }
    std::fs::write(path, text).map_err(|source| OperatorError::Write {
        path: path.to_owned(),
        source,
    })
}

fn run_check(program: &str, args: &[&str]) -> Result<String, OperatorError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| OperatorError::Check {
            program: program.into(),
            output: format!("could not run it ({e}); is bind9-utils installed?"),
        })?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(OperatorError::Check {
            program: program.into(),
            output: text.trim().to_string(),
        })
    }
}

/// `init`: writes the zone file and the `named.conf` snippet and checks
/// them with BIND's own tools. Returns what was written, for a person.
pub fn init(args: &InitArgs) -> Result<String, OperatorError> {
    let domain = rules::normalize_domain(&args.domain);
    if domain.is_empty() || domain.split('.').any(|l| rules::check_label(l).is_err()) {
        return Err(OperatorError::Usage(format!(
            "--domain {domain:?} is not a domain name"
        )));
    }
    if args.nameservers.is_empty() {
        return Err(OperatorError::Usage(
            "give at least one --ns (the name server the parent zone delegates to)".into(),
        ));
    }
    let hostmaster = args
        .hostmaster
        .clone()
        .unwrap_or_else(|| format!("hostmaster.{domain}"));
    let zone_file = args
        .zone_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/var/lib/bind/db.{domain}")));
    write_new(
        &zone_file,
        &zone_file_text(&domain, &args.nameservers, &hostmaster, 1),
        args.force,
    )?;
    if args.force || !args.key_file.exists() {
        // Created private, then opened to group `bind`: never readable by
        // others, not even for a moment.
        write_private(&args.key_file, &key_file_text(KEY_NAME))?;
        give_to_bind_group(&args.key_file)?;
    }
    let mut conf = named_conf_text(&domain, &zone_file, &args.key_file);
    if args.dnssec {
        conf = with_dnssec(&conf, &zone_file);
    }
    write_new(&args.conf_file, &conf, args.force)?;
    let mut report = format!(
        "wrote {}\nwrote {}\nkey   {}\n",
        zone_file.display(),
        args.conf_file.display(),
        args.key_file.display()
    );
    if !args.skip_checks {
        let zone = zone_file.to_string_lossy().to_string();
        report += &run_check("named-checkzone", &[&domain, &zone])?;
        let conf = args.conf_file.to_string_lossy().to_string();
        run_check("named-checkconf", &[&conf])?;
        report += "named-checkconf: OK\n";
    }
    report += &format!(
        "\nNext: include {} from /etc/bind/named.conf.local, `systemctl reload named`,\n\
         put this in /etc/peach-dyndns/server.toml:\n\n\
         [dns]\nbackend = \"rfc2136\"\nserver = \"127.0.0.1:53\"\nkey_name = \"{KEY_NAME}\"\n\
         key_file = \"{}\"\n\n\
         and ask the parent zone to delegate {domain} to {}.\n",
        args.conf_file.display(),
        args.key_file.display(),
        args.nameservers.join(", ")
    );
    if args.dnssec {
        report += &format!(
            "\nDNSSEC: named signs {domain} (dnssec-policy default) and makes its key at the\n\
             reload. Add `dnssec = true` to server.toml (so `check` looks for signatures),\n\
             then hand the parent zone the DS record:\n\n\
             dig @127.0.0.1 {domain} DNSKEY | dnssec-dsfromkey -f - {domain}\n"
        );
    }
    Ok(report)
}

/// `announce`: publishes the announcement on the pub's feed. Returns the
/// message key.
pub async fn announce(state: &State) -> Result<String, OperatorError> {
    let (addr, server_id) = match &state.config.graph {
        GraphConfig::Ssb {
            addr, server_id, ..
        } => (
            *addr,
            server_id.clone().unwrap_or_else(|| state.keypair.id()),
        ),
        GraphConfig::Allowlist { .. } => {
            return Err(OperatorError::Usage(
                "announce needs `[graph] backend = \"ssb\"` (the pub's ssb-server)".into(),
            ))
        }
    };
    let sbot = Sbot::connect(
        &SbotConfig::new(addr, server_id),
        state.keypair.signing_key(),
        Duration::from_secs(5),
    )
    .await
    .map_err(|e| OperatorError::Sbot(e.to_string()))?;
    let mut content = state.announcement();
    if let Some(obj) = content.as_object_mut() {
        // The author of the message is the pub's key already.
        obj.remove("pub_id");
    }
    sbot.publish(&content)
        .await
        .map_err(|e| OperatorError::Sbot(e.to_string()))
}

/// `check`'s part for `[tls]`: loads the certificate and key as a start
/// would (an error names the file) and reports the certificate's names and
/// notAfter, with a warning line when it has expired, expires within 14
/// days, or does not cover `public_url`'s host. `None` without `[tls]`.
pub fn tls_check(
    config: &Config,
    now: std::time::SystemTime,
) -> Result<Option<String>, crate::tls::TlsError> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let loaded = match crate::tls::load(&tls.certificate, &tls.key) {
        Ok(loaded) => loaded,
        Err(e) if tls.acme => {
            return Ok(Some(format!(
                "tls: acme = true (https on {}, {}): no certificate yet ({e}); the \
                 server orders one from {} when it starts\n",
                tls.listen,
                tls.certificate.display(),
                tls.acme_directory_url,
            )))
        }
        Err(e) => return Err(e),
    };
    let info = &loaded.info;
    let mut report = format!(
        "tls: OK (https on {}, certificate {}, key {})
         tls certificate: names {}; not after {}; {} certificate(s) in the chain
",
        tls.listen,
        tls.certificate.display(),
        tls.key.display(),
        if info.names.is_empty() {
            "(no DNS names)".to_string()
        } else {
            info.names.join(", ")
        },
        info.not_after_utc(),
        info.chain_len,
    );
    for warning in crate::tls::warnings(
        info,
        &loaded.certified,
        config.public_host().as_deref(),
        now,
    ) {
        let _ = writeln!(report, "warning: {warning}");
    }
    Ok(Some(report))
}

/// `keygen`: writes a fresh SSB identity to `out` with mode 0600 (never
/// over an existing file) and returns its id.
pub fn keygen(out: &Path) -> Result<String, OperatorError> {
    let keypair = peach_dyndns_protocol::identity::Keypair::generate();
    create_private(out, &keypair.to_secret_file())?;
    Ok(keypair.id())
}

/// `names`: the registry as a table for a person.
pub fn names_table(
    entries: &[Entry],
    lapses: &[Lapse],
    grace: &GraceConfig,
    domain: &str,
) -> String {
    let mut out = String::from("NAME\tA\tAAAA\tOWNER\tUPDATED (unix ms)\tSTANDING\n");
    for e in entries {
        let standing = match lapses.iter().find(|l| l.owner == e.owner) {
            None => "followed".to_string(),
            Some(l) => {
                let what = if l.blocked { "blocked" } else { "unfollowed" };
                let (stops, frees) = crate::sweep::deadlines(grace, l);
                let when = |ms: u64| crate::clock::http_date(ms / 1000);
                match l.suspended_ms {
                    Some(_) => format!(
                        "{what}; not resolving since {}; freed at {}",
                        when(stops),
                        when(frees)
                    ),
                    None => format!(
                        "{what}; stops resolving at {}; freed at {}",
                        when(stops),
                        when(frees)
                    ),
                }
            }
        };
        let _ = writeln!(
            out,
            "{}.{domain}\t{}\t{}\t{}\t{}\t{standing}",
            e.name,
            e.ip.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            e.ip6.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            e.owner,
            e.updated_ms
        );
    }
    let _ = writeln!(out, "{} name(s)", entries.len());
    out
}

/// One result of `check`'s DNS checks: what was found and, for a problem,
/// what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `false` for a problem.
    pub ok: bool,
    /// What was checked and found.
    pub what: String,
    /// What to do (problems only).
    pub fix: Option<String>,
}

impl Finding {
    fn ok(what: String) -> Finding {
        Finding {
            ok: true,
            what,
            fix: None,
        }
    }
    fn problem(what: String, fix: String) -> Finding {
        Finding {
            ok: false,
            what,
            fix: Some(fix),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fix {
            None => write!(f, "ok: {}", self.what),
            Some(fix) => write!(f, "PROBLEM: {}\n  fix: {fix}", self.what),
        }
    }
}

/// Signatures that expire sooner than this are reported: BIND's default
/// policy refreshes them 5 days before they expire, so 3 days left means
/// it stopped re-signing.
pub const SIGNATURE_WARNING: Duration = Duration::from_secs(3 * 86_400);
/// How long `check` waits for one DNS answer (it asks twice).
const CHECK_DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// The DNS checks of `check`, where they can be made: the serial at the
/// zone's primary (the embedded DNS or BIND), that the zone's NS names
/// resolve, that each configured secondary has that serial, and, where
/// the zone is signed, that signatures are there and not near expiry.
pub async fn check_dns(config: &Config) -> Vec<Finding> {
    use crate::config::DnsConfig;
    let zone = rules::normalize_domain(&config.domain);
    let primary = match &config.dns {
        DnsConfig::Embedded { listen, .. } => loopback_if_unspecified(*listen),
        DnsConfig::BindLocal { server, .. } | DnsConfig::Rfc2136 { server, .. } => *server,
        DnsConfig::Nsupdate { port, .. } => SocketAddr::from(([127, 0, 0, 1], *port)),
    };
    let mut findings = Vec::new();
    let serial = match ask(primary, &zone, RecordType::SOA, false).await {
        Ok(reply) => match soa_serial(&reply) {
            Some(serial) => {
                findings.push(Finding::ok(format!("{zone} at {primary}: serial {serial}")));
                Some(serial)
            }
            None => {
                findings.push(Finding::problem(
                    format!(
                        "{primary} gave no SOA for {zone} ({})",
                        reply.metadata.response_code
                    ),
                    "is the zone loaded there? For BIND, `journalctl -u named`; for the \
                     embedded DNS, is the server running (systemctl status peach-dyndns-server)?"
                        .into(),
                ));
                None
            }
        },
        // Before the first start (the guide runs check first), the
        // embedded DNS is not there to ask: not a problem of the setup.
        Err(e) if matches!(config.dns, DnsConfig::Embedded { .. }) => {
            findings.push(Finding::ok(format!(
                "DNS checks skipped: the embedded DNS does not answer at {primary} ({e}); \
                 they need the running server: start it, then run check again"
            )));
            return findings;
        }
        Err(e) => {
            findings.push(Finding::problem(
                format!("cannot ask {primary} for the SOA of {zone}: {e}"),
                "start the DNS server (the embedded one runs inside peach-dyndns-server) \
                 and check the address in [dns]"
                    .into(),
            ));
            None
        }
    };
    if serial.is_some() {
        findings.extend(check_nameservers(primary, &zone).await);
    }
    for secondary in config.secondaries() {
        let at = secondary.address;
        let found = match ask(at, &zone, RecordType::SOA, false).await {
            Ok(reply) => match (soa_serial(&reply), serial) {
                (Some(theirs), Some(ours)) if theirs == ours => {
                    Finding::ok(format!("secondary {at}: serial {theirs}, current"))
                }
                // A signing secondary's signed copy counts its own
                // re-signing too, so its serial runs at or ahead of ours.
                (Some(theirs), Some(ours))
                    if secondary.signs && serial_after(theirs, ours) =>
                {
                    Finding::ok(format!(
                        "secondary {at}: serial {theirs}, at or after the primary's {ours} \
                         (its signed copy counts re-signing too), current"
                    ))
                }
                (Some(theirs), Some(ours)) => Finding::problem(
                    format!("secondary {at} has serial {theirs}, the primary {ours}: it lags behind"),
                    format!(
                        "look at its log for failed transfers or refused NOTIFYs; it must list this \
                         server as its primary (with the key of tsig_key), and reach TCP port {} here",
                        primary.port()
                    ),
                ),
                (Some(theirs), None) => Finding::ok(format!(
                    "secondary {at}: serial {theirs} (the primary's is unknown)"
                )),
                (None, _) => Finding::problem(
                    format!(
                        "secondary {at} does not serve {zone} ({})",
                        reply.metadata.response_code
                    ),
                    "configure the zone there as a secondary of this server (docs/operator.md, \
                     Secondaries)"
                        .into(),
                ),
            },
            Err(e) => Finding::problem(
                format!("cannot ask secondary {at} for the SOA: {e}"),
                "is it running, and does it answer on that address (firewall)?".into(),
            ),
        };
        findings.push(found);
    }
    let mut signers: Vec<SocketAddr> = config
        .secondaries()
        .iter()
        .filter(|s| s.signs)
        .map(|s| s.address)
        .collect();
    if config.dnssec {
        signers.push(primary);
    }
    for at in signers {
        findings.push(check_signatures(at, &zone).await);
    }
    findings
}

/// Every NS of the zone (as `primary` answers) has an address: in-zone
/// names asked of `primary`, others through the system's resolver.
async fn check_nameservers(primary: SocketAddr, zone: &str) -> Vec<Finding> {
    let reply = match ask(primary, zone, RecordType::NS, false).await {
        Ok(reply) => reply,
        Err(e) => {
            return vec![Finding::problem(
                format!("cannot ask {primary} for the NS of {zone}: {e}"),
                "see the SOA check above".into(),
            )]
        }
    };
    let zone_name = match Name::from_ascii(format!("{zone}.")) {
        Ok(name) => name,
        Err(_) => return Vec::new(),
    };
    let mut findings = Vec::new();
    for ns in reply.answers.iter().filter_map(|r| match &r.data {
        RData::NS(ns) => Some(ns.0.clone()),
        _ => None,
    }) {
        let text = ns.to_ascii();
        let host = text.trim_end_matches('.').to_string();
        let found = if zone_name.zone_of(&ns) {
            let mut addresses = Vec::new();
            for rtype in [RecordType::A, RecordType::AAAA] {
                if let Ok(reply) = ask(primary, &host, rtype, false).await {
                    addresses.extend(reply.answers.iter().map(|r| r.data.to_string()));
                }
            }
            if addresses.is_empty() {
                Finding::problem(
                    format!("name server {host} lies inside {zone}, which has no address for it"),
                    format!(
                        "give the zone a name server outside it (`nameservers` in [dns], e.g. the \
                         pub's host name), or add {host}'s address to the zone and as glue at the \
                         parent"
                    ),
                )
            } else {
                Finding::ok(format!("name server {host}: {}", addresses.join(", ")))
            }
        } else {
            match tokio::time::timeout(
                CHECK_DNS_TIMEOUT * 2,
                tokio::net::lookup_host((host.as_str(), 53)),
            )
            .await
            {
                Ok(Ok(addrs)) => {
                    let addrs: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                    Finding::ok(format!("name server {host}: {}", addrs.join(", ")))
                }
                Ok(Err(e)) => Finding::problem(
                    format!("name server {host} does not resolve: {e}"),
                    format!("give {host} an A (and AAAA) record in its zone, or fix `nameservers`"),
                ),
                Err(_) => Finding::problem(
                    format!("name server {host}: no answer from the system's resolver"),
                    "check /etc/resolv.conf, then the name's records".into(),
                ),
            }
        };
        findings.push(found);
    }
    findings
}

/// Whether `at` serves signatures for the zone's SOA that are not near
/// expiry.
async fn check_signatures(at: SocketAddr, zone: &str) -> Finding {
    use hickory_proto::dnssec::rdata::DNSSECRData;
    let reply = match ask(at, zone, RecordType::SOA, true).await {
        Ok(reply) => reply,
        Err(e) => {
            return Finding::problem(
                format!("cannot ask {at} for signatures: {e}"),
                "is it running?".into(),
            )
        }
    };
    let expirations: Vec<u32> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some(sig.input().sig_expiration.get()),
            _ => None,
        })
        .collect();
    let Some(first) = expirations.iter().copied().min() else {
        return Finding::problem(
            format!("{at} serves {zone} without DNSSEC signatures (no RRSIG for the SOA)"),
            "add `dnssec-policy default; inline-signing yes;` to the zone there and reload named \
             (docs/operator.md, DNSSEC); or remove `dnssec = true` / `signs = true` if the zone \
             is not meant to be signed"
                .into(),
        );
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let left = u64::from(first).saturating_sub(now);
    if left < SIGNATURE_WARNING.as_secs() {
        Finding::problem(
            format!("{at}: the SOA's signature expires in {} h", left / 3600),
            "named is not re-signing: look at its log (key files readable? key-directory \
             writable?) and `rndc dnssec -status` for the zone"
                .into(),
        )
    } else {
        Finding::ok(format!(
            "{at}: signed, the SOA's signature valid for {} more days",
            left / 86_400
        ))
    }
}

/// `addr` with an unspecified IP (a listen address) as loopback.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// Whether serial `a` is after `b` (RFC 1982).
fn serial_after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

/// The serial of the SOA in the answer.
fn soa_serial(reply: &Message) -> Option<u32> {
    reply.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

/// Asks `server` one question over UDP (twice, [`CHECK_DNS_TIMEOUT`]
/// each), with the DNSSEC OK bit when `dnssec`.
async fn ask(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    dnssec: bool,
) -> Result<Message, String> {
    let qname =
        Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).map_err(|e| e.to_string())?;
    let mut msg = Message::query();
    msg.metadata.id = rand_core::RngCore::next_u32(&mut rand_core::OsRng) as u16;
    msg.add_query(Query::query(qname, rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(dnssec);
    msg.set_edns(edns);
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    for _ in 0..2 {
        socket.send(&bytes).await.map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + CHECK_DNS_TIMEOUT;
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            let n = received.map_err(|e| e.to_string())?;
            if let Ok(reply) = Message::from_vec(&buf[..n]) {
                if reply.metadata.id == msg.metadata.id {
                    return Ok(reply);
                }
            }
        }
    }
    Err(format!(
        "no answer within {:?} (asked twice)",
        CHECK_DNS_TIMEOUT
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_a_private_secret_once() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("secret");
        let id = keygen(&path).expect("keygen");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).expect("read");
        let kp = peach_dyndns_protocol::identity::parse_secret_file(&text).expect("parses");
        assert_eq!(kp.id(), id);
        assert!(
            matches!(keygen(&path), Err(OperatorError::Write { .. })),
            "never overwrites"
        );
    }

    #[test]
    fn zone_text_has_soa_and_ns() {
        let text = zone_file_text(
            "peach.dinosaur.is",
            &["ns1.dinosaur.is".into()],
            "hostmaster.peach.dinosaur.is",
            1,
        );
        assert!(text.contains("$ORIGIN peach.dinosaur.is."));
        assert!(text.contains("@ IN SOA ns1.dinosaur.is. hostmaster.peach.dinosaur.is. ( 1 "));
        assert!(text.contains("@ IN NS ns1.dinosaur.is."));
        let conf = named_conf_text(
            "peach.dinosaur.is",
            Path::new("/var/lib/bind/db.x"),
            Path::new("/etc/bind/k.key"),
        );
        assert!(conf.contains("include \"/etc/bind/k.key\";"));
        assert!(conf.contains("grant peach-dyndns zonesub A AAAA TXT;"));
        assert!(conf.contains("grant local-ddns zonesub ANY;"));
        assert!(conf.contains("allow-transfer { key peach-dyndns; key local-ddns; };"));
        assert!(conf.contains("file \"/var/lib/bind/db.x\";"));
        let key = key_file_text("peach-dyndns");
        assert!(
            key.starts_with("key \"peach-dyndns\" {\n\talgorithm hmac-sha256;"),
            "{key}"
        );
        assert_ne!(
            key,
            key_file_text("peach-dyndns"),
            "a fresh secret every time"
        );
    }

    #[test]
    fn init_refuses_bad_arguments_and_existing_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut args = InitArgs {
            domain: "bad..domain".into(),
            nameservers: vec!["ns1.example.org".into()],
            hostmaster: None,
            zone_file: Some(dir.path().join("db")),
            conf_file: dir.path().join("conf"),
            key_file: dir.path().join("key"),
            force: false,
            skip_checks: true,
            dnssec: false,
        };
        assert!(matches!(init(&args), Err(OperatorError::Usage(_))));
        args.domain = "peach.example.org".into();
        init(&args).expect("first init");
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&args.key_file)
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o640, "key readable by group bind only");
        }
        assert!(matches!(init(&args), Err(OperatorError::Exists(_))));
        args.force = true;
        init(&args).expect("forced");
        args.dnssec = true;
        let report = init(&args).expect("with dnssec");
        assert!(report.contains("dnssec-dsfromkey"), "{report}");
        let conf = std::fs::read_to_string(&args.conf_file).expect("conf");
        let key_dir = format!("    key-directory \"{}\";\n}};\n", dir.path().display());
        assert!(
            conf.contains("    dnssec-policy default;\n    inline-signing yes;\n"),
            "{conf}"
        );
        assert!(conf.ends_with(&key_dir), "{conf}");
    }
}
