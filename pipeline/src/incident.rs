//! Incident detection per segment, in stage 2 (keyed by segment).
//!
//! A crash that blocks a road shows first not as slow traversals (the first slow
//! vehicle leaves the segment only after the road clears) but as vehicles that went
//! in and do not come out. Stage 1 reports each vehicle that enters a segment with
//! a single way on (it left the previous segment at its from-gantry); stage 2 pairs
//! entries with traversals by their entry instant. Stopped traffic is declared when
//! at least three vehicles that entered after the last one to come out are overdue
//! (beyond the slow end of recent travel times, plus a grace) and nothing has come
//! out for 45 s or one and a half times the longest recent pause (a red phase),
//! whichever is longer. A collapse of completed speeds (three in a row below a quarter of free
//! flow) is slow traffic. An incident clears once three vehicles in a row leave at
//! 40% of free flow or better.
//!
//! Vehicles that end their trip at the gantry look like entries that never exit.
//! Each segment learns how often that happens (entries overtaken by later ones and
//! overdue), and asks for as many overdue vehicles in a row as would happen by
//! chance less than once in a million, at least three, and silence as well.

use crate::enforce::violation::stable_id;
use egret_model::CityModel;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};

const MIN_OVERDUE: usize = 3;
/// How unlikely the overdue vehicles must be by chance (gone elsewhere, exit read
/// missed or late) before the road is called blocked.
const CHANCE: f64 = 1e-6;
/// Completed speeds below this share of free flow, three in a row: a collapse (the
/// worst rush hour keeps roads above a third of free flow).
const COLLAPSED: f64 = 0.25;
/// Three in a row at this share of free flow or better: flowing again.
const FLOWING: f64 = 0.4;
const MIN_SILENCE_MS: i64 = 45_000;
const MIN_GRACE_MS: i64 = 10_000;
/// A vehicle is overdue past this percentile of recent travel times plus the grace.
const SLOW_PERCENTILE: f64 = 0.75;
const SPEEDS_KEPT: usize = 20;
const ENTRIES_KEPT: usize = 256;
/// Entries older than this are forgotten (a vehicle that turned off unseen).
const ENTRY_HORIZON_MS: i64 = 30 * 60_000;

/// An incident as served and published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Incident {
    pub incident_id: String,
    pub segment_id: String,
    /// `stopped_traffic` or `slow_traffic`.
    pub kind: String,
    /// Best estimate of when it began (the last vehicle out, or the first slow one in).
    pub onset_ms: i64,
    /// Event time when the evidence for it was complete (the watermark at which a
    /// check after every event would have detected it).
    pub detected_ms: i64,
    pub cleared_ms: Option<i64>,
    /// 1 (minor) to 3 (road blocked).
    pub severity: u8,
    /// Vehicles overdue when detected, and their expected travel time.
    pub overdue_vehicles: u32,
    pub expected_travel_s: f64,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
