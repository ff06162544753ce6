//! Arrival-order alignment of partitions. A consumer hands out whatever each
//! partition's last fetch brought, so in a backlog (a restart, a replay, a slow
//! consumer) one partition runs minutes ahead of another, differently on every run.
//! Stage 1 has state across partitions (a tag's plate, a camera's reads, the
//! watermark), so its outputs would follow that interleaving: a rerun, or a run
//! restarted from a checkpoint, would not give the tickets of the first.
//!
//! The aligner releases records in one order that depends on the records alone: it
//! merges the partitions by record timestamp (the collector's arrival time), ties
//! broken by partition, and releases a record only when every partition it could
//! still come after has a record queued or is drained (at the end of what the
//! broker holds). In live operation partitions are drained most of the time and
//! records pass straight through, in arrival order.
//!
//! A partition that neither delivers nor reaches its end (its broker is down) holds
//! the others back for at most `patience`; memory is bounded by `capacity`, past
//! which the oldest record goes out whatever the empty partitions might still hold.
//! Either lets the order depend on timing again, only then.

use crate::Record;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// A partition as the aligner names it: the caller's topic index, and the partition.
pub type PartitionKey = (usize, u32);

pub struct Aligner {
    queues: BTreeMap<PartitionKey, VecDeque<Record>>,
    /// Since when an owned, undrained partition has had nothing queued.
    empty_since: BTreeMap<PartitionKey, Instant>,
    queued: usize,
    capacity: usize,
    patience: Duration,
    /// Records released while a partition that might have come first was empty:
    /// their order depended on timing.
    pub unaligned: u64,
    /// The latest arrival time released so far.
    released_to_ms: i64,
}

impl Aligner {
    pub fn new(capacity: usize, patience: Duration) -> Self {
        Aligner { queues: BTreeMap::new(), empty_since: BTreeMap::new(), queued: 0, capacity, patience, unaligned: 0, released_to_ms: i64::MIN }
    }

    pub fn push(&mut self, key: PartitionKey, record: Record) {
        self.queues.entry(key).or_default().push_back(record);
        self.queued += 1;
    }

    /// Records waiting for a slower partition.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Whether anything of this partition is still queued.
    pub fn holds(&self, key: &PartitionKey) -> bool {
        self.queues.get(key).is_some_and(|q| !q.is_empty())
    }

