//! The whole pipeline in one process: stage 1 (keyed by plate) feeding stage 2
//! (keyed by segment and lot) in memory, one batch at a time. Across instances the
//! same two stages talk through the repartition topic instead (`repartition`).

use crate::enforce::Tickets;
use crate::incident::Incident;
use crate::transit::TransitOutput;
use crate::enforce::hotlist::HotlistEntry;
use crate::parking::LotState;
use crate::stage1::{Stage1, Stage1Output};
use crate::stage2::Stage2;
use crate::window::SegmentWindow;
use egret_ingest::Record;
use egret_model::reason::{Reason, Reject};
use egret_model::{CityModel, Topic};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// What "now" means when checking for timestamps from the future.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    /// The machine's clock: live operation.
    Wall,
    /// The newest event time accepted so far: replays and simulations run faster
    /// than real time.
    Event,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
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
    /// How far the clock of a device not yet calibrated may be off (its certified
    /// accuracy); enforcement gives this much to the driver.
    pub uncalibrated_clock_ms: i64,
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
            uncalibrated_clock_ms: 2_000,
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
    /// Tickets issued and possible hotlist hits found in this batch.
    pub tickets: Tickets,
    /// Incidents opened or cleared in this batch.
    pub incidents: Vec<Incident>,
    /// Buses reported, with predictions; headway events and trips that never ran.
    pub transit: TransitOutput,
    /// Every reader's health, when stage 1 reported it.
    pub reader_health: Option<Vec<crate::health::ReaderHealth>>,
    pub watermark_ms: i64,
}

/// Running totals, for `/metrics` and for tests.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub consumed: BTreeMap<Topic, u64>,
    pub rejected: BTreeMap<(Topic, Reason), u64>,
    pub traversals: u64,
    /// Reads and camera events from devices whose clocks cannot be trusted.
    pub excluded: u64,
    pub late_traversals: u64,
    pub windows_closed: u64,
}

impl Stats {
    /// Adds `other`'s totals to these.
    pub fn add(&mut self, other: &Stats) {
        for (topic, n) in &other.consumed {
            *self.consumed.entry(*topic).or_default() += n;
        }
        for (key, n) in &other.rejected {
            *self.rejected.entry(*key).or_default() += n;
        }
        self.traversals += other.traversals;
        self.excluded += other.excluded;
        self.late_traversals += other.late_traversals;
        self.windows_closed += other.windows_closed;
    }
}

pub struct Pipeline {
    stage1: Stage1,
    stage2: Stage2,
}

impl Pipeline {
    pub fn new(city: Arc<CityModel>, config: PipelineConfig) -> Self {
        Pipeline { stage2: Stage2::new(&city, config.clone()), stage1: Stage1::new(city, config) }
    }

    pub fn city(&self) -> &Arc<CityModel> {
        self.stage1.city()
    }

    /// Totals of both stages.
    pub fn stats(&self) -> Stats {
        Stats { late_traversals: self.stage1.stats().late_traversals + self.stage2.late_traversals(), windows_closed: self.stage2.windows_closed(), ..self.stage1.stats().clone() }
    }

    pub fn watermark_ms(&self) -> i64 {
        self.stage1.watermark_ms()
    }

    pub fn corrections(&self) -> u64 {
        self.stage2.corrections()
    }

    pub fn plates_in_flight(&self) -> usize {
        self.stage1.plates_in_flight()
    }

    /// How many plates in flight hold 1, 2, 3 and 4 recent reads.
    pub fn plates_by_reads_held(&self) -> [usize; crate::matcher::RECENT_READS] {
        self.stage1.plates_by_reads_held()
    }

    /// Replaces a hotlist; returns the entries that are not plates.
    pub fn set_hotlist(&mut self, name: &str, entries: &[HotlistEntry]) -> Vec<String> {
        self.stage1.set_hotlist(name, entries)
    }

    pub fn stage1(&self) -> &Stage1 {
        &self.stage1
    }

    pub fn stage1_mut(&mut self) -> &mut Stage1 {
        &mut self.stage1
    }

    /// See `Source::reports_idle`.
    pub fn set_idle_reported(&mut self, reported: bool) {
        self.stage1.set_idle_reported(reported);
    }

    /// See `Stage1::set_assignment`.
    pub fn set_assignment(&mut self, partitions: &[(String, u32)], now: Instant) {
        self.stage1.set_assignment(partitions, now);
    }

    /// See `Stage1::mark_drained`.
    pub fn mark_drained(&mut self, partitions: &[(String, u32)]) {
        self.stage1.mark_drained(partitions);
    }

    /// Processes one batch of records as of processing time `now`.
    pub fn process(&mut self, records: &[Record], now: Instant) -> BatchOutput {
        let out = self.stage1.process(records, now);
        self.hand_over(out)
    }

    /// No input arrived: let idle partitions stop holding the watermark back.
    pub fn tick(&mut self, now: Instant) -> BatchOutput {
        let out = self.stage1.tick(now);
        self.hand_over(out)
    }

    /// End of a finite input: every window becomes final.
    pub fn finish(&mut self) -> BatchOutput {
        let out = self.stage1.finish();
        let watermark_ms = out.watermark_ms;
        let done = self.stage2.finish();
        BatchOutput {
            windows: done.windows,
            lots: done.lots,
            incidents: done.incidents,
            transit: done.transit,
            reader_health: out.reader_health,
            dead_letters: out.dead_letters,
            tickets: out.tickets,
            watermark_ms,
        }
    }

    fn hand_over(&mut self, out: Stage1Output) -> BatchOutput {
        self.stage2.apply(&out.updates);
        let changed = self.stage2.advance(out.watermark_ms);
        BatchOutput {
            windows: changed.windows,
            lots: changed.lots,
            incidents: changed.incidents,
            transit: changed.transit,
            reader_health: out.reader_health,
            dead_letters: out.dead_letters,
            tickets: out.tickets,
            watermark_ms: out.watermark_ms,
        }
    }
}
