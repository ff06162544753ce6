//! `egret`: the command line. Each subcommand only parses its arguments and calls
//! the wiring in the `egret` library; see `egret --help`.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use egret::drive::{self, Pace};
use egret::serve;
use egret_api::AppState;
use egret_ingest::embedded::EmbeddedLog;
use egret_ingest::memory::MemorySink;
use egret_ingest::ndjson::{NdjsonSink, NdjsonSource};
use egret_model::Topic;
use egret_pipeline::runner::Ended;
use egret_pipeline::{ClockMode, LiveState, Pipeline, PipelineConfig};
use egret_simulator::{Noise, SimConfig, Simulator};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Monday 2026-11-30 07:45 in Xiamen (UTC+8): the start of the standard scenarios,
/// so they cover the morning rush.
const SCENARIO_START_MS: i64 = 1_795_995_900_000;

#[derive(Parser)]
#[command(name = "egret", version, about = "Real-time intelligent-transport streaming engine for Xiamen, Zhangzhou and Quanzhou")]
struct Cli {
    /// Directory holding city/*.json and rules.toml (default: the repo's data/).
    #[arg(long, global = true, env = "EGRET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Scenario {
    /// No device noise: every read arrives once, on time, correct.
    Clean,
    /// The noise of targets.md: missed, duplicate, misread, skewed, late, malformed.
    Noisy,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process, no broker: the simulator feeds the embedded log,
    /// the pipeline computes live speeds, the API serves them.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080", env = "EGRET_LISTEN")]
        listen: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Simulated traffic before now, replayed at once so the map is busy at start.
        #[arg(long, default_value = "10m", value_parser = egret::parse_duration_ms)]
        preroll: i64,
        /// realtime, or xN to run N times faster than real time.
        #[arg(long, default_value = "realtime")]
        pace: Pace,
        /// How long to simulate before stopping.
        #[arg(long, default_value = "24h", value_parser = egret::parse_duration_ms)]
        duration: i64,
    },
    /// Generate a seeded scenario as NDJSON: <topic>.ndjson per input topic plus
    /// truth.ndjson with the ground truth.
    Simulate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_enum, default_value = "clean")]
        scenario: Scenario,
        /// Start instant in epoch ms, or "now" (default: Monday 2026-11-30 07:45 CST).
        #[arg(long)]
        start: Option<String>,
        #[arg(long, default_value = "15m", value_parser = egret::parse_duration_ms)]
        duration: i64,
        /// fast, realtime, or xN.
        #[arg(long, default_value = "fast")]
        pace: Pace,
        /// Private-vehicle trip starts per minute at the demand profile's 1.0.
        #[arg(long)]
        demand: Option<f64>,
    },
    /// Run the pipeline over recorded NDJSON input (from `egret simulate`) and serve
    /// the API until Ctrl-C (or until the input ends, with --exit-at-end).
    Run {
        #[arg(long)]
        input: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080", env = "EGRET_LISTEN")]
        listen: String,
        /// Stop when the input ends and print a summary.
        #[arg(long)]
        exit_at_end: bool,
    },
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let city = egret::load_city(cli.data_dir.as_deref())?;
    match cli.command {
        Command::Demo { listen, seed, preroll, pace, duration } => demo(city, &listen, seed, preroll, pace, duration).await,
        Command::Simulate { out, seed, scenario, start, duration, pace, demand } => {
            let start_ms = match start.as_deref() {
                None => SCENARIO_START_MS,
                Some("now") => now_ms(),
                Some(ms) => ms.parse().with_context(|| format!("--start {ms:?}: epoch milliseconds or \"now\""))?,
            };
            let mut config = SimConfig::clean(seed, start_ms, duration);
            if let Scenario::Noisy = scenario {
                config.noise = Noise::noisy();
            }
            if let Some(d) = demand {
                config.demand_per_min = d;
            }
            simulate(city, config, &out, pace).await
        }
        Command::Run { input, listen, exit_at_end } => run(city, &input, &listen, exit_at_end).await,
    }
}

