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
    windows: Windows,
    parking: Parking,
    incidents: IncidentDetector,
    sliding: SlidingMedian,
    transit: Transit,
    city: Arc<CityModel>,
    /// The newest window's mean speed per segment: what predictions drive on.
    live_kmh: Vec<Option<f64>>,
    /// Updates are applied against this watermark; `advance` moves it.
    watermark: i64,
    pub late_traversals: u64,
    pub windows_closed: u64,
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
        Stage2 {
            windows: Windows::new(config.window_ms, config.allowed_lateness_ms),
            parking: Parking::new(city.lots.iter().map(|l| l.capacity).collect()),
            incidents: IncidentDetector::new(city),
            sliding: SlidingMedian::new(city.segments.len(), 5 * 60_000),
            transit: Transit::new(city),
            live_kmh: vec![None; city.segments.len()],
            city: city.clone(),
            lengths: city.segments.iter().map(|s| s.length_m).collect(),
            config,
            watermark: i64::MIN,
            late_traversals: 0,
            windows_closed: 0,
        }
    }

    pub fn apply(&mut self, updates: &[Update]) {
        for u in updates {
            match *u {
                Update::Traversal { segment, enter_ms, exit_ms } => {
                    let Some(length_m) = self.lengths.get(segment as usize).copied() else { continue };
                    let speed_kmh = crate::matcher::speed_kmh(length_m, enter_ms, exit_ms);
                    let sample = Sample { segment: SegmentIdx(segment), enter_ms, exit_ms, speed_kmh };
                    self.incidents.traversed(segment, enter_ms, exit_ms, speed_kmh);
                    self.sliding.add(SegmentIdx(segment), exit_ms, speed_kmh);
                    if self.windows.add(&sample, self.watermark).is_err() {
                        self.late_traversals += 1;
                    }
                }
                Update::BusReport { route, ref bus_id, ref trip_id, lat, lon, speed_kmh, ts_ms } => {
                    self.transit.report(&self.city, route, bus_id, trip_id.as_deref(), lat, lon, speed_kmh, ts_ms)
                }
                Update::Entered { segment, ts_ms } => self.incidents.entered(segment, ts_ms),
                Update::Left { segment, enter_ms } => self.incidents.left(segment, enter_ms),
                Update::Gate { lot, entering, ts_ms } => self.parking.gate(lot, entering, ts_ms),
                Update::Count { lot, occupied, ts_ms } => self.parking.snapshot(lot, occupied, ts_ms),
            }
        }
    }

    /// Moves the watermark (never back) and reports what changed and what closed.
    pub fn advance(&mut self, watermark: i64) -> Stage2Output {
        self.watermark = self.watermark.max(watermark);
        let settled = self.watermark.saturating_sub(self.config.allowed_lateness_ms + self.config.window_ms);
        let mut windows = self.windows.changed();
        for w in &mut windows {
            self.live_kmh[w.segment.0 as usize] = Some(w.mean_speed_kmh);
            w.median_5min_kmh = self.sliding.median(w.segment, w.window_end_ms);
        }
        let mut out = Stage2Output {
            windows,
            lots: self.parking.changed(settled, self.watermark),
            incidents: self.incidents.check(self.watermark),
            transit: self.transit.advance(&self.city, self.watermark, &self.live_kmh),
        };
        let closed = self.windows.close(self.watermark);
        self.windows_closed += closed.len() as u64;
        out.windows.extend(closed.into_iter().map(|w| self.with_sliding_median(w)));
        out
    }

    /// End of input: everything becomes final.
    pub fn finish(&mut self) -> Stage2Output {
        // The end of input decides nothing about incidents: silence is not a crash.
        let transit = self.transit.advance(&self.city, i64::MAX, &self.live_kmh);
        let windows = self.windows.changed().into_iter().map(|w| self.with_sliding_median(w)).collect();
        let mut out = Stage2Output { windows, lots: self.parking.changed(i64::MIN, i64::MAX), incidents: Vec::new(), transit };
        self.watermark = i64::MAX;
        let closed = self.windows.close(i64::MAX);
        self.windows_closed += closed.len() as u64;
        out.windows.extend(closed.into_iter().map(|w| self.with_sliding_median(w)));
        out
    }

    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    fn with_sliding_median(&self, mut w: SegmentWindow) -> SegmentWindow {
        w.median_5min_kmh = self.sliding.median(w.segment, w.window_end_ms);
        w
    }

    /// Incidents open now.
    pub fn open_incidents(&self) -> Vec<Incident> {
        self.incidents.open().cloned().collect()
    }

    pub fn corrections(&self) -> u64 {
        self.windows.corrections()
    }
}
