//! The real `dig`, the one way every test asks a DNS server: a builder for
//! the command line (server, name, type, TCP, extra flags) and the two
//! forms of its output tests read, `+short` lines and the full reply taken
//! apart.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::error::{or_panic, Result};
use crate::process::{self, find_program};

/// How long one `dig` run may take before it is killed; far above what
/// `+time` × `+tries` allows, so dig reports a timeout itself.
const DIG_TIMEOUT: Duration = Duration::from_secs(30);
/// Seconds dig waits for an answer per try unless told otherwise (`+time`).
const DEFAULT_TIME_SECS: u32 = 2;
/// Tries per server unless told otherwise (`+tries`).
const DEFAULT_TRIES: u32 = 2;

/// A `dig @<server ip> -p <port> … <name> <type>` run; from [`dig`].
///
/// ```no_run
/// let server: std::net::SocketAddr = "127.0.0.1:5353".parse().unwrap();
/// let a = testkit::dig(server, "pi.peach.dinosaur.is", "A").tcp(true).short();
/// let full = testkit::dig(server, "peach.dinosaur.is", "NS").flag("+noedns").reply();
/// assert_eq!(full.status, "NOERROR");
/// # let _ = a;
/// ```
#[derive(Debug, Clone)]
#[must_use = "a Dig does nothing until short() or reply() runs it"]
pub struct Dig {
    /// The server asked (`@ip -p port`).
    server: SocketAddr,
    /// The name asked for.
    name: String,
    /// The record type asked for, as dig spells it (`A`, `AAAA`, `ANY`…).
    rtype: String,
    /// Over TCP (`+tcp`) instead of UDP.
    tcp: bool,
    /// Without the RD bit (`+norecurse`).
    norecurse: bool,
    /// Seconds per try (`+time`).
    time_secs: u32,
    /// Tries (`+tries`).
    tries: u32,
    /// More flags, as given (`+noedns`, `+ignore`, `+bufsize=1232`…).
    flags: Vec<String>,
}

/// Starts a `dig` of `name` `rtype` at `server`: UDP, RD set, `+time=2`,
/// `+tries=2` unless the builder says otherwise.
pub fn dig(server: SocketAddr, name: &str, rtype: &str) -> Dig {
    Dig {
        server,
        name: name.to_string(),
        rtype: rtype.to_string(),
        tcp: false,
        norecurse: false,
        time_secs: DEFAULT_TIME_SECS,
        tries: DEFAULT_TRIES,
        flags: Vec::new(),
    }
}

impl Dig {
    /// Over TCP (`+tcp`) when `tcp` is true.
    pub fn tcp(mut self, tcp: bool) -> Self {
        self.tcp = tcp;
        self
    }

    /// Without the RD bit (`+norecurse`), as an authoritative check asks.
    pub fn norecurse(mut self) -> Self {
        self.norecurse = true;
        self
    }

    /// Seconds per try (`+time=<secs>`).
    pub fn time_secs(mut self, secs: u32) -> Self {
        self.time_secs = secs;
        self
    }

    /// Tries (`+tries=<n>`).
    pub fn tries(mut self, tries: u32) -> Self {
        self.tries = tries;
        self
    }

    /// One more flag, as dig spells it, e.g. `+noedns`.
    pub fn flag(mut self, flag: &str) -> Self {
        self.flags.push(flag.to_string());
        self
    }

    /// More flags, as dig spells them.
    pub fn flags(mut self, flags: &[&str]) -> Self {
        self.flags.extend(flags.iter().map(|f| f.to_string()));
        self
    }

    /// The command line, without `+short`.
    fn command(&self, short: bool) -> Result<Command> {
        let dig = find_program("`dig` (Debian package bind9-dnsutils)", "dig", None, &[])?;
        let mut cmd = Command::new(dig);
        cmd.arg(format!("@{}", self.server.ip()))
            .args(["-p", &self.server.port().to_string()]);
        if short {
            cmd.arg("+short");
        }
        if self.norecurse {
            cmd.arg("+norecurse");
        }
        cmd.arg(format!("+time={}", self.time_secs))
            .arg(format!("+tries={}", self.tries));
        if self.tcp {
            cmd.arg("+tcp");
        }
        cmd.args(&self.flags).args([&self.name, &self.rtype]);
        Ok(cmd)
    }

