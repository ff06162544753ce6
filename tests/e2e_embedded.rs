//! End to end through the embedded path: a seeded 15-minute clean scenario runs as
//! fast as possible through simulator → embedded log → pipeline → live state, then
//! the closed windows are read back through DataFusion SQL and over HTTP and scored
//! against the simulator's ground truth.

use egret::drive::{self, DriveOptions};
use egret_api::AppState;
use egret_ingest::embedded::EmbeddedLog;
use egret_ingest::memory::MemorySink;
use egret_model::Topic;
use egret_pipeline::runner::{self, Ended, Outputs};
use egret_pipeline::{ClockMode, LiveState, Pipeline, PipelineConfig};
use egret_query::QueryEngine;
use egret_simulator::{GroundTruth, SimConfig, Simulator};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const START: i64 = 1_795_995_900_000; // Monday 2026-11-30 07:45 CST

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_scenario_matches_ground_truth() {
    let city = egret::load_city(None).expect("city data");
    let log = EmbeddedLog::new(4, 20_000);
    let topics: Vec<&str> = Topic::ALL.iter().map(|t| t.default_name()).collect();
    let mut source = log.subscribe(&topics, Duration::from_millis(50));
    let live = Arc::new(LiveState::new(city.clone()));
    let mut pipeline = Pipeline::new(city.clone(), PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() });
    let dead_letters = MemorySink::new(100);
    let derived = MemorySink::new(0);

    let producer = {
        let (log, city) = (log.clone(), city.clone());
        tokio::spawn(async move {
            let mut sim = Simulator::new(city, SimConfig::clean(42, START, 15 * 60_000));
            let mut truth = GroundTruth::default();
            let sent = drive::drive(&mut sim, &log, DriveOptions::fast(), |r| truth.extend(r)).await.expect("send");
            log.close();
            (sent, truth)
        })
    };
    let ended = runner::run(&mut source, &Outputs { dead_letters: &dead_letters, derived: &derived }, &mut pipeline, &live, std::future::pending()).await.expect("pipeline runs");
    assert_eq!(ended, Ended::InputEnd);
    let (sent, truth) = producer.await.expect("producer");
    let consumed: u64 = pipeline.stats().consumed.values().sum();
    assert_eq!(consumed, sent, "every event sent was consumed");
    assert_eq!(dead_letters.total(), 0, "a clean scenario has no dead letters: {:?}", dead_letters.records().first());
    assert!(derived.total() > 0, "windows are published on the derived topic");

    // Read the closed windows back through the query layer.
    let batches = QueryEngine::new(live.clone(), None)
        .sql("SELECT segment_id, window_start_ms, mean_speed_kmh, sample_count FROM segment_windows WHERE sample_count >= 3")
        .await
        .expect("sql");
    let served = windows_of(&batches);
    let expected = truth.segment_speeds(60_000);
    let mut ape_sum = 0.0;
    let mut missing = 0;
    for ((segment, start), mean) in &served {
        match expected.get(&(segment.clone(), *start)) {
            Some(t) => ape_sum += (mean - t.mean_kmh).abs() / t.mean_kmh,
            None => missing += 1,
        }
    }
    let mape = 100.0 * ape_sum / served.len() as f64;
    let trafficked: std::collections::BTreeSet<&String> = expected.keys().map(|(s, _)| s).collect();
    println!(
        "clean 15-min scenario: {sent} events, {} windows with >= 3 samples on {} of {} trafficked segments, mean-speed MAPE {mape:.4}% (target <= 1%)",
        served.len(),
        served.keys().map(|(s, _)| s).collect::<std::collections::BTreeSet<_>>().len(),
        trafficked.len()
    );
    assert!(served.len() > 500, "too few windows to judge: {}", served.len());
    assert_eq!(missing, 0, "every served window has a true counterpart");
    assert!(mape <= 1.0, "MAPE {mape}% above 1%");

    // Parking: every lot's served occupancy equals the true one at the end.
    let snapshot = live.snapshot();
    let mut true_occupancy: BTreeMap<&str, (i64, u32)> = BTreeMap::new();
    for r in &truth.records {
        if let egret_simulator::TruthRecord::LotOccupancy { lot_id, ts_ms, occupied } = r {
            let e = true_occupancy.entry(lot_id.as_str()).or_insert((*ts_ms, *occupied));
            if *ts_ms >= e.0 {
                *e = (*ts_ms, *occupied);
            }
        }
    }
    let mut lot_errors = 0;
    for (lot, served) in city.lots.iter().zip(&snapshot.lots) {
        let served = served.as_ref().and_then(|s| s.occupied);
        let truth = true_occupancy.get(lot.lot_id.as_str()).map(|t| t.1);
        if served != truth {
            lot_errors += 1;
            println!("lot {}: served {served:?}, true {truth:?}", lot.lot_id);
        }
    }
    println!("parking: {} lots, {lot_errors} with an occupancy error at the end (target 0)", city.lots.len());
    assert_eq!(lot_errors, 0);

    // The same state over HTTP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(egret_api::serve(listener, AppState::new(live.clone(), None), std::future::pending()));
    let body: serde_json::Value = reqwest::get(format!("http://{addr}/api/v1/segments")).await.expect("GET").json().await.expect("json");
    let segments = body["segments"].as_array().expect("segments array");
    assert!(segments.len() as f64 >= 0.8 * trafficked.len() as f64, "{} of {} segments served", segments.len(), trafficked.len());
    for key in ["segment_id", "window_start_ms", "window_end_ms", "mean_speed_kmh", "median_speed_kmh", "travel_time_s", "sample_count", "free_flow_kmh", "jam_factor", "confidence", "is_final"] {
        assert!(segments[0].get(key).is_some(), "field {key} missing");
    }
    assert!(segments.iter().all(|s| s["is_final"] == true), "the input ended, so every window is final");
    let parking: serde_json::Value = reqwest::get(format!("http://{addr}/api/v1/parking")).await.expect("GET").json().await.expect("json");
    let lots = parking["lots"].as_array().expect("lots");
    assert_eq!(lots.len(), city.lots.len());
    for key in ["lot_id", "name", "lat", "lon", "capacity", "occupied", "available", "state", "trend", "as_of_ms"] {
        assert!(lots[0].get(key).is_some(), "parking field {key} missing");
    }
    assert!(lots.iter().all(|l| l["state"] != "unknown"), "every lot has a count");
    server.abort();
}

fn windows_of(batches: &[RecordBatch]) -> BTreeMap<(String, i64), f64> {
    let mut out = BTreeMap::new();
    for b in batches {
        let ids = b.column(0).as_string::<i32>();
        let starts = b.column(1).as_primitive::<Int64Type>();
        let means = b.column(2).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.insert((ids.value(i).to_owned(), starts.value(i)), means.value(i));
        }
    }
    out
}
