//! Two stages across instances: stage 1 writes its updates to the internal
//! repartition topic keyed by segment or lot, followed by a watermark mark to every
//! partition; stage 2 reads that topic in its own consumer group, so each segment and
//! lot has exactly one owner, and takes as its watermark the minimum over partitions
//! of the minimum over producers of their latest marks (as Flink does between
//! operators). A producer whose input ended sends a final mark of `i64::MAX`; one
//! whose process stops (its input goes on, with a successor) says it leaves.

use crate::hotlist_board::BoardFollower;
use crate::laps::Laps;
use crate::live::LiveState;
use crate::pipeline::BatchOutput;
use crate::inflight::InFlight;
use crate::runner::{Ended, Outputs, poll_or_shutdown, publish, start_publish};
use crate::stage1::{Stage1, Stage1Output};
use crate::stage2::Stage2;
use crate::checkpoint::Checkpointer;
use crate::update::{Origin, Update};
use bytes::Bytes;
use egret_ingest::{Acked, IngestError, OutRecord, Poll, Sink, Source};
use egret_model::CityModel;
use serde::{Deserialize, Serialize};
use egret_model::FastMap;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

/// The internal topic between the stages.
pub const REPARTITION_TOPIC: &str = "egret.internal.stage2";

/// One message on the repartition topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case", try_from = "crate::wire::FlatInternal")]
pub enum Internal {
    Data {
        p: u64,
        u: Update,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        o: Option<Origin>,
    },
    Mark { p: u64, wm: i64 },
    /// The producer's process stops; its input does not end (see `Marks::leave`).
    Leave { p: u64 },
}

/// Stage 1's batch as repartition records: the updates keyed by segment or lot, then a
/// mark on every partition (after the data, so a mark never overtakes it).
pub fn encode(city: &CityModel, producer: u64, out: &Stage1Output, partitions: u32) -> Vec<OutRecord> {
    let mut records: Vec<OutRecord> = out
        .updates
        .iter()
        .enumerate()
        .map(|(i, u)| {
            // Room for the largest update but a bus report's, so the buffer is not grown.
            // Writing plain numbers and strings to a Vec cannot fail.
            let mut payload = Vec::with_capacity(128);
            let _ = serde_json::to_writer(&mut payload, &Internal::Data { p: producer, u: u.clone(), o: out.origins.get(i).copied() });
            OutRecord::new(REPARTITION_TOPIC, Some(Bytes::copy_from_slice(u.key(city).as_bytes())), payload)
        })
        .collect();
    let mark = Bytes::from(serde_json::to_vec(&Internal::Mark { p: producer, wm: out.watermark_ms }).unwrap_or_default());
    records.extend((0..partitions).map(|p| OutRecord { partition: Some(p), ..OutRecord::new(REPARTITION_TOPIC, None, mark.clone()) }));
    records
}

/// A producer silent this long on a partition no longer holds it back: it stopped
/// (crashed, or its input went quiet) and will mark again before it sends data.
pub const STALE_PRODUCER: Duration = Duration::from_secs(30);

/// Stage 2's watermark from the marks it has read.
#[derive(Debug, Default)]
pub struct Marks {
    /// Per partition, per producer: latest mark and when it was last heard from.
    latest: BTreeMap<u32, FastMap<u64, (i64, Instant)>>,
    /// Per partition, the highest mark of producers that left it.
    left: BTreeMap<u32, i64>,
    assigned: Vec<u32>,
}

/// The records by which a stopping producer leaves every partition.
pub fn leave(producer: u64, partitions: u32) -> Vec<OutRecord> {
    let leave = Bytes::from(serde_json::to_vec(&Internal::Leave { p: producer }).unwrap_or_default());
    (0..partitions).map(|p| OutRecord { partition: Some(p), ..OutRecord::new(REPARTITION_TOPIC, None, leave.clone()) }).collect()
}

impl Marks {
    pub fn observe(&mut self, partition: u32, producer: u64, watermark: i64, now: Instant) {
        let entry = self.latest.entry(partition).or_default().entry(producer).or_insert((i64::MIN, now));
        *entry = (entry.0.max(watermark), now);
    }

    /// Data from a producer not yet heard from holds its partition until it marks.
    pub fn saw_data(&mut self, partition: u32, producer: u64, now: Instant) {
        let entry = self.latest.entry(partition).or_default().entry(producer).or_insert((i64::MIN, now));
        entry.1 = now;
    }

    /// A producer that stops no longer holds its partition back, but neither does its
    /// leaving finish the partition: until another producer marks it, the partition
    /// stays where the leaver's marks brought it. (A final mark of `i64::MAX` here
    /// would make every window final before the successor, restored from the
    /// leaver's checkpoint, has re-sent what came after it.)
    pub fn leave(&mut self, partition: u32, producer: u64) {
        if let Some((mark, _)) = self.latest.get_mut(&partition).and_then(|m| m.remove(&producer)) {
            let floor = self.left.entry(partition).or_insert(i64::MIN);
            *floor = (*floor).max(mark);
        }
    }

