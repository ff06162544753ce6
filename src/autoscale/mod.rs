//! `egret autoscale`: changes the number of active instances of a deployment on
//! Kubernetes with its consumer lag, by the steps an operator takes by hand
//! (README, "Rescaling"): stop every instance at one cut, deal their checkpoints
//! out, start the new split there.
//!
//! The pipeline's StatefulSet runs N × `pods_per_instance` pods that follow the
//! deployment's layout (`egret run --pod-index`, `pod`). The controller's every
//! step is a change of the layout or of the replica count, made again from what
//! it reads each round, so a controller restarted at any point carries on:
//!
//! 1. lag above (below) the policy's bound long enough: the layout gets a cut
//!    just ahead of the most advanced instance's progress and `rescaling_to`;
//!    every pod stops there (a standby taking over stops at once);
//! 2. once every old instance's checkpoints are saved at the cut: replicas 0;
//! 3. once no pod is left: `rescale::rescale` from N to M (directories a rescale
//!    cut short left are moved aside first), the old directories moved to
//!    `retired/`, the layout set to M with no cut, replicas M × pods per instance.
//!
//! A cut the instances do not reach in time, or a rescale refused (the
//! instances stopped at different positions), calls the rescale off: the layout
//! goes back to N with no cut, and the old pods go on past it.

pub mod k8s;
pub mod policy;

use crate::instance::status_line;
use crate::layout::{Deployment, Layout, Progress, shares};
use crate::rescale::{self, RescaleOptions};
use egret_ingest::kafka::KafkaConfig;
use egret_model::CityModel;
use egret_pipeline::PipelineConfig;
use policy::{Policy, Trend};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `egret autoscale`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct AutoscaleArgs {
    /// Kafka bootstrap servers: the consumer groups' lag is read there.
    #[arg(long)]
    pub kafka: String,
    /// The instances' consumer group.
    #[arg(long, default_value = "egret")]
    pub group: String,
    /// The volume holding the instances' checkpoint directories and the layout
    /// (the pods' --checkpoints).
    #[arg(long)]
    pub checkpoints: PathBuf,
    /// The Kubernetes API, as `kubectl proxy` serves it beside this container.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    pub kube_api: String,
    /// The Kubernetes namespace of the StatefulSet.
    #[arg(long, env = "EGRET_KUBE_NAMESPACE", default_value = "egret")]
    pub kube_namespace: String,
    /// The pipeline's StatefulSet.
    #[arg(long, default_value = "egret-pipeline")]
    pub statefulset: String,
    /// Pods per instance: the active one and its standbys.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub pods_per_instance: u32,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub min_instances: u32,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_instances: u32,
    /// One instance more when the worst instance is this many records behind...
    #[arg(long, default_value_t = 500_000)]
    pub scale_up_lag: u64,
    /// ...for this long.
    #[arg(long, default_value = "3m", value_parser = crate::parse_duration_ms)]
    pub scale_up_after: i64,
    /// One instance fewer when every instance is fewer than this many records behind...
    #[arg(long, default_value_t = 10_000)]
    pub scale_down_lag: u64,
    /// ...for this long.
    #[arg(long, default_value = "30m", value_parser = crate::parse_duration_ms)]
    pub scale_down_after: i64,
    /// How far ahead of the most advanced instance (in record time) the cut is placed.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration_ms)]
    pub cut_ahead: i64,
    /// How long the instances may take to reach the cut before the rescale is called off.
    #[arg(long, default_value = "10m", value_parser = crate::parse_duration_ms)]
    pub cut_timeout: i64,
    /// How often to look at the lag and the rescale under way.
    #[arg(long, default_value = "15s", value_parser = crate::parse_duration_ms)]
    pub every: i64,
}

/// The controller between its rounds.
pub struct Controller {
    city: Arc<CityModel>,
    pipeline: PipelineConfig,
    args: AutoscaleArgs,
    deployment: Deployment,
    kafka: KafkaConfig,
    statefulset: k8s::StatefulSet,
    policy: Policy,
    trend: Trend,
    /// When this controller first saw the cut under way (for its timeout).
    cut_seen_at: Option<(i64, i64)>,
}

