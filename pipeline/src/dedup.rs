//! Exactly-once input: remembers the de-duplication keys (device + `event_id`) of
//! recent events and forgets them once their event time falls behind the point where
//! a copy would be rejected as late anyway, so the set stays bounded.

use std::collections::{BTreeMap, HashSet};

#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
pub struct Dedup {
    seen: HashSet<u64>,
    by_time: BTreeMap<i64, Vec<u64>>,
}

impl Dedup {
    /// True the first time a key is offered.
    pub fn first_time(&mut self, key: u64, ts_ms: i64) -> bool {
        if !self.seen.insert(key) {
            return false;
        }
        self.by_time.entry(ts_ms).or_default().push(key);
        true
    }

    /// Forgets keys whose event time is older than `horizon_ms`.
    pub fn expire(&mut self, horizon_ms: i64) {
        let keep = self.by_time.split_off(&horizon_ms);
        for key in std::mem::replace(&mut self.by_time, keep).into_values().flatten() {
            self.seen.remove(&key);
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
        assert!(d.first_time(1, 1_000));
        assert!(!d.first_time(1, 1_000));
        assert!(d.first_time(2, 5_000));
        d.expire(2_000);
        assert_eq!(d.len(), 1);
        assert!(d.first_time(1, 1_000), "forgotten after expiry");
    }
}
