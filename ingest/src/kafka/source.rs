//! Consuming input topics from Kafka.
//!
//! One consumer per topic, all in the same group: a partition-EOF event then names
//! its topic, so the pipeline learns exactly which partitions are drained (and must
//! not hold back the watermark). Offsets are stored only through `Source::commit`.
//! Records go out in arrival order across partitions (see `align`), so a backlog is
//! processed the same way on every run.

use super::{KafkaConfig, broker_err, ensure_topics};
use crate::align::{Aligner, PartitionKey};
use crate::{IngestError, Poll, Record, Source};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Remembers whether the consumer has joined its group (received an assignment,
/// possibly empty), so the source starts only when every topic's consumer is in; and
/// turns librdkafka's periodic statistics into the consumer-lag gauge of `/metrics`.
#[derive(Default)]
pub struct JoinContext {
    joined: AtomicBool,
    namespace: String,
}

impl ClientContext for JoinContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // End of a partition is how drained partitions are found, not a fault.
        if !matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::warn!("kafka consumer: {error}: {reason}");
        }
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        for (name, topic) in &statistics.topics {
            // Lag against what the pipeline has fully processed (the stored offset).
            let lag: i64 = topic.partitions.values().filter(|p| p.partition >= 0).map(|p| p.consumer_lag_stored.max(0)).sum();
            let name = name.strip_prefix(self.namespace.as_str()).unwrap_or(name).to_owned();
            metrics::gauge!("egret_consumer_lag", "topic" => name).set(lag as f64);
        }
    }
}

impl ConsumerContext for JoinContext {
    /// The outcome of an asynchronous commit (see `flush_commits`).
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(KafkaError::ConsumerCommit(code)) if is_transient(code) || is_rebalancing(code) => {
                tracing::warn!("commit refused: {code:?}; the next checkpoint commits again");
                metrics::counter!("egret_commit_retries_total").increment(1);
            }
            Err(e) => {
                tracing::error!("commit failed: {e}; offsets stay behind the checkpoint until one succeeds");
                metrics::counter!("egret_commit_retries_total").increment(1);
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.joined.store(true, Ordering::Release);
        }
    }
}

/// Records the aligner may hold for a partition that has not delivered yet (about
/// 100 MB of events at most), and how long it waits for one that neither delivers
/// nor reaches its end: long enough for a partition's leadership to move when its
/// broker goes down (a live partition at its end never holds anything back).
const ALIGN_CAPACITY: usize = 200_000;
const ALIGN_PATIENCE: Duration = Duration::from_secs(15);

/// How long `subscribe` waits for every consumer to join before starting anyway.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

type Polled = (usize, Result<Record, KafkaError>);

/// When processed offsets are committed to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commits {
    /// Every second, in the background.
    Periodic,
    /// Only by `Source::flush_commits`: a checkpointing stage commits an offset once
    /// the state that reflects it is saved, so the broker's offset never runs ahead.
    OnCheckpoint,
}

pub struct KafkaSource {
    /// (contract topic name, its consumer).
    consumers: Vec<(String, StreamConsumer<JoinContext>)>,
    /// Messages received while waiting for the group join, delivered first.
    early: Vec<Polled>,
    /// (consumer index, partition) at the end of what the broker holds.
    drained: HashSet<PartitionKey>,
    aligner: Aligner,
    unaligned_reported: u64,
    poll_interval: Duration,
    namespace: String,
}

impl KafkaSource {
    /// Joins the consumer group on `topics`, creating them when missing; processed
    /// offsets are committed every second.
    pub async fn subscribe(config: &KafkaConfig, topics: &[&str]) -> Result<KafkaSource, IngestError> {
        Self::subscribe_with(config, topics, Commits::Periodic).await
    }

