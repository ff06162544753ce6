//! The Kafka path against a raw rdkafka consumer, in one run on one broker: the
//! same records are produced once to fresh topics, then read by a bare
//! `BaseConsumer` that only counts messages (the ceiling), and by the pipeline
//! instance `egret run --kafka` runs (stage 1, the repartition topic, stage 2).
//!
//! The pipeline's clock stops when stage 1 has consumed every input record, read
//! off its `egret_events_consumed_total` counter: stage 2 finishes its share a
//! moment later, on the same cores, so its CPU is in the CPU figure but not the
//! wall one. Both readers start from a new consumer group, so both pay a join.

use super::measure::Stopwatch;
use crate::instance;
use anyhow::Context;
use egret_ingest::kafka::{KafkaConfig, KafkaSink};
use egret_ingest::{OutRecord, Record, Sink};
use egret_model::{CityModel, Topic};
use egret_pipeline::{LiveState, PipelineConfig};
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::sync::Arc;
use std::time::Duration;

pub struct Rates {
    pub events: usize,
    pub raw_per_s: f64,
    pub raw_per_cpu_s: f64,
    pub pipeline_per_s: f64,
    pub pipeline_per_cpu_s: f64,
}

/// Produces `records` to the input topics of a fresh namespace and waits for
/// the broker to have them all.
async fn produce(kafka: &KafkaConfig, records: &[Record]) -> anyhow::Result<()> {
    instance::ensure_all_topics(kafka).await?;
    let sink = KafkaSink::new(kafka)?;
    for chunk in records.chunks(10_000) {
        let out = chunk
            .iter()
            .map(|r| OutRecord { topic: r.topic.clone(), partition: None, key: r.key.clone(), payload: r.payload.clone(), headers: Vec::new(), timestamp_ms: r.timestamp_ms })
            .collect();
        sink.send(out).await.context("producing the bench input")?;
    }
    sink.flush(Duration::from_secs(120)).context("flushing the bench input")?;
    Ok(())
}

/// Counts `expected` messages of the input topics with a bare consumer.
fn raw_consume(kafka: &KafkaConfig, expected: usize) -> anyhow::Result<(Duration, f64)> {
    let watch = Stopwatch::start();
    let consumer: BaseConsumer = kafka
        .client()
        .set("group.id", format!("{}raw-baseline", kafka.namespace))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the raw consumer")?;
    let topics: Vec<String> = Topic::ALL.iter().map(|t| kafka.topic(t.default_name())).collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).context("subscribing the raw consumer")?;
    let (mut seen, mut bytes) = (0usize, 0usize);
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while seen < expected {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the raw consumer saw {seen} of {expected} records in 10 minutes");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.context("raw consume")?;
            bytes += rdkafka::Message::payload(&message).map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    std::hint::black_box(bytes);
    Ok(watch.read())
}

/// Sum of a Prometheus counter over its labels, from the text exposition.
pub(super) fn counter_total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn compare(city: &Arc<CityModel>, pipeline: PipelineConfig, brokers: &str, records: &[Record], metrics: &PrometheusHandle) -> anyhow::Result<Rates> {
    let namespace = format!("bench-{}.", crate::commands::now_ms());
    let kafka = KafkaConfig { namespace: namespace.clone(), group_id: format!("{namespace}egret"), ..KafkaConfig::new(brokers) };
    eprintln!("bench: producing {} records to Kafka at {brokers} (namespace {namespace})…", records.len());
    produce(&kafka, records).await?;

    eprintln!("bench: raw rdkafka consume…");
    let expected = records.len();
    let raw_kafka = kafka.clone();
    let (raw_wall, raw_cpu) = tokio::task::spawn_blocking(move || raw_consume(&raw_kafka, expected)).await??;

    eprintln!("bench: the pipeline instance consumes the same topics…");
    let consumed_before = counter_total(&metrics.render(), "egret_events_consumed_total");
    let live = Arc::new(LiveState::new(city.clone()));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let watch = Stopwatch::start();
    let instance = {
        let (city, kafka, live) = (city.clone(), kafka.clone(), live.clone());
        tokio::spawn(async move { instance::run(city, pipeline, &kafka, live, stop, None).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    let (wall, cpu) = loop {
        let consumed = counter_total(&metrics.render(), "egret_events_consumed_total") - consumed_before;
        if consumed >= expected as f64 {
            break watch.read();
        }
        anyhow::ensure!(!instance.is_finished(), "the pipeline instance stopped after {consumed} of {expected} records");
        anyhow::ensure!(std::time::Instant::now() < deadline, "the pipeline consumed {consumed} of {expected} records in 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Let stage 2 catch up, then stop: its CPU belongs to the pipeline's figure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, cpu_with_stage2) = watch.read();
    let _ = stop_tx.send(true);
    instance.await??;
    let n = expected as f64;
    Ok(Rates {
        events: expected,
        raw_per_s: n / raw_wall.as_secs_f64(),
        raw_per_cpu_s: n / raw_cpu,
        pipeline_per_s: n / wall.as_secs_f64(),
        // Conservative: the 2 s tail's idle polling is counted as the pipeline's.
        pipeline_per_cpu_s: n / cpu.max(cpu_with_stage2),
    })
}
