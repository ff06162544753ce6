//! Active instances that split the input (`egret run --instance K/N`) must
//! together produce exactly what one instance produces: the same tickets, dead
//! letters and stage-2 updates, none twice, none lost. Each instance reads every
//! record and keeps the state that spans partitions (clocks, tags, the gantry log)
//! from all of them, and the state of the plates of its own partitions only. A
//! part of that state kept by the wrong instance, or not kept by all, shows up
//! here as a difference on noisy traffic: skewed clocks, misread plates (keyed
//! by the misread, so on another partition than the plate's own reads),
//! duplicates, late and malformed events.

use egret::bench::workload;
use egret_ingest::kafka::KafkaConfig;
use egret_ingest::{Record, partition_for};
use egret_pipeline::repartition::partition_of;
use egret_pipeline::update::Update;
use egret_model::{CityModel, Topic};
use egret_pipeline::ownership::Ownership;
use egret_pipeline::checkpoint::{self, Checkpoint, DirStore};
use egret_pipeline::rescale;
use egret_pipeline::stage1::{Stage1, Stage1State};
use egret_pipeline::stage2::{Stage2, Stage2State};
use egret_pipeline::{ClockMode, PipelineConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 1024;
/// Prime, so no count of instances divides it: with 6 partitions, a plate's hash
/// modulo 2 or 3 is its partition modulo 2 or 3, and keeping plates by partition
/// instead of by hash (or the two mixed up) would pass unseen.
const PARTITIONS: u32 = 7;

/// Processing time must decide nothing: no partition goes idle.
fn config() -> PipelineConfig {
    PipelineConfig { clock: ClockMode::Event, idle_timeout_ms: 24 * 3_600_000, ..PipelineConfig::default() }
}

/// The records as a keyed producer spreads them over `PARTITIONS` partitions of
/// each topic, in the same order.
fn partitioned(records: Vec<Record>) -> Vec<Record> {
    let mut next: BTreeMap<(String, u32), u64> = BTreeMap::new();
    records
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r.partition = partition_for(r.key.as_deref(), PARTITIONS, i as u64);
            let offset = next.entry((r.topic.to_string(), r.partition)).or_default();
            r.offset = *offset;
            *offset += 1;
            r
        })
        .collect()
}

/// Everything the instances wrote, in an order that does not depend on which
/// instance wrote what.
#[derive(Debug, Default, PartialEq)]
struct Written {
    tickets: Vec<String>,
    dead_letters: Vec<String>,
    /// Each stage-2 update with the record it came from.
    updates: Vec<String>,
    /// The windows and lots of every instance's stage 2.
    derived: Vec<String>,
    /// Incidents, and headway events and trips that never ran, of every instance's stage 2.
    incidents: Vec<String>,
    transit: Vec<String>,
    consumed: u64,
    rejected: u64,
    traversals: u64,
    excluded: u64,
    /// Misread plates corrected to their tag's plate, as every instance counts them.
    corrected: Vec<u64>,
}

/// How the records reach the instances.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Arrival {
    /// All at once: no partition is ever drained, so the slowest one (lot counts,
    /// every ten minutes) holds the watermark, and stage 2 finishes late.
    Backlog,
    /// As they happen: after each batch the source reports drained the partitions
    /// that had nothing in it, so the watermark moves on with the traffic and stage
    /// 2 closes windows, settles arrivals and finds trips that never ran as it goes.
    Live,
}

fn run(city: &Arc<CityModel>, records: &[Record], instances: u32) -> Written {
    run_rescaled(city, records, instances, Arrival::Backlog, None)
}

