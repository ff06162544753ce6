//! `egret lag`: how far behind the input each pipeline instance of a deployment
//! is, from the committed offsets of its consumer groups: what an operator (or a
//! scaler) reads to decide on more instances (`egret rescale`).

use crate::instance::group_of;
use egret_ingest::kafka::KafkaConfig;
use egret_model::Topic;
use egret_pipeline::ownership::Ownership;
use egret_pipeline::repartition::repartition_topic;
use std::collections::BTreeMap;

/// One instance's lag: records not yet committed, per topic.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceLag {
    pub instance: Ownership,
    /// Stage 1, on the input topics.
    pub input: BTreeMap<String, u64>,
    /// Stage 2, on the repartition topic.
    pub repartition: u64,
}

impl InstanceLag {
    pub fn input_total(&self) -> u64 {
        self.input.values().sum()
    }
}

/// The lag of each of the `instances` instances splitting the input of `group`
/// (one: the group itself).
pub async fn lag(config: &KafkaConfig, group: &str, instances: u32) -> anyhow::Result<Vec<InstanceLag>> {
    anyhow::ensure!(instances >= 1, "--instances is a count of instances: 1 or more");
    let inputs = Topic::default_names();
    let repartition = repartition_topic(group);
    let mut lags = Vec::new();
    for instance in crate::layout::shares(instances) {
        let stage1 = group_of(group, instance);
        let input = egret_ingest::kafka::group_lag(config, &stage1, &inputs).await?;
        let stage2 = egret_ingest::kafka::group_lag(config, &format!("{stage1}-stage2"), &[repartition.as_str()]).await?;
        lags.push(InstanceLag { instance, input, repartition: stage2.values().sum() });
    }
    Ok(lags)
}
