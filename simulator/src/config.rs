//! Scenario settings: seed, time span, demand and the noise knobs of targets.md.

use serde::{Deserialize, Serialize};

/// Device and delivery noise, applied to emitted events only (never to the truth).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noise {
    /// Fraction of plate reads and camera triggers never sent.
    pub missed: f64,
    /// Fraction of events sent twice with the same `event_id`.
    pub duplicate: f64,
    /// Fraction of plates read with one character wrong.
    pub misread: f64,
    /// Each reader's clock is off by a fixed amount up to ± this.
    pub max_skew_ms: i64,
    /// Fraction of events delivered late, by up to `max_late_ms`.
    pub late: f64,
    pub max_late_ms: i64,
    /// Fraction of messages replaced by malformed bytes.
    pub malformed: f64,
    /// Every message takes up to this long from device to collector.
    #[serde(default)]
    pub max_latency_ms: i64,
}

impl Noise {
    pub fn clean() -> Noise {
        Noise { missed: 0.0, duplicate: 0.0, misread: 0.0, max_skew_ms: 0, late: 0.0, max_late_ms: 0, malformed: 0.0, max_latency_ms: 0 }
    }

    /// The noisy scenario of targets.md, footnote 1.
    pub fn noisy() -> Noise {
        Noise { missed: 0.05, duplicate: 0.01, misread: 0.01, max_skew_ms: 2_000, late: 0.10, max_late_ms: 60_000, malformed: 0.001, max_latency_ms: 300 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    pub seed: u64,
    /// First instant whose events are emitted (epoch ms).
    pub start_ms: i64,
    pub duration_ms: i64,
    /// Private-vehicle trip starts per minute when the demand profile is 1.0.
    pub demand_per_min: f64,
    /// Share of car and taxi trips that end in a parking lot.
    pub parking_share: f64,
    /// How often lot controllers send an occupancy snapshot.
    pub parking_snapshot_every_ms: i64,
    /// Bus GPS report interval.
    pub gps_every_ms: i64,
    pub noise: Noise,
    /// Add the standard scripted events (see `scenario::Script::standard`).
    #[serde(default)]
    pub scripted: bool,
}

impl SimConfig {
    pub fn clean(seed: u64, start_ms: i64, duration_ms: i64) -> SimConfig {
        SimConfig {
            seed,
            start_ms,
            duration_ms,
            demand_per_min: 400.0,
            parking_share: 0.2,
            parking_snapshot_every_ms: 15 * 60_000,
            gps_every_ms: 15_000,
            noise: Noise::clean(),
            scripted: false,
        }
    }

    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.duration_ms
    }
}
