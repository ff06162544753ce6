//! Arrow schemas and builders for the live tables, and the registry of their names.
//!
//! Each builder turns one read of a part of the live state into one record batch.
//! Builders take plain slices so the same code gives the history archive its Parquet
//! rows and `QueryEngine::tables` its schemas (from empty input): live, history and
//! documentation can never disagree about a column.

mod enforcement;
mod provider;
mod transit;

pub use enforcement::{possible_hits_batch, violations_batch};
pub use transit::{arrivals_batch, buses_batch, headways_batch};

use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{Field, Schema};
use egret_model::CityModel;
use egret_model::city::{ReaderKind, Segment};
use egret_pipeline::enforce::violation::Violation;
use egret_pipeline::health::ReaderHealth;
use egret_pipeline::incident::Incident;
use egret_pipeline::live::{Snapshot, confidence, jam_factor};
use egret_pipeline::{LiveState, SegmentWindow};
use std::collections::HashMap;
use std::sync::Arc;

/// Every live table, in the order `QueryEngine::tables` lists them.
pub const LIVE_TABLES: [&str; 10] = [
    "segments",
    "segment_windows",
    "parking",
    "incidents",
    "violations",
    "possible_hits",
    "buses",
    "arrivals",
    "headways",
    "readers",
];

/// Builds the live table `name` from the live state, or from nothing (`empty`) when
/// only its schema is wanted. `None` for a name that is not a live table.
pub(crate) fn build(name: &str, live: &LiveState, empty: bool) -> Option<RecordBatch> {
    // Reading only when needed keeps a schema lookup from touching any lock.
    fn read<T>(empty: bool, f: impl FnOnce() -> Vec<T>) -> Vec<T> {
        if empty { Vec::new() } else { f() }
    }
    let city = live.city();
    let snapshot = || if empty { Snapshot::default() } else { live.snapshot() };
    Some(match name {
        "segments" => segments_batch(city, &snapshot()),
        "segment_windows" => segment_windows_batch(city, &read(empty, || live.all_history())),
        "parking" => parking_batch(city, &snapshot()),
        "incidents" => {
            let (open, cleared) = if empty { Default::default() } else { live.incidents() };
            incidents_batch(&open, &cleared)
        }
        "violations" => violations_batch(&read(empty, || live.violations(|_| true))),
        "possible_hits" => possible_hits_batch(&read(empty, || live.possible_hits())),
        "buses" => buses_batch(&read(empty, || live.buses())),
        "arrivals" => arrivals_batch(&read(empty, || live.buses())),
        "headways" => headways_batch(&read(empty, || city.routes.iter().flat_map(|r| live.route_events(&r.route_id)).collect::<Vec<_>>())),
        "readers" => readers_batch(city, &read(empty, || live.reader_health())),
        _ => return None,
    })
}

/// The live table `name` for one query: `violations` builds only the columns the
/// plan reads, from tickets shared with the live state rather than copied; the
/// other tables are small enough to build whole. `None` for a name that is not a
/// live table.
pub(crate) fn provider(name: &str, live: &LiveState) -> Option<provider::ProjectedTable> {
    if name == "violations" {
        let schema = build(name, live, true)?.schema();
        let tickets = live.shared_violations();
        return Some(provider::ProjectedTable::new(schema, move |projection| {
            let rows: Vec<&Violation> = tickets.iter().map(|v| &**v).collect();
            enforcement::violation_columns(&rows).build(projection)
        }));
    }
    build(name, live, false).map(provider::ProjectedTable::built)
}

/// One record batch from named columns; every column is nullable so that the same
/// schema serves rows with and without data.
pub(crate) fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let schema = Schema::new(columns.iter().map(|(name, a)| Field::new(*name, a.data_type().clone(), true)).collect::<Vec<_>>());
    // Columns are built together from one slice, so lengths and types always agree.
    RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, a)| a).collect())
        .unwrap_or_else(|e| unreachable!("live table columns disagree: {e}"))
}

/// A text column, one value per row.
pub(crate) fn strs<'a, T, S: AsRef<str>>(rows: &'a [T], f: impl Fn(&'a T) -> Option<S>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

/// An integer column, one value per row.
pub(crate) fn ints<T>(rows: &[T], f: impl Fn(&T) -> Option<i64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int64Array>())
}

