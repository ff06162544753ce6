//! The inputs `egret bench` runs on, made before any clock starts: simulated
//! traffic (every topic, in delivery order) as the records a source delivers, and
//! a flood of reads of distinct plates that each wait for an exit read that never
//! comes, to measure the state a plate in flight costs.

use bytes::Bytes;
use egret_ingest::Record;
use egret_model::CityModel;
use egret_model::city::ReaderKind;
use egret_simulator::{SimConfig, Simulator};
use std::sync::Arc;

/// Monday 2026-11-30 07:45 CST: the morning rush of the standard scenario.
pub const START_MS: i64 = 1_795_995_900_000;
/// Simulated time per chunk of traffic; chunks follow one another in time.
const CHUNK_MS: i64 = 10 * 60_000;

/// At least `events` simulated events (plate reads, bus GPS, cameras, parking),
/// in delivery order, as records of one partition with consecutive offsets.
/// `demand_per_min` scales the traffic (trip starts per minute).
pub fn simulated(city: &Arc<CityModel>, events: usize, demand_per_min: f64, seed: u64) -> Vec<Record> {
    simulated_with(city, events, demand_per_min, seed, egret_simulator::Noise::clean())
}

/// As `simulated`, with the devices' `noise` (duplicates, late, malformed…).
pub fn simulated_with(city: &Arc<CityModel>, events: usize, demand_per_min: f64, seed: u64, noise: egret_simulator::Noise) -> Vec<Record> {
    simulated_as(city, events, SimConfig { demand_per_min, noise, ..SimConfig::clean(seed, START_MS, CHUNK_MS) })
}

/// As `simulated_with`, with the scripted events of the standard scenario (a
/// crash, speeders, a trip that never runs…) in every ten minutes of traffic.
pub fn simulated_scripted(city: &Arc<CityModel>, events: usize, demand_per_min: f64, seed: u64, noise: egret_simulator::Noise) -> Vec<Record> {
    simulated_as(city, events, SimConfig { demand_per_min, noise, scripted: true, ..SimConfig::clean(seed, START_MS, CHUNK_MS) })
}

/// Chunks of `CHUNK_MS` simulated as `template` says, each with its own seed.
fn simulated_as(city: &Arc<CityModel>, events: usize, template: SimConfig) -> Vec<Record> {
    let mut records = Vec::with_capacity(events);
    let mut chunk = 0;
    while records.len() < events {
        let start_ms = START_MS + chunk * CHUNK_MS;
        let config = SimConfig { seed: template.seed + chunk as u64, start_ms, ..template.clone() };
        let mut emitted = Simulator::new(city.clone(), config).drain_all();
        emitted.sort_by_key(|e| (e.deliver_ms, e.seq));
        for e in emitted {
            let offset = records.len() as u64;
            records.push(Record {
                topic: e.topic.default_name().into(),
                partition: 0,
                offset,
                key: Some(Bytes::from(e.key.into_bytes())),
                payload: Bytes::from(e.payload),
                headers: Vec::new(),
                timestamp_ms: Some(e.deliver_ms),
            });
        }
        chunk += 1;
    }
    records.truncate(events);
    records
}

/// The n-th of a series of distinct, valid plates: a province, a city letter and
/// five serial characters without I or O (34^5 per letter: 450 million in all).
pub fn distinct_plate(n: u64) -> String {
    const SERIAL: &[u8; 34] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let letter = (b'A' + (n % 10) as u8) as char;
    let mut rest = n / 10;
    let mut serial = [b'0'; 5];
    for c in serial.iter_mut().rev() {
        *c = SERIAL[(rest % 34) as usize];
        rest /= 34;
    }
    format!("闽{letter}{}", String::from_utf8_lossy(&serial))
}

/// Reads `range` of a flood of `total` reads of distinct plates at the city's
/// gantries, spread evenly over `span_ms` from `start_ms`: each starts a trip that
/// no exit read ends. Made a slice at a time, so the input's own memory does not
/// count as the pipeline's.
pub fn plate_flood(city: &CityModel, range: std::ops::Range<u64>, total: u64, start_ms: i64, span_ms: i64) -> Vec<Record> {
    let gantries: Vec<&str> = city.readers.iter().filter(|r| r.kind == ReaderKind::Gantry).map(|r| r.reader_id.as_str()).collect();
    range
        .map(|i| {
            let plate = distinct_plate(i);
            let ts_ms = start_ms + (i as i64 * span_ms) / total.max(1) as i64;
            let reader = gantries[(i as usize * 7919) % gantries.len()];
            let payload = format!(r#"{{"event_id":"flood-{i}","reader_id":"{reader}","plate":"{plate}","vehicle_class":"car","lane":1,"ts_ms":{ts_ms}}}"#);
            Record {
                topic: egret_model::Topic::PlateReads.default_name().into(),
                partition: 0,
                offset: i,
                key: Some(Bytes::from(plate.into_bytes())),
                payload: Bytes::from(payload.into_bytes()),
                headers: Vec::new(),
                timestamp_ms: Some(ts_ms),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_model::Plate;
    use std::collections::HashSet;

    #[test]
    fn flood_plates_are_distinct_and_valid() {
        let plates: Vec<String> = (0..200_000).map(distinct_plate).collect();
        assert_eq!(plates.iter().collect::<HashSet<_>>().len(), plates.len());
        for p in plates.iter().step_by(997) {
            assert_eq!(Plate::parse(p).ok().map(|x| x.to_string()).as_deref(), Some(p.as_str()), "{p}");
        }
    }
}
