//! Rescaling: the state of N active instances that split the input dealt out to
//! M (`egret rescale`), so a deployment changes its number of instances without
//! replaying the input from its beginning.
//!
//! Every instance of a split keeps the same state that spans partitions (clocks,
//! tags, the gantry log, de-duplication, watermarks) and its own disjoint share of
//! the keyed state, by plate (see `ownership`). Taken at one cut of the input (all
//! N checkpoints at the same positions), instance K of M gets the shared state of
//! any old instance, the first here, and the keyed entries of every old instance
//! whose plate it owns under the new split. Running totals (`Stats`, offences
//! dropped unconfirmed) are the deployment's: the first new instance carries them
//! on, the others start from zero, so their sums stay what they were.

use crate::ownership::Ownership;
use crate::pipeline::Stats;
use crate::stage1::Stage1State;

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
    if to.index() == 0 {
        merged.stats = totals;
        merged.enforcer.set_unconfirmed(unconfirmed);
    }
    Ok(merged)
}
