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
//!
//! The consumer group takes seconds to form, so the first events go as an untimed
//! warm-up; the clock starts when the pipeline has shown them.
//!
//! The same client follows `segments`. A plate read that completes a traversal
//! (its plate's previous read was at the segment's other end) waits until a
//! pushed update of that segment shows a window at or after the read's minute;
//! its provisional-update latency is that push's arrival minus the read's
//! hand-off. Reads the pipeline would not count (a bus, another tag, an
//! implausible speed) are not timed; one it refuses all the same (a late read) is
//! resolved by the next update of its window, so this errs on the slow side.

use super::laps::LapRecorder;
use super::measure::{latency_histogram, lock};
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
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// When each event was handed to Kafka, by (device id, device timestamp).
type SentAt = Arc<Mutex<HashMap<(String, i64), Instant>>>;
/// Reads that complete a traversal, per segment id: (hand-off, read time), not yet
/// seen in a pushed update.
type Unreflected = Arc<Mutex<HashMap<String, VecDeque<(Instant, i64)>>>>;

/// What the producer notes and the listener looks up.
#[derive(Clone, Default)]
struct Notes {
    sent_at: SentAt,
    unreflected: Unreflected,
}


/// For each record, the segment whose traversal it completes, if the pipeline
/// would count it: its plate was last read, with the same tag, at the segment's
/// from-gantry, at a plausible speed (`matcher::PLAUSIBLE_KMH`), and it is not a
/// bus (buses dwell at stops: their drives are not the traffic's speed). A read
/// the pipeline does not count changes no window, and would wait for the next
/// drive's update (seconds).
fn completed_segments(city: &CityModel, records: &[Record]) -> Vec<Option<String>> {
    let by_ends: HashMap<(&str, &str), (&str, u32)> =
        city.segments.iter().map(|s| ((s.from_reader_id.as_str(), s.to_reader_id.as_str()), (s.segment_id.as_str(), s.length_m))).collect();
    // Per plate: the reader, tag and time of its last read.
    let mut last: HashMap<String, (String, Option<String>, i64)> = HashMap::new();
    records
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.payload).ok()?;
            let (plate, reader, ts) = (v.get("plate")?.as_str()?, v.get("reader_id")?.as_str()?, v.get("ts_ms")?.as_i64()?);
            let tag = v.get("tag_id").and_then(Value::as_str).map(str::to_owned);
            let (previous, previous_tag, previous_ts) = last.insert(plate.to_owned(), (reader.to_owned(), tag.clone(), ts))?;
            let (segment, length_m) = by_ends.get(&(previous.as_str(), reader))?;
            let kmh = f64::from(*length_m) / ((ts - previous_ts) as f64 / 1000.0) * 3.6;
            let bus = v.get("vehicle_class").and_then(Value::as_str) == Some("bus");
            (!bus && previous_tag == tag && egret_pipeline::matcher::PLAUSIBLE_KMH.contains(&kmh)).then(|| (*segment).to_owned())
        })
        .collect()
}

pub struct Latency {
    pub violations: Histogram<u64>,
    pub segment_updates: Histogram<u64>,
    /// Traversal-completing reads no pushed update showed before the end.
    pub unreflected: usize,
    /// Tickets whose completing read was not found among the sent events.
    pub unmatched: u64,
    /// The rate the producer kept, events per second.
    pub sent_per_s: f64,
    /// Tickets in live state at the end (pushed or not).
    pub issued: usize,
    /// Each stage's loop phases over the timed part, one line each.
    pub phases: Vec<String>,
}

/// The device and device timestamp of an input event, as its evidence would name them.
fn device_and_ts(payload: &[u8]) -> Option<(String, i64)> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let device = v.get("reader_id").or_else(|| v.get("camera_id"))?.as_str()?.to_owned();
    Some((device, v.get("ts_ms")?.as_i64()?))
}

/// Sends `records` at `rate` per second, in ticks of 5 ms, noting send times.
async fn produce(sink: &KafkaSink, city: &CityModel, records: &[Record], rate: f64, notes: &Notes) -> anyhow::Result<f64> {
    let keys: Vec<Option<(String, i64)>> = records.iter().map(|r| device_and_ts(&r.payload)).collect();
    let segments = completed_segments(city, records);
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
            // The simulation's delivery time as the record's time: the decoder
            // judges device clocks against it, and the replay runs ahead of now.
            .map(|r| OutRecord { topic: r.topic.clone(), partition: None, key: r.key.clone(), payload: r.payload.clone(), headers: Vec::new(), timestamp_ms: r.timestamp_ms })
            .collect();
        let now = Instant::now();
        {
            let (mut sent, mut unreflected) = (lock(&notes.sent_at), lock(&notes.unreflected));
            for i in next..due {
                if let Some(key) = &keys[i] {
                    sent.insert(key.clone(), now);
                    if let Some(segment) = &segments[i] {
                        unreflected.entry(segment.clone()).or_default().push_back((now, key.1));
                    }
                }
            }
        }
        sink.send(batch).await.context("producing")?;
        next = due;
    }
    Ok(records.len() as f64 / start.elapsed().as_secs_f64())
}

