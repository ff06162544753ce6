//! `egret eval`: runs a seeded scenario through the real pipeline and scores what it
//! served against the simulator's ground truth, figure by figure, beside the
//! targets of targets.md, with the command that reproduces the run.
//!
//! "Served" means what went out on the derived topics (segment windows, lot states,
//! tickets), exactly as a consumer of `egret.*` or the API would have seen it.

pub mod score;

use crate::drive::{self, DriveOptions};
use crate::instance;
use egret_ingest::kafka::{KafkaConfig, KafkaSink};
use egret_ingest::embedded::EmbeddedLog;
use egret_ingest::memory::MemorySink;
use egret_model::{CityModel, Topic};
use egret_pipeline::enforce::hotlist::HotlistEntry;
use egret_pipeline::enforce::violation::{Violation, ViolationKind};
use egret_pipeline::incident::Incident;
use egret_pipeline::transit::{BusStatus, TransitEvent};
use egret_pipeline::runner::{self, Outputs};
use egret_pipeline::{ClockMode, LiveState, Pipeline, PipelineConfig};
use egret_simulator::{GroundTruth, SimConfig, Simulator, TruthRecord, WantedPlate};
use score::Confusion;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Everything a scenario run served, and the truth it is scored against.
pub struct Outcome {
    pub events: u64,
    pub dead_letters: u64,
    pub violations: Vec<Violation>,
    /// Final windows: (segment id, window start) → (mean km/h, samples).
    pub windows: BTreeMap<(String, i64), (f64, u32)>,
    /// Lot states as published, in order: (lot id, as_of_ms, occupied).
    pub lots: Vec<(String, i64, Option<u32>)>,
    /// Incidents as last published, by id.
    pub incidents: BTreeMap<String, Incident>,
    /// Bunching and gaps as published.
    pub headway_flags: Vec<score::HeadwayFlag>,
    pub ghost_trips: Vec<String>,
    pub predictions: Vec<score::Prediction>,
    pub truth: GroundTruth,
    pub config: SimConfig,
}

/// The scenario's hotlists, grouped by list, as the pipeline loads them.
pub fn hotlist_entries(wanted: &[WantedPlate]) -> BTreeMap<String, Vec<HotlistEntry>> {
    let mut lists: BTreeMap<String, Vec<HotlistEntry>> = BTreeMap::new();
    for w in wanted {
        lists.entry(w.list.clone()).or_default().push(HotlistEntry { plate: w.plate.clone(), reason: w.reason.clone(), expires_ms: w.expires_ms });
    }
    lists
}

/// Runs a scenario through simulator → embedded log → pipeline, as fast as it goes.
pub async fn run_embedded(city: Arc<CityModel>, pipeline: PipelineConfig, config: SimConfig, progress: bool) -> anyhow::Result<Outcome> {
    let log = EmbeddedLog::new(4, 50_000);
    let topics = Topic::default_names();
    let mut source = log.subscribe(&topics, Duration::from_millis(50));
    let live = LiveState::new(city.clone());
    let mut sim = Simulator::new(city.clone(), config.clone());
    let mut pipeline = Pipeline::new(city.clone(), PipelineConfig { clock: ClockMode::Event, ..pipeline });
    for (list, entries) in hotlist_entries(&sim.hotlists()) {
        let bad = pipeline.set_hotlist(&list, &entries);
        anyhow::ensure!(bad.is_empty(), "hotlist {list} has entries that are not plates: {bad:?}");
    }
    let (dead_letters, derived) = (MemorySink::new(0), MemorySink::new(usize::MAX));
    let producer = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut truth = GroundTruth::default();
            let options = DriveOptions { progress, ..DriveOptions::fast() };
            let sent = drive::drive(&mut sim, &log, options, |r| truth.extend(r)).await;
            log.close();
            sent.map(|sent| (sent, truth))
        })
    };
    let outputs = Outputs { dead_letters: &dead_letters, derived: &derived };
    runner::run(&mut source, &outputs, &mut pipeline, &live, std::future::pending()).await?;
    let (events, truth) = producer.await??;
    Outcome::from_records(events, dead_letters.total(), truth, config, derived.records().iter().map(|r| (r.topic.as_str(), &r.payload[..])))
}