struct SegmentState {
    /// Entry instants of vehicles not yet seen leaving, and whether each has been
    /// counted as gone elsewhere; by entry instant (equal ones in arrival order), so
    /// an exit finds its entry by bisection: vehicles whose trip ended at the gantry
    /// stay for half an hour, and scanning them on every exit cost stage 2 about a
    /// tenth of its time.
    entries: VecDeque<(i64, bool)>,
    /// Entries that came out in time, and entries overtaken and overdue (their trip
    /// ended at the gantry, their exit read was missed or is late): the segment's
    /// usual share of vehicles that look stuck, which sets how many are unusual.
    came_out: u32,
    gone_elsewhere: u32,
    last_exit_ms: i64,
    /// Entry instant of the last vehicle seen leaving.
    last_exit_entry_ms: i64,
    /// Recent traversal speeds (km/h) with their exit instants, by exit time.
    speeds: VecDeque<(i64, f64)>,
    /// Recent travel times (ms), in arrival order.
    travel_ms: VecDeque<i64>,
    /// `travel_ms`'s slow end and median, worked out again only after it changed:
    /// `check` runs after every batch, over every active segment.
    #[serde(skip)]
    travel_summary: Option<TravelSummary>,
    open: Option<Incident>,
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct IncidentDetector {
    segments: Vec<SegmentState>,
    /// From the city model, rebuilt on restore.
    #[serde(skip)]
    lengths: Vec<u32>,
    #[serde(skip)]
    free_flow: Vec<f64>,
    #[serde(skip)]
    ids: Vec<String>,
    /// Segments with entries waiting or an incident open.
    active: BTreeSet<u32>,
    /// All segments' counts together: the prior for a segment with little history
    /// (device noise is the same everywhere).
    came_out: u64,
    gone_elsewhere: u64,
}

impl SegmentState {
    /// The slow end of recent travel times (signals, slow drivers) and their
    /// median, in ms; from free flow while there are none.
    fn travel_times(&mut self, length_m: u32, free_flow_kmh: f64) -> (i64, i64) {
        let free_flow_ms = (f64::from(length_m) / (free_flow_kmh / 3.6) * 1000.0) as i64;
        let summary = *self.travel_summary.get_or_insert_with(|| TravelSummary::of(&self.travel_ms));
        (summary.slow_ms.unwrap_or(2 * free_flow_ms), summary.median_ms.unwrap_or(free_flow_ms))
    }

    /// Where the first entry at `enter_ms` is kept.
    fn entry_at(&self, enter_ms: i64) -> Option<usize> {
        let i = self.entries.partition_point(|(e, _)| *e < enter_ms);
        self.entries.get(i).filter(|(e, _)| *e == enter_ms).map(|_| i)
    }
}

/// How many entries of its own a segment needs before its share outweighs the pool's.
const PRIOR_WEIGHT: f64 = 30.0;

/// The slow end (`SLOW_PERCENTILE`) and the median of recent travel times; `None`
/// for both without any.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TravelSummary {
    slow_ms: Option<i64>,
    median_ms: Option<i64>,
}

impl TravelSummary {
    fn of(travel_ms: &VecDeque<i64>) -> Self {
        let mut sorted: Vec<i64> = travel_ms.iter().copied().collect();
        sorted.sort_unstable();
        let at = |p: f64| sorted.get(((sorted.len().max(1) - 1) as f64 * p).round() as usize).copied();
        TravelSummary { slow_ms: at(SLOW_PERCENTILE), median_ms: at(0.5) }
    }
}

impl IncidentDetector {
    /// After a restore: the parts built from the city model come from `fresh`.
    pub(crate) fn take_city_parts_from(&mut self, fresh: IncidentDetector) {
        (self.lengths, self.free_flow, self.ids) = (fresh.lengths, fresh.free_flow, fresh.ids);
        // Checkpoints written before entries were kept in order.
        for s in &mut self.segments {
            s.entries.make_contiguous().sort_by_key(|(e, _)| *e);
        }
    }

    /// Moves the segments `keys` picks from `from` (`rescale`). The pooled counts
    /// are the deployment's: see `pool` and `set_pool`.
    pub(crate) fn take_keys(&mut self, from: &mut IncidentDetector, keys: &crate::rescale::Keys) {
        crate::rescale::move_indexed(&mut self.segments, &mut from.segments, |i| keys.segment(i as u32));
        crate::rescale::move_where(&mut self.active, &mut from.active, |segment| keys.segment(*segment));
    }

    /// The counts pooled over every segment this detector has kept: (came out, gone elsewhere).
    pub(crate) fn pool(&self) -> (u64, u64) {
        (self.came_out, self.gone_elsewhere)
    }

    pub(crate) fn set_pool(&mut self, (came_out, gone_elsewhere): (u64, u64)) {
        (self.came_out, self.gone_elsewhere) = (came_out, gone_elsewhere);
    }