    pub fn set_assignment(&mut self, partitions: Vec<u32>) {
        if !partitions.is_empty() {
            self.assigned = partitions;
        }
    }

    /// The minimum over assigned partitions of the minimum over their live producers
    /// (where none is live, the mark the last leaver left); `i64::MIN` while nothing
    /// is known.
    pub fn watermark(&self, now: Instant) -> i64 {
        let live_mark = |p: &u32| {
            let live = self.latest.get(p).and_then(|m| m.values().filter(|(_, heard)| now.saturating_duration_since(*heard) < STALE_PRODUCER).map(|(wm, _)| *wm).min());
            live.or_else(|| self.left.get(p).copied())
        };
        self.assigned.iter().filter_map(live_mark).min().unwrap_or(i64::MIN)
    }
}

/// Per repartition partition and input partition, the origin of the last update
/// applied: stage 2's de-duplication of stage 1's replays (see `Origin`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    /// (repartition partition, input topic, input partition) → (offset, sub).
    latest: FastMap<(u32, u8, u32), (u64, u16)>,
}

impl Applied {
    /// True the first time an update of this origin arrives on `partition`.
    pub fn first_time(&mut self, partition: u32, Origin(topic, input_partition, offset, sub): Origin) -> bool {
        match self.latest.entry((partition, topic, input_partition)) {
            std::collections::hash_map::Entry::Occupied(seen) if (offset, sub) <= *seen.get() => false,
            std::collections::hash_map::Entry::Occupied(mut seen) => {
                seen.insert((offset, sub));
                true
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((offset, sub));
                true
            }
        }
    }
}

/// Saves a checkpoint when one is due, then commits the offsets it holds.
async fn checkpoint_if_due<S: Source, T: Serialize>(
    source: &mut S,
    in_flight: &mut InFlight,
    checkpoints: Option<&mut Checkpointer>,
    state: &T,
    force: bool,
) -> Result<(), IngestError> {
    if let Some(c) = checkpoints
        && (force || c.progress.due())
    {
        // The checkpoint holds every batch read so far: their outputs must be out.
        in_flight.settle_all(source).await?;
        c.save(state)?;
        source.flush_commits()?;
    }
    Ok(())
}

/// Where stage 1 writes, and who it is.
pub struct Stage1Outputs<'a, K: Sink, D: Sink> {
    /// The repartition topic, which also takes the tickets.
    pub repartition: &'a K,
    pub dead_letters: &'a D,
    /// This run's producer id in the marks.
    pub producer: u64,
    /// Partitions of the repartition topic.
    pub partitions: u32,
}

