//! Where events come from and where outputs go: one `Source`/`Sink` pair of traits,
//! implemented by the embedded in-process log (the default, no broker to install),
//! by NDJSON files, and by Apache Kafka. The pipeline is generic over them and never
//! knows which one it runs on.

pub mod align;
pub mod embedded;
pub mod kafka;
pub mod memory;
pub mod ndjson;

use bytes::Bytes;
use std::future::Future;

/// One message as a source delivers it: Kafka's coordinates plus the raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub key: Option<Bytes>,
    pub payload: Bytes,
    /// Message headers (Kafka); empty for the other sources.
    pub headers: Vec<(String, Vec<u8>)>,
    /// When the message reached the transport, by the collector's trusted clock
    /// (Kafka's CreateTime). Device clocks drift; this one is what they are checked
    /// against. `None` where the transport keeps no time (NDJSON files).
    pub timestamp_ms: Option<i64>,
}

/// A message to write: the sink chooses the partition from the key.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub topic: String,
    /// An explicit partition (watermark marks go to every partition); else by key.
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub payload: Bytes,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record's timestamp (see `Record::timestamp_ms`); `None` lets the sink stamp it.
    pub timestamp_ms: Option<i64>,
}

impl OutRecord {
    pub fn new(topic: impl Into<String>, key: impl Into<Option<Bytes>>, payload: impl Into<Bytes>) -> Self {
        OutRecord { topic: topic.into(), partition: None, key: key.into(), payload: payload.into(), headers: Vec::new(), timestamp_ms: None }
    }
}

/// What a source has handed out: either records, or a sign that nothing arrived in
/// the poll interval (the pipeline uses it to let idle partitions advance), or the end
/// of a finite input.
#[derive(Debug)]
pub enum Poll {
    Records(Vec<Record>),
    Idle,
    End,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the log is closed")]
    Closed,
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("i/o on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("broker: {0}")]
    Broker(String),
    /// Saving or restoring a stage's state failed.
    #[error("{0}")]
    Checkpoint(String),
}

/// A partitioned, offset-addressed input.
pub trait Source: Send {
    /// Up to `max` records, waiting at most the source's poll interval for the first.
    fn poll(&mut self, max: usize) -> impl Future<Output = Result<Poll, IngestError>> + Send;
    /// Everything up to and including `offset` on this partition is fully processed;
    /// the source may forget it and a restart resumes after it.
    fn commit(&mut self, topic: &str, partition: u32, offset: u64) -> Result<(), IngestError>;
    /// Sends what `commit` noted to the broker now, where the source keeps offsets there.
    fn flush_commits(&mut self) -> Result<(), IngestError> {
        Ok(())
    }
    /// Partitions with nothing pending right now. Their silence must not hold the
    /// watermark back: in a fast replay a drained partition is idle at once, not after
    /// a processing-time timeout.
    fn idle_partitions(&self) -> Vec<(String, u32)> {
        Vec::new()
    }
    /// Partitions read to their end at the broker, nothing of them waiting to be
    /// delivered: a stricter set than `idle_partitions`, which may also name a
    /// partition ahead of the others in a backlog. Where a stop depends on having
    /// read everything there is (`egret run --stop-at`).
    fn drained_partitions(&self) -> Vec<(String, u32)> {
        self.idle_partitions()
    }
    /// True when `idle_partitions` is exact: a partition not listed there has
    /// something pending, however long it takes to arrive. False lets the pipeline
    /// fall back on a processing-time timeout.
    fn reports_idle(&self) -> bool {
        false
    }
    /// Every partition this consumer is responsible for now, read or not yet read, so
    /// one that has delivered nothing yet still holds the watermark back. Empty when
    /// unknown.
    fn assignment(&self) -> Vec<(String, u32)> {
        Vec::new()
    }
}

/// Resolves once records already handed to a sink are all acknowledged, or with
/// the first failure.
pub type Acked = std::pin::Pin<Box<dyn Future<Output = Result<(), IngestError>> + Send>>;

/// Somewhere outputs and dead letters can be written.
pub trait Sink: Send + Sync {
    /// Appends records in order; waits while the destination is full (back-pressure).
    fn send(&self, records: Vec<OutRecord>) -> impl Future<Output = Result<(), IngestError>> + Send;

