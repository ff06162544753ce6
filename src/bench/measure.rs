//! What `egret bench` measures with: the process's CPU time and resident memory,
//! read from `/proc` (Linux; the workspace forbids `unsafe`, so no `getrusage`),
//! and latency histograms summarised as p50 / p99 / p99.9 / max.

use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// Linux reports `utime` and `stime` in USER_HZ ticks, which is 100 on every
/// architecture the kernel exposes to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) this process has used so far, every thread
/// included, those that have ended too.
pub fn process_cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// CPU seconds (user + system) used so far by process `pid` ("self" for this one).
pub fn cpu_seconds_of(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return f64::NAN };
    // The command name (field 2) is in parentheses and may hold spaces: count
    // fields from the last ')'. utime and stime are fields 14 and 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return f64::NAN };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // `rest` starts at field 3, so field n is at index n - 3.
    (ticks(14 - 3) + ticks(15 - 3)) / TICKS_PER_SECOND
}

/// A lock that a panicked holder does not poison: what the bench's tasks note
/// stays readable for the figures.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    egret_api::resident_set_bytes()
}

/// Wall and CPU time of a piece of work.
pub struct Stopwatch {
    wall: Instant,
    cpu: f64,
}

impl Stopwatch {
    pub fn start() -> Self {
        Stopwatch { wall: Instant::now(), cpu: process_cpu_seconds() }
    }

    /// (wall, CPU seconds) since `start`.
    pub fn read(&self) -> (Duration, f64) {
        (self.wall.elapsed(), process_cpu_seconds() - self.cpu)
    }
}

/// CPU time is counted in 10 ms ticks: under a tenth of a second of it a rate
/// could be off by more than 10%, and under one tick it would divide by zero.
pub const MIN_CPU_SECONDS: f64 = 0.1;

/// Events per CPU-second, or NaN when too little CPU was used to tell.
pub fn per_cpu_second(events: usize, cpu_s: f64) -> f64 {
    if cpu_s >= MIN_CPU_SECONDS { events as f64 / cpu_s } else { f64::NAN }
}

/// Latencies in microseconds, 1 µs to 10 min at 3 significant figures.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|e| panic!("histogram bounds are constants: {e}"))
}

/// `p50 / p99 / p99.9 / max` in milliseconds, with the sample count.
pub fn summary_ms(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".into();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "p50 {:.1} / p99 {:.1} / p99.9 {:.1} / max {:.1} ms (n={})",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    )
}

pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Repeated measurements of one figure: the median is the figure, the range
/// around it the noise a rerun should stay within.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Spread {
    /// `None` for no values; NaNs (a failed reading) are left out.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Spread { median, min: sorted[0], max: sorted[n - 1], runs: n })
    }

    /// The widest distance from the median, as a fraction of it.
    pub fn relative(&self) -> f64 {
        (self.max - self.median).max(self.median - self.min) / self.median.abs().max(f64::MIN_POSITIVE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work_and_rss_is_read() {
        let before = process_cpu_seconds();
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let used = process_cpu_seconds() - before;
        // 300 ms of spinning is at least 0.1 s of CPU, whatever else runs.
        assert!(used >= 0.1, "CPU seconds used: {used}");
        assert!(rss_bytes() > 1 << 20, "a running test has more than 1 MiB resident");
    }

    #[test]
    fn a_spread_is_the_median_and_the_widest_distance_from_it() {
        let s = Spread::of(&[110.0, 90.0, 100.0]).expect("values");
        assert_eq!((s.median, s.min, s.max, s.runs), (100.0, 90.0, 110.0, 3));
        assert!((s.relative() - 0.10).abs() < 1e-12);
        let even = Spread::of(&[4.0, 1.0, 2.0, f64::NAN, 3.0]).expect("values");
        assert_eq!((even.median, even.runs), (2.5, 4), "NaN left out, even count averages the middle two");
        assert!((even.relative() - 0.6).abs() < 1e-12, "1.5 from 2.5");
        assert_eq!(Spread::of(&[f64::NAN]), None);
    }

    /// A run of 1,000 events used no CPU tick at all, and the bench called that
    /// 18 quintillion events per CPU-second, target met.
    #[test]
    fn a_rate_over_too_little_cpu_time_is_no_rate() {
        assert!(per_cpu_second(1_000, 0.0).is_nan());
        assert!(per_cpu_second(1_000, MIN_CPU_SECONDS / 2.0).is_nan());
        assert_eq!(per_cpu_second(1_000_000, 4.0), 250_000.0);
        assert_eq!(Spread::of(&[per_cpu_second(1_000, 0.01)]), None, "so (a) reports no median");
    }

    #[test]
    fn summaries_are_in_milliseconds() {
        let mut h = latency_histogram();
        for us in [1_000u64, 2_000, 3_000, 100_000] {
            h.record(us).expect("in range");
        }
        assert_eq!(quantile_ms(&h, 0.5), 2.0);
        assert!(summary_ms(&h).contains("max 100.0 ms (n=4)"), "{}", summary_ms(&h));
    }
}
