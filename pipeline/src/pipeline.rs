//! One batch at a time: decode → validate against the stream clock → de-duplicate →
//! match plates → window, then advance the watermark and close what is final.

use crate::dedup::Dedup;
use crate::matcher::{Matcher, Traversal};
use crate::parking::{LotState, Parking};
use crate::watermark::Watermarks;
use crate::window::{SegmentWindow, Windows};
use egret_ingest::Record;
use egret_model::decode::{Decoded, Decoder};
use egret_model::reason::{Reason, Reject};
use egret_model::{CityModel, Topic, VehicleClass};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What "now" means when checking for timestamps from the future.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    /// The machine's clock: live operation.
    Wall,
    /// The newest event time accepted so far: replays and simulations run faster
    /// than real time.
    Event,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub window_ms: i64,
    /// How far behind the newest event an event may arrive and still count as in order.
    pub out_of_orderness_ms: i64,
    /// How long after the watermark passes a window's end it may still be revised.
    pub allowed_lateness_ms: i64,
    /// A partition silent this long stops holding back the watermark.
    pub idle_timeout_ms: u64,
    /// Events further than this ahead of the clock are rejected.
    pub max_future_ms: i64,
    pub clock: ClockMode,
    /// A plate not read for this long (event time) is forgotten.
    pub plate_ttl_ms: i64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            window_ms: 60_000,
            out_of_orderness_ms: 5_000,
            allowed_lateness_ms: 90_000,
            idle_timeout_ms: 5_000,
            max_future_ms: 5 * 60_000,
            clock: ClockMode::Wall,
            plate_ttl_ms: 45 * 60_000,
        }
    }
}

/// A record that was refused, with the reason that goes into its headers.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub record: Record,
    pub reject: Reject,
}

/// What one batch changed.
#[derive(Debug, Default)]
pub struct BatchOutput {
    /// Provisional snapshots of changed windows, then windows that became final.
    pub windows: Vec<SegmentWindow>,
    /// Lots whose occupancy changed.
    pub lots: Vec<LotState>,
    pub dead_letters: Vec<DeadLetter>,
    pub watermark_ms: i64,
}

/// Running totals, for `/metrics` and for tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stats {
    pub consumed: BTreeMap<Topic, u64>,
    pub rejected: BTreeMap<(Topic, Reason), u64>,
    pub traversals: u64,
    pub late_traversals: u64,
    pub windows_closed: u64,
}

pub struct Pipeline {
    city: Arc<CityModel>,
    config: PipelineConfig,
    watermarks: Watermarks,
    windows: Windows,
    matcher: Matcher,
    parking: Parking,
    dedup: Dedup,
    newest_event_ms: Option<i64>,
    stats: Stats,
    traversals: Vec<Traversal>,
    drained: Vec<(u32, u32)>,
}

