//! The embedded log: an in-process, partitioned, offset-addressed and bounded
//! stand-in for Kafka, so `egret demo` needs no broker.
//!
//! Each partition keeps records from its committed offset to its end. A producer that
//! finds a partition holding `capacity` uncommitted records waits until the consumer
//! commits (back-pressure), so memory is bounded however fast the simulator runs.
//! One consumer group reads it; a restarted consumer resumes at the committed offset.

use crate::{IngestError, OutRecord, Poll, Record, Sink, Source, partition_for};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Cloneable handle on one in-process log.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

struct Inner {
    topics: Mutex<HashMap<String, Arc<TopicLog>>>,
    partitions: u32,
    capacity: usize,
    closed: AtomicBool,
    data_ready: Notify,
    round_robin: AtomicU64,
}

struct TopicLog {
    partitions: Vec<Mutex<PartitionLog>>,
    space_freed: Notify,
}

#[derive(Default)]
struct PartitionLog {
    /// Offset of `records[0]`, which is also the committed position.
    base: u64,
    records: VecDeque<(Option<Bytes>, Bytes, Option<i64>)>,
}

impl PartitionLog {
    fn end(&self) -> u64 {
        self.base + self.records.len() as u64
    }
}

impl EmbeddedLog {
    /// A log whose topics have `partitions` partitions of at most `capacity`
    /// uncommitted records each.
    pub fn new(partitions: u32, capacity: usize) -> Self {
        EmbeddedLog {
            inner: Arc::new(Inner {
                topics: Mutex::new(HashMap::new()),
                partitions: partitions.max(1),
                capacity: capacity.max(1),
                closed: AtomicBool::new(false),
                data_ready: Notify::new(),
                round_robin: AtomicU64::new(0),
            }),
        }
    }

    fn topic(&self, name: &str) -> Arc<TopicLog> {
        let mut topics = self.inner.topics.lock();
        topics
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(TopicLog {
                    partitions: (0..self.inner.partitions).map(|_| Mutex::new(PartitionLog::default())).collect(),
                    space_freed: Notify::new(),
                })
            })
            .clone()
    }

    /// No more records will be appended: consumers see `Poll::End` once drained.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.data_ready.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Appends one record, waiting while its partition is full.
    pub async fn append(&self, record: OutRecord) -> Result<(), IngestError> {
        if self.is_closed() {
            return Err(IngestError::Closed);
        }
        let topic = self.topic(&record.topic);
        let rr = self.inner.round_robin.fetch_add(1, Ordering::Relaxed);
        let p = match record.partition {
            Some(p) => (p % self.inner.partitions) as usize,
            None => partition_for(record.key.as_deref(), self.inner.partitions, rr) as usize,
        };
        loop {
            let freed = topic.space_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut part = topic.partitions[p].lock();
                if part.records.len() < self.inner.capacity {
                    part.records.push_back((record.key, record.payload, record.timestamp_ms));
                    break;
                }
            }
            freed.await;
        }
        self.inner.data_ready.notify_waiters();
        Ok(())
    }

    /// A consumer of the given topics, starting at their committed offsets.
    pub fn subscribe(&self, topics: &[&str], poll_interval: Duration) -> EmbeddedSource {
        EmbeddedSource {
            log: self.clone(),
            topics: topics.iter().map(|t| ((*t).to_owned(), self.topic(t))).collect(),
            positions: topics
                .iter()
                .map(|t| self.topic(t).partitions.iter().map(|p| p.lock().base).collect())
                .collect(),
            poll_interval,
            next_partition: 0,
        }
    }

    /// Records appended and not yet committed, over all topics (the consumer lag).
    pub fn backlog(&self) -> u64 {
        let topics = self.inner.topics.lock();
        topics.values().flat_map(|t| t.partitions.iter()).map(|p| p.lock().records.len() as u64).sum()
    }
}

/// The consuming side of the embedded log.
pub struct EmbeddedSource {
    log: EmbeddedLog,
    topics: Vec<(String, Arc<TopicLog>)>,
    /// Next offset to hand out, per topic and partition.
    positions: Vec<Vec<u64>>,
    poll_interval: Duration,
    next_partition: usize,
}

