//! `egret rescale`: turns the checkpoints of N active instances that split the
//! input (`egret run --kafka --instance K/N`) into those of M, so a deployment
//! changes its number of instances without replaying its input from the start.
//!
//! The N checkpoints must be of one cut: every instance stopped by `egret run
//! --stop-at T` with one T (`egret_pipeline::cut`), so that all stand at the same
//! input positions and stage 2 has applied everything stage 1 sent before them.
//! The state is dealt out by `egret_pipeline::rescale`; the new checkpoints carry
//! the cut's positions, and the new consumer groups' offsets are committed there
//! too, so the M instances fetch from the cut instead of reading every topic from
//! its start only to skip to it. The repartition topic is read past where the old
//! stage 2s stopped: updates there (an old instance started again past the cut)
//! would never be applied, and are refused.
//!
//! The old directories are locked while they are read: a running instance (or a
//! standby holding its directory) makes the command refuse, not read a state
//! being written. Nothing existing is overwritten: a directory of the new split
//! that already holds a checkpoint (left from an earlier run with M instances) is
//! refused with its path.

use crate::instance::{fingerprint, group_of};
use crate::layout::{Deployment, shares};
use egret_ingest::kafka::KafkaConfig;
use egret_pipeline::checkpoint::{self, Checkpoint, CheckpointStore, DirStore, Positions};
use egret_pipeline::marks::Applied;
use egret_pipeline::ownership::Ownership;
use egret_pipeline::repartition::{Internal, Stage2Saved};
use egret_pipeline::rescale;
use egret_pipeline::stage1::Stage1State;
use egret_pipeline::stage2::Stage2State;
use egret_pipeline::PipelineConfig;
use egret_model::CityModel;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

const STAGE1: &str = "stage1.cbor";
const STAGE2: &str = "stage2.cbor";

/// What to rescale, and where the checkpoints are.
#[derive(Debug, Clone)]
pub struct RescaleOptions {
    /// Where the instances' checkpoint directories are, named as `egret run`
    /// names them by default.
    pub deployment: Deployment,
    pub from: u32,
    pub to: u32,
    /// The deployment's cluster: the repartition topic is checked there, and the
    /// new groups' offsets are committed there.
    pub kafka: KafkaConfig,
}

/// What was written.
#[derive(Debug)]
pub struct Rescaled {
    /// The cut the old instances stopped at, where the new ones go on from.
    pub cut_ms: i64,
    pub directories: Vec<PathBuf>,
    /// Plates with reads in flight, over all new instances (as over all old ones).
    pub plates_in_flight: usize,
}

/// The old instances' checkpoints, read and checked to be of one cut.
struct Cut {
    at_ms: i64,
    stage1: Vec<Stage1State>,
    stage2: Vec<Stage2State>,
    /// Stage 1's, the same for all.
    positions1: Positions,
    /// Each repartition partition's old owner's.
    positions2: Positions,
}

