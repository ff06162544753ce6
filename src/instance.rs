//! One `egret run --kafka` instance: stage 1 consuming the input topics in the
//! consumer group, stage 2 consuming the repartition topic in `<group>-stage2`,
//! both in this process. Instances sharing a checkpoint directory are one active
//! instance and its standbys (see `take_over`). Active instances that split the
//! input (`--instance K/N`) each read all of it in a group of their own,
//! `<group>.K-of-N`, and keep their share (see `egret_pipeline::ownership`).

use egret_ingest::EndWhenIdle;
use egret_ingest::kafka::{self, Commits, KafkaConfig, KafkaSink, KafkaSource};
use egret_pipeline::checkpoint::{self, CheckpointError, Checkpointer, CheckpointStore, DirStore};
use egret_pipeline::marks::Applied;
use egret_pipeline::ownership::Ownership;
use egret_pipeline::repartition::{Stage1Outputs, Stage2Saved};
use egret_pipeline::stage1::Stage1State;
use std::path::PathBuf;
use egret_model::{CityModel, Topic};
use egret_pipeline::repartition::{self, repartition_topic};
use egret_pipeline::runner::{Ended, Outputs};
use egret_pipeline::stage1::Stage1;
use egret_pipeline::stage2::Stage2;
use egret_pipeline::{DLQ_TOPIC, LiveState, PipelineConfig, Stats};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What an instance did before it stopped.
#[derive(Debug, Clone)]
pub struct InstanceReport {
    pub ended: Ended,
    /// Stage 1's totals plus stage 2's windows closed and late traversals.
    pub stats: Stats,
    pub corrections: u64,
}

/// Creates every topic an instance of `config.group_id` reads or writes, when missing.
pub async fn ensure_all_topics(config: &KafkaConfig) -> anyhow::Result<()> {
    let repartition = repartition_topic(&config.group_id);
    let mut topics: Vec<(&str, bool)> = Topic::ALL.iter().map(|t| (t.default_name(), false)).collect();
    topics.extend(kafka::DERIVED_TOPICS);
    topics.push((DLQ_TOPIC, false));
    topics.push((&repartition, false));
    kafka::ensure_topics(config, &topics).await?;
    Ok(())
}

/// Where and how often both stages save their state (see `egret_pipeline::checkpoint`).
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    /// Locked by the active instance; standbys wait on it (see `take_over`).
    pub dir: PathBuf,
    pub interval: Duration,
}

/// How an instance runs, besides what it computes.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Treat the input as finished once it has been idle this long (then every
    /// window is made final, as at the end of a replay).
    pub exit_when_idle: Option<Duration>,
    pub checkpoints: Option<CheckpointOptions>,
    /// This instance's share of the input, when active instances split it.
    pub ownership: Ownership,
    /// Stop at the cut at this arrival time (ms since the epoch), the state saved
    /// there, for `egret rescale` (see `egret_pipeline::cut`).
    pub stop_at: Option<i64>,
    /// Go on from a checkpoint saved at a cut, as this split, instead of refusing
    /// it (it was saved for a rescale).
    pub past_cut: bool,
    /// Run only if the deployment's layout is still this one once the instance
    /// holds its directory (`pod`): a standby can take a directory over in the
    /// moment between a change of the layout and its noticing it.
    pub layout: Option<crate::layout::Expected>,
}

/// The consumer group of instance `ownership` in `group`: its own when active
/// instances split the input, since each reads all of it.
pub fn group_of(group: &str, ownership: Ownership) -> String {
    match ownership.is_whole() {
        true => group.to_owned(),
        false => format!("{group}.{}-of-{}", ownership.index() + 1, ownership.count()),
    }
}

/// The group names the deployment's repartition topic (`repartition_topic`), so it
/// must be a name a topic can have.
fn check_group(group: &str) -> anyhow::Result<()> {
    let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    anyhow::ensure!(
        !group.is_empty() && group.len() <= 200 && group.chars().all(fits),
        "consumer group {group:?}: use 1 to 200 ASCII letters, digits, '.', '_' or '-' (it names the topic {})",
        repartition_topic(group)
    );
    Ok(())
}

