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

/// Instance `to` of a new split, from the stage-1 states of every instance of
/// the old one, taken at one cut; `None` when there are none.
pub fn stage1(states: Vec<Stage1State>, to: Ownership) -> Option<Stage1State> {
    let keep = |plate: &egret_model::Plate| to.owns_plate(plate);
    let (mut totals, mut unconfirmed) = (Stats::default(), 0);
    let mut merged: Option<Stage1State> = None;
    for mut state in states {
        totals.add(&std::mem::take(&mut state.stats));
        unconfirmed += state.enforcer.take_unconfirmed();
        state.matcher.retain_plates(&keep);
        state.entered.retain(|plate, _| keep(plate));
        state.enforcer.retain_plates(&keep);
        match &mut merged {
            None => merged = Some(state),
            Some(base) => {
                base.matcher.absorb(state.matcher);
                base.entered.extend(state.entered);
                base.enforcer.absorb(state.enforcer);
            }
        }
    }
    let mut merged = merged?;
    if to.index() == 0 {
        merged.stats = totals;
        merged.enforcer.set_unconfirmed(unconfirmed);
    }
    Some(merged)
}
