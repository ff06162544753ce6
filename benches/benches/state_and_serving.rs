//! criterion micro-benchmarks of the stages inside the pipeline batch and of
//! serving its results, each beside a baseline in the same run:
//! - plate matching against a bare `HashMap` insert of the same reads;
//! - window updates (count, mean, median per segment and minute) against a bare
//!   count and sum per window;
//! - rule evaluation (the enforcer's rules on each plate read; no hotlist entries
//!   and no camera events) against a bare speed-limit check of each traversal;
//! - live state to Arrow (the `segments` and `segment_windows` tables a query
//!   scans) against copying the same rows;
//! - the API's `GET /api/v1/segments` answered from the per-version answer cache
//!   against the same request rendered every time (`answer_cache: false`, the
//!   baseline `egret bench` (d) uses too).
//!
//! The input is five simulated minutes of the city's plate reads, decoded once;
//! car-park gate reads are left out, as stage 1 takes them apart.
//! Run: `cargo bench -p egret-benches --bench state_and_serving` (release profile).

use axum::body::Body;
use axum::http::Request;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use egret_api::guard::RateLimit;
use egret_api::{ApiConfig, AppState};
use egret_benches::{city, plate_reads};
use egret_model::decode::{Decoded, Decoder};
use egret_model::{CityModel, Plate, SegmentIdx, Topic, VehicleClass};
use egret_pipeline::enforce::{Enforcer, Tickets};
use egret_pipeline::matcher::{Matcher, Read, Traversal};
use egret_pipeline::window::{Sample, Windows};
use egret_pipeline::{ClockMode, LiveState, Pipeline, PipelineConfig};
use std::collections::HashMap;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceExt;

/// Every road plate read of the input, decoded, as the matcher takes it.
fn reads(city: &Arc<CityModel>) -> Vec<(Plate, VehicleClass, Read)> {
    let decoder = Decoder::new(city);
    plate_reads(city)
        .iter()
        .filter_map(|r| match decoder.decode(Topic::PlateReads, &r.payload) {
            Ok(Decoded::PlateRead(x)) if city.gate(x.reader).is_none() => {
                Some((x.plate, x.class, Read { reader: x.reader, clock_delta_ms: 0, ts_ms: x.ts_ms, offset: r.offset, partition: 0, uncertainty_ms: 0, tag: x.tag }))
            }
            _ => None,
        })
        .collect()
}

/// Each read with what the matcher made of it: the traversals it completed and the
/// plate's recent reads, as stage 1 hands them to the enforcer.
struct Matched {
    plate: Plate,
    class: VehicleClass,
    read: Read,
    traversals: Vec<Traversal>,
    recent: Vec<Read>,
}

fn matched(city: &CityModel, reads: &[(Plate, VehicleClass, Read)]) -> Vec<Matched> {
    let mut matcher = Matcher::default();
    let mut out = Vec::new();
    reads
        .iter()
        .filter_map(|&(plate, class, read)| {
            out.clear();
            matcher.read(city, plate, class, read, i64::MIN, &mut out).then(|| {
                let recent = matcher.recent(&plate).map(|(_, r)| r.to_vec()).unwrap_or_default();
                Matched { plate, class, read, traversals: out.clone(), recent }
            })
        })
        .collect()
}

fn plate_matching(c: &mut Criterion) {
    let city = city();
    let reads = reads(&city);
    let mut g = c.benchmark_group("plate_matching");
    g.throughput(Throughput::Elements(reads.len() as u64));
    g.bench_function("baseline_hashmap_insert", |b| {
        b.iter(|| {
            let mut by_plate: HashMap<Plate, Read> = HashMap::new();
            for (plate, _, read) in &reads {
                by_plate.insert(*plate, *read);
            }
            by_plate.len()
        })
    });
    g.bench_function("egret_matcher", |b| {
        b.iter(|| {
            let (mut matcher, mut out) = (Matcher::default(), Vec::new());
            let mut traversals = 0;
            for &(plate, class, read) in &reads {
                // As stage 1 does: each read's traversals, then the next read's.
                out.clear();
                matcher.read(&city, plate, class, read, i64::MIN, &mut out);
                traversals += out.len();
            }
            (matcher.plates_in_flight(), traversals)
        })
    });
    g.finish();
}