/// Runs a scenario through Apache Kafka: the simulator publishes to the input
/// topics (under a fresh namespace), an `egret run --kafka` instance processes them
/// until idle, and the derived topics are read back from the broker.
pub async fn run_kafka(city: Arc<CityModel>, pipeline: PipelineConfig, config: SimConfig, brokers: &str, progress: bool) -> anyhow::Result<Outcome> {
    let namespace = format!("eval-{}-{}.", config.seed, crate::commands::now_ms());
    let kafka = KafkaConfig { namespace: namespace.clone(), group_id: format!("{namespace}egret"), ..KafkaConfig::new(brokers) };
    instance::ensure_all_topics(&kafka).await?;
    let mut sim = Simulator::new(city.clone(), config.clone());
    let sink = KafkaSink::new(&kafka)?;
    let mut truth = GroundTruth::default();
    let events = drive::drive(&mut sim, &sink, DriveOptions { progress, ..DriveOptions::fast() }, |r| truth.extend(r)).await?;
    sink.flush(Duration::from_secs(60))?;
    let live = Arc::new(LiveState::new(city.clone()));
    for (name, entries) in hotlist_entries(&sim.hotlists()) {
        live.hotlists().put(&name, entries);
    }
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let pipeline = PipelineConfig { clock: ClockMode::Event, ..pipeline };
    let report = instance::run(city, pipeline, &kafka, live, stop, &instance::RunOptions { exit_when_idle: Some(Duration::from_secs(5)), ..Default::default() }).await?;
    let reader = KafkaConfig { group_id: format!("{namespace}eval-reader"), ..kafka.clone() };
    let mut records = Vec::new();
    for topic in [runner::VIOLATIONS_TOPIC, runner::SEGMENT_SPEEDS_TOPIC, runner::PARKING_TOPIC, runner::INCIDENTS_TOPIC, runner::BUS_STATUS_TOPIC, runner::HEADWAYS_TOPIC] {
        records.extend(instance::read_topic(&reader, topic).await?);
    }
    let dead_letters = report.stats.rejected.values().sum();
    if progress {
        eprintln!("read {} derived records back from Kafka (namespace {namespace})", records.len());
        for ((topic, reason), n) in &report.stats.rejected {
            eprintln!("  dead-lettered {n:>6} {} from {}", reason.code(), topic.default_name());
        }
    }
    Outcome::from_records(events, dead_letters, truth, config, records.iter().map(|r| (r.topic.as_str(), &r.payload[..])))
}

