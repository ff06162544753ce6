//! What stage 2 knows of the stage-1 producers writing the repartition topic:
//! their watermark marks, whose minimum is stage 2's watermark, and the origin of
//! the last update of each that it applied, which makes a replay harmless.

use crate::update::Origin;
use egret_model::FastMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stage 2's watermark from the marks it has read.
///
/// Marks are kept per stage-1 *instance* (its index in `--instance K/N`), not per
/// process: a restarted instance, or the standby that took over from it, is the
/// same producer carrying on. So an instance that stopped, crashed or left holds
/// its partitions at its last mark until it (or its successor) marks again: its
/// input is not processed meanwhile, and what its successor re-sends from an older
/// checkpoint must not find its windows final. An instance that never marked
/// holds them at `i64::MIN`: every one of the `count` instances is waited for.
#[derive(Debug)]
pub struct Marks {
    /// Per partition, per instance: the highest mark read.
    latest: BTreeMap<u32, Vec<i64>>,
    /// How many stage-1 instances split the input.
    instances: usize,
    assigned: Vec<u32>,
}

impl Default for Marks {
    fn default() -> Self {
        Marks::new(1)
    }
}

impl Marks {
    /// Marks of `instances` stage-1 instances.
    pub fn new(instances: u32) -> Self {
        Marks { latest: BTreeMap::new(), instances: instances.max(1) as usize, assigned: Vec::new() }
    }

    pub fn observe(&mut self, partition: u32, instance: u32, watermark: i64) {
        if let Some(mark) = self.entry(partition, instance) {
            *mark = (*mark).max(watermark);
        }
    }

    /// `None` for an instance beyond the split (stage 2 passes over its batches
    /// before they get here, and says so).
    fn entry(&mut self, partition: u32, instance: u32) -> Option<&mut i64> {
        let instances = self.instances;
        self.latest.entry(partition).or_insert_with(|| vec![i64::MIN; instances]).get_mut(instance as usize)
    }

    pub fn set_assignment(&mut self, partitions: Vec<u32>) {
        if !partitions.is_empty() {
            self.assigned = partitions;
        }
    }

    /// Whether any partition is kept.
    pub fn keeps_any(&self) -> bool {
        !self.assigned.is_empty()
    }

    /// The minimum over assigned partitions of the minimum over instances; `i64::MIN`
    /// while nothing is known.
    pub fn watermark(&self) -> i64 {
        let of = |p: &u32| self.latest.get(p).and_then(|marks| marks.iter().min().copied()).unwrap_or(i64::MIN);
        self.assigned.iter().map(of).min().unwrap_or(i64::MIN)
    }
}

/// Which process speaks for each stage-1 instance, per repartition partition, to
/// catch two processes running as one instance: two `egret run` on different
/// checkpoint directories with the same `--instance` (or none) in one group. Each
/// then holds part of the input while stage 2 takes their marks for one
/// instance's, and windows close before one of them has sent its updates. In one
/// partition a successor only follows its predecessor (a standby starts once the
/// active process has gone), so a process heard from again after another took
/// over is a second one.
#[derive(Debug, Default)]
pub struct Speakers {
    /// (partition, instance) → the process heard last, and those it replaced.
    heard: FastMap<(u32, u32), (u64, Vec<u64>)>,
    conflicts: u64,
}

impl Speakers {
    /// Process `producer` wrote as `instance` on `partition`; false when another
    /// process is speaking as the same instance at the same time.
    pub fn heard(&mut self, partition: u32, instance: u32, producer: u64) -> bool {
        let (last, replaced) = self.heard.entry((partition, instance)).or_insert((producer, Vec::new()));
        if *last == producer {
            return true;
        }
        if replaced.contains(&producer) {
            self.conflicts += 1;
            // Both go on: keep answering false for whichever is not the newest.
            std::mem::swap(last, replaced.iter_mut().find(|p| **p == producer).expect("just found"));
            return false;
        }
        replaced.push(std::mem::replace(last, producer));
        // A takeover a day keeps this short; the oldest predecessors are long gone.
        if replaced.len() > 64 {
            replaced.remove(0);
        }
        true
    }

    /// Messages heard from a second process speaking as an instance.
    pub fn conflicts(&self) -> u64 {
        self.conflicts
    }
}

/// Per repartition partition, stage-1 instance and input partition, the origin of
/// the last update applied: stage 2's de-duplication of stage 1's replays (see
/// `Origin`). Per instance, because two instances may both send updates of one
/// input partition: a misread plate's read goes with its plate (`ownership`), each
/// in its own order.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    /// The last origin applied of the first instance: the only one before
    /// instances split the input, whose checkpoints this still reads.
    latest: LastApplied,
    /// The same for each other instance, by its index.
    #[serde(default)]
    others: BTreeMap<u32, LastApplied>,
}

/// (repartition partition, input topic, input partition) → (offset, sub).
type LastApplied = FastMap<(u32, u8, u32), (u64, u16)>;

