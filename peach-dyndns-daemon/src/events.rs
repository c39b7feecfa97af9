//! The daemon's recent events, as the panel's "Last events" list and the
//! `events` RPC show them: updates accepted, refused or failed, addresses
//! changed, the pub's DNS answering or not, a name released, a
//! certificate renewed. Kept in memory only, at most [`EventLog::CAPACITY`]
//! entries; the same event again right after itself (a retry failing the
//! same way, the daily refresh) is counted in one entry instead of
//! pushing the others out.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The pub accepted an update.
    Accepted,
    /// The pub refused an update (a wire code in `code`).
    Refused,
    /// An update could not be made (pub unreachable, no address, …).
    Failed,
    /// The Pi's address changed since the pub last accepted one.
    AddressChanged,
    /// The pub's DNS answers with the accepted addresses (again).
    DnsVerified,
    /// The pub's DNS does not answer with the accepted addresses.
    DnsMismatch,
    /// The owner released the name.
    Released,
    /// The HTTPS certificate was issued or renewed.
    CertificateRenewed,
    /// Getting or renewing the HTTPS certificate failed.
    CertificateFailed,
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When it (last) happened, Unix seconds.
    pub at: u64,
    /// When it first happened, when it happened more than once in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_at: Option<u64>,
    /// What.
    pub kind: EventKind,
    /// The wire or local code (`name_taken`, `unreachable`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// For a person.
    pub message: String,
    /// How many times in a row.
    pub count: u32,
}

/// The bounded log, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventLog {
    /// The entries, oldest first.
    entries: VecDeque<Event>,
}

impl EventLog {
    /// How many entries are kept.
    pub const CAPACITY: usize = 50;

    /// Records an event at `at` (Unix seconds).
    pub fn push(&mut self, at: u64, kind: EventKind, code: Option<&str>, message: String) {
        if let Some(last) = self.entries.back_mut() {
            if last.kind == kind && last.code.as_deref() == code && last.message == message {
                last.first_at.get_or_insert(last.at);
                last.at = at;
                last.count = last.count.saturating_add(1);
                return;
            }
        }
        if self.entries.len() == Self::CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(Event {
            at,
            first_at: None,
            kind,
            code: code.map(str::to_string),
            message,
            count: 1,
        });
    }

    /// The entries, newest first.
    pub fn newest_first(&self) -> Vec<Event> {
        self.entries.iter().rev().cloned().collect()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_and_the_log_is_bounded() {
        let mut log = EventLog::default();
        log.push(10, EventKind::Failed, Some("unreachable"), "down".into());
        log.push(20, EventKind::Failed, Some("unreachable"), "down".into());
        log.push(30, EventKind::Accepted, None, "ok".into());
        let list = log.newest_first();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].kind, EventKind::Accepted);
        assert_eq!(
            (list[1].count, list[1].at, list[1].first_at),
            (2, 20, Some(10))
        );
        for i in 0..200 {
            log.push(100 + i, EventKind::Accepted, None, format!("update {i}"));
        }
        assert_eq!(log.len(), EventLog::CAPACITY);
        let list = log.newest_first();
        assert_eq!(list[0].message, "update 199");
        assert_eq!(list[EventLog::CAPACITY - 1].message, "update 150");
        let json = serde_json::to_value(&list[0]).expect("json");
        assert_eq!(json["kind"], "accepted");
        assert!(
            json.get("code").is_none() && json.get("first_at").is_none(),
            "{json}"
        );
    }
}
