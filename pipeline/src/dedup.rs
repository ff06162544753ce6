//! Exactly-once input: remembers the de-duplication keys (device + `event_id`) of
//! recent events and forgets them once their event time falls behind the point where
//! a copy would be rejected as late anyway, so the set stays bounded.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Default)]
pub struct Dedup {
    seen: HashMap<u64, i64>,
    by_time: VecDeque<(i64, u64)>,
}

impl Dedup {
    /// True the first time a key is offered.
    pub fn first_time(&mut self, key: u64, ts_ms: i64) -> bool {
        if self.seen.contains_key(&key) {
            return false;
        }
        self.seen.insert(key, ts_ms);
        self.by_time.push_back((ts_ms, key));
        true
    }

    /// Forgets keys older than `horizon_ms` (arrival order is close to time order, so
    /// a queue in arrival order is pruned from the front until a newer key is met).
    pub fn expire(&mut self, horizon_ms: i64) {
        while let Some(&(ts, key)) = self.by_time.front() {
            if ts >= horizon_ms {
                break;
            }
            self.by_time.pop_front();
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
