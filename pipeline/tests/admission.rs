//! The pipeline on real city data: a pair of reads becomes a traversal and a window;
//! duplicates, late and far-future events are dead-lettered with their reason codes
//! (the codes the decoder alone cannot reach), keeping the original bytes.

use egret_ingest::Record;
use egret_model::reason::Reason;
use egret_model::{CityModel, Topic};
use egret_pipeline::{ClockMode, Pipeline, PipelineConfig};
use std::sync::Arc;
use std::time::Instant;

const T0: i64 = 1_795_995_900_000;

fn city() -> Arc<CityModel> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    Arc::new(CityModel::load(&dir).expect("city data"))
}

fn read(offset: u64, event_id: &str, reader: &str, plate: &str, ts_ms: i64) -> Record {
    let json = format!(r#"{{"event_id":"{event_id}","reader_id":"{reader}","plate":"{plate}","vehicle_class":"car","ts_ms":{ts_ms}}}"#);
    Record { topic: Topic::PlateReads.default_name().into(), partition: 0, offset, key: None, payload: json.into_bytes().into(), headers: vec![], timestamp_ms: None }
}

#[test]
fn reads_make_windows_and_bad_timing_is_dead_lettered() {
    let city = city();
    let seg = &city.segments[0];
    let (a, b) = (seg.from_reader_id.clone(), seg.to_reader_id.clone());
    let travel_ms = (f64::from(seg.length_m) / (54.0 / 3.6) * 1000.0) as i64; // 54 km/h
    let mut p = Pipeline::new(city.clone(), PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() });
    let now = Instant::now();

    let out = p.process(&[read(0, "e1", &a, "闽D12345", T0), read(1, "e2", &b, "闽d12345", T0 + travel_ms)], now);
    assert!(out.dead_letters.is_empty());
    assert_eq!(out.windows.len(), 1);
    let w = &out.windows[0];
    assert_eq!((w.sample_count, w.is_final), (1, false));
    assert!((w.mean_speed_kmh - 54.0).abs() < 0.1, "{}", w.mean_speed_kmh);

    let dup = p.process(&[read(2, "e2", &b, "闽D12345", T0 + travel_ms)], now);
    assert_eq!(dup.dead_letters[0].reject.reason, Reason::Duplicate);

    let future = p.process(&[read(3, "e3", &a, "闽D99999", T0 + 60 * 60_000)], now);
    assert_eq!(future.dead_letters[0].reject.reason, Reason::TimestampInFuture);

    // Move event time on past window end + allowed lateness + out-of-orderness: the
    // first window becomes final...
    let later = p.process(&[read(4, "e4", &a, "闽D88888", T0 + travel_ms + 200_000)], now);
    assert!(later.windows.iter().any(|w| w.is_final && w.sample_count == 1), "first window closed: {:?}", later.windows);
    // ...and a read for it now is late.
    let late = p.process(&[read(5, "e5", &a, "闽D77777", T0 + 1_000)], now);
    assert_eq!(late.dead_letters[0].reject.reason, Reason::Late);

    let bad = Record { payload: b"{not json".to_vec().into(), ..read(6, "x", &a, "闽D12345", T0) };
    let out = p.process(std::slice::from_ref(&bad), now);
    assert_eq!(out.dead_letters[0].reject.reason, Reason::NotJson);
    assert_eq!(out.dead_letters[0].record, bad, "the original bytes and coordinates are kept");

    let stats = p.stats();
    assert_eq!(stats.consumed[&Topic::PlateReads], 7);
    assert_eq!(stats.rejected.values().sum::<u64>(), 4);
}

/// Live on Kafka every partition is drained most of the time, and then the most
/// advanced partition sets the watermark's pace: a lot controller whose clock runs
/// ten minutes fast must not drag it ahead and make every reader's reads late. An
/// event counts for no more than its arrival time (delivery only delays).
#[test]
fn a_device_clock_running_fast_does_not_make_the_others_late() {
    let city = city();
    let seg = &city.segments[0];
    let (a, b) = (seg.from_reader_id.clone(), seg.to_reader_id.clone());
    let travel_ms = (f64::from(seg.length_m) / (54.0 / 3.6) * 1000.0) as i64;
    let mut p = Pipeline::new(city.clone(), PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() });
    p.set_idle_reported(true);
    let now = Instant::now();
    let lot = format!(r#"{{"event_id":"lot-1","lot_id":"{}","occupied":5,"ts_ms":{}}}"#, city.lots[0].lot_id, T0 + 10 * 60_000);
    let lot = Record { topic: Topic::ParkingCounts.default_name().into(), timestamp_ms: Some(T0), payload: lot.into_bytes().into(), ..read(0, "x", &a, "x", T0) };
    assert!(p.process(&[lot], now).dead_letters.is_empty());
    p.mark_drained(&[(Topic::ParkingCounts.default_name().into(), 0)]);
    p.tick(now);
    let arrived = |r: Record, ts: i64| Record { timestamp_ms: Some(ts), ..r };
    let out = p.process(&[arrived(read(1, "e1", &a, "闽D12345", T0 + 1_000), T0 + 1_000), arrived(read(2, "e2", &b, "闽D12345", T0 + 1_000 + travel_ms), T0 + 1_000 + travel_ms)], now);
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters.iter().map(|d| d.reject.reason).collect::<Vec<_>>());
    assert_eq!(out.windows.len(), 1, "the traversal counts");
    assert!(p.watermark_ms() < T0 + travel_ms, "watermark {} is past the reads' arrival", p.watermark_ms() - T0);
}
