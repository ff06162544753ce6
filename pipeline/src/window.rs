//! Per-segment tumbling event-time windows of traversal speeds.
//!
//! A traversal belongs to the window holding its exit time. A window is provisional
//! while it can still change; once the watermark passes its end plus the allowed
//! lateness it is final and leaves memory. Anything that changes a window after the
//! watermark passed its end is a correction, counted and re-published as a revision.

use egret_model::SegmentIdx;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Start of the window holding `ts_ms`.
pub fn window_start(ts_ms: i64, window_ms: i64) -> i64 {
    ts_ms.div_euclid(window_ms) * window_ms
}

/// One measured drive over a segment: what a window is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub segment: SegmentIdx,
    pub enter_ms: i64,
    pub exit_ms: i64,
    pub speed_kmh: f64,
}

/// One segment's speeds over one window, as served and published (and read back by
/// an API instance that follows the published topic: `segment` is then set from
/// the `segment_id` beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SegmentWindow {
    #[serde(skip)]
    pub segment: SegmentIdx,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub mean_speed_kmh: f64,
    pub median_speed_kmh: f64,
    pub travel_time_s: f64,
    pub sample_count: u32,
    /// Median speed of the traversals that ended in the five minutes up to this
    /// window's end: steadier than one minute's, for travel-time displays.
    #[serde(default)]
    pub median_5min_kmh: Option<f64>,
    pub is_final: bool,
    /// 0 for the first publication, +1 for each change after it.
    pub revision: u32,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