/// Deals the checkpoints of `options.from` instances out to `options.to`.
pub async fn rescale(city: &Arc<CityModel>, pipeline: &PipelineConfig, options: &RescaleOptions) -> anyhow::Result<Rescaled> {
    // As `egret run` runs the pipeline (`commands::run`): the checkpoints'
    // fingerprints name its settings.
    let pipeline = &PipelineConfig { clock: egret_pipeline::ClockMode::Event, ..pipeline.clone() };
    anyhow::ensure!(options.from >= 1 && options.to >= 1, "--from and --to are counts of instances: 1 or more");
    anyhow::ensure!(options.from != options.to, "the deployment already has {} instances: nothing to deal out", options.to);
    let partitions = u32::try_from(options.kafka.partitions)?;
    let old: Vec<(Ownership, DirStore)> = shares(options.from)
        .map(|share| {
            let dir = options.deployment.directory(share);
            anyhow::ensure!(dir.join(STAGE1).is_file() && dir.join(STAGE2).is_file(), "no checkpoint of instance {share} in {}: give the directory they are in (--checkpoints) and the group and count they ran with", dir.display());
            let store = DirStore::open(&dir).map_err(|e| anyhow::anyhow!("instance {share}: {e} (stop every instance of the old split, and its standbys, before rescaling)"))?;
            Ok((share, store))
        })
        .collect::<anyhow::Result<_>>()?;
    let cut = read_cut(city, pipeline, options, &old)?;
    check_nothing_after(options, &cut).await?;
    let new: Vec<(Ownership, DirStore)> = shares(options.to)
        .map(|share| {
            let dir = options.deployment.directory(share);
            let store = DirStore::open(&dir).map_err(|e| anyhow::anyhow!("instance {share} of the new split: {e}"))?;
            for name in [STAGE1, STAGE2] {
                anyhow::ensure!(store.get(name)?.is_none(), "{} already holds a checkpoint (of an earlier run with {} instances?): remove it first, nothing is overwritten", store.describe(name), options.to);
            }
            Ok((share, store))
        })
        .collect::<anyhow::Result<_>>()?;
    // Everything dealt before anything is written: a refusal writes nothing.
    let mut dealt = Vec::new();
    for (share, _) in &new {
        let stage1 = rescale::stage1(cut.stage1.iter().map(copy).collect::<anyhow::Result<_>>()?, *share)?;
        let stage2 = rescale::stage2(city, pipeline.clone(), cut.stage2.iter().map(copy).collect::<anyhow::Result<_>>()?, partitions, *share)?;
        dealt.push((stage1, stage2));
    }
    let taken_at_ms = egret_model::time::now_ms();
    let mut plates_in_flight = 0;
    for ((share, store), (stage1, stage2)) in new.iter().zip(dealt) {
        let fail = |e: egret_pipeline::checkpoint::CheckpointError| anyhow::anyhow!("{e}; the new directories written so far must be removed before running again");
        let first = Checkpoint { format: checkpoint::FORMAT, fingerprint: fingerprint(city, pipeline, *share, true), taken_at_ms, positions: cut.positions1.clone(), state: stage1 };
        checkpoint::save(store, STAGE1, &first).map_err(fail)?;
        plates_in_flight += first.state.plates_in_flight();
        // Nothing of the new split has been applied yet: what the old instances
        // sent before the cut is all in the state, and stage 2 passes over it.
        let second = Checkpoint { format: checkpoint::FORMAT, fingerprint: fingerprint(city, pipeline, *share, false), taken_at_ms, positions: cut.positions2.clone(), state: (stage2, Applied::default()) };
        checkpoint::save(store, STAGE2, &second).map_err(fail)?;
        crate::instance::status_line(&format!("wrote instance {share} to {}", store.describe("")));
    }
    for (share, _) in &new {
        let group = group_of(&options.deployment.group, *share);
        egret_ingest::kafka::commit_offsets(&options.kafka, &group, &cut.positions1).await?;
        egret_ingest::kafka::commit_offsets(&options.kafka, &format!("{group}-stage2"), &cut.positions2).await?;
    }
    crate::instance::status_line(&format!("committed the offsets of the cut for the {} new consumer groups", options.to));
    Ok(Rescaled { cut_ms: cut.at_ms, directories: new.iter().map(|(share, _)| options.deployment.directory(*share)).collect(), plates_in_flight })
}

