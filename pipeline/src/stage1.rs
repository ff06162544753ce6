//! Stage 1, keyed by plate: decode → correct device clocks → validate against the
//! stream clock → de-duplicate → dead-letter the rejects → pair plate reads into
//! traversals → enforce the rules, and route parking gate reads and lot counts.
//! Its updates are keyed for stage 2; its tickets go straight out.

use crate::clock::DeviceClocks;
use crate::health::{Health, ReaderHealth, trusted};
use crate::tags::TagRegistry;
use crate::dedup::Dedup;
use crate::enforce::hotlist::HotlistEntry;
use crate::enforce::{Enforcer, Tickets};
use crate::matcher::{Matcher, Read, Traversal};
use crate::ownership::Ownership;
use crate::pipeline::{ClockMode, DeadLetter, PipelineConfig, Stats};
use crate::update::{Origin, Update};
use crate::watermark::Watermarks;
use crate::window::window_start;
use egret_ingest::Record;
use egret_model::decode::{Decoded, Decoder};
use egret_model::reason::{Reason, Reject};
use egret_model::{CityModel, FastMap, Topic, VehicleClass};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one batch of stage 1 produced.
#[derive(Debug, Default)]
pub struct Stage1Output {
    pub updates: Vec<Update>,
    /// The origin of each update, index for index.
    pub origins: Vec<Origin>,
    pub dead_letters: Vec<DeadLetter>,
    pub tickets: Tickets,
    /// Every reader's health, now and then (every 30 s of event time).
    pub reader_health: Option<Vec<ReaderHealth>>,
    /// Stage 1's watermark after the batch: no later update is for a window that is
    /// final at this watermark.
    pub watermark_ms: i64,
}

pub struct Stage1 {
    city: Arc<CityModel>,
    config: PipelineConfig,
    state: Stage1State,
    /// Scratch space, reused between reads.
    traversals: Vec<Traversal>,
    drained: Vec<(u32, u32)>,
    /// When per-plate state (matcher, tags, `entered`) was last swept.
    plate_sweep: crate::sweep::Horizon,
    /// The plates, and the partitions of records without one, this instance keeps
    /// (see `ownership`).
    ownership: Ownership,
    /// Stop at the cut at this instant (`cut`).
    stop_at: Option<i64>,
}

/// Everything stage 1 remembers between batches: what a checkpoint saves.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Stage1State {
    watermarks: Watermarks,
    pub(crate) matcher: Matcher,
    clocks: DeviceClocks,
    tags: TagRegistry,
    health: Health,
    health_reported_ms: i64,
    /// Per plate, the segment it was last seen entering and when (see `Update::Entered`).
    pub(crate) entered: FastMap<egret_model::Plate, (u32, i64)>,
    pub(crate) enforcer: Enforcer,
    dedup: Dedup,
    newest_event_ms: Option<i64>,
    pub(crate) stats: Stats,
    /// The cut this state was saved at, when its instance stopped at one (`cut`).
    #[serde(default)]
    stopped_at: Option<i64>,
}

impl Stage1State {
    /// The cut this state was saved at, if its instance stopped at one (`cut`).
    pub fn stopped_at(&self) -> Option<i64> {
        self.stopped_at
    }

    /// Plates with reads in flight (the matcher's).
    pub fn plates_in_flight(&self) -> usize {
        self.matcher.plates_in_flight()
    }

    pub(crate) fn set_stopped_at(&mut self, at_ms: Option<i64>) {
        self.stopped_at = at_ms;
    }

    /// Where in the input this state stands, as far as the state itself tells:
    /// the watermark and the newest event time. Instances of a split at one cut
    /// agree on both (see `rescale`).
    pub(crate) fn cut(&self) -> (i64, Option<i64>) {
        (self.watermarks.current(), self.newest_event_ms)
    }
}

/// How often (event time) reader health is reported.
const HEALTH_EVERY_MS: i64 = 30_000;

