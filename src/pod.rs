//! `egret run --kafka --checkpoints DIR --pod-index I`: one pod of a StatefulSet
//! of split instances, which learns from the deployment's layout (`layout`)
//! which instance it is and whether to stop at a cut, instead of from its
//! arguments. Pods I and I + N share instance (I mod N) + 1's checkpoint
//! directory: one holds its lock and runs, the other waits as its standby.
//!
//! The pod follows the layout while it runs: when `egret autoscale` sets a cut,
//! it stops and starts again in this process with `--stop-at` (the same path
//! as a restart with it, tested for `egret rescale`); when the cut is called
//! off it goes on past it. It also writes its progress for the controller to
//! place the cut by. The instance count changes only while no pod runs (the
//! controller scales the StatefulSet to 0 for the rescale), so a pod never
//! changes which instance it is while it runs.

use crate::instance::{self, CheckpointOptions, InstanceReport, RunOptions, status_line};
use crate::layout::{Deployment, Expected, Layout, Progress};
use egret_ingest::kafka::KafkaConfig;
use egret_model::CityModel;
use egret_pipeline::runner::Ended;
use egret_pipeline::{LiveState, PipelineConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often a pod reads the layout and writes its progress: a cut is placed a
/// margin ahead of the progress, which must not go stale by more than a fraction of it.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct PodOptions {
    pub deployment: Deployment,
    /// The pod's ordinal in its StatefulSet.
    pub pod_index: u32,
    pub checkpoint_interval: Duration,
    /// End once the input has been idle this long, while the layout sets no cut
    /// (tests and replays; a deployment's pods run until stopped).
    pub exit_when_idle: Option<Duration>,
}

/// Why the follower of the layout let the instance go.
enum Followed {
    /// The process is stopping.
    Stopped,
    /// The layout changed: run again as it says now.
    Changed(Layout),
}

/// Runs the instance the layout makes of this pod, again each time the layout
/// changes, until `stop` flips or the input ends.
pub async fn run(city: Arc<CityModel>, pipeline: PipelineConfig, config: &KafkaConfig, live: Arc<LiveState>, stop: watch::Receiver<bool>, options: &PodOptions) -> anyhow::Result<InstanceReport> {
    let mut layout = options.deployment.layout()?;
    loop {
        let share = layout.share_of_pod(options.pod_index)?;
        let dir = options.deployment.directory(share);
        let cut = layout.stop_at.map_or_else(String::new, |at| format!(", to stop at the cut at {at} ms"));
        status_line(&format!("pod {}: instance {share} of the deployment's layout{cut}", options.pod_index));
        let run_options = RunOptions {
            exit_when_idle: options.exit_when_idle.filter(|_| layout.stop_at.is_none()),
            checkpoints: Some(CheckpointOptions { dir: dir.clone(), interval: options.checkpoint_interval }),
            ownership: share,
            stop_at: layout.stop_at,
            // A layout without a cut after one with it: the rescale was called off.
            past_cut: layout.stop_at.is_none(),
            layout: Some(Expected { deployment: options.deployment.clone(), layout }),
        };
        let (let_go, instance_stop) = watch::channel(false);
        let follower = tokio::spawn(follow(options.clone(), layout, dir, live.clone(), stop.clone(), let_go));
        let report = match instance::run(city.clone(), pipeline.clone(), config, live.clone(), instance_stop.clone(), &run_options).await {
            Ok(report) => report,
            Err(e) => {
                follower.abort();
                return Err(e);
            }
        };
        let let_go = *instance_stop.borrow();
        if report.ended == Ended::Cut {
            status_line("stopped at the cut, the state saved there; waiting for the deployment's layout to change (egret autoscale rescales it)");
        } else if !let_go && report.ended != Ended::Shutdown {
            follower.abort();
            return Ok(report);
        }
        // Stopped for a new layout (by the follower, or by the instance itself,
        // having found the layout changed once it took its directory over).
        match follower.await? {
            // What stopped it now is the process stopping, not the cut.
            Followed::Stopped => return Ok(InstanceReport { ended: Ended::Shutdown, ..report }),
            Followed::Changed(next) => {
                status_line(&format!("the deployment's layout changed ({} instances, cut {:?}): starting again as it says", next.instances, next.stop_at));
                layout = next;
            }
        }
    }
}

/// Watches the layout and `stop` while the instance runs (and after it stopped at
/// a cut), writing the pod's progress; lets the instance go on either.
async fn follow(options: PodOptions, running: Layout, dir: PathBuf, live: Arc<LiveState>, mut stop: watch::Receiver<bool>, let_go: watch::Sender<bool>) -> Followed {
    let (mut unreadable, mut unwritten) = (false, false);
    let mut interval = tokio::time::interval(FOLLOW_EVERY);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        if *stop.borrow() || stop.has_changed().is_err() {
            let _ = let_go.send(true);
            return Followed::Stopped;
        }
        match options.deployment.layout() {
            Ok(layout) if layout != running => {
                let _ = let_go.send(true);
                return Followed::Changed(layout);
            }
            Ok(_) => unreadable = false,
            // Kept running as it was: a file being edited by hand can be wrong for a moment.
            Err(e) if !unreadable => {
                unreadable = true;
                tracing::warn!("{e}; running on as before");
            }
            Err(_) => {}
        }
        // A standby has read nothing yet: it has nothing to say.
        let read_up_to_ms = live.newest_read_ms();
        if read_up_to_ms > 0 {
            // Warned once: without it the controller places its cuts on what it read before.
            match (Progress { read_up_to_ms, written_ms: egret_model::time::now_ms() }).write(&dir, options.pod_index) {
                Err(e) if !unwritten => {
                    unwritten = true;
                    tracing::warn!("progress not written: {e}");
                }
                Err(_) => {}
                Ok(()) => unwritten = false,
            }
        }
    }
}
