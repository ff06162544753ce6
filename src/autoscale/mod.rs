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
//! 0. the StatefulSet's replica count is kept at N × pods per instance;
//! 1. lag above (below) the policy's bound long enough: the layout gets a cut
//!    just ahead of the most advanced instance's progress and `rescaling_to`;
//!    every pod stops there (a standby taking over stops at once);
//! 2. once every old instance's checkpoints are saved at the cut: replicas 0;
//! 3. once no pod is left: `rescale::rescale` from N to M (directories a rescale
//!    cut short left are moved aside first); the layout set to M, with the old
//!    directories still to be moved to `retired/`; they are; replicas M × pods per
//!    instance.
//!
//! A cut the instances do not reach in time (counted from when it was set, in
//! the layout), or a rescale that fails (refused: the instances stopped at
//! different positions; or the broker out of reach), calls the rescale off: the
//! layout goes back to N with no cut, and the old pods go on past it. That only
//! while every old directory holds its checkpoint: nothing is moved aside before
//! the dealt state is written and the layout names the new split.

pub mod k8s;
pub mod policy;
mod serve;

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
    /// Where to serve /metrics and /healthz (unhealthy once no round has finished
    /// for ten rounds and at least five minutes).
    #[arg(long, default_value = "127.0.0.1:8080", env = "EGRET_LISTEN")]
    pub listen: String,
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
    /// Each instance's progress at the previous round, to tell how fast they read.
    last_progress: Vec<Option<Progress>>,
    /// Rescales called off in a row, and until when no new one starts.
    called_off: u32,
    quiet_until_ms: i64,
}

/// How long an instance may take, once a cut is written, to see it (half a
/// second), stop and start again with it: the cut must lie further ahead than
/// it reads in that time.
const RESTART_BUDGET_MS: i64 = 15_000;