/// As `run`, and at `rescale` = (record index, M) the state of both stages is
/// dealt out to M instances (`rescale::stage1` and `stage2`, through the
/// checkpoint format), which process the rest.
fn run_rescaled(city: &Arc<CityModel>, records: &[Record], instances: u32, arrival: Arrival, rescale: Option<(usize, u32)>) -> Written {
    let mut stage1s: Vec<Stage1> = (0..instances)
        .map(|i| {
            let mut stage = Stage1::new(city.clone(), config());
            stage.set_ownership(Ownership::new(i, instances).expect("index below count"));
            stage.set_idle_reported(arrival == Arrival::Live);
            stage
        })
        .collect();
    // Stage 2 of each instance, keeping the repartition partitions it owns.
    let partitions = KafkaConfig::new("").partitions as u32;
    let mut stage2s: Vec<Stage2> = (0..instances)
        .map(|i| {
            let mut stage = Stage2::new(city, config());
            stage.set_ownership(Ownership::new(i, instances).expect("index below count"), partitions);
            stage
        })
        .collect();
    let mut instances = instances;
    let mut w = Written::default();
    for (i, batch) in records.chunks(BATCH).enumerate() {
        if let Some((cut, to)) = rescale
            && cut == i * BATCH
        {
            stage1s = dealt_out(city, stage1s, to, arrival);
            stage2s = dealt_out_stage2(city, stage2s, to, partitions);
            instances = to;
        }
        let owner = |u: &Update| (partition_of(u.key(city), partitions) % instances) as usize;
        let mut watermarks = Vec::new();
        let drained = if arrival == Arrival::Live { drained_in(batch) } else { Vec::new() };
        for stage in &mut stage1s {
            stage.mark_drained(&drained);
            let out = stage.process(batch, Instant::now());
            w.tickets.extend(out.tickets.violations.iter().map(json));
            w.tickets.extend(out.tickets.possible_hits.iter().map(json));
            w.dead_letters.extend(out.dead_letters.iter().map(|d| format!("{}/{}@{} {:?}", d.record.topic, d.record.partition, d.record.offset, d.reject)));
            w.updates.extend(out.updates.iter().zip(&out.origins).map(|(u, o)| format!("{o:?} {}", json(u))));
            for (i, stage2) in stage2s.iter_mut().enumerate() {
                stage2.apply(&out.updates.iter().filter(|u| owner(u) == i).cloned().collect::<Vec<_>>());
            }
            watermarks.push(out.watermark_ms);
        }
        assert!(watermarks.windows(2).all(|p| p[0] == p[1]), "every instance has the one watermark: {watermarks:?}");
        for stage2 in &mut stage2s {
            let changed = stage2.advance(watermarks[0]);
            w.derived.extend(changed.windows.iter().map(|x| format!("{} {}", x.segment.0, json(x))));
            w.derived.extend(changed.lots.iter().map(json));
            w.incidents.extend(changed.incidents.iter().map(json));
            w.transit.extend(changed.transit.events.iter().map(json));
        }
    }
    for stage in &mut stage1s {
        let out = stage.finish();
        w.tickets.extend(out.tickets.violations.iter().map(json));
        let stats = stage.stats();
        w.consumed += stats.consumed.values().sum::<u64>();
        w.rejected += stats.rejected.values().sum::<u64>();
        w.traversals += stats.traversals;
        w.excluded += stats.excluded;
        w.corrected.push(stage.plates_corrected());
    }
    w.corrected.dedup();
    for stage2 in &mut stage2s {
        let done = stage2.finish();
        w.derived.extend(done.windows.iter().map(|x| format!("{} {}", x.segment.0, json(x))));
        w.derived.extend(done.lots.iter().map(json));
        w.transit.extend(done.transit.events.iter().map(json));
    }
    for list in [&mut w.tickets, &mut w.dead_letters, &mut w.updates, &mut w.derived, &mut w.incidents, &mut w.transit] {
        list.sort();
    }
    w
}

