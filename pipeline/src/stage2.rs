//! Stage 2, keyed by segment and lot: event-time windows of segment speeds and
//! parking occupancy, driven by the updates of stage 1 and a watermark.

use crate::incident::{Incident, IncidentDetector};
use crate::parking::{LotState, Parking};
use crate::pipeline::PipelineConfig;
use crate::update::Update;
use crate::window::{Sample, SegmentWindow, SlidingMedian, Windows};
use crate::transit::{Transit, TransitOutput};
use egret_model::{CityModel, SegmentIdx};
use std::sync::Arc;

#[derive(Debug)]
pub struct Stage2 {
    config: PipelineConfig,
    /// Surveyed length per segment index.
    lengths: Vec<u32>,
    city: Arc<CityModel>,
    state: Stage2State,
    /// The repartition partitions this instance keeps (see `ownership`), of
    /// how many the topic has.
    ownership: crate::ownership::Ownership,
    partitions: u32,
    /// Stop at the cut at this instant (`cut`).
    stop_at: Option<i64>,
    /// Reused by every sliding median (`SlidingMedian::median`).
    scratch: Vec<f64>,
}

/// Everything stage 2 remembers between batches: what a checkpoint saves.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Stage2State {
    windows: Windows,
    parking: Parking,
    incidents: IncidentDetector,
    sliding: SlidingMedian,
    transit: Transit,
    /// The newest window's mean speed per segment: what predictions drive on.
    live_kmh: Vec<Option<f64>>,
    /// Updates are applied against this watermark; `advance` moves it.
    watermark: i64,
    late_traversals: u64,
    windows_closed: u64,
    /// The cut this state was saved at, when its instance stopped at one (`cut`).
    #[serde(default)]
    stopped_at: Option<i64>,
    /// The marks of instances stopped at a cut, read so far (`cut`).
    #[serde(default)]
    cut_marks: crate::cut::CutMarks,
}

impl Stage2State {
    /// Moves the keyed state of the segments, lots and routes `keys` picks from
    /// `from` (`rescale::stage2`).
    pub(crate) fn take_keys(&mut self, from: &mut Stage2State, keys: &crate::rescale::Keys) {
        self.windows.take_keys(&mut from.windows, keys);
        self.parking.take_keys(&mut from.parking, keys);
        self.incidents.take_keys(&mut from.incidents, keys);
        self.sliding.take_keys(&mut from.sliding, keys);
        self.transit.take_keys(&mut from.transit, keys);
        crate::rescale::move_indexed(&mut self.live_kmh, &mut from.live_kmh, |i| keys.segment(i as u32));
    }

    pub(crate) fn watermark(&self) -> i64 {
        self.watermark
    }

    /// The cut this state was saved at, if its instance stopped at one (`cut`).
    pub fn stopped_at(&self) -> Option<i64> {
        self.stopped_at
    }

    pub(crate) fn set_stopped_at(&mut self, at_ms: Option<i64>) {
        self.stopped_at = at_ms;
    }

    pub(crate) fn totals(&self) -> crate::rescale::Stage2Totals {
        crate::rescale::Stage2Totals { late_traversals: self.late_traversals, windows_closed: self.windows_closed, corrections: self.windows.corrections() }
    }

    pub(crate) fn incident_pool(&self) -> (u64, u64) {
        self.incidents.pool()
    }

    pub(crate) fn set_incident_pool(&mut self, pool: (u64, u64)) {
        self.incidents.set_pool(pool);
    }

    /// The last of dealing: the cut's watermark, the deployment's totals (or
    /// none), and predictions measured on the live speeds dealt.
    pub(crate) fn settle_dealt(&mut self, watermark: i64, totals: crate::rescale::Stage2Totals) {
        self.watermark = watermark;
        (self.late_traversals, self.windows_closed) = (totals.late_traversals, totals.windows_closed);
        self.windows.set_corrections(totals.corrections);
        self.transit.measure_network(&self.live_kmh);
    }
}