/// How far ahead of the newest event a replayed event may be (see `admit`).
const REPLAY_FUTURE_MS: i64 = 30 * 60_000;

/// What the device's own clock said, and how far the corrected time may be off.
#[derive(Debug, Clone, Copy)]
struct DeviceTime {
    /// The device's dense number in the clock estimates, if it has a clock to estimate.
    device: Option<usize>,
    device_ts_ms: i64,
    uncertainty_ms: i64,
}

fn end_of_window(ts_ms: i64, window_ms: i64) -> i64 {
    window_start(ts_ms, window_ms).saturating_add(window_ms)
}


/// A read of `plate` at `ts_ms` that completed `traversals`: if it came out of the
/// segment it was last seen `entered`, that entry is done; any other read after the
/// entry means it is not stuck on that segment (`Update::Left`). An entry older than
/// `horizon_ms` counts as gone (a sweep would have forgotten it). One probe of the
/// map: it is looked up for every read.
fn seen_after_entering(entered: &mut FastMap<egret_model::Plate, (u32, i64)>, horizon_ms: i64, plate: egret_model::Plate, ts_ms: i64, traversals: &[Traversal], updates: &mut Vec<Update>) {
    let std::collections::hash_map::Entry::Occupied(entry) = entered.entry(plate) else { return };
    let (segment, enter_ms) = *entry.get();
    if enter_ms < horizon_ms {
        return;
    }
    let came_out = traversals.iter().any(|t| t.segment.0 == segment && t.enter_ms == enter_ms);
    if came_out || ts_ms > enter_ms {
        entry.remove();
    }
    if !came_out && ts_ms > enter_ms {
        updates.push(Update::Left { segment, enter_ms });
    }
}

impl Stage1 {
    pub fn new(city: Arc<CityModel>, config: PipelineConfig) -> Self {
        let state = Stage1State {
            watermarks: Watermarks::new(config.out_of_orderness_ms, Duration::from_millis(config.idle_timeout_ms)),
            matcher: Matcher::default(),
            tags: TagRegistry::default(),
            health: Health::new(&city),
            health_reported_ms: i64::MIN,
            entered: Default::default(),
            clocks: DeviceClocks::new(city.readers.len() + city.cameras.len(), config.uncalibrated_clock_ms),
            enforcer: Enforcer::new(&city, config.window_ms + config.allowed_lateness_ms),
            dedup: Dedup::default(),
            newest_event_ms: None,
            stats: Stats::default(),
            stopped_at: None,
        };
        Stage1 { state, traversals: Vec::new(), drained: Vec::new(), plate_sweep: crate::sweep::Horizon::default(), ownership: Ownership::default(), stop_at: None, city, config }
    }

    /// Stage 1 as it was when `state` was saved, with the rules of `city` as loaded now.
    pub fn restore(city: Arc<CityModel>, config: PipelineConfig, state: Stage1State) -> Self {
        let mut stage = Stage1::new(city, config);
        let fresh = std::mem::replace(&mut stage.state, state);
        stage.state.enforcer.take_city_parts_from(fresh.enforcer);
        stage.state.health.take_city_parts_from(fresh.health);
        stage
    }

    /// Keep only the plates (and the partitions of records without one) that
    /// `ownership` gives this instance; the state that spans partitions is still
    /// kept from every record.
    pub fn set_ownership(&mut self, ownership: Ownership) {
        self.ownership = ownership;
    }

    pub fn ownership(&self) -> Ownership {
        self.ownership
    }

    /// What a checkpoint saves.
    pub fn state(&self) -> &Stage1State {
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

    /// The state, given up (to be dealt out to a new split: `rescale`).
    pub fn into_state(self) -> Stage1State {
        self.state
    }

    pub fn city(&self) -> &Arc<CityModel> {
        &self.city
    }

    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }

    pub fn watermark_ms(&self) -> i64 {
        self.state.watermarks.current()
    }

    pub fn plates_in_flight(&self) -> usize {
        self.state.plates_in_flight()
    }

