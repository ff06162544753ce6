//! What the tests against a real Apache Kafka broker share: the broker from
//! `EGRET_KAFKA` (required under CI), a topic namespace per test, publishing a
//! simulated scenario, and outputs in comparable form.
#![allow(dead_code)]

use egret::drive::{self, DriveOptions};
use egret::instance;
use egret_ingest::kafka::{KafkaConfig, KafkaSink};
use egret_model::CityModel;
use egret_pipeline::{LiveState, SegmentWindow};
use egret_simulator::{SimConfig, Simulator};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const START: i64 = 1_795_995_900_000; // Monday 2026-11-30 07:45 CST

pub fn brokers() -> Option<String> {
    match std::env::var("EGRET_KAFKA") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!("EGRET_KAFKA is not set: under CI a Kafka broker is required (.ci/run starts one)"),
        _ => {
            eprintln!("skipping: set EGRET_KAFKA=host:port (or run .ci/run, which starts a broker)");
            None
        }
    }
}

pub fn namespace(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("test-{test}-{}-{nanos}.", std::process::id())
}

pub fn config(brokers: &str, ns: &str) -> KafkaConfig {
    KafkaConfig { namespace: ns.to_owned(), group_id: format!("{ns}group"), poll_interval: Duration::from_millis(100), ..KafkaConfig::new(brokers) }
}

/// Final windows as comparable rows: (segment, start, samples, mean, median).
pub fn windows(live: &LiveState) -> Vec<(u32, i64, u32, u64, u64)> {
    let mut rows: Vec<_> = live
        .all_history()
        .iter()
        .map(|w: &SegmentWindow| (w.segment.0, w.window_start_ms, w.sample_count, w.mean_speed_kmh.to_bits(), w.median_speed_kmh.to_bits()))
        .collect();
    rows.sort();
    rows
}

/// Publishes the scenario to Kafka (returns how many events).
pub async fn publish(city: Arc<CityModel>, sim: SimConfig, config: &KafkaConfig) -> u64 {
    instance::ensure_all_topics(config).await.expect("create topics");
    let sink = KafkaSink::new(config).expect("producer");
    let sent = drive::drive(&mut Simulator::new(city, sim), &sink, DriveOptions::fast(), |_| {}).await.expect("publish");
    sink.flush(Duration::from_secs(60)).expect("flush");
    sent
}

pub fn assert_same_windows(a: &[(u32, i64, u32, u64, u64)], b: &[(u32, i64, u32, u64, u64)], what_a: &str, what_b: &str) {
    if let Some(i) = (0..a.len().min(b.len())).find(|i| a[*i] != b[*i]) {
        panic!("{what_a} and {what_b} differ first at window {i}: {:?} vs {:?}", a[i], b[i]);
    }
    assert_eq!(a.len(), b.len(), "{what_a} has {} closed windows, {what_b} {}", a.len(), b.len());
}

pub fn tickets(live: &LiveState) -> std::collections::BTreeSet<String> {
    live.violations(|_| true).into_iter().map(|v| v.violation_id).collect()
}
