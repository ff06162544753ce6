//! Two stages across instances: stage 1 writes its updates to the internal
//! repartition topic, on the partition of their segment, lot or route, followed by
//! a watermark mark to every partition; stage 2 reads that topic in its own consumer
//! group and keeps the partitions its instance owns (`ownership`), so each segment
//! and lot has exactly one owner, and takes as its watermark the minimum over
//! partitions of the minimum over stage-1 instances of their latest marks (as
//! Flink does between operators; see `marks`). A producer whose input ended sends
//! a final mark of `i64::MAX`.
//!
//! A batch's updates for one partition travel together in a few messages, the
//! last carrying the mark: a message per update cost more in the producer, the
//! broker and the consumer than the update's own work in stage 2.

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
use crate::cut::Cut;
use crate::marks::{Applied, Marks, Speakers};
use crate::ownership::Ownership;
use egret_ingest::{Acked, IngestError, OutRecord, Poll, Sink, Source};
use egret_model::CityModel;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::{Duration, Instant};

/// The internal topic between the stages of the pipeline instances of consumer
/// group `group`: a deployment's own, as Kafka Streams names its repartition
/// topics after the application, so that two deployments in one cluster (or a
/// benchmark's runs) never read each other's updates and marks.
pub fn repartition_topic(group: &str) -> String {
    format!("egret.internal.stage2.{group}")
}

/// The repartition partition of a segment, lot or route id (`Update::key`), as the
/// producer's `fnv1a` partitioner would choose it: where stage 1 sends its updates,
/// and so which instance's stage 2 keeps it.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    egret_ingest::partition_for(Some(key.as_bytes()), partitions, 0)
}

/// One message on the repartition topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case", try_from = "crate::wire::FlatInternal")]
pub enum Internal {
    /// One update: what versions before `Batch` wrote, still read from the topic
    /// they left behind (it keeps a day).
    Data {
        p: u64,
        u: Update,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        o: Option<Origin>,
    },
    /// A mark alone, as versions before `Batch` wrote it.
    Mark { p: u64, wm: i64 },
    /// The producer's process stops; its input does not end. What versions before
    /// marks were kept per instance wrote; read and ignored (see `Marks`).
    Leave { p: u64 },
    /// Updates of one producer's batch for this partition, in order, as `Data`
    /// would carry them one by one; the batch's last message for the partition
    /// also carries its mark, applied after the updates.
    Batch {
        p: u64,
        us: Vec<Entry>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wm: Option<i64>,
        /// The producer's index among instances splitting the input (`ownership`);
        /// absent for the first, and in what older versions wrote.
        #[serde(default, skip_serializing_if = "is_first")]
        i: u32,
        /// How many instances split the input; absent for one. Stage 2 passes over
        /// batches of another split: left on the topic from before the deployment
        /// changed N, they are replayed by the new split itself.
        #[serde(skip_serializing_if = "is_one")]
        n: u32,
    },
    /// Instance `i` of `n` stopped at the cut at `at` (`cut`), after everything
    /// it sent before.
    Cut { p: u64, at: i64, i: u32, n: u32 },
}

fn is_first(instance: &u32) -> bool {
    *instance == 0
}

fn is_one(count: &u32) -> bool {
    *count == 1
}

/// One update of a `Batch`, with its origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub u: Update,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub o: Option<Origin>,
}

/// Most updates in one repartition message.
pub const UPDATES_PER_MESSAGE: usize = 1_000;
/// A message is closed once its payload passes this size: a bus report carries its
/// bus and trip ids, as long as an input message allows (16 KB), and a route's
/// reports share a partition. Half of Kafka's default limit of 1 MB leaves room
/// for the last update added and the record's framing.
pub const MESSAGE_BYTES: usize = 512 * 1024;

#[derive(Serialize)]
struct EntryOut<'a> {
    u: &'a Update,
    #[serde(skip_serializing_if = "Option::is_none")]
    o: Option<Origin>,
}