    pub fn plates_by_reads_held(&self) -> [usize; crate::matcher::RECENT_READS] {
        self.state.matcher.plates_by_reads_held()
    }

    /// Replaces a hotlist; returns the entries that are not plates.
    pub fn set_hotlist(&mut self, name: &str, entries: &[HotlistEntry]) -> Vec<String> {
        self.state.enforcer.hotlists.set_list(name, entries)
    }

    pub fn remove_hotlist(&mut self, name: &str) -> bool {
        self.state.enforcer.hotlists.remove_list(name)
    }

    pub fn has_hotlist(&self, name: &str) -> bool {
        self.state.enforcer.hotlists.has_list(name)
    }

    /// Plate reads taken as their tag's established plate (one character off it).
    pub fn plates_corrected(&self) -> u64 {
        self.state.tags.corrected
    }

    /// Camera offences dropped unconfirmed, and those still waiting for a read.
    pub fn unconfirmed_offences(&self) -> (u64, usize) {
        (self.state.enforcer.unconfirmed(), self.state.enforcer.pending_offences())
    }

    /// The clock correction of a reader (by index), if it is calibrated.
    pub fn reader_clock(&self, reader: usize) -> Option<crate::clock::Calibration> {
        self.state.clocks.estimate(reader)
    }

    /// See `Source::reports_idle`.
    pub fn set_idle_reported(&mut self, reported: bool) {
        self.state.watermarks.set_idle_reported(reported);
    }

    /// The partitions the source now assigns to this instance (see `Source::assignment`).
    pub fn set_assignment(&mut self, partitions: &[(String, u32)], now: Instant) {
        if partitions.is_empty() {
            return;
        }
        let owned: Vec<(u32, u32)> = partitions.iter().filter_map(|(topic, p)| Topic::from_name(topic).map(|t| (t as u32, *p))).collect();
        self.state.watermarks.set_assignment(&owned, now);
    }

    /// The source has nothing pending on these partitions (see `Source::idle_partitions`);
    /// applied after the next batch's events are observed.
    pub fn mark_drained(&mut self, partitions: &[(String, u32)]) {
        self.drained = partitions.iter().filter_map(|(topic, p)| Topic::from_name(topic).map(|t| (t as u32, *p))).collect();
    }

    pub fn process(&mut self, records: &[Record], now: Instant) -> Stage1Output {
        let city = self.city.clone();
        let decoder = Decoder::new(&city);
        let mut out = Stage1Output::default();
        let mut consumed = [0u64; 4];
        for record in records {
            let Some(topic) = Topic::from_name(&record.topic) else { continue };
            let owned = self.ownership.owns(record.partition);
            consumed[topic as usize] += u64::from(owned);
            let decoded = decoder.decode(topic, &record.payload).map(|e| self.correct_clock(e));
            match decoded.and_then(|(e, clock)| Ok((self.admit(e, topic as u32, record.partition)?, clock))) {
                Ok((event, clock)) => {
                    if let Some(device) = clock.device {
                        self.state.clocks.record(device, clock.device_ts_ms, record.timestamp_ms);
                    }
                    // A device's time (a clock not yet calibrated, a calibrated one
                    // that jumped, a lot controller or bus unit minutes fast) must not
                    // drag its partition's watermark ahead and make everyone's next
                    // reads late: live, every partition is drained most of the time
                    // and the most advanced one sets the pace. An event counts for no
                    // more than its arrival time, the trusted clock (delivery only
                    // delays). Without arrival times device times are all there is.
                    let progress = record.timestamp_ms.map_or(event.ts_ms(), |arrival| event.ts_ms().min(arrival));
                    self.state.watermarks.observe(topic as u32, record.partition, progress, now);
                    let first = out.updates.len();
                    self.route(&city, event, clock, record, owned, &mut out);
                    let made = out.updates.len() - first;
                    out.origins.extend((0..made).map(|sub| Origin(topic as u8, record.partition, record.offset, sub as u16)));
                }
                Err(reject) if owned => {
                    *self.state.stats.rejected.entry((topic, reject.reason)).or_default() += 1;
                    out.dead_letters.push(DeadLetter { record: record.clone(), reject });
                }
                Err(_) => {}
            }
        }
        // Metrics once per batch and topic, never per event.
        for (topic, n) in Topic::ALL.into_iter().zip(consumed).filter(|(_, n)| *n > 0) {
            *self.state.stats.consumed.entry(topic).or_default() += n;
            metrics::counter!("egret_events_consumed_total", "topic" => topic.default_name()).increment(n);
        }
        for d in &out.dead_letters {
            if let Some(topic) = Topic::from_name(&d.record.topic) {
                metrics::counter!("egret_events_rejected_total", "topic" => topic.default_name(), "reason" => d.reject.reason.code()).increment(1);
            }
        }
        self.settle(now, out)
    }