/// What the listener measured.
struct Heard {
    violations: Histogram<u64>,
    unmatched: u64,
    segment_updates: Histogram<u64>,
}

impl Heard {
    fn ticket(&mut self, ticket: &Value, arrived: Instant, sent: &HashMap<(String, i64), Instant>) -> anyhow::Result<()> {
        let newest = ticket["evidence"]["sightings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| sent.get(&(s["device_id"].as_str()?.to_owned(), s["device_ts_ms"].as_i64()?)))
            .max();
        match newest {
            Some(at) => self.violations.record(arrived.saturating_duration_since(*at).as_micros().max(1) as u64)?,
            None => self.unmatched += 1,
        }
        Ok(())
    }

    /// Resolves the reads of a segment up to the end of the window the update shows.
    /// Reads wait in hand-off order, not event-time order (a late delivery, a
    /// skewed clock): one of a later window must not hold back those behind it,
    /// or they would wait for the next window's update (up to 3.25 s before).
    fn segment(&mut self, update: &Value, arrived: Instant, window_ms: i64, unreflected: &mut HashMap<String, VecDeque<(Instant, i64)>>) -> anyhow::Result<()> {
        let (Some(id), Some(start)) = (update["segment_id"].as_str(), update["window_start_ms"].as_i64()) else { return Ok(()) };
        let Some(queue) = unreflected.get_mut(id) else { return Ok(()) };
        let mut i = 0;
        // Those handed off after this push arrived (and all behind them) wait on.
        while let Some(&(at, ts)) = queue.get(i).filter(|(at, _)| *at <= arrived) {
            if ts >= start + window_ms {
                i += 1;
                continue;
            }
            self.segment_updates.record(arrived.saturating_duration_since(at).as_micros().max(1) as u64)?;
            queue.remove(i);
        }
        Ok(())
    }
}

/// Follows `violations` and `segments` until `stop`, timing what each push shows.
async fn listen(url: String, token: String, notes: Notes, window_ms: i64, mut stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<Heard> {
    let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)?;
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.context("connecting the WebSocket")?;
    ws.send(Message::text(json!({"op": "auth", "token": token}).to_string())).await?;
    for channel in ["violations", "segments"] {
        ws.send(Message::text(json!({"op": "subscribe", "channel": channel}).to_string())).await?;
    }
    let mut heard = Heard { violations: latency_histogram(), unmatched: 0, segment_updates: latency_histogram() };
    loop {
        let message = tokio::select! {
            m = ws.next() => m,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(message) = message else { break };
        let arrived = Instant::now();
        let Message::Text(text) = message? else { continue };
        let v: Value = serde_json::from_str(&text)?;
        // Snapshots hold what was there before the clock started: deltas only.
        if v["type"] != "delta" {
            continue;
        }
        let upserts = v["upserts"].as_array().into_iter().flatten();
        if v["channel"] == "violations" {
            let sent = lock(&notes.sent_at);
            for ticket in upserts {
                heard.ticket(ticket, arrived, &sent)?;
            }
        } else if v["channel"] == "segments" {
            let mut unreflected = lock(&notes.unreflected);

            for update in upserts {
                heard.segment(update, arrived, window_ms, &mut unreflected)?;
            }
        }
    }
    Ok(heard)
}

pub async fn run(city: &Arc<CityModel>, pipeline: PipelineConfig, brokers: &str, records: &[Record], rate: f64) -> anyhow::Result<Latency> {
    let namespace = format!("bench-latency-{}.", crate::commands::now_ms());
    let kafka = KafkaConfig { namespace: namespace.clone(), group_id: format!("{namespace}egret"), ..KafkaConfig::new(brokers) };
    instance::ensure_all_topics(&kafka).await?;
    let laps = LapRecorder::installed();
    let live = Arc::new(LiveState::new(city.clone()));
    let window_ms = pipeline.window_ms;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let pipeline_task = {
        let (city, kafka, live, stop) = (city.clone(), kafka.clone(), live.clone(), stop.clone());
        tokio::spawn(async move { instance::run(city, pipeline, &kafka, live, stop, &instance::RunOptions::default()).await })
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
    let notes = Notes::default();
    let listener = tokio::spawn(listen(format!("ws://{addr}/ws"), token, notes.clone(), window_ms, stop.clone()));
    // The consumer groups (stage 1's, and stage 2's on the repartition topic)
    // take seconds to form: a warm-up of the first events goes first, untimed,
    // and the clock starts once stage 2 has put speeds in live state.
    let sink = KafkaSink::new(&kafka)?;
    // Three simulated minutes: enough for vehicles to pass two gantries.
    let first_ms = records.first().and_then(|r| r.timestamp_ms).unwrap_or(0);
    let warm_up_len = records.iter().take_while(|r| r.timestamp_ms.unwrap_or(0) < first_ms + 180_000).count();
    let (warm_up, timed) = records.split_at(warm_up_len);
    produce(&sink, city, warm_up, f64::MAX, &Notes::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while live.snapshot().latest.iter().all(Option::is_none) {
        anyhow::ensure!(Instant::now() < deadline, "the pipeline instance showed no speeds within 2 minutes of the warm-up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Until it has caught up with the warm-up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    laps.inspect(|l| l.clear());
    let sent_per_s = produce(&sink, city, timed, rate, &notes).await?;
    sink.flush(Duration::from_secs(60))?;
    // Tickets of the last reads need the pipeline to catch up. The loop phases are
    // read after the first second of that: the rest would add idle polls of a
    // pipeline with no more input, which is not the rate the figure is at.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let phases = laps.map(LapRecorder::report).unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let _ = stop_tx.send(true);
    let heard = listener.await??;
    pipeline_task.await??;
    api.await??;
    let issued = live.violations(|_| true).len();
    let unreflected = lock(&notes.unreflected).values().map(VecDeque::len).sum();
    Ok(Latency { violations: heard.violations, unmatched: heard.unmatched, segment_updates: heard.segment_updates, unreflected, sent_per_s, issued, phases })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(reader: &str, plate: &str, tag: &str, class: &str, ts_ms: i64) -> Record {
        let payload = json!({"event_id": format!("{reader}-{ts_ms}"), "reader_id": reader, "plate": plate, "tag_id": tag, "vehicle_class": class, "ts_ms": ts_ms});
        Record { topic: "egret.plate-reads".into(), partition: 0, offset: 0, key: None, payload: payload.to_string().into_bytes().into(), headers: Vec::new(), timestamp_ms: Some(ts_ms) }
    }

    #[test]
    fn only_reads_the_pipeline_would_count_are_timed() {
        let city = crate::load_city(None).expect("the repo's city data");
        let s = &city.segments[0];
        let (from, to, id) = (s.from_reader_id.as_str(), s.to_reader_id.as_str(), s.segment_id.clone());
        // The segment at 60 km/h, and at 20 times that.
        let (t0, drive, dash) = (1_795_995_900_000, i64::from(s.length_m) * 60, i64::from(s.length_m) * 3);
        let records = [
            read(from, "闽D10001", "E1", "car", t0),
            read(to, "闽D10001", "E1", "car", t0 + drive),
            read(from, "闽D10002", "E2", "bus", t0),
            read(to, "闽D10002", "E2", "bus", t0 + drive),
            read(from, "闽D10003", "E3", "car", t0),
            read(to, "闽D10003", "E4", "car", t0 + drive),
            read(from, "闽D10004", "E5", "car", t0),
            read(to, "闽D10004", "E5", "car", t0 + dash),
        ];
        let completed = completed_segments(&city, &records);
        assert_eq!(completed, vec![None, Some(id), None, None, None, None, None, None], "a car; not a bus, another tag, 1,200 km/h");
    }

    #[test]
    fn a_read_of_a_later_window_does_not_hold_back_the_reads_behind_it() {
        let mut heard = Heard { violations: latency_histogram(), unmatched: 0, segment_updates: latency_histogram() };
        let t0 = Instant::now();
        let (minute, next_minute) = (60_000, 120_000);
        // Handed off in this order: a read of the next minute, then one of this minute.
        let mut unreflected = HashMap::from([("S1".to_owned(), VecDeque::from([(t0, next_minute + 5), (t0, minute + 5)]))]);
        let update = json!({"segment_id": "S1", "window_start_ms": minute});
        heard.segment(&update, t0 + Duration::from_millis(20), 60_000, &mut unreflected).expect("record");
        assert_eq!(heard.segment_updates.len(), 1, "this minute's read is shown by this minute's update");
        assert_eq!(unreflected["S1"], VecDeque::from([(t0, next_minute + 5)]), "the next minute's waits for its own");
        // A read handed off after an update arrived is not shown by it.
        unreflected.get_mut("S1").expect("queue").push_back((t0 + Duration::from_secs(1), minute + 6));
        heard.segment(&update, t0 + Duration::from_millis(30), 60_000, &mut unreflected).expect("record");
        assert_eq!((heard.segment_updates.len(), unreflected["S1"].len()), (1, 2));
    }
}
