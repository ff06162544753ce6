//! Plate-pair matching: a vehicle read at one gantry and then at the next adjacent
//! gantry has driven the segment between them, at its surveyed length over the time
//! between the two reads. When the gantry in between missed the vehicle, the only
//! two-segment path between the reads was driven: a bridged traversal, which feeds
//! enforcement (an average over both segments) but not the per-segment speeds.
//!
//! Each plate keeps its few most recent reads in event-time order, so a read that
//! arrives late still pairs with its true neighbours. Reads at non-adjacent gantries
//! (a missed read in between) pair with nothing. State expires with event time.
//!
//! Reads keep their tag: a plate seen with two tags is two vehicles (a cloned plate,
//! see `enforce`), and reads of different vehicles never pair. Each read also keeps
//! where it came from and how sure its clock is, for the evidence of a ticket.

use egret_model::{CityModel, Plate, ReaderIdx, SegmentIdx, VehicleClass};
use std::collections::HashMap;

const RECENT_READS: usize = 4;
/// Reads of one plate at one gantry this close together are the same passage.
const SAME_PASSAGE_MS: i64 = 10_000;
/// Speeds outside this range are not traffic: clock faults, a stop, a misread.
const PLAUSIBLE_KMH: std::ops::RangeInclusive<f64> = 2.0..=250.0;

/// A vehicle's measured drive over one segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traversal {
    pub segment: SegmentIdx,
    pub plate: Plate,
    pub class: VehicleClass,
    pub enter_ms: i64,
    pub exit_ms: i64,
    pub speed_kmh: f64,
    /// The two reads, for evidence.
    pub from: Read,
    pub to: Read,
    /// Set when the gantry between `segment` and this one missed the vehicle: the
    /// drive covered both (the only two-segment path between the reads), and
    /// `speed_kmh` is the average over both.
    pub via: Option<SegmentIdx>,
}

/// One gantry read as the matcher keeps it (32 bytes).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub reader: ReaderIdx,
    /// The device's own timestamp minus the corrected one.
    pub clock_delta_ms: i32,
    /// Corrected event time.
    pub ts_ms: i64,
    /// Source record: offset and partition on the plate-reads topic.
    pub offset: u64,
    pub partition: u16,
    /// How far the corrected time may still be off (capped at 65 s).
    pub uncertainty_ms: u16,
    /// Fingerprint of the RFID tag id (0: none given).
    pub tag: u32,
}

impl Read {
    pub fn device_ts_ms(&self) -> i64 {
        self.ts_ms + i64::from(self.clock_delta_ms)
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct PlateState {
    class: VehicleClass,
    /// Most recent reads, oldest first; `len` of them are valid.
    reads: [Read; RECENT_READS],
    len: u8,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
pub struct Matcher {
    plates: HashMap<Plate, PlateState>,
}

impl Matcher {
    /// Adds a read; returns the traversals it completes (0, 1 or 2 when it fills a
    /// gap) in `out`, or `false` when it repeats a passage already known.
    pub fn read(&mut self, city: &CityModel, plate: Plate, class: VehicleClass, this: Read, out: &mut Vec<Traversal>) -> bool {
        let state = self.plates.entry(plate).or_insert(PlateState { class, reads: [this; RECENT_READS], len: 0 });
        state.class = class;
        let reads = &state.reads[..usize::from(state.len)];
        // A gantry often reads a tag twice in one pass: one passage, not two.
        let same_pass = |r: &Read| r.reader == this.reader && r.tag == this.tag && (r.ts_ms - this.ts_ms).abs() < SAME_PASSAGE_MS;
        if reads.iter().any(same_pass) {
            return false;
        }
        let at = reads.partition_point(|r| r.ts_ms <= this.ts_ms);
        // Neighbours in time of the same vehicle (same tag).
        let before = reads[..at].iter().rev().find(|r| r.tag == this.tag).copied();
        let after = reads[at..].iter().find(|r| r.tag == this.tag).copied();
        if let Some(prev) = before {
            push_traversal(city, plate, class, prev, this, out);
        }
        if let Some(next) = after {
            push_traversal(city, plate, class, this, next, out);
        }
        insert(state, at, this);
        true
    }

    /// The plate's registered class and its recent reads, oldest first.
    pub fn recent(&self, plate: &Plate) -> Option<(VehicleClass, &[Read])> {
        self.plates.get(plate).map(|s| (s.class, &s.reads[..usize::from(s.len)]))
    }

    /// Forgets one plate if its newest read is older than `horizon_ms`.
    pub fn forget_if_older(&mut self, plate: &Plate, horizon_ms: i64) {
        if self.plates.get(plate).is_some_and(|s| !s.newer_than(horizon_ms)) {
            self.plates.remove(plate);
        }
    }

    /// The plate's class and recent reads as `recent` gives them, unless `expire` at
    /// `horizon_ms` would forget the plate: a caller between two sweeps sees what it
    /// would have seen had the sweep just run.
    pub fn recent_since(&self, plate: &Plate, horizon_ms: i64) -> Option<(VehicleClass, &[Read])> {
        self.plates.get(plate).filter(|s| s.newer_than(horizon_ms)).map(|s| (s.class, &s.reads[..usize::from(s.len)]))
    }

    /// Forgets plates whose newest read is older than `horizon_ms`.
    pub fn expire(&mut self, horizon_ms: i64) {
        self.plates.retain(|_, s| s.newer_than(horizon_ms));
    }

    pub fn plates_in_flight(&self) -> usize {
        self.plates.len()
    }
}

impl PlateState {
    /// Its newest read is at or after `horizon_ms`.
    fn newer_than(&self, horizon_ms: i64) -> bool {
        self.len > 0 && self.reads[usize::from(self.len) - 1].ts_ms >= horizon_ms
    }
}

fn insert(state: &mut PlateState, at: usize, read: Read) {
    let len = usize::from(state.len);
    if len < RECENT_READS {
        state.reads.copy_within(at..len, at + 1);
        state.reads[at] = read;
        state.len += 1;
    } else if at > 0 {
        // Full: drop the oldest read to make room.
        state.reads.copy_within(1..at, 0);
        state.reads[at - 1] = read;
    }
}

/// Average speed over a segment of `length_m` entered and left at these instants.
/// The one formula both stages use, so a traversal's speed is the same bits wherever
/// it is computed.
pub fn speed_kmh(length_m: u32, enter_ms: i64, exit_ms: i64) -> f64 {
    f64::from(length_m) / ((exit_ms - enter_ms) as f64 / 1000.0) * 3.6
}

fn push_traversal(city: &CityModel, plate: Plate, class: VehicleClass, from: Read, to: Read, out: &mut Vec<Traversal>) {
    if to.ts_ms <= from.ts_ms {
        return;
    }
    let (segment, via, length_m) = match city.segment_between(from.reader, to.reader) {
        Some(s) => (s, None, city.segment(s).length_m),
        None => match city.two_hop(from.reader, to.reader) {
            Some((first, second)) => (first, Some(second), city.segment(first).length_m + city.segment(second).length_m),
            None => return,
        },
    };
    let speed_kmh = speed_kmh(length_m, from.ts_ms, to.ts_ms);
    if PLAUSIBLE_KMH.contains(&speed_kmh) {
        out.push(Traversal { segment, plate, class, enter_ms: from.ts_ms, exit_ms: to.ts_ms, speed_kmh, from, to, via });
    }
}