    /// No input arrived: let idle partitions stop holding the watermark back.
    pub fn tick(&mut self, now: Instant) -> Stage1Output {
        self.settle(now, Stage1Output::default())
    }

    /// End of a finite input.
    pub fn finish(&mut self) -> Stage1Output {
        let mut out = Stage1Output { watermark_ms: self.state.watermarks.finish(), ..Default::default() };
        self.state.enforcer.release_held(i64::MAX, &mut out.tickets);
        let city = self.city.clone();
        self.state.enforcer.expire(&city, i64::MAX, &mut out.tickets);
        out
    }

    /// True when the window holding `ts_ms` is final at this watermark.
    fn is_final(&self, ts_ms: i64, watermark: i64) -> bool {
        end_of_window(ts_ms, self.config.window_ms).saturating_add(self.config.allowed_lateness_ms) <= watermark
    }

    /// Corrects a device's timestamp by its clock's estimated offset so far; returns the event and (device timestamp, remaining
    /// uncertainty). The event itself is recorded once it is admitted.
    fn correct_clock(&self, mut event: Decoded) -> (Decoded, DeviceTime) {
        let readers = self.city.readers.len();
        let (device, ts) = match &mut event {
            Decoded::PlateRead(r) => (r.reader.0 as usize, &mut r.ts_ms),
            Decoded::Camera(c) => (readers + c.camera as usize, &mut c.ts_ms),
            Decoded::BusGps(_) | Decoded::ParkingCount(_) => {
                let ts = event.ts_ms();
                return (event, DeviceTime { device: None, device_ts_ms: ts, uncertainty_ms: 0 });
            }
        };
        let device_ts_ms = *ts;
        let (corrected, uncertainty_ms) = self.state.clocks.correct(device, device_ts_ms);
        *ts = corrected;
        (event, DeviceTime { device: Some(device), device_ts_ms, uncertainty_ms })
    }

    /// Per-plate state older than this is forgotten: the sweep removes it, and
    /// until it runs, lookups act as if it had.
    fn plate_horizon_ms(&self) -> i64 {
        self.state.watermarks.current().saturating_sub(self.config.plate_ttl_ms)
    }

    /// Stream-clock checks: from the future, too late, or seen before. An event is
    /// judged by its own partition's progress, whose order is fixed, so a rerun
    /// admits exactly the same events however the partitions interleave.
    fn admit(&mut self, event: Decoded, source: u32, partition: u32) -> Result<Decoded, Reject> {
        let ts = event.ts_ms();
        // In a replay the topics are read at their own pace (a sparse one, such as
        // lot counts every 15 minutes, runs ahead of the plate reads): the newest
        // event is only a rough clock, so the bound is wider.
        let (reference, bound) = match self.config.clock {
            ClockMode::Wall => (Some(egret_model::time::now_ms()), self.config.max_future_ms),
            ClockMode::Event => {
                let newest = self.state.watermarks.newest_on(source, partition).or(self.state.newest_event_ms);
                (newest, self.config.max_future_ms.max(REPLAY_FUTURE_MS))
            }
        };
        if let Some(now) = reference
            && ts > now + bound
        {
            return Err(Reject::new(Reason::TimestampInFuture, format!("ts_ms {ts} is {} ms ahead of the clock", ts - now)));
        }
        let watermark = self.state.watermarks.for_partition(source, partition);
        if self.is_final(ts, watermark) {
            return Err(Reject::new(Reason::Late, format!("ts_ms {ts} is behind the final watermark {watermark}")));
        }
        let forget_before = watermark.saturating_sub(self.config.window_ms + self.config.allowed_lateness_ms);
        if !self.state.dedup.first_time(event.dedup_key(), ts, forget_before) {
            return Err(Reject::new(Reason::Duplicate, "event_id already seen from this device"));
        }
        self.state.newest_event_ms = Some(self.state.newest_event_ms.map_or(ts, |n| n.max(ts)));
        Ok(event)
    }

