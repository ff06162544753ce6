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

mod consume;
mod produce;

pub use consume::{Stage2Saved, run_stage2};
pub use produce::{Stage1Outputs, run_stage1};

use crate::inflight::InFlight;
use crate::stage1::Stage1Output;
use crate::checkpoint::Checkpointer;
use crate::update::{Origin, Update};
use crate::ownership::Ownership;
use egret_ingest::{IngestError, OutRecord, Source};
use egret_model::CityModel;
use serde::{Deserialize, Serialize};

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
