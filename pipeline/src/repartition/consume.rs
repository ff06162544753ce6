//! Stage 2's side of the repartition topic: the updates and marks of every
//! stage-1 instance read, the partitions this instance keeps applied, the
//! watermark taken from the marks, and the stop once every instance marked a cut.

use super::{Entry, Internal, checkpoint_if_due};
use crate::checkpoint::Checkpointer;
use crate::inflight::InFlight;
use crate::laps::Laps;
use crate::live::LiveState;
use crate::marks::{Applied, Marks, Speakers};
use crate::ownership::Ownership;
use crate::pipeline::BatchOutput;
use crate::runner::{Ended, Outputs, poll_or_shutdown, publish, start_publish};
use crate::stage2::Stage2;
use crate::update::Update;
use egret_ingest::{IngestError, Poll, Sink, Source};
use std::future::Future;
use std::time::{Duration, Instant};

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
    stage2.forget_cuts_but(stop_at);
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
