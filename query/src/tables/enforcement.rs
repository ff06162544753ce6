//! The police tables: `violations` (tickets with their evidence) and `possible_hits`
//! (near-misses of a hotlist, for a person to review).

use super::provider::LazyColumns;
use super::{batch, floats, ints, strs};
use datafusion::arrow::array::RecordBatch;
use egret_pipeline::enforce::violation::{PossibleHit, Violation};

/// `violations`: one row per ticket, as `egret.violations` carries it. `limit` is
/// `limit_value` because LIMIT is an SQL keyword; the evidence is its JSON text,
/// so that `json`-style string functions and exports see exactly what was published.
/// The history archive writes the same columns to Parquet.
pub fn violations_batch(violations: &[Violation]) -> RecordBatch {
    let rows: Vec<&Violation> = violations.iter().collect();
    violation_columns(&rows).build(None)
}

/// The columns of `violations`, built only when read: rendering the evidence is
/// most of the table's cost, and most queries never read it.
pub(crate) fn violation_columns<'a>(v: &'a [&'a Violation]) -> LazyColumns<'a> {
    LazyColumns::new(v.len())
        .column("violation_id", || strs(v, |v| Some(v.violation_id.as_str())))
        .column("kind", || strs(v, |v| Some(v.kind.as_str())))
        .column("plate", || strs(v, |v| Some(v.plate.as_str())))
        .column("ts_ms", || ints(v, |v| Some(v.ts_ms)))
        .column("location", || strs(v, |v| Some(v.location.as_str())))
        .column("measured", || floats(v, |v| Some(v.measured)))
        .column("limit_value", || floats(v, |v| Some(v.limit)))
        .column("rule_id", || strs(v, |v| Some(v.rule_id.as_str())))
        .column("rule_version", || ints(v, |v| Some(i64::from(v.rule_version))))
        // Serialising plain strings and numbers cannot fail; a null would only hide evidence.
        .column("evidence", || strs(v, |v| serde_json::to_string(&v.evidence).ok()))
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
