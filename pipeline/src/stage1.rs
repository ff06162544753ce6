//! Stage 1, keyed by plate: decode → validate against the stream clock →
//! de-duplicate → dead-letter the rejects → pair plate reads into traversals, and
//! route parking gate reads and lot counts. Its output is keyed for stage 2.

use crate::dedup::Dedup;
use crate::matcher::{Matcher, Traversal};
use crate::pipeline::{ClockMode, DeadLetter, PipelineConfig, Stats};
use crate::update::Update;
use crate::watermark::Watermarks;
use crate::window::window_start;
use egret_ingest::Record;
use egret_model::decode::{Decoded, Decoder};
use egret_model::reason::{Reason, Reject};
use egret_model::{CityModel, Topic, VehicleClass};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What one batch of stage 1 produced.
#[derive(Debug, Default)]
pub struct Stage1Output {
    pub updates: Vec<Update>,
    pub dead_letters: Vec<DeadLetter>,
    /// Stage 1's watermark after the batch: no later update is for a window that is
    /// final at this watermark.
    pub watermark_ms: i64,
}

pub struct Stage1 {
    city: Arc<CityModel>,
    config: PipelineConfig,
    watermarks: Watermarks,
    matcher: Matcher,
    dedup: Dedup,
    newest_event_ms: Option<i64>,
    stats: Stats,
    traversals: Vec<Traversal>,
    drained: Vec<(u32, u32)>,
}

fn wall_clock_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Stage1 {
    pub fn new(city: Arc<CityModel>, config: PipelineConfig) -> Self {
        Stage1 {
            watermarks: Watermarks::new(config.out_of_orderness_ms, Duration::from_millis(config.idle_timeout_ms)),
            matcher: Matcher::default(),
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

    pub fn plates_in_flight(&self) -> usize {
        self.matcher.plates_in_flight()
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

    pub fn process(&mut self, records: &[Record], now: Instant) -> Stage1Output {
        let city = self.city.clone();
        let decoder = Decoder::new(&city);
        let mut out = Stage1Output::default();
        let mut consumed = [0u64; 4];
        for record in records {
            let Some(topic) = Topic::from_name(&record.topic) else { continue };
            consumed[topic as usize] += 1;
            match decoder.decode(topic, &record.payload).and_then(|e| self.admit(e)) {
                Ok(event) => {
                    self.watermarks.observe(topic as u32, record.partition, event.ts_ms(), now);
                    self.route(event, &mut out.updates);
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

    /// No input arrived: let idle partitions stop holding the watermark back.
    pub fn tick(&mut self, now: Instant) -> Stage1Output {
        self.settle(now, Stage1Output::default())
    }

    /// End of a finite input.
    pub fn finish(&mut self) -> Stage1Output {
        Stage1Output { watermark_ms: self.watermarks.finish(), ..Default::default() }
    }

    /// True when the window holding `ts_ms` is final at this watermark.
    fn is_final(&self, ts_ms: i64, watermark: i64) -> bool {
        let end = window_start(ts_ms, self.config.window_ms).saturating_add(self.config.window_ms);
        end.saturating_add(self.config.allowed_lateness_ms) <= watermark
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
        if self.is_final(ts, watermark) {
            return Err(Reject::new(Reason::Late, format!("ts_ms {ts} is behind the final watermark {watermark}")));
        }
        if !self.dedup.first_time(event.dedup_key(), ts) {
            return Err(Reject::new(Reason::Duplicate, "event_id already seen from this device"));
        }
        self.newest_event_ms = Some(self.newest_event_ms.map_or(ts, |n| n.max(ts)));
        Ok(event)
    }

    fn route(&mut self, event: Decoded, updates: &mut Vec<Update>) {
        let read = match event {
            Decoded::PlateRead(read) => read,
            Decoded::ParkingCount(c) => return updates.push(Update::Count { lot: c.lot, occupied: c.occupied, ts_ms: c.ts_ms }),
            Decoded::BusGps(_) | Decoded::Camera(_) => return,
        };
        if let Some((lot, entering)) = self.city.gate(read.reader) {
            return updates.push(Update::Gate { lot, entering, ts_ms: read.ts_ms });
        }
        self.traversals.clear();
        self.matcher.read(&self.city, read.plate, read.class, read.reader, read.ts_ms, &mut self.traversals);
        // Buses dwell at stops: their times are not the traffic's.
        for t in self.traversals.iter().filter(|t| t.class != VehicleClass::Bus) {
            self.stats.traversals += 1;
            updates.push(Update::Traversal { segment: t.segment.0, enter_ms: t.enter_ms, exit_ms: t.exit_ms });
        }
    }

    fn settle(&mut self, now: Instant, mut out: Stage1Output) -> Stage1Output {
        for (source, partition) in self.drained.drain(..) {
            self.watermarks.mark_drained(source, partition);
        }
        let watermark = self.watermarks.advance(now);
        self.matcher.expire(watermark.saturating_sub(self.config.plate_ttl_ms));
        self.dedup.expire(watermark.saturating_sub(self.config.window_ms + self.config.allowed_lateness_ms));
        out.watermark_ms = watermark;
        out
    }
}
