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
use egret_model::FastMap;

pub const RECENT_READS: usize = 4;
/// Reads of one plate at one gantry this close together are the same passage.
pub(crate) const SAME_PASSAGE_MS: i64 = 10_000;
/// Speeds outside this range are not traffic: clock faults, a stop, a misread.
pub const PLAUSIBLE_KMH: std::ops::RangeInclusive<f64> = 2.0..=250.0;

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

/// What the matcher's map holds beside a plate's 16-byte key (24 bytes), with its
/// reads in a block of exactly their size on the heap. Before, the entry held a fixed array of
/// `RECENT_READS` reads (128 bytes), and the map's spare slots, a quarter to a half
/// of all, paid for that array again: every plate cost about 214 bytes whatever it
/// held. Now one read costs the entry and a 48-byte block (32 and the allocator's
/// header), four reads the entry and 144 bytes.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct PlateState {
    class: VehicleClass,
    /// At most `RECENT_READS` most recent reads, oldest first.
    reads: Box<[Read]>,
}

// The figure (e) of BENCHMARKS.md rests on this size: a plate's map entry is its
// 16-byte key and this.
const _: () = assert!(std::mem::size_of::<PlateState>() <= 24);

#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
pub struct Matcher {
    plates: FastMap<Plate, PlateState>,
}

impl Matcher {
    /// Keeps the plates `keep` accepts (see `rescale`).
    pub fn retain_plates(&mut self, keep: &dyn Fn(&Plate) -> bool) {
        self.plates.retain(|plate, _| keep(plate));
    }

    /// Takes in another instance's plates: a share disjoint from this one's.
    pub fn absorb(&mut self, other: Matcher) {
        self.plates.extend(other.plates);
    }

    /// Adds a read; returns the traversals it completes (0, 1 or 2 when it fills a
    /// gap) in `out`, or `false` when it repeats a passage already known. A plate
    /// whose newest read is older than `forget_before_ms` is forgotten first (in the
    /// same probe of the map: the map is large, and each probe a likely cache miss).
    pub fn read(&mut self, city: &CityModel, plate: Plate, class: VehicleClass, this: Read, forget_before_ms: i64, out: &mut Vec<Traversal>) -> bool {
        let state = self.plates.entry(plate).or_insert(PlateState { class, reads: Box::default() });
        if !state.newer_than(forget_before_ms) {
            state.reads = Box::default();
        }
        state.class = class;
        let reads = &state.reads[..];
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
        self.plates.get(plate).map(|s| (s.class, &s.reads[..]))
    }

    /// The plate's class and recent reads as `recent` gives them, unless `expire` at
    /// `horizon_ms` would forget the plate: a caller between two sweeps sees what it
    /// would have seen had the sweep just run.
    pub fn recent_since(&self, plate: &Plate, horizon_ms: i64) -> Option<(VehicleClass, &[Read])> {
        self.plates.get(plate).filter(|s| s.newer_than(horizon_ms)).map(|s| (s.class, &s.reads[..]))
    }

    /// Forgets plates whose newest read is older than `horizon_ms`.
    pub fn expire(&mut self, horizon_ms: i64) {
        self.plates.retain(|_, s| s.newer_than(horizon_ms));
    }

    pub fn plates_in_flight(&self) -> usize {
        self.plates.len()
    }

    /// How many plates hold 1, 2, … `RECENT_READS` reads: what they cost depends on
    /// it (see `PlateState`).
    pub fn plates_by_reads_held(&self) -> [usize; RECENT_READS] {
        let mut counts = [0; RECENT_READS];
        for state in self.plates.values() {
            if let Some(count) = state.reads.len().checked_sub(1).and_then(|i| counts.get_mut(i)) {
                *count += 1;
            }
        }
        counts
    }
}

impl PlateState {
    /// Its newest read is at or after `horizon_ms`.
    fn newer_than(&self, horizon_ms: i64) -> bool {
        self.reads.last().is_some_and(|newest| newest.ts_ms >= horizon_ms)
    }
}

fn insert(state: &mut PlateState, at: usize, read: Read) {
    let old = &mut state.reads;
    // Full: the oldest read makes room, or the new one is older than all it would keep.
    let from = usize::from(old.len() >= RECENT_READS);
    if at < from {
        return;
    }
    if from == 1 {
        // In place: the block keeps its size.
        old[..at].rotate_left(1);
        old[at - 1] = read;
        return;
    }
    let mut reads = Vec::with_capacity(old.len() + 1);
    reads.extend_from_slice(&old[..at]);
    reads.push(read);
    reads.extend_from_slice(&old[at..]);
    state.reads = reads.into_boxed_slice();
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(reader: u32, ts_ms: i64, tag: u32) -> Read {
        Read { reader: ReaderIdx(reader), clock_delta_ms: 0, ts_ms, offset: ts_ms as u64, partition: 0, uncertainty_ms: 0, tag }
    }

    proptest! {
        /// Whatever order the reads of one plate arrive in, the matcher keeps the
        /// newest `RECENT_READS` passages it accepted, oldest first, and refuses a
        /// repeat of a passage it still holds: the plain sorted list below, which the
        /// compact layout must not change.
        #[test]
        fn keeps_the_newest_passages_in_time_order(arrivals in prop::collection::vec((0u32..6, 0i64..120_000, 0u32..2), 1..40)) {
            let city = crate::repo_city();
            let plate = Plate::parse("闽D12345").unwrap();
            let mut matcher = Matcher::default();
            let mut model: Vec<Read> = Vec::new();
            let mut out = Vec::new();
            for (reader, ts_ms, tag) in arrivals {
                let this = read(reader, ts_ms, tag);
                let repeat = model.iter().any(|r| r.reader == this.reader && r.tag == this.tag && (r.ts_ms - this.ts_ms).abs() < SAME_PASSAGE_MS);
                prop_assert_eq!(matcher.read(&city, plate, VehicleClass::Car, this, i64::MIN, &mut out), !repeat);
                if !repeat {
                    let at = model.partition_point(|r| r.ts_ms <= this.ts_ms);
                    model.insert(at, this);
                    if model.len() > RECENT_READS {
                        model.remove(0);
                    }
                }
                prop_assert_eq!(matcher.recent(&plate).map(|(_, reads)| reads.to_vec()), Some(model.clone()));
            }
        }
    }

    #[test]
    fn a_plate_is_forgotten_once_its_newest_read_is_past_the_horizon() {
        let city = crate::repo_city();
        let plate = Plate::parse("闽D12345").unwrap();
        let mut matcher = Matcher::default();
        matcher.read(&city, plate, VehicleClass::Car, read(0, 1_000, 0), i64::MIN, &mut Vec::new());
        matcher.read(&city, plate, VehicleClass::Car, read(1, 50_000, 0), i64::MIN, &mut Vec::new());
        assert!(matcher.recent_since(&plate, 50_000).is_some());
        assert!(matcher.recent_since(&plate, 50_001).is_none());
        matcher.expire(50_000);
        assert_eq!(matcher.plates_in_flight(), 1);
        matcher.expire(50_001);
        assert_eq!(matcher.plates_in_flight(), 0);
    }
}