    pub fn new(city: &CityModel) -> Self {
        IncidentDetector {
            segments: (0..city.segments.len()).map(|_| SegmentState::default()).collect(),
            lengths: city.segments.iter().map(|s| s.length_m).collect(),
            free_flow: city.segments.iter().map(|s| s.free_flow_kmh).collect(),
            ids: city.segments.iter().map(|s| s.segment_id.clone()).collect(),
            active: BTreeSet::new(),
            came_out: 0,
            gone_elsewhere: 0,
        }
    }

    /// A vehicle entered `segment` at `ts_ms`.
    pub fn entered(&mut self, segment: u32, ts_ms: i64) {
        let Some(s) = self.segments.get_mut(segment as usize) else { return };
        crate::window::insert_by_time(&mut s.entries, ts_ms, false);
        if s.entries.len() > ENTRIES_KEPT {
            s.entries.pop_front();
        }
        self.active.insert(segment);
    }

    /// The vehicle that entered `segment` at `enter_ms` turned up elsewhere.
    pub fn left(&mut self, segment: u32, enter_ms: i64) {
        let Some(s) = self.segments.get_mut(segment as usize) else { return };
        if let Some(i) = s.entry_at(enter_ms) {
            s.entries.remove(i);
        }
    }

    /// A vehicle drove `segment` from `enter_ms` to `exit_ms` at `speed_kmh`.
    pub fn traversed(&mut self, segment: u32, enter_ms: i64, exit_ms: i64, speed_kmh: f64) {
        let Some(s) = self.segments.get_mut(segment as usize) else { return };
        if let Some(i) = s.entry_at(enter_ms) {
            // One counted as gone and seen leaving after all (its exit read came in
            // late) still counts as gone: at the time it looked like a stuck vehicle.
            if s.entries.remove(i).is_some_and(|(_, counted)| !counted) {
                s.came_out = s.came_out.saturating_add(1);
                self.came_out += 1;
            }
            if s.came_out + s.gone_elsewhere > 400 {
                // Keep the estimate recent.
                s.came_out /= 2;
                s.gone_elsewhere /= 2;
            }
        }
        if exit_ms > s.last_exit_ms {
            s.last_exit_ms = exit_ms;
            s.last_exit_entry_ms = enter_ms;
        }
        crate::window::insert_by_time(&mut s.speeds, exit_ms, speed_kmh);
        if s.speeds.len() > SPEEDS_KEPT {
            s.speeds.pop_front();
        }
        s.travel_ms.push_back(exit_ms - enter_ms);
        if s.travel_ms.len() > SPEEDS_KEPT {
            s.travel_ms.pop_front();
        }
        s.travel_summary = None;
        if s.open.is_some() {
            self.active.insert(segment);
        }
    }