    /// Partitions whose next record arrived after every record released so far: as
    /// of the last record out they had nothing pending, just as a live partition at
    /// its end. In a backlog this is what idle means (a lot counter that reports
    /// every 15 minutes must not hold the watermark for 15 minutes of replay), and
    /// it depends on the records alone.
    pub fn ahead_of_release(&self) -> impl Iterator<Item = PartitionKey> + '_ {
        self.queues
            .iter()
            .filter(|(_, q)| q.front().and_then(|r| r.timestamp_ms).is_some_and(|ts| ts > self.released_to_ms))
            .map(|(k, _)| *k)
    }

    /// Moves up to `max` records to `out`, in merged order. `owned` are the
    /// partitions assigned now (records of others are dropped: their new owner reads
    /// them again from the committed offset); `drained` those at their end.
    pub fn release(&mut self, owned: &[PartitionKey], drained: &HashSet<PartitionKey>, now: Instant, max: usize, out: &mut Vec<Record>) {
        let dropped: usize = self.queues.iter().filter(|(k, _)| !owned.contains(k)).map(|(_, q)| q.len()).sum();
        self.queues.retain(|k, _| owned.contains(k));
        self.queued -= dropped;
        self.empty_since.retain(|k, _| owned.contains(k));
        // A partition that may still deliver something earlier than every queued head
        // holds the merge, unless it has kept it waiting too long. Which partitions
        // are empty only changes when a release empties one, so it is worked out
        // once here and then kept up to date, not rescanned per record.
        let (mut empty, mut holding) = (false, false);
        for k in owned.iter().filter(|k| !drained.contains(k) && !self.holds(k)) {
            empty = true;
            holding |= !self.given_up_on(k, now);
        }
        let mut released = 0;
        while released < max && !(holding && self.queued < self.capacity) {
            let Some(key) = self.queues.iter().filter_map(|(k, q)| q.front().map(|r| ((r.timestamp_ms.unwrap_or(i64::MIN), *k), *k))).min().map(|(_, k)| k) else {
                break;
            };
            let Some(queue) = self.queues.get_mut(&key) else { break };
            let Some(record) = queue.pop_front() else { break };
            self.unaligned += u64::from(empty);
            self.released_to_ms = self.released_to_ms.max(record.timestamp_ms.unwrap_or(i64::MIN));
            if queue.is_empty() && !drained.contains(&key) {
                empty = true;
                // Just emptied: it has not kept anyone waiting yet.
                holding = true;
            }
            self.queued -= 1;
            out.push(record);
            released += 1;
        }
        for k in owned {
            if self.holds(k) || drained.contains(k) {
                self.empty_since.remove(k);
            } else {
                self.empty_since.entry(*k).or_insert(now);
            }
        }
    }

    fn given_up_on(&self, key: &PartitionKey, now: Instant) -> bool {
        self.empty_since.get(key).is_some_and(|since| now.saturating_duration_since(*since) >= self.patience)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(partition: u32, offset: u64, ts: i64) -> Record {
        Record {
            topic: "t".into(),
            partition,
            offset,
            key: None,
            payload: bytes::Bytes::new(),
            headers: Vec::new(),
            timestamp_ms: Some(ts),
        }
    }

    fn offsets(records: &[Record]) -> Vec<(u32, u64)> {
        records.iter().map(|r| (r.partition, r.offset)).collect()
    }

    /// Two owned partitions, a record queued on partition 0 and none on partition 1,
    /// after a first release at `t0`.
    fn one_partition_waiting(t0: Instant) -> (Aligner, [PartitionKey; 2], Vec<Record>) {
        let owned = [(0, 0), (0, 1)];
        let mut a = Aligner::new(1_000, Duration::from_secs(5));
        let mut out = Vec::new();
        a.push((0, 0), record(0, 0, 100));
        a.release(&owned, &HashSet::new(), t0, 10, &mut out);
        (a, owned, out)
    }

    #[test]
    fn a_partition_whose_next_record_arrived_after_the_last_one_out_is_ahead_of_the_release() {
        let owned = [(0, 0), (0, 1)];
        let mut a = Aligner::new(1_000, Duration::from_secs(5));
        // A sparse partition: its next record arrived 15 minutes after the busy one's.
        a.push((0, 0), record(0, 0, 100));
        a.push((0, 0), record(0, 1, 200));
        a.push((0, 1), record(1, 0, 900_100));
        let mut out = Vec::new();
        a.release(&owned, &HashSet::new(), Instant::now(), 1, &mut out);
        assert_eq!(offsets(&out), [(0, 0)]);
        // Both heads arrived after the last record out (100).
        assert_eq!(a.ahead_of_release().collect::<Vec<_>>(), owned);
        a.release(&owned, &HashSet::new(), Instant::now(), 1, &mut out);
        // Now the busy one is empty (it holds the merge), the sparse one is ahead.
        assert_eq!(a.ahead_of_release().collect::<Vec<_>>(), [(0, 1)]);
        // A record that arrived no later than the last one out is due, not ahead.
        a.push((0, 0), record(0, 2, 200));
        assert_eq!(a.ahead_of_release().collect::<Vec<_>>(), [(0, 1)]);
    }

    #[test]
    fn an_empty_partition_holds_the_merge_until_it_delivers_or_drains() {
        let t0 = Instant::now();
        let (mut a, owned, mut out) = one_partition_waiting(t0);
        assert!(out.is_empty(), "partition 1 may still hold something older");
        a.push((0, 1), record(1, 0, 50));
        a.release(&owned, &HashSet::new(), t0, 10, &mut out);
        assert_eq!(offsets(&out), [(1, 0)], "the older record first; partition 1 is empty again");
        a.release(&owned, &HashSet::from([(0, 1)]), t0, 10, &mut out);
        assert_eq!(offsets(&out), [(1, 0), (0, 0)], "partition 1 drained: nothing holds partition 0");
    }

    #[test]
    fn a_silent_partition_is_given_up_on_after_the_patience() {
        let t0 = Instant::now();
        let (mut a, owned, mut out) = one_partition_waiting(t0);
        a.release(&owned, &HashSet::new(), t0 + Duration::from_secs(4), 10, &mut out);
        assert!(out.is_empty());
        a.release(&owned, &HashSet::new(), t0 + Duration::from_secs(5), 10, &mut out);
        assert_eq!(offsets(&out), [(0, 0)]);
        assert_eq!(a.unaligned, 1, "counted: its order depended on timing");
    }

    #[test]
    fn memory_is_bounded_whatever_a_partition_holds_back() {
        let owned = [(0, 0), (0, 1)];
        let mut a = Aligner::new(3, Duration::from_secs(3_600));
        let mut out = Vec::new();
        for i in 0..5 {
            a.push((0, 0), record(0, i, i as i64));
            a.release(&owned, &HashSet::new(), Instant::now(), 10, &mut out);
            assert!(a.queued() <= 3);
        }
        assert_eq!(offsets(&out), [(0, 0), (0, 1), (0, 2)]);
    }

    #[test]
    fn records_of_a_revoked_partition_are_dropped() {
        let mut a = Aligner::new(1_000, Duration::from_secs(5));
        let mut out = Vec::new();
        a.push((0, 0), record(0, 0, 100));
        a.push((0, 1), record(1, 0, 50));
        a.release(&[(0, 0)], &HashSet::from([(0, 0)]), Instant::now(), 10, &mut out);
        assert_eq!(offsets(&out), [(0, 0)]);
        assert_eq!(a.queued(), 0);
    }

    proptest! {
        /// However the fetches interleave the partitions, and however the output is
        /// cut into polls, the records come out in the same order.
        #[test]
        fn the_order_depends_on_the_records_not_on_the_fetches(
            partitions in proptest::collection::vec(proptest::collection::vec(0i64..1_000, 0..30), 1..5),
            fetch_order in proptest::collection::vec(0usize..5, 0..300),
            poll_sizes in proptest::collection::vec(1usize..8, 1..50),
        ) {
            // Each partition's records, with timestamps rising as a collector's do.
            let partitions: Vec<Vec<Record>> = partitions.iter().enumerate().map(|(p, ts)| {
                let mut ts = ts.clone();
                ts.sort();
                ts.iter().enumerate().map(|(o, t)| record(p as u32, o as u64, *t)).collect()
            }).collect();
            let owned: Vec<PartitionKey> = (0..partitions.len() as u32).map(|p| (0, p)).collect();
            let run = |fetches: &mut dyn Iterator<Item = usize>, polls: &mut dyn Iterator<Item = usize>| {
                let mut a = Aligner::new(100_000, Duration::from_secs(3_600));
                let mut next = vec![0usize; partitions.len()];
                let mut drained = HashSet::new();
                let mut out = Vec::new();
                let now = Instant::now();
                loop {
                    // Fetch one record of some partition, or its end.
                    let pending: Vec<usize> = (0..partitions.len()).filter(|p| !drained.contains(&(0, *p as u32))).collect();
                    if let Some(p) = fetches.next().map(|f| pending.get(f % pending.len().max(1)).copied()).unwrap_or_else(|| pending.first().copied()) {
                        match partitions[p].get(next[p]) {
                            Some(r) => { a.push((0, p as u32), r.clone()); next[p] += 1; }
                            None => { drained.insert((0, p as u32)); }
                        }
                    }
                    a.release(&owned, &drained, now, polls.next().unwrap_or(usize::MAX), &mut out);
                    if pending.is_empty() && a.queued() == 0 {
                        return offsets(&out);
                    }
                }
            };
            let straight = run(&mut std::iter::empty(), &mut std::iter::empty());
            // The order is the merge by arrival time, ties to the lower partition.
            let mut merged: Vec<(i64, u32, u64)> = partitions.iter().flatten().map(|r| (r.timestamp_ms.unwrap_or(i64::MIN), r.partition, r.offset)).collect();
            merged.sort_unstable();
            prop_assert_eq!(&straight, &merged.iter().map(|(_, p, o)| (*p, *o)).collect::<Vec<_>>());
            prop_assert_eq!(run(&mut fetch_order.into_iter(), &mut poll_sizes.into_iter()), straight);
        }
    }
}
