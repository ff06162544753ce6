//! Exactly-once input: remembers the de-duplication keys (device + `event_id`) of
//! recent events and forgets them once their event time falls behind the point where
//! a copy would be rejected as late anyway, so the set stays bounded.
//!
//! Whether a key is still remembered is decided by the caller's horizon at the
//! moment of the lookup, not by when `expire` last ran: a copy arriving just as its
//! original ages out is then judged the same way on every run, whatever the batches.

use std::collections::hash_map::Entry;
use egret_model::FastMap;
use std::collections::BTreeMap;

#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
pub struct Dedup {
    /// Key → event time of its first copy.
    seen: FastMap<u64, i64>,
    /// Keys by the second of their event time, for expiry. Whole seconds, not
    /// milliseconds: a key then costs its 8 bytes in a long vector instead of a
    /// share of a tree entry and a short vector per millisecond (about 18 bytes per
    /// event at 10 events per millisecond).
    by_second: BTreeMap<i64, Vec<u64>>,
}

impl Dedup {
    /// True the first time a key is offered, counting only first copies at or after
    /// `forget_before_ms`.
    pub fn first_time(&mut self, key: u64, ts_ms: i64, forget_before_ms: i64) -> bool {
        // One probe of the map, not a lookup and then an insert.
        match self.seen.entry(key) {
            Entry::Occupied(first) if *first.get() >= forget_before_ms => return false,
            Entry::Occupied(mut forgotten) => {
                forgotten.insert(ts_ms);
            }
            Entry::Vacant(new) => {
                new.insert(ts_ms);
            }
        }
        self.by_second.entry(ts_ms.div_euclid(1000)).or_default().push(key);
        true
    }

    /// Forgets keys whose event time is older than `horizon_ms` (to be no later
    /// than any `forget_before_ms` still to come, so it changes no answer).
    /// Keys of the second `horizon_ms` falls in stay until the next expiry past it;
    /// lookups forget them meanwhile.
    pub fn expire(&mut self, horizon_ms: i64) {
        let keep = self.by_second.split_off(&horizon_ms.div_euclid(1000));
        for key in std::mem::replace(&mut self.by_second, keep).into_values().flatten() {
            // A key offered again since, under a later time, stays.
            if self.seen.get(&key).is_some_and(|first| *first < horizon_ms) {
                self.seen.remove(&key);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_then_forgets() {
        let mut d = Dedup::default();
        assert!(d.first_time(1, 1_000, i64::MIN));
        assert!(!d.first_time(1, 1_000, i64::MIN));
        assert!(d.first_time(2, 5_000, i64::MIN));
        d.expire(2_000);
        assert_eq!(d.len(), 1);
        assert!(d.first_time(1, 1_000, i64::MIN), "forgotten after expiry");
    }

    #[test]
    fn a_key_past_the_horizon_is_forgotten_whether_or_not_expire_ran() {
        let (mut ran, mut not_yet) = (Dedup::default(), Dedup::default());
        for d in [&mut ran, &mut not_yet] {
            assert!(d.first_time(1, 1_000, i64::MIN));
        }
        ran.expire(2_000);
        assert_eq!(ran.first_time(1, 1_000, 2_000), not_yet.first_time(1, 1_000, 2_000));
        assert!(!not_yet.first_time(1, 1_000, 500), "within the horizon it is a copy");
    }

    #[test]
    fn a_key_in_the_horizons_own_second_is_forgotten_by_lookups_though_expiry_keeps_it() {
        let mut d = Dedup::default();
        assert!(d.first_time(1, 1_500, i64::MIN));
        assert!(d.first_time(2, 1_900, i64::MIN));
        d.expire(1_800);
        assert_eq!(d.len(), 2, "the second holding the horizon is kept whole");
        assert!(d.first_time(1, 1_500, 1_800), "older than the horizon: not a copy");
        assert!(!d.first_time(2, 1_900, 1_800), "newer: still a copy");
        d.expire(2_000);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn expiring_an_old_entry_keeps_the_key_offered_again_later() {
        let mut d = Dedup::default();
        assert!(d.first_time(1, 1_000, i64::MIN));
        assert!(d.first_time(1, 9_000, 5_000), "the old copy is past the horizon");
        d.expire(5_000);
        assert!(!d.first_time(1, 9_000, 5_000), "the newer entry is still remembered");
    }
}
