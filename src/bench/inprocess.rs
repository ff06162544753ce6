//! In-process figures: the whole pipeline from JSON bytes (decode, validate,
//! match, window, rules, live state) in events per CPU-second, beside a bare
//! `serde_json::Value` parse of the same bytes in the same run; and the memory a
//! plate in flight costs, with millions of them waiting for an exit read.

use super::measure::{Stopwatch, per_cpu_second, rss_bytes};
use super::workload::{self, START_MS};
use egret_ingest::Record;
use egret_model::CityModel;
use egret_pipeline::{ClockMode, LiveState, Pipeline, PipelineConfig};
use std::sync::Arc;
use std::time::Instant;

/// Records per `Pipeline::process` call, as a Kafka poll loop would hand them over.
pub const BATCH: usize = 4096;

pub struct Throughput {
    pub events: usize,
    pub cpu_s: f64,
    pub wall_s: f64,
    /// NaN when the run used too little CPU to tell (`measure::MIN_CPU_SECONDS`).
    pub events_per_cpu_s: f64,
    /// `serde_json::Value` parses of the same bytes per CPU-second.
    pub baseline_per_cpu_s: f64,
    pub violations: usize,
    pub windows: usize,
    /// Plates in flight by how many reads each holds, at the end of the input.
    pub plates_by_reads_held: [usize; egret_pipeline::matcher::RECENT_READS],
    /// The live state the run left, for the SQL figure.
    pub live: Arc<LiveState>,
}

fn event_clock(pipeline: PipelineConfig) -> PipelineConfig {
    PipelineConfig { clock: ClockMode::Event, ..pipeline }
}

/// Runs `records` through a fresh pipeline and live state, batch by batch.
pub fn throughput(city: &Arc<CityModel>, pipeline: PipelineConfig, records: &[Record]) -> Throughput {
    let baseline = {
        let watch = Stopwatch::start();
        let parsed = records.iter().filter(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).is_ok()).count();
        let (_, cpu) = watch.read();
        std::hint::black_box(parsed);
        per_cpu_second(records.len(), cpu)
    };
    let live = Arc::new(LiveState::new(city.clone()));
    let mut pipeline = Pipeline::new(city.clone(), event_clock(pipeline));
    let (mut violations, mut windows) = (0, 0);
    let watch = Stopwatch::start();
    for batch in records.chunks(BATCH) {
        let out = pipeline.process(batch, Instant::now());
        violations += out.tickets.violations.len();
        windows += out.windows.len();
        live.apply(&out);
    }
    let plates_by_reads_held = pipeline.plates_by_reads_held();
    let out = pipeline.finish();
    violations += out.tickets.violations.len();
    windows += out.windows.len();
    live.apply(&out);
    let (wall, cpu) = watch.read();
    Throughput {
        events: records.len(),
        cpu_s: cpu,
        wall_s: wall.as_secs_f64(),
        events_per_cpu_s: per_cpu_second(records.len(), cpu),
        baseline_per_cpu_s: baseline,
        violations,
        windows,
        plates_by_reads_held,
        live,
    }
}

pub struct PlateMemory {
    pub in_flight: usize,
    pub rss_before: u64,
    pub rss_after: u64,
}

impl PlateMemory {
    pub fn bytes_per_plate(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.in_flight.max(1) as f64
    }
}

/// Reads of `plates` distinct plates, none of which leaves the network, over
/// five minutes of event time; the state they hold is measured as resident memory.
pub fn plates_in_flight(city: &Arc<CityModel>, pipeline: PipelineConfig, plates: u64) -> PlateMemory {
    const SLICE: u64 = 65_536;
    let span_ms = 5 * 60_000;
    let live = LiveState::new(city.clone());
    let mut pipeline = Pipeline::new(city.clone(), event_clock(pipeline));
    let rss_before = rss_bytes();
    let mut from = 0;
    while from < plates {
        let to = (from + SLICE).min(plates);
        let slice = workload::plate_flood(city, from..to, plates, START_MS, span_ms);
        for batch in slice.chunks(BATCH) {
            live.apply(&pipeline.process(batch, Instant::now()));
        }
        from = to;
    }
    PlateMemory { in_flight: pipeline.plates_in_flight(), rss_before, rss_after: rss_bytes() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_pipeline::{BatchOutput, SegmentWindow};

    /// Everything final a run produced, in an order that does not depend on when it
    /// came out: final windows (each version of one, as a late drive may revise it),
    /// tickets, incidents.
    fn finals(city: &Arc<CityModel>, config: PipelineConfig, records: &[Record], batch: usize) -> (Vec<String>, Vec<String>, Vec<String>) {
        let mut pipeline = Pipeline::new(city.clone(), event_clock(config));
        let mut outs: Vec<BatchOutput> = records.chunks(batch).map(|b| pipeline.process(b, Instant::now())).collect();
        outs.push(pipeline.finish());
        // A window's `revision` counts the provisional versions shown before it was
        // final, one per batch that changed it: the one thing that may differ.
        let unrevised = |w: &SegmentWindow| format!("{} {}", w.segment.0, json(&SegmentWindow { revision: 0, ..w.clone() }));
        let mut windows: Vec<String> = outs.iter().flat_map(|o| o.windows.iter().filter(|w| w.is_final)).map(unrevised).collect();
        let mut tickets: Vec<String> = outs.iter().flat_map(|o| &o.tickets.violations).map(json).collect();
        let mut incidents: Vec<String> = outs.iter().flat_map(|o| &o.incidents).map(json).collect();
        for list in [&mut windows, &mut tickets, &mut incidents] {
            list.sort();
        }
        (windows, tickets, incidents)
    }

    fn json<T: serde::Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap_or_else(|e| panic!("an output that does not serialise: {e}"))
    }

    /// A Kafka poll returns whatever has arrived, and a restart cuts the input
    /// somewhere else: what is final must not depend on where batches end. Among the
    /// things batching moves is when per-plate state is swept (once a minute of event
    /// time, with a two-minute plate lifetime here so that many sweeps happen).
    #[test]
    fn final_outputs_do_not_depend_on_batch_sizes() {
        let city = crate::load_city(None).expect("the repo's city data");
        let records = workload::simulated_with(&city, 60_000, 2_000.0, 7, egret_simulator::Noise::noisy());
        let config = PipelineConfig { plate_ttl_ms: 120_000, ..PipelineConfig::default() };
        let (windows, tickets, incidents) = finals(&city, config.clone(), &records, BATCH);
        assert!(windows.len() > 1_000 && !tickets.is_empty(), "{} final windows and {} tickets: too few to compare", windows.len(), tickets.len());
        for batch in [97, 1_500] {
            let other = finals(&city, config.clone(), &records, batch);
            assert!(other.0 == windows, "final windows differ with batches of {batch}");
            assert!(other.1 == tickets, "tickets differ with batches of {batch}");
            assert!(other.2 == incidents, "incidents differ with batches of {batch}");
        }
    }
}
