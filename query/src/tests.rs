//! SQL over the live tables sees exactly what the pipeline published; every live
//! table answers a query with the columns `tables()` documents.

mod guard;
mod history;

use super::*;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use egret_model::{CityModel, SegmentIdx};
use egret_pipeline::enforce::violation::{Evidence, PossibleHit, Sighting, Violation, ViolationKind};
use egret_pipeline::health::ReaderHealth;
use egret_pipeline::incident::Incident;
use egret_pipeline::transit::{BusStatus, StopEta, TransitEvent};
use egret_pipeline::{BatchOutput, LotState, SegmentWindow};

pub(crate) fn city() -> Arc<CityModel> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    Arc::new(CityModel::load(&dir).expect("city data"))
}

pub(crate) fn live() -> Arc<LiveState> {
    Arc::new(LiveState::new(city()))
}

pub(crate) fn window(segment: u32, start: i64, mean: f64, is_final: bool) -> SegmentWindow {
    SegmentWindow {
        segment: SegmentIdx(segment),
        window_start_ms: start,
        window_end_ms: start + 60_000,
        mean_speed_kmh: mean,
        median_speed_kmh: mean,
        travel_time_s: 60.0,
        sample_count: 4,
        median_5min_kmh: Some(mean),
        is_final,
        revision: 0,
    }
}

pub(crate) fn sighting(device: &str, ts_ms: i64) -> Sighting {
    Sighting { device_id: device.into(), device_ts_ms: ts_ms, ts_ms, source: "egret.camera-events/0@7".into(), image_ref: None, value: Some(96.0) }
}

pub(crate) fn violation(id: &str, ts_ms: i64) -> Violation {
    Violation {
        violation_id: id.into(),
        kind: ViolationKind::PointSpeed,
        plate: "闽D12345".into(),
        ts_ms,
        location: "XM-C0001".into(),
        measured: 96.0,
        limit: 80.0,
        rule_id: "R-POINT-SPEED".into(),
        rule_version: 3,
        evidence: Evidence { summary: "96 km/h where 80 is the limit".into(), sightings: vec![sighting("XM-C0001", ts_ms)], ..Default::default() },
    }
}

fn incident(id: &str, cleared_ms: Option<i64>) -> Incident {
    Incident {
        incident_id: id.into(),
        segment_id: "XM-S0001".into(),
        kind: "stopped_traffic".into(),
        onset_ms: 1_000,
        detected_ms: 2_000,
        cleared_ms,
        severity: 3,
        overdue_vehicles: 4,
        expected_travel_s: 80.0,
    }
}

fn eta(stop: &str, ms: i64) -> StopEta {
    StopEta { stop_id: stop.into(), predicted_ms: ms, early_ms: 30_000, late_ms: 60_000 }
}

/// A live state with something in every table: two segments with windows, one lot
/// counted, two tickets, a possible hit, an open and a cleared incident, a bus with
/// two stops ahead, a headway and a ghost trip, and one reader's health.
pub(crate) fn populated() -> Arc<LiveState> {
    let live = live();
    let city = live.city().clone();
    let route = city.routes[0].route_id.clone();
    let mut out = BatchOutput {
        windows: vec![window(0, 0, 40.0, true), window(0, 60_000, 50.0, false), window(1, 0, 30.0, true)],
        lots: vec![LotState { lot: 0, capacity: city.lots[0].capacity, occupied: Some(60), state: "open", trend: "filling", minutes_to_full: Some(12.5), over_capacity: false, as_of_ms: 60_000 }],
        incidents: vec![incident("inc-open", None), incident("inc-cleared", Some(9_000))],
        reader_health: Some(vec![ReaderHealth { reader_id: city.readers[0].reader_id.clone(), status: "clock_skewed".into(), clock_offset_ms: Some(1_500), last_read_ms: Some(59_000) }]),
        watermark_ms: 70_000,
        ..Default::default()
    };
    out.tickets.violations = vec![violation("v-1", 10_000), violation("v-2", 20_000)];
    out.tickets.possible_hits = vec![PossibleHit {
        list: "stolen".into(),
        listed_plate: "闽D12345".into(),
        seen_plate: "闽D12845".into(),
        ts_ms: 30_000,
        reason: "one character away".into(),
        sighting: sighting("XM-R0001", 30_000),
    }];
    out.transit.statuses = vec![BusStatus {
        bus_id: "bus-1".into(),
        route_id: route.clone(),
        direction_id: 0,
        trip_id: "trip-1".into(),
        ts_ms: 60_000,
        lat: 24.48,
        lon: 118.09,
        distance_m: 1_200.0,
        next_stops: vec![eta("stop-a", 120_000), eta("stop-b", 240_000)],
    }];
    out.transit.events = vec![
        TransitEvent::Headway {
            route_id: route.clone(),
            direction_id: 0,
            stop_id: "stop-a".into(),
            bus_id: "bus-1".into(),
            previous_bus_id: "bus-0".into(),
            arrival_ms: 50_000,
            headway_s: 90.0,
            scheduled_headway_s: 600.0,
            status: "bunched".into(),
        },
        TransitEvent::GhostTrip { route_id: route, direction_id: 1, trip_id: "trip-9".into(), scheduled_ms: 40_000 },
    ];
    live.apply(&out);
    live
}

