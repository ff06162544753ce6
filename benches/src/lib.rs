//! What the criterion benches share: the repository's city and five simulated
//! minutes of its plate reads, as the records a source would deliver.

use egret_ingest::Record;
use egret_model::{CityModel, Topic};
use egret_simulator::{SimConfig, Simulator};
use std::sync::Arc;

pub const START: i64 = 1_795_995_900_000; // Monday 2026-11-30 07:45 CST

pub fn city() -> Arc<CityModel> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    Arc::new(CityModel::load(&dir).expect("the repo's city data loads"))
}

/// Five simulated minutes of plate reads as the records a source would deliver.
pub fn plate_reads(city: &Arc<CityModel>) -> Vec<Record> {
    let mut sim = Simulator::new(city.clone(), SimConfig::clean(1, START, 5 * 60_000));
    sim.drain_all()
        .into_iter()
        .filter(|e| e.topic == Topic::PlateReads)
        .enumerate()
        .map(|(i, e)| Record {
            topic: e.topic.default_name().into(),
            partition: 0,
            offset: i as u64,
            key: None,
            timestamp_ms: Some(e.deliver_ms),
            payload: e.payload.into(),
            headers: Vec::new(),
        })
        .collect()
}
