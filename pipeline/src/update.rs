//! What stage 1 (keyed by plate) hands to stage 2 (keyed by segment or lot): a
//! vehicle's measured drive over a segment, a parking gate passage, a lot count.
//! In one process they pass in memory; across instances they travel through the
//! internal repartition topic, keyed so each segment and lot has one owner. No
//! plate crosses this boundary: stage 2 never needs one.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", try_from = "crate::wire::FlatUpdate")]
#[allow(clippy::large_enum_variant)]
pub enum Update {
    /// `segment` is the index in the city model both stages load; the speed follows
    /// from its surveyed length (no float on the wire, so no rounding on the way).
    Traversal { segment: u32, enter_ms: i64, exit_ms: i64 },
    /// A vehicle left one segment onto `segment`, the only way on: incidents watch
    /// for entries that never come out.
    Entered { segment: u32, ts_ms: i64 },
    /// The vehicle that entered `segment` at `enter_ms` was seen somewhere else
    /// (parked, or read beyond it): it is not stuck there.
    Left { segment: u32, enter_ms: i64 },
    Gate { lot: u32, entering: bool, ts_ms: i64 },
    /// A bus report, for its route's owner.
    BusReport { route: u32, bus_id: String, trip_id: Option<String>, lat: f64, lon: f64, speed_kmh: Option<f64>, ts_ms: i64 },
    Count { lot: u32, occupied: u32, ts_ms: i64 },
}

/// Where an update came from: the input record's topic (`Topic as u8`), partition
/// and offset, and the update's place among that record's updates. Within one input
/// partition origins only grow, so stage 2 can drop an update whose origin it has
/// already applied: a stage 1 restored from a checkpoint replays its input and sends
/// those updates again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin(pub u8, pub u32, pub u64, pub u16);

/// Timestamps stage 1 can produce (the decoder's range, 2000–2100).
const PLAUSIBLE_MS: std::ops::Range<i64> = 946_684_800_000..4_102_444_800_000;

impl Update {
    /// What stage 1 could have written; anything else on the topic is refused.
    pub fn is_plausible(&self) -> bool {
        match *self {
            Update::Traversal { enter_ms, exit_ms, .. } => PLAUSIBLE_MS.contains(&enter_ms) && PLAUSIBLE_MS.contains(&exit_ms) && enter_ms < exit_ms,
            Update::Gate { ts_ms, .. }
            | Update::Count { ts_ms, .. }
            | Update::Entered { ts_ms, .. }
            | Update::Left { enter_ms: ts_ms, .. }
            | Update::BusReport { ts_ms, .. } => {
                PLAUSIBLE_MS.contains(&ts_ms)
            }
        }
    }

    /// The repartition key: the segment or lot id.
    pub fn key<'c>(&self, city: &'c egret_model::CityModel) -> &'c str {
        match self {
            Update::Traversal { segment, .. } | Update::Entered { segment, .. } | Update::Left { segment, .. } => &city.segments[*segment as usize].segment_id,
            Update::Gate { lot, .. } | Update::Count { lot, .. } => &city.lots[*lot as usize].lot_id,
            Update::BusReport { route, .. } => &city.routes[*route as usize].route_id,
        }
    }
}