/// What a checkpoint must have been saved under to be restored: the city model,
/// the settings and, when instances split the input, which share. `by_plate`
/// for stage 1, whose split keeps plates by hash since session 18 (by input
/// partition before, so a split stage-1 checkpoint of before holds another share
/// of the plates); stage 2's split is by repartition partition, as it was.
pub(crate) fn fingerprint(city: &CityModel, pipeline: &PipelineConfig, ownership: Ownership, by_plate: bool) -> String {
    #[derive(serde::Serialize)]
    struct Split<'a> {
        #[serde(flatten)]
        pipeline: &'a PipelineConfig,
        instance: String,
    }
    match ownership.is_whole() {
        true => checkpoint::fingerprint(city, pipeline),
        false => checkpoint::fingerprint(city, &Split { pipeline, instance: if by_plate { format!("{ownership} by plate") } else { ownership.to_string() } }),
    }
}

/// Both stages, restored from their checkpoints where there are some.
struct Stages {
    stage1: Stage1,
    stage2: Stage2,
    applied: Applied,
    checkpoints: Option<(Checkpointer, Checkpointer)>,
}

/// Waits until this instance holds the checkpoint directory's lock, which is its
/// right to run the pipeline: `None` if `stop` flips first.
///
/// Instances sharing a directory are one active and its standbys. The standby joins
/// the consumer group only once the active instance has gone (stopped, killed or
/// crashed: the lock dies with the process), and then carries on from the state
/// and offsets of the last checkpoint, as a restart of the same instance would. Its
/// outputs are then exactly those of one uninterrupted instance (`egret faults`).
async fn take_over(dir: &std::path::Path, mut stop: watch::Receiver<bool>) -> anyhow::Result<Option<DirStore>> {
    let mut waiting = false;
    loop {
        match DirStore::open(dir) {
            Ok(store) => {
                if waiting {
                    status_line(&format!("standby: taking over; the other instance has released {}", dir.display()));
                }
                metrics::gauge!("egret_pipeline_active").set(1.0);
                return Ok(Some(store));
            }
            Err(CheckpointError::Locked { .. }) if !waiting => {
                waiting = true;
                metrics::gauge!("egret_pipeline_active").set(0.0);
                status_line(&format!("standby: another instance is running on {}; this one takes over when it stops", dir.display()));
            }
            Err(CheckpointError::Locked { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            _ = tokio::time::sleep(STANDBY_POLL) => {}
            _ = stop.wait_for(|s| *s) => return Ok(None),
        }
    }
}

/// Best effort, like the other status lines of `egret run`: a service must not die
/// because whoever started it stopped reading its output (`println!` panics then).
pub(crate) fn status_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// How often a standby tries the lock: the longest it leaves the input unattended.
const STANDBY_POLL: Duration = Duration::from_millis(250);

fn restore(city: &Arc<CityModel>, pipeline: &PipelineConfig, ownership: Ownership, options: Option<(&CheckpointOptions, DirStore)>) -> anyhow::Result<Stages> {
    let fresh = || Stages { stage1: Stage1::new(city.clone(), pipeline.clone()), stage2: Stage2::new(city, pipeline.clone()), applied: Applied::default(), checkpoints: None };
    let Some((options, store)) = options else { return Ok(fresh()) };
    let store: Arc<dyn CheckpointStore + Sync> = Arc::new(store);
    let (first, saved1) = Checkpointer::open::<Stage1State>(store.clone(), "stage1.cbor", fingerprint(city, pipeline, ownership, true), options.interval)?;
    let (second, saved2) = Checkpointer::open::<Stage2Saved>(store, "stage2.cbor", fingerprint(city, pipeline, ownership, false), options.interval)?;
    let mut stages = fresh();
    if let Some(state) = saved1 {
        let partitions: usize = first.progress.positions.values().map(|p| p.len()).sum();
        status_line(&format!("stage 1 restored from {} ({partitions} input partitions)", options.dir.join("stage1.cbor").display()));
        stages.stage1 = Stage1::restore(city.clone(), pipeline.clone(), state);
    }
    if let Some((state, applied)) = saved2 {
        status_line(&format!("stage 2 restored from {}", options.dir.join("stage2.cbor").display()));
        stages.stage2 = Stage2::restore(city, pipeline.clone(), state);
        stages.applied = applied;
    }
    stages.checkpoints = Some((first, second));
    Ok(stages)
}

/// Runs both stages until `stop` flips, or until the input has been idle for
/// `options.exit_when_idle`.
pub async fn run(
    city: Arc<CityModel>,
    pipeline: PipelineConfig,
    config: &KafkaConfig,
    live: Arc<LiveState>,
    stop: watch::Receiver<bool>,
    options: &RunOptions,
) -> anyhow::Result<InstanceReport> {
    let RunOptions { exit_when_idle, ref checkpoints, ownership, stop_at, past_cut, ref layout } = *options;
    anyhow::ensure!(stop_at.is_none() || checkpoints.is_some(), "stopping at a cut is for rescaling: it needs checkpoints to save the state in");
    anyhow::ensure!(stop_at.is_none() || exit_when_idle.is_none(), "stop at a cut or at the end of the input, not both");
    check_group(&config.group_id)?;
    let repartition = repartition_topic(&config.group_id);
    let base = config;
    let config = &KafkaConfig { group_id: group_of(&config.group_id, ownership), ..config.clone() };
    let stopped = || InstanceReport { ended: Ended::Shutdown, stats: Stats::default(), corrections: 0 };
    let store = match checkpoints {
        Some(options) => match take_over(&options.dir, stop.clone()).await? {
            Some(store) => Some((options, store)),
            None => return Ok(stopped()),
        },
        None => None,
    };
    if let Some(expected) = layout
        && !expected.holds()?
    {
        return Ok(stopped());
    }
    ensure_all_topics(base).await?;
    let Stages { mut stage1, mut stage2, mut applied, checkpoints } = restore(&city, &pipeline, ownership, store)?;
    // Stage 1 ran on past a cut (`--past-cut`) and the process stopped before
    // stage 2 saved that it had too: stage 2's cut is moot.
    if stage2.state().stopped_at().is_some() && stage2.state().stopped_at() != stage1.state().stopped_at() {
        stage2.forget_cuts_but(None);
    }
    if let Some(at) = stage1.state().stopped_at()
        && stop_at != Some(at)
        && !past_cut
    {
        anyhow::bail!(
            "instance {ownership} stopped at the cut at {at} ms for a rescale, and its checkpoint was saved there: `egret rescale` deals it out to the new instances, which go on from it. \
             Give --stop-at {at} to stop there again, or --past-cut to go on with this split of {} instances instead",
            ownership.count()
        );
    }
    stage1.set_ownership(ownership);
    stage2.set_ownership(ownership, config.partitions as u32);
    stage1.set_stop_at(stop_at);
    stage2.set_stop_at(stop_at);
    let commits = if checkpoints.is_some() { Commits::OnCheckpoint } else { Commits::Periodic };
    let (mut first_checkpoints, mut second_checkpoints) = checkpoints.map_or((None, None), |(a, b)| (Some(a), Some(b)));
    let sink = Arc::new(KafkaSink::new(config)?);
    let inputs = Topic::default_names();
    let idle_polls = exit_when_idle.map_or(u32::MAX, |d| (d.as_millis() / config.poll_interval.as_millis().max(1)).max(1) as u32);
    let mut stage1_source = EndWhenIdle::new(KafkaSource::subscribe_with(config, &inputs, commits).await?, idle_polls);
    let stage2_config = KafkaConfig { group_id: format!("{}-stage2", config.group_id), ..config.clone() };
    // Stage 2 waits for stage 1's final marks before it can call its input idle.
    let mut stage2_source = EndWhenIdle::new(KafkaSource::subscribe_with(&stage2_config, &[repartition.as_str()], commits).await?, idle_polls.saturating_mul(2));
    let producer = RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
    // Police hotlists come from `live.hotlists()`, which stage 1 follows.
    // A stage that fails (an error or a panic) stops the other, as when both were one
    // future: the instance then ends with the error instead of half running.
    let (abort, aborted) = watch::channel(false);
    let wait = |mut stop: watch::Receiver<bool>, mut aborted: watch::Receiver<bool>| async move {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            Ok(_) = aborted.wait_for(|a| *a) => {}
        }
    };
    let partitions = config.partitions as u32;
    // Two tasks, not one future joining both, so the stages work at once and neither's
    // batch waits behind the other's; on threads of their own, so the API's requests
    // and pushes do not wait behind either (see `PipelineThreads`).
    let threads = crate::serve::PipelineThreads::new(2)?;
    let first = threads.spawn({
        let (sink, live, shutdown) = (sink.clone(), live.clone(), wait(stop.clone(), aborted.clone()));
        async move {
            let outputs = Stage1Outputs { repartition: &*sink, topic: &repartition, dead_letters: &*sink, producer, partitions };
            let ended = repartition::run_stage1(&mut stage1_source, &outputs, &mut stage1, &live, first_checkpoints.as_mut(), shutdown).await;
            (ended, stage1_source, stage1)
        }
    });
    let second = threads.spawn({
        let (sink, live, shutdown) = (sink.clone(), live.clone(), wait(stop, aborted));
        async move {
            let outputs = Outputs { dead_letters: &*sink, derived: &*sink };
            let ended = repartition::run_stage2(&mut stage2_source, &outputs, &mut stage2, &mut applied, &live, second_checkpoints.as_mut(), shutdown).await;
            (ended, stage2_source, stage2)
        }
    });
    let (mut first, mut second) = (first, second);
    let (first, second) = tokio::select! {
        done = &mut first => {
            if failed(&done) {
                let _ = abort.send(true);
            }
            (done, second.await)
        }
        done = &mut second => {
            if failed(&done) {
                let _ = abort.send(true);
            }
            (first.await, done)
        }
    };
    let ((first, stage1_source, stage1), (second, stage2_source, stage2)) = (first?, second?);
    let (_, ended) = (first?, second?);
    sink.flush(Duration::from_secs(30))?;
    // A checkpointing instance commits only what its checkpoints hold (done by them).
    if commits == Commits::Periodic {
        stage1_source.into_inner().commit_now()?;
        stage2_source.into_inner().commit_now()?;
    }
    let stats = Stats { late_traversals: stage1.stats().late_traversals + stage2.late_traversals(), windows_closed: stage2.windows_closed(), ..stage1.stats().clone() };
    Ok(InstanceReport { ended, stats, corrections: stage2.corrections() })
}

/// Whether a stage's task ended in an error or a panic.
fn failed<T, U>(done: &Result<(Result<Ended, egret_ingest::IngestError>, T, U), tokio::task::JoinError>) -> bool {
    !matches!(done, Ok((Ok(_), _, _)))
}

/// A static membership id for the instance that owns `checkpoint_dir` on this host:
/// stable across its restarts, different for every other instance (another host,
/// or another directory here).
pub fn default_instance_id(checkpoint_dir: &std::path::Path) -> String {
    use std::hash::{Hash, Hasher};
    let host = std::fs::read_to_string("/etc/hostname").ok().or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_default();
    // Absolute, not canonical: the directory may not exist yet on the first start.
    let dir = std::path::absolute(checkpoint_dir).unwrap_or_else(|_| checkpoint_dir.to_path_buf());
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (host.trim(), &dir).hash(&mut hasher);
    format!("egret-{}-{:016x}", host.trim(), hasher.finish())
}

/// Every record of a topic, read in a fresh consumer group until it has been idle
/// for 3 s.
pub async fn read_topic(config: &KafkaConfig, topic: &str) -> anyhow::Result<Vec<egret_ingest::Record>> {
    use egret_ingest::{Poll, Source};
    let mut source = EndWhenIdle::new(KafkaSource::subscribe(config, &[topic]).await?, 30);
    let mut all = Vec::new();
    loop {
        match source.poll(1000).await? {
            Poll::Records(records) => all.extend(records),
            Poll::Idle => {}
            Poll::End => return Ok(all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_names_its_share_and_one_instances_reads_as_before() {
        let city = crate::load_city(None).expect("city model");
        let pipeline = PipelineConfig::default();
        let share = |i| Ownership::new(i, 2).expect("a share");
        let (first, second) = (fingerprint(&city, &pipeline, share(0), true), fingerprint(&city, &pipeline, share(1), true));
        assert_ne!(first, second, "instance 2/2 refuses the checkpoint of 1/2");
        assert!(first.contains(r#""instance":"1/2 by plate""#), "the refusal shows which share it was: {first}");
        assert!(fingerprint(&city, &pipeline, share(0), false).contains(r#""instance":"1/2""#), "stage 2 restores the split's checkpoints of before");
        for by_plate in [true, false] {
            let whole = fingerprint(&city, &pipeline, Ownership::default(), by_plate);
            assert_eq!(whole, checkpoint::fingerprint(&city, &pipeline), "one instance restores what versions before the split saved");
        }
    }
}