/// The partitions with no record in `batch`, which a live source would report
/// drained after it: so the watermark moves on however sparse a topic's partition
/// is (lot counts), and stage 2 closes windows and finds trips that never ran as
/// the traffic goes, not only at its end.
fn drained_in(batch: &[Record]) -> Vec<(String, u32)> {
    let all = Topic::ALL.iter().flat_map(|t| (0..PARTITIONS).map(move |p| (t.default_name().to_owned(), p)));
    all.filter(|(t, p)| !batch.iter().any(|r| r.partition == *p && &*r.topic == t.as_str())).collect()
}

/// `states` saved as checkpoints and read back, once for each of `to` new
/// instances, as `egret rescale` reads the checkpoints of a cut.
fn through_checkpoints<S: serde::Serialize + serde::de::DeserializeOwned>(name: &str, states: Vec<S>, to: u32) -> Vec<Vec<S>> {
    let old = states.len();
    let dir = std::env::temp_dir().join(format!("egret-{name}-{}-{old}", std::process::id()));
    let store = DirStore::open(&dir).expect("a checkpoint directory");
    for (i, state) in states.into_iter().enumerate() {
        let checkpoint = Checkpoint { format: checkpoint::FORMAT, fingerprint: String::new(), taken_at_ms: 0, positions: Default::default(), state };
        checkpoint::save(&store, &format!("{name}-{i}"), &checkpoint).expect("saved");
    }
    let read = (0..to).map(|_| (0..old).map(|i| checkpoint::load::<S>(&store, &format!("{name}-{i}"), "").expect("readable").expect("saved").state).collect()).collect();
    std::fs::remove_dir_all(&dir).expect("removed");
    read
}

/// Each instance's stage 1 dealt out to `to` instances through the checkpoint format.
fn dealt_out(city: &Arc<CityModel>, stage1s: Vec<Stage1>, to: u32, arrival: Arrival) -> Vec<Stage1> {
    let plates_before: usize = stage1s.iter().map(Stage1::plates_in_flight).sum();
    let read = through_checkpoints::<Stage1State>("stage1", stage1s.into_iter().map(Stage1::into_state).collect(), to);
    let dealt: Vec<Stage1> = (0..to)
        .zip(read)
        .map(|(k, states)| {
            let share = Ownership::new(k, to).expect("index below count");
            let mut stage = Stage1::restore(city.clone(), config(), rescale::stage1(states, share).expect("states to deal"));
            stage.set_ownership(share);
            stage.set_idle_reported(arrival == Arrival::Live);
            stage
        })
        .collect();
    let plates_after: usize = dealt.iter().map(Stage1::plates_in_flight).sum();
    assert_eq!(plates_after, plates_before, "every plate in flight is kept by exactly one of the new instances");
    dealt
}

/// Each instance's stage 2 dealt out to `to` instances through the checkpoint format.
fn dealt_out_stage2(city: &Arc<CityModel>, stage2s: Vec<Stage2>, to: u32, partitions: u32) -> Vec<Stage2> {
    let read = through_checkpoints::<Stage2State>("stage2", stage2s.into_iter().map(Stage2::into_state).collect(), to);
    (0..to)
        .zip(read)
        .map(|(k, states)| {
            let share = Ownership::new(k, to).expect("index below count");
            let mut stage = Stage2::restore(city, config(), rescale::stage2(city, config(), states, partitions, share).expect("states to deal"));
            stage.set_ownership(share, partitions);
            stage
        })
        .collect()
}

fn json<T: serde::Serialize>(output: &T) -> String {
    serde_json::to_string(output).expect("json")
}