async fn demo(city: Arc<egret_model::CityModel>, listen: &str, seed: u64, preroll: i64, pace: Pace, duration: i64) -> anyhow::Result<()> {
    let metrics = serve::install_metrics();
    let (stop_tx, stop) = serve::stop_on_ctrl_c();
    let live = Arc::new(LiveState::new(city.clone()));
    let (addr, api) = serve::start_api(listen, AppState::new(live.clone(), metrics), stop.clone()).await?;
    let now = now_ms();
    println!("Egret demo: {} segments, {} readers, {} routes, {} lots", city.segments.len(), city.readers.len(), city.routes.len(), city.lots.len());
    println!("serving http://{addr}  (try /api/v1/segments, /api/v1/network, /metrics); Ctrl-C stops");

    let log = EmbeddedLog::new(4, 50_000);
    let clock = if pace == Pace::Accelerated(1.0) { ClockMode::Wall } else { ClockMode::Event };
    let pipeline = Pipeline::new(city.clone(), PipelineConfig { clock, ..PipelineConfig::default() });
    let topics: Vec<&str> = Topic::ALL.iter().map(|t| t.default_name()).collect();
    let source = log.subscribe(&topics, Duration::from_millis(200));
    let dead_letters = Arc::new(MemorySink::new(1_000));
    let pipe = {
        let (live, stop, dead_letters) = (live.clone(), stop.clone(), dead_letters.clone());
        tokio::spawn(async move { serve::run_pipeline(source, dead_letters.as_ref(), pipeline, &live, stop).await })
    };
    let mut sim = Simulator::new(city, SimConfig::clean(seed, now - preroll, preroll + duration));
    let feed = {
        let log = log.clone();
        let mut stop = stop.clone();
        async move {
            tokio::select! {
                r = drive::drive(&mut sim, &log, pace, now, false, |_| {}) => r.map(|_| ()),
                _ = stop.wait_for(|s| *s) => Ok(()),
            }
        }
    };
    feed.await?;
    log.close();
    let _ = stop_tx.send(true);
    pipe.await??;
    api.await?;
    Ok(())
}

async fn simulate(city: Arc<egret_model::CityModel>, config: SimConfig, out: &std::path::Path, pace: Pace) -> anyhow::Result<()> {
    let sink = NdjsonSink::create(out)?;
    let truth_path = out.join("truth.ndjson");
    let mut truth = std::io::BufWriter::new(std::fs::File::create(&truth_path).with_context(|| format!("creating {}", truth_path.display()))?);
    let mut truth_error = None;
    let seed = config.seed;
    let mut sim = Simulator::new(city, config);
    let sent = drive::drive(&mut sim, &sink, pace, i64::MIN, true, |records| {
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
    println!("wrote {sent} events (seed {seed}) and the ground truth to {}", out.display());
    Ok(())
}

async fn run(city: Arc<egret_model::CityModel>, input: &std::path::Path, listen: &str, exit_at_end: bool) -> anyhow::Result<()> {
    let metrics = serve::install_metrics();
    let (stop_tx, stop) = serve::stop_on_ctrl_c();
    let live = Arc::new(LiveState::new(city.clone()));
    let (addr, api) = serve::start_api(listen, AppState::new(live.clone(), metrics), stop.clone()).await?;
    println!("serving http://{addr} while replaying {}", input.display());
    let topics: Vec<&str> = Topic::ALL.iter().map(|t| t.default_name()).collect();
    let source = NdjsonSource::open(input, &topics)?;
    let pipeline = Pipeline::new(city, PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() });
    let dead_letters = MemorySink::new(1_000);
    let (ended, pipeline) = serve::run_pipeline(source, &dead_letters, pipeline, &live, stop.clone()).await?;
    let stats = pipeline.stats();
    println!(
        "input processed: {} events, {} dead letters, {} traversals, {} windows closed, {} corrections",
        stats.consumed.values().sum::<u64>(),
        dead_letters.total(),
        stats.traversals,
        stats.windows_closed,
        pipeline.corrections()
    );
    for ((topic, reason), n) in &stats.rejected {
        println!("  dead-lettered {n:>6} {} from {}", reason.code(), topic.default_name());
    }
    if ended == Ended::InputEnd && !exit_at_end {
        println!("input ended; still serving http://{addr} — Ctrl-C stops");
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
    }
    let _ = stop_tx.send(true);
    api.await?;
    Ok(())
}
