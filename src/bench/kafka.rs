//! The Kafka path against a raw rdkafka consumer, in one run on one broker: the
//! same records are produced once to fresh topics, then read by a bare
//! `BaseConsumer` that only counts messages (the ceiling), and by the pipeline
//! instance `egret run --kafka` runs (stage 1, the repartition topic, stage 2).
//!
//! The pipeline's clock stops when stage 1 has consumed every input record, read
//! off its `egret_events_consumed_total` counter: stage 2 finishes its share a
//! moment later, on the same cores, so its CPU is in the CPU figure but not the
//! wall one. Every reader starts from a new consumer group, and each clock starts
//! at the reader's first record: joining the group takes 0 to 3 s (the broker's
//! `group.initial.rebalance.delay.ms`), more than the raw consume itself, and
//! timed with it made the raw rate vary tenfold between runs.
//!
//! Then two instances split the same topics (`--instance 1/2` and `2/2`, a new
//! deployment): their rate per CPU-second beside one instance's, and the tickets
//! and final windows of the two together beside the one's (the same, or scale-out
//! loses or invents offences). Each of the two reads every record and keeps the
//! state that spans partitions from all of them, so the decoding is paid twice.

use super::measure::{Stopwatch, per_cpu_second};
use crate::instance;
use anyhow::Context;
use egret_ingest::kafka::{KafkaConfig, KafkaSink};
use egret_ingest::{OutRecord, Record, Sink};
use egret_model::{CityModel, Topic};
use egret_pipeline::ownership::Ownership;
use egret_pipeline::{LiveState, PipelineConfig, SegmentWindow};
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Produces `records` to the input topics of a fresh namespace and waits for
/// the broker to have them all.
pub(crate) async fn produce(kafka: &KafkaConfig, records: &[Record]) -> anyhow::Result<()> {
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
    let mut watch = None;
    while seen < expected {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the raw consumer saw {seen} of {expected} records in 10 minutes");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.context("raw consume")?;
            watch.get_or_insert_with(Stopwatch::start);
            bytes += rdkafka::Message::payload(&message).map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    std::hint::black_box(bytes);
    Ok(watch.map_or((Duration::ZERO, 0.0), |w| w.read()))
}

/// Sum of a Prometheus counter over its labels, from the text exposition.
pub(crate) fn counter_total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What `instances` pipeline instances in one consumer group did with the topics.
pub struct GroupRun {
    /// From the first batch consumed until stage 1 of the group had consumed
    /// every record.
    pub wall_s: f64,
    /// Records consumed in that time (all but the first batch).
    pub timed: usize,
    /// The process's CPU until then, plus two seconds for stage 2 to catch up.
    pub cpu_s: f64,
    /// Tickets issued by the whole group once the input ran dry, by id.
    pub violation_ids: BTreeSet<String>,
    /// What the final windows of the whole group measured, one line each, sorted.
    pub windows: Vec<String>,
    /// Records the group dead-lettered: near zero, or the rate measures rejection.
    pub dead_letters: u64,
    /// Records an aligner let out before a partition that might have come first
    /// (`egret_records_unaligned_total`): the order, and so the outputs, then
    /// depended on timing.
    pub unaligned: u64,
}

impl GroupRun {
    pub fn per_s(&self) -> f64 {
        self.timed as f64 / self.wall_s
    }

    pub fn per_cpu_s(&self) -> f64 {
        per_cpu_second(self.timed, self.cpu_s)
    }
}

/// Runs `instances` pipeline instances splitting the input (`egret run --instance
/// K/N`) of a new deployment over the topics, each with its own live state, until
/// the input has been idle for a while.
async fn run_group(city: &Arc<CityModel>, pipeline: &PipelineConfig, kafka: &KafkaConfig, instances: usize, expected: usize, metrics: &PrometheusHandle) -> anyhow::Result<GroupRun> {
    let group = KafkaConfig { group_id: format!("{}group-of-{instances}", kafka.namespace), ..kafka.clone() };
    let consumed_before = counter_total(&metrics.render(), "egret_events_consumed_total");
    let unaligned_before = counter_total(&metrics.render(), "egret_records_unaligned_total");
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let spawned = Stopwatch::start();
    let mut tasks = Vec::new();
    let mut lives = Vec::new();
    for index in 0..instances as u32 {
        let live = Arc::new(LiveState::new(city.clone()));
        lives.push(live.clone());
        let (city, pipeline, group, stop) = (city.clone(), pipeline.clone(), group.clone(), stop.clone());
        let ownership = Ownership::new(index, instances as u32).context("an instance index below the count")?;
        let options = instance::RunOptions { exit_when_idle: Some(Duration::from_secs(8)), ownership, ..Default::default() };
        tasks.push(tokio::spawn(async move { instance::run(city, pipeline, &group, live, stop, &options).await }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    // Started at the first batch seen consumed (within 20 ms of it), less the
    // records of that batch, as the raw consumer's clock starts at its first
    // record. Should that first sight be most of the input, the clock started at
    // the spawn: the join is then the lesser error.
    let mut watch: Option<(Stopwatch, usize)> = None;
    let (clock, counted) = loop {
        let consumed = counter_total(&metrics.render(), "egret_events_consumed_total") - consumed_before;
        if consumed > 0.0 && watch.is_none() {
            watch = Some((Stopwatch::start(), consumed as usize));
        }
        if consumed >= expected as f64
            && let Some((started, before)) = watch.take()
        {
            let timed = expected.saturating_sub(before);
            break if timed * 2 < expected { (spawned, expected) } else { (started, timed) };
        }
        anyhow::ensure!(tasks.iter().all(|t| !t.is_finished()), "an instance stopped after the group consumed {consumed} of {expected} records");
        anyhow::ensure!(std::time::Instant::now() < deadline, "the group consumed {consumed} of {expected} records in 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (wall, cpu) = clock.read();
    // Stage 2 catches up in the next moments; its CPU belongs to the figure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, cpu_with_stage2) = clock.read();
    let mut dead_letters = 0;
    for task in tasks {
        dead_letters += task.await??.stats.rejected.values().sum::<u64>();
    }
    let violation_ids = lives.iter().flat_map(|l| l.violations(|_| true)).map(|v| v.violation_id).collect();
    // What a window measured; not its `revision`, which counts the provisional
    // publications before it, one per batch that changed it, and batches follow
    // the timing of polls.
    let measured = |w: SegmentWindow| format!("{} {} {} {} {} {} {:?}", w.segment.0, w.window_start_ms, w.sample_count, w.mean_speed_kmh, w.median_speed_kmh, w.travel_time_s, w.median_5min_kmh);
    let mut windows: Vec<String> = lives.iter().flat_map(|l| l.all_history()).map(measured).collect();
    windows.sort();
    let unaligned = (counter_total(&metrics.render(), "egret_records_unaligned_total") - unaligned_before) as u64;
    Ok(GroupRun { wall_s: wall.as_secs_f64(), cpu_s: cpu.max(cpu_with_stage2), timed: counted, violation_ids, windows, dead_letters, unaligned })
}

/// The raw consumer's rates, then one instance, then two in one group.
pub struct Comparison {
    pub events: usize,
    pub raw_per_s: f64,
    pub raw_per_cpu_s: f64,
    pub one: GroupRun,
    pub two: GroupRun,
}

pub async fn compare(city: &Arc<CityModel>, pipeline: PipelineConfig, brokers: &str, records: &[Record], metrics: &PrometheusHandle) -> anyhow::Result<Comparison> {
    let namespace = format!("bench-{}.", crate::commands::now_ms());
    let kafka = KafkaConfig { namespace: namespace.clone(), group_id: format!("{namespace}egret"), ..KafkaConfig::new(brokers) };
    eprintln!("bench: producing {} records to Kafka at {brokers} (namespace {namespace})…", records.len());
    produce(&kafka, records).await?;
    let expected = records.len();

    eprintln!("bench: raw rdkafka consume…");
    let raw_kafka = kafka.clone();
    let (raw_wall, raw_cpu) = tokio::task::spawn_blocking(move || raw_consume(&raw_kafka, expected)).await??;
    eprintln!("bench: one pipeline instance consumes the same topics…");
    let one = run_group(city, &pipeline, &kafka, 1, expected, metrics).await?;
    eprintln!("bench: two instances splitting the input (--instance 1/2 and 2/2)…");
    let two = run_group(city, &pipeline, &kafka, 2, expected, metrics).await?;
    Ok(Comparison { events: expected, raw_per_s: expected as f64 / raw_wall.as_secs_f64(), raw_per_cpu_s: per_cpu_second(expected, raw_cpu), one, two })
}