impl Controller {
    pub fn new(city: Arc<CityModel>, pipeline: PipelineConfig, args: AutoscaleArgs, namespace: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(args.min_instances <= args.max_instances, "--min-instances {} is above --max-instances {}", args.min_instances, args.max_instances);
        anyhow::ensure!(args.scale_down_lag < args.scale_up_lag, "--scale-down-lag must be below --scale-up-lag");
        let deployment = Deployment { checkpoints: args.checkpoints.clone(), namespace: namespace.to_owned(), group: args.group.clone() };
        let kafka = KafkaConfig { namespace: namespace.to_owned(), group_id: args.group.clone(), ..KafkaConfig::new(args.kafka.clone()) };
        let statefulset = k8s::StatefulSet::new(&args.kube_api, &args.kube_namespace, &args.statefulset)?;
        let policy = Policy {
            up_lag: args.scale_up_lag,
            down_lag: args.scale_down_lag,
            up_after_ms: args.scale_up_after,
            down_after_ms: args.scale_down_after,
            min: args.min_instances,
            max: args.max_instances,
        };
        Ok(Controller { city, pipeline, args, deployment, kafka, statefulset, policy, trend: Trend::default(), cut_seen_at: None })
    }

    /// Rounds until `stop` flips; a round that fails is reported and tried again.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
        status_line(&format!("autoscaling {} of the group {} from the lag, {} to {} instances", self.args.statefulset, self.args.group, self.policy.min, self.policy.max));
        let every = std::time::Duration::from_millis(self.args.every.max(100) as u64);
        loop {
            if let Err(e) = self.round().await {
                status_line(&format!("autoscale: {e:#}; trying again in {every:?}"));
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    }

    /// One look at the deployment, and the step it calls for.
    pub async fn round(&mut self) -> anyhow::Result<()> {
        let layout = self.deployment.layout()?;
        match (layout.rescaling_to, layout.stop_at) {
            (Some(to), Some(at)) => self.carry_on(layout.instances, to, at).await,
            _ => self.watch_lag(layout).await,
        }
    }

    async fn watch_lag(&mut self, layout: Layout) -> anyhow::Result<()> {
        let lags = crate::lag::lag(&self.kafka, &self.args.group, layout.instances).await?;
        let worst = lags.iter().map(|l| l.input_total() + l.repartition).max().unwrap_or(0);
        let now = egret_model::time::now_ms();
        let Some(to) = self.trend.observe(&self.policy, now, layout.instances, worst) else { return Ok(()) };
        // Ahead of the most advanced instance: every one can still stop there.
        let newest = shares(layout.instances).filter_map(|s| Progress::newest(&self.deployment.directory(s))).map(|p| p.as_of_ms).max();
        let Some(newest) = newest else {
            status_line(&format!("autoscale: {worst} records behind calls for {to} instances, but no instance has written its progress yet"));
            return Ok(());
        };
        let at = newest + self.args.cut_ahead;
        status_line(&format!("autoscale: {worst} records behind: rescaling from {} to {to} instances at the cut at {at} ms", layout.instances));
        self.deployment.set_layout(&Layout { instances: layout.instances, stop_at: Some(at), rescaling_to: Some(to) })?;
        self.trend.reset();
        Ok(())
    }

    /// The rescale from `from` to `to` at the cut at `at`, from wherever it stands.
    async fn carry_on(&mut self, from: u32, to: u32, at: i64) -> anyhow::Result<()> {
        let old: Vec<_> = shares(from).map(|s| (s, self.deployment.directory(s))).collect();
        let new: Vec<PathBuf> = shares(to).map(|s| self.deployment.directory(s)).collect();
        if old.iter().all(|(_, d)| !d.exists()) && new.iter().all(|d| has_checkpoint(d)) {
            // Dealt out and moved aside; the controller stopped before the layout.
            return self.finish(to).await;
        }
        let mut waiting = Vec::new();
        for (share, dir) in &old {
            if rescale::stopped_at(&self.city, &self.pipeline, dir, *share)? != Some(at) {
                waiting.push(share.to_string());
            }
        }
        if !waiting.is_empty() {
            let now = egret_model::time::now_ms();
            if self.cut_seen_at.is_none_or(|(seen, _)| seen != at) {
                self.cut_seen_at = Some((at, now));
            }
            let since = self.cut_seen_at.map_or(now, |(_, since)| since);
            if now - since > self.args.cut_timeout {
                status_line(&format!("autoscale: instances {} did not stop at the cut at {at} ms in {} s: calling the rescale off", waiting.join(", "), self.args.cut_timeout / 1000));
                return self.call_off(from).await;
            }
            status_line(&format!("autoscale: waiting for instances {} to stop at the cut at {at} ms", waiting.join(", ")));
            return Ok(());
        }
        // Every old instance has stopped: no pod may run while the state is dealt.
        let scale = self.statefulset.scale().await?;
        if scale.wanted != 0 {
            status_line(&format!("autoscale: every instance stopped at the cut at {at} ms: scaling {} to 0", self.args.statefulset));
            return self.statefulset.set_replicas(0).await;
        }
        if scale.running != 0 {
            status_line(&format!("autoscale: waiting for {} pods to go", scale.running));
            return Ok(());
        }
        for dir in new.iter().filter(|d| d.exists()) {
            retire(&self.deployment.checkpoints, dir, &format!("partial-{}", egret_model::time::now_ms()))?;
        }
        let options = RescaleOptions { deployment: self.deployment.clone(), from, to, kafka: self.kafka.clone() };
        match rescale::rescale(&self.city, &self.pipeline, &options).await {
            Ok(done) => status_line(&format!("autoscale: dealt {from} instances out to {to} at the cut at {at} ms, {} plates in flight", done.plates_in_flight)),
            Err(e) => {
                status_line(&format!("autoscale: the rescale was refused: {e:#}; calling it off"));
                return self.call_off(from).await;
            }
        }
        for (_, dir) in &old {
            retire(&self.deployment.checkpoints, dir, &format!("cut-{at}"))?;
        }
        self.finish(to).await
    }

    async fn finish(&mut self, to: u32) -> anyhow::Result<()> {
        self.deployment.set_layout(&Layout { instances: to, stop_at: None, rescaling_to: None })?;
        self.statefulset.set_replicas(to * self.args.pods_per_instance).await?;
        self.trend.reset();
        self.cut_seen_at = None;
        status_line(&format!("autoscale: {to} instances now, {} pods", to * self.args.pods_per_instance));
        Ok(())
    }

    /// The old split goes on past the cut (its pods see the layout without one).
    async fn call_off(&mut self, from: u32) -> anyhow::Result<()> {
        self.deployment.set_layout(&Layout { instances: from, stop_at: None, rescaling_to: None })?;
        self.statefulset.set_replicas(from * self.args.pods_per_instance).await?;
        self.trend.reset();
        self.cut_seen_at = None;
        Ok(())
    }
}

fn has_checkpoint(dir: &Path) -> bool {
    dir.join("stage1.cbor").is_file() && dir.join("stage2.cbor").is_file()
}

/// Moves a checkpoint directory out of the deployment's way into `retired/`,
/// kept for an operator to look at or remove: nothing is deleted.
fn retire(checkpoints: &Path, dir: &Path, why: &str) -> anyhow::Result<()> {
    let retired = checkpoints.join("retired");
    std::fs::create_dir_all(&retired)?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let to = retired.join(format!("{name}.{why}"));
    std::fs::rename(dir, &to).map_err(|e| anyhow::anyhow!("moving {} to {}: {e}", dir.display(), to.display()))?;
    status_line(&format!("autoscale: moved {} to {}", dir.display(), to.display()));
    Ok(())
}
