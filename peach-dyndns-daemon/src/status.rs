//! What the daemon tells peach-web, the panel and the LED: one [`Status`]
//! snapshot, kept current by the update loop.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use peach_dyndns_protocol::ErrorCode;
use serde::{Deserialize, Serialize};

/// The daemon's state, as the design names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// No name or no pub configured yet.
    #[default]
    Unconfigured,
    /// Sending a changed address, or waiting for DNS to show it.
    Working,
    /// The pub accepted the current addresses and its DNS answers with them.
    Online,
    /// The last attempt failed (retrying with backoff, or parked).
    Error,
    /// `enabled = false` in the config.
    Disabled,
}

impl Phase {
    /// The word used in JSON and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Unconfigured => "unconfigured",
            Phase::Working => "working",
            Phase::Online => "online",
            Phase::Error => "error",
            Phase::Disabled => "disabled",
        }
    }
}

/// What went wrong, as a type: the daemon decides on this, never on the
/// text of a code. [`Problem::as_str`] is what the status JSON shows as
/// `last_error_code` (the pub's wire code for a refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// The SSB secret could not be read (or others can read it).
    Secret,
    /// The local sbot could not be asked for announcements.
    Sbot,
    /// No announcement from the configured pub (among those followed).
    NoPub,
    /// No source gave an acceptable address.
    NoAddress,
    /// The pub did not answer.
    Unreachable,
    /// Something answered, but not as the pub's API does.
    BadAnswer,
    /// The pub said its last `seq` is more than a day ahead of our clock
    /// (`2^64 - 2`, say): not believed, so not followed there.
    SeqNotBelieved,
    /// The pub accepted, but its DNS does not answer with our addresses.
    DnsMismatch,
    /// The pub refused with this code.
    Refused(ErrorCode),
}

impl Problem {
    /// The code shown in the status (`last_error_code`) and state file.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Secret => "secret",
            Problem::Sbot => "sbot",
            Problem::NoPub => "no_pub",
            Problem::NoAddress => "no_address",
            Problem::Unreachable => "unreachable",
            Problem::BadAnswer => "bad_answer",
            Problem::SeqNotBelieved => "seq_not_believed",
            Problem::DnsMismatch => "dns_mismatch",
            Problem::Refused(code) => code.as_str(),
        }
    }
}

/// The name this daemon holds: the pub that last accepted it from this
/// key, and the full name (what `check_name` calls "yours").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// The pub's id.
    pub pub_id: String,
    /// The full name, e.g. `eb4890.peach.dinosaur.is`.
    pub fqdn: String,
}

/// A snapshot of everything the `status` RPC reports. Times are Unix
/// seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The state.
    pub state: Phase,
    /// The green dot: configured, last update accepted, DNS answers with
    /// our addresses.
    pub online: bool,
    /// The Pi's own SSB id (the key that signs updates), once the secret
    /// was read.
    pub public_key: Option<String>,
    /// The configured label.
    pub name: Option<String>,
    /// The full name, once the pub's zone is known.
    pub fqdn: Option<String>,
    /// The pub's SSB id.
    pub pub_id: Option<String>,
    /// The pub's update URL in use.
    pub url: Option<String>,
    /// The addresses the pub last accepted.
    pub ip: Option<Ipv4Addr>,
    /// The IPv6 address the pub last accepted.
    pub ip6: Option<Ipv6Addr>,
    /// The IPv4 address found by the last check.
    pub current_ip: Option<Ipv4Addr>,
    /// The IPv6 address found by the last check.
    pub current_ip6: Option<Ipv6Addr>,
    /// When an update was last sent.
    pub last_attempt_at: Option<u64>,
    /// When an update was last accepted.
    pub last_success_at: Option<u64>,
    /// The last error in words (cleared by success).
    pub last_error: Option<String>,
    /// Its code: a wire code (`not_followed`, …) or a local one
    /// (`unreachable`, `no_address`, `secret`, `no_pub`, `dns_mismatch`,
    /// `seq_not_believed`, `bad_answer`): [`Problem::as_str`] of
    /// [`Status::problem`].
    pub last_error_code: Option<String>,
    /// The same as a type, for the daemon's own decisions (`--once`'s exit
    /// code); not in the JSON, which has `last_error_code`.
    #[serde(skip)]
    pub problem: Option<Problem>,
    /// The name this daemon holds, and at which pub (from the state file).
    #[serde(default)]
    pub registered: Option<Registered>,
    /// Address sources the last check skipped, with why (a pub `/ip` that
    /// was not signed by the pub, an echo service that failed, …).
    #[serde(default)]
    pub skipped_sources: Vec<String>,
    /// The recent events (the `events` RPC returns them, newest first);
    /// not in the status JSON.
    #[serde(skip)]
    pub events: crate::events::EventLog,
    /// When the next check is due; `None` while waiting for a config
    /// change.
    pub next_check_at: Option<u64>,
    /// The pub's DNS answers with the accepted addresses.
    pub dns_verified: bool,
    /// What the DNS check found, in words.
    pub dns_detail: Option<String>,
    /// When the pub's DNS was last asked (Unix seconds).
    #[serde(default)]
    pub dns_checked_at: Option<u64>,
    /// Retries stopped until the config changes (an error retrying
    /// cannot fix).
    pub parked: bool,
    /// Failures in a row (drives the backoff).
    pub failures: u32,
    /// Checks made since start.
    pub checks: u64,
    /// Why the state file could not be written (its directory full or
    /// read-only, say), naming the file; cleared by the next save that
    /// works. The file on disk is then the last one written whole.
    #[serde(default)]
    pub state_error: Option<String>,
    /// The certificate (`[acme]`): state, names, notAfter, last error;
    /// absent while ACME is off. Not part of `online`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::acme::status::TlsStatus>,
}

