//! When and how fast people drive: the time-of-day demand profile and the congestion
//! field that sets each segment's true speed minute by minute. Both are smooth,
//! deterministic functions of time, so any instant can be asked about directly.

use egret_model::city::{RoadClass, Segment};
use egret_model::time::local_minute_of_day;
use rand::Rng;
use std::f64::consts::PI;

/// Rush-hour intensity in 0..=1: peaks around 08:00 and 18:00 local time.
pub fn peak_intensity(ts_ms: i64, tz_offset_min: i32) -> f64 {
    let m = f64::from(local_minute_of_day(ts_ms, tz_offset_min));
    let bump = |centre: f64, width: f64| (-((m - centre) / width).powi(2) / 2.0).exp();
    (bump(8.0 * 60.0, 45.0) + bump(18.0 * 60.0, 55.0)).min(1.0)
}

/// Trip starts relative to the configured rate: low at night, highest at the peaks.
pub fn trip_rate_factor(ts_ms: i64, tz_offset_min: i32) -> f64 {
    let m = f64::from(local_minute_of_day(ts_ms, tz_offset_min));
    let daytime = if (6.0 * 60.0..23.0 * 60.0).contains(&m) { 0.45 } else { 0.1 };
    daytime + 0.55 * peak_intensity(ts_ms, tz_offset_min)
}

/// How strongly a road class slows down in the rush hour.
fn sensitivity(s: &Segment) -> f64 {
    let base = match s.road_class {
        RoadClass::Expressway => 0.25,
        RoadClass::Bridge => 0.5,
        RoadClass::Tunnel => 0.4,
        RoadClass::Brt => 0.15,
        RoadClass::Arterial => 0.45,
        RoadClass::Urban => 0.4,
    };
    if s.on_island { base * 1.2 } else { base }
}

/// The true traffic speed on a segment at an instant, in km/h.
pub fn segment_speed_kmh(s: &Segment, segment_index: u32, ts_ms: i64, tz_offset_min: i32) -> f64 {
    let phase = f64::from(segment_index) * 2.399;
    let wave = (2.0 * PI * ts_ms as f64 / (23.0 * 60_000.0) + phase).sin();
    let factor = (1.0 - sensitivity(s) * peak_intensity(ts_ms, tz_offset_min)) * (1.0 + 0.06 * wave);
    (s.free_flow_kmh * factor).max(8.0)
}

/// A Poisson-distributed count with the given mean (Knuth's method; means here are small).
pub fn poisson<R: Rng>(rng: &mut R, mean: f64) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > 30.0 {
        // Normal approximation keeps large means cheap.
        let u: f64 = rng.random::<f64>().max(1e-12);
        let v: f64 = rng.random();
        let z = (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos();
        return (mean + z * mean.sqrt()).round().max(0.0) as u32;
    }
    let limit = (-mean).exp();
    let mut k = 0;
    let mut p: f64 = rng.random();
    while p > limit {
        k += 1;
        p *= rng.random::<f64>();
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const EIGHT_AM_CST: i64 = 1_795_824_000_000; // 2026-11-28T00:00Z

    #[test]
    fn rush_hour_is_busier_and_slower_than_night() {
        let night = EIGHT_AM_CST - 6 * 3_600_000;
        assert!(peak_intensity(EIGHT_AM_CST, 480) > 0.95);
        assert!(peak_intensity(night, 480) < 0.01);
        assert!(trip_rate_factor(EIGHT_AM_CST, 480) > 3.0 * trip_rate_factor(night, 480));
    }

    #[test]
    fn poisson_mean_is_about_right() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for mean in [0.5, 4.0, 50.0] {
            let n = 20_000;
            let total: u32 = (0..n).map(|_| poisson(&mut rng, mean)).sum();
            let got = f64::from(total) / f64::from(n);
            assert!((got - mean).abs() < mean * 0.05 + 0.02, "mean {mean} got {got}");
        }
    }
}