/// Stage 1 from `source` into the repartition `sink`; commits input offsets only once
/// the repartition records are acknowledged, and, when checkpointing, only once a
/// checkpoint holds the state they produced.
pub async fn run_stage1<S: Source, K: Sink, D: Sink>(
    source: &mut S,
    outputs: &Stage1Outputs<'_, K, D>,
    stage1: &mut Stage1,
    live: &LiveState,
    mut checkpoints: Option<&mut Checkpointer>,
    shutdown: impl Future<Output = ()>,
) -> Result<Ended, IngestError> {
    tokio::pin!(shutdown);
    let Stage1Outputs { repartition, dead_letters, producer, partitions } = *outputs;
    stage1.set_idle_reported(source.reports_idle());
    let mut marked = i64::MIN;
    let mut hotlists = BoardFollower::default();
    let mut laps = Laps::start("1");
    let mut in_flight = InFlight::default();
    loop {
        hotlists.sync(live.hotlists(), stage1);
        let Some(polled) = poll_or_shutdown(source, &mut shutdown).await? else {
            // This producer id ends with the process: tell stage 2 not to wait for it.
            repartition.send(leave(producer, partitions)).await?;
            in_flight.settle_all(source).await?;
            checkpoint_if_due(source, &mut in_flight, checkpoints, stage1.state(), true).await?;
            return Ok(Ended::Shutdown);
        };
        laps.lap("poll");
        let now = Instant::now();
        stage1.set_assignment(&source.assignment(), now);
        stage1.mark_drained(&source.idle_partitions());
        let (out, records) = match polled {
            Poll::Records(mut records) => {
                if let Some(c) = checkpoints.as_deref() {
                    c.progress.skip_done(&mut records);
                }
                (crate::runner::off_the_runtime(|| stage1.process(&records, now)), records)
            }
            Poll::Idle => (stage1.tick(now), Vec::new()),
            // Saved before it finishes: a restart goes on from before the end (where
            // more input may come), not from a state whose windows are all final.
            Poll::End => {
                in_flight.settle_all(source).await?;
                checkpoint_if_due(source, &mut in_flight, checkpoints.as_deref_mut(), stage1.state(), true).await?;
                let out = stage1.finish();
                // Tickets held until no late read could change them go out now.
                live.apply_tickets(&out.tickets);
                let mut last = crate::runner::ticket_records(&out.tickets);
                last.extend(encode(stage1.city(), producer, &out, partitions));
                repartition.send(last).await?;
                return Ok(Ended::InputEnd);
            }
        };
        laps.batch(records.len());
        laps.lap("process");
        let letters = BatchOutput { dead_letters: out.dead_letters.clone(), ..Default::default() };
        let mut acks: Vec<Acked> = crate::runner::start_dead_letters(&letters, dead_letters).await?.into_iter().collect();
        // Tickets are complete in stage 1 (keyed by plate): they go straight out,
        // through the same producer, before the input offsets are committed.
        // This instance's API serves the tickets of the plates it holds.
        live.apply_tickets(&out.tickets);
        let mut to_send = crate::runner::ticket_records(&out.tickets);
        // While idle the watermark rarely moves: mark only when it did, or with data.
        if !out.updates.is_empty() || out.watermark_ms != marked {
            to_send.extend(encode(stage1.city(), producer, &out, partitions));
            marked = out.watermark_ms;
        }
        if !to_send.is_empty() {
            acks.push(repartition.start_send(to_send).await?);
        }
        laps.lap("send");
        if let Some(c) = checkpoints.as_deref_mut() {
            c.progress.advance(&records);
        }
        let idle = records.is_empty();
        in_flight.push(&records, acks);
        // With no input waiting, nothing is gained by leaving acknowledgements open.
        if idle { in_flight.settle_all(source).await? } else { in_flight.settle(source).await? }
        checkpoint_if_due(source, &mut in_flight, checkpoints.as_deref_mut(), stage1.state(), false).await?;
        laps.lap("commit");
    }
}

/// Stage 2's checkpointed state: the stage and what it has applied.
pub type Stage2Saved = (crate::stage2::Stage2State, Applied);

