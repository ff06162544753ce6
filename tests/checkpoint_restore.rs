//! A checkpoint must be invisible: a run that saves both stages' state to disk and
//! rebuilds them from it between batches must produce exactly the outputs of a run
//! that never stopped: every ticket, window, lot, incident and bus status, byte for
//! byte, in order. Any state a checkpoint forgets (a field skipped, a map left out)
//! shows up here as a difference after the restore.

use egret::bench::workload;
use egret_ingest::Record;
use egret_model::CityModel;
use egret_pipeline::checkpoint::{self, Checkpoint, DirStore};
use egret_pipeline::stage1::{Stage1, Stage1State};
use egret_pipeline::stage2::{Stage2, Stage2State};
use egret_pipeline::PipelineConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 1024;

fn city() -> Arc<CityModel> {
    egret::load_city(None).expect("city model")
}

/// Processing time must not decide anything here (a restore starts partitions'
/// idle clocks afresh, and a loaded machine is slow): no partition goes idle.
fn config() -> PipelineConfig {
    PipelineConfig { clock: egret_pipeline::ClockMode::Event, idle_timeout_ms: 24 * 3_600_000, ..PipelineConfig::default() }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn saved<S>(fingerprint: &str, state: S) -> Checkpoint<S> {
    Checkpoint { format: checkpoint::FORMAT, fingerprint: fingerprint.to_owned(), taken_at_ms: 0, positions: Default::default(), state }
}

/// A window's JSON leaves its segment to the key: here it goes in the line.
fn window_line(w: &egret_pipeline::SegmentWindow) -> String {
    format!("segment {} {}", w.segment.0, serde_json::to_string(w).expect("json"))
}

/// Every output of both stages as JSON lines, in the order produced.
fn run(city: &Arc<CityModel>, records: &[Record], restore_every: Option<usize>, dir: &std::path::Path) -> (Vec<String>, usize) {
    let mut stage1 = Stage1::new(city.clone(), config());
    let mut stage2 = Stage2::new(city, config());
    let store = DirStore::open(dir).expect("checkpoint dir");
    let fingerprint = checkpoint::fingerprint(city, &config());
    let mut lines = Vec::new();
    let mut restores = 0;
    for (i, batch) in records.chunks(BATCH).enumerate() {
        let out = stage1.process(batch, Instant::now());
        stage2.apply(&out.updates);
        let changed = stage2.advance(out.watermark_ms);
        lines.extend(out.tickets.violations.iter().map(|v| serde_json::to_string(v).expect("json")));
        lines.extend(out.tickets.possible_hits.iter().map(|h| serde_json::to_string(h).expect("json")));
        lines.extend(changed.windows.iter().map(window_line));
        lines.extend(changed.lots.iter().map(|l| serde_json::to_string(l).expect("json")));
        lines.extend(changed.incidents.iter().map(|x| serde_json::to_string(x).expect("json")));
        lines.extend(changed.transit.statuses.iter().map(|s| serde_json::to_string(s).expect("json")));
        lines.extend(changed.transit.events.iter().map(|e| serde_json::to_string(e).expect("json")));
        if restore_every.is_some_and(|n| (i + 1) % n == 0) {
            checkpoint::save(&store, "stage1.cbor", &saved(&fingerprint, stage1.state())).expect("save stage 1");
            checkpoint::save(&store, "stage2.cbor", &saved(&fingerprint, stage2.state())).expect("save stage 2");
            drop((stage1, stage2));
            let state1: Checkpoint<Stage1State> = checkpoint::load(&store, "stage1.cbor", &fingerprint).expect("load").expect("saved");
            let state2: Checkpoint<Stage2State> = checkpoint::load(&store, "stage2.cbor", &fingerprint).expect("load").expect("saved");
            stage1 = Stage1::restore(city.clone(), config(), state1.state);
            stage2 = Stage2::restore(city, config(), state2.state);
            restores += 1;
        }
    }
    let done = stage2.finish();
    lines.extend(done.windows.iter().map(window_line));
    lines.extend(done.lots.iter().map(|l| serde_json::to_string(l).expect("json")));
    (lines, restores)
}

#[test]
fn restoring_from_a_checkpoint_between_batches_changes_no_output() {
    let city = city();
    let records = workload::simulated(&city, 60_000, 120.0, 11);
    let (uninterrupted, _) = run(&city, &records, None, &scratch("checkpoint-none"));
    let (restored, restores) = run(&city, &records, Some(7), &scratch("checkpoint-every-7"));
    assert!(restores >= 8, "only {restores} restores");
    assert!(uninterrupted.iter().filter(|l| l.contains("violation_id")).count() > 0, "the scenario issues tickets");
    assert!(uninterrupted.iter().filter(|l| l.contains("\"is_final\":true")).count() > 0, "the scenario closes windows");
    assert_eq!(uninterrupted.len(), restored.len(), "as many outputs");
    for (i, (a, b)) in uninterrupted.iter().zip(&restored).enumerate() {
        assert_eq!(a, b, "output {i} differs after {restores} restores");
    }
}

#[test]
fn a_checkpoint_of_other_settings_is_refused_with_a_reason() {
    let city = city();
    let dir = scratch("checkpoint-mismatch");
    let store = DirStore::open(&dir).expect("checkpoint dir");
    let stage1 = Stage1::new(city.clone(), config());
    checkpoint::save(&store, "stage1.cbor", &saved(&checkpoint::fingerprint(&city, &config()), stage1.state())).expect("save");
    let other = PipelineConfig { window_ms: 30_000, ..config() };
    let refused = checkpoint::load::<Stage1State>(&store, "stage1.cbor", &checkpoint::fingerprint(&city, &other)).err().expect("refused");
    assert!(refused.to_string().contains("window_ms"), "{refused}");
    assert!(DirStore::open(&dir).is_err(), "a second instance cannot use the same directory");
}
