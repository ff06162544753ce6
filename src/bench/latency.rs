//! Violation latency through the whole Kafka path: simulated traffic is written
//! to Kafka at a fixed rate (20,000 events/s by default) by a paced producer that
//! notes when it handed each event to Kafka; a pipeline instance consumes it, as
//! `egret run --kafka` does, and serves the API; a police WebSocket client
//! subscribed to `violations` notes when each ticket arrives.
//!
//! A ticket's latency is its arrival minus the moment its newest sighting (the
//! read that completed the offence) was handed to Kafka, found by the device and
//! device timestamp its evidence names. The traffic is a normal simulation
//! replayed faster than real time, so speeds and offences stay realistic while
//! the rate is what the figure asks for.

use super::measure::latency_histogram;
use crate::instance;
use anyhow::Context;
use egret_api::auth::{Role, TokenKey};
use egret_api::guard::RateLimit;
use egret_api::{ApiConfig, AppState};
use egret_ingest::kafka::{KafkaConfig, KafkaSink};
use egret_ingest::{OutRecord, Record, Sink};
use egret_model::CityModel;
use egret_pipeline::{LiveState, PipelineConfig};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// When each event was handed to Kafka, by (device id, device timestamp).
type SentAt = Arc<Mutex<HashMap<(String, i64), Instant>>>;

pub struct Latency {
    pub violations: Histogram<u64>,
    /// Tickets whose completing read was not found among the sent events.
    pub unmatched: u64,
    /// The rate the producer kept, events per second.
    pub sent_per_s: f64,
    /// Tickets in live state at the end (pushed or not).
    pub issued: usize,
}

/// The device and device timestamp of an input event, as its evidence would name them.
fn device_and_ts(payload: &[u8]) -> Option<(String, i64)> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let device = v.get("reader_id").or_else(|| v.get("camera_id"))?.as_str()?.to_owned();
    Some((device, v.get("ts_ms")?.as_i64()?))
}

/// Sends `records` at `rate` per second, in ticks of 5 ms, noting send times.
async fn produce(sink: &KafkaSink, records: &[Record], rate: f64, sent_at: &SentAt) -> anyhow::Result<f64> {
    let keys: Vec<Option<(String, i64)>> = records.iter().map(|r| device_and_ts(&r.payload)).collect();
    let start = Instant::now();
    let mut next = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while next < records.len() {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as usize).min(records.len());
        if due <= next {
            continue;
        }
        let batch: Vec<OutRecord> = records[next..due]
            .iter()
            .map(|r| OutRecord { topic: r.topic.clone(), partition: None, key: r.key.clone(), payload: r.payload.clone(), headers: Vec::new(), timestamp_ms: None })
            .collect();
        let now = Instant::now();
        {
            let mut sent = sent_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for key in keys[next..due].iter().flatten() {
                sent.insert(key.clone(), now);
            }
        }
        sink.send(batch).await.context("producing")?;
        next = due;
    }
    Ok(records.len() as f64 / start.elapsed().as_secs_f64())
}

/// Listens to the `violations` channel until `stop`, recording each new ticket's latency.
async fn listen(url: String, token: String, sent_at: SentAt, mut stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<(Histogram<u64>, u64)> {
    let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)?;
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.context("connecting the WebSocket")?;
    ws.send(Message::text(json!({"op": "auth", "token": token}).to_string())).await?;
    ws.send(Message::text(json!({"op": "subscribe", "channel": "violations"}).to_string())).await?;
    let (mut histogram, mut unmatched) = (latency_histogram(), 0);
    loop {
        let message = tokio::select! {
            m = ws.next() => m,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(message) = message else { break };
        let arrived = Instant::now();
        let Message::Text(text) = message? else { continue };
        let v: Value = serde_json::from_str(&text)?;
        // The snapshot holds tickets from before the clock started: only deltas count.
        if v["type"] != "delta" || v["channel"] != "violations" {
            continue;
        }
        let sent = sent_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for ticket in v["upserts"].as_array().into_iter().flatten() {
            let newest = ticket["evidence"]["sightings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| sent.get(&(s["device_id"].as_str()?.to_owned(), s["device_ts_ms"].as_i64()?)))
                .max();
            match newest {
                Some(at) => histogram.record(arrived.saturating_duration_since(*at).as_micros().max(1) as u64)?,
                None => unmatched += 1,
            }
        }
    }
    Ok((histogram, unmatched))
}

pub async fn run(city: &Arc<CityModel>, pipeline: PipelineConfig, brokers: &str, records: &[Record], rate: f64) -> anyhow::Result<Latency> {
    let namespace = format!("bench-latency-{}.", crate::commands::now_ms());
    let kafka = KafkaConfig { namespace: namespace.clone(), group_id: format!("{namespace}egret"), ..KafkaConfig::new(brokers) };
    instance::ensure_all_topics(&kafka).await?;
    let live = Arc::new(LiveState::new(city.clone()));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let pipeline_task = {
        let (city, kafka, live, stop) = (city.clone(), kafka.clone(), live.clone(), stop.clone());
        tokio::spawn(async move { instance::run(city, pipeline, &kafka, live, stop, None).await })
    };

    let unlimited = NonZeroU32::new(1_000_000).unwrap_or(NonZeroU32::MIN);
    let config = ApiConfig { rate: RateLimit { per_second: unlimited, burst: unlimited }, ..ApiConfig::ephemeral() };
    let token = TokenKey::from_secret(&config.token_secret).issue("bench", Role::Police, crate::commands::now_ms() / 1000, 3600);
    let state = AppState::with_config(live.clone(), None, config, None)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let api = {
        let mut stop = stop.clone();
        tokio::spawn(egret_api::serve(listener, state, async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };
    let sent_at: SentAt = Arc::new(Mutex::new(HashMap::with_capacity(records.len())));
    let listener = tokio::spawn(listen(format!("ws://{addr}/ws"), token, sent_at.clone(), stop.clone()));
    // Let the consumer group settle before the clock matters.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let sink = KafkaSink::new(&kafka)?;
    let sent_per_s = produce(&sink, records, rate, &sent_at).await?;
    sink.flush(Duration::from_secs(60))?;
    // Tickets of the last reads need the pipeline to catch up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = stop_tx.send(true);
    let (violations, unmatched) = listener.await??;
    pipeline_task.await??;
    api.await??;
    let issued = live.violations(|_| true).len();
    Ok(Latency { violations, unmatched, sent_per_s, issued })
}
