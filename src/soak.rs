//! `egret soak`: is memory bounded? Simulated noisy traffic at a steady rate (20,000
//! events/s by default) through the embedded log into the whole pipeline and live
//! state, in this process, for a long time (30 minutes); the resident set size is
//! sampled as it goes and printed as a table. Every piece of state has an expiry
//! (plates after their TTL, windows once final, duplicates' ids after the
//! lateness, live lists at their caps), so after a warm-up RSS must stay flat: the
//! verdict is the spread of the samples after warm-up, against 10%. The log's
//! backlog (records appended, not yet committed) is printed beside RSS: a pipeline
//! that falls behind fills the bounded log, and that is memory too.

use crate::bench::measure;
use crate::drive::{self, DriveOptions, Pace};
use crate::serve;
use egret_ingest::embedded::EmbeddedLog;
use egret_ingest::memory::MemorySink;
use egret_model::{CityModel, Topic};
use egret_pipeline::runner::Outputs;
use egret_pipeline::{ClockMode, LiveState, Pipeline, PipelineConfig};
use egret_simulator::{Noise, SimConfig, Simulator};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub rate: f64,
    pub duration: Duration,
    pub sample_every: Duration,
    pub warmup: Duration,
    pub demand: f64,
    pub seed: u64,
}

/// The longest retention in event time: the live history of every segment.
const HISTORY_HOURS: f64 = (egret_pipeline::live::HISTORY_PER_SEGMENT / 60) as f64;

/// The flatness target of targets.md / issue 7.
const FLAT_WITHIN: f64 = 0.10;

pub async fn run(city: Arc<CityModel>, pipeline: PipelineConfig, options: &SoakOptions) -> anyhow::Result<bool> {
    let live = Arc::new(LiveState::new(city.clone()));
    let log = EmbeddedLog::new(4, 50_000);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let topics = Topic::default_names();
    let source = log.subscribe(&topics, Duration::from_millis(200));
    let pipe = {
        let (live, stop, city) = (live.clone(), stop.clone(), city.clone());
        let pipeline = Pipeline::new(city, PipelineConfig { clock: ClockMode::Event, ..pipeline });
        tokio::spawn(async move {
            let (dead_letters, derived) = (MemorySink::new(1_000), MemorySink::new(0));
            serve::run_pipeline(source, Outputs { dead_letters: &dead_letters, derived: &derived }, pipeline, &live, stop).await.map(|(_, p, _)| p)
        })
    };
    // Simulated time runs as fast as the rate allows; long enough never to run out.
    let start_ms = 1_795_995_900_000;
    let config = SimConfig { demand_per_min: options.demand, noise: Noise::noisy(), ..SimConfig::clean(options.seed, start_ms, 30 * 24 * 3_600_000) };
    let sent = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (log, sent, rate) = (log.clone(), sent.clone(), options.rate);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut sim = Simulator::new(city, config);
            let counting = CountingSink { inner: &log, sent: &sent };
            let options = DriveOptions { pace: Pace::AsFastAsPossible, realtime_from_ms: i64::MIN, max_rate: Some(rate), progress: false };
            tokio::select! {
                r = drive::drive(&mut sim, &counting, options, |_| {}) => r.map(|_| ()),
                _ = stop.wait_for(|s| *s) => Ok(()),
            }
        })
    };
    println!("soak: {} events/s for {:?}, RSS every {:?}, warm-up {:?}", options.rate, options.duration, options.sample_every, options.warmup);
    println!("| t (s) | events sent | events/s since last | simulated hours | RSS (MiB) | live violations | log backlog |");
    println!("|---|---|---|---|---|---|---|");
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut last = (Duration::ZERO, 0u64);
    let mut warned = false;
    while started.elapsed() < options.duration {
        tokio::time::sleep(options.sample_every.min(options.duration.saturating_sub(started.elapsed()))).await;
        anyhow::ensure!(!pipe.is_finished() && !feeder.is_finished(), "the pipeline or the feeder stopped during the soak");
        let (t, n, rss) = (started.elapsed(), sent.load(Ordering::Relaxed), measure::rss_bytes());
        let rate = (n - last.1) as f64 / (t - last.0).as_secs_f64().max(1e-9);
        let simulated_h = live.snapshot().as_of_ms.saturating_sub(start_ms).max(0) as f64 / 3_600_000.0;
        println!(
            "| {:.0} | {n} | {rate:.0} | {simulated_h:.1} | {:.1} | {} | {} |",
            t.as_secs_f64(),
            rss as f64 / 1048576.0,
            // Counted, not copied: a copy of 100,000 tickets under the lock every
            // sample would stall the pipeline and show up in RSS itself.
            live.violation_count(),
            log.backlog()
        );
        samples.push((t, rss, rate));
        if t >= options.warmup && !warned && simulated_h < HISTORY_HOURS {
            warned = true;
            println!("soak: after the warm-up only {simulated_h:.1} simulated hours have passed: the history ({HISTORY_HOURS} h per segment) is still filling, so RSS still grows by design; use a longer --warmup or a lower --demand (simulated time then runs faster)");
        }
        last = (t, n);
    }
    // The feeder first: closing the log under it would fail its send in flight
    // ("the log is closed"), and the verdict would never be printed.
    let _ = stop_tx.send(true);
    feeder.await??;
    log.close();
    pipe.await??;
    Ok(verdict(&samples, options))
}

/// Flat within 10% after warm-up, at the rate asked.
fn verdict(samples: &[(Duration, u64, f64)], options: &SoakOptions) -> bool {
    let after: Vec<&(Duration, u64, f64)> = samples.iter().filter(|(t, _, _)| *t >= options.warmup).collect();
    let (Some(min), Some(max)) = (after.iter().map(|s| s.1).min(), after.iter().map(|s| s.1).max()) else {
        println!("soak: no sample after the warm-up; run longer than --warmup");
        return false;
    };
    let spread = (max - min) as f64 / min as f64;
    let mean_rate = after.iter().map(|s| s.2).sum::<f64>() / after.len() as f64;
    let flat = spread <= FLAT_WITHIN;
    let kept_up = mean_rate >= 0.95 * options.rate;
    println!(
        "soak: after warm-up RSS {:.1}–{:.1} MiB, spread {:.1}% (target ≤ {:.0}%): {}; mean rate {mean_rate:.0} events/s (asked {}): {}",
        min as f64 / 1048576.0,
        max as f64 / 1048576.0,
        spread * 100.0,
        FLAT_WITHIN * 100.0,
        if flat { "flat" } else { "NOT FLAT" },
        options.rate,
        if kept_up { "kept up" } else { "FELL BEHIND" }
    );
    flat && kept_up
}

/// Passes records on and counts them.
struct CountingSink<'a> {
    inner: &'a EmbeddedLog,
    sent: &'a AtomicU64,
}

impl egret_ingest::Sink for CountingSink<'_> {
    async fn send(&self, records: Vec<egret_ingest::OutRecord>) -> Result<(), egret_ingest::IngestError> {
        let n = records.len() as u64;
        self.inner.send(records).await?;
        self.sent.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}
