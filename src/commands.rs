//! What each CLI command does, once its arguments are parsed: wire a source, the
//! pipeline, sinks and the API together, and report.

use crate::drive::{self, DriveOptions, Pace};
use crate::{instance, serve};
use anyhow::Context;
use crate::serve::ServeOptions;
use egret_api::ingest::{IngestTarget, SinkTarget};
use egret_ingest::embedded::EmbeddedLog;
use egret_ingest::kafka::{self, KafkaConfig, KafkaSink};
use egret_ingest::memory::MemorySink;
use egret_ingest::ndjson::{NdjsonSink, NdjsonSource};
use egret_model::{CityModel, Topic};
use egret_pipeline::runner::{Ended, Outputs};
use egret_pipeline::enforce::hotlist::HotlistEntry;
use egret_pipeline::{ClockMode, LiveState, Pipeline, PipelineConfig, Stats};
use egret_simulator::{SimConfig, Simulator};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use egret_model::time::now_ms;

/// `egret demo`: simulator → embedded log → pipeline → API, in one process.
pub async fn demo(
    city: Arc<CityModel>,
    pipeline: PipelineConfig,
    listen: &str,
    config: SimConfig,
    preroll_ms: i64,
    pace: Pace,
    options: &ServeOptions,
) -> anyhow::Result<()> {
    let metrics = serve::install_metrics();
    let (stop_tx, stop) = serve::stop_on_ctrl_c();
    let live = Arc::new(LiveState::new(city.clone()));
    let log = EmbeddedLog::new(4, 50_000);
    let dead_letters = Arc::new(MemorySink::new(1_000));
    // Events POSTed to /api/v1/ingest join the simulator's in the embedded log.
    let ingest: Arc<dyn IngestTarget> = Arc::new(SinkTarget { inputs: Arc::new(log.clone()), dead_letters: dead_letters.clone() });
    let (state, history) = serve::app_state(&live, metrics, options, Some(ingest))?;
    let (addr, api) = serve::start_api(listen, state, stop.clone()).await?;
    println!("Egret demo: {} segments, {} readers, {} routes, {} lots", city.segments.len(), city.readers.len(), city.routes.len(), city.lots.len());
    println!("serving http://{addr}  (try /api/v1/segments, /api/v1/network, /metrics); Ctrl-C stops");

    // Faster than real time, event timestamps run ahead of the wall clock.
    let clock = if pace == Pace::Accelerated(1.0) { ClockMode::Wall } else { ClockMode::Event };
    let pipeline = Pipeline::new(city.clone(), PipelineConfig { clock, ..pipeline });
    // The simulated city's police hotlists, so the demo shows hits.
    let realtime_from_ms = config.start_ms + preroll_ms;
    let mut sim = Simulator::new(city.clone(), config);
    for (list, entries) in crate::eval::hotlist_entries(&sim.hotlists()).into_iter().chain(options.saved_hotlists()?) {
        live.hotlists().put(&list, entries);
    }
    let source = log.subscribe(&Topic::default_names(), Duration::from_millis(200));
    let threads = serve::PipelineThreads::new(1)?;
    let pipe = {
        let (live, stop) = (live.clone(), stop.clone());
        threads.spawn(async move {
            let derived = MemorySink::new(0);
            serve::run_pipeline(source, Outputs { dead_letters: &*dead_letters, derived: &derived }, pipeline, &live, stop).await.map(|_| ())
        })
    };
    let options = DriveOptions { pace, realtime_from_ms, max_rate: None, progress: false };
    let mut stop_feed = stop.clone();
    tokio::select! {
        r = drive::drive(&mut sim, &log, options, |_| {}) => { r?; }
        _ = stop_feed.wait_for(|s| *s) => {}
    }
    log.close();
    let _ = stop_tx.send(true);
    pipe.await??;
    api.await?;
    serve::flush_history(&history);
    Ok(())
}

/// `egret simulate`: a scenario into NDJSON files (with truth) or into Kafka.
pub async fn simulate(city: Arc<CityModel>, config: SimConfig, out: Option<&Path>, kafka: Option<&KafkaConfig>, options: DriveOptions) -> anyhow::Result<()> {
    let seed = config.seed;
    let mut sim = Simulator::new(city, config);
    let (sent, target) = match (out, kafka) {
        (Some(dir), None) => {
            let sink = NdjsonSink::create(dir)?;
            let truth_path = dir.join("truth.ndjson");
            let file = std::fs::File::create(&truth_path).with_context(|| format!("creating {}", truth_path.display()))?;
            let mut truth = std::io::BufWriter::new(file);
            let mut truth_error = None;
            let sent = drive::drive(&mut sim, &sink, options, |records| {
                for r in records {
                    let line = serde_json::to_string(&r).unwrap_or_default();
                    if let Err(e) = writeln!(truth, "{line}") {
                        truth_error.get_or_insert(e);
                    }
                }
            })
            .await?;
            sink.flush()?;
            truth.flush()?;
            if let Some(e) = truth_error {
                anyhow::bail!("writing {}: {e}", truth_path.display());
            }
            (sent, format!("{} (with truth.ndjson)", dir.display()))
        }
        (None, Some(config)) => {
            let topics: Vec<(&str, bool)> = Topic::default_names().into_iter().map(|t| (t, false)).collect();
            kafka::ensure_topics(config, &topics).await?;
            let sink = KafkaSink::new(config)?;
            let sent = drive::drive(&mut sim, &sink, options, |_| {}).await?;
            sink.flush(Duration::from_secs(60))?;
            (sent, format!("Kafka at {}", config.brokers))
        }
        _ => anyhow::bail!("give exactly one of --out DIR or --kafka BROKERS"),
    };
    println!("wrote {sent} events (seed {seed}) to {target}");
    Ok(())
}