impl Applied {
    /// True the first time an update of this origin from stage-1 `instance`
    /// arrives on `partition`.
    pub fn first_time(&mut self, partition: u32, instance: u32, Origin(topic, input_partition, offset, sub): Origin) -> bool {
        let latest = if instance == 0 { &mut self.latest } else { self.others.entry(instance).or_default() };
        match latest.entry((partition, topic, input_partition)) {
            std::collections::hash_map::Entry::Occupied(seen) if (offset, sub) <= *seen.get() => false,
            std::collections::hash_map::Entry::Occupied(mut seen) => {
                seen.insert((offset, sub));
                true
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((offset, sub));
                true
            }
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_instance_on_the_slowest_partition_sets_the_watermark() {
        let mut m = Marks::new(2);
        m.set_assignment(vec![0, 1]);
        assert_eq!(m.watermark(), i64::MIN);
        m.observe(0, 0, 100);
        m.observe(1, 0, 120);
        assert_eq!(m.watermark(), i64::MIN, "instance 2 has not marked: it is waited for");
        m.observe(0, 1, 150);
        m.observe(1, 1, 150);
        assert_eq!(m.watermark(), 100);
        m.observe(0, 0, 130);
        assert_eq!(m.watermark(), 120);
        for (p, i) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            m.observe(p, i, i64::MAX);
        }
        assert_eq!(m.watermark(), i64::MAX, "every instance finished");
    }

    #[test]
    fn an_instance_that_stopped_holds_its_partitions_at_its_last_mark() {
        let mut m = Marks::new(1);
        m.set_assignment(vec![0, 1]);
        m.observe(0, 0, 100);
        m.observe(1, 0, 120);
        // Its successor, restored from an older checkpoint, marks from where it is.
        m.observe(0, 0, 90);
        assert_eq!(m.watermark(), 100, "what it re-sends is for windows after its last mark");
        m.observe(0, 0, 140);
        assert_eq!(m.watermark(), 120);
    }

    #[test]
    fn a_mark_from_an_instance_of_another_split_is_ignored() {
        let mut m = Marks::new(1);
        m.set_assignment(vec![0]);
        m.observe(0, 0, 100);
        m.observe(0, 3, 50);
        assert_eq!(m.watermark(), 100);
    }

    #[test]
    fn an_update_is_applied_once_per_origin_whatever_replays_it() {
        let mut applied = Applied::default();
        assert!(applied.first_time(0, 0, Origin(0, 3, 0, 0)), "offset 0 is an offset like any other");
        assert!(applied.first_time(0, 0, Origin(0, 3, 0, 1)));
        assert!(applied.first_time(0, 0, Origin(0, 3, 7, 0)));
        assert!(!applied.first_time(0, 0, Origin(0, 3, 0, 1)), "a replay of an earlier record");
        assert!(!applied.first_time(0, 0, Origin(0, 3, 7, 0)), "the same update again");
        assert!(applied.first_time(1, 0, Origin(0, 3, 7, 0)), "another repartition partition keeps its own count");
        assert!(applied.first_time(0, 0, Origin(1, 3, 7, 0)), "another input topic too");
        assert!(applied.first_time(0, 0, Origin(0, 3, 8, 0)));
        // A corrected misread from input partition 3 sent by the instance owning its plate.
        assert!(applied.first_time(0, 1, Origin(0, 3, 5, 0)), "another instance keeps its own count");
        assert!(!applied.first_time(0, 1, Origin(0, 3, 5, 0)));
        assert!(!applied.first_time(0, 0, Origin(0, 3, 8, 0)), "the first instance's count is unchanged");
    }

    #[test]
    fn two_processes_speaking_as_one_instance_are_caught_and_a_takeover_is_not() {
        let mut s = Speakers::default();
        assert!(s.heard(0, 0, 7) && s.heard(0, 0, 7));
        assert!(s.heard(0, 0, 9), "a standby took over");
        assert!(s.heard(1, 0, 7), "the old process's last batch on another partition");
        assert!(s.heard(1, 0, 9));
        assert!(s.heard(0, 1, 7), "another instance");
        assert!(!s.heard(0, 0, 7), "the one it replaced is back: two processes as instance 1");
        assert!(!s.heard(0, 0, 9), "and the other goes on");
        assert_eq!(s.conflicts(), 2);
    }

    #[test]
    fn a_checkpoint_of_the_version_before_split_instances_still_reads() {
        #[derive(Serialize)]
        struct Before {
            latest: FastMap<(u32, u8, u32), (u64, u16)>,
        }
        let mut before = Before { latest: FastMap::default() };
        before.latest.insert((0, 0, 3), (7, 0));
        let mut bytes = Vec::new();
        ciborium::into_writer(&before, &mut bytes).expect("cbor");
        let mut applied: Applied = ciborium::from_reader(&bytes[..]).expect("read");
        assert!(!applied.first_time(0, 0, Origin(0, 3, 7, 0)));
        assert!(applied.first_time(0, 0, Origin(0, 3, 8, 0)));
    }
}
