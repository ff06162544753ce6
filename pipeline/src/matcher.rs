//! Plate-pair matching: a vehicle read at one gantry and then at the next adjacent
//! gantry has driven the segment between them, at its surveyed length over the time
//! between the two reads.
//!
//! Each plate keeps its few most recent reads in event-time order, so a read that
//! arrives late still pairs with its true neighbours. Reads at non-adjacent gantries
//! (a missed read in between) pair with nothing. State expires with event time.

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
}

#[derive(Debug, Clone, Copy)]
struct Read {
    reader: ReaderIdx,
    ts_ms: i64,
}

#[derive(Debug)]
struct PlateState {
    class: VehicleClass,
    /// Most recent reads, oldest first; `len` of them are valid.
    reads: [Read; RECENT_READS],
    len: u8,
}

#[derive(Debug, Default)]
pub struct Matcher {
    plates: HashMap<Plate, PlateState>,
}

impl Matcher {
    /// Adds a read; returns the traversals it completes (0, 1 or 2 when it fills a gap).
    pub fn read(&mut self, city: &CityModel, plate: Plate, class: VehicleClass, reader: ReaderIdx, ts_ms: i64, out: &mut Vec<Traversal>) {
        let state = self.plates.entry(plate).or_insert(PlateState { class, reads: [Read { reader, ts_ms }; RECENT_READS], len: 0 });
        state.class = class;
        let reads = &mut state.reads[..usize::from(state.len)];
        // Position in time order; an identical (reader, ts) read is a duplicate.
        let at = reads.partition_point(|r| r.ts_ms <= ts_ms);
        // A gantry often reads a tag twice in one pass: one passage, not two.
        let same_pass = |r: &Read| r.reader == reader && (r.ts_ms - ts_ms).abs() < SAME_PASSAGE_MS;
        if at.checked_sub(1).is_some_and(|i| same_pass(&reads[i])) || reads.get(at).is_some_and(same_pass) {
            return;
        }
        let before = at.checked_sub(1).map(|i| reads[i]);
        let after = reads.get(at).copied();
        let this = Read { reader, ts_ms };
        if let Some(prev) = before {
            push_traversal(city, plate, class, prev, this, out);
        }
        if let Some(next) = after {
            push_traversal(city, plate, class, this, next, out);
        }
        insert(state, at, this);
    }

    /// Forgets plates whose newest read is older than `horizon_ms`.
    pub fn expire(&mut self, horizon_ms: i64) {
        self.plates.retain(|_, s| s.len > 0 && s.reads[usize::from(s.len) - 1].ts_ms >= horizon_ms);
    }

    pub fn plates_in_flight(&self) -> usize {
        self.plates.len()
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
    let Some(segment) = city.segment_between(from.reader, to.reader) else { return };
    if to.ts_ms <= from.ts_ms {
        return;
    }
    let speed_kmh = speed_kmh(city.segment(segment).length_m, from.ts_ms, to.ts_ms);
    if PLAUSIBLE_KMH.contains(&speed_kmh) {
        out.push(Traversal { segment, plate, class, enter_ms: from.ts_ms, exit_ms: to.ts_ms, speed_kmh });
    }
}
