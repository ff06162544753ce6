//! Stopping at a cut (`egret run --stop-at T`): every instance of a split stops at
//! the same point of the input, so their checkpoints can be dealt out to another
//! number of instances (`rescale`, `egret rescale`).
//!
//! The cut is, on every input partition, the records up to the first one stamped
//! (by its arrival time, the record's timestamp) after T. It depends on each
//! partition's records alone, so every instance, reading every partition, stops at
//! the same offsets whatever the order its partitions were fetched in. A partition
//! with no record after T yet is past the cut once it is drained and the wall clock
//! is `SETTLE_MS` past T: a record stamped before T arriving later than that would
//! be a producer whose clock is that far off, and one instance may then have read
//! it and another not; `egret rescale` sees the positions differ and refuses, and
//! running the instances again with the same T brings them to one cut.
//!
//! Stage 1 stops once every partition is past the cut: it saves its state, marks
//! every repartition partition with `Internal::Cut` after everything it sent, and
//! exits without finishing (its windows stay open, its held tickets held). Stage 2
//! stops once every instance's cut mark has come on every partition it keeps: by
//! then it has applied all that stage 1 sent before the cut.

use egret_ingest::Record;
use std::collections::{BTreeMap, BTreeSet};

/// How long past T the wall clock must be before a drained partition counts as
/// past the cut: the broker's append, replication and a fetch take far less.
pub const SETTLE_MS: i64 = 5_000;

/// How long a partition must stay drained, once settled, before it counts: the
/// consumer asks the broker for more every 10 ms (`fetch.wait.max.ms`), so a
/// record that had reached the broker when the partition was first seen drained
/// past the settle time has been fetched by then. Without it a notice of the end
/// fetched a moment before such a record could stop two instances at different
/// offsets.
pub const CONFIRM_MS: i64 = 500;

/// Stage 1's side: which partitions have reached the cut.
#[derive(Debug)]
pub struct Cut {
    at_ms: i64,
    /// Partitions whose first record past the cut has come: it and all after it
    /// are held back (not processed, not committed).
    reached: BTreeSet<(String, u32)>,
    /// Since when every partition has been past the cut without interruption,
    /// some of them by being drained (see `CONFIRM_MS`).
    drained_since: Option<i64>,
}

impl Cut {
    pub fn new(at_ms: i64) -> Self {
        Cut { at_ms, reached: BTreeSet::new(), drained_since: None }
    }

    pub fn at_ms(&self) -> i64 {
        self.at_ms
    }

    /// Drops from `records` those at or after their partition's first record
    /// stamped past the cut.
    pub fn hold_back(&mut self, records: &mut Vec<Record>) {
        records.retain(|r| {
            let past = r.timestamp_ms.is_some_and(|t| t > self.at_ms);
            let key = (r.topic.to_string(), r.partition);
            if past || self.reached.contains(&key) {
                self.reached.insert(key);
                return false;
            }
            true
        });
    }

    /// Whether every partition of `assignment` (which must hold each of the
    /// `topics`) is past the cut: reached, or drained with the wall clock
    /// `SETTLE_MS` past it and every check of the last `CONFIRM_MS` saying so.
    pub fn is_reached(&mut self, topics: &[&str], assignment: &[(String, u32)], drained: &[(String, u32)], now_ms: i64) -> bool {
        let settled = now_ms >= self.at_ms.saturating_add(SETTLE_MS);
        let past = topics.iter().all(|t| assignment.iter().any(|(a, _)| a == t))
            && assignment.iter().all(|key| self.reached.contains(key) || (settled && drained.contains(key)));
        if !past {
            self.drained_since = None;
            return false;
        }
        if assignment.iter().all(|key| self.reached.contains(key)) {
            return true;
        }
        now_ms - *self.drained_since.get_or_insert(now_ms) >= CONFIRM_MS
    }
}

/// Stage 2's side: the cut marks come so far, per repartition partition. Kept
/// in stage 2's checkpoint: a stage 2 restarted while it waits for the last marks
/// does not read again the ones it has passed.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct CutMarks {
    /// Per partition, the instances whose mark of the cut at `.0` has come.
    marked: BTreeMap<u32, BTreeSet<(i64, u32)>>,
}

impl CutMarks {
    /// Forgets the marks of every cut but `at_ms`'s (all of them for none): a
    /// stage 2 that ran on past a cut must not find it marked when it is asked to
    /// stop there again.
    pub fn keep_only(&mut self, at_ms: Option<i64>) {
        for marks in self.marked.values_mut() {
            marks.retain(|(at, _)| Some(*at) == at_ms);
        }
    }

