//! The embedded zone's journal: the last changes, each as the records it
//! removed and added between two serials, so a secondary that is a few
//! changes behind gets an IXFR (RFC 1995) instead of the whole zone.
//!
//! It lives in memory only and is bounded by [`MAX_CHANGES`] and
//! [`MAX_RECORDS`]; the oldest changes go first. After a restart it is
//! empty, and a secondary whose serial it does not reach gets an AXFR.

use std::collections::VecDeque;

use hickory_proto::rr::Record;

/// Changes kept. A pub sees a few updates a minute; a secondary notified
/// at once is never more than a few behind, and one that was away longer
/// takes the whole zone.
pub(crate) const MAX_CHANGES: usize = 1000;
/// Records (removed plus added) kept over all changes, so a burst of big
/// batches (the registry applied at start) cannot hold much memory.
pub(crate) const MAX_RECORDS: usize = 20_000;

/// One change of the zone: from `from` to `to`, what went and what came.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delta {
    /// The serial before.
    pub(crate) from: u32,
    /// The serial after.
    pub(crate) to: u32,
    /// Records removed (exactly as they were served).
    pub(crate) removed: Vec<Record>,
    /// Records added.
    pub(crate) added: Vec<Record>,
}

/// The bounded list of the last changes, oldest first, each starting at
/// the serial where the one before it ended.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// The changes, oldest first.
    deltas: VecDeque<Delta>,
    /// Records held by `deltas`.
    records: usize,
}

impl Journal {
    /// Records a change. A change that does not start where the last one
    /// ended (it cannot happen, but a gap would make IXFR wrong) clears
    /// the journal first. A change bigger than the whole bound is not
    /// kept, and clears it too: a secondary from before it needs an AXFR.
    pub(crate) fn push(&mut self, delta: Delta) {
        if self.deltas.back().is_some_and(|last| last.to != delta.from) {
            self.clear();
        }
        let size = delta.removed.len() + delta.added.len();
        if size > MAX_RECORDS {
            self.clear();
            return;
        }
        self.records += size;
        self.deltas.push_back(delta);
        while self.deltas.len() > MAX_CHANGES || self.records > MAX_RECORDS {
            match self.deltas.pop_front() {
                Some(old) => self.records -= old.removed.len() + old.added.len(),
                None => break,
            }
        }
    }

    /// Forgets every change.
    pub(crate) fn clear(&mut self) {
        self.deltas.clear();
        self.records = 0;
    }

    /// The changes from `serial` to now, oldest first; `None` when the
    /// journal does not reach back to `serial` (the secondary needs AXFR).
    pub(crate) fn since(&self, serial: u32) -> Option<Vec<&Delta>> {
        let start = self.deltas.iter().position(|d| d.from == serial)?;
        Some(self.deltas.iter().skip(start).collect())
    }

    /// How many changes are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.deltas.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData};

    fn a(last: u8) -> Record {
        Record::from_rdata(
            Name::from_ascii("pi.peach.dinosaur.is.").expect("name"),
            60,
            RData::A(A::new(192, 0, 2, last)),
        )
    }

    fn delta(from: u32, n: usize) -> Delta {
        Delta {
            from,
            to: from + 1,
            removed: vec![a(1); n],
            added: vec![a(2); n],
        }
    }

    #[test]
    fn since_returns_the_chain_from_a_known_serial_only() {
        let mut j = Journal::default();
        for s in 10..15 {
            j.push(delta(s, 1));
        }
        assert_eq!(j.since(12).map(|d| d.len()), Some(3));
        assert_eq!(j.since(10).map(|d| d.len()), Some(5));
        assert!(j.since(9).is_none(), "older than the journal");
        assert!(
            j.since(15).is_none(),
            "the current serial has no change after it"
        );
        assert!(j.since(77).is_none(), "unknown");
        // A gap clears the journal.
        j.push(delta(100, 1));
        assert!(j.since(10).is_none());
        assert_eq!(j.since(100).map(|d| d.len()), Some(1));
    }

    #[test]
    fn the_journal_is_bounded_by_changes_and_records() {
        let mut j = Journal::default();
        for s in 0..(MAX_CHANGES as u32 + 10) {
            j.push(delta(s, 1));
        }
        assert_eq!(j.len(), MAX_CHANGES);
        assert!(j.since(0).is_none(), "the oldest went first");
        assert!(j.since(10).is_some());
        let mut j = Journal::default();
        j.push(delta(0, MAX_RECORDS / 4));
        j.push(delta(1, MAX_RECORDS / 4));
        j.push(delta(2, MAX_RECORDS / 4));
        assert_eq!(j.len(), 2, "records bound the journal too");
        j.push(delta(3, MAX_RECORDS));
        assert_eq!(j.len(), 0, "a change over the bound is not kept");
    }
}