fn assert_same(one: &Written, split: &Written, instances: &str) {
    let lists = [
        ("tickets", &one.tickets, &split.tickets),
        ("dead letters", &one.dead_letters, &split.dead_letters),
        ("updates", &one.updates, &split.updates),
        ("windows and lots", &one.derived, &split.derived),
        // Equal on this traffic, but not exact in general: an instance's incident
        // prior pools the segments it keeps, and its search for trips that never
        // ran is bounded by its own routes' reports (deploy/SCALE-OUT.md, "Stage
        // 2's cross-partition parts"). A difference here after a change of the
        // scenario may be that, not a bug: look before widening the assertion.
        ("incidents", &one.incidents, &split.incidents),
        ("headway events and ghost trips", &one.transit, &split.transit),
    ];
    for (what, a, b) in lists {
        let missing: Vec<&String> = a.iter().filter(|x| !b.contains(x)).take(3).collect();
        let extra: Vec<&String> = b.iter().filter(|x| !a.contains(x)).take(3).collect();
        assert!(a == b, "{instances} instances: {what}: {} vs {} of one instance; missing {missing:#?}, extra {extra:#?}", b.len(), a.len());
    }
    assert_eq!(one, split, "{instances} instances: the totals");
}

/// Noisy traffic with a misread in every five plates: plenty of corrections and
/// camera plates found by the one-character search, which both look across
/// partitions; and the scripted crash of every ten minutes.
#[test]
fn instances_splitting_noisy_input_write_exactly_what_one_instance_writes() {
    let city = egret::load_city(None).expect("city model");
    let records = partitioned(workload::simulated_scripted(&city, 40_000, 400.0, 5, egret_simulator::Noise { misread: 0.2, ..egret_simulator::Noise::noisy() }));
    let one = run(&city, &records, 1);
    let searched = one.tickets.iter().filter(|t| t.contains("the camera read")).count();
    assert!(searched >= 2, "the scenario has camera plates found by the one-character search: {searched}");
    assert!(one.corrected[0] > 5, "the scenario has misread plates: {:?}", one.corrected);
    assert!(one.tickets.len() > 20, "the scenario issues tickets: {}", one.tickets.len());
    assert!(one.dead_letters.len() > 100, "the scenario has bad input: {}", one.dead_letters.len());
    assert!(one.derived.iter().any(|l| l.contains("\"is_final\":true")), "the scenario closes windows");
    assert_eq!(one.consumed, records.len() as u64);
    assert!(!one.incidents.is_empty() && one.transit.len() > 20, "the scenario has incidents and headway events: {} and {}", one.incidents.len(), one.transit.len());
    for instances in [2, 3] {
        assert_same(&one, &run(&city, &records, instances), &format!("{instances}"));
    }
}

/// Rescaling: N instances run to a cut, the state of both their stages is dealt
/// out to M, and the M run on. Together they write exactly what one instance
/// writes, so no plate's reads, open drives, held or pending tickets, no
/// segment's open windows or incident evidence, no lot's counts and no route's
/// buses, pending arrivals or trips checked are lost or kept twice.
#[test]
fn state_dealt_out_from_n_instances_to_m_at_a_cut_writes_what_one_instance_writes() {
    let city = egret::load_city(None).expect("city model");
    let records = workload::simulated_with(&city, 40_000, 120.0, 9, egret_simulator::Noise { misread: 0.2, ..egret_simulator::Noise::noisy() });
    let records = partitioned(without_some_trips(records));
    let one = run_rescaled(&city, &records, 1, Arrival::Live, None);
    // Mid-traffic: plates with open drives, held and pending tickets at the cut.
    let cut = records.len() * 3 / 4 / BATCH * BATCH;
    let cut_ms = records[cut].timestamp_ms.expect("an arrival time");
    let ghosts_due: Vec<i64> = one
        .transit
        .iter()
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .filter(|t| t["type"] == "ghost_trip")
        .filter_map(|t| Some(t["scheduled_ms"].as_i64()? + 10 * 60_000))
        .collect();
    let (before, after) = (ghosts_due.iter().filter(|t| **t < cut_ms - 60_000).count(), ghosts_due.iter().filter(|t| **t > cut_ms).count());
    assert!(before >= 2 && after >= 2, "the scenario has trips that never ran found before the cut and after it: {before} and {after}");
    for (from, to) in [(2, 3), (3, 2), (1, 2), (2, 1)] {
        let rescaled = run_rescaled(&city, &records, from, Arrival::Live, Some((cut, to)));
        assert_same(&one, &rescaled, &format!("{from} then {to}"));
    }
    // Read as a backlog (the watermark held by the lot counts, every ten minutes),
    // the scripted crash is found before the cut (in the 30th batch) and cleared
    // after it (in the 36th), by the instance it was dealt to.
    let records = partitioned(workload::simulated_scripted(&city, 40_000, 400.0, 5, egret_simulator::Noise { misread: 0.2, ..egret_simulator::Noise::noisy() }));
    let one = run_rescaled(&city, &records, 1, Arrival::Backlog, None);
    assert!(one.incidents.iter().any(|i| i.contains("\"cleared_ms\":1")), "the scenario has an incident cleared: {:?}", one.incidents);
    let cut = 32 * BATCH;
    for (from, to) in [(2, 3), (3, 2)] {
        let rescaled = run_rescaled(&city, &records, from, Arrival::Backlog, Some((cut, to)));
        assert_same(&one, &rescaled, &format!("{from} then {to}, as a backlog"));
    }
}

