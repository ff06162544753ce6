//! Arrow schemas and builders for the live tables.

use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{Field, Schema};
use egret_model::CityModel;
use egret_pipeline::live::{Snapshot, confidence, jam_factor};
use egret_pipeline::SegmentWindow;
use std::sync::Arc;

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let schema = Schema::new(columns.iter().map(|(name, a)| Field::new(*name, a.data_type().clone(), true)).collect::<Vec<_>>());
    // Columns are built together from one slice, so lengths and types always agree.
    RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, a)| a).collect())
        .unwrap_or_else(|e| unreachable!("live table columns disagree: {e}"))
}

/// `segments`: every segment of the city with its newest window (nulls where none yet).
pub fn segments_batch(city: &CityModel, snapshot: &Snapshot) -> RecordBatch {
    let segs = &city.segments;
    let latest = |i: usize| snapshot.latest.get(i).and_then(|w| w.as_ref());
    let f64s = |f: &dyn Fn(&SegmentWindow, usize) -> f64| -> ArrayRef {
        Arc::new((0..segs.len()).map(|i| latest(i).map(|w| f(w, i))).collect::<Float64Array>())
    };
    let i64s = |f: &dyn Fn(&SegmentWindow) -> i64| -> ArrayRef {
        Arc::new((0..segs.len()).map(|i| latest(i).map(f)).collect::<Int64Array>())
    };
    batch(vec![
        ("segment_id", Arc::new(segs.iter().map(|s| Some(s.segment_id.as_str())).collect::<StringArray>())),
        ("name", Arc::new(segs.iter().map(|s| Some(s.name.as_str())).collect::<StringArray>())),
        ("road_class", Arc::new(segs.iter().map(|s| Some(s.road_class.as_str())).collect::<StringArray>())),
        ("city", Arc::new(segs.iter().map(|s| Some(s.city.as_str())).collect::<StringArray>())),
        ("length_m", Arc::new(segs.iter().map(|s| Some(i64::from(s.length_m))).collect::<Int64Array>())),
        ("speed_limit_kmh", Arc::new(segs.iter().map(|s| Some(i64::from(s.speed_limit_kmh))).collect::<Int64Array>())),
        ("free_flow_kmh", Arc::new(segs.iter().map(|s| Some(s.free_flow_kmh)).collect::<Float64Array>())),
        ("window_start_ms", i64s(&|w| w.window_start_ms)),
        ("window_end_ms", i64s(&|w| w.window_end_ms)),
        ("mean_speed_kmh", f64s(&|w, _| w.mean_speed_kmh)),
        ("median_speed_kmh", f64s(&|w, _| w.median_speed_kmh)),
        ("travel_time_s", f64s(&|w, _| w.travel_time_s)),
        ("sample_count", i64s(&|w| i64::from(w.sample_count))),
        ("jam_factor", f64s(&|w, i| jam_factor(w.mean_speed_kmh, segs[i].free_flow_kmh))),
        ("confidence", f64s(&|w, _| confidence(w.sample_count, w.is_final, snapshot.as_of_ms - w.window_end_ms))),
        ("is_final", Arc::new((0..segs.len()).map(|i| latest(i).map(|w| w.is_final)).collect::<BooleanArray>())),
    ])
}

/// `segment_windows`: final windows held in history.
pub fn segment_windows_batch(city: &CityModel, windows: &[SegmentWindow]) -> RecordBatch {
    let f64s = |f: fn(&SegmentWindow) -> f64| -> ArrayRef { Arc::new(windows.iter().map(|w| Some(f(w))).collect::<Float64Array>()) };
    let i64s = |f: fn(&SegmentWindow) -> i64| -> ArrayRef { Arc::new(windows.iter().map(|w| Some(f(w))).collect::<Int64Array>()) };
    batch(vec![
        ("segment_id", Arc::new(windows.iter().map(|w| Some(city.segment(w.segment).segment_id.as_str())).collect::<StringArray>())),
        ("window_start_ms", i64s(|w| w.window_start_ms)),
        ("window_end_ms", i64s(|w| w.window_end_ms)),
        ("mean_speed_kmh", f64s(|w| w.mean_speed_kmh)),
        ("median_speed_kmh", f64s(|w| w.median_speed_kmh)),
        ("travel_time_s", f64s(|w| w.travel_time_s)),
        ("sample_count", i64s(|w| i64::from(w.sample_count))),
        ("revision", i64s(|w| i64::from(w.revision))),
    ])
}