struct Acc {
    speeds: Vec<f64>,
    travel_ms_sum: i64,
    published: u32,
    dirty: bool,
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct Windows {
    window_ms: i64,
    allowed_lateness_ms: i64,
    open: BTreeMap<(i64, SegmentIdx), Acc>,
    corrections: u64,
}

/// A traversal for a window that is already final.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLate;

impl Windows {
    pub fn new(window_ms: i64, allowed_lateness_ms: i64) -> Self {
        Windows { window_ms, allowed_lateness_ms, open: BTreeMap::new(), corrections: 0 }
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// True when the window holding `ts_ms` is final at this watermark.
    pub fn is_final(&self, ts_ms: i64, watermark: i64) -> bool {
        window_start(ts_ms, self.window_ms).saturating_add(self.window_ms + self.allowed_lateness_ms) <= watermark
    }

    pub fn add(&mut self, t: &Sample, watermark: i64) -> Result<(), TooLate> {
        if self.is_final(t.exit_ms, watermark) {
            return Err(TooLate);
        }
        let start = window_start(t.exit_ms, self.window_ms);
        let acc = self.open.entry((start, t.segment)).or_default();
        if start + self.window_ms <= watermark {
            self.corrections += 1;
        }
        // Kept sorted: each provisional snapshot (after every batch that changed
        // the window) then reads its median and sorted sum without a sort.
        let at = acc.speeds.partition_point(|v| v.total_cmp(&t.speed_kmh).is_le());
        acc.speeds.insert(at, t.speed_kmh);
        acc.travel_ms_sum += t.exit_ms - t.enter_ms;
        acc.dirty = true;
        Ok(())
    }

    /// Provisional snapshots of the windows changed since the last call.
    pub fn changed(&mut self) -> Vec<SegmentWindow> {
        let window_ms = self.window_ms;
        self.open
            .iter_mut()
            .filter(|(_, acc)| acc.dirty)
            .map(|(&(start, segment), acc)| {
                acc.dirty = false;
                acc.published += 1;
                snapshot(segment, start, window_ms, acc, false)
            })
            .collect()
    }

    /// Final windows at this watermark, removed from memory, oldest first.
    pub fn close(&mut self, watermark: i64) -> Vec<SegmentWindow> {
        let mut out = Vec::new();
        while let Some((&(start, segment), _)) = self.open.first_key_value() {
            if start.saturating_add(self.window_ms + self.allowed_lateness_ms) > watermark {
                break;
            }
            if let Some(acc) = self.open.remove(&(start, segment)) {
                out.push(snapshot(segment, start, self.window_ms, &acc, true));
            }
        }
        out
    }

    /// Windows changed after the watermark passed their end.
    pub fn corrections(&self) -> u64 {
        self.corrections
    }

    pub(crate) fn set_corrections(&mut self, corrections: u64) {
        self.corrections = corrections;
    }

    /// Moves the open windows of the segments `keys` picks from `from` (`rescale`);
    /// the count of corrections stays, a total of the deployment's.
    pub(crate) fn take_keys(&mut self, from: &mut Windows, keys: &crate::rescale::Keys) {
        crate::rescale::move_where(&mut self.open, &mut from.open, |((_, segment), _)| keys.segment(segment.0));
    }

    pub fn open_windows(&self) -> usize {
        self.open.len()
    }
}

fn snapshot(segment: SegmentIdx, start: i64, window_ms: i64, acc: &Acc, is_final: bool) -> SegmentWindow {
    let n = acc.speeds.len();
    // Sum in sorted order so the result never depends on arrival order. `add`
    // keeps them sorted; a checkpoint from before it did may hold them unsorted.
    let resorted;
    let sorted = if acc.speeds.is_sorted_by(|a, b| a.total_cmp(b).is_le()) {
        &acc.speeds
    } else {
        let mut speeds = acc.speeds.clone();
        speeds.sort_by(f64::total_cmp);
        resorted = speeds;
        &resorted
    };
    let median = match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    let count = n.max(1) as f64;
    SegmentWindow {
        segment,
        window_start_ms: start,
        window_end_ms: start + window_ms,
        mean_speed_kmh: sorted.iter().sum::<f64>() / count,
        median_speed_kmh: median,
        travel_time_s: acc.travel_ms_sum as f64 / 1000.0 / count,
        sample_count: n as u32,
        median_5min_kmh: None,
        is_final,
        revision: acc.published.saturating_sub(u32::from(!is_final)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermark::Watermarks;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    fn traversal(segment: u32, exit_ms: i64, speed: f64) -> Sample {
        Sample { segment: SegmentIdx(segment), enter_ms: exit_ms - 60_000, exit_ms, speed_kmh: speed }
    }

    /// Feeds traversals in the given order through watermarks and windows, returning
    /// every final window and how many were refused as too late.
    fn run(order: &[Sample], bound_ms: i64, lateness_ms: i64) -> (Vec<SegmentWindow>, usize) {
        let now = Instant::now();
        let mut marks = Watermarks::new(bound_ms, Duration::from_secs(3600));
        let mut windows = Windows::new(60_000, lateness_ms);
        let mut finals = Vec::new();
        let mut late = 0;
        for t in order {
            marks.observe(0, 0, t.exit_ms, now);
            if windows.add(t, marks.current()).is_err() {
                late += 1;
            }
            let wm = marks.advance(now);
            windows.changed();
            finals.extend(windows.close(wm));
        }
        finals.extend(windows.close(marks.finish()));
        finals.sort_by_key(|w| (w.window_start_ms, w.segment));
        for w in &mut finals {
            w.revision = 0; // how often it was published depends on arrival order, by design
        }
        (finals, late)
    }

    proptest! {
        #[test]
        fn every_instant_falls_in_exactly_its_window(ts in -10_000_000_000_000i64..10_000_000_000_000, w in 1i64..3_600_000) {
            let start = window_start(ts, w);
            prop_assert!(start <= ts && ts < start + w);
            prop_assert_eq!(start.rem_euclid(w), 0);
        }

        #[test]
        fn reordering_within_the_bound_gives_identical_final_windows(
            events in proptest::collection::vec((0u32..4, 0i64..600_000, 5.0f64..120.0, 0i64..=10_000), 1..200),
            lateness in 0i64..120_000,
        ) {
            let bound = 10_000;
            let base = 1_795_838_400_000;
            let mut in_order: Vec<(Sample, i64)> =
                events.iter().map(|&(s, at, v, jitter)| (traversal(s, base + at, v), jitter)).collect();
            in_order.sort_by_key(|(t, _)| t.exit_ms);
            let ordered: Vec<Sample> = in_order.iter().map(|(t, _)| *t).collect();
            // Arrival order: by event time plus a delay of at most the bound.
            let mut shuffled = in_order.clone();
            shuffled.sort_by_key(|(t, jitter)| t.exit_ms + jitter);
            let shuffled: Vec<Sample> = shuffled.into_iter().map(|(t, _)| t).collect();
            let (a, late_a) = run(&ordered, bound, lateness);
            let (b, late_b) = run(&shuffled, bound, lateness);
            prop_assert_eq!(late_a, 0);
            prop_assert_eq!(late_b, 0);
            prop_assert_eq!(a.iter().map(|w| w.sample_count).sum::<u32>() as usize, events.len());
            prop_assert_eq!(a, b);
        }
    }

    proptest! {
        /// The sliding median is the median of a plain sorted list of the samples
        /// that ended in the span, whatever order they arrived in.
        #[test]
        fn the_sliding_median_is_the_median_of_the_span(
            samples in proptest::collection::vec((0i64..120, 5.0f64..120.0), 0..300),
            end in 0i64..150,
        ) {
            // Times on a 10 s grid, so samples fall exactly on the span's edges too.
            let samples: Vec<(i64, f64)> = samples.into_iter().map(|(k, v)| (k * 10_000, v)).collect();
            let end = end * 10_000;
            let span = 300_000;
            let mut sliding = SlidingMedian::new(1, span);
            for &(exit_ms, speed) in &samples {
                sliding.add(SegmentIdx(0), exit_ms, speed);
            }
            // The samples lie within four spans of each other: `add` keeps them all.
            let mut span_speeds: Vec<f64> = samples.iter().filter(|(t, _)| *t > end - span && *t <= end).map(|(_, v)| *v).collect();
            span_speeds.sort_by(f64::total_cmp);
            let n = span_speeds.len();
            let expected = (n > 0).then(|| if n % 2 == 1 { span_speeds[n / 2] } else { (span_speeds[n / 2 - 1] + span_speeds[n / 2]) / 2.0 });
            prop_assert_eq!(sliding.median(SegmentIdx(0), end, &mut Vec::new()), expected);
        }
    }

    /// Checkpoints from before `add` kept a window's speeds sorted hold them in
    /// arrival order: the snapshot is the same either way.
    #[test]
    fn a_window_restored_with_unsorted_speeds_reads_as_a_sorted_one() {
        let speeds = [70.0, 30.5, 52.25, 30.5, 99.0, 12.0];
        let mut w = Windows::new(60_000, 30_000);
        for v in speeds {
            w.add(&traversal(0, 10_000, v), 0).expect("on time");
        }
        let acc = Acc { speeds: speeds.to_vec(), travel_ms_sum: 6 * 60_000, published: 0, dirty: true };
        let restored = snapshot(SegmentIdx(0), 0, 60_000, &acc, false);
        assert_eq!(w.changed(), [restored]);
    }

    #[test]
    fn a_late_event_revises_then_a_later_one_is_refused() {
        let mut w = Windows::new(60_000, 30_000);
        w.add(&traversal(0, 10_000, 50.0), 0).expect("on time");
        assert_eq!(w.changed().len(), 1);
        // Watermark past the window's end but within the allowed lateness: a correction.
        w.add(&traversal(0, 20_000, 70.0), 70_000).expect("within lateness");
        assert_eq!(w.corrections(), 1);
        let revised = w.changed();
        assert_eq!((revised[0].sample_count, revised[0].revision, revised[0].is_final), (2, 1, false));
        let closed = w.close(90_000);
        assert_eq!(closed.len(), 1);
        assert!(closed[0].is_final);
        assert_eq!(closed[0].mean_speed_kmh, 60.0);
        assert_eq!(closed[0].median_speed_kmh, 60.0);
        assert_eq!(w.add(&traversal(0, 30_000, 70.0), 90_000), Err(TooLate));
    }
}

/// Inserts `(at_ms, value)` into `deque`, kept in time order (equal times in
/// arrival order). Nearly every sample is the newest: it is appended without a search.
pub(crate) fn insert_by_time<T>(deque: &mut std::collections::VecDeque<(i64, T)>, at_ms: i64, value: T) {
    if deque.back().is_none_or(|(t, _)| *t <= at_ms) {
        deque.push_back((at_ms, value));
    } else {
        let at = deque.partition_point(|(t, _)| *t <= at_ms);
        deque.insert(at, (at_ms, value));
    }
}

/// The five-minute sliding median of each segment's traversal speeds (by exit time).
#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct SlidingMedian {
    span_ms: i64,
    samples: Vec<std::collections::VecDeque<(i64, f64)>>,
}

impl SlidingMedian {
    /// Moves the samples of the segments `keys` picks from `from` (`rescale`).
    pub(crate) fn take_keys(&mut self, from: &mut SlidingMedian, keys: &crate::rescale::Keys) {
        crate::rescale::move_indexed(&mut self.samples, &mut from.samples, |i| keys.segment(i as u32));
    }

    pub fn new(segments: usize, span_ms: i64) -> Self {
        SlidingMedian { span_ms, samples: vec![Default::default(); segments] }
    }

    pub fn add(&mut self, segment: SegmentIdx, exit_ms: i64, speed_kmh: f64) {
        let Some(s) = self.samples.get_mut(segment.0 as usize) else { return };
        insert_by_time(s, exit_ms, speed_kmh);
        // Keep what a late window could still ask for, and no more than a busy hour.
        while s.len() > 2_000 || s.front().is_some_and(|(t, _)| *t < exit_ms.saturating_sub(4 * self.span_ms)) {
            s.pop_front();
        }
    }

    /// The median of the samples that ended in `(end - span, end]`.
    /// `scratch` is reused between calls: this runs for every changed window after
    /// every batch.
    pub fn median(&self, segment: SegmentIdx, end_ms: i64, scratch: &mut Vec<f64>) -> Option<f64> {
        let s = self.samples.get(segment.0 as usize)?;
        // Kept in exit-time order, so the span is one run of them, found by bisection;
        // it is asked for after every batch, and holds a quarter of what is kept.
        let from = s.partition_point(|(t, _)| *t <= end_ms - self.span_ms);
        let to = s.partition_point(|(t, _)| *t <= end_ms).max(from);
        scratch.clear();
        scratch.extend(s.range(from..to).map(|(_, v)| *v));
        let v = scratch;
        let n = v.len();
        if n == 0 {
            return None;
        }
        // The middle element(s) in the order a full sort would give, without the sort.
        let (below, &mut upper, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
        if n % 2 == 1 {
            return Some(upper);
        }
        below.iter().copied().max_by(f64::total_cmp).map(|lower| (lower + upper) / 2.0)
    }
}
