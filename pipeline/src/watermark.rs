//! Event-time watermarks per input partition.
//!
//! A partition's watermark is the largest event time it has delivered minus the
//! bounded out-of-orderness. The pipeline's watermark is the smallest over partitions
//! that are active. Where the source says exactly when a partition has nothing
//! pending (end of partition; in a backlog, its next record arrived after the last
//! one released), that is what idle means: a partition with records due holds the
//! others back however long its consumer takes. Where it cannot say, a
//! partition silent for `idle_timeout` of processing time stops holding the others
//! back (an idle reader at night must not stall the city). Either rejoins as soon
//! as it delivers again.

use egret_model::FastMap;
use std::time::{Duration, Instant};

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy)]
struct PartitionClock {
    max_event_ms: i64,
    /// Processing time does not survive a restart: a restored partition counts as
    /// just heard from.
    #[serde(skip, default = "Instant::now")]
    last_seen: Instant,
    /// The source has nothing pending for it.
    drained: bool,
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct Watermarks {
    out_of_orderness_ms: i64,
    idle_timeout: Duration,
    partitions: FastMap<(u32, u32), PartitionClock>,
    /// Never moves backwards, whatever joins or leaves.
    current: i64,
    /// The source says exactly which partitions are drained: silence is not idleness.
    idle_reported: bool,
}

impl Watermarks {
    pub fn new(out_of_orderness_ms: i64, idle_timeout: Duration) -> Self {
        Watermarks { out_of_orderness_ms, idle_timeout, partitions: FastMap::default(), current: i64::MIN, idle_reported: false }
    }

    /// Notes an event time seen on a partition (`source` tells topics apart).
    pub fn observe(&mut self, source: u32, partition: u32, event_ms: i64, now: Instant) {
        let clock = self.partitions.entry((source, partition)).or_insert(PartitionClock { max_event_ms: event_ms, last_seen: now, drained: false });
        clock.max_event_ms = clock.max_event_ms.max(event_ms);
        clock.last_seen = now;
        clock.drained = false;
    }

    /// The partitions this instance now owns: new ones hold the watermark until they
    /// deliver or drain; ones no longer owned stop counting.
    pub fn set_assignment(&mut self, owned: &[(u32, u32)], now: Instant) {
        self.partitions.retain(|key, _| owned.contains(key));
        for key in owned {
            self.partitions.entry(*key).or_insert(PartitionClock { max_event_ms: i64::MIN, last_seen: now, drained: false });
        }
    }

    /// The source reports exactly which partitions are drained (see `Source::reports_idle`).
    pub fn set_idle_reported(&mut self, reported: bool) {
        self.idle_reported = reported;
    }

    /// The source reports nothing pending on this partition: it is idle until it
    /// delivers again.
    pub fn mark_drained(&mut self, source: u32, partition: u32) {
        if let Some(clock) = self.partitions.get_mut(&(source, partition)) {
            clock.drained = true;
        }
    }

    /// Recomputes and returns the watermark as of processing time `now`.
    pub fn advance(&mut self, now: Instant) -> i64 {
        let live: Vec<&PartitionClock> =
            self.partitions.values().filter(|c| if self.idle_reported { !c.drained } else { now.saturating_duration_since(c.last_seen) < self.idle_timeout }).collect();
        // Partitions with a backlog set the pace; a drained one must not hold them back.
        let busy = live.iter().filter(|c| !c.drained).map(|c| c.max_event_ms).min();
        // All caught up (live operation): the slowest live partition, so one read from
        // a skewed clock on one partition cannot drag the watermark ahead.
        let caught_up = live.iter().map(|c| c.max_event_ms).min();
        // Everything silent for a while: the most advanced partition sets the pace.
        let frontier = busy.or(caught_up).or_else(|| self.partitions.values().map(|c| c.max_event_ms).max());
        if let Some(f) = frontier.filter(|f| *f > i64::MIN) {
            self.current = self.current.max(f - self.out_of_orderness_ms);
        }
        self.current
    }

    pub fn current(&self) -> i64 {
        self.current
    }

    /// The newest event time a partition has delivered, if any.
    pub fn newest_on(&self, source: u32, partition: u32) -> Option<i64> {
        self.partitions.get(&(source, partition)).map(|c| c.max_event_ms).filter(|t| *t > i64::MIN)
    }

    /// The watermark a partition's own events are judged by: its own progress, which
    /// depends only on its own (fixed) order, not on how far the other partitions
    /// happen to have been read. Never behind the pipeline's, which is the slowest
    /// live partition's: whatever that would refuse, this refuses too.
    pub fn for_partition(&self, source: u32, partition: u32) -> i64 {
        let own = self.newest_on(source, partition).map_or(i64::MIN, |t| t.saturating_sub(self.out_of_orderness_ms));
        own.max(self.current)
    }

    /// Jumps past everything (end of a finite input): all windows may close.
    pub fn finish(&mut self) -> i64 {
        self.current = i64::MAX;
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowest_active_partition_holds_the_watermark() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(5_000, Duration::from_secs(10));
        w.observe(0, 0, 100_000, t0);
        w.observe(0, 1, 60_000, t0);
        assert_eq!(w.advance(t0), 55_000);
        w.observe(0, 1, 50_000, t0);
        assert_eq!(w.advance(t0), 55_000, "an older event does not move it back");
    }

    #[test]
    fn an_idle_partition_stops_holding_back_and_rejoins() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(0, Duration::from_secs(10));
        w.observe(0, 0, 100_000, t0);
        w.observe(0, 1, 10_000, t0);
        assert_eq!(w.advance(t0), 10_000);
        let later = t0 + Duration::from_secs(11);
        w.observe(0, 0, 120_000, later);
        assert_eq!(w.advance(later), 120_000, "partition 1 went idle");
        w.observe(0, 1, 30_000, later);
        assert_eq!(w.advance(later), 120_000, "monotonic when it rejoins behind");
    }

    #[test]
    fn an_assigned_partition_holds_the_watermark_before_its_first_event() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(0, Duration::from_secs(10));
        w.set_assignment(&[(0, 0), (0, 1)], t0);
        w.observe(0, 0, 100_000, t0);
        assert_eq!(w.advance(t0), i64::MIN, "partition 1 has not delivered yet");
        w.mark_drained(0, 1);
        assert_eq!(w.advance(t0), 100_000);
        w.set_assignment(&[(0, 0)], t0);
        w.observe(0, 0, 150_000, t0);
        assert_eq!(w.advance(t0), 150_000, "a revoked partition no longer counts");
    }

    #[test]
    fn one_skewed_read_does_not_drag_a_caught_up_stream_ahead() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(5_000, Duration::from_secs(10));
        w.observe(0, 0, 100_000, t0);
        w.observe(0, 1, 100_500 + 4 * 60_000, t0); // a reader clock four minutes fast
        w.mark_drained(0, 0);
        w.mark_drained(0, 1);
        assert_eq!(w.advance(t0), 95_000);
    }

    #[test]
    fn a_drained_partition_is_idle_at_once() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(0, Duration::from_secs(10));
        w.observe(0, 0, 100_000, t0);
        w.observe(1, 0, 10_000, t0);
        w.mark_drained(1, 0);
        assert_eq!(w.advance(t0), 100_000);
        w.observe(1, 0, 20_000, t0);
        w.observe(0, 0, 130_000, t0);
        assert_eq!(w.advance(t0), 100_000, "it holds the watermark again once it delivers");
    }
}
