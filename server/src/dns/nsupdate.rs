//! The `nsupdate` backend: runs `nsupdate -l` for each change, as the
//! original peach-dyndns did, for operators who want exactly that.
//!
//! The command is `nsupdate -l -4 -p <port> -k <session key> -t 5 -u 2 -r 1`
//! with this script on its standard input:
//!
//! ```text
//! zone peach.dinosaur.is.
//! update delete pi.peach.dinosaur.is. A
//! update delete pi.peach.dinosaur.is. AAAA
//! update add pi.peach.dinosaur.is. 60 A 192.0.2.7
//! update add pi.peach.dinosaur.is. 60 AAAA 2001:db8::7
//! send
//! ```
//!
//! `-4`: `nsupdate -l` talks to "localhost" and tries `::1` first; when
//! named does not listen on `::1` (`listen-on-v6 { none; };`, or no IPv6)
//! its fallback sends a broken message that named answers FORMERR (found
//! with BIND 9.18). named listens on 127.0.0.1 unless told otherwise, so
//! IPv4 works on every setup we know of, and it is also where the
//! `bind-local` backend sends by default.
//!
//! One process per change costs about 20 ms (about 49 updates/s on the
//! machine the field notes come from); `bind-local` does the same in
//! process at named's own speed.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hickory_proto::rr::Name;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{
    challenge_fqdn, fqdn, zone_name, BoxFut, ChallengeChange, DnsError, DynamicLabels, TsigKey,
    ZoneBackend, ZoneChange,
};

/// nsupdate's own limit for the whole update (`-t`), in seconds.
const NSUPDATE_TIMEOUT_SECS: u64 = 5;
/// nsupdate's UDP retry interval (`-u`), in seconds: two tries of 2 s fit
/// in the 5 s above, like the in-process client's two attempts.
const NSUPDATE_UDP_INTERVAL_SECS: u64 = 2;
/// Extra UDP tries (`-r`).
const NSUPDATE_UDP_RETRIES: u32 = 1;
/// When we kill nsupdate ourselves: its own timeout plus room to start
/// and to report.
const KILL_AFTER: Duration = Duration::from_secs(NSUPDATE_TIMEOUT_SECS + 3);

/// Runs `nsupdate -l` per change.
#[derive(Debug, Clone)]
pub struct Nsupdate {
    /// The program (`nsupdate`, looked up in PATH, or a path).
    program: PathBuf,
    /// named's port (`-p`).
    port: u16,
    /// named's session key file (`-k`).
    session_key: PathBuf,
    /// The zone, absolute and lower case.
    zone: Name,
}

impl Nsupdate {
    /// A backend running `program` against named on 127.0.0.1:`port` with
    /// the session key in `session_key`. Nothing is checked here: nsupdate
    /// reads the key itself and its complaints end up in the error.
    pub fn new(
        program: &Path,
        port: u16,
        session_key: &Path,
        zone: &str,
    ) -> Result<Nsupdate, DnsError> {
        Ok(Nsupdate {
            program: program.to_owned(),
            port,
            session_key: session_key.to_owned(),
            zone: zone_name(zone)?,
        })
    }

    /// The script for one change.
    pub fn script(&self, change: &ZoneChange) -> Result<String, DnsError> {
        let name = fqdn(change.name(), &self.zone)?;
        let mut script = format!(
            "zone {zone}\nupdate delete {name} A\nupdate delete {name} AAAA\n",
            zone = self.zone
        );
        if let ZoneChange::Set(records) = change {
            let add = |rtype: &str, addr: String| {
                format!("update add {name} {} {rtype} {addr}\n", records.ttl)
            };
            if let Some(ip) = records.ip {
                script.push_str(&add("A", Ipv4Addr::to_string(&ip)));
            }
            if let Some(ip6) = records.ip6 {
                script.push_str(&add("AAAA", Ipv6Addr::to_string(&ip6)));
            }
        }
        script.push_str("send\n");
        Ok(script)
    }

    /// The script for one change of a name's challenge: delete the TXT
    /// rrset, add the values.
    pub fn challenge_script(&self, change: &ChallengeChange) -> Result<String, DnsError> {
        let name = challenge_fqdn(change.name(), &self.zone)?;
        let values = change.checked_values()?;
        let mut script = format!("zone {zone}\nupdate delete {name} TXT\n", zone = self.zone);
        if let ChallengeChange::Set(challenge) = change {
            for value in values {
                // Checked: base64url only, so quoting is all it needs.
                script.push_str(&format!(
                    "update add {name} {} TXT \"{value}\"\n",
                    challenge.ttl
                ));
            }
        }
        script.push_str("send\n");
        Ok(script)
    }

