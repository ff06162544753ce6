//! What the enforcement tests share: the real city, the event-time configuration
//! and how a hand-written contract-v1 event becomes an input record.

use egret_ingest::Record;
use egret_model::{CityModel, Topic};
use egret_pipeline::{ClockMode, PipelineConfig};
use std::sync::{Arc, OnceLock};

/// Monday 2026-11-30 07:45:00 local time.
pub const T0: i64 = 1_795_995_900_000;
pub const MIN: i64 = 60_000;

pub fn city() -> Arc<CityModel> {
    static CITY: OnceLock<Arc<CityModel>> = OnceLock::new();
    CITY.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
        Arc::new(CityModel::load(&dir).expect("city data"))
    })
    .clone()
}

/// Event time, and device clocks trusted from their first read.
pub fn config() -> PipelineConfig {
    PipelineConfig { clock: ClockMode::Event, uncalibrated_clock_ms: 0, ..PipelineConfig::default() }
}

/// The record at `offset` of `topic` carrying `json`, whose `EID` placeholder
/// becomes a unique event id; its timestamp (the collector's clock) is `ts_ms`.
pub fn record(topic: Topic, offset: u64, json: &str, ts_ms: i64) -> Record {
    let payload = json.replace("EID", &format!("ev{offset}")).into_bytes().into();
    Record { topic: topic.default_name().into(), partition: 0, offset, key: None, payload, headers: vec![], timestamp_ms: Some(ts_ms) }
}