/// What stage 2 changed.
#[derive(Debug, Default)]
pub struct Stage2Output {
    /// Provisional snapshots of changed windows, then windows that became final.
    pub windows: Vec<SegmentWindow>,
    pub lots: Vec<LotState>,
    /// Incidents opened or cleared.
    pub incidents: Vec<Incident>,
    pub transit: TransitOutput,
}

impl Stage2 {
    pub fn new(city: &Arc<CityModel>, config: PipelineConfig) -> Self {
        let state = Stage2State {
            windows: Windows::new(config.window_ms, config.allowed_lateness_ms),
            parking: Parking::new(city.lots.iter().map(|l| l.capacity).collect()),
            incidents: IncidentDetector::new(city),
            sliding: SlidingMedian::new(city.segments.len(), 5 * 60_000),
            transit: Transit::new(city),
            live_kmh: vec![None; city.segments.len()],
            watermark: i64::MIN,
            late_traversals: 0,
            windows_closed: 0,
            stopped_at: None,
            cut_marks: Default::default(),
        };
        Stage2 { city: city.clone(), lengths: city.segments.iter().map(|s| s.length_m).collect(), config, state, ownership: Default::default(), partitions: 1, stop_at: None, scratch: Vec::new() }
    }

    /// Keep only the segments, lots and routes of the repartition partitions
    /// `ownership` gives this instance, of the topic's `partitions`: its runner
    /// reads no others, and trips of another instance's routes are not ghosts here.
    pub fn set_ownership(&mut self, ownership: crate::ownership::Ownership, partitions: u32) {
        (self.ownership, self.partitions) = (ownership, partitions);
        let owned = self.city.routes.iter().map(|r| ownership.owns(crate::repartition::partition_of(&r.route_id, partitions)));
        self.state.transit.set_owned_routes(owned.collect());
    }

    pub fn ownership(&self) -> crate::ownership::Ownership {
        self.ownership
    }

    /// Stage 2 as it was when `state` was saved, with the model of `city` as loaded now.
    pub fn restore(city: &Arc<CityModel>, config: PipelineConfig, state: Stage2State) -> Self {
        let mut stage = Stage2::new(city, config);
        let fresh = std::mem::replace(&mut stage.state, state);
        stage.state.incidents.take_city_parts_from(fresh.incidents);
        stage.state.transit.take_city_parts_from(fresh.transit);
        stage
    }

    /// What a checkpoint saves.
    pub fn state(&self) -> &Stage2State {
        &self.state
    }

    /// Stop at the cut at `at_ms` (`cut`): how `repartition` runs this stage.
    pub fn set_stop_at(&mut self, at_ms: Option<i64>) {
        self.stop_at = at_ms;
    }

    pub fn stop_at(&self) -> Option<i64> {
        self.stop_at
    }

    /// Notes the cut the state is saved at (`cut`), or that it runs on past any.
    pub fn set_stopped_at(&mut self, at_ms: Option<i64>) {
        self.state.set_stopped_at(at_ms);
    }

    /// Forgets every cut but the one at `at_ms`: where it stopped, and the marks
    /// read (see `CutMarks::keep_only`).
    pub fn forget_cuts_but(&mut self, at_ms: Option<i64>) {
        if self.state.stopped_at != at_ms {
            self.state.stopped_at = None;
        }
        self.state.cut_marks.keep_only(at_ms);
    }

    /// Instance `instance` of the split marked the cut at `at_ms` on `partition`.
    pub fn observe_cut_mark(&mut self, partition: u32, instance: u32, at_ms: i64) {
        self.state.cut_marks.observe(partition, instance, at_ms);
    }

    /// Whether every instance of the split marked the cut at `at_ms` on every
    /// repartition partition this instance keeps.
    pub fn cut_marked_by_all(&self, at_ms: i64) -> bool {
        let owned: Vec<u32> = (0..self.partitions).filter(|p| self.ownership.owns(*p)).collect();
        self.state.cut_marks.complete(at_ms, self.ownership.count(), &owned)
    }

    /// The state, given up (to be dealt out to a new split: `rescale`).
    pub fn into_state(self) -> Stage2State {
        self.state
    }