    /// Runs it with `+short`: the non-empty lines of the answer, trimmed
    /// (empty for NXDOMAIN or NODATA). A failing dig (a timeout, a refused
    /// connection) is an error with its output.
    pub fn try_short(&self) -> Result<Vec<String>> {
        let out = process::run(self.command(true)?, None, DIG_TIMEOUT)?;
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(String::from)
            .collect())
    }

    /// [`try_short`](Self::try_short), panicking with the error's message.
    #[track_caller]
    pub fn short(&self) -> Vec<String> {
        or_panic(self.try_short())
    }

    /// Runs it and takes the full output apart: status, header flags, the
    /// answer's data and the authority's types.
    pub fn try_reply(&self) -> Result<DigReply> {
        let out = process::run(self.command(false)?, None, DIG_TIMEOUT)?;
        Ok(DigReply::parse(&out.stdout))
    }

    /// [`try_reply`](Self::try_reply), panicking with the error's message.
    #[track_caller]
    pub fn reply(&self) -> DigReply {
        or_panic(self.try_reply())
    }
}

/// What `dig` printed (without `+short`), taken apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigReply {
    /// `NOERROR`, `NXDOMAIN`, …
    pub status: String,
    /// Header flags: `qr`, `aa`, `tc`, …
    pub flags: Vec<String>,
    /// The answer section's data fields, e.g. `192.0.2.7`.
    pub answer: Vec<String>,
    /// The authority section's record types, e.g. `SOA`.
    pub authority: Vec<String>,
}

impl DigReply {
    /// Whether the header has `flag` (e.g. `aa`, `tc`).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Parses dig's default output.
    pub fn parse(text: &str) -> DigReply {
        /// Which section the lines being read belong to.
        #[derive(PartialEq)]
        enum Section {
            None,
            Answer,
            Authority,
        }
        let mut reply = DigReply::default();
        let mut section = Section::None;
        for line in text.lines() {
            if let Some(rest) = line.split("status: ").nth(1) {
                reply.status = rest.split(',').next().unwrap_or_default().to_string();
            } else if let Some(rest) = line.strip_prefix(";; flags: ") {
                let flags = rest.split(';').next().unwrap_or_default();
                reply.flags = flags.split_whitespace().map(String::from).collect();
            } else if line.starts_with(";; ANSWER SECTION") {
                section = Section::Answer;
            } else if line.starts_with(";; AUTHORITY SECTION") {
                section = Section::Authority;
            } else if line.starts_with(";;") || line.trim().is_empty() {
                if line.trim().is_empty() {
                    section = Section::None;
                }
            } else if !line.starts_with(';') {
                // owner TTL class type data…
                let fields: Vec<&str> = line.split_whitespace().collect();
                match section {
                    Section::Answer if fields.len() >= 5 => {
                        reply.answer.push(fields[4..].join(" "));
                    }
                    Section::Authority if fields.len() >= 4 => {
                        reply.authority.push(fields[3].to_string());
                    }
                    _ => {}
                }
            }
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_has_every_option() {
        let server: SocketAddr = "127.0.0.1:5300".parse().expect("addr");
        let cmd = dig(server, "pi.example.org", "AAAA")
            .tcp(true)
            .norecurse()
            .time_secs(1)
            .tries(3)
            .flag("+noedns")
            .command(true)
            .expect("dig is installed");
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "@127.0.0.1",
                "-p",
                "5300",
                "+short",
                "+norecurse",
                "+time=1",
                "+tries=3",
                "+tcp",
                "+noedns",
                "pi.example.org",
                "AAAA"
            ]
        );
    }

    #[test]
    fn parses_a_full_reply() {
        let text = "\
; <<>> DiG 9.18 <<>> @127.0.0.1 -p 5300 v4only.peach.dinosaur.is AAAA
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1
;; flags: qr aa; QUERY: 1, ANSWER: 1, AUTHORITY: 1, ADDITIONAL: 0

;; QUESTION SECTION:
;pi.peach.dinosaur.is.\t\tIN\tA

;; ANSWER SECTION:
pi.peach.dinosaur.is.\t60\tIN\tA\t192.0.2.7

;; AUTHORITY SECTION:
peach.dinosaur.is.\t60\tIN\tSOA\tns1.peach.dinosaur.is. hostmaster.peach.dinosaur.is. 1 3600 600 86400 60
";
        let reply = DigReply::parse(text);
        assert_eq!(reply.status, "NOERROR");
        assert_eq!(reply.flags, ["qr", "aa"]);
        assert!(reply.has_flag("aa") && !reply.has_flag("tc"));
        assert_eq!(reply.answer, ["192.0.2.7"]);
        assert_eq!(reply.authority, ["SOA"]);
    }
}