#[tokio::test]
async fn live_and_history_tables_answer_sql() {
    let live = live();
    live.apply(&BatchOutput {
        windows: vec![window(0, 0, 40.0, true), window(0, 60_000, 50.0, false), window(1, 0, 30.0, true)],
        watermark_ms: 70_000,
        ..Default::default()
    });
    let engine = QueryEngine::new(live.clone(), None);
    let n_segments = live.city().segments.len();
    let rows = engine.sql("SELECT count(*) AS n, count(mean_speed_kmh) AS with_data FROM segments").await.expect("sql");
    let batch = &rows[0];
    assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), n_segments as i64);
    assert_eq!(batch.column(1).as_primitive::<Int64Type>().value(0), 2);
    let history = engine.sql("SELECT sum(mean_speed_kmh) FROM segment_windows").await.expect("sql");
    assert_eq!(history[0].column(0).as_primitive::<Float64Type>().value(0), 70.0, "only final windows are history");
    let newest = engine.sql("SELECT mean_speed_kmh, is_final FROM segments WHERE mean_speed_kmh IS NOT NULL ORDER BY mean_speed_kmh").await.expect("sql");
    assert_eq!(newest[0].column(0).as_primitive::<Float64Type>().values().to_vec(), vec![30.0, 50.0], "the newer provisional window replaced the final one");
}

#[tokio::test]
async fn every_live_table_answers_with_its_documented_columns() {
    let live = populated();
    let city = live.city().clone();
    let engine = QueryEngine::new(live, None);
    let expected = [
        ("segments", city.segments.len()),
        ("segment_windows", 2),
        ("parking", city.lots.len()),
        ("incidents", 2),
        ("violations", 2),
        ("possible_hits", 1),
        ("buses", 1),
        ("arrivals", 2),
        ("headways", 2),
        ("readers", city.readers.len()),
    ];
    let documented = engine.tables();
    assert_eq!(documented.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), LIVE_TABLES.to_vec(), "no history without a directory");
    for ((name, rows), (doc_name, doc_schema)) in expected.iter().zip(&documented) {
        assert_eq!(*name, doc_name.as_str());
        let result = engine.sql_limited(&format!("SELECT * FROM {name}"), MAX_ROWS).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(result.row_count, *rows, "rows of {name}");
        assert_eq!(result.schema.fields(), doc_schema.fields(), "columns of {name}");
    }
}

#[tokio::test]
async fn live_tables_carry_the_values_published() {
    let engine = QueryEngine::new(populated(), None);
    let one = |sql: &'static str| {
        let engine = engine.clone();
        async move { engine.sql_json(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))["rows"][0].clone() }
    };
    let v = one("SELECT * FROM violations WHERE violation_id = 'v-2'").await;
    assert_eq!((v["kind"].as_str(), v["limit_value"].as_f64(), v["rule_version"].as_i64()), (Some("point_speed"), Some(80.0), Some(3)));
    let evidence: serde_json::Value = serde_json::from_str(v["evidence"].as_str().expect("evidence text")).expect("evidence is JSON");
    assert_eq!(evidence["sightings"][0]["device_id"], "XM-C0001");
    let i = one("SELECT state, cleared_ms FROM incidents WHERE incident_id = 'inc-cleared'").await;
    assert_eq!((i["state"].as_str(), i["cleared_ms"].as_i64()), (Some("cleared"), Some(9_000)));
    let p = one("SELECT occupied, capacity - occupied = available AS consistent, state FROM parking WHERE occupied IS NOT NULL").await;
    assert_eq!((p["occupied"].as_i64(), p["consistent"].as_bool(), p["state"].as_str()), (Some(60), Some(true), Some("open")));
    let a = one("SELECT stop_id, stop_seq, predicted_ms FROM arrivals WHERE stop_id = 'stop-b'").await;
    assert_eq!((a["stop_seq"].as_i64(), a["predicted_ms"].as_i64()), (Some(2), Some(240_000)));
    let h = one("SELECT status, headway_s, trip_id FROM headways WHERE type = 'headway'").await;
    assert_eq!((h["status"].as_str(), h["headway_s"].as_f64(), h["trip_id"].is_null()), (Some("bunched"), Some(90.0), true));
    let g = one("SELECT count(*) AS n FROM readers WHERE status = 'clock_skewed' AND clock_offset_ms = 1500").await;
    assert_eq!(g["n"].as_i64(), Some(1));
    let hit = one("SELECT list, seen_plate FROM possible_hits").await;
    assert_eq!(hit["list"].as_str(), Some("stolen"));
}

