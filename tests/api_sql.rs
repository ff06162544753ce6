//! `POST /api/v1/sql` over HTTP on a real run: the scripted scenario goes through
//! the embedded pipeline with a Parquet history archive attached, and an officer
//! asks the live tables, the history tables, and both joined.

mod support;

use egret_api::AppState;
use egret_api::auth::Role;
use serde_json::{Value, json};
use support::{Api, config, high_rate, scenario, token};

async fn api() -> Api {
    let sc = scenario();
    let config = egret_api::ApiConfig { history_dir: Some(sc.history_dir.clone()), ..config(high_rate(), None, None) };
    Api::start(AppState::with_config(sc.live.clone(), None, config, None).expect("state")).await
}

async fn sql(api: &Api, query: &str) -> Value {
    let reply = api.send(reqwest::Method::POST, "/api/v1/sql", Some(&token(Role::Police)), Some(("application/json", json!({ "sql": query }).to_string().into_bytes()))).await;
    assert_eq!(reply.status, 200, "{query}: {}", reply.text());
    reply.json()
}

fn count(answer: &Value) -> i64 {
    answer["rows"][0]["n"].as_i64().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slowest_segments_by_sql() {
    let api = api().await;
    let answer = sql(&api, "SELECT segment_id, mean_speed_kmh FROM segments ORDER BY mean_speed_kmh LIMIT 10").await;
    assert_eq!((answer["row_count"].as_u64(), answer["truncated"].as_bool()), (Some(10), Some(false)));
    assert_eq!(answer["columns"], json!([{"name": "segment_id", "type": "Utf8"}, {"name": "mean_speed_kmh", "type": "Float64"}]));
    let speeds: Vec<f64> = answer["rows"].as_array().expect("rows").iter().map(|r| r["mean_speed_kmh"].as_f64().expect("a speed: the run measured most segments")).collect();
    assert!(speeds.windows(2).all(|w| w[0] <= w[1]), "ascending: {speeds:?}");
    // The same answer as the typed endpoint gives (which rounds to 0.1 km/h).
    let segments = api.get("/api/v1/segments", None).await.json();
    let slowest = segments["segments"].as_array().expect("segments").iter().filter_map(|s| s["mean_speed_kmh"].as_f64()).fold(f64::INFINITY, f64::min);
    assert!((speeds[0] - slowest).abs() <= 0.05, "SQL's slowest {} vs the endpoint's {slowest}", speeds[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_violations_join_their_parquet_history() {
    let api = api().await;
    let live = count(&sql(&api, "SELECT count(*) AS n FROM violations").await);
    assert!(live > 0, "the scenario issues tickets");
    let archived = count(&sql(&api, "SELECT count(*) AS n FROM history_violations").await);
    assert_eq!(archived, live, "every ticket is archived once");
    let joined = sql(
        &api,
        "SELECT v.violation_id, v.kind, h.hour, h.evidence = v.evidence AS same_evidence \
         FROM violations v JOIN history_violations h ON v.violation_id = h.violation_id ORDER BY v.violation_id",
    )
    .await;
    let rows = joined["rows"].as_array().expect("rows");
    assert_eq!(rows.len() as i64, live);
    assert!(rows.iter().all(|r| r["same_evidence"] == true), "the archive holds the evidence as issued");
    assert!(rows.iter().all(|r| r["hour"].as_str().is_some_and(|h| h.starts_with("2026-11-29T23") || h.starts_with("2026-11-30T00"))), "UTC hours of the run: {rows:?}");
    let windows = count(&sql(&api, "SELECT count(*) AS n FROM history_segment_windows").await);
    assert!(windows > 0, "closed windows are archived");
}