/// Where `egret run` reads from.
pub enum Input<'a> {
    Files(&'a Path),
    Kafka { config: KafkaConfig, options: instance::RunOptions },
    /// A pod of a StatefulSet of split instances, which follows the deployment's layout.
    Pod { config: KafkaConfig, options: crate::pod::PodOptions },
}

/// `egret run`: the pipeline over recorded files or Kafka, serving the API.
/// Police hotlists from a JSON file: `{"<list name>": [{"plate", "reason", "expires_ms"?}, ...]}`.
/// A plate that is not a plate is an error naming it, not a silent skip.
pub fn load_hotlists(path: &Path) -> anyhow::Result<Vec<(String, Vec<HotlistEntry>)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading hotlists {}", path.display()))?;
    let lists: std::collections::BTreeMap<String, Vec<HotlistEntry>> =
        serde_json::from_str(&text).with_context(|| format!("{}: expected {{\"list\": [{{\"plate\", \"reason\", \"expires_ms\"?}}]}}", path.display()))?;
    for (name, entries) in &lists {
        let bad: Vec<&str> = entries.iter().filter(|e| egret_model::Plate::parse(&e.plate).is_err()).map(|e| e.plate.as_str()).collect();
        anyhow::ensure!(bad.is_empty(), "{}: hotlist {name} has entries that are not plates: {bad:?}", path.display());
    }
    Ok(lists.into_iter().collect())
}

pub async fn run(
    city: Arc<CityModel>,
    pipeline: PipelineConfig,
    input: Input<'_>,
    listen: &str,
    exit_at_end: bool,
    hotlists: &[(String, Vec<HotlistEntry>)],
    options: &ServeOptions,
) -> anyhow::Result<()> {
    let metrics = serve::install_metrics();
    let (stop_tx, stop) = serve::stop_on_ctrl_c();
    let live = Arc::new(LiveState::new(city.clone()));
    for (name, entries) in hotlists.iter().cloned().chain(options.saved_hotlists()?) {
        live.hotlists().put(&name, entries);
    }
    // A replay of files takes no new events; a Kafka instance appends them to the
    // input topics, where every instance of the group sees them.
    let ingest: Option<Arc<dyn IngestTarget>> = match &input {
        Input::Files(_) => None,
        Input::Kafka { config, .. } | Input::Pod { config, .. } => {
            let sink = Arc::new(KafkaSink::new(config)?);
            Some(Arc::new(SinkTarget { inputs: sink.clone(), dead_letters: sink }))
        }
    };
    let (state, history) = serve::app_state(&live, metrics, options, ingest)?;
    let (addr, api) = serve::start_api(listen, state, stop.clone()).await?;
    let pipeline = PipelineConfig { clock: ClockMode::Event, ..pipeline };
    let (ended, stats, corrections) = match input {
        Input::Files(dir) => {
            println!("serving http://{addr} while replaying {}", dir.display());
            let source = NdjsonSource::open(dir, &Topic::default_names())?;
            let (dead_letters, derived) = (MemorySink::new(1_000), MemorySink::new(0));
            let outputs = Outputs { dead_letters: &dead_letters, derived: &derived };
            let pipeline = Pipeline::new(city, pipeline);
            let (ended, pipeline, _) = serve::run_pipeline(source, outputs, pipeline, &live, stop.clone()).await?;
            (ended, pipeline.stats(), pipeline.corrections())
        }
        Input::Kafka { config, options } => {
            let group = instance::group_of(&config.group_id, options.ownership);
            instance::status_line(&format!("serving http://{addr} while consuming from Kafka at {} (group {group})", config.brokers));
            if !options.ownership.is_whole() {
                instance::status_line(&format!("instance {} of active instances splitting the input: reads all of it, keeps its share", options.ownership));
            }
            if let Some(c) = &options.checkpoints {
                instance::status_line(&format!("checkpoints every {:?} in {}", c.interval, c.dir.display()));
            }
            let report = instance::run(city, pipeline, &config, live.clone(), stop.clone(), &options).await?;
            (report.ended, report.stats, report.corrections)
        }
        Input::Pod { config, options } => {
            instance::status_line(&format!("serving http://{addr} while consuming from Kafka at {} as pod {} of the deployment in {}", config.brokers, options.pod_index, options.deployment.checkpoints.display()));
            let report = crate::pod::run(city, pipeline, &config, live.clone(), stop.clone(), &options).await?;
            (report.ended, report.stats, report.corrections)
        }
    };
    report(&stats, corrections);
    if ended == Ended::Cut {
        println!("stopped at the cut, the state saved there: once every instance of the split has, run `egret rescale`");
    }
    // Serving on after a cut keeps a supervisor from restarting the instance into
    // the cut again; its checkpoint directory is free for `egret rescale`.
    if matches!(ended, Ended::InputEnd | Ended::Cut) && !exit_at_end {
        println!("{}; still serving http://{addr} — Ctrl-C stops", if ended == Ended::Cut { "stopped at the cut" } else { "input ended" });
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
    }
    let _ = stop_tx.send(true);
    api.await?;
    serve::flush_history(&history);
    Ok(())
}

fn report(stats: &Stats, corrections: u64) {
    println!(
        "input processed: {} events, {} dead letters, {} traversals, {} windows closed, {} corrections",
        stats.consumed.values().sum::<u64>(),
        stats.rejected.values().sum::<u64>(),
        stats.traversals,
        stats.windows_closed,
        corrections
    );
    for ((topic, reason), n) in &stats.rejected {
        println!("  dead-lettered {n:>6} {} from {}", reason.code(), topic.default_name());
    }
}