impl Status {
    /// Sets (or clears) the problem and its code together.
    pub fn set_problem(&mut self, problem: Option<Problem>) {
        self.problem = problem;
        self.last_error_code = problem.map(|p| p.as_str().to_string());
    }
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The status for a person, as `peach-dyndns-daemon status` and `--once`
/// print it; `now` is Unix seconds.
pub fn render(s: &Status, now: u64) -> String {
    use std::fmt::Write as _;
    let ago = |t: Option<u64>| match t {
        Some(t) if t <= now => format!("{} ago", human(now - t)),
        Some(t) => format!("in {}", human(t - now)),
        None => "never".to_string(),
    };
    let join = |a: Option<Ipv4Addr>, b: Option<Ipv6Addr>| {
        [a.map(|a| a.to_string()), b.map(|b| b.to_string())]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let registered = join(s.ip, s.ip6);
    let current = join(s.current_ip, s.current_ip6);
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        writeln!(out, "  {label:<14} {value}").expect("invariant: writing to a String cannot fail");
    };
    line(
        "name:",
        s.fqdn
            .as_deref()
            .or(s.name.as_deref())
            .unwrap_or("(not set)"),
    );
    line("pub:", s.pub_id.as_deref().unwrap_or("(not set)"));
    if let Some(key) = &s.public_key {
        line("this Pi:", key);
    }
    line(
        "registered:",
        if registered.is_empty() {
            "nothing"
        } else {
            &registered
        },
    );
    if !current.is_empty() && current != registered {
        line("found now:", &current);
    }
    let dns = match (s.dns_verified, &s.dns_detail) {
        (true, Some(d)) => format!("verified ({d})"),
        (true, None) => "verified".to_string(),
        (false, Some(d)) => format!("not verified: {d}"),
        (false, None) => "not checked".to_string(),
    };
    line("DNS:", &dns);
    line("last accepted:", &ago(s.last_success_at));
    line("last attempt:", &ago(s.last_attempt_at));
    let next = match (s.parked, s.next_check_at) {
        (true, _) => "after the config changes (retrying cannot fix the error)".to_string(),
        (false, Some(t)) => ago(Some(t)),
        (false, None) => "after the config changes".to_string(),
    };
    line("next check:", &next);
    if let Some(e) = &s.last_error {
        let code = s
            .last_error_code
            .as_deref()
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        line("last error:", &format!("{e}{code}"));
    }
    if let Some(e) = &s.state_error {
        line("state file:", &format!("NOT SAVED: {e}"));
    }
    format!("peach-dyndns: {}\n{out}", s.state.as_str())
}

/// A duration in the largest unit that keeps it readable.
fn human(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_for_a_person() {
        let s = Status {
            state: Phase::Error,
            fqdn: Some("eb4890.peach.dinosaur.is".into()),
            ip: Some(Ipv4Addr::new(24, 12, 12, 12)),
            current_ip: Some(Ipv4Addr::new(24, 12, 12, 13)),
            last_success_at: Some(100_000 - 3 * 3600),
            next_check_at: Some(100_030),
            last_error: Some("the pub at http://x/update is unreachable".into()),
            last_error_code: Some("unreachable".into()),
            ..Status::default()
        };
        let text = render(&s, 100_000);
        for want in [
            "peach-dyndns: error\n",
            "name:          eb4890.peach.dinosaur.is",
            "registered:    24.12.12.12",
            "found now:     24.12.12.13",
            "last accepted: 3 h ago",
            "last attempt:  never",
            "next check:    in 30 s",
            "DNS:           not checked",
            "[unreachable]",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        let parked = Status { parked: true, ..s };
        assert!(render(&parked, 100_000).contains("retrying cannot fix"));
    }
}
