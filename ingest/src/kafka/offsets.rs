//! Offsets of consumer groups that are not running: set where a new group starts,
//! and read what lies past a group's position (`egret rescale`).

use super::{KafkaConfig, broker_err};
use crate::{IngestError, Record};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Next offset to read, per contract topic and partition.
pub type Positions = BTreeMap<String, BTreeMap<u32, u64>>;

/// How long reading to the end may take before it is given up.
const READ_PATIENCE: Duration = Duration::from_secs(60);

/// Commits `positions` as the offsets of consumer group `group`, which must have
/// no members: where a new group starts, instead of the earliest record.
pub async fn commit_offsets(config: &KafkaConfig, group: &str, positions: &Positions) -> Result<(), IngestError> {
    let mut list = TopicPartitionList::new();
    for (topic, partitions) in positions {
        for (partition, next) in partitions {
            list.add_partition_offset(&config.topic(topic), *partition as i32, Offset::Offset(*next as i64)).map_err(broker_err("offset list"))?;
        }
    }
    let consumer: BaseConsumer = config.client().set("group.id", group).set("enable.auto.commit", "false").create().map_err(broker_err("creating a consumer"))?;
    let group = group.to_owned();
    tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync).map_err(|e| IngestError::Broker(format!("committing the offsets of group {group}: {e}"))))
        .await
        .map_err(|e| IngestError::Broker(format!("committing offsets: {e}")))?
}

/// Every record of `topic` from `from` (next offset per partition) to the end of
/// each partition as it stands now.
pub async fn read_from(config: &KafkaConfig, topic: &str, from: &BTreeMap<u32, u64>) -> Result<Vec<Record>, IngestError> {
    let (config, topic, from) = (config.clone(), config.topic(topic), from.clone());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.client().set("group.id", "egret-read-from").set("enable.auto.commit", "false").set("auto.offset.reset", "earliest").create().map_err(broker_err("creating a consumer"))?;
        let mut list = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for (partition, next) in &from {
            let (low, high) = consumer.fetch_watermarks(&topic, *partition as i32, Duration::from_secs(10)).map_err(broker_err("reading the end offsets"))?;
            if (low.max(0) as u64) > *next {
                return Err(IngestError::Broker(format!("{topic}/{partition} no longer holds offset {next} (retention has removed up to {low})")));
            }
            if high.max(0) as u64 > *next {
                list.add_partition_offset(&topic, *partition as i32, Offset::Offset(*next as i64)).map_err(broker_err("offset list"))?;
                ends.insert(*partition, high as u64);
            }
        }
        let mut records = Vec::new();
        if ends.is_empty() {
            return Ok(records);
        }
        consumer.assign(&list).map_err(broker_err("assigning partitions"))?;
        let deadline = Instant::now() + READ_PATIENCE;
        while !ends.is_empty() {
            if Instant::now() > deadline {
                return Err(IngestError::Broker(format!("reading {topic} to its end: partitions {:?} not read to their end within {READ_PATIENCE:?}", ends.keys().collect::<Vec<_>>())));
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let record = super::source::to_record(&m, &config.namespace);
                    if ends.get(&record.partition).is_some_and(|end| record.offset + 1 >= *end) {
                        ends.remove(&record.partition);
                    }
                    records.push(record);
                }
                Some(Err(e)) => return Err(broker_err("reading")(e)),
                None => {}
            }
        }
        Ok(records)
    })
    .await
    .map_err(|e| IngestError::Broker(format!("reading {e}")))?
}

/// Records of `topics` that consumer group `group` has not committed yet: per
/// topic, the sum over its partitions of the end offset less the committed one
/// (less the first offset kept, where the group has committed nothing).
pub async fn group_lag(config: &KafkaConfig, group: &str, topics: &[&str]) -> Result<BTreeMap<String, u64>, IngestError> {
    let (config, group) = (config.clone(), group.to_owned());
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.client().set("group.id", &group).set("enable.auto.commit", "false").create().map_err(broker_err("creating a consumer"))?;
        let timeout = Duration::from_secs(10);
        let mut list = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for topic in &topics {
            let broker_topic = config.topic(topic);
            let metadata = consumer.fetch_metadata(Some(&broker_topic), timeout).map_err(broker_err("reading the topic's partitions"))?;
            // A topic that is not there (another namespace, a typo) has no lag to
            // report, and must not read as none.
            let found = metadata.topics().iter().find(|t| t.name() == broker_topic).filter(|t| t.error().is_none() && !t.partitions().is_empty());
            let Some(found) = found else { return Err(IngestError::Broker(format!("topic {broker_topic} is not on the cluster"))) };
            for partition in found.partitions() {
                let (low, high) = consumer.fetch_watermarks(&broker_topic, partition.id(), timeout).map_err(broker_err("reading the end offsets"))?;
                list.add_partition(&broker_topic, partition.id());
                ends.insert((broker_topic.clone(), partition.id()), (low, high));
            }
        }
        let committed = consumer.committed_offsets(list, timeout).map_err(broker_err("reading the committed offsets"))?;
        let mut lag: BTreeMap<String, u64> = topics.iter().map(|t| (t.clone(), 0)).collect();
        for element in committed.elements() {
            let Some(&(low, high)) = ends.get(&(element.topic().to_owned(), element.partition())) else { continue };
            let from = match element.offset() {
                Offset::Offset(o) => o.max(low),
                _ => low,
            };
            let topic = element.topic().strip_prefix(&config.namespace).unwrap_or(element.topic());
            *lag.entry(topic.to_owned()).or_default() += (high - from).max(0) as u64;
        }
        Ok(lag)
    })
    .await
    .map_err(|e| IngestError::Broker(format!("reading lag: {e}")))?
}