    /// Opens and clears incidents as of `watermark_ms`; returns the changed ones.
    pub fn check(&mut self, watermark_ms: i64) -> Vec<Incident> {
        // Every segment's vehicles gone elsewhere are counted before any segment is
        // judged by the pool, so where in `active` a segment comes does not change
        // its judgement, and a check after a long silence does not judge by a pool
        // missing the other segments' counts. (A seldom check still judges by counts
        // gathered after the evidence; it may need more overdue vehicles, not fewer.)
        for &seg in &self.active {
            let i = seg as usize;
            let s = &mut self.segments[i];
            while s.entries.front().is_some_and(|(e, _)| *e < watermark_ms.saturating_sub(ENTRY_HORIZON_MS)) {
                s.entries.pop_front();
            }
            if s.open.is_none() {
                let (slow_ms, _) = s.travel_times(self.lengths[i], self.free_flow[i]);
                // Entries are in entry order: those overtaken and overdue come first.
                let overtaken_and_overdue = |e: &i64| *e < s.last_exit_entry_ms && e.saturating_add(slow_ms + MIN_GRACE_MS) < watermark_ms;
                for (_, counted) in s.entries.iter_mut().take_while(|(e, _)| overtaken_and_overdue(e)) {
                    if !*counted {
                        *counted = true;
                        s.gone_elsewhere += 1;
                        self.gone_elsewhere += 1;
                    }
                }
            }
        }
        let mut changed = Vec::new();
        let mut idle = Vec::new();
        for &seg in &self.active {
            let i = seg as usize;
            let free_flow = self.free_flow[i];
            let s = &mut self.segments[i];
            let (slow_ms, expected_ms) = s.travel_times(self.lengths[i], free_flow);
            // The longest recent pause between vehicles coming out (a red phase).
            let longest_pause = s.speeds.iter().zip(s.speeds.iter().skip(1)).map(|((a, _), (b, _))| b - a).max().unwrap_or(0);
            match &mut s.open {
                None => {
                    let overdue_at = |e: i64| e.saturating_add(slow_ms + MIN_GRACE_MS) < watermark_ms;
                    // In entry order: those after the last one out, up to the last overdue.
                    let after_last_out = s.entries.partition_point(|(e, _)| *e <= s.last_exit_entry_ms);
                    let overdue = s.entries.partition_point(|(e, _)| overdue_at(*e)).saturating_sub(after_last_out);
                    // As many in a row as would happen by chance less than `CHANCE`.
                    let pooled = (self.gone_elsewhere as f64 + 1.0) / ((self.came_out + self.gone_elsewhere) as f64 + 5.0);
                    let gone_share = (f64::from(s.gone_elsewhere) + PRIOR_WEIGHT * pooled) / (f64::from(s.came_out + s.gone_elsewhere) + PRIOR_WEIGHT);
                    let needed = ((CHANCE).ln() / gone_share.ln()).ceil().clamp(MIN_OVERDUE as f64, 12.0) as usize;
                    let silence = MIN_SILENCE_MS.max(longest_pause * 3 / 2);
                    let silent = s.last_exit_ms > 0 && watermark_ms.saturating_sub(s.last_exit_ms) >= silence;
                    let collapsed = s.speeds.len() >= 3 && s.speeds.iter().rev().take(3).all(|(_, v)| *v < COLLAPSED * free_flow);
                    tracing::trace!(segment = %self.ids[i], watermark_ms, overdue, needed, gone_share, silent, last_exit_ms = s.last_exit_ms, slow_ms, "incident check");
                    // Detected when the evidence was complete (the needed-th vehicle
                    // overdue and the silence long enough; the third slow exit), not
                    // when this check ran: how many events a batch holds must not move it.
                    let (kind, onset, severity, evidence_ms) = if overdue >= needed && silent {
                        let mut overdue_from: Vec<i64> = s.entries.iter().filter(|(e, _)| *e > s.last_exit_entry_ms).map(|(e, _)| e.saturating_add(slow_ms + MIN_GRACE_MS)).collect();
                        overdue_from.sort_unstable();
                        let enough_overdue = overdue_from.get(needed - 1).copied().unwrap_or(watermark_ms);
                        ("stopped_traffic", s.last_exit_ms, 3, enough_overdue.max(s.last_exit_ms.saturating_add(silence)))
                    } else if collapsed {
                        let third_slow_exit = s.speeds.back().map_or(watermark_ms, |(t, _)| *t);
                        ("slow_traffic", s.speeds.iter().rev().nth(2).map_or(watermark_ms, |(t, _)| *t), 2, third_slow_exit)
                    } else {
                        if s.entries.is_empty() {
                            idle.push(seg);
                        }
                        continue;
                    };
                    let incident = Incident {
                        // Deterministic: a replay finds the same incident under the same id.
                        incident_id: stable_id(&["incident", &self.ids[i], &onset.to_string()]),
                        segment_id: self.ids[i].clone(),
                        kind: kind.into(),
                        onset_ms: onset,
                        detected_ms: evidence_ms.min(watermark_ms),
                        cleared_ms: None,
                        severity,
                        overdue_vehicles: overdue as u32,
                        expected_travel_s: expected_ms as f64 / 1000.0,
                    };
                    changed.push(incident.clone());
                    s.open = Some(incident);
                }
                Some(open) => {
                    // Cleared: the last three out, all since detection, drove at a
                    // flowing speed again.
                    let last3: Vec<(i64, f64)> = s.speeds.iter().rev().take(3).copied().collect();
                    let flowing = last3.len() == 3 && last3.iter().all(|(t, v)| *t > open.detected_ms && *v >= FLOWING * free_flow);
                    if flowing {
                        open.cleared_ms = last3.last().map(|(t, _)| *t);
                        changed.push(open.clone());
                        s.open = None;
                    }
                }
            }
        }
        for seg in idle {
            self.active.remove(&seg);
        }
        changed
    }

