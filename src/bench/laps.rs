//! The pipeline's loop phases (`egret_loop_seconds` and `egret_loop_batch_records`,
//! written by `egret_pipeline::laps`) kept as hdrhistograms for `egret bench`, so
//! the latency figure can say which phase of which stage its time went to. The
//! bench's recorder hands every metric to Prometheus (whose counters the Kafka
//! figures read) and keeps a copy of those two, cleared when the timed part of a
//! run starts so the warm-up's catch-up batches stay out.

use super::measure::{latency_histogram, lock, summary_ms};
use hdrhistogram::Histogram;
use metrics::{Counter, Gauge, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

type LapKey = (String, String);

/// One stage's phase: durations in microseconds (seconds times `scale`), or
/// records per batch.
struct Lap {
    scale: f64,
    histogram: Mutex<Option<Histogram<u64>>>,
}

impl Lap {
    fn record(&self, value: f64) {
        let mut h = lock(&self.histogram);
        let _ = h.get_or_insert_with(latency_histogram).record((value * self.scale).max(0.0) as u64);
    }
}

/// A phase's value goes to Prometheus and to the lap.
struct Tee(metrics::Histogram, Arc<Lap>);

impl HistogramFn for Tee {
    fn record(&self, value: f64) {
        self.0.record(value);
        self.1.record(value);
    }
}

pub struct LapRecorder {
    prometheus: PrometheusRecorder,
    laps: Mutex<BTreeMap<LapKey, Arc<Lap>>>,
}


static INSTALLED: OnceLock<&'static LapRecorder> = OnceLock::new();

impl LapRecorder {
    fn new() -> Self {
        LapRecorder { prometheus: PrometheusBuilder::new().build_recorder(), laps: Mutex::default() }
    }

    /// Installs the process-wide recorder, as `serve::install_metrics` does with
    /// Prometheus alone; `None` when one was installed already.
    pub fn install() -> Option<PrometheusHandle> {
        let recorder: &'static LapRecorder = Box::leak(Box::new(LapRecorder::new()));
        metrics::set_global_recorder(recorder).ok()?;
        let _ = INSTALLED.set(recorder);
        Some(recorder.prometheus.handle())
    }

    /// The recorder `install` put in place, if it did.
    pub fn installed() -> Option<&'static LapRecorder> {
        INSTALLED.get().copied()
    }

    pub fn clear(&self) {
        for lap in lock(&self.laps).values() {
            *lock(&lap.histogram) = None;
        }
    }

    /// One line per stage and phase: `stage 1 process: p50 … ms (n=…); mean …, … s
    /// in all`, and the records per batch.
    pub fn report(&self) -> Vec<String> {
        lock(&self.laps)
            .iter()
            .filter_map(|((stage, phase), lap)| {
                let h = lock(&lap.histogram);
                let h = h.as_ref()?;
                Some(if phase == "records" {
                    format!("stage {stage} records per batch: p50 {} / p99 {} / max {} (n={})", h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max(), h.len())
                } else {
                    // The total says where the time went; percentiles alone hide a
                    // phase that is short at p50 and long often enough to matter.
                    format!("stage {stage} {phase}: {}; mean {:.1} ms, {:.2} s in all", summary_ms(h), h.mean() / 1e3, h.mean() * h.len() as f64 / 1e6)
                })
            })
            .collect()
    }
}

impl Recorder for LapRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.prometheus.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.prometheus.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Histogram {
        let prometheus = self.prometheus.register_histogram(key, metadata);
        let label = |name: &str| key.labels().find(|l| l.key() == name).map(|l| l.value().to_owned()).unwrap_or_default();
        let (lap, scale) = match key.name() {
            "egret_loop_seconds" => (label("phase"), 1e6),
            "egret_loop_batch_records" => ("records".to_owned(), 1.0),
            _ => return prometheus,
        };
        let lap = lock(&self.laps).entry((label("stage"), lap)).or_insert_with(|| Arc::new(Lap { scale, histogram: Mutex::default() })).clone();
        metrics::Histogram::from_arc(Arc::new(Tee(prometheus, lap)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_kept_per_stage_and_cleared() {
        let recorder = LapRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!("egret_loop_seconds", "stage" => "1", "phase" => "poll").record(0.002);
            metrics::histogram!("egret_loop_seconds", "stage" => "1", "phase" => "poll").record(0.004);
            metrics::histogram!("egret_loop_batch_records", "stage" => "2").record(300.0);
            metrics::histogram!("egret_other_seconds").record(1.0);
        });
        assert!(recorder.prometheus.handle().render().contains("egret_other_seconds"), "everything reaches Prometheus too");
        let report = recorder.report();
        assert_eq!(report.len(), 2, "{report:?}");
        assert!(report[0].starts_with("stage 1 poll: p50 2.0 / p99 4.0"), "{report:?}");
        assert!(report[0].ends_with("mean 3.0 ms, 0.01 s in all"), "{report:?}");
        assert!(report[1].starts_with("stage 2 records per batch: p50 300"), "{report:?}");
        recorder.clear();
        assert!(recorder.report().is_empty());
    }
}