/// A float column, one value per row.
pub(crate) fn floats<T>(rows: &[T], f: impl Fn(&T) -> Option<f64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Float64Array>())
}

/// A boolean column, one value per row.
pub(crate) fn bools<T>(rows: &[T], f: impl Fn(&T) -> Option<bool>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<BooleanArray>())
}

/// `segments`: every segment of the city with its newest window (nulls where none yet).
pub fn segments_batch(city: &CityModel, snapshot: &Snapshot) -> RecordBatch {
    let segs: Vec<(&Segment, Option<&SegmentWindow>)> =
        city.segments.iter().enumerate().map(|(i, s)| (s, snapshot.latest.get(i).and_then(|w| w.as_ref()))).collect();
    batch(vec![
        ("segment_id", strs(&segs, |(s, _)| Some(s.segment_id.as_str()))),
        ("name", strs(&segs, |(s, _)| Some(s.name.as_str()))),
        ("road_class", strs(&segs, |(s, _)| Some(s.road_class.as_str()))),
        ("city", strs(&segs, |(s, _)| Some(s.city.as_str()))),
        ("length_m", ints(&segs, |(s, _)| Some(i64::from(s.length_m)))),
        ("speed_limit_kmh", ints(&segs, |(s, _)| Some(i64::from(s.speed_limit_kmh)))),
        ("free_flow_kmh", floats(&segs, |(s, _)| Some(s.free_flow_kmh))),
        ("window_start_ms", ints(&segs, |(_, w)| w.map(|w| w.window_start_ms))),
        ("window_end_ms", ints(&segs, |(_, w)| w.map(|w| w.window_end_ms))),
        ("mean_speed_kmh", floats(&segs, |(_, w)| w.map(|w| w.mean_speed_kmh))),
        ("median_speed_kmh", floats(&segs, |(_, w)| w.map(|w| w.median_speed_kmh))),
        ("median_5min_kmh", floats(&segs, |(_, w)| w.and_then(|w| w.median_5min_kmh))),
        ("travel_time_s", floats(&segs, |(_, w)| w.map(|w| w.travel_time_s))),
        ("sample_count", ints(&segs, |(_, w)| w.map(|w| i64::from(w.sample_count)))),
        ("jam_factor", floats(&segs, |(s, w)| w.map(|w| jam_factor(w.mean_speed_kmh, s.free_flow_kmh)))),
        ("confidence", floats(&segs, |(_, w)| w.map(|w| confidence(w.sample_count, w.is_final, snapshot.as_of_ms - w.window_end_ms)))),
        ("is_final", bools(&segs, |(_, w)| w.map(|w| w.is_final))),
    ])
}

/// `segment_windows`: final windows, one row each. The history archive writes the
/// same columns to Parquet.
pub fn segment_windows_batch(city: &CityModel, windows: &[SegmentWindow]) -> RecordBatch {
    batch(vec![
        ("segment_id", strs(windows, |w| city.segments.get(w.segment.0 as usize).map(|s| s.segment_id.as_str()))),
        ("window_start_ms", ints(windows, |w| Some(w.window_start_ms))),
        ("window_end_ms", ints(windows, |w| Some(w.window_end_ms))),
        ("mean_speed_kmh", floats(windows, |w| Some(w.mean_speed_kmh))),
        ("median_speed_kmh", floats(windows, |w| Some(w.median_speed_kmh))),
        ("travel_time_s", floats(windows, |w| Some(w.travel_time_s))),
        ("sample_count", ints(windows, |w| Some(i64::from(w.sample_count)))),
        ("revision", ints(windows, |w| Some(i64::from(w.revision)))),
    ])
}

