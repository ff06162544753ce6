//! Parking occupancy from gate reads, re-based by the lot controllers' snapshots.
//!
//! A snapshot at instant T counts every gate passage before T; passages at or after
//! T move the count up or down from there. Passages are kept in event-time order
//! (late ones slot in), so the count never depends on arrival order, and are folded
//! into the base once no late event can reach them any more and they are older than
//! the trend window, so state stays bounded.

use serde::Serialize;
use std::collections::BTreeMap;

/// Passages in this window set the trend and the minutes-to-full forecast.
const TREND_WINDOW_MS: i64 = 15 * 60_000;

/// Occupancy of one lot as served and published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LotState {
    #[serde(skip)]
    pub lot: u32,
    pub capacity: u32,
    /// None until a snapshot has given the count a base.
    pub occupied: Option<u32>,
    pub state: &'static str,
    /// "filling", "emptying" or "steady" over the last 15 minutes.
    pub trend: &'static str,
    /// At the last 15 minutes' net inflow, minutes until full (when filling).
    pub minutes_to_full: Option<f64>,
    /// Gate counts say more cars are inside than there are spaces: a drift to check.
    pub over_capacity: bool,
    pub as_of_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
struct Lot {
    base: Option<(i64, i64)>,
    /// Net passages per instant after the base.
    deltas: BTreeMap<i64, i64>,
    /// Net passages per instant over the trend window, whatever the base.
    recent: BTreeMap<i64, i64>,
    newest_ms: i64,
    /// The instant up to which the last published count was complete.
    published_upto: i64,
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct Parking {
    lots: Vec<Lot>,
    capacity: Vec<u32>,
    changed: Vec<bool>,
}

impl Parking {
    /// Moves the lots `keys` picks from `from` (`rescale`).
    pub(crate) fn take_keys(&mut self, from: &mut Parking, keys: &crate::rescale::Keys) {
        crate::rescale::move_indexed(&mut self.lots, &mut from.lots, |i| keys.lot(i as u32));
        crate::rescale::move_indexed(&mut self.changed, &mut from.changed, |i| keys.lot(i as u32));
    }

    pub fn new(capacity: Vec<u32>) -> Self {
        let n = capacity.len();
        Parking { lots: (0..n).map(|_| Lot::default()).collect(), capacity, changed: vec![false; n] }
    }

    /// A car passed an entry (`entering`) or exit gate.
    pub fn gate(&mut self, lot: u32, entering: bool, ts_ms: i64) {
        let Some(l) = self.lots.get_mut(lot as usize) else { return };
        let delta = if entering { 1 } else { -1 };
        *l.recent.entry(ts_ms).or_default() += delta;
        if l.base.is_some_and(|(at, _)| ts_ms < at) {
            return; // Already counted by a newer snapshot.
        }
        *l.deltas.entry(ts_ms).or_default() += delta;
        l.newest_ms = l.newest_ms.max(ts_ms);
        self.changed[lot as usize] = true;
    }

    /// A lot controller's count at `ts_ms`; an older snapshot than the base is ignored.
    pub fn snapshot(&mut self, lot: u32, occupied: u32, ts_ms: i64) {
        let Some(l) = self.lots.get_mut(lot as usize) else { return };
        if l.base.is_some_and(|(at, _)| ts_ms <= at) {
            return;
        }
        l.base = Some((ts_ms, i64::from(occupied)));
        l.deltas = l.deltas.split_off(&ts_ms);
        l.newest_ms = l.newest_ms.max(ts_ms);
        self.changed[lot as usize] = true;
    }

    /// States of lots whose count as of `upto_ms` (the watermark: every passage
    /// before it has been seen, barring late ones) differs from the last published,
    /// counted up to that instant. Passages before `settled_ms` can no longer change
    /// (later events are rejected as late) and are folded into the base.
    pub fn changed(&mut self, settled_ms: i64, upto_ms: i64) -> Vec<LotState> {
        let mut out = Vec::new();
        for i in 0..self.lots.len() {
            let l = &self.lots[i];
            let passed = upto_ms > l.published_upto && l.deltas.range(l.published_upto + 1..=upto_ms).next().is_some();
            if std::mem::take(&mut self.changed[i]) || passed {
                self.fold(i, settled_ms);
                out.push(self.state_at(i, upto_ms));
                self.lots[i].published_upto = upto_ms;
            }
        }
        out
    }

    fn fold(&mut self, i: usize, settled_ms: i64) {
        let l = &mut self.lots[i];
        l.recent = l.recent.split_off(&(l.newest_ms - TREND_WINDOW_MS));
        let later = l.deltas.split_off(&settled_ms);
        let settled = std::mem::replace(&mut l.deltas, later);
        match l.base {
            Some((at, count)) if at < settled_ms => l.base = Some((settled_ms, count + settled.values().sum::<i64>())),
            Some(_) => l.deltas.extend(settled),
            // Without a base, settled passages can only precede the next snapshot,
            // which will count them itself: forget them.
            None => {}
        }
    }

    /// A lot's state with every passage seen.
    pub fn state(&self, i: usize) -> LotState {
        self.state_at(i, i64::MAX)
    }