    /// Incidents open now.
    pub fn open(&self) -> impl Iterator<Item = &Incident> {
        self.segments.iter().filter_map(|s| s.open.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a detector sees of segment 0 when a vehicle enters every 5 s and drives
    /// it in 60 s, until the road is blocked at `blocked_ms`: from then on they go
    /// in and none comes out. Checked at each of `watermarks`, with everything up
    /// to it applied.
    fn blocked_road(blocked_ms: i64, watermarks: impl Iterator<Item = i64>) -> Vec<Incident> {
        let city = crate::repo_city();
        let mut detector = IncidentDetector::new(&city);
        let kmh = f64::from(city.segments[0].length_m) / 60.0 * 3.6;
        // (event time, entry instant, exit instant if it came out)
        let mut events: Vec<(i64, i64, Option<i64>)> = Vec::new();
        for k in 0..400 {
            let enter = k * 5_000;
            events.push((enter, enter, None));
            if enter + 60_000 < blocked_ms {
                events.push((enter + 60_000, enter, Some(enter + 60_000)));
            }
        }
        events.sort_unstable();
        let (mut next, mut found) = (0, Vec::new());
        for watermark in watermarks {
            while let Some(&(_, enter, exit)) = events.get(next).filter(|e| e.0 <= watermark) {
                match exit {
                    None => detector.entered(0, enter),
                    Some(exit) => detector.traversed(0, enter, exit, kmh),
                }
                next += 1;
            }
            found.extend(detector.check(watermark));
        }
        found
    }

    #[test]
    fn a_blocked_road_is_dated_by_its_evidence_whatever_the_batches() {
        let blocked_ms = 900_000;
        let every_second = blocked_road(blocked_ms, (0..2_000).map(|s| s * 1_000));
        let every_two_minutes = blocked_road(blocked_ms, (0..17).map(|s| s * 120_000));
        let stopped = |found: &[Incident]| found.iter().find(|i| i.kind == "stopped_traffic").map(|i| (i.onset_ms, i.detected_ms));
        let fine = stopped(&every_second).expect("detected when checked every second");
        assert!(fine.1 > blocked_ms && fine.1 < blocked_ms + 240_000, "detected at {} for a block at {blocked_ms}", fine.1);
        assert_eq!(stopped(&every_two_minutes), Some(fine), "checked every two minutes");
    }

    /// A segment with little traffic of its own is judged by the share of vehicles
    /// that go elsewhere pooled over all segments, counted in full before any
    /// segment is judged: otherwise a check after a long silence (a backlog, a
    /// restart) judges the segments early in the list by a pool that lacks the
    /// later ones' vehicles gone, as if none ever went elsewhere. Here one vehicle
    /// in five leaves a busy segment before its exit gantry, and the last five on a
    /// quiet one do: no incident, whether checked every second or once.
    #[test]
    fn a_quiet_segment_is_judged_by_the_whole_pool_however_seldom_checked() {
        let city = crate::repo_city();
        let (quiet, busy) = (0u32, 19u32);
        // (event time, segment, entry instant, exit instant if it came out)
        let mut events: Vec<(i64, u32, i64, Option<i64>)> = Vec::new();
        for k in 0..240 {
            let enter = k * 5_000;
            events.push((enter, busy, enter, None));
            if k % 5 != 4 {
                events.push((enter + 60_000, busy, enter, Some(enter + 60_000)));
            }
        }
        for k in 0..10 {
            let enter = 600_000 + k * 20_000;
            events.push((enter, quiet, enter, None));
            if k < 5 {
                events.push((enter + 60_000, quiet, enter, Some(enter + 60_000)));
            }
        }
        events.sort_unstable();
        let found = |watermarks: &[i64]| {
            let mut detector = IncidentDetector::new(&city);
            let mut next = 0;
            let mut found = Vec::new();
            for &watermark in watermarks {
                while let Some(&(_, segment, enter, exit)) = events.get(next).filter(|e| e.0 <= watermark) {
                    match exit {
                        None => detector.entered(segment, enter),
                        Some(exit) => detector.traversed(segment, enter, exit, f64::from(city.segments[segment as usize].length_m) / 60.0 * 3.6),
                    }
                    next += 1;
                }
                found.extend(detector.check(watermark).into_iter().map(|i| (i.segment_id, i.kind)));
            }
            found
        };
        let every_second: Vec<i64> = (0..1_500).map(|s| s * 1_000).collect();
        assert_eq!(found(&every_second), Vec::new(), "checked every second");
        assert_eq!(found(&[1_500_000]), Vec::new(), "checked once, at the end");
    }

    #[test]
    fn steady_traffic_is_no_incident() {
        assert!(blocked_road(i64::MAX, (0..2_000).map(|s| s * 1_000)).is_empty());
    }

    #[test]
    fn the_travel_summary_follows_every_new_traversal() {
        let city = crate::repo_city();
        let mut detector = IncidentDetector::new(&city);
        let mut seen = Vec::new();
        for (k, travel_ms) in [60_000, 90_000, 30_000].into_iter().enumerate() {
            let enter = k as i64 * 1_000;
            detector.entered(0, enter);
            detector.traversed(0, enter, enter + travel_ms, 50.0);
            detector.check(enter + travel_ms);
            let summary = detector.segments[0].travel_summary.expect("worked out by check");
            seen.push((summary.slow_ms, summary.median_ms));
        }
        // Sorted travel times, indexed at round((n - 1) × p).
        assert_eq!(seen, [(Some(60_000), Some(60_000)), (Some(90_000), Some(90_000)), (Some(90_000), Some(60_000))]);
    }

    proptest::proptest! {
        /// Entries stay in entry order whatever order vehicles arrive and leave in,
        /// the newest `ENTRIES_KEPT` are kept, and an exit removes exactly one entry
        /// at its instant: the bisection finds what a scan would.
        #[test]
        fn entries_are_the_newest_unexited_in_order(ops in proptest::collection::vec((0u8..6, 0i64..40), 1..1_200)) {
            let city = crate::repo_city();
            let mut detector = IncidentDetector::new(&city);
            let mut model: Vec<i64> = Vec::new();
            for (op, t) in ops {
                let ts = t * 1_000;
                // Twice as many entries as exits, so that the cap is reached.
                match op {
                    0..=3 => {
                        detector.entered(0, ts);
                        model.push(ts);
                        model.sort_unstable();
                        if model.len() > ENTRIES_KEPT {
                            model.remove(0);
                        }
                    }
                    4 => {
                        detector.left(0, ts);
                        if let Some(i) = model.iter().position(|e| *e == ts) {
                            model.remove(i);
                        }
                    }
                    _ => {
                        detector.traversed(0, ts, ts + 60_000, 50.0);
                        if let Some(i) = model.iter().position(|e| *e == ts) {
                            model.remove(i);
                        }
                    }
                }
                let kept: Vec<i64> = detector.segments[0].entries.iter().map(|(e, _)| *e).collect();
                proptest::prop_assert_eq!(&kept, &model);
            }
        }
    }
}
