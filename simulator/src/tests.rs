//! Simulator tests: determinism, valid contract events, and a truth that covers
//! every kind of fact the evaluation needs.

use super::*;
use egret_model::decode::Decoder;
use std::collections::BTreeSet;

const START: i64 = 1_795_995_900_000; // Monday 2026-11-30 07:45 CST

fn city() -> Arc<CityModel> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    Arc::new(CityModel::load(&dir).expect("the repo's city data loads"))
}

fn run(config: SimConfig) -> (Vec<Emitted>, Vec<TruthRecord>) {
    let mut sim = Simulator::new(city(), config);
    let events = sim.drain_all();
    (events, sim.take_truth())
}

#[test]
fn same_seed_same_world_other_seed_other_world() {
    let (a, ta) = run(SimConfig::clean(7, START, 3 * 60_000));
    let (b, tb) = run(SimConfig::clean(7, START, 3 * 60_000));
    let (c, _) = run(SimConfig::clean(8, START, 3 * 60_000));
    assert!(a.len() > 1_000, "only {} events", a.len());
    assert_eq!(a, b);
    assert_eq!(ta, tb);
    assert_ne!(a, c);
    assert!(a.windows(2).all(|w| w[0].deliver_ms <= w[1].deliver_ms), "delivery order");
}

#[test]
fn clean_events_are_all_valid_and_truth_covers_every_fact() {
    let city = city();
    // The morning rush of the standard scenario: bus lanes and peak-hour bans apply,
    // and the scripted events add the speeders, the crash and the ghost trip.
    let rush = START;
    let (events, truth) = run(SimConfig { scripted: true, ..SimConfig::clean(3, rush, 15 * 60_000) });
    let decoder = Decoder::new(&city);
    let mut topics = BTreeSet::new();
    for e in &events {
        if let Err(r) = decoder.decode(e.topic, &e.payload) {
            panic!("clean event rejected ({r}): {}", String::from_utf8_lossy(&e.payload));
        }
        topics.insert(e.topic);
        assert!(e.deliver_ms >= rush && e.deliver_ms < rush + 15 * 60_000 + 1_000);
    }
    assert_eq!(topics.len(), 4, "every input topic is produced: {topics:?}");
    let kinds: BTreeSet<&str> = truth
        .iter()
        .map(|r| match r {
            TruthRecord::Passage { .. } => "passage",
            TruthRecord::Traversal { .. } => "traversal",
            TruthRecord::Violation { .. } => "violation",
            TruthRecord::LotOccupancy { .. } => "lot",
            TruthRecord::BusArrival { .. } => "bus",
            TruthRecord::Incident { .. } => "incident",
            TruthRecord::GhostTrip { .. } => "ghost trip",
        })
        .collect();
    assert_eq!(kinds.len(), 7, "{kinds:?}");
    let violation_kinds: BTreeSet<&str> = truth
        .iter()
        .filter_map(|r| if let TruthRecord::Violation { kind, .. } = r { Some(kind.as_str()) } else { None })
        .collect();
    for kind in ["section_speed", "point_speed", "red_light", "bus_lane", "restricted_vehicle", "hotlist", "cloned_plate"] {
        assert!(violation_kinds.contains(kind), "{kind} missing from {violation_kinds:?}");
    }
}

#[test]
fn noise_knobs_change_what_devices_send_but_not_the_truth() {
    let mut noisy = SimConfig::clean(5, START, 5 * 60_000);
    noisy.noise = Noise::noisy();
    let (clean_events, clean_truth) = run(SimConfig::clean(5, START, 5 * 60_000));
    let (noisy_events, noisy_truth) = run(noisy);
    assert_eq!(clean_truth, noisy_truth, "noise never touches the truth");
    let city = city();
    let decoder = Decoder::new(&city);
    let bad = noisy_events.iter().filter(|e| decoder.decode(e.topic, &e.payload).is_err()).count();
    let reads = |es: &[Emitted]| es.iter().filter(|e| e.topic == egret_model::Topic::PlateReads).count() as f64;
    let ratio = reads(&noisy_events) / reads(&clean_events);
    assert!((0.93..0.99).contains(&ratio), "5% missed and 1% duplicated: ratio {ratio}");
    assert!(bad > 0, "malformed messages are produced");
    let late = noisy_events.iter().filter(|e| {
        serde_json::from_slice::<serde_json::Value>(&e.payload).ok().and_then(|v| v["ts_ms"].as_i64()).is_some_and(|ts| e.deliver_ms - ts > 2_000)
    });
    assert!(late.count() > 0, "some events are delivered late");
}