#[tokio::test]
async fn violations_answer_any_projection_from_one_read() {
    let engine = QueryEngine::new(populated(), None);
    let json = engine.sql_json("SELECT count(*) AS n FROM violations").await.expect("sql");
    assert_eq!(json["rows"][0]["n"], 2, "no column read, every row counted");
    let json = engine.sql_json("SELECT evidence, ts_ms FROM violations ORDER BY ts_ms DESC").await.expect("sql");
    assert_eq!(json["columns"][0]["name"], "evidence", "columns in the query's order");
    assert_eq!((json["rows"][0]["ts_ms"].as_i64(), json["rows"][1]["ts_ms"].as_i64()), (Some(20_000), Some(10_000)));
    assert!(json["rows"][0]["evidence"].as_str().is_some_and(|e| e.contains("XM-C0001")));
    let sql = "SELECT a.violation_id, b.kind FROM violations a JOIN violations b ON a.violation_id = b.violation_id ORDER BY a.ts_ms";
    let json = engine.sql_json(sql).await.expect("sql");
    assert_eq!(json["row_count"], 2, "both scans of a self-join read the same tickets");
    assert_eq!((json["rows"][1]["violation_id"].as_str(), json["rows"][1]["kind"].as_str()), (Some("v-2"), Some("point_speed")));
}

#[tokio::test]
async fn slowest_segments_come_first() {
    let engine = QueryEngine::new(populated(), None);
    let json = engine.sql_json("SELECT segment_id, mean_speed_kmh FROM segments ORDER BY mean_speed_kmh LIMIT 10").await.expect("sql");
    assert_eq!(json["row_count"], 10);
    assert_eq!(json["truncated"], false);
    assert_eq!(json["columns"], serde_json::json!([{"name": "segment_id", "type": "Utf8"}, {"name": "mean_speed_kmh", "type": "Float64"}]));
    let speeds: Vec<_> = json["rows"].as_array().expect("rows").iter().map(|r| r["mean_speed_kmh"].as_f64()).collect();
    assert_eq!(speeds[..3], [Some(30.0), Some(50.0), None], "ascending, segments without data last");
}

#[tokio::test]
async fn the_row_cap_truncates() {
    let engine = QueryEngine::new(live(), None);
    // 702 segments × 20 is more than the cap; both columns are named segment_id.
    let sql = "SELECT a.segment_id, b.segment_id FROM segments a CROSS JOIN (SELECT segment_id FROM segments LIMIT 20) b";
    let json = engine.sql_json(sql).await.expect("sql");
    assert_eq!((json["row_count"].as_u64(), json["truncated"].as_bool()), (Some(MAX_ROWS as u64), Some(true)));
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(MAX_ROWS));
    assert_eq!(json["columns"][1]["name"], "segment_id_2", "a repeated name does not overwrite the first");
    assert!(json["rows"][0]["segment_id_2"].is_string());
    let exact = engine.sql_limited("SELECT segment_id FROM segments LIMIT 5", 5).await.expect("sql");
    assert_eq!((exact.row_count, exact.truncated), (5, false), "exactly the cap is not truncated");
}

#[tokio::test]
async fn other_types_come_out_as_json() {
    let engine = QueryEngine::new(live(), None);
    let json = engine
        .sql_json("SELECT true AS t, CAST(1 AS INT) AS i, 1.5 AS f, CAST(NULL AS VARCHAR) AS n, to_timestamp_millis(0) AS ts, 'nan'::double AS nan")
        .await
        .expect("sql");
    let row = &json["rows"][0];
    assert_eq!((row["t"].as_bool(), row["i"].as_i64(), row["f"].as_f64()), (Some(true), Some(1), Some(1.5)));
    assert!(row["n"].is_null() && row["nan"].is_null());
    assert_eq!(row["ts"].as_str(), Some("1970-01-01T00:00:00"));
}

#[tokio::test]
async fn bad_sql_is_the_callers_fault() {
    let engine = QueryEngine::new(live(), None);
    assert!(matches!(engine.sql("SELEC nonsense").await, Err(QueryError::Plan(_))));
    assert!(matches!(engine.sql("SELECT * FROM no_such_table").await, Err(QueryError::Plan(_))));
    assert!(matches!(engine.sql("SELECT 1; SELECT 2").await, Err(QueryError::Plan(_))));
}