fn wall_clock_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Pipeline {
    pub fn new(city: Arc<CityModel>, config: PipelineConfig) -> Self {
        Pipeline {
            watermarks: Watermarks::new(config.out_of_orderness_ms, Duration::from_millis(config.idle_timeout_ms)),
            windows: Windows::new(config.window_ms, config.allowed_lateness_ms),
            matcher: Matcher::default(),
            parking: Parking::new(city.lots.iter().map(|l| l.capacity).collect()),
            dedup: Dedup::default(),
            newest_event_ms: None,
            stats: Stats::default(),
            traversals: Vec::new(),
            drained: Vec::new(),
            city,
            config,
        }
    }

    pub fn city(&self) -> &Arc<CityModel> {
        &self.city
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn watermark_ms(&self) -> i64 {
        self.watermarks.current()
    }

    pub fn corrections(&self) -> u64 {
        self.windows.corrections()
    }

    pub fn plates_in_flight(&self) -> usize {
        self.matcher.plates_in_flight()
    }

    /// Processes one batch of records as of processing time `now`.
    pub fn process(&mut self, records: &[Record], now: Instant) -> BatchOutput {
        let city = self.city.clone();
        let decoder = Decoder::new(&city);
        let mut out = BatchOutput::default();
        let mut consumed = [0u64; 4];
        for record in records {
            let Some(topic) = Topic::from_name(&record.topic) else { continue };
            consumed[topic as usize] += 1;
            match decoder.decode(topic, &record.payload).and_then(|e| self.admit(e)) {
                Ok(event) => {
                    self.watermarks.observe(topic as u32, record.partition, event.ts_ms(), now);
                    self.route(event);
                }
                Err(reject) => {
                    *self.stats.rejected.entry((topic, reject.reason)).or_default() += 1;
                    out.dead_letters.push(DeadLetter { record: record.clone(), reject });
                }
            }
        }
        // Metrics once per batch and topic, never per event.
        for (topic, n) in Topic::ALL.into_iter().zip(consumed).filter(|(_, n)| *n > 0) {
            *self.stats.consumed.entry(topic).or_default() += n;
            metrics::counter!("egret_events_consumed_total", "topic" => topic.default_name()).increment(n);
        }
        for d in &out.dead_letters {
            if let Some(topic) = Topic::from_name(&d.record.topic) {
                metrics::counter!("egret_events_rejected_total", "topic" => topic.default_name(), "reason" => d.reject.reason.code()).increment(1);
            }
        }
        self.settle(now, out)
    }

    /// The partitions the source now assigns to this instance (see `Source::assignment`).
    pub fn set_assignment(&mut self, partitions: &[(String, u32)], now: Instant) {
        if partitions.is_empty() {
            return;
        }
        let owned: Vec<(u32, u32)> = partitions.iter().filter_map(|(topic, p)| Topic::from_name(topic).map(|t| (t as u32, *p))).collect();
        self.watermarks.set_assignment(&owned, now);
    }

    /// The source has nothing pending on these partitions (see `Source::idle_partitions`);
    /// applied after the next batch's events are observed.
    pub fn mark_drained(&mut self, partitions: &[(String, u32)]) {
        self.drained = partitions.iter().filter_map(|(topic, p)| Topic::from_name(topic).map(|t| (t as u32, *p))).collect();
    }

    /// No input arrived: let idle partitions stop holding the watermark back.
    pub fn tick(&mut self, now: Instant) -> BatchOutput {
        self.settle(now, BatchOutput::default())
    }

    /// End of a finite input: every window becomes final.
    pub fn finish(&mut self) -> BatchOutput {
        let watermark = self.watermarks.finish();
        let mut out = BatchOutput { windows: self.windows.changed(), lots: self.parking.changed(i64::MIN), watermark_ms: watermark, ..Default::default() };
        let closed = self.windows.close(watermark);
        self.stats.windows_closed += closed.len() as u64;
        out.windows.extend(closed);
        out
    }

    /// Stream-clock checks: from the future, too late, or seen before.
    fn admit(&mut self, event: Decoded) -> Result<Decoded, Reject> {
        let ts = event.ts_ms();
        let reference = match self.config.clock {
            ClockMode::Wall => Some(wall_clock_ms()),
            ClockMode::Event => self.newest_event_ms,
        };
        if let Some(now) = reference
            && ts > now + self.config.max_future_ms
        {
            return Err(Reject::new(Reason::TimestampInFuture, format!("ts_ms {ts} is {} ms ahead of the clock", ts - now)));
        }
        let watermark = self.watermarks.current();
        if self.windows.is_final(ts, watermark) {
            return Err(Reject::new(Reason::Late, format!("ts_ms {ts} is behind the final watermark {watermark}")));
        }
        if !self.dedup.first_time(event.dedup_key(), ts) {
            return Err(Reject::new(Reason::Duplicate, "event_id already seen from this device"));
        }
        self.newest_event_ms = Some(self.newest_event_ms.map_or(ts, |n| n.max(ts)));
        Ok(event)
    }

    fn route(&mut self, event: Decoded) {
        let read = match event {
            Decoded::PlateRead(read) => read,
            Decoded::ParkingCount(count) => return self.parking.snapshot(count.lot, count.occupied, count.ts_ms),
            Decoded::BusGps(_) | Decoded::Camera(_) => return,
        };
        if let Some((lot, entering)) = self.city.gate(read.reader) {
            return self.parking.gate(lot, entering, read.ts_ms);
        }
        self.traversals.clear();
        self.matcher.read(&self.city, read.plate, read.class, read.reader, read.ts_ms, &mut self.traversals);
        let watermark = self.watermarks.current();
        for t in &self.traversals {
            // Buses dwell at stops: their times are not the traffic's.
            if t.class == VehicleClass::Bus {
                continue;
            }
            self.stats.traversals += 1;
            if self.windows.add(t, watermark).is_err() {
                self.stats.late_traversals += 1;
            }
        }
    }

    fn settle(&mut self, now: Instant, mut out: BatchOutput) -> BatchOutput {
        for (source, partition) in self.drained.drain(..) {
            self.watermarks.mark_drained(source, partition);
        }
        let watermark = self.watermarks.advance(now);
        out.windows = self.windows.changed();
        let settled = watermark.saturating_sub(self.config.allowed_lateness_ms + self.config.window_ms);
        out.lots = self.parking.changed(settled);
        let closed = self.windows.close(watermark);
        self.stats.windows_closed += closed.len() as u64;
        out.windows.extend(closed);
        self.matcher.expire(watermark.saturating_sub(self.config.plate_ttl_ms));
        self.dedup.expire(watermark.saturating_sub(self.config.window_ms + self.config.allowed_lateness_ms));
        out.watermark_ms = watermark;
        out
    }
}
