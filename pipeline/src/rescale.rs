//! Rescaling: the state of N active instances that split the input dealt out to
//! M (`egret rescale`), so a deployment changes its number of instances without
//! replaying the input from its beginning.
//!
//! Stage 1: every instance of a split keeps the same state that spans partitions
//! (clocks, tags, the gantry log, de-duplication, watermarks) and its own disjoint
//! share of the keyed state, by plate (see `ownership`). Taken at one cut of the
//! input (all N checkpoints at the same positions), instance K of M gets the shared
//! state of any old instance, the first here, and the keyed entries of every old
//! instance whose plate it owns under the new split.
//!
//! Stage 2 is keyed by segment, lot and route, each kept by the owner of its
//! repartition partition: instance K of M takes each key's state from the key's
//! old owner. What a stage-2 instance pools over the keys it keeps is dealt so
//! each new instance is as it would be had the split always been M where that can
//! be known (the routes' ghost-trip checks, per route), and as one instance is
//! where it cannot (the first and newest bus report, the trip ids seen, the
//! incident prior's share).
//!
//! Running totals (`Stats`, offences dropped unconfirmed, late traversals, windows
//! closed, corrections) are the deployment's: the first new instance carries them
//! on, the others start from zero, so their sums stay what they were.

use crate::ownership::Ownership;
use crate::pipeline::{PipelineConfig, Stats};
use crate::repartition::partition_of;
use crate::stage1::Stage1State;
use crate::stage2::{Stage2, Stage2State};
use egret_model::CityModel;
use std::sync::Arc;

/// Why states cannot be dealt out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RescaleError {
    #[error("no states to deal out")]
    Nothing,
    #[error("the states were not taken at one cut: instance 1 stands at watermark {first:?}, instance {other} at {theirs:?}")]
    NotOneCut { first: (i64, Option<i64>), other: usize, theirs: (i64, Option<i64>) },
    #[error("instances 1 to {upto} hold {twice} plates twice: they are not the instances of one split")]
    PlateTwice { upto: usize, twice: usize },
}

/// Instance `to` of a new split, from the stage-1 states of every instance of
/// the old one, taken at one cut.
pub fn stage1(states: Vec<Stage1State>, to: Ownership) -> Result<Stage1State, RescaleError> {
    let keep = |plate: &egret_model::Plate| to.owns_plate(plate);
    let (mut totals, mut unconfirmed) = (Stats::default(), 0);
    let mut merged: Option<Stage1State> = None;
    for (i, mut state) in states.into_iter().enumerate() {
        if let Some(base) = &merged
            && base.cut() != state.cut()
        {
            return Err(RescaleError::NotOneCut { first: base.cut(), other: i + 1, theirs: state.cut() });
        }
        totals.add(&std::mem::take(&mut state.stats));
        unconfirmed += state.enforcer.take_unconfirmed();
        state.matcher.retain_plates(&keep);
        state.entered.retain(|plate, _| keep(plate));
        state.enforcer.retain_plates(&keep);
        match &mut merged {
            None => merged = Some(state),
            Some(base) => {
                // The shares of one split are disjoint: a plate in two is a sign of
                // states from two deployments, or of one instance's twice.
                let apart = base.matcher.plates_in_flight() + state.matcher.plates_in_flight();
                base.matcher.absorb(state.matcher);
                if base.matcher.plates_in_flight() != apart {
                    return Err(RescaleError::PlateTwice { upto: i + 1, twice: apart - base.matcher.plates_in_flight() });
                }
                base.entered.extend(state.entered);
                base.enforcer.absorb(state.enforcer);
            }
        }
    }
    let mut merged = merged.ok_or(RescaleError::Nothing)?;
    // The new instance runs on from the cut; it has not stopped at it.
    merged.set_stopped_at(None);
    if to.index() == 0 {
        merged.stats = totals;
        merged.enforcer.set_unconfirmed(unconfirmed);
    }
    Ok(merged)
}