    /// `city` is `self.city`, passed in: a clone of the `Arc` per event cost an
    /// atomic increment and decrement each time. `owned`: the record's partition is
    /// this instance's, which decides for records without a plate; a plate's own
    /// state is kept by the owner of the plate (see `ownership`), and every instance
    /// keeps the state that spans partitions.
    fn route(&mut self, city: &CityModel, event: Decoded, clock: DeviceTime, record: &Record, owned: bool, out: &mut Stage1Output) {
        let read = match event {
            Decoded::PlateRead(read) => read,
            Decoded::ParkingCount(c) if owned => return out.updates.push(Update::Count { lot: c.lot, occupied: c.occupied, ts_ms: c.ts_ms }),
            // A camera event goes with its plate, as the plate's reads do (see
            // `ownership`); one without a plate, by partition.
            Decoded::Camera(c) if c.plate.as_ref().map_or(owned, |p| self.ownership.owns_plate(p)) => {
                if !trusted(self.state.clocks.calibration(city.readers.len() + c.camera as usize)) {
                    self.state.stats.excluded += 1;
                    return;
                }
                let horizon = self.plate_horizon_ms();
                let recent = c.plate.as_ref().and_then(|p| self.state.matcher.recent_since(p, horizon));
                self.state.enforcer.on_camera(city, &c, clock.device_ts_ms, record.partition, record.offset, recent, &mut out.tickets);
                return;
            }
            Decoded::BusGps(g) if owned => {
                let (bus_id, trip_id) = (g.bus_id, g.trip_id);
                let report = Update::BusReport { route: g.route, bus_id, trip_id, lat: g.lat, lon: g.lon, speed_kmh: g.speed_kmh, ts_ms: g.ts_ms };
                return out.updates.push(report);
            }
            // Another instance's lot, bus or camera event: nothing here spans partitions.
            Decoded::ParkingCount(_) | Decoded::Camera(_) | Decoded::BusGps(_) => return,
        };
        self.state.health.read(read.reader, read.ts_ms);
        if !trusted(self.state.clocks.calibration(read.reader.0 as usize)) {
            // A clock this far off cannot be corrected: its reads prove nothing.
            self.state.stats.excluded += u64::from(owned);
            return;
        }
        let mut read = read;
        let horizon = read.ts_ms.saturating_sub(self.config.plate_ttl_ms);
        // A misread is keyed by what was read: corrected, it belongs with the plate's
        // own reads, whichever partition it arrived on.
        let plate = self.state.tags.resolve(read.tag, read.reader.0, read.plate, read.ts_ms, horizon);
        read.plate = plate;
        let kept = Read {
            reader: read.reader,
            clock_delta_ms: (clock.device_ts_ms - read.ts_ms).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            ts_ms: read.ts_ms,
            offset: record.offset,
            partition: record.partition.min(u32::from(u16::MAX)) as u16,
            uncertainty_ms: clock.uncertainty_ms.clamp(0, i64::from(u16::MAX)) as u16,
            tag: read.tag,
        };
        let gate = city.gate(read.reader);
        if gate.is_none() {
            self.state.enforcer.observe_read(read.plate, read.class, &kept);
        }
        if !self.ownership.owns_plate(&read.plate) {
            return;
        }
        if let Some((lot, entering)) = gate {
            let horizon = self.plate_horizon_ms();
            seen_after_entering(&mut self.state.entered, horizon, read.plate, read.ts_ms, &[], &mut out.updates);
            self.state.enforcer.on_gate_read(city, read.plate, &kept, &mut out.tickets);
            return out.updates.push(Update::Gate { lot, entering, ts_ms: read.ts_ms });
        }
        // Judged by this partition's own progress (see `admit`): the global watermark
        // also expires plates, but when it does depends on how partitions interleave.
        let judged_by = self.state.watermarks.for_partition(Topic::PlateReads as u32, record.partition);
        self.traversals.clear();
        if !self.state.matcher.read(city, read.plate, read.class, kept, judged_by.saturating_sub(self.config.plate_ttl_ms), &mut self.traversals) {
            return;
        }

        // Out of the segment it entered as expected, or seen somewhere else.
        let horizon = self.plate_horizon_ms();
        seen_after_entering(&mut self.state.entered, horizon, read.plate, read.ts_ms, &self.traversals, &mut out.updates);
        let recent = self.state.matcher.recent(&read.plate).map_or(&[][..], |(_, reads)| reads);
        self.state.enforcer.on_read(city, read.plate, read.class, &kept, &self.traversals, recent, &mut out.tickets);
        // Buses dwell at stops: their times are not the traffic's. A bridged drive
        // over two segments says nothing exact about either one's speed.
        for t in self.traversals.iter().filter(|t| t.class != VehicleClass::Bus && t.via.is_none()) {
            // A late entry read completes a drive whose exit was read before: its
            // window may be final already, and stage 2 would refuse it or not
            // depending on how far the other partitions got. Decided here instead,
            // by this partition's progress, the same way on every run.
            if end_of_window(t.exit_ms, self.config.window_ms).saturating_add(self.config.allowed_lateness_ms) <= judged_by {
                self.state.stats.late_traversals += 1;
                continue;
            }
            self.state.stats.traversals += 1;
            out.updates.push(Update::Traversal { segment: t.segment.0, enter_ms: t.enter_ms, exit_ms: t.exit_ms });
            // The newest drive of this vehicle leads onto its only way on.
            if t.exit_ms == read.ts_ms
                && let Some(next) = city.continuation(t.segment)
            {
                out.updates.push(Update::Entered { segment: next.0, ts_ms: read.ts_ms });
                self.state.entered.insert(read.plate, (next.0, read.ts_ms));
            }
        }
    }

