//! Drives a `Pipeline` from any `Source`: poll a batch, process it, publish to live
//! state, dead-letter the rejects, then commit the offsets, in that order, so a
//! committed offset never runs ahead of the state it produced.

use crate::hotlist_board::BoardFollower;
use crate::live::LiveState;
use crate::pipeline::{BatchOutput, Pipeline};
use crate::DLQ_TOPIC;
use crate::parking::LotState;
use crate::window::SegmentWindow;
use bytes::Bytes;
use serde::Serialize;
use egret_ingest::{Acked, IngestError, OutRecord, Poll, Sink, Source};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// Records asked of the source per poll: large enough to amortise, small enough to
/// keep provisional updates frequent.
pub const BATCH: usize = 2048;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The input was finite and is fully processed.
    InputEnd,
    Shutdown,
    /// Stopped at the cut it was given (`cut`), its state saved there.
    Cut,
}

/// Where a run's outputs go besides live state.
pub struct Outputs<'a, D: Sink, E: Sink> {
    /// Rejected input, with reason headers (`egret.dlq`).
    pub dead_letters: &'a D,
    /// Derived topics (`egret.segment-speeds`, …), keyed for compaction.
    pub derived: &'a E,
}

/// Runs until the source ends or `shutdown` resolves.
pub async fn run<S: Source, D: Sink, E: Sink>(
    source: &mut S,
    outputs: &Outputs<'_, D, E>,
    pipeline: &mut Pipeline,
    live: &LiveState,
    shutdown: impl Future<Output = ()>,
) -> Result<Ended, IngestError> {
    tokio::pin!(shutdown);
    pipeline.set_idle_reported(source.reports_idle());
    let mut hotlists = BoardFollower::default();
    loop {
        let Some(polled) = poll_or_shutdown(source, &mut shutdown).await? else { return Ok(Ended::Shutdown) };
        hotlists.sync(live.hotlists(), pipeline.stage1_mut());
        match polled {
            Poll::Records(records) => {
                pipeline.set_assignment(&source.assignment(), Instant::now());
                pipeline.mark_drained(&source.idle_partitions());
                let out = off_the_runtime(|| pipeline.process(&records, Instant::now()));
                publish(&out, outputs, live).await?;
                commit_batch(source, &records)?;
            }
            Poll::Idle => {
                pipeline.set_assignment(&source.assignment(), Instant::now());
                pipeline.mark_drained(&source.idle_partitions());
                publish(&pipeline.tick(Instant::now()), outputs, live).await?;
            }
            Poll::End => {
                publish(&pipeline.finish(), outputs, live).await?;
                return Ok(Ended::InputEnd);
            }
        }
    }
}

/// Runs a batch's CPU-bound work so that it does not hold up the other tasks of a
/// multi-threaded runtime: `egret demo` and `egret run` serve the API from the
/// same runtime, and a request queued on this worker would otherwise wait the whole
/// batch (tens of milliseconds). A current-thread runtime (unit tests) has no other
/// worker to hand them to, so there the work just runs.
pub(crate) fn off_the_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// The topic of published segment windows.
pub const SEGMENT_SPEEDS_TOPIC: &str = "egret.segment-speeds";
/// The topic of published lot occupancy.
pub const PARKING_TOPIC: &str = "egret.parking";
/// The topic of tickets, keyed by `violation_id` (police only).
pub const VIOLATIONS_TOPIC: &str = "egret.violations";
/// Incidents as they open and clear, keyed by `incident_id`.
pub const INCIDENTS_TOPIC: &str = "egret.incidents";
/// Bus positions and predictions, keyed by `bus_id`.
pub const BUS_STATUS_TOPIC: &str = "egret.bus-status";
/// Headway events and trips that never ran, keyed by `route_id`.
pub const HEADWAYS_TOPIC: &str = "egret.headways";
/// Possible hotlist hits for a person to check (police only).
pub const HOTLIST_HITS_TOPIC: &str = "egret.hotlist-hits";

#[derive(Serialize)]
struct LotUpdate<'a> {
    lot_id: &'a str,
    #[serde(flatten)]
    state: &'a LotState,
}

#[derive(Serialize)]
struct SegmentSpeed<'a> {
    segment_id: &'a str,
    #[serde(flatten)]
    window: &'a SegmentWindow,
}

/// The next batch from `source`, or `None` once `shutdown` has resolved (checked
/// first, so a busy source cannot delay a stop).
pub(crate) async fn poll_or_shutdown<S: Source, F: Future<Output = ()>>(
    source: &mut S,
    shutdown: &mut Pin<&mut F>,
) -> Result<Option<Poll>, IngestError> {
    tokio::select! {
        biased;
        _ = shutdown.as_mut() => Ok(None),
        polled = source.poll(BATCH) => polled.map(Some),
    }
}

/// Commits, per partition, the last offset of a fully processed batch.
pub(crate) fn commit_batch<S: Source>(source: &mut S, records: &[egret_ingest::Record]) -> Result<(), IngestError> {
    for (topic, partition, offset) in last_offsets(records) {
        source.commit(topic, partition, offset)?;
    }
    Ok(())
}

/// The last offset of each (topic, partition) among `records`: what committing
/// them means.
pub(crate) fn last_offsets(records: &[egret_ingest::Record]) -> Vec<(&str, u32, u64)> {
    let mut last: BTreeMap<(&str, u32), u64> = BTreeMap::new();
    for r in records {
        let at = last.entry((r.topic.as_str(), r.partition)).or_default();
        *at = (*at).max(r.offset);
    }
    last.into_iter().map(|((topic, partition), offset)| (topic, partition, offset)).collect()
}

