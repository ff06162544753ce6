//! What a scenario's outputs are, read back from its topics, and how they differ
//! from the uninterrupted run's. Outputs go out at least once and are keyed
//! deterministically, so a consumer sees a ticket by its id and a window by its
//! segment and start: that view is what must be identical. Raw redeliveries (the
//! same ticket sent again after a restore) are counted too, for the record.
//!
//! Two verdicts, both the target of targets.md. Exactly once: the same tickets, and
//! the same number of traversal samples in closed windows (none lost, none counted
//! twice). Identical windows: every closed window's figures equal. The control
//! scenario (a second clean run) shows that the reference is reproducible at all.

use crate::instance::read_topic;
use egret_ingest::kafka::KafkaConfig;
use egret_pipeline::runner::{SEGMENT_SPEEDS_TOPIC, VIOLATIONS_TOPIC};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// A final window's figures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Closed {
    pub sample_count: u32,
    pub mean_speed_kmh: f64,
    pub median_speed_kmh: f64,
    pub travel_time_s: f64,
}

#[derive(Deserialize)]
struct WindowRecord {
    segment_id: String,
    window_start_ms: i64,
    is_final: bool,
    #[serde(flatten)]
    figures: Closed,
}

#[derive(Deserialize)]
struct TicketRecord {
    violation_id: String,
}

/// A run's outputs as a consumer keeps them.
#[derive(Debug, Default)]
pub struct Outputs {
    pub tickets: BTreeSet<String>,
    /// Ticket records on the topic, repeats included.
    pub ticket_records: usize,
    pub windows: BTreeMap<(String, i64), Closed>,
}

pub async fn read(kafka: &KafkaConfig) -> anyhow::Result<Outputs> {
    let reader = KafkaConfig { group_id: format!("{}reader-{}", kafka.namespace, crate::commands::now_ms()), ..kafka.clone() };
    let mut out = Outputs::default();
    for r in read_topic(&reader, VIOLATIONS_TOPIC).await? {
        let ticket: TicketRecord = serde_json::from_slice(&r.payload)?;
        out.tickets.insert(ticket.violation_id);
        out.ticket_records += 1;
    }
    for r in read_topic(&reader, SEGMENT_SPEEDS_TOPIC).await? {
        let w: WindowRecord = serde_json::from_slice(&r.payload)?;
        if w.is_final {
            // A replay may close a window again: the same figures, or the later word.
            out.windows.insert((w.segment_id, w.window_start_ms), w.figures);
        }
    }
    Ok(out)
}

/// How a run's outputs differ from the reference's.
#[derive(Debug)]
pub struct Diff {
    pub tickets_lost: usize,
    pub tickets_extra: usize,
    pub redelivered: usize,
    pub windows_missing: usize,
    pub windows_extra: usize,
    pub windows_differing: usize,
    /// Traversal samples in all closed windows: the reference's, then the run's.
    pub samples: (u64, u64),
    /// A few differing windows, reference then run, for whoever investigates.
    pub examples: Vec<String>,
}

impl Diff {
    /// Nothing lost, nothing counted twice.
    pub fn exactly_once(&self) -> bool {
        self.tickets_lost == 0 && self.tickets_extra == 0 && self.samples.0 == self.samples.1
    }

    pub fn identical_windows(&self) -> bool {
        self.windows_missing == 0 && self.windows_extra == 0 && self.windows_differing == 0
    }
}

fn samples(outputs: &Outputs) -> u64 {
    outputs.windows.values().map(|w| u64::from(w.sample_count)).sum()
}

/// Sums in another order may differ in the last bits; anything more is a difference.
fn same(a: &Closed, b: &Closed) -> bool {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
    a.sample_count == b.sample_count && close(a.mean_speed_kmh, b.mean_speed_kmh) && close(a.median_speed_kmh, b.median_speed_kmh) && close(a.travel_time_s, b.travel_time_s)
}

pub fn diff(reference: &Outputs, run: &Outputs) -> Diff {
    Diff {
        tickets_lost: reference.tickets.difference(&run.tickets).count(),
        tickets_extra: run.tickets.difference(&reference.tickets).count(),
        redelivered: run.ticket_records - run.tickets.len(),
        windows_missing: reference.windows.keys().filter(|k| !run.windows.contains_key(*k)).count(),
        windows_extra: run.windows.keys().filter(|k| !reference.windows.contains_key(*k)).count(),
        windows_differing: reference.windows.iter().filter(|(k, a)| run.windows.get(*k).is_some_and(|b| !same(a, b))).count(),
        samples: (samples(reference), samples(run)),
        examples: reference
            .windows
            .iter()
            .filter_map(|(k, a)| run.windows.get(k).filter(|b| !same(a, b)).map(|b| format!("{k:?}: {a:?} / {b:?}")))
            .take(3)
            .collect(),
    }
}
