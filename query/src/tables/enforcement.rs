//! The police tables: `violations` (tickets with their evidence) and `possible_hits`
//! (near-misses of a hotlist, for a person to review).

use super::{batch, floats, ints, strs};
use datafusion::arrow::array::RecordBatch;
use egret_pipeline::enforce::violation::{PossibleHit, Violation};

/// `violations`: one row per ticket, as `egret.violations` carries it. `limit` is
/// `limit_value` because LIMIT is an SQL keyword; the evidence is its JSON text,
/// so that `json`-style string functions and exports see exactly what was published.
/// The history archive writes the same columns to Parquet.
pub fn violations_batch(violations: &[Violation]) -> RecordBatch {
    batch(vec![
        ("violation_id", strs(violations, |v| Some(v.violation_id.as_str()))),
        ("kind", strs(violations, |v| Some(v.kind.as_str()))),
        ("plate", strs(violations, |v| Some(v.plate.as_str()))),
        ("ts_ms", ints(violations, |v| Some(v.ts_ms))),
        ("location", strs(violations, |v| Some(v.location.as_str()))),
        ("measured", floats(violations, |v| Some(v.measured))),
        ("limit_value", floats(violations, |v| Some(v.limit))),
        ("rule_id", strs(violations, |v| Some(v.rule_id.as_str()))),
        ("rule_version", ints(violations, |v| Some(i64::from(v.rule_version)))),
        // Serialising plain strings and numbers cannot fail; a null would only hide evidence.
        ("evidence", strs(violations, |v| serde_json::to_string(&v.evidence).ok())),
    ])
}

/// `possible_hits`: one row per sighting one character away from a listed plate.
pub fn possible_hits_batch(hits: &[PossibleHit]) -> RecordBatch {
    batch(vec![
        ("list", strs(hits, |h| Some(h.list.as_str()))),
        ("listed_plate", strs(hits, |h| Some(h.listed_plate.as_str()))),
        ("seen_plate", strs(hits, |h| Some(h.seen_plate.as_str()))),
        ("ts_ms", ints(hits, |h| Some(h.ts_ms))),
        ("reason", strs(hits, |h| Some(h.reason.as_str()))),
        ("device_id", strs(hits, |h| Some(h.sighting.device_id.as_str()))),
        ("device_ts_ms", ints(hits, |h| Some(h.sighting.device_ts_ms))),
        ("source", strs(hits, |h| Some(h.sighting.source.as_str()))),
        ("image_ref", strs(hits, |h| h.sighting.image_ref.as_deref())),
    ])
}