    /// As `subscribe`, choosing when processed offsets reach the broker.
    pub async fn subscribe_with(config: &KafkaConfig, topics: &[&str], commits: Commits) -> Result<KafkaSource, IngestError> {
        let specs: Vec<(&str, bool)> = topics.iter().map(|t| (*t, false)).collect();
        ensure_topics(config, &specs).await?;
        let mut consumers = Vec::new();
        for topic in topics {
            let mut client = config.client();
            if let Some(id) = &config.instance_id {
                // One member per topic's consumer, so one id each.
                client.set("group.instance.id", format!("{id}-{topic}"));
            }
            let consumer: StreamConsumer<JoinContext> = client
                .set("group.id", &config.group_id)
                .set("partition.assignment.strategy", "cooperative-sticky")
                .set("enable.auto.commit", if commits == Commits::Periodic { "true" } else { "false" })
                .set("auto.commit.interval.ms", "1000")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("enable.partition.eof", "true")
                // A partition's end is reported by the fetch after the one that
                // brought its last record, which the broker holds back for up to
                // this long when nothing new has come: the aligner waits for that
                // end before it releases the other partitions' records. librdkafka's
                // 500 ms default held tickets 170 ms at p50 (`egret bench` (c),
                // BENCHMARKS.md session 11); 10 ms costs idle fetches (about 0.1 of a
                // broker core for an idle instance, measured there), not records.
                .set("fetch.wait.max.ms", "10")
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "1000")
                .set("statistics.interval.ms", "5000")
                .create_with_context(JoinContext { joined: AtomicBool::new(false), namespace: config.namespace.clone() })
                .map_err(broker_err("creating a consumer"))?;
            consumer.subscribe(&[&config.topic(topic)]).map_err(broker_err("subscribing"))?;
            consumers.push(((*topic).to_owned(), consumer));
        }
        let mut source = KafkaSource {
            consumers,
            early: Vec::new(),
            drained: HashSet::new(),
            aligner: Aligner::new(ALIGN_CAPACITY, ALIGN_PATIENCE),
            unaligned_reported: 0,
            poll_interval: config.poll_interval,
            namespace: config.namespace.clone(),
        };
        source.wait_for_join().await;
        Ok(source)
    }

    /// Polls each consumer until it has joined the group. Until then a topic whose
    /// consumer is not in yet has no partitions to hold the watermark back, and the
    /// other topics would run ahead of it.
    async fn wait_for_join(&mut self) {
        let deadline = Instant::now() + JOIN_TIMEOUT;
        while Instant::now() < deadline {
            let waiting: Vec<usize> =
                (0..self.consumers.len()).filter(|i| !self.consumers[*i].1.context().joined.load(Ordering::Acquire)).collect();
            if waiting.is_empty() {
                return;
            }
            for i in waiting {
                let ns = self.namespace.as_str();
                if let Ok(message) = tokio::time::timeout(Duration::from_millis(50), self.consumers[i].1.recv()).await {
                    self.early.push((i, message.map(|m| to_record(&m, ns))));
                }
            }
        }
        tracing::warn!("not every consumer joined the group within {JOIN_TIMEOUT:?}; starting anyway");
    }

    fn accept(&mut self, index: usize, message: Result<Record, KafkaError>) -> Result<(), IngestError> {
        match message {
            Ok(record) => {
                let key = (index, record.partition);
                self.drained.remove(&key);
                self.aligner.push(key, record);
                Ok(())
            }
            Err(KafkaError::PartitionEOF(partition)) => {
                self.drained.insert((index, partition.max(0) as u32));
                Ok(())
            }
            // A broker going away (stopped, restarted, a leader moving) is reported
            // as a consume error, and librdkafka reconnects and fetches on by itself:
            // the pipeline waits rather than exits (found by `egret faults`).
            Err(KafkaError::MessageConsumption(code)) if is_transient(code) => {
                tracing::warn!("consuming {}: {code:?}; librdkafka retries", self.consumers[index].0);
                Ok(())
            }
            Err(e) => Err(IngestError::Broker(format!("consuming {}: {e}", self.consumers[index].0))),
        }
    }

    /// Messages already fetched (up to `max`), waiting until `deadline` for the first.
    /// With records queued in the aligner, the wait is short: it is for the fetch
    /// that lets them go.
    async fn fetch(&mut self, max: usize, deadline: tokio::time::Instant) -> Vec<Polled> {
        let mut got: Vec<Polled> = std::mem::take(&mut self.early);
        if !got.is_empty() {
            return got;
        }
        let ns = self.namespace.as_str();
        let streams = self.consumers.iter().enumerate().map(|(i, (_, c))| c.stream().map(move |m| (i, m.map(|m| to_record(&m, ns)))).boxed());
        let mut merged = futures_util::stream::select_all(streams);
        let wait = if self.aligner.queued() > 0 { deadline.min(tokio::time::Instant::now() + Duration::from_millis(10)) } else { deadline };
        if let Ok(Some(first)) = tokio::time::timeout_at(wait, merged.next()).await {
            got.push(first);
        }
        // Then take whatever is already fetched, without waiting.
        while !got.is_empty() && got.len() < max {
            match merged.next().now_or_never() {
                Some(Some(next)) => got.push(next),
                _ => break,
            }
        }
        got
    }

    /// The partitions assigned now, as (consumer index, partition).
    fn owned(&self) -> Vec<PartitionKey> {
        let mut out = Vec::new();
        for (index, (_, consumer)) in self.consumers.iter().enumerate() {
            if let Ok(tpl) = consumer.assignment() {
                out.extend(tpl.elements().iter().map(|e| (index, e.partition().max(0) as u32)));
            }
        }
        out
    }

    /// Commits stored offsets now (with `Commits::Periodic`, also done every second).
    pub fn commit_now(&self) -> Result<(), IngestError> {
        for (_, c) in &self.consumers {
            match c.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => return Err(IngestError::Broker(format!("committing: {e}"))),
            }
        }
        Ok(())
    }
}

/// Consume errors that pass once the cluster recovers.
fn is_transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::CoordinatorNotAvailable
    )
}