    /// Traversals that came after their window was final.
    pub fn late_traversals(&self) -> u64 {
        self.state.late_traversals
    }

    pub fn windows_closed(&self) -> u64 {
        self.state.windows_closed
    }

    pub fn apply(&mut self, updates: &[Update]) {
        for u in updates {
            match *u {
                Update::Traversal { segment, enter_ms, exit_ms } => {
                    let Some(length_m) = self.lengths.get(segment as usize).copied() else { continue };
                    let speed_kmh = crate::matcher::speed_kmh(length_m, enter_ms, exit_ms);
                    let sample = Sample { segment: SegmentIdx(segment), enter_ms, exit_ms, speed_kmh };
                    self.state.incidents.traversed(segment, enter_ms, exit_ms, speed_kmh);
                    self.state.sliding.add(SegmentIdx(segment), exit_ms, speed_kmh);
                    if self.state.windows.add(&sample, self.state.watermark).is_err() {
                        self.state.late_traversals += 1;
                    }
                }
                Update::BusReport { route, ref bus_id, ref trip_id, lat, lon, speed_kmh, ts_ms } => {
                    self.state.transit.report(&self.city, route, bus_id, trip_id.as_deref(), lat, lon, speed_kmh, ts_ms)
                }
                Update::Entered { segment, ts_ms } => self.state.incidents.entered(segment, ts_ms),
                Update::Left { segment, enter_ms } => self.state.incidents.left(segment, enter_ms),
                Update::Gate { lot, entering, ts_ms } => self.state.parking.gate(lot, entering, ts_ms),
                Update::Count { lot, occupied, ts_ms } => self.state.parking.snapshot(lot, occupied, ts_ms),
            }
        }
    }

    /// Moves the watermark (never back) and reports what changed and what closed.
    pub fn advance(&mut self, watermark: i64) -> Stage2Output {
        self.state.watermark = self.state.watermark.max(watermark);
        let settled = self.state.watermark.saturating_sub(self.config.allowed_lateness_ms + self.config.window_ms);
        let mut windows = self.state.windows.changed();
        for w in &mut windows {
            self.state.live_kmh[w.segment.0 as usize] = Some(w.mean_speed_kmh);
            w.median_5min_kmh = self.state.sliding.median(w.segment, w.window_end_ms, &mut self.scratch);
        }
        let mut out = Stage2Output {
            windows,
            lots: self.state.parking.changed(settled, self.state.watermark),
            incidents: self.state.incidents.check(self.state.watermark),
            transit: self.state.transit.advance(&self.city, self.state.watermark, &self.state.live_kmh),
        };
        let closed = self.state.windows.close(self.state.watermark);
        self.state.windows_closed += closed.len() as u64;
        out.windows.extend(closed.into_iter().map(|w| self.with_sliding_median(w)));
        out
    }

    /// End of input: everything becomes final.
    pub fn finish(&mut self) -> Stage2Output {
        // The end of input decides nothing about incidents: silence is not a crash.
        let transit = self.state.transit.advance(&self.city, i64::MAX, &self.state.live_kmh);
        let windows = self.state.windows.changed().into_iter().map(|w| self.with_sliding_median(w)).collect();
        let mut out = Stage2Output { windows, lots: self.state.parking.changed(i64::MIN, i64::MAX), incidents: Vec::new(), transit };
        self.state.watermark = i64::MAX;
        let closed = self.state.windows.close(i64::MAX);
        self.state.windows_closed += closed.len() as u64;
        out.windows.extend(closed.into_iter().map(|w| self.with_sliding_median(w)));
        out
    }

    pub fn watermark(&self) -> i64 {
        self.state.watermark
    }

    fn with_sliding_median(&mut self, mut w: SegmentWindow) -> SegmentWindow {
        w.median_5min_kmh = self.state.sliding.median(w.segment, w.window_end_ms, &mut self.scratch);
        w
    }

    /// Incidents open now.
    pub fn open_incidents(&self) -> Vec<Incident> {
        self.state.incidents.open().cloned().collect()
    }

    pub fn corrections(&self) -> u64 {
        self.state.windows.corrections()
    }
}
