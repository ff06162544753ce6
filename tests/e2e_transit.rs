//! The standard scripted scenario through the embedded pipeline, then what
//! commuters and dispatchers read over HTTP: the bridge crash among the incidents,
//! buses with predicted arrivals, the routes (intercity ones included), headways
//! with the bunched pair and the gap left by the trip that never ran, and a stop's
//! arrivals in time order; unknown routes and stops are 404s.

use egret::drive::{self, DriveOptions};
use egret_api::AppState;
use egret_ingest::embedded::EmbeddedLog;
use egret_ingest::memory::MemorySink;
use egret_model::Topic;
use egret_pipeline::runner::{self, Outputs};
use egret_pipeline::{ClockMode, LiveState, Pipeline, PipelineConfig};
use egret_simulator::{SimConfig, Simulator, TruthRecord};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const START: i64 = 1_795_995_900_000; // Monday 2026-11-30 07:45 CST

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_buses_headways_and_arrivals_over_http() {
    let city = egret::load_city(None).expect("city data");
    let log = EmbeddedLog::new(4, 50_000);
    let topics: Vec<&str> = Topic::ALL.iter().map(|t| t.default_name()).collect();
    let mut source = log.subscribe(&topics, Duration::from_millis(50));
    let live = Arc::new(LiveState::new(city.clone()));
    let mut pipeline = Pipeline::new(city.clone(), PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() });
    let config = SimConfig { scripted: true, ..SimConfig::clean(5, START, 24 * 60_000) };
    let producer = {
        let (log, city, config) = (log.clone(), city.clone(), config.clone());
        tokio::spawn(async move {
            let mut sim = Simulator::new(city, config);
            let mut truth = Vec::new();
            drive::drive(&mut sim, &log, DriveOptions::fast(), |r| truth.extend(r)).await.expect("send");
            log.close();
            truth
        })
    };
    let (dead_letters, derived) = (MemorySink::new(10), MemorySink::new(0));
    runner::run(&mut source, &Outputs { dead_letters: &dead_letters, derived: &derived }, &mut pipeline, &live, std::future::pending()).await.expect("runs");
    let truth = producer.await.expect("producer");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Headways are for dispatchers; a dispatcher's token also reads every public endpoint.
    let config = egret_api::ApiConfig::ephemeral();
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let token = egret_api::auth::TokenKey::from_secret(&config.token_secret).issue("dispatcher-1", egret_api::auth::Role::Dispatcher, now_s, 3600);
    let state = AppState::with_config(live.clone(), None, config, None).expect("state");
    let server = tokio::spawn(egret_api::serve(listener, state, std::future::pending()));
    let client = reqwest::Client::new();
    let get = |path: String| {
        let request = client.get(format!("http://{addr}{path}")).bearer_auth(&token);
        async move {
        let response = request.send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("json"))
        }
    };

    // The crash on the bridge: detected, and cleared once traffic flowed again.
    let crashed = truth.iter().find_map(|r| if let TruthRecord::Incident { segment_id, .. } = r { Some(segment_id.clone()) } else { None }).expect("scripted crash");
    let (status, incidents) = get("/api/v1/incidents".into()).await;
    assert_eq!(status, 200);
    let all: Vec<&Value> = incidents["incidents"].as_array().into_iter().chain(incidents["recently_cleared"].as_array()).flatten().collect();
    assert!(all.iter().any(|i| i["segment_id"] == crashed.as_str() && i["kind"] == "stopped_traffic"), "crash on {crashed} not among {all:?}");

    // Buses with predictions, each bounded and in the future of its report.
    let (_, buses) = get("/api/v1/buses".into()).await;
    let buses = buses["buses"].as_array().expect("buses").clone();
    assert!(buses.len() > 20, "{} buses on the map", buses.len());
    let predicted: Vec<&Value> = buses.iter().flat_map(|b| b["next_stops"].as_array().into_iter().flatten()).collect();
    assert!(!predicted.is_empty());
    for b in &buses {
        for e in b["next_stops"].as_array().into_iter().flatten() {
            assert!(e["predicted_ms"].as_i64() >= b["ts_ms"].as_i64(), "{e} before its report");
            assert!(e["early_ms"].as_i64().is_some_and(|v| v > 0) && e["late_ms"].as_i64().is_some_and(|v| v > 0));
        }
    }

    // Routes, intercity included, and headways.
    let (_, routes) = get("/api/v1/routes".into()).await;
    let routes = routes["routes"].as_array().expect("routes").clone();
    assert_eq!(routes.len(), city.routes.len());
    let intercity: Vec<&str> = routes.iter().filter(|r| r["kind"] == "intercity").filter_map(|r| r["route_id"].as_str()).collect();
    assert!(intercity.len() >= 4, "{intercity:?}");
    let mut statuses = Vec::new();
    for r in &routes {
        let id = r["route_id"].as_str().expect("id");
        let (status, h) = get(format!("/api/v1/routes/{id}/headways")).await;
        assert_eq!(status, 200);
        for e in h["headways"].as_array().into_iter().flatten() {
            statuses.push((id.to_owned(), e["status"].as_str().unwrap_or_default().to_owned()));
        }
        if h["ghost_trips"].as_array().is_some_and(|g| !g.is_empty()) {
            statuses.push((id.to_owned(), "ghost_trip".into()));
        }
    }
    assert!(statuses.iter().any(|(r, s)| intercity.contains(&r.as_str()) && s == "bunched"), "the bunched intercity pair: {statuses:?}");
    assert!(statuses.iter().any(|(_, s)| s == "ghost_trip"), "the trip that never ran");

    // A stop's arrivals come in time order.
    let stop = predicted[0]["stop_id"].as_str().expect("stop id").to_owned();
    let (status, a) = get(format!("/api/v1/stops/{stop}/arrivals")).await;
    assert_eq!(status, 200);
    let times: Vec<i64> = a["arrivals"].as_array().expect("arrivals").iter().filter_map(|x| x["predicted_ms"].as_i64()).collect();
    assert!(!times.is_empty() && times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    for path in ["/api/v1/routes/NOPE/headways", "/api/v1/stops/NOPE/arrivals", "/api/v1/buses?route=NOPE"] {
        let (status, body) = get(path.into()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{path}");
    }
    server.abort();
}