    /// The command line without the script.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("-l")
            .arg("-4")
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.session_key)
            .args(["-t", &NSUPDATE_TIMEOUT_SECS.to_string()])
            .args(["-u", &NSUPDATE_UDP_INTERVAL_SECS.to_string()])
            .args(["-r", &NSUPDATE_UDP_RETRIES.to_string()]);
        cmd
    }

    /// The command line as a person would type it, for messages.
    fn describe(&self) -> String {
        format!(
            "{} -l -4 -p {} -k {} -t {NSUPDATE_TIMEOUT_SECS} -u {NSUPDATE_UDP_INTERVAL_SECS} \
             -r {NSUPDATE_UDP_RETRIES}",
            self.program.display(),
            self.port,
            self.session_key.display()
        )
    }

    /// Runs nsupdate with the script for `change`.
    async fn run(&self, change: &ZoneChange) -> Result<(), DnsError> {
        self.run_script(self.script(change)?).await
    }

    /// Runs nsupdate with `script` on its standard input.
    async fn run_script(&self, script: String) -> Result<(), DnsError> {
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Dropped on our timeout: the process is killed, not left behind.
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| DnsError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        let run = async {
            if let Some(mut stdin) = child.stdin.take() {
                // An nsupdate that exits early (bad key file) closes the
                // pipe; its exit status and stderr say why, so a write
                // error here is not the story.
                let _ = stdin.write_all(script.as_bytes()).await;
            }
            child.wait_with_output().await
        };
        let output = match tokio::time::timeout(KILL_AFTER, run).await {
            Err(_) => {
                return Err(DnsError::ProgramTimeout {
                    command: self.describe(),
                    waited: KILL_AFTER,
                })
            }
            Ok(Err(source)) => {
                return Err(DnsError::Spawn {
                    program: self.program.clone(),
                    source,
                })
            }
            Ok(Ok(output)) => output,
        };
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        // One line for the log: nsupdate starts some lines with "; ".
        let said = stderr
            .lines()
            .chain(stdout.lines())
            .map(|line| line.trim_start_matches(';').trim())
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        Err(DnsError::Program {
            command: self.describe(),
            status: output.status.to_string(),
            output: if said.is_empty() {
                "(no output)".into()
            } else {
                said
            },
        })
    }
}

impl ZoneBackend for Nsupdate {
    fn apply<'a>(&'a self, change: &'a ZoneChange) -> BoxFut<'a, Result<(), DnsError>> {
        Box::pin(self.run(change))
    }

    fn apply_challenge<'a>(
        &'a self,
        change: &'a ChallengeChange,
    ) -> BoxFut<'a, Result<(), DnsError>> {
        Box::pin(async move { self.run_script(self.challenge_script(change)?).await })
    }

    fn kind(&self) -> &'static str {
        "nsupdate"
    }

    /// Read with the session key nsupdate uses, from named on 127.0.0.1
    /// (where `-4` sends the updates).
    fn dynamic_labels(&self) -> BoxFut<'_, Result<Option<DynamicLabels>, DnsError>> {
        Box::pin(async move {
            let key = TsigKey::load(&self.session_key, None, None)?;
            let signer = key.signer().map_err(|detail| DnsError::KeyFile {
                path: self.session_key.clone(),
                detail,
            })?;
            let server = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
            super::axfr::dynamic_labels(server, &self.zone, &signer, key.name())
                .await
                .map(Some)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::NameRecords;

    fn backend() -> Nsupdate {
        Nsupdate::new(
            Path::new("nsupdate"),
            5353,
            Path::new("/run/named/session.key"),
            "Peach.Dinosaur.is",
        )
        .expect("backend")
    }

    #[test]
    fn script_replaces_both_rrsets() {
        let change = ZoneChange::Set(NameRecords {
            name: "Pi".into(),
            ip: Some(Ipv4Addr::new(192, 0, 2, 7)),
            ip6: Some("2001:db8::7".parse().expect("ip6")),
            ttl: 60,
        });
        assert_eq!(
            backend().script(&change).expect("script"),
            "zone peach.dinosaur.is.\n\
             update delete pi.peach.dinosaur.is. A\n\
             update delete pi.peach.dinosaur.is. AAAA\n\
             update add pi.peach.dinosaur.is. 60 A 192.0.2.7\n\
             update add pi.peach.dinosaur.is. 60 AAAA 2001:db8::7\n\
             send\n"
        );
        let remove = backend()
            .script(&ZoneChange::Remove { name: "pi".into() })
            .expect("script");
        assert!(!remove.contains("update add"), "{remove}");
    }

    #[test]
    fn challenge_script_replaces_the_txt_rrset_only() {
        let value = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
        let set = ChallengeChange::Set(crate::dns::Challenge {
            name: "pi".into(),
            txt: vec![value.into()],
            ttl: 60,
        });
        assert_eq!(
            backend().challenge_script(&set).expect("script"),
            format!(
                "zone peach.dinosaur.is.\n\
                 update delete _acme-challenge.pi.peach.dinosaur.is. TXT\n\
                 update add _acme-challenge.pi.peach.dinosaur.is. 60 TXT \"{value}\"\n\
                 send\n"
            )
        );
        let clear = backend()
            .challenge_script(&ChallengeChange::Clear { name: "pi".into() })
            .expect("script");
        assert!(
            !clear.contains("update add") && !clear.contains(" A\n"),
            "{clear}"
        );
        // A value cannot smuggle a command in.
        let evil = ChallengeChange::Set(crate::dns::Challenge {
            name: "pi".into(),
            txt: vec!["x\"\nupdate delete peach.dinosaur.is. SOA".into()],
            ttl: 60,
        });
        assert!(backend().challenge_script(&evil).is_err());
    }

    #[test]
    fn a_label_cannot_inject_commands() {
        let change = ZoneChange::Remove {
            name: "pi A\nupdate delete peach.dinosaur.is. SOA".into(),
        };
        assert!(matches!(
            backend().script(&change),
            Err(DnsError::InvalidName { .. })
        ));
    }

    #[tokio::test]
    async fn a_missing_program_is_named_in_the_error() {
        let backend = Nsupdate::new(
            Path::new("/nonexistent/nsupdate"),
            53,
            Path::new("/k"),
            "peach.dinosaur.is",
        )
        .expect("backend");
        let err = backend
            .apply(&ZoneChange::Remove { name: "pi".into() })
            .await
            .expect_err("no such program");
        assert!(err.to_string().contains("/nonexistent/nsupdate"), "{err}");
    }
}