/// Instance `to` of a new split, from the stage-2 states of every instance of the
/// old one (instance K's at index K-1), taken at one cut: when every stage 2 has
/// applied all that stage 1 wrote before it, so all stand at one watermark.
/// `partitions` is the repartition topic's.
pub fn stage2(city: &Arc<CityModel>, config: PipelineConfig, states: Vec<Stage2State>, partitions: u32, to: Ownership) -> Result<Stage2State, RescaleError> {
    let old = u32::try_from(states.len()).map_err(|_| RescaleError::Nothing)?;
    // An instance keeping no repartition partition (more instances than
    // partitions) stops at once, its watermark never moved: it has no say.
    let keeping = |i: usize| (i as u32) < partitions;
    let watermark = states.first().ok_or(RescaleError::Nothing)?.watermark();
    if let Some((i, other)) = states.iter().enumerate().find(|(i, s)| keeping(*i) && s.watermark() != watermark) {
        return Err(RescaleError::NotOneCut { first: (watermark, None), other: i + 1, theirs: (other.watermark(), None) });
    }
    let mut dealt = Stage2::new(city, config).into_state();
    let mut totals = Stage2Totals::default();
    let mut pool = (0, 0);
    for (i, mut state) in states.into_iter().enumerate() {
        let from = Ownership::new(i as u32, old).ok_or(RescaleError::Nothing)?;
        dealt.take_keys(&mut state, &Keys::moving(city, partitions, from, to));
        totals.add(&state.totals());
        let (came_out, gone) = state.incident_pool();
        pool = (pool.0 + came_out, pool.1 + gone);
    }
    // The prior is a share: each new instance takes the old ones' share, and the
    // counts behind it are divided among them so that their sums stay as they were.
    let (count, first) = (u64::from(to.count()), to.index() == 0);
    let split = |n: u64| n / count + if first { n % count } else { 0 };
    dealt.set_incident_pool((split(pool.0), split(pool.1)));
    dealt.settle_dealt(watermark, if first { totals } else { Stage2Totals::default() });
    Ok(dealt)
}

/// Stage 2's running totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stage2Totals {
    pub late_traversals: u64,
    pub windows_closed: u64,
    pub corrections: u64,
}

impl Stage2Totals {
    fn add(&mut self, other: &Stage2Totals) {
        self.late_traversals += other.late_traversals;
        self.windows_closed += other.windows_closed;
        self.corrections += other.corrections;
    }
}

/// The stage-2 keys one old instance hands to one new instance: segments, lots
/// and routes (by index in the city model) whose repartition partition both own.
#[derive(Debug)]
pub struct Keys {
    segments: Vec<bool>,
    lots: Vec<bool>,
    routes: Vec<bool>,
}

impl Keys {
    /// Keyed as `Update::key` keys them.
    pub fn moving(city: &CityModel, partitions: u32, from: Ownership, to: Ownership) -> Keys {
        let pick = |key: &str| {
            let p = partition_of(key, partitions);
            from.owns(p) && to.owns(p)
        };
        Keys {
            segments: city.segments.iter().map(|s| pick(&s.segment_id)).collect(),
            lots: city.lots.iter().map(|l| pick(&l.lot_id)).collect(),
            routes: city.routes.iter().map(|r| pick(&r.route_id)).collect(),
        }
    }

    pub fn segment(&self, index: u32) -> bool {
        self.segments.get(index as usize).copied().unwrap_or(false)
    }

    pub fn lot(&self, index: u32) -> bool {
        self.lots.get(index as usize).copied().unwrap_or(false)
    }

    pub fn route(&self, index: u32) -> bool {
        self.routes.get(index as usize).copied().unwrap_or(false)
    }
}

/// Moves the entries `pick` picks from one map or set to another.
pub(crate) fn move_where<C, T>(to: &mut C, from: &mut C, pick: impl Fn(&T) -> bool)
where
    C: Default + IntoIterator<Item = T> + Extend<T>,
{
    let (moving, staying): (C, C) = std::mem::take(from).into_iter().partition(|item| pick(item));
    *from = staying;
    to.extend(moving);
}

/// Swaps the elements at the indices `pick` picks: `to`'s fresh ones go to `from`.
pub(crate) fn move_indexed<T>(to: &mut [T], from: &mut [T], pick: impl Fn(usize) -> bool) {
    for (i, (mine, theirs)) in to.iter_mut().zip(from.iter_mut()).enumerate() {
        if pick(i) {
            std::mem::swap(mine, theirs);
        }
    }
}