impl EmbeddedSource {
    fn take(&mut self, max: usize) -> Vec<Record> {
        let mut out = Vec::new();
        let slots: Vec<(usize, usize)> = self
            .topics
            .iter()
            .enumerate()
            .flat_map(|(t, (_, log))| (0..log.partitions.len()).map(move |p| (t, p)))
            .collect();
        // Start at a rotating partition so a busy one cannot starve the others.
        let per_partition = (max / slots.len().max(1)).max(1);
        for i in 0..slots.len() {
            let (t, p) = slots[(self.next_partition + i) % slots.len()];
            let part = self.topics[t].1.partitions[p].lock();
            let pos = self.positions[t][p].max(part.base);
            let skip = (pos - part.base) as usize;
            let take = per_partition.min(max - out.len());
            let before = out.len();
            for (k, (key, payload, timestamp_ms)) in part.records.iter().skip(skip).take(take).enumerate() {
                out.push(Record {
                    topic: self.topics[t].0.clone(),
                    partition: p as u32,
                    offset: pos + k as u64,
                    key: key.clone(),
                    payload: payload.clone(),
                    headers: Vec::new(),
                    timestamp_ms: *timestamp_ms,
                });
            }
            self.positions[t][p] = pos + (out.len() - before) as u64;
            if out.len() >= max {
                break;
            }
        }
        self.next_partition = (self.next_partition + 1) % slots.len().max(1);
        out
    }

    fn drained(&self) -> bool {
        self.topics.iter().zip(&self.positions).all(|((_, log), pos)| {
            log.partitions.iter().zip(pos).all(|(p, at)| p.lock().end() <= *at)
        })
    }
}

impl Source for EmbeddedSource {
    async fn poll(&mut self, max: usize) -> Result<Poll, IngestError> {
        let log = self.log.clone();
        let ready = log.inner.data_ready.notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        let records = self.take(max);
        if !records.is_empty() {
            return Ok(Poll::Records(records));
        }
        if log.is_closed() && self.drained() {
            return Ok(Poll::End);
        }
        let _ = tokio::time::timeout(self.poll_interval, ready).await;
        let records = self.take(max);
        Ok(if records.is_empty() { Poll::Idle } else { Poll::Records(records) })
    }

    fn commit(&mut self, topic: &str, partition: u32, offset: u64) -> Result<(), IngestError> {
        let (_, log) = self
            .topics
            .iter()
            .find(|(name, _)| name == topic)
            .ok_or_else(|| IngestError::UnknownTopic(topic.to_owned()))?;
        let Some(part) = log.partitions.get(partition as usize) else {
            return Err(IngestError::UnknownTopic(format!("{topic}/{partition}")));
        };
        let mut part = part.lock();
        while part.base <= offset && !part.records.is_empty() {
            part.records.pop_front();
            part.base += 1;
        }
        drop(part);
        log.space_freed.notify_waiters();
        Ok(())
    }

    fn assignment(&self) -> Vec<(String, u32)> {
        self.topics.iter().flat_map(|(name, log)| (0..log.partitions.len() as u32).map(move |p| (name.clone(), p))).collect()
    }

    fn reports_idle(&self) -> bool {
        true
    }

    fn idle_partitions(&self) -> Vec<(String, u32)> {
        let mut idle = Vec::new();
        for (t, (name, log)) in self.topics.iter().enumerate() {
            for p in 0..log.partitions.len() {
                if !self.pending(t, p) {
                    idle.push((name.clone(), p as u32));
                }
            }
        }
        idle
    }
}

impl EmbeddedSource {
    fn pending(&self, t: usize, p: usize) -> bool {
        self.topics[t].1.partitions[p].lock().end() > self.positions[t][p]
    }
}

impl Sink for EmbeddedLog {
    async fn send(&self, records: Vec<OutRecord>) -> Result<(), IngestError> {
        for r in records {
            self.append(r).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
