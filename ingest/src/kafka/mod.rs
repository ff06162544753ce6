//! Apache Kafka behind the same `Source`/`Sink` traits as the embedded log.
//!
//! Consumers join one group with cooperative-sticky assignment and never commit on
//! their own: an offset is stored only when the pipeline says everything up to it is
//! processed, and librdkafka's periodic commit sends what is stored. The producer is
//! idempotent. Topics are created with the Admin API when missing.

mod offsets;
mod sink;
mod source;

pub use offsets::{commit_offsets, group_lag, read_from};
pub use sink::KafkaSink;
pub use source::{Commits, KafkaSource};

use crate::IngestError;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// `message.timestamp.after.max.ms` of Egret's topics: any record timestamp is kept.
const ACCEPT_ANY_TIMESTAMP: &str = "9223372036854775807";

/// Derived topics of contract-v1 §3, with whether they are compacted (keyed state).
pub const DERIVED_TOPICS: [(&str, bool); 7] = [
    ("egret.segment-speeds", true),
    ("egret.parking", true),
    // Keyed by the deterministic violation id: a replay's repeats compact away.
    ("egret.violations", true),
    ("egret.hotlist-hits", false),
    ("egret.incidents", false),
    ("egret.bus-status", false),
    ("egret.headways", false),
];

/// How to reach the cluster and how to lay out topics created by Egret.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    pub partitions: i32,
    pub replication: i32,
    /// How long a poll waits for the first message before reporting `Poll::Idle`.
    pub poll_interval: Duration,
    /// Prefix of every topic name on the broker, so several deployments (or test
    /// runs) can share a cluster; the pipeline always sees the contract's names.
    pub namespace: String,
    /// Static group membership (`group.instance.id`): an instance restarted under the
    /// same id within the session timeout gets its partitions back at once, without
    /// a rebalance that would hand some of them out meanwhile and let others run
    /// ahead. `None`: a dynamic member.
    pub instance_id: Option<String>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            group_id: "egret".into(),
            partitions: 4,
            replication: 1,
            poll_interval: Duration::from_millis(200),
            namespace: String::new(),
            instance_id: None,
        }
    }

    /// The broker-side name of a contract topic.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.namespace)
    }

    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers).set("client.id", "egret");
        c
    }
}

pub(crate) fn broker_err(context: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> IngestError + '_ {
    move |e| IngestError::Broker(format!("{context}: {e}"))
}

/// Creates the topics that are missing; existing topics are left as they are.
pub async fn ensure_topics(config: &KafkaConfig, topics: &[(&str, bool)]) -> Result<(), IngestError> {
    let admin: AdminClient<DefaultClientContext> = config.client().create().map_err(broker_err("creating the admin client"))?;
    let names: Vec<String> = topics.iter().map(|(name, _)| config.topic(name)).collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&names)
        .map(|((_, compacted), name)| {
            // Record timestamps are the collector's clock (device clocks are checked
            // against them), and a simulation or replay may be dated anywhere: the
            // broker's default of refusing timestamps an hour ahead would drop them.
            let t = NewTopic::new(name, config.partitions, TopicReplication::Fixed(config.replication)).set("message.timestamp.after.max.ms", ACCEPT_ANY_TIMESTAMP);
            if *compacted { t.set("cleanup.policy", "compact") } else { t }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new, &options).await.map_err(broker_err("creating topics"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(IngestError::Broker(format!("creating topic {topic}: {code}"))),
        }
    }
    Ok(())
}