    pub fn observe(&mut self, partition: u32, instance: u32, at_ms: i64) {
        self.marked.entry(partition).or_default().insert((at_ms, instance));
    }

    /// Whether all `instances` have marked the cut at `at_ms` on every one of
    /// `partitions` (an instance that keeps none has nothing to wait for).
    pub fn complete(&self, at_ms: i64, instances: u32, partitions: &[u32]) -> bool {
        partitions.iter().all(|p| self.marked.get(p).is_some_and(|m| (0..instances).all(|i| m.contains(&(at_ms, i)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(topic: &str, partition: u32, offset: u64, ts: i64) -> Record {
        Record { topic: topic.into(), partition, offset, key: None, payload: Bytes::new(), headers: Vec::new(), timestamp_ms: Some(ts) }
    }

    /// A record stamped after the cut holds back its partition from there on, even
    /// a record behind it stamped before (a producer's clock a little off): the
    /// cut is the same on every instance only if it is a prefix of each partition.
    #[test]
    fn a_partition_stops_at_its_first_record_past_the_cut() {
        let mut cut = Cut::new(100);
        let mut first = vec![record("a", 0, 0, 90), record("a", 1, 0, 95), record("a", 0, 1, 101), record("a", 0, 2, 99)];
        cut.hold_back(&mut first);
        assert_eq!(first.iter().map(|r| (r.partition, r.offset)).collect::<Vec<_>>(), vec![(0, 0), (1, 0)]);
        let mut second = vec![record("a", 0, 3, 50), record("a", 1, 1, 100)];
        cut.hold_back(&mut second);
        assert_eq!(second.iter().map(|r| (r.partition, r.offset)).collect::<Vec<_>>(), vec![(1, 1)]);
        let assignment = vec![("a".to_owned(), 0), ("a".to_owned(), 1)];
        let drained = [("a".to_owned(), 1)];
        assert!(!cut.is_reached(&["a"], &assignment, &drained, 100 + SETTLE_MS - 1), "partition 1 drained, but not yet settled");
        assert!(!cut.is_reached(&["a"], &assignment, &drained, 100 + SETTLE_MS), "settled, drained at this check only");
        assert!(!cut.is_reached(&["a"], &assignment, &[], 100 + SETTLE_MS + 200), "a record came: the end seen before was stale");
        assert!(!cut.is_reached(&["a"], &assignment, &drained, 100 + SETTLE_MS + 300));
        assert!(!cut.is_reached(&["a"], &assignment, &drained, 100 + SETTLE_MS + 300 + CONFIRM_MS - 1));
        assert!(cut.is_reached(&["a"], &assignment, &drained, 100 + SETTLE_MS + 300 + CONFIRM_MS), "drained at every check for CONFIRM_MS");
        assert!(!cut.is_reached(&["a", "b"], &assignment, &drained, 100 + SETTLE_MS + 300 + CONFIRM_MS), "topic b is not assigned yet");
        let mut every = Cut::new(100);
        every.hold_back(&mut vec![record("a", 0, 0, 101), record("a", 1, 0, 101)]);
        assert!(every.is_reached(&["a"], &assignment, &[], 0), "every partition reached by a record past the cut: at once, whatever the clock");
    }

    #[test]
    fn stage_2_stops_once_every_instance_marked_every_partition() {
        let mut marks = CutMarks::default();
        marks.observe(0, 0, 100);
        marks.observe(0, 1, 100);
        marks.observe(2, 0, 100);
        assert!(!marks.complete(100, 2, &[0, 2]));
        marks.observe(2, 1, 99);
        assert!(!marks.complete(100, 2, &[0, 2]), "a mark of another cut");
        marks.observe(2, 1, 100);
        assert!(marks.complete(100, 2, &[0, 2]));
        // Run on past the cut, then asked to stop there again: the old marks do not
        // count, the ones of the cut it waits for do.
        marks.keep_only(None);
        assert!(!marks.complete(100, 2, &[0, 2]), "forgotten after running on past the cut");
        marks.observe(0, 0, 100);
        marks.observe(0, 1, 200);
        marks.keep_only(Some(200));
        marks.observe(0, 0, 200);
        assert!(marks.complete(200, 2, &[0]) && !marks.complete(100, 2, &[0]));
        assert!(marks.complete(100, 3, &[]), "an instance keeping no partition has nothing to wait for");
        assert!(!marks.complete(100, 3, &[0]), "the third instance has not marked");
    }
}