/// `parking`: every lot with its occupancy as last computed (nulls and `unknown`
/// before its first count), as `/api/v1/parking` serves it.
pub fn parking_batch(city: &CityModel, snapshot: &Snapshot) -> RecordBatch {
    let lots: Vec<_> = city.lots.iter().enumerate().map(|(i, lot)| (lot, snapshot.lots.get(i).and_then(|l| l.as_ref()))).collect();
    let occupied = |l: Option<&egret_pipeline::LotState>| l.and_then(|l| l.occupied);
    batch(vec![
        ("lot_id", strs(&lots, |(lot, _)| Some(lot.lot_id.as_str()))),
        ("name", strs(&lots, |(lot, _)| Some(lot.name.as_str()))),
        ("city", strs(&lots, |(lot, _)| Some(lot.city.as_str()))),
        ("lat", floats(&lots, |(lot, _)| Some(lot.lat))),
        ("lon", floats(&lots, |(lot, _)| Some(lot.lon))),
        ("capacity", ints(&lots, |(lot, _)| Some(i64::from(lot.capacity)))),
        ("occupied", ints(&lots, |(_, l)| occupied(*l).map(i64::from))),
        ("available", ints(&lots, |(lot, l)| occupied(*l).map(|o| i64::from(lot.capacity.saturating_sub(o))))),
        ("state", strs(&lots, |(_, l)| Some(l.map_or("unknown", |l| l.state)))),
        ("trend", strs(&lots, |(_, l)| l.map(|l| l.trend))),
        ("minutes_to_full", floats(&lots, |(_, l)| l.and_then(|l| l.minutes_to_full))),
        ("over_capacity", bools(&lots, |(_, l)| l.map(|l| l.over_capacity))),
        ("as_of_ms", ints(&lots, |(_, l)| l.map(|l| l.as_of_ms))),
    ])
}

/// `incidents`: open incidents and the most recently cleared, `state` telling which.
pub fn incidents_batch(open: &[Incident], cleared: &[Incident]) -> RecordBatch {
    let rows: Vec<(&Incident, &str)> = open.iter().map(|i| (i, "open")).chain(cleared.iter().map(|i| (i, "cleared"))).collect();
    batch(vec![
        ("incident_id", strs(&rows, |(i, _)| Some(i.incident_id.as_str()))),
        ("segment_id", strs(&rows, |(i, _)| Some(i.segment_id.as_str()))),
        ("kind", strs(&rows, |(i, _)| Some(i.kind.as_str()))),
        ("state", strs(&rows, |(_, state)| Some(*state))),
        ("severity", ints(&rows, |(i, _)| Some(i64::from(i.severity)))),
        ("onset_ms", ints(&rows, |(i, _)| Some(i.onset_ms))),
        ("detected_ms", ints(&rows, |(i, _)| Some(i.detected_ms))),
        ("cleared_ms", ints(&rows, |(i, _)| i.cleared_ms)),
        ("overdue_vehicles", ints(&rows, |(i, _)| Some(i64::from(i.overdue_vehicles)))),
        ("expected_travel_s", floats(&rows, |(i, _)| Some(i.expected_travel_s))),
    ])
}

/// `readers`: every reader of the city with its health as last reported (`unknown`
/// before the first report).
pub fn readers_batch(city: &CityModel, health: &[ReaderHealth]) -> RecordBatch {
    let by_id: HashMap<&str, &ReaderHealth> = health.iter().map(|h| (h.reader_id.as_str(), h)).collect();
    let rows: Vec<_> = city.readers.iter().map(|r| (r, by_id.get(r.reader_id.as_str()).copied())).collect();
    batch(vec![
        ("reader_id", strs(&rows, |(r, _)| Some(r.reader_id.as_str()))),
        ("name", strs(&rows, |(r, _)| Some(r.name.as_str()))),
        ("city", strs(&rows, |(r, _)| Some(r.city.as_str()))),
        ("kind", strs(&rows, |(r, _)| Some(match r.kind {
            ReaderKind::Gantry => "gantry",
            ReaderKind::ParkingGate => "parking_gate",
        }))),
        ("lot_id", strs(&rows, |(r, _)| r.lot_id.as_deref())),
        ("lat", floats(&rows, |(r, _)| Some(r.lat))),
        ("lon", floats(&rows, |(r, _)| Some(r.lon))),
        ("status", strs(&rows, |(_, h)| Some(h.map_or("unknown", |h| h.status.as_str())))),
        ("clock_offset_ms", ints(&rows, |(_, h)| h.and_then(|h| h.clock_offset_ms))),
        ("last_read_ms", ints(&rows, |(_, h)| h.and_then(|h| h.last_read_ms))),
    ])
}
