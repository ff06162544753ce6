//! The GTFS feeds as an outside consumer sees them: a short scripted scenario with
//! buses runs through the embedded pipeline, the API serves it, and the static zip
//! and both GTFS-realtime feeds are fetched over HTTP (each realtime feed twice),
//! saved, and judged by `tests/gtfs/validate.py` with Google's official bindings,
//! the static GTFS validator and a GTFS-realtime validator: any ERROR fails.
//!
//! The Python side runs in the venv `.ci/python-venv.sh` makes
//! (`$HOME/.cache/egret/venv`, or the interpreter in `EGRET_PYTHON`). Without it
//! this test fails and says how to make it: a skipped check would pass unseen.
//! The fetched feeds are kept when it fails, or always with `EGRET_GTFS_KEEP` set.

#[path = "support/scratch.rs"]
mod scratch;
mod venv;

use scratch::scratch_dir;
use venv::python;
use egret::drive::{self, DriveOptions};
use egret_api::AppState;
use egret_ingest::embedded::EmbeddedLog;
use egret_ingest::memory::MemorySink;
use egret_model::Topic;
use egret_pipeline::runner::{self, Outputs};
use egret_pipeline::{ClockMode, LiveState, Pipeline, PipelineConfig};
use egret_simulator::{SimConfig, Simulator};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const START: i64 = 1_795_995_900_000; // Monday 2026-11-30 07:45 CST

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtfs_feeds_pass_the_official_bindings_and_validators() {
    let python = python();
    assert!(
        python.exists(),
        "no Python for the GTFS validators at {}: run .ci/python-venv.sh to create the venv (or point EGRET_PYTHON at an interpreter with gtfs-realtime-bindings and gtfs-rt-validator)",
        python.display()
    );

    let city = egret::load_city(None).expect("city data");
    let log = EmbeddedLog::new(4, 50_000);
    let topics: Vec<&str> = Topic::ALL.iter().map(|t| t.default_name()).collect();
    let mut source = log.subscribe(&topics, Duration::from_millis(50));
    let live = Arc::new(LiveState::new(city.clone()));
    let mut pipeline = Pipeline::new(city.clone(), PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() });
    // Scripted: a trip that never runs is among them, for a CANCELED update.
    let config = SimConfig { scripted: true, ..SimConfig::clean(7, START, 20 * 60_000) };
    let producer = {
        let (log, city, config) = (log.clone(), city.clone(), config.clone());
        tokio::spawn(async move {
            let mut sim = Simulator::new(city, config);
            drive::drive(&mut sim, &log, DriveOptions::fast(), |_| {}).await.expect("send");
            log.close();
        })
    };
    let (dead_letters, derived) = (MemorySink::new(10), MemorySink::new(0));
    runner::run(&mut source, &Outputs { dead_letters: &dead_letters, derived: &derived }, &mut pipeline, &live, std::future::pending()).await.expect("runs");
    producer.await.expect("producer");
    assert!(!live.buses().is_empty(), "the scenario put no bus on the map");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(egret_api::serve(listener, AppState::new(live.clone(), None), std::future::pending()));
    let dir = scratch_dir("gtfs");
    let fetch = |path: &'static str, content_type: &'static str, file: String| {
        let dir = dir.clone();
        async move {
            let response = reqwest::get(format!("http://{addr}{path}")).await.expect("GET");
            assert_eq!(response.status().as_u16(), 200, "{path}");
            let got = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            assert_eq!(got.as_deref(), Some(content_type), "{path}");
            let body = response.bytes().await.expect("body");
            assert!(!body.is_empty(), "{path} is empty");
            std::fs::write(dir.join(file), &body).expect("save");
        }
    };
    fetch("/gtfs/static.zip", "application/zip", "static.zip".into()).await;
    for round in ["", "-2"] {
        fetch("/gtfs-rt/vehicle-positions", "application/x-protobuf", format!("vehicle-positions{round}.pb")).await;
        fetch("/gtfs-rt/trip-updates", "application/x-protobuf", format!("trip-updates{round}.pb")).await;
    }
    server.abort();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gtfs/validate.py");
    let (python, dir_arg) = (python.clone(), dir.clone());
    let output = tokio::task::spawn_blocking(move || std::process::Command::new(&python).arg(&script).arg(&dir_arg).output())
        .await
        .expect("join")
        .expect("run validate.py");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "tests/gtfs/validate.py failed ({}); the feeds are kept in {}", output.status, dir.display());
    // EGRET_GTFS_KEEP keeps them after a pass too, to look at by hand.
    if std::env::var_os("EGRET_GTFS_KEEP").is_some() {
        println!("the feeds are kept in {}", dir.display());
    } else {
        std::fs::remove_dir_all(&dir).ok();
    }
}