    fn settle(&mut self, now: Instant, mut out: Stage1Output) -> Stage1Output {
        for (source, partition) in self.drained.drain(..) {
            self.state.watermarks.mark_drained(source, partition);
        }
        let watermark = self.state.watermarks.advance(now);
        let horizon = self.plate_horizon_ms();
        if self.plate_sweep.advance(horizon) {
            self.state.matcher.expire(horizon);
            // Later than `resolve` forgets, by as late as an admitted read can be: the
            // moment this runs then changes no answer.
            self.state.tags.expire(horizon.saturating_sub(self.config.window_ms + self.config.allowed_lateness_ms));
            self.state.entered.retain(|_, (_, ts)| *ts >= horizon);
        }
        self.state.enforcer.release_held(watermark, &mut out.tickets);
        let city = self.city.clone();
        self.state.enforcer.expire(&city, watermark, &mut out.tickets);
        if watermark > i64::MIN && watermark >= self.state.health_reported_ms.saturating_add(HEALTH_EVERY_MS) {
            self.state.health_reported_ms = watermark;
            let clocks = &self.state.clocks;
            out.reader_health = Some(self.state.health.report(&city, watermark, |i| clocks.estimate(i)));
        }
        self.state.dedup.expire(watermark.saturating_sub(self.config.window_ms + self.config.allowed_lateness_ms));
        out.watermark_ms = watermark;
        out
    }
}