/// Writes `Internal::Batch` messages of one partition's entries, as serde writes
/// them, closing each at `UPDATES_PER_MESSAGE` updates or `MESSAGE_BYTES`; the
/// last carries the mark `wm`.
fn batch_messages(producer: u64, ownership: Ownership, entries: &[EntryOut<'_>], wm: i64) -> Vec<Vec<u8>> {
    let head = match (ownership.index(), ownership.count()) {
        (_, 1) => format!(r#"{{"k":"batch","p":{producer},"us":["#),
        (0, n) => format!(r#"{{"k":"batch","p":{producer},"n":{n},"us":["#),
        (i, n) => format!(r#"{{"k":"batch","p":{producer},"i":{i},"n":{n},"us":["#),
    };
    let open = |payload: &mut Vec<u8>| payload.extend_from_slice(head.as_bytes());
    let mut messages = Vec::new();
    let mut payload = Vec::with_capacity(64 + 96 * entries.len().min(UPDATES_PER_MESSAGE));
    open(&mut payload);
    let mut in_message = 0;
    for entry in entries {
        if in_message == UPDATES_PER_MESSAGE || payload.len() >= MESSAGE_BYTES {
            payload.extend_from_slice(b"]}");
            messages.push(std::mem::take(&mut payload));
            open(&mut payload);
            in_message = 0;
        }
        if in_message > 0 {
            payload.push(b',');
        }
        // Writing plain numbers and strings to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut payload, entry);
        in_message += 1;
    }
    payload.extend_from_slice(format!(r#"],"wm":{wm}}}"#).as_bytes());
    messages.push(payload);
    messages
}

/// Stage 1's batch as repartition records: each partition's updates (on the
/// partition their key hashes to, as the producer's `fnv1a` partitioner would put
/// them) in messages of at most `UPDATES_PER_MESSAGE` or `MESSAGE_BYTES`, the last
/// one carrying the mark; a partition without updates gets the mark alone. A mark never overtakes
/// data: it is read after the updates beside it and before those behind it.
/// `ownership` is the producer's share when instances split the input.
pub fn encode(city: &CityModel, topic: &str, producer: u64, ownership: Ownership, out: &Stage1Output, partitions: u32) -> Vec<OutRecord> {
    let partitions = partitions.max(1);
    let mut by_partition: Vec<Vec<EntryOut<'_>>> = (0..partitions).map(|_| Vec::new()).collect();
    for (i, u) in out.updates.iter().enumerate() {
        let p = partition_of(u.key(city), partitions);
        by_partition[p as usize].push(EntryOut { u, o: out.origins.get(i).copied() });
    }
    let mut records = Vec::new();
    for (p, entries) in (0u32..).zip(by_partition) {
        for payload in batch_messages(producer, ownership, &entries, out.watermark_ms) {
            records.push(OutRecord { partition: Some(p), ..OutRecord::new(topic, None, payload) });
        }
    }
    records
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
    /// The producer of the repartition topic, which also takes the tickets.
    pub repartition: &'a K,
    /// The name of the repartition topic (`repartition_topic`).
    pub topic: &'a str,
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
    let stop_at = stage1.stop_at();
    let Stage1Outputs { repartition, topic, dead_letters, producer, partitions } = *outputs;
    let ownership = stage1.ownership();
    stage1.set_idle_reported(source.reports_idle());
    if let Some(at) = stop_at
        && stage1.state().stopped_at() == Some(at)
    {
        // Restarted after it stopped there (a supervisor, a standby): the marks
        // go again, in case the stop came between its checkpoint and its marks.
        repartition.send(cut_marks(topic, producer, ownership, at, partitions)).await?;
        return Ok(Ended::Cut);
    }
    stage1.set_stopped_at(None);
    let mut cut = stop_at.map(Cut::new);
    let mut settling_at_cut = false;
    let inputs: Vec<&str> = egret_model::Topic::ALL.iter().map(|t| t.default_name()).collect();
    let mut marked = i64::MIN;
    let mut hotlists = BoardFollower::default();
    let mut laps = Laps::start("1");
    let mut in_flight = InFlight::default();
    loop {
        hotlists.sync(live.hotlists(), stage1);
        let Some(polled) = poll_or_shutdown(source, &mut shutdown).await? else {
            in_flight.settle_all(source).await?;
            checkpoint_if_due(source, &mut in_flight, checkpoints, stage1.state(), true).await?;
            return Ok(Ended::Shutdown);
        };
        laps.lap("poll");
        let now = Instant::now();
        stage1.set_assignment(&source.assignment(), now);
        // Past the cut, every partition counts as drained for one last pass: the
        // watermark then comes from the records before the cut alone, the same on
        // every instance whenever each saw its partitions drain (`cut`).
        stage1.mark_drained(&if settling_at_cut { source.assignment() } else { source.idle_partitions() });
        let (out, records) = match polled {
            Poll::Records(mut records) => {
                if let Some(c) = checkpoints.as_deref() {
                    c.progress.skip_done(&mut records);
                }
                if let Some(cut) = &mut cut {
                    cut.hold_back(&mut records);
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
                last.extend(encode(stage1.city(), topic, producer, ownership, &out, partitions));
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
            to_send.extend(encode(stage1.city(), topic, producer, ownership, &out, partitions));
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
        if !settling_at_cut && let Some(cut) = &cut {
            settling_at_cut = cut.is_reached(&inputs, &source.assignment(), &source.drained_partitions(), egret_model::time::now_ms());
        } else if let Some(cut) = &cut {
            // Saved first: a restart with the same cut finds every partition past
            // it at once and marks again.
            stage1.set_stopped_at(Some(cut.at_ms()));
            checkpoint_if_due(source, &mut in_flight, checkpoints.as_deref_mut(), stage1.state(), true).await?;
            repartition.send(cut_marks(topic, producer, ownership, cut.at_ms(), partitions)).await?;
            tracing::info!("stage 1 stopped at the cut at {} ms: every input partition is past it", cut.at_ms());
            return Ok(Ended::Cut);
        }
    }
}

/// The last messages of a stage 1 stopping at the cut at `at_ms`: one on every
/// repartition partition, after all it sent there.
fn cut_marks(topic: &str, producer: u64, ownership: Ownership, at_ms: i64, partitions: u32) -> Vec<OutRecord> {
    let mark = Internal::Cut { p: producer, at: at_ms, i: ownership.index(), n: ownership.count() };
    let payload = serde_json::to_vec(&mark).unwrap_or_default();
    (0..partitions.max(1)).map(|p| OutRecord { partition: Some(p), ..OutRecord::new(topic, None, payload.clone()) }).collect()
}

/// One update read from `record`: kept unless implausible (only Egret writes this
/// topic, so that is a bug, logged) or applied already (a replay of stage 1 after
/// its restore).
fn take(record: &egret_ingest::Record, instance: u32, Entry { u, o }: Entry, applied: &mut Applied, updates: &mut Vec<Update>) {
    if !u.is_plausible() {
        return tracing::error!("implausible update on {}/{}@{}: {u:?}", record.topic, record.partition, record.offset);
    }
    if o.is_none_or(|o| applied.first_time(record.partition, instance, o)) {
        updates.push(u);
    }
}

/// How long stage 2 of a split waits, once its input has ended, for the final
/// marks of every instance.
const FINAL_MARKS_PATIENCE: Duration = Duration::from_secs(60);

/// At the end of a finite input, stage 2 of a split waits (up to
/// `FINAL_MARKS_PATIENCE`) until every instance has sent its final mark: one that
/// started later, or whose standby is taking over, still has updates to send, and
/// finishing now would close their windows without them.
fn awaiting_final_marks(marks: &Marks, ownership: Ownership, ended_at: &mut Option<Instant>) -> bool {
    // An instance that keeps none of the partitions (N above their count) has
    // nothing to wait for.
    if ownership.is_whole() || !marks.keeps_any() || marks.watermark() == i64::MAX {
        return false;
    }
    if ended_at.get_or_insert_with(Instant::now).elapsed() < FINAL_MARKS_PATIENCE {
        return true;
    }
    tracing::warn!("the input ended, but not every one of the {} instances has sent its final mark within {FINAL_MARKS_PATIENCE:?}: finishing without them", ownership.count());
    false
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
    let stop_at = stage2.stop_at();
    let ownership = stage2.ownership();
    if stop_at.is_some() && stage2.state().stopped_at() == stop_at {
        return Ok(Ended::Cut);
    }
    stage2.set_stopped_at(None);
    let mut marks = Marks::new(ownership.count());
    let mut speakers = Speakers::default();
    let (mut passing_over, mut told_of_passing_over) = (false, false);
    let mut ended_at = None;
    let mut laps = Laps::start("2");
    let mut in_flight = InFlight::default();
    loop {
        let Some(polled) = poll_or_shutdown(source, &mut shutdown).await? else {
            in_flight.settle_all(source).await?;
            checkpoint_if_due(source, &mut in_flight, checkpoints, &(stage2.state(), &*applied), true).await?;
            return Ok(Ended::Shutdown);
        };
        laps.lap("poll");
        marks.set_assignment(source.assignment().into_iter().map(|(_, p)| p).filter(|p| ownership.owns(*p)).collect());
        let records = match polled {
            Poll::Records(mut records) => {
                if let Some(c) = checkpoints.as_deref() {
                    c.progress.skip_done(&mut records);
                }
                // Input again after an end: the next end waits afresh.
                ended_at = None;
                records
            }
            Poll::Idle => Vec::new(),
            Poll::End if awaiting_final_marks(&marks, ownership, &mut ended_at) => Vec::new(),
            Poll::End => {
                in_flight.settle_all(source).await?;
                checkpoint_if_due(source, &mut in_flight, checkpoints.as_deref_mut(), &(stage2.state(), &*applied), true).await?;
                let done = stage2.finish();
                let out = BatchOutput { windows: done.windows, lots: done.lots, incidents: done.incidents, transit: done.transit, watermark_ms: i64::MAX, ..Default::default() };
                publish(&out, outputs, live).await?;
                return Ok(Ended::InputEnd);
            }
        };
        // Applied message by message: one holds up to `UPDATES_PER_MESSAGE`, and a
        // poll of many would otherwise gather them all at once. Another instance's
        // partitions are passed over unread (their offsets are committed all the same).
        let mut updates = Vec::new();
        for r in records.iter().filter(|r| ownership.owns(r.partition)) {
            match serde_json::from_slice::<Internal>(&r.payload) {
                // What versions before `Batch` wrote: all from one instance.
                Ok(Internal::Data { .. } | Internal::Mark { .. }) if !ownership.is_whole() => passing_over = true,
                Ok(Internal::Data { u, o, .. }) => take(r, 0, Entry { u, o }, applied, &mut updates),
                Ok(Internal::Mark { wm, .. }) => marks.observe(r.partition, 0, wm),
                // Left from a split into another N, or from an instance of none.
                Ok(Internal::Batch { i, n, .. }) if n != ownership.count() || i >= n => passing_over = true,
                Ok(Internal::Batch { p, us, wm, i, .. }) => {
                    if !speakers.heard(r.partition, i, p) {
                        metrics::counter!("egret_instance_conflicts_total").increment(1);
                        if speakers.conflicts() == 1 {
                            tracing::error!(
                                "two processes are running as instance {} of {}: give each active `egret run` its own --instance K/N (standbys share their active's checkpoint directory); windows may close before the updates of one arrive",
                                i + 1,
                                ownership.count()
                            );
                        }
                    }
                    for entry in us {
                        take(r, i, entry, applied, &mut updates);
                    }
                    if let Some(wm) = wm {
                        marks.observe(r.partition, i, wm);
                    }
                }
                // An instance that stops holds its partitions at its last mark (`Marks`).
                Ok(Internal::Leave { .. }) => {}
                Ok(Internal::Cut { at, i, n, .. }) if n == ownership.count() && i < n => stage2.observe_cut_mark(r.partition, i, at),
                Ok(Internal::Cut { .. }) => passing_over = true,
                // Only Egret writes this topic: a bad record is a bug, not input.
                Err(e) => tracing::error!("unreadable record on {}/{}@{}: {e}", r.topic, r.partition, r.offset),
            }
            stage2.apply(&updates);
            updates.clear();
        }
        if passing_over && !told_of_passing_over {
            told_of_passing_over = true;
            tracing::warn!(
                "passing over repartition messages of a split other than into {} instances: left from before the deployment changed its number of instances",
                ownership.count()
            );
        }
        let changed = stage2.advance(marks.watermark());
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
        if let Some(at) = stop_at
            && stage2.cut_marked_by_all(at)
        {
            // Every instance's stage 1 has stopped there and all it sent before is applied.
            stage2.set_stopped_at(Some(at));
            checkpoint_if_due(source, &mut in_flight, checkpoints.as_deref_mut(), &(stage2.state(), &*applied), true).await?;
            tracing::info!("stage 2 stopped at the cut at {at} ms: every instance's stage 1 marked it on every partition kept here");
            return Ok(Ended::Cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn internal_messages_round_trip_exactly() {
        let u = Update::Traversal { segment: 3, enter_ms: 1, exit_ms: 90_001 };
        let bytes = serde_json::to_vec(&Internal::Data { p: 42, u: u.clone(), o: Some(Origin(1, 2, 3, 4)) }).expect("encode");
        assert_eq!(serde_json::from_slice::<Internal>(&bytes).expect("decode"), Internal::Data { p: 42, u, o: Some(Origin(1, 2, 3, 4)) });
    }

    /// Decodes what `encode` wrote, per partition in the order written.
    fn read_back(records: &[OutRecord]) -> BTreeMap<u32, Vec<Internal>> {
        let mut read: BTreeMap<u32, Vec<Internal>> = BTreeMap::new();
        for r in records {
            assert_eq!((r.topic.as_str(), r.key.is_none()), ("egret.internal.stage2.test", true));
            let partition = r.partition.expect("an explicit partition");
            read.entry(partition).or_default().push(serde_json::from_slice(&r.payload).expect("an Internal"));
        }
        read
    }

    #[test]
    fn a_batch_goes_out_per_partition_in_order_and_ends_with_its_mark() {
        let city = crate::repo_city();
        let partitions = 4;
        // More updates of one segment than a message holds, and one of every other segment.
        let busy = 3 * UPDATES_PER_MESSAGE + 7;
        let mut updates: Vec<Update> = (0..busy).map(|i| Update::Entered { segment: 0, ts_ms: 1_700_000_000_000 + i as i64 }).collect();
        updates.extend((1..city.segments.len() as u32).map(|s| Update::Traversal { segment: s, enter_ms: 1_700_000_000_000, exit_ms: 1_700_000_060_000 }));
        let origins = (0..updates.len()).map(|i| Origin(0, 1, i as u64, 0)).collect();
        let out = Stage1Output { updates: updates.clone(), origins, watermark_ms: 1_700_000_001_000, ..Default::default() };
        let read = read_back(&encode(&city, "egret.internal.stage2.test", 42, Ownership::new(2, 3).expect("share"), &out, partitions));
        assert_eq!(read.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 3], "every partition is marked");
        let mut seen = Vec::new();
        for (partition, messages) in &read {
            for (i, m) in messages.iter().enumerate() {
                let Internal::Batch { p, us, wm, i: instance, n } = m else { panic!("{m:?}") };
                let last = i + 1 == messages.len();
                assert_eq!((*p, *wm), (42, last.then_some(out.watermark_ms)), "only the last message marks");
                assert_eq!((*instance, *n), (2, 3), "every message names the instance that wrote it, and the split");
                assert!(us.len() <= UPDATES_PER_MESSAGE && (last || us.len() == UPDATES_PER_MESSAGE));
                for e in us {
                    let key = e.u.key(&city).as_bytes();
                    assert_eq!(egret_ingest::partition_for(Some(key), partitions, 0), *partition, "where the keyed producer puts it");
                    seen.push((e.o.expect("origin"), e.u.clone()));
                }
            }
        }
        // Per partition in the order made: sorting by origin restores the batch.
        seen.sort_by_key(|(o, _)| *o);
        assert_eq!(seen.into_iter().map(|(_, u)| u).collect::<Vec<_>>(), updates);
        let segment0 = egret_ingest::partition_for(Some(city.segments[0].segment_id.as_bytes()), partitions, 0);
        assert_eq!(read[&segment0].len(), 4, "{busy} updates of one segment in four messages");
    }

    #[test]
    fn a_message_closes_at_its_byte_budget_whatever_its_updates_carry() {
        let city = crate::repo_city();
        // Bus ids as long as a 16 KB input message allows, all on one route's partition.
        let bus_id = "B".repeat(15_000);
        let updates: Vec<Update> = (0..100)
            .map(|i| Update::BusReport { route: 0, bus_id: bus_id.clone(), trip_id: None, lat: 24.5, lon: 118.1, speed_kmh: None, ts_ms: 1_700_000_000_000 + i })
            .collect();
        let origins = (0..100).map(|i| Origin(1, 0, i, 0)).collect();
        let out = Stage1Output { updates: updates.clone(), origins, watermark_ms: 9, ..Default::default() };
        let records = encode(&city, "egret.internal.stage2.test", 1, Ownership::default(), &out, 4);
        assert!(records.iter().all(|r| r.payload.len() <= MESSAGE_BYTES + 16 * 1024), "under Kafka's 1 MB limit");
        let route = egret_ingest::partition_for(Some(city.routes[0].route_id.as_bytes()), 4, 0);
        let read = read_back(&records);
        assert!(read[&route].len() >= 3, "{} messages for 1.5 MB of updates", read[&route].len());
        let mut back = Vec::new();
        for m in &read[&route] {
            let Internal::Batch { us, .. } = m else { panic!("{m:?}") };
            back.extend(us.iter().map(|e| e.u.clone()));
        }
        assert_eq!(back, updates, "every update, in order");
    }

    #[test]
    fn a_batch_without_updates_is_a_mark_on_every_partition() {
        let city = crate::repo_city();
        let out = Stage1Output { watermark_ms: 5, ..Default::default() };
        let read = read_back(&encode(&city, "egret.internal.stage2.test", 7, Ownership::default(), &out, 3));
        for p in 0..3 {
            assert_eq!(read[&p], vec![Internal::Batch { p: 7, us: Vec::new(), wm: Some(5), i: 0, n: 1 }]);
        }
        let split = read_back(&encode(&city, "egret.internal.stage2.test", 7, Ownership::new(0, 2).expect("share"), &out, 1));
        assert_eq!(split[&0], vec![Internal::Batch { p: 7, us: Vec::new(), wm: Some(5), i: 0, n: 2 }], "the first of a split names the split");
        let first = String::from_utf8(encode(&city, "egret.internal.stage2.test", 7, Ownership::default(), &out, 1)[0].payload.to_vec()).expect("utf-8");
        assert!(!first.contains("\"i\"") && !first.contains("\"n\""), "one instance writes what versions before the split wrote: {first}");
    }
}
