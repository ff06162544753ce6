//! When to rescale: on lag above a bound for some minutes, one instance more;
//! below a lower bound for longer, one fewer. One step at a time, since every
//! rescale stops the deployment at a cut for a while, and a rescale's own
//! catching up must not look like a reason for the next (the clock restarts
//! after each).

/// The bounds, in records behind (the worst instance's, `egret lag`).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub up_lag: u64,
    pub down_lag: u64,
    pub up_after_ms: i64,
    pub down_after_ms: i64,
    pub min: u32,
    pub max: u32,
}

/// How long the lag has been above or below the bounds.
#[derive(Debug, Default)]
pub struct Trend {
    above_since: Option<i64>,
    below_since: Option<i64>,
}

impl Trend {
    /// The instance count to rescale to, if the lag seen so far calls for one.
    pub fn observe(&mut self, policy: &Policy, now_ms: i64, instances: u32, lag: u64) -> Option<u32> {
        if instances < policy.min || instances > policy.max {
            return Some(instances.clamp(policy.min, policy.max));
        }
        if lag > policy.up_lag {
            self.below_since = None;
            let since = *self.above_since.get_or_insert(now_ms);
            (now_ms - since >= policy.up_after_ms && instances < policy.max).then_some(instances + 1)
        } else if lag < policy.down_lag {
            self.above_since = None;
            let since = *self.below_since.get_or_insert(now_ms);
            (now_ms - since >= policy.down_after_ms && instances > policy.min).then_some(instances - 1)
        } else {
            *self = Trend::default();
            None
        }
    }

    /// After a rescale: the lag is judged afresh.
    pub fn reset(&mut self) {
        *self = Trend::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POLICY: Policy = Policy { up_lag: 1_000, down_lag: 10, up_after_ms: 60_000, down_after_ms: 600_000, min: 1, max: 4 };

    #[test]
    fn lag_held_above_the_bound_adds_one_instance_and_a_dip_starts_the_clock_again() {
        let mut trend = Trend::default();
        assert_eq!(trend.observe(&POLICY, 0, 1, 5_000), None);
        assert_eq!(trend.observe(&POLICY, 30_000, 1, 5_000), None);
        assert_eq!(trend.observe(&POLICY, 40_000, 1, 500), None, "back within the bounds");
        assert_eq!(trend.observe(&POLICY, 50_000, 1, 5_000), None);
        assert_eq!(trend.observe(&POLICY, 100_000, 1, 5_000), None, "only 50 s above since the dip");
        assert_eq!(trend.observe(&POLICY, 110_000, 1, 5_000), Some(2));
    }

    #[test]
    fn a_quiet_input_removes_instances_down_to_the_minimum_only() {
        let mut trend = Trend::default();
        assert_eq!(trend.observe(&POLICY, 0, 2, 0), None);
        assert_eq!(trend.observe(&POLICY, 600_000, 2, 0), Some(1));
        trend.reset();
        assert_eq!(trend.observe(&POLICY, 700_000, 1, 0), None);
        assert_eq!(trend.observe(&POLICY, 2_000_000, 1, 0), None, "never below the minimum");
        assert_eq!(trend.observe(&POLICY, 2_000_000, 6, 500), Some(4), "a deployment outside the bounds is brought within them");
    }

    proptest! {
        /// Whatever the lag does, a step is one instance, within the bounds, and
        /// only after the lag stayed on one side of them for the whole wait.
        #[test]
        fn every_step_is_one_instance_within_bounds_after_a_sustained_lag(lags in proptest::collection::vec((0u64..3_000, 1i64..120_000), 1..60)) {
            let mut trend = Trend::default();
            let (mut now, mut instances) = (0i64, 1u32);
            let mut history: Vec<(i64, u64)> = Vec::new();
            for (lag, step) in lags {
                now += step;
                history.push((now, lag));
                if let Some(to) = trend.observe(&POLICY, now, instances, lag) {
                    prop_assert!(to.abs_diff(instances) == 1 && (POLICY.min..=POLICY.max).contains(&to));
                    let (wait, side): (i64, fn(u64) -> bool) = if to > instances { (POLICY.up_after_ms, |l| l > POLICY.up_lag) } else { (POLICY.down_after_ms, |l| l < POLICY.down_lag) };
                    let held: Vec<_> = history.iter().rev().take_while(|(_, l)| side(*l)).collect();
                    prop_assert!(held.last().is_some_and(|(since, _)| now - since >= wait), "stepped to {to} without {wait} ms of lag on one side: {history:?}");
                    instances = to;
                    trend.reset();
                    history.clear();
                }
            }
        }
    }
}
