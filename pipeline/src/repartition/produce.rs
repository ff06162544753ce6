//! Stage 1's side of the repartition topic: stage 1 from the input topics, its
//! updates and marks out to the topic, its tickets and dead letters out, and its
//! stop at a cut (`cut`).

use super::{Internal, checkpoint_if_due, encode};
use crate::checkpoint::Checkpointer;
use crate::cut::Cut;
use crate::hotlist_board::BoardFollower;
use crate::inflight::InFlight;
use crate::laps::Laps;
use crate::live::LiveState;
use crate::pipeline::BatchOutput;
use crate::runner::{Ended, poll_or_shutdown};
use crate::stage1::Stage1;
use crate::ownership::Ownership;
use egret_ingest::{Acked, IngestError, OutRecord, Poll, Sink, Source};
use std::future::Future;
use std::time::Instant;

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
    let inputs = egret_model::Topic::default_names();
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
                if let Some(newest) = records.iter().filter_map(|r| r.timestamp_ms).max() {
                    live.note_read(newest);
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
        if !settling_at_cut && let Some(cut) = &mut cut {
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
