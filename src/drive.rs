//! Feeding the simulator's output into a sink at a chosen pace: as fast as possible,
//! in real time, or accelerated ×N. Ground truth goes to a callback as it is made.

use egret_ingest::{IngestError, OutRecord, Sink};
use egret_simulator::{Emitted, Simulator, TruthRecord};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// How simulated time relates to wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    AsFastAsPossible,
    /// Simulated seconds per wall second (1.0 is real time).
    Accelerated(f64),
}

impl std::str::FromStr for Pace {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fast" => Ok(Pace::AsFastAsPossible),
            "realtime" => Ok(Pace::Accelerated(1.0)),
            _ => s
                .strip_prefix('x')
                .and_then(|f| f.parse::<f64>().ok())
                .filter(|f| *f > 0.0)
                .map(Pace::Accelerated)
                .ok_or_else(|| format!("{s:?}: use fast, realtime or xN (e.g. x10)")),
        }
    }
}

/// The simulated delivery time becomes the record's timestamp: the collector's clock.
pub fn to_record(e: Emitted) -> OutRecord {
    OutRecord { timestamp_ms: Some(e.deliver_ms), ..OutRecord::new(e.topic.default_name(), Some(e.key.into_bytes().into()), e.payload) }
}

/// How to feed a simulation into a sink.
#[derive(Debug, Clone, Copy)]
pub struct DriveOptions {
    pub pace: Pace,
    /// Simulated time before this instant is replayed as fast as possible (pre-roll).
    pub realtime_from_ms: i64,
    /// At most this many events per wall second, whatever the pace; after the sink
    /// has held the drive back, it goes on at this rate without bursting to catch up.
    pub max_rate: Option<f64>,
    pub progress: bool,
}

impl DriveOptions {
    pub fn fast() -> Self {
        DriveOptions { pace: Pace::AsFastAsPossible, realtime_from_ms: i64::MIN, max_rate: None, progress: false }
    }
}

/// How far behind its rate the drive may fall and still catch up (see `max_rate`).
const MAX_CATCH_UP: Duration = Duration::from_secs(1);

/// Runs the simulation to its end into `sink`, handing ground truth to `on_truth`.
pub async fn drive<S: Sink>(
    sim: &mut Simulator,
    sink: &S,
    options: DriveOptions,
    mut on_truth: impl FnMut(Vec<TruthRecord>),
) -> Result<u64, IngestError> {
    let DriveOptions { pace, realtime_from_ms, max_rate, progress } = options;
    // Where the rate is counted from; moved up after the sink has held us back.
    let (mut rate_start, mut sent_at_rate_start) = (Instant::now(), 0u64);
    const STEP_MS: i64 = 1_000;
    let (start, end) = (sim.config().start_ms, sim.config().end_ms());
    let bar = progress.then(|| {
        let bar = ProgressBar::new(((end - start) / 1000).max(0) as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} simulated {pos}/{len} s [{bar:30}] {per_sec} eta {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut paced_wall_start: Option<Instant> = None;
    let paced_from = realtime_from_ms.max(start);
    let mut sent = 0u64;
    let mut t = start;
    while t < end {
        t = (t + STEP_MS).min(end);
        let records: Vec<OutRecord> = sim.advance_to(t).into_iter().map(to_record).collect();
        sent += records.len() as u64;
        sink.send(records).await?;
        on_truth(sim.take_truth());
        if let (Pace::Accelerated(factor), true) = (pace, t > paced_from) {
            let since = *paced_wall_start.get_or_insert_with(Instant::now);
            let due = since + Duration::from_secs_f64((t - paced_from) as f64 / 1000.0 / factor);
            tokio::time::sleep_until(due.into()).await;
        }
        if let Some(rate) = max_rate {
            let due = rate_start + Duration::from_secs_f64((sent - sent_at_rate_start) as f64 / rate);
            let now = Instant::now();
            if now > due + MAX_CATCH_UP {
                // Held back (a full log pushed back): go on at the rate instead of
                // bursting above it to make up what was lost, which would then measure
                // the burst, not the rate.
                (rate_start, sent_at_rate_start) = (now, sent);
            } else {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        if let Some(bar) = &bar {
            bar.set_position(((t - start) / 1000) as u64);
            bar.set_message(format!("{sent} events"));
        }
    }
    let rest: Vec<OutRecord> = sim.drain_all().into_iter().map(to_record).collect();
    sent += rest.len() as u64;
    sink.send(rest).await?;
    on_truth(sim.take_truth());
    if let Some(bar) = bar {
        bar.finish_with_message(format!("{sent} events"));
    }
    Ok(sent)
}