    /// A lot's state counting the passages up to `upto_ms`, as of that instant.
    pub fn state_at(&self, i: usize, upto_ms: i64) -> LotState {
        let l = &self.lots[i];
        let capacity = self.capacity[i];
        let net: i64 = l.deltas.range(..=upto_ms).map(|(_, d)| d).sum();
        let occupied = l.base.map(|(_, count)| count + net);
        let recent: i64 = l.recent.range(l.newest_ms - TREND_WINDOW_MS..).map(|(_, d)| d).sum();
        let threshold = (f64::from(capacity) * 0.02).max(2.0);
        let trend = match recent as f64 {
            r if r > threshold => "filling",
            r if r < -threshold => "emptying",
            _ => "steady",
        };
        let per_min = recent as f64 / (TREND_WINDOW_MS as f64 / 60_000.0);
        let state = match occupied {
            None => "unknown",
            Some(_) if capacity == 0 => "closed",
            Some(o) if o >= i64::from(capacity) => "full",
            Some(_) => "open",
        };
        LotState {
            lot: i as u32,
            capacity,
            occupied: occupied.map(|o| o.clamp(0, i64::from(u32::MAX)) as u32),
            state,
            trend,
            minutes_to_full: match occupied {
                Some(o) if per_min > 0.0 && o < i64::from(capacity) => Some(((i64::from(capacity) - o) as f64 / per_min * 10.0).round() / 10.0),
                _ => None,
            },
            over_capacity: occupied.is_some_and(|o| o > i64::from(capacity)),
            as_of_ms: if upto_ms == i64::MAX { l.newest_ms } else { upto_ms.max(l.base.map_or(i64::MIN, |(at, _)| at)) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn snapshot_plus_gates_in_any_order() {
        let mut p = Parking::new(vec![10]);
        p.gate(0, true, 500); // before any base: kept until a snapshot decides
        assert_eq!(p.changed(i64::MIN, i64::MAX)[0].state, "unknown");
        p.snapshot(0, 4, 1_000);
        p.gate(0, true, 2_000);
        p.gate(0, false, 1_500);
        p.gate(0, true, 900); // before the snapshot: already in its count
        let s = &p.changed(i64::MIN, i64::MAX)[0];
        assert_eq!((s.occupied, s.state), (Some(4), "open"));
        for t in 0..7 {
            p.gate(0, true, 3_000 + t);
        }
        let s = &p.changed(i64::MIN, i64::MAX)[0];
        assert_eq!((s.occupied, s.state, s.over_capacity), (Some(11), "full", true));
        assert_eq!(s.trend, "filling");
    }

    #[test]
    fn folding_settled_passages_keeps_the_count_and_bounds_state() {
        let mut p = Parking::new(vec![100]);
        p.snapshot(0, 10, 0);
        for m in 0..60 {
            p.gate(0, m % 3 != 0, m * 60_000);
            p.changed((m - 3) * 60_000, i64::MAX);
        }
        let s = p.state(0);
        assert_eq!(s.occupied, Some(10 + 40 - 20));
        assert!(p.lots[0].deltas.len() <= 4, "only unsettled passages are kept: {}", p.lots[0].deltas.len());
        assert!(p.lots[0].recent.len() <= 16, "and the last 15 minutes for the trend: {}", p.lots[0].recent.len());
    }

    #[test]
    fn a_snapshot_does_not_erase_the_trend_and_a_lot_without_one_stays_bounded() {
        let mut p = Parking::new(vec![600, 600]);
        p.snapshot(0, 100, 0);
        for m in 0..10 {
            for k in 0..10 {
                p.gate(0, true, m * 60_000 + k);
                p.gate(1, true, m * 60_000 + k);
            }
        }
        p.snapshot(0, 200, 9 * 60_000 + 100);
        p.changed(i64::MIN, i64::MAX);
        let s = p.state(0);
        assert_eq!((s.occupied, s.trend), (Some(200), "filling"));
        assert_eq!(s.minutes_to_full, Some(60.0), "100 cars in the last 15 minutes: 400 spaces at 6.7 a minute");
        for m in 10..200 {
            p.gate(1, m % 2 == 0, m * 60_000);
            p.changed((m - 3) * 60_000, i64::MAX);
        }
        assert!(p.lots[1].deltas.len() <= 4 && p.lots[1].recent.len() <= 16, "no base, still bounded");
        assert_eq!(p.state(1).state, "unknown");
    }

    proptest! {
        #[test]
        fn the_count_does_not_depend_on_arrival_order(
            passages in proptest::collection::vec((0i64..3_600_000, any::<bool>()), 0..300),
            seed in any::<u64>(),
        ) {
            let mut shuffled = passages.clone();
            // A deterministic shuffle driven by the seed.
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let count = |order: &[(i64, bool)]| {
                let mut p = Parking::new(vec![5_000]);
                p.snapshot(0, 1_000, 0);
                for (i, (ts, entering)) in order.iter().enumerate() {
                    p.gate(0, *entering, *ts);
                    if i % 17 == 0 {
                        p.changed(i64::MIN, i64::MAX);
                    }
                }
                p.changed(i64::MIN, i64::MAX);
                p.state(0).occupied
            };
            prop_assert_eq!(count(&passages), count(&shuffled));
        }
    }
}