/// Without the bus reports of every seventh trip: trips that never ran, all
/// through the traffic.
fn without_some_trips(records: Vec<Record>) -> Vec<Record> {
    let mut trips: Vec<String> = Vec::new();
    let trip_of = |r: &Record| serde_json::from_slice::<serde_json::Value>(&r.payload).ok()?.get("trip_id")?.as_str().map(str::to_owned);
    records
        .into_iter()
        .filter(|r| {
            let Some(trip) = trip_of(r) else { return true };
            let i = trips.iter().position(|t| *t == trip).unwrap_or_else(|| {
                trips.push(trip);
                trips.len() - 1
            });
            i % 7 != 3
        })
        .collect()
}

/// Dealing refuses states that are not the instances of one split at one cut:
/// one instance's state twice (its plates twice), or states of two moments.
#[test]
fn dealing_refuses_states_of_two_cuts_or_one_instance_twice() {
    let city = egret::load_city(None).expect("city model");
    let records = partitioned(workload::simulated_with(&city, 6_000, 120.0, 3, egret_simulator::Noise::noisy()));
    let mut stage = Stage1::new(city.clone(), config());
    stage.set_ownership(Ownership::new(0, 2).expect("a share"));
    let dir = std::env::temp_dir().join(format!("egret-refused-{}", std::process::id()));
    let store = DirStore::open(&dir).expect("a checkpoint directory");
    let mut saved = Vec::new();
    for (i, batch) in records.chunks(records.len() / 2).take(2).enumerate() {
        stage.process(batch, Instant::now());
        let checkpoint = Checkpoint { format: checkpoint::FORMAT, fingerprint: String::new(), taken_at_ms: 0, positions: Default::default(), state: stage.state() };
        checkpoint::save(&store, &format!("at-{i}"), &checkpoint).expect("saved");
        saved.push(format!("at-{i}"));
    }
    let load = |name: &str| checkpoint::load::<Stage1State>(&store, name, "").expect("readable").expect("saved").state;
    let whole = Ownership::default();
    let refused = rescale::stage1(vec![load(&saved[0]), load(&saved[1])], whole).map(|_| ()).expect_err("two cuts");
    assert!(matches!(refused, rescale::RescaleError::NotOneCut { other: 2, .. }), "{refused}");
    let refused = rescale::stage1(vec![load(&saved[1]), load(&saved[1])], whole).map(|_| ()).expect_err("one instance twice");
    assert!(matches!(refused, rescale::RescaleError::PlateTwice { upto: 2, twice } if twice > 0), "{refused}");
    assert_eq!(rescale::stage1(Vec::new(), whole).map(|_| ()), Err(rescale::RescaleError::Nothing));
    std::fs::remove_dir_all(&dir).expect("removed");
}
