//! Ground truth: what really happened, recorded as the simulator makes it happen,
//! so `egret eval` and the tests can score what the pipeline served.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One fact of the simulated world. Written as NDJSON by `egret simulate --out`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "truth", rename_all = "snake_case")]
pub enum TruthRecord {
    /// A vehicle really passed a gantry at this instant.
    Passage { plate: String, reader_id: String, ts_ms: i64 },
    /// A vehicle drove a whole segment: entered at one gantry, left at the next.
    Traversal { segment_id: String, plate: String, enter_ms: i64, exit_ms: i64, speed_kmh: f64 },
    /// A real offence, as the rules file defines it.
    Violation {
        kind: String,
        plate: String,
        ts_ms: i64,
        rule_id: String,
        rule_version: u32,
        location: String,
        measured: f64,
        limit: f64,
    },
    /// A lot's true occupancy from this instant on.
    LotOccupancy { lot_id: String, ts_ms: i64, occupied: u32 },
    /// A bus really arrived at a stop.
    BusArrival { bus_id: String, route_id: String, trip_id: String, stop_id: String, ts_ms: i64 },
    /// A crash blocked a segment from onset until cleared.
    Incident { segment_id: String, onset_ms: i64, cleared_ms: i64 },
    /// A scheduled trip that never ran.
    GhostTrip { route_id: String, trip_id: String, scheduled_ms: i64 },
}

/// Truth gathered for scoring, with the per-segment per-minute speeds derived.
#[derive(Debug, Default)]
pub struct GroundTruth {
    pub records: Vec<TruthRecord>,
}

/// True mean speed of the vehicles that left a segment within one minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinuteSpeed {
    pub mean_kmh: f64,
    pub samples: u32,
}

impl GroundTruth {
    pub fn extend(&mut self, records: Vec<TruthRecord>) {
        self.records.extend(records);
    }

    /// Space-mean speed per (segment, window start) for `window_ms` tumbling windows,
    /// each traversal counted in the window holding its exit instant.
    pub fn segment_speeds(&self, window_ms: i64) -> BTreeMap<(String, i64), MinuteSpeed> {
        let mut sums: BTreeMap<(String, i64), (f64, u32)> = BTreeMap::new();
        for r in &self.records {
            if let TruthRecord::Traversal { segment_id, exit_ms, speed_kmh, .. } = r {
                let e = sums.entry((segment_id.clone(), exit_ms.div_euclid(window_ms) * window_ms)).or_default();
                e.0 += speed_kmh;
                e.1 += 1;
            }
        }
        sums.into_iter().map(|(k, (sum, n))| (k, MinuteSpeed { mean_kmh: sum / f64::from(n), samples: n })).collect()
    }

    pub fn violations(&self) -> impl Iterator<Item = &TruthRecord> {
        self.records.iter().filter(|r| matches!(r, TruthRecord::Violation { .. }))
    }
}
