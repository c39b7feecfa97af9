//! What the operator commands do: write BIND's zone and config for the
//! sub-zone (`init`), publish the announcement (`announce`), list and
//! revoke names, and check a setup (`check`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use peach_dyndns_protocol::rules;
use peach_dyndns_sbot::{Sbot, SbotConfig};

use crate::config::GraphConfig;
use crate::registry::Entry;
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
/// allows), which only root and `bind` can read.
pub fn named_conf_text(domain: &str, zone_file: &Path, key_file: &Path) -> String {
    format!(
        "// {domain}: written by `peach-dyndns-server init`.\n\
         // Include it from named.conf.local: include \"<this file>\";\n\
         include \"{}\";\n\
         zone \"{domain}\" {{\n    type primary;\n    file \"{}\";\n    \
         update-policy {{\n        grant {KEY_NAME} zonesub A AAAA TXT;\n        \
         grant local-ddns zonesub ANY;\n    }};\n}};\n",
        key_file.display(),
        zone_file.display()
    )
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
    write_new(
        &args.conf_file,
        &named_conf_text(&domain, &zone_file, &args.key_file),
        args.force,
    )?;
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

/// `keygen`: writes a fresh SSB identity to `out` with mode 0600 (never
/// over an existing file) and returns its id.
pub fn keygen(out: &Path) -> Result<String, OperatorError> {
    let keypair = peach_dyndns_protocol::identity::Keypair::generate();
    create_private(out, &keypair.to_secret_file())?;
    Ok(keypair.id())
}

/// `names`: the registry as a table for a person.
pub fn names_table(entries: &[Entry], domain: &str) -> String {
    let mut out = String::from("NAME\tA\tAAAA\tOWNER\tUPDATED (unix ms)\n");
    for e in entries {
        let _ = writeln!(
            out,
            "{}.{domain}\t{}\t{}\t{}\t{}",
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
    }
}