impl Outcome {
    /// Gathers what was served from the derived topics' records (topic, payload).
    fn from_records<'a>(events: u64, dead_letters: u64, truth: GroundTruth, config: SimConfig, records: impl Iterator<Item = (&'a str, &'a [u8])>) -> anyhow::Result<Outcome> {
        let mut outcome = Outcome {
            events,
            dead_letters,
            violations: Vec::new(),
            windows: BTreeMap::new(),
            lots: Vec::new(),
            incidents: BTreeMap::new(),
            headway_flags: Vec::new(),
            ghost_trips: Vec::new(),
            predictions: Vec::new(),
            truth,
            config,
        };
        let mut seen_tickets = std::collections::HashSet::new();
        for (topic, payload) in records {
            outcome.absorb(topic, payload, &mut seen_tickets)?;
        }
        Ok(outcome)
    }

    fn absorb(&mut self, topic: &str, payload: &[u8], seen_tickets: &mut std::collections::HashSet<String>) -> anyhow::Result<()> {
        let outcome = self;
        let value: serde_json::Value = serde_json::from_slice(payload)?;
        match topic {
            runner::VIOLATIONS_TOPIC => {
                // Consumers keep one ticket per id (a replay repeats ids; it never adds tickets).
                let v: Violation = serde_json::from_value(value)?;
                if seen_tickets.insert(v.violation_id.clone()) {
                    outcome.violations.push(v);
                }
            }
            runner::SEGMENT_SPEEDS_TOPIC if value["is_final"] == true => {
                let key = (value["segment_id"].as_str().unwrap_or_default().to_owned(), value["window_start_ms"].as_i64().unwrap_or_default());
                let samples = value["sample_count"].as_u64().unwrap_or_default() as u32;
                outcome.windows.insert(key, (value["mean_speed_kmh"].as_f64().unwrap_or_default(), samples));
            }
            runner::PARKING_TOPIC => outcome.lots.push((
                value["lot_id"].as_str().unwrap_or_default().to_owned(),
                value["as_of_ms"].as_i64().unwrap_or_default(),
                value["occupied"].as_u64().map(|o| o as u32),
            )),
            runner::BUS_STATUS_TOPIC => {
                let s: BusStatus = serde_json::from_value(value)?;
                outcome.predictions.extend(s.next_stops.into_iter().map(|e| (s.trip_id.clone(), e.stop_id, s.ts_ms, e.predicted_ms)));
            }
            runner::HEADWAYS_TOPIC => match serde_json::from_value(value)? {
                TransitEvent::Headway { stop_id, bus_id, status, arrival_ms, .. } if status != "ok" => outcome.headway_flags.push((stop_id, bus_id, status, arrival_ms)),
                TransitEvent::GhostTrip { trip_id, .. } => outcome.ghost_trips.push(trip_id),
                TransitEvent::Headway { .. } => {}
            },
            runner::INCIDENTS_TOPIC => {
                let incident: Incident = serde_json::from_value(value)?;
                outcome.incidents.insert(incident.incident_id.clone(), incident);
            }
            _ => {}
        }
        Ok(())
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Figure {
    pub figure: String,
    pub measured: String,
    pub target: String,
    /// `None` where the figure cannot be judged (nothing to measure).
    pub pass: Option<bool>,
}

fn bucket((ok, n): (usize, usize)) -> String {
    if n == 0 { "n/a".into() } else { format!("{:.1}% of {n}", 100.0 * ok as f64 / n as f64) }
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".into(), |x| format!("{:.2}%", 100.0 * x))
}

/// Offences in the first minutes are not scored: a device's clock is calibrated
/// after its first few events, and until then the rules give its doubt (2 s) to
/// the driver. A deployment calibrates once and runs on; a scenario starts cold.
pub const ENFORCEMENT_WARM_UP_MS: i64 = 2 * 60_000;

/// The figures of the accuracy table for one scenario run.
pub fn figures(city: &CityModel, noisy: bool, outcome: &Outcome) -> Vec<Figure> {
    let mut rows = Vec::new();
    let scored_from = outcome.config.start_ms + ENFORCEMENT_WARM_UP_MS;
    let truth = score::true_violations(&outcome.truth.records);
    let per_kind = score::score_violations(&outcome.violations, &truth, scored_from);
    let mut all = Confusion::default();
    for (kind, c) in &per_kind {
        all.add(c);
        let counts = format!("{} issued, {} real, {} matched", c.true_positives + c.false_positives, c.true_positives + c.false_negatives, c.true_positives);
        // Clean: every kind must be perfect. Noisy: judged on the totals below.
        let (target, pass) = if noisy {
            ("(see totals)", None)
        } else {
            let perfect = c.precision().is_none_or(|p| p >= 1.0) && c.recall().is_none_or(|r| r >= 1.0) && c.true_positives + c.false_negatives > 0;
            ("100% / 100%", Some(perfect))
        };
        rows.push(Figure {
            figure: format!("{} precision / recall", kind.as_str()),
            measured: format!("{} / {} ({counts})", pct(c.precision()), pct(c.recall())),
            target: target.into(),
            pass,
        });
    }
    if noisy {
        rows.push(Figure {
            figure: "violation precision, all kinds".into(),
            measured: format!("{} ({} false of {})", pct(all.precision()), all.false_positives, all.true_positives + all.false_positives),
            target: ">= 99.9%".into(),
            pass: Some(all.precision().is_some_and(|p| p >= 0.999)),
        });
        rows.push(Figure {
            figure: "violation recall, all kinds".into(),
            measured: format!("{} ({} missed of {})", pct(all.recall()), all.false_negatives, all.true_positives + all.false_negatives),
            target: ">= 97%".into(),
            pass: Some(all.recall().is_some_and(|r| r >= 0.97)),
        });
    }
    let true_windows: BTreeMap<(String, i64), f64> =
        outcome.truth.segment_speeds(60_000).into_iter().map(|(k, m)| (k, m.mean_kmh)).collect();
    let (mape, n, unmatched) = score::speed_mape(&outcome.windows, &true_windows, 3);
    let target = if noisy { 3.0 } else { 1.0 };
    rows.push(Figure {
        figure: "segment mean-speed MAPE (windows with >= 3 samples)".into(),
        measured: format!("{mape:.3}% over {n} windows ({unmatched} without a true counterpart)"),
        target: format!("<= {target}%"),
        pass: Some(n > 0 && mape <= target),
    });
    let (delays, missed, false_incidents) = score::incidents(&outcome.truth.records, outcome.incidents.values());
    let worst = delays.iter().map(|(_, d)| *d).max();
    rows.push(Figure {
        figure: "incident detection delay after onset / false incidents".into(),
        measured: format!(
            "{} / {false_incidents} ({} real, {missed} missed{})",
            worst.map_or_else(|| "n/a".into(), |d| format!("{:.0} s", d as f64 / 1000.0)),
            delays.len() + missed,
            delays.iter().map(|(s, d)| format!("; {s} after {:.0} s", *d as f64 / 1000.0)).collect::<String>()
        ),
        target: "<= 120 s / 0".into(),
        pass: Some(missed == 0 && false_incidents == 0 && worst.is_some_and(|d| d <= 120_000)),
    });
    let true_flags = score::true_headway_flags(city, &outcome.truth.records);
    let (f1, tp, served, real) = score::flag_f1(&outcome.headway_flags, &true_flags);
    rows.push(Figure {
        figure: "bus bunching and gap detection F1".into(),
        measured: format!("{f1:.3} ({tp} matched of {served} flagged, {real} real)"),
        target: ">= 0.95".into(),
        pass: Some(real > 0 && f1 >= 0.95),
    });
    let (eta, buckets) = score::eta_accuracy(&outcome.predictions, &outcome.truth.records);
    rows.push(Figure {
        figure: "bus arrival predictions inside the ETA benchmark bands".into(),
        measured: format!(
            "{:.1}% (0-3 min {}, 3-6 {}, 6-10 {}, 10-15 {})",
            100.0 * eta,
            bucket(buckets[0]),
            bucket(buckets[1]),
            bucket(buckets[2]),
            bucket(buckets[3])
        ),
        target: ">= 85%".into(),
        pass: Some(eta >= 0.85),
    });
    let true_ghosts: Vec<&str> = outcome.truth.records.iter().filter_map(|r| if let TruthRecord::GhostTrip { trip_id, .. } = r { Some(trip_id.as_str()) } else { None }).collect();
    let found = true_ghosts.iter().filter(|t| outcome.ghost_trips.iter().any(|g| g == *t)).count();
    rows.push(Figure {
        figure: "ghost trips (scheduled, never ran) found / false".into(),
        measured: format!("{found} of {} / {}", true_ghosts.len(), outcome.ghost_trips.len() - found),
        target: "all / 0".into(),
        pass: None,
    });
    let (mae_pct, end_errors, samples) = parking_error(city, outcome);
    if noisy {
        rows.push(Figure {
            figure: "parking occupancy mean absolute error".into(),
            measured: format!("{mae_pct:.3}% of capacity over {samples} published states"),
            target: "<= 2% of capacity".into(),
            pass: Some(samples > 0 && mae_pct <= 2.0),
        });
    } else {
        rows.push(Figure {
            figure: "parking occupancy error".into(),
            measured: format!("{end_errors} of {} lots wrong at the end; {mae_pct:.3}% of capacity over {samples} published states", city.lots.len()),
            target: "0".into(),
            pass: Some(end_errors == 0 && mae_pct == 0.0),
        });
    }
    rows
}

/// Served against true occupancy: every published lot state claims "`occupied` as
/// of `as_of_ms`"; each is compared with the true count at that instant. Returns the
/// mean absolute error as % of capacity, the lots wrong at the end, and the number
/// of states compared. A state with no count yet (no snapshot) is not compared.
fn parking_error(city: &CityModel, outcome: &Outcome) -> (f64, usize, usize) {
    let mut truth: BTreeMap<&str, Vec<(i64, u32)>> = BTreeMap::new();
    for r in &outcome.truth.records {
        if let TruthRecord::LotOccupancy { lot_id, ts_ms, occupied } = r {
            truth.entry(lot_id.as_str()).or_default().push((*ts_ms, *occupied));
        }
    }
    // Several changes in one millisecond: the last one recorded is the count after them.
    let at = |series: &[(i64, u32)], t: i64| series.iter().rev().filter(|(ts, _)| *ts <= t).max_by_key(|(ts, _)| *ts).map(|(_, o)| *o);
    let capacity: BTreeMap<&str, u32> = city.lots.iter().map(|l| (l.lot_id.as_str(), l.capacity.max(1))).collect();
    let (mut sum_pct, mut samples) = (0.0, 0usize);
    let mut last_served: BTreeMap<&str, u32> = BTreeMap::new();
    for (lot, as_of, occupied) in &outcome.lots {
        let (Some(served), Some(series)) = (occupied, truth.get(lot.as_str())) else { continue };
        last_served.insert(lot.as_str(), *served);
        if let Some(true_count) = at(series, *as_of) {
            if std::env::var_os("EGRET_EVAL_DEBUG").is_some() && true_count != *served {
                eprintln!("lot {lot} as of {as_of}: served {served}, true {true_count}; truth near {:?}", series.iter().filter(|(t, _)| (t - as_of).abs() < 3000).collect::<Vec<_>>());
            }
            sum_pct += 100.0 * f64::from(true_count.abs_diff(*served)) / f64::from(capacity.get(lot.as_str()).copied().unwrap_or(1));
            samples += 1;
        }
    }
    let end_errors = city
        .lots
        .iter()
        .filter(|l| truth.get(l.lot_id.as_str()).and_then(|t| at(t, i64::MAX)) != last_served.get(l.lot_id.as_str()).copied())
        .count();
    (if samples > 0 { sum_pct / samples as f64 } else { f64::NAN }, end_errors, samples)
}

/// Prints the table; returns whether every judged figure passed.
pub fn print_table(scenario: &str, command: &str, outcome: &Outcome, rows: &[Figure]) -> bool {
    println!("\negret eval — scenario {scenario}: {} events, {} dead letters, {} tickets issued", outcome.events, outcome.dead_letters, outcome.violations.len());
    println!("reproduce: {command}\n");
    let width = rows.iter().map(|r| r.figure.chars().count()).max().unwrap_or(0);
    println!("| {:width$} | {:>12} | measured", "figure", "target");
    println!("|{}|{}|{}", "-".repeat(width + 2), "-".repeat(14), "-".repeat(40));
    let mut ok = true;
    for r in rows {
        let mark = match r.pass {
            Some(true) => "PASS",
            Some(false) => {
                ok = false;
                "FAIL"
            }
            None => "    ",
        };
        println!("| {:width$} | {:>12} | {mark} {}", r.figure, r.target, r.measured);
    }
    ok
}

/// Tickets issued twice (same id) within one run's output.
pub fn repeated_ids(violations: &[Violation]) -> usize {
    let mut ids: Vec<&str> = violations.iter().map(|v| v.violation_id.as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    before - ids.len()
}

/// Counts per kind, for summaries.
pub fn count_by_kind(violations: &[Violation]) -> BTreeMap<ViolationKind, usize> {
    let mut out = BTreeMap::new();
    for v in violations {
        *out.entry(v.kind).or_default() += 1;
    }
    out
}
