//! criterion micro-benchmarks of the hot paths, each beside a baseline measured in
//! the same run: decoding a plate read against a bare `serde_json::Value` parse of
//! the same bytes, the whole pipeline over a batch against decoding alone, and the
//! Kafka source's merge of 16 partitions by arrival time (`egret_ingest::align`)
//! against handing the same records on unmerged.
//!
//! Run: `cargo bench -p egret-benches` (release profile).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use egret_ingest::Record;
use egret_model::decode::Decoder;
use egret_model::{CityModel, Topic};
use egret_pipeline::{ClockMode, Pipeline, PipelineConfig};
use egret_simulator::{SimConfig, Simulator};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const START: i64 = 1_795_995_900_000; // Monday 2026-11-30 07:45 CST

fn city() -> Arc<CityModel> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    Arc::new(CityModel::load(&dir).expect("the repo's city data loads"))
}

/// Five simulated minutes of plate reads as the records a source would deliver.
fn plate_reads(city: &Arc<CityModel>) -> Vec<Record> {
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

fn decoding(c: &mut Criterion) {
    let city = city();
    let records = plate_reads(&city);
    let one = records[0].payload.clone();
    let decoder = Decoder::new(&city);
    let mut g = c.benchmark_group("decode_plate_read");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_serde_json_value", |b| b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&one))));
    g.bench_function("egret_decode_and_validate", |b| b.iter(|| decoder.decode(Topic::PlateReads, black_box(&one))));
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let city = city();
    let records = plate_reads(&city);
    let batch = &records[..records.len().min(8192)];
    let decoder = Decoder::new(&city);
    let mut g = c.benchmark_group("pipeline_batch");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("baseline_decode_only", |b| {
        b.iter(|| batch.iter().filter(|r| decoder.decode(Topic::PlateReads, &r.payload).is_ok()).count())
    });
    g.bench_function("decode_match_window", |b| {
        b.iter_batched(
            || Pipeline::new(city.clone(), PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() }),
            |mut p| p.process(black_box(batch), Instant::now()),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// The Kafka source's shape: 4 topics × 4 partitions, each record queued on one of
/// them in arrival order, all released in batches of `runner::BATCH`.
fn alignment(c: &mut Criterion) {
    use egret_ingest::align::{Aligner, PartitionKey};
    use std::collections::HashSet;
    use std::time::Duration;
    let city = city();
    let records: Vec<(PartitionKey, Record)> = plate_reads(&city).into_iter().enumerate().map(|(i, r)| (((i % 4), (i / 4 % 4) as u32), r)).collect();
    let owned: Vec<PartitionKey> = (0..4).flat_map(|t| (0..4).map(move |p| (t, p))).collect();
    let drained: HashSet<PartitionKey> = owned.iter().copied().collect();
    let batch = egret_pipeline::runner::BATCH;
    let mut g = c.benchmark_group("kafka_source_release");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("baseline_unmerged", |b| {
        b.iter_batched(
            || records.clone(),
            |queued| {
                let mut out = Vec::with_capacity(batch);
                let mut released = 0;
                for (_, r) in queued {
                    out.push(r);
                    if out.len() == batch {
                        released += out.len();
                        out.clear();
                    }
                }
                released + out.len()
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("merged_by_arrival", |b| {
        b.iter_batched(
            || records.clone(),
            |queued| {
                // Queued as a fetch delivers them, then released in merged order.
                let mut aligner = Aligner::new(queued.len() + 1, Duration::from_secs(15));
                for (k, r) in queued {
                    aligner.push(k, r);
                }
                let (mut out, mut released) = (Vec::with_capacity(batch), 0);
                loop {
                    aligner.release(&owned, &drained, Instant::now(), batch, &mut out);
                    if out.is_empty() {
                        return released;
                    }
                    released += out.len();
                    out.clear();
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, decoding, pipeline, alignment);
criterion_main!(benches);
