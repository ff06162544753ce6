//! Which keyed work an active instance does, when several active instances split
//! the input (`egret run --instance 2/3`).
//!
//! Every instance reads every input partition, in the aligner's order, and keeps
//! the state that spans partitions (device clocks, the tag registry, the gantry
//! log, reader health, de-duplication, watermarks) from all of them, so that state
//! is the same on every instance and the same as one instance's. The state of a
//! plate (its reads, open drives, held and pending tickets) lives with the instance
//! its plate's hash picks (`owns_plate`), whichever partition the plate's reads
//! and camera events arrive on, and only that instance writes the plate's updates
//! and tickets. Records without a plate of their own (lot counts, bus reports,
//! dead letters) go by partition: partition `p` of every topic belongs to
//! instance `p % count`. The union of the instances' stage-1 outputs is then one
//! instance's, whatever the split; so are stage 2's windows and lots
//! (deploy/SCALE-OUT.md lists what of stage 2 still differs).
//!
//! By the plate's hash rather than its partition because the hash can be worked
//! out from the state alone: the producer's partitioner is not ours, and to deal
//! the keyed state of N instances out to M (`egret rescale`) every entry must be
//! placeable by its key.

use egret_model::Plate;
use std::fmt;
use std::str::FromStr;

/// This instance's share of the input: instance `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ownership {
    index: u32,
    count: u32,
}

impl Default for Ownership {
    /// One instance doing all the work.
    fn default() -> Self {
        Ownership { index: 0, count: 1 }
    }
}

impl Ownership {
    /// Instance `index` of `count`; `None` unless `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Self> {
        (index < count).then_some(Ownership { index, count })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether this instance does the keyed work of `partition` (of any topic).
    pub fn owns(&self, partition: u32) -> bool {
        partition % self.count == self.index
    }

    /// Whether this instance does the keyed work of `plate`: FNV-1a of the plate's
    /// text, as librdkafka's partitioner hashes keys, over `count` shares.
    pub fn owns_plate(&self, plate: &Plate) -> bool {
        self.count == 1 || egret_ingest::partition_for(Some(plate.as_str().as_bytes()), self.count, 0) == self.index
    }

    /// True for the one instance that owns everything.
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }
}

impl fmt::Display for Ownership {
    /// As `--instance` takes it: one-based, "2/3" for the second of three.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

impl FromStr for Ownership {
    type Err = String;

    /// "K/N": instance K (1 to N) of N.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || format!("expected K/N, instance K (1 to N) of N active instances, as in 2/3; got {s:?}");
        let (k, n) = s.split_once('/').ok_or_else(usage)?;
        let (k, n): (u32, u32) = (k.trim().parse().map_err(|_| usage())?, n.trim().parse().map_err(|_| usage())?);
        if k == 0 || n == 0 || k > n {
            return Err(usage());
        }
        Ok(Ownership { index: k - 1, count: n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_owner() {
        for count in 1..=5 {
            for partition in 0..24 {
                let owners = (0..count).filter(|&i| Ownership::new(i, count).is_some_and(|o| o.owns(partition))).count();
                assert_eq!(owners, 1, "partition {partition} of {count} instances");
            }
        }
    }

    #[test]
    fn every_plate_has_exactly_one_owner_and_plates_spread() {
        let plates: Vec<Plate> = (0..600).map(|i| Plate::parse(&format!("闽D{:05}", i * 7)).expect("plate")).collect();
        for count in 1..=5 {
            let mut per_instance = vec![0; count as usize];
            for plate in &plates {
                let owners: Vec<u32> = (0..count).filter(|&i| Ownership::new(i, count).is_some_and(|o| o.owns_plate(plate))).collect();
                assert_eq!(owners.len(), 1, "{} of {count} instances", plate.as_str());
                per_instance[owners[0] as usize] += 1;
            }
            let fair = plates.len() / count as usize;
            assert!(per_instance.iter().all(|n| *n > fair / 2), "{count} instances: {per_instance:?}");
        }
    }

    #[test]
    fn the_flag_is_one_based_and_checked() {
        assert_eq!("2/3".parse::<Ownership>(), Ok(Ownership { index: 1, count: 3 }));
        assert_eq!("1/1".parse::<Ownership>(), Ok(Ownership::default()));
        assert_eq!(Ownership { index: 1, count: 3 }.to_string(), "2/3");
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "-1/2", ""] {
            let refused = bad.parse::<Ownership>().expect_err(bad);
            assert!(refused.contains("K/N"), "{refused}");
        }
    }
}