fn window_updates(c: &mut Criterion) {
    let city = city();
    let samples: Vec<Sample> = matched(&city, &reads(&city))
        .iter()
        .flat_map(|m| &m.traversals)
        // The traversals stage 1 sends to the windows: no buses, no bridged drives.
        .filter(|t| t.via.is_none() && t.class != VehicleClass::Bus)
        .map(|t| Sample { segment: t.segment, enter_ms: t.enter_ms, exit_ms: t.exit_ms, speed_kmh: t.speed_kmh })
        .collect();
    let mut g = c.benchmark_group("window_updates");
    g.throughput(Throughput::Elements(samples.len() as u64));
    g.bench_function("baseline_count_and_sum", |b| {
        b.iter(|| {
            let mut sums: HashMap<(SegmentIdx, i64), (u32, f64)> = HashMap::new();
            for s in &samples {
                let at = sums.entry((s.segment, s.exit_ms - s.exit_ms.rem_euclid(60_000))).or_default();
                *at = (at.0 + 1, at.1 + s.speed_kmh);
            }
            sums.len()
        })
    });
    g.bench_function("egret_windows", |b| {
        b.iter(|| {
            let mut windows = Windows::new(60_000, 90_000);
            let mut changed = 0;
            // The changed windows' figures are computed once per batch, as stage 2 does.
            for batch in samples.chunks(egret_pipeline::runner::BATCH) {
                for s in batch {
                    let _ = windows.add(s, i64::MIN);
                }
                changed += windows.changed().len();
            }
            changed
        })
    });
    g.finish();
}

fn rule_evaluation(c: &mut Criterion) {
    let city = city();
    let matched = matched(&city, &reads(&city));
    let mut g = c.benchmark_group("rule_evaluation");
    g.throughput(Throughput::Elements(matched.len() as u64));
    g.bench_function("baseline_speed_limit_only", |b| {
        b.iter(|| {
            let over = |t: &&Traversal| t.speed_kmh > f64::from(city.segment(t.segment).speed_limit_kmh);
            matched.iter().flat_map(|m| &m.traversals).filter(over).count()
        })
    });
    g.bench_function("egret_enforcer", |b| {
        b.iter_batched_ref(
            || Enforcer::new(&city, 150_000),
            |enforcer| {
                let mut tickets = Tickets::default();
                for m in &matched {
                    enforcer.on_read(&city, m.plate, m.class, &m.read, &m.traversals, &m.recent, &mut tickets);
                }
                tickets.violations.len()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// The live state five simulated minutes leave, as the API and queries see it.
fn live_state(city: &Arc<CityModel>) -> Arc<LiveState> {
    let live = Arc::new(LiveState::new(city.clone()));
    let mut pipeline = Pipeline::new(city.clone(), PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() });
    for batch in plate_reads(city).chunks(4096) {
        live.apply(&pipeline.process(batch, Instant::now()));
    }
    live.apply(&pipeline.finish());
    live
}

fn live_to_arrow(c: &mut Criterion) {
    let city = city();
    let live = live_state(&city);
    let (snapshot, windows) = (live.snapshot(), live.all_history());
    let mut g = c.benchmark_group("live_to_arrow");
    g.throughput(Throughput::Elements((city.segments.len() + windows.len()) as u64));
    g.bench_function("baseline_copy_rows", |b| b.iter(|| (black_box(&snapshot).clone(), black_box(&windows).clone())));
    g.bench_function("egret_record_batches", |b| {
        b.iter(|| (egret_query::segments_batch(&city, black_box(&snapshot)), egret_query::segment_windows_batch(&city, black_box(&windows))))
    });
    g.finish();
}

fn api_answer(c: &mut Criterion) {
    let city = city();
    let live = live_state(&city);
    let unlimited = NonZeroU32::MAX;
    let app = |answer_cache| {
        let config = ApiConfig { rate: RateLimit { per_second: unlimited, burst: unlimited }, answer_cache, ..ApiConfig::ephemeral() };
        egret_api::router(AppState::with_config(live.clone(), None, config, None).expect("no files to open"))
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let request = |app: &axum::Router| {
        let response = app.clone().oneshot(Request::get("/api/v1/segments").body(Body::empty()).expect("request"));
        runtime.block_on(async {
            let response = response.await.expect("response");
            assert!(response.status().is_success());
            axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body")
        })
    };
    let (cached, rendered) = (app(true), app(false));
    let answer: serde_json::Value = serde_json::from_slice(&request(&rendered)).expect("JSON");
    let with_windows = live.snapshot().latest.iter().flatten().count();
    assert_eq!(answer["segments"].as_array().map(Vec::len), Some(with_windows), "every segment with a window is in the answer");
    assert_eq!(request(&cached), request(&rendered), "the cache serves what a render gives");
    let mut g = c.benchmark_group("api_segments");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_render_per_request", |b| b.iter(|| request(&rendered).len()));
    g.bench_function("egret_answer_cache", |b| b.iter(|| request(&cached).len()));
    g.finish();
}

criterion_group!(benches, plate_matching, window_updates, rule_evaluation, live_to_arrow, api_answer);
criterion_main!(benches);