/// A derived-topic record: JSON of `value`, keyed by the entity id for compaction.
fn keyed_json<T: Serialize>(topic: &str, key: &str, value: &T) -> OutRecord {
    OutRecord::new(topic, Some(Bytes::copy_from_slice(key.as_bytes())), serde_json::to_vec(value).unwrap_or_default())
}

/// Applies a batch to live state and sends its windows, lots and dead letters on.
pub(crate) async fn publish<D: Sink, E: Sink>(out: &BatchOutput, outputs: &Outputs<'_, D, E>, live: &LiveState) -> Result<(), IngestError> {
    for ack in start_publish(out, outputs, live).await? {
        ack.await?;
    }
    Ok(())
}

/// `publish` without waiting for the acknowledgements, which it returns.
pub(crate) async fn start_publish<D: Sink, E: Sink>(out: &BatchOutput, outputs: &Outputs<'_, D, E>, live: &LiveState) -> Result<Vec<Acked>, IngestError> {
    live.apply(out);
    let now_ms = egret_model::time::now_ms();
    for w in out.windows.iter().filter(|w| w.is_final) {
        metrics::histogram!("egret_window_final_delay_seconds").record(delay_seconds(now_ms, w.window_end_ms));
    }
    let city = live.city();
    let mut derived: Vec<OutRecord> = out
        .windows
        .iter()
        .map(|w| {
            let segment_id = city.segment(w.segment).segment_id.as_str();
            keyed_json(SEGMENT_SPEEDS_TOPIC, segment_id, &SegmentSpeed { segment_id, window: w })
        })
        .collect();
    derived.extend(out.lots.iter().map(|l| {
        let lot_id = city.lots[l.lot as usize].lot_id.as_str();
        keyed_json(PARKING_TOPIC, lot_id, &LotUpdate { lot_id, state: l })
    }));
    derived.extend(ticket_records(&out.tickets));
    derived.extend(out.incidents.iter().map(|i| keyed_json(INCIDENTS_TOPIC, &i.incident_id, i)));
    derived.extend(out.transit.statuses.iter().map(|s| keyed_json(BUS_STATUS_TOPIC, &s.bus_id, s)));
    derived.extend(out.transit.events.iter().map(|e| {
        let route = match e {
            crate::transit::TransitEvent::Headway { route_id, .. } | crate::transit::TransitEvent::GhostTrip { route_id, .. } => route_id,
        };
        keyed_json(HEADWAYS_TOPIC, route, e)
    }));
    let mut acks = Vec::new();
    if !derived.is_empty() {
        acks.push(outputs.derived.start_send(derived).await?);
    }
    acks.extend(start_dead_letters(out, outputs.dead_letters).await?);
    Ok(acks)
}

/// Tickets keyed by their deterministic id, so a replay's repeats compact away and
/// every consumer can drop a ticket it already holds.
pub(crate) fn ticket_records(tickets: &crate::enforce::Tickets) -> Vec<OutRecord> {
    let mut out: Vec<OutRecord> = tickets.violations.iter().map(|v| keyed_json(VIOLATIONS_TOPIC, &v.violation_id, v)).collect();
    out.extend(tickets.possible_hits.iter().map(|h| keyed_json(HOTLIST_HITS_TOPIC, &h.listed_plate, h)));
    let now_ms = egret_model::time::now_ms();
    for v in &tickets.violations {
        metrics::counter!("egret_violations_total", "kind" => v.kind.as_str()).increment(1);
        let evidence_ms = v.evidence.sightings.iter().map(|s| s.ts_ms).max().unwrap_or(v.ts_ms);
        metrics::histogram!("egret_violation_delay_seconds", "kind" => v.kind.as_str()).record(delay_seconds(now_ms, evidence_ms));
    }
    out
}

/// Wall clock minus event time, in seconds, never negative: how long after its last
/// piece of evidence a ticket went out, or after its end a window was final (the
/// allowed lateness included). Live, that is the latency operators watch; in a
/// replay of old input it is as large as the input is old, and an accelerated
/// replay, ahead of the wall clock, reads 0.
fn delay_seconds(now_ms: i64, event_ms: i64) -> f64 {
    now_ms.saturating_sub(event_ms).max(0) as f64 / 1000.0
}

/// Hands rejected records to the dead-letter sink with the contract's headers;
/// returns their acknowledgement.
pub(crate) async fn start_dead_letters<D: Sink>(out: &BatchOutput, dead_letters: &D) -> Result<Option<Acked>, IngestError> {
    if out.dead_letters.is_empty() {
        return Ok(None);
    }
    let mut by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
    let letters = out
        .dead_letters
        .iter()
        .map(|d| {
            *by_reason.entry(d.reject.reason.code()).or_default() += 1;
            let mut r = OutRecord::new(DLQ_TOPIC, d.record.key.clone(), d.record.payload.clone());
            r.headers = vec![
                ("egret-error".into(), d.reject.reason.code().as_bytes().to_vec()),
                ("egret-error-detail".into(), d.reject.detail.as_bytes().to_vec()),
                ("egret-source-topic".into(), d.record.topic.as_bytes().to_vec()),
                ("egret-source-partition".into(), d.record.partition.to_string().into_bytes()),
                ("egret-source-offset".into(), d.record.offset.to_string().into_bytes()),
            ];
            r
        })
        .collect();
    for (reason, n) in by_reason {
        metrics::counter!("egret_dead_letters_total", "reason" => reason).increment(n);
    }
    dead_letters.start_send(letters).await.map(Some)
}
