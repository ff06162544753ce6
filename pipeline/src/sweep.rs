//! Lazy expiry of large keyed state. Walking every entry of a map after every batch
//! (hundreds of thousands of plates or tags at city scale) costs more than the
//! batch itself, so big maps are swept only when their horizon has moved
//! `SWEEP_EVERY_MS` of event time. In between, every lookup asks `keeps` and treats
//! an entry the sweep would have removed as gone: answers are the same whenever
//! sweeps run. What it costs: up to that much more state is held.

/// How far a horizon moves (event time) between two sweeps.
pub const SWEEP_EVERY_MS: i64 = 60_000;

/// The horizon of one piece of state: entries older than it are forgotten.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    /// What a sweep after every batch would have removed by now: entries older.
    forget_before_ms: i64,
    /// The horizon the last sweep used.
    swept_ms: i64,
}

impl Default for Horizon {
    fn default() -> Self {
        Horizon { forget_before_ms: i64::MIN, swept_ms: i64::MIN }
    }
}

impl Horizon {
    /// Moves the horizon (never back); true when the caller should sweep now, at
    /// `self.forget_before_ms()`.
    pub fn advance(&mut self, horizon_ms: i64) -> bool {
        self.forget_before_ms = self.forget_before_ms.max(horizon_ms);
        let due = self.forget_before_ms >= self.swept_ms.saturating_add(SWEEP_EVERY_MS);
        if due {
            self.swept_ms = self.forget_before_ms;
        }
        due
    }

    /// Whether an entry stamped `ts_ms` is still remembered.
    pub fn keeps(&self, ts_ms: i64) -> bool {
        ts_ms >= self.forget_before_ms
    }

    pub fn forget_before_ms(&self) -> i64 {
        self.forget_before_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_once_a_minute_of_horizon_and_forgets_at_once() {
        let mut h = Horizon::default();
        assert!(h.keeps(i64::MIN), "nothing is forgotten before the first horizon");
        assert!(h.advance(1_000_000), "the first horizon sweeps");
        let swept: Vec<bool> = (1..=7).map(|k| h.advance(1_000_000 + k * 20_000)).collect();
        assert_eq!(swept, [false, false, true, false, false, true, false]);
        assert!(!h.keeps(1_139_999) && h.keeps(1_140_000), "lookups forget at once, swept or not");
        assert!(!h.advance(0), "a horizon never moves back");
        assert_eq!(h.forget_before_ms(), 1_140_000);
    }
}