/// The cut instance `share`'s checkpoints in `dir` were both saved at, if they
/// were (`run --stop-at`); `None` too while an instance holds the directory.
pub fn stopped_at(city: &Arc<CityModel>, pipeline: &PipelineConfig, dir: &std::path::Path, share: Ownership) -> anyhow::Result<Option<i64>> {
    // Opening makes a directory: one that is gone must stay gone.
    anyhow::ensure!(dir.is_dir(), "{} is gone", dir.display());
    let store = match DirStore::open(dir) {
        Ok(store) => store,
        Err(egret_pipeline::checkpoint::CheckpointError::Locked { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (first, second) = load_both(city, pipeline, &store, share)?;
    Ok(match (first.and_then(|c| c.state.stopped_at()), second.and_then(|c| c.state.0.stopped_at())) {
        (Some(a), Some(b)) if a == b => Some(a),
        _ => None,
    })
}

/// Stage 1's and stage 2's checkpoints of one instance, where there are some.
type BothStages = (Option<Checkpoint<Stage1State>>, Option<Checkpoint<Stage2Saved>>);

/// Instance `share`'s two checkpoints in `store`, read with the fingerprints
/// `egret run` saves them under (it runs the pipeline on the event clock,
/// `commands::run`).
fn load_both(city: &Arc<CityModel>, pipeline: &PipelineConfig, store: &DirStore, share: Ownership) -> anyhow::Result<BothStages> {
    let pipeline = &PipelineConfig { clock: egret_pipeline::ClockMode::Event, ..pipeline.clone() };
    Ok((checkpoint::load(store, STAGE1, &fingerprint(city, pipeline, share, true))?, checkpoint::load(store, STAGE2, &fingerprint(city, pipeline, share, false))?))
}

/// A state copied through its serialized form (the states are not `Clone`):
/// each new instance is dealt from the old states afresh.
fn copy<S: serde::Serialize + serde::de::DeserializeOwned>(state: &S) -> anyhow::Result<S> {
    Ok(ciborium::Value::serialized(state)?.deserialized()?)
}

/// Reads every old instance's checkpoints and checks they are of one cut: every
/// instance stopped at it (`run --stop-at`) and, since each reads every input
/// partition, at the same positions there.
fn read_cut(city: &Arc<CityModel>, pipeline: &PipelineConfig, options: &RescaleOptions, old: &[(Ownership, DirStore)]) -> anyhow::Result<Cut> {
    let mut cut: Option<Cut> = None;
    for (share, store) in old {
        let missing = |name: &str| anyhow::anyhow!("{} is gone", store.describe(name));
        let (first, second) = load_both(city, pipeline, store, *share)?;
        let (first, second) = (first.ok_or_else(|| missing(STAGE1))?, second.ok_or_else(|| missing(STAGE2))?);
        let (Some(at), Some(at2)) = (first.state.stopped_at(), second.state.0.stopped_at()) else {
            anyhow::bail!("the checkpoint of instance {share} was not saved at a cut: stop every instance of the split with `egret run ... --stop-at T` (one T for all) first");
        };
        anyhow::ensure!(at == at2, "instance {share}'s stages stopped at two cuts, {at} and {at2} ms");
        let cut = cut.get_or_insert_with(|| Cut { at_ms: at, stage1: Vec::new(), stage2: Vec::new(), positions1: first.positions.clone(), positions2: Positions::new() });
        anyhow::ensure!(cut.at_ms == at, "instance {share} stopped at the cut at {at} ms, instance 1 of {} at {} ms: stop them all at one", options.from, cut.at_ms);
        anyhow::ensure!(
            cut.positions1 == first.positions,
            "instance {share} stopped elsewhere than instance 1 of {}: {}; a record stamped before the cut arrived late. Start every instance of the split again with the same --stop-at: they go on to one cut",
            options.from,
            first_difference(&cut.positions1, &first.positions)
        );
        // Stage 2's position on a repartition partition is its owner's: the
        // others passed over it.
        for (topic, partitions) in second.positions {
            cut.positions2.entry(topic).or_default().extend(partitions.into_iter().filter(|(p, _)| share.owns(*p)));
        }
        cut.stage1.push(first.state);
        cut.stage2.push(second.state.0);
        crate::instance::status_line(&format!("read instance {share} from {}", store.describe("")));
    }
    cut.ok_or_else(|| anyhow::anyhow!("no instances to read"))
}

/// The new instances' stage 2 passes over whatever the old split wrote: anything
/// of it with updates past where the old owners stopped (an old instance started
/// again past the cut, or to the cut from another place) would be lost.
async fn check_nothing_after(options: &RescaleOptions, cut: &Cut) -> anyhow::Result<()> {
    for (topic, from) in &cut.positions2 {
        for record in egret_ingest::kafka::read_from(&options.kafka, topic, from).await? {
            match serde_json::from_slice::<Internal>(&record.payload) {
                Ok(Internal::Cut { .. } | Internal::Mark { .. } | Internal::Leave { .. }) => {}
                Ok(Internal::Batch { us, .. }) if us.is_empty() => {}
                Ok(Internal::Batch { i, .. }) => anyhow::bail!(
                    "instance {} of {} sent updates after the cut ({topic}/{}@{}), which the old split's stage 2 never applied: start every instance of the split again with the same --stop-at, then rescale",
                    i + 1,
                    options.from,
                    record.partition,
                    record.offset
                ),
                Ok(Internal::Data { .. }) | Err(_) => anyhow::bail!("{topic}/{}@{} after the cut is not what this version writes: not rescaling over it", record.partition, record.offset),
            }
        }
    }
    Ok(())
}

/// The first partition at which two sets of positions differ, for the message.
fn first_difference(a: &Positions, b: &Positions) -> String {
    let flat = |p: &Positions| -> BTreeMap<(String, u32), u64> { p.iter().flat_map(|(t, parts)| parts.iter().map(move |(p, o)| ((t.clone(), *p), *o))).collect() };
    let (a, b) = (flat(a), flat(b));
    let show = |offset: Option<&u64>| offset.map_or_else(|| "nothing read".to_owned(), |o| format!("offset {o}"));
    a.keys().chain(b.keys()).find(|k| a.get(*k) != b.get(*k)).map_or_else(String::new, |k| format!("{}/{} at {} against {}", k.0, k.1, show(a.get(k)), show(b.get(k))))
}