/// Stage 2 from the repartition topic into live state and the derived topics.
pub async fn run_stage2<S: Source, D: Sink, E: Sink>(
    source: &mut S,
    outputs: &Outputs<'_, D, E>,
    stage2: &mut Stage2,
    applied: &mut Applied,
    live: &LiveState,
    mut checkpoints: Option<&mut Checkpointer>,
    shutdown: impl Future<Output = ()>,
) -> Result<Ended, IngestError> {
    tokio::pin!(shutdown);
    let mut marks = Marks::default();
    let mut laps = Laps::start("2");
    let mut in_flight = InFlight::default();
    loop {
        let Some(polled) = poll_or_shutdown(source, &mut shutdown).await? else {
            in_flight.settle_all(source).await?;
            checkpoint_if_due(source, &mut in_flight, checkpoints, &(stage2.state(), &*applied), true).await?;
            return Ok(Ended::Shutdown);
        };
        laps.lap("poll");
        marks.set_assignment(source.assignment().into_iter().map(|(_, p)| p).collect());
        let records = match polled {
            Poll::Records(mut records) => {
                if let Some(c) = checkpoints.as_deref() {
                    c.progress.skip_done(&mut records);
                }
                records
            }
            Poll::Idle => Vec::new(),
            Poll::End => {
                in_flight.settle_all(source).await?;
                checkpoint_if_due(source, &mut in_flight, checkpoints.as_deref_mut(), &(stage2.state(), &*applied), true).await?;
                let done = stage2.finish();
                let out = BatchOutput { windows: done.windows, lots: done.lots, incidents: done.incidents, transit: done.transit, watermark_ms: i64::MAX, ..Default::default() };
                publish(&out, outputs, live).await?;
                return Ok(Ended::InputEnd);
            }
        };
        let now = Instant::now();
        let mut updates = Vec::with_capacity(records.len());
        for r in &records {
            match serde_json::from_slice::<Internal>(&r.payload) {
                Ok(Internal::Data { p, u, o }) if u.is_plausible() => {
                    marks.saw_data(r.partition, p, now);
                    // A replay of stage 1 after its restore: applied already.
                    if o.is_none_or(|o| applied.first_time(r.partition, o)) {
                        updates.push(u);
                    }
                }
                Ok(Internal::Data { u, .. }) => tracing::error!("implausible update on {REPARTITION_TOPIC}/{}@{}: {u:?}", r.partition, r.offset),
                Ok(Internal::Mark { p, wm }) => marks.observe(r.partition, p, wm, now),
                Ok(Internal::Leave { p }) => marks.leave(r.partition, p),
                // Only Egret writes this topic: a bad record is a bug, not input.
                Err(e) => tracing::error!("unreadable record on {REPARTITION_TOPIC}/{}@{}: {e}", r.partition, r.offset),
            }
        }
        stage2.apply(&updates);
        let changed = stage2.advance(marks.watermark(now));
        let out = BatchOutput { windows: changed.windows, lots: changed.lots, incidents: changed.incidents, transit: changed.transit, watermark_ms: stage2.watermark(), ..Default::default() };
        laps.batch(records.len());
        laps.lap("process");
        let acks = start_publish(&out, outputs, live).await?;
        laps.lap("send");
        if let Some(c) = checkpoints.as_deref_mut() {
            c.progress.advance(&records);
        }
        let idle = records.is_empty();
        in_flight.push(&records, acks);
        if idle { in_flight.settle_all(source).await? } else { in_flight.settle(source).await? }
        checkpoint_if_due(source, &mut in_flight, checkpoints.as_deref_mut(), &(stage2.state(), &*applied), false).await?;
        laps.lap("commit");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_producer_on_the_slowest_partition_sets_the_watermark() {
        let t = Instant::now();
        let mut m = Marks::default();
        m.set_assignment(vec![0, 1]);
        assert_eq!(m.watermark(t), i64::MIN);
        m.observe(0, 7, 100, t);
        m.observe(1, 7, 120, t);
        assert_eq!(m.watermark(t), 100);
        m.saw_data(0, 9, t);
        assert_eq!(m.watermark(t), i64::MIN, "a new producer holds its partition until it marks");
        m.observe(0, 9, 150, t);
        m.observe(0, 7, 130, t);
        assert_eq!(m.watermark(t), 120);
        m.observe(0, 7, i64::MAX, t);
        m.observe(1, 7, i64::MAX, t);
        m.observe(1, 9, i64::MAX, t);
        m.observe(0, 9, i64::MAX, t);
        assert_eq!(m.watermark(t), i64::MAX, "every producer finished");
    }

    #[test]
    fn a_producer_that_leaves_holds_its_partitions_at_its_last_mark_until_a_successor_marks() {
        let t = Instant::now();
        let mut m = Marks::default();
        m.set_assignment(vec![0, 1]);
        m.observe(0, 7, 100, t);
        m.observe(1, 7, 120, t);
        m.leave(0, 7);
        m.leave(1, 7);
        assert_eq!(m.watermark(t), 100, "left, not finished: the windows after its marks are still open");
        m.saw_data(0, 9, t);
        assert_eq!(m.watermark(t), i64::MIN, "the successor holds the partition it sends to until it marks");
        m.observe(0, 9, 90, t);
        assert_eq!(m.watermark(t), 90, "the successor, restored from an older checkpoint, marks from where it is");
        m.observe(1, 9, 130, t);
        m.observe(0, 9, 140, t);
        assert_eq!(m.watermark(t), 130);
    }

    #[test]
    fn a_producer_that_went_silent_stops_holding_the_watermark() {
        let t = Instant::now();
        let mut m = Marks::default();
        m.set_assignment(vec![0]);
        m.observe(0, 1, 100, t);
        m.observe(0, 2, 500, t);
        assert_eq!(m.watermark(t), 100);
        let later = t + STALE_PRODUCER + Duration::from_secs(1);
        m.observe(0, 2, 600, later);
        assert_eq!(m.watermark(later), 600, "producer 1 crashed long ago");
    }

    #[test]
    fn internal_messages_round_trip_exactly() {
        let u = Update::Traversal { segment: 3, enter_ms: 1, exit_ms: 90_001 };
        let bytes = serde_json::to_vec(&Internal::Data { p: 42, u: u.clone(), o: Some(Origin(1, 2, 3, 4)) }).expect("encode");
        assert_eq!(serde_json::from_slice::<Internal>(&bytes).expect("decode"), Internal::Data { p: 42, u, o: Some(Origin(1, 2, 3, 4)) });
    }

    #[test]
    fn an_update_is_applied_once_per_origin_whatever_replays_it() {
        let mut applied = Applied::default();
        assert!(applied.first_time(0, Origin(0, 3, 0, 0)), "offset 0 is an offset like any other");
        assert!(applied.first_time(0, Origin(0, 3, 0, 1)));
        assert!(applied.first_time(0, Origin(0, 3, 7, 0)));
        assert!(!applied.first_time(0, Origin(0, 3, 0, 1)), "a replay of an earlier record");
        assert!(!applied.first_time(0, Origin(0, 3, 7, 0)), "the same update again");
        assert!(applied.first_time(1, Origin(0, 3, 7, 0)), "another repartition partition keeps its own count");
        assert!(applied.first_time(0, Origin(1, 3, 7, 0)), "another input topic too");
        assert!(applied.first_time(0, Origin(0, 3, 8, 0)));
    }
}