    /// Hands records over in order, waiting only while the destination is full, and
    /// returns their acknowledgement to await later: a caller can go on working
    /// while a broker acknowledges. Records of a later call are never written
    /// before these. Where hand-over and acknowledgement are one step, the default
    /// does both here.
    fn start_send(&self, records: Vec<OutRecord>) -> impl Future<Output = Result<Acked, IngestError>> + Send {
        async move {
            self.send(records).await?;
            Ok(Box::pin(std::future::ready(Ok(()))) as Acked)
        }
    }
}

/// Turns an endless source into a finite one: after `idle_polls` polls in a row
/// with nothing new, it reports the end. For batch replays of a topic and for tests.
pub struct EndWhenIdle<S> {
    inner: S,
    idle_polls: u32,
    idle_in_a_row: u32,
}

impl<S: Source> EndWhenIdle<S> {
    pub fn new(inner: S, idle_polls: u32) -> Self {
        EndWhenIdle { inner, idle_polls, idle_in_a_row: 0 }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Source> Source for EndWhenIdle<S> {
    async fn poll(&mut self, max: usize) -> Result<Poll, IngestError> {
        let polled = self.inner.poll(max).await?;
        match polled {
            Poll::Idle => {
                self.idle_in_a_row += 1;
                Ok(if self.idle_in_a_row >= self.idle_polls { Poll::End } else { Poll::Idle })
            }
            other => {
                self.idle_in_a_row = 0;
                Ok(other)
            }
        }
    }

    fn commit(&mut self, topic: &str, partition: u32, offset: u64) -> Result<(), IngestError> {
        self.inner.commit(topic, partition, offset)
    }

    fn flush_commits(&mut self) -> Result<(), IngestError> {
        self.inner.flush_commits()
    }

    fn idle_partitions(&self) -> Vec<(String, u32)> {
        self.inner.idle_partitions()
    }

    fn drained_partitions(&self) -> Vec<(String, u32)> {
        self.inner.drained_partitions()
    }

    fn reports_idle(&self) -> bool {
        self.inner.reports_idle()
    }

    fn assignment(&self) -> Vec<(String, u32)> {
        self.inner.assignment()
    }
}

/// Partition for a key: stable across runs, so a plate always lands on one partition.
/// The same as librdkafka's `fnv1a` partitioner (and Sarama's hash partitioner),
/// which Egret's Kafka producers use: the embedded log and Kafka partition alike, so
/// state kept per partition (device clocks) is the same on either transport.
pub fn partition_for(key: Option<&[u8]>, partitions: u32, round_robin: u64) -> u32 {
    match key {
        // FNV-1a: tiny, stable and good enough to spread plates.
        Some(key) => {
            let mut h: u32 = 0x811c_9dc5;
            for b in key {
                h ^= u32::from(*b);
                h = h.wrapping_mul(0x0100_0193);
            }
            // As a signed 32-bit value, made positive (librdkafka's rd_fnv1a).
            (h as i32).wrapping_abs() as u32 % partitions.max(1)
        }
        None => (round_robin % u64::from(partitions.max(1))) as u32,
    }
}

#[cfg(test)]
mod partitioner_tests {
    use super::partition_for;

    /// librdkafka's own test vectors for its `fnv1a` partitioner (rdfnv1a.c): with
    /// 2^31 partitions the partition is the hash itself.
    #[test]
    fn keys_land_where_librdkafkas_fnv1a_partitioner_puts_them() {
        let vectors: [(&str, u32); 6] =
            [("kafka", 0x0d33_c4e1), ("giberish123456789", 0x77a5_8295), ("1234", 0x023b_dd03), ("234", 0x2dea_3cd2), ("PreAmbleWillBeRemoved,ThePrePartThatIs", 0x65cb_d69c), ("", 0x7ee3_623b)];
        for (key, hash) in vectors {
            assert_eq!(partition_for(Some(key.as_bytes()), i32::MAX as u32 + 1, 0), hash, "{key:?}");
            assert_eq!(partition_for(Some(key.as_bytes()), 12, 0), hash % 12, "{key:?}");
        }
    }
}