/// Commit errors of a group in the middle of a rebalance.
fn is_rebalancing(code: RDKafkaErrorCode) -> bool {
    matches!(code, RDKafkaErrorCode::IllegalGeneration | RDKafkaErrorCode::RebalanceInProgress | RDKafkaErrorCode::UnknownMemberId)
}

pub(crate) fn to_record<M: Message>(m: &M, namespace: &str) -> Record {
    Record {
        topic: m.topic().strip_prefix(namespace).unwrap_or(m.topic()).to_owned(),
        partition: m.partition().max(0) as u32,
        offset: m.offset().max(0) as u64,
        key: m.key().map(Bytes::copy_from_slice),
        payload: m.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
        headers: m
            .headers()
            .map(|hs| hs.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec).unwrap_or_default())).collect())
            .unwrap_or_default(),
        timestamp_ms: m.timestamp().to_millis(),
    }
}

impl Source for KafkaSource {
    /// Waits up to `poll_interval` for records the aligner can release: an idle
    /// answer always means that much time without any.
    async fn poll(&mut self, max: usize) -> Result<Poll, IngestError> {
        let mut out = Vec::with_capacity(max.min(4096));
        let deadline = tokio::time::Instant::now() + self.poll_interval;
        loop {
            let got = self.fetch(max, deadline).await;
            for (index, message) in got {
                self.accept(index, message)?;
            }
            let owned = self.owned();
            self.aligner.release(&owned, &self.drained, Instant::now(), max, &mut out);
            if !out.is_empty() || tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        metrics::gauge!("egret_aligner_queued").set(self.aligner.queued() as f64);
        if self.aligner.unaligned > self.unaligned_reported {
            let n = self.aligner.unaligned - self.unaligned_reported;
            self.unaligned_reported = self.aligner.unaligned;
            metrics::counter!("egret_records_unaligned_total").increment(n);
            tracing::warn!("{n} records released while a partition kept silent (15 s without a record or its end), or past the aligner's capacity: their order depended on timing");
        }
        Ok(if out.is_empty() { Poll::Idle } else { Poll::Records(out) })
    }

    /// Asynchronous: a synchronous commit blocks the thread that polls the
    /// consumers, and a commit sent during a rebalance waits for the rebalance, which
    /// waits for a poll (found by `egret faults`: an instance hung for good when a
    /// second one left the group). The outcome arrives in `commit_callback`. A commit
    /// refused or lost leaves the broker's offset behind the checkpoint, which is the
    /// safe side (a restart skips to the checkpoint's positions); the next checkpoint
    /// commits again.
    fn flush_commits(&mut self) -> Result<(), IngestError> {
        for (topic, c) in &self.consumers {
            match c.commit_consumer_state(CommitMode::Async) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => {
                    tracing::warn!("committing {topic}: {e}; the next checkpoint commits again");
                    metrics::counter!("egret_commit_retries_total").increment(1);
                }
            }
        }
        Ok(())
    }

    fn commit(&mut self, topic: &str, partition: u32, offset: u64) -> Result<(), IngestError> {
        let Some((_, consumer)) = self.consumers.iter().find(|(t, _)| t == topic) else {
            return Err(IngestError::UnknownTopic(topic.to_owned()));
        };
        let mut tpl = TopicPartitionList::new();
        // Kafka stores the next offset to read; `store_offsets` keeps it as given.
        let broker_topic = format!("{}{topic}", self.namespace);
        tpl.add_partition_offset(&broker_topic, partition as i32, Offset::Offset(offset as i64 + 1)).map_err(broker_err("offset list"))?;
        if let Err(e) = consumer.store_offsets(&tpl) {
            // The partition moved to another instance in a rebalance: its new owner
            // resumes from the last committed offset, which is the safe side.
            tracing::debug!("storing offset {topic}/{partition}@{offset}: {e}");
        }
        Ok(())
    }

    fn assignment(&self) -> Vec<(String, u32)> {
        self.owned().into_iter().map(|(i, p)| (self.consumers[i].0.clone(), p)).collect()
    }

    fn reports_idle(&self) -> bool {
        true
    }

    /// Drained at the broker with nothing of it left waiting in the aligner, or,
    /// in a backlog, nothing of it due yet: its next record arrived after the last
    /// one released (see `Aligner::ahead_of_release`).
    fn idle_partitions(&self) -> Vec<(String, u32)> {
        let mut idle: std::collections::BTreeSet<PartitionKey> = self.drained.iter().filter(|k| !self.aligner.holds(k)).copied().collect();
        idle.extend(self.aligner.ahead_of_release());
        idle.into_iter().map(|(i, p)| (self.consumers[i].0.clone(), p)).collect()
    }

    fn drained_partitions(&self) -> Vec<(String, u32)> {
        self.drained.iter().filter(|k| !self.aligner.holds(k)).map(|(i, p)| (self.consumers[*i].0.clone(), *p)).collect()
    }
}