/// The longest wait after rescales called off in a row.
const MAX_QUIET_MS: i64 = 6 * 3_600_000;

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
        Ok(Controller { city, pipeline, args, deployment, kafka, statefulset, policy, trend: Trend::default(), last_progress: Vec::new(), called_off: 0, quiet_until_ms: i64::MIN })
    }

    /// Rounds until `stop` flips; a round that fails is reported and tried again.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
        let heartbeat = serve::Heartbeat::default();
        heartbeat.beat();
        let stale_after_ms = (self.args.every * 10).max(300_000);
        let addr = serve::start(&self.args.listen, crate::serve::install_metrics(), heartbeat.clone(), stale_after_ms, stop.clone()).await?;
        // Every series from the start, so that the first rescale or failure shows
        // as an increase.
        for outcome in ["done", "called_off"] {
            metrics::counter!("egret_autoscale_rescales_total", "outcome" => outcome).increment(0);
        }
        metrics::counter!("egret_autoscale_round_errors_total").increment(0);
        status_line(&format!("autoscaling {} of the group {} from the lag, {} to {} instances; metrics on http://{addr}/metrics", self.args.statefulset, self.args.group, self.policy.min, self.policy.max));
        let every = std::time::Duration::from_millis(self.args.every.max(100) as u64);
        loop {
            if let Err(e) = self.round().await {
                metrics::counter!("egret_autoscale_round_errors_total").increment(1);
                status_line(&format!("autoscale: {e:#}; trying again in {every:?}"));
            }
            heartbeat.beat();
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    }

    /// One look at the deployment, and the step it calls for.
    pub async fn round(&mut self) -> anyhow::Result<()> {
        let layout = self.deployment.layout()?;
        metrics::gauge!("egret_autoscale_instances").set(f64::from(layout.instances));
        metrics::gauge!("egret_autoscale_rescaling").set(if layout.rescaling_to.is_some() || layout.retire_from.is_some() { 1.0 } else { 0.0 });
        match layout {
            Layout { retire_from: Some(from), .. } => self.retire_old(from, layout.instances).await,
            Layout { rescaling_to: Some(to), stop_at: Some(at), .. } => self.carry_on(layout, to, at).await,
            _ => self.watch_lag(layout).await,
        }
    }

    async fn watch_lag(&mut self, layout: Layout) -> anyhow::Result<()> {
        // The replica count is the controller's: set at the start (the manifests
        // leave it out) and after anyone changed it.
        let pods = layout.instances * self.args.pods_per_instance;
        if self.statefulset.scale().await?.wanted != pods {
            status_line(&format!("autoscale: {} instances and their standbys are {pods} pods: scaling {} to that", layout.instances, self.args.statefulset));
            self.statefulset.set_replicas(pods).await?;
        }
        let lags = crate::lag::lag(&self.kafka, &self.args.group, layout.instances).await?;
        let worst = lags.iter().map(|l| l.input_total() + l.repartition).max().unwrap_or(0);
        metrics::gauge!("egret_autoscale_worst_lag_records").set(worst as f64);
        let now = egret_model::time::now_ms();
        let progress: Vec<Option<Progress>> = shares(layout.instances).map(|s| Progress::newest(&self.deployment.directory(s))).collect();
        let reading = std::mem::replace(&mut self.last_progress, progress.clone());
        let Some(to) = self.trend.observe(&self.policy, now, layout.instances, worst) else { return Ok(()) };
        if now < self.quiet_until_ms {
            return Ok(());
        }
        // Ahead of the most advanced instance, by more than any reads while it
        // restarts with the cut: every one can still stop there.
        let Some(newest) = progress.iter().flatten().map(|p| p.read_up_to_ms).max() else {
            status_line(&format!("autoscale: {worst} records behind calls for {to} instances, but no instance has written its progress yet"));
            return Ok(());
        };
        let pace = progress.iter().zip(reading.iter().chain(std::iter::repeat(&None))).filter_map(|(now, then)| read_pace(now.as_ref()?, then.as_ref()?)).fold(0.0, f64::max);
        let ahead = self.args.cut_ahead.max((pace * RESTART_BUDGET_MS as f64).ceil() as i64);
        let at = newest + ahead;
        status_line(&format!("autoscale: {worst} records behind: rescaling from {} to {to} instances at the cut at {at} ms ({} s of record time ahead)", layout.instances, ahead / 1000));
        self.deployment.set_layout(&Layout { stop_at: Some(at), rescaling_to: Some(to), cut_set_ms: Some(now), ..layout })?;
        self.trend.reset();
        Ok(())
    }

    /// The rescale from `layout.instances` to `to` at the cut at `at`, from
    /// wherever it stands: nothing of it is written until every old instance's
    /// directory has been dealt out, so until then it can start over or be called off.
    async fn carry_on(&mut self, layout: Layout, to: u32, at: i64) -> anyhow::Result<()> {
        let from = layout.instances;
        let old: Vec<_> = shares(from).map(|s| (s, self.deployment.directory(s))).collect();
        let mut waiting = Vec::new();
        for (share, dir) in &old {
            match rescale::stopped_at(&self.city, &self.pipeline, dir, *share) {
                Ok(Some(stopped)) if stopped == at => {}
                Ok(_) => waiting.push(share.to_string()),
                // A checkpoint this controller cannot read (other settings than the
                // pods', say) never comes right: the timeout calls the rescale off.
                Err(e) => waiting.push(format!("{share} ({e:#})")),
            }
        }
        if !waiting.is_empty() {
            let now = egret_model::time::now_ms();
            let Some(set_ms) = layout.cut_set_ms else {
                // A layout written without it (by hand): its timeout starts now.
                return self.deployment.set_layout(&Layout { cut_set_ms: Some(now), ..layout });
            };
            // Once the pods are scaled away every instance had stopped: a lock held
            // for a moment is no reason to call it off.
            if now - set_ms > self.args.cut_timeout && self.statefulset.scale().await?.wanted != 0 {
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
        // Left by a rescale cut short: the old directories are whole, it starts over.
        for dir in shares(to).map(|s| self.deployment.directory(s)).filter(|d| d.exists()) {
            retire(&self.deployment.checkpoints, &dir, "partial")?;
        }
        let options = RescaleOptions { deployment: self.deployment.clone(), from, to, kafka: self.kafka.clone() };
        match rescale::rescale(&self.city, &self.pipeline, &options).await {
            Ok(done) => status_line(&format!("autoscale: dealt {from} instances out to {to} at the cut at {at} ms, {} plates in flight", done.plates_in_flight)),
            // Refused, or the broker could not be reached for its checks and
            // commits: the old directories are whole, and the old split goes on.
            Err(e) => {
                status_line(&format!("autoscale: the rescale failed: {e:#}; calling it off"));
                return self.call_off(from).await;
            }
        }
        // From here the new split is the deployment: its layout first, then the
        // old directories out of the way.
        self.deployment.set_layout(&Layout { retire_from: Some(from), ..Layout::steady(to) })?;
        self.retire_old(from, to).await
    }

    /// Moves the directories of the split into `from` out of the way, then starts
    /// the `to` instances' pods.
    async fn retire_old(&mut self, from: u32, to: u32) -> anyhow::Result<()> {
        for dir in shares(from).map(|s| self.deployment.directory(s)).filter(|d| d.exists()) {
            retire(&self.deployment.checkpoints, &dir, "dealt")?;
        }
        self.deployment.set_layout(&Layout::steady(to))?;
        self.trend.reset();
        self.called_off = 0;
        metrics::counter!("egret_autoscale_rescales_total", "outcome" => "done").increment(1);
        let pods = to * self.args.pods_per_instance;
        self.statefulset.set_replicas(pods).await?;
        status_line(&format!("autoscale: {to} instances now, {pods} pods"));
        Ok(())
    }

    /// The old split goes on past the cut (its pods see the layout without one):
    /// only while every one of its directories is there (a pod would make a
    /// missing one again, empty, and start its instance from nothing).
    async fn call_off(&mut self, from: u32) -> anyhow::Result<()> {
        let gone: Vec<String> = shares(from).map(|s| self.deployment.directory(s)).filter(|d| !d.is_dir()).map(|d| d.display().to_string()).collect();
        anyhow::ensure!(
            gone.is_empty(),
            "not calling the rescale off: {} are gone, and their instances would start empty. Look in {} for them",
            gone.join(", "),
            self.deployment.checkpoints.join("retired").display()
        );
        self.deployment.set_layout(&Layout::steady(from))?;
        metrics::counter!("egret_autoscale_rescales_total", "outcome" => "called_off").increment(1);
        self.statefulset.set_replicas(from * self.args.pods_per_instance).await?;
        self.trend.reset();
        // Instances that reached the cut issued nothing while the others did not:
        // the next try waits, twice as long after each call-off in a row.
        self.called_off += 1;
        let quiet = self.args.cut_timeout.saturating_mul(1 << self.called_off.min(16)).min(MAX_QUIET_MS);
        self.quiet_until_ms = egret_model::time::now_ms() + quiet;
        status_line(&format!("autoscale: the old split goes on past the cut; no new rescale for {} min", quiet / 60_000));
        Ok(())
    }
}

/// Record time read per wall-clock millisecond between two progress reports
/// of one instance (1 when it keeps up with live input).
fn read_pace(now: &Progress, then: &Progress) -> Option<f64> {
    let wall = now.written_ms - then.written_ms;
    (wall > 0).then(|| (now.read_up_to_ms - then.read_up_to_ms).max(0) as f64 / wall as f64)
}

/// Moves a checkpoint directory out of the deployment's way into `retired/`,
/// kept for an operator to look at or remove: nothing is deleted.
fn retire(checkpoints: &Path, dir: &Path, why: &str) -> anyhow::Result<()> {
    let retired = checkpoints.join("retired");
    std::fs::create_dir_all(&retired)?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let to = retired.join(format!("{name}.{why}-{}", egret_model::time::now_ms()));
    std::fs::rename(dir, &to).map_err(|e| anyhow::anyhow!("moving {} to {}: {e}", dir.display(), to.display()))?;
    crate::layout::sync_directory(Some(checkpoints))?;
    status_line(&format!("autoscale: moved {} to {}", dir.display(), to.display()));
    Ok(())
}

#[cfg(test)]
mod tests;
