//! criterion micro-benchmarks of the hot paths, each beside a baseline measured in
//! the same run: decoding a plate read against a bare `serde_json::Value` parse of
//! the same bytes, the whole pipeline over a batch against decoding alone, and the
//! Kafka source's merge of 16 partitions by arrival time (`egret_ingest::align`)
//! against handing the same records on unmerged.
//!
//! Run: `cargo bench -p egret-benches --bench hot_paths` (release profile).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use egret_benches::{city, plate_reads};
use egret_ingest::Record;
use egret_model::Topic;
use egret_model::decode::Decoder;
use egret_pipeline::{ClockMode, Pipeline, PipelineConfig};
use std::hint::black_box;
use std::time::Instant;

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
