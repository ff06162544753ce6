//! The HTTP API of contract-v1 §3 (axum): the road network, devices, live segment
//! speeds and their history, parking, incidents, buses, headways and predicted
//! arrivals, health and Prometheus metrics, all on one port.
//!
//! `router` builds the app for tests (`oneshot`); `serve` runs it on a listener
//! until a shutdown future resolves, so tests can bind port 0.

mod answers;
pub mod audit;
pub mod auth;
mod error;
pub mod guard;
mod gtfs;
mod hotlists;
pub mod ingest;
pub mod input;
pub mod keys;
mod network;
pub mod openapi;
mod parking;
mod route;
mod segments;
mod sql;
mod token;
mod transit;
mod violations;
mod web;
mod ws;

pub use error::ApiError;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use egret_pipeline::LiveState;
use egret_query::QueryEngine;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use std::sync::Arc;
use tokio::net::TcpListener;

/// How the API is secured and where it keeps what must survive a restart.
pub struct ApiConfig {
    pub token_secret: Vec<u8>,
    pub pseudonym_secret: Vec<u8>,
    /// NDJSON audit log; `None` keeps it in memory only.
    pub audit_path: Option<PathBuf>,
    /// Where hotlist edits are saved; `None` keeps them in memory only.
    pub hotlists_path: Option<PathBuf>,
    pub rate: guard::RateLimit,
    pub request_timeout: Duration,
    /// The Parquet history a `HistoryArchive` writes, for the `history_*` tables.
    pub history_dir: Option<PathBuf>,
    /// Typed answers rendered once per live-state version and shared; off, every
    /// request renders its own (the baseline `egret bench` compares against).
    pub answer_cache: bool,
}

impl ApiConfig {
    /// Fresh random keys and nothing on disk: for tests, and for tools that
    /// serve no one but themselves.
    pub fn ephemeral() -> Self {
        let mut secrets = [0u8; 64];
        // Without randomness a zero key would be guessable: better to stop.
        getrandom::fill(&mut secrets).unwrap_or_else(|e| panic!("no randomness for API keys: {e}"));
        ApiConfig {
            token_secret: secrets[..32].to_vec(),
            pseudonym_secret: secrets[32..].to_vec(),
            audit_path: None,
            hotlists_path: None,
            rate: guard::RateLimit::default(),
            request_timeout: Duration::from_secs(10),
            history_dir: None,
            answer_cache: true,
        }
    }
}

/// Keys, audit and limits, shared by every request.
pub struct Security {
    pub tokens: auth::TokenKey,
    pub pseudonyms: keys::Pseudonymizer,
    pub audit: audit::AuditLog,
    pub limiter: guard::Limiter,
    pub hotlists_path: Option<PathBuf>,
    /// Held from reading the board to renaming the file: two edits saved at once
    /// would otherwise share one temporary file, and the older board could land last.
    pub hotlists_saving: std::sync::Mutex<()>,
}

/// Everything a handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub live: Arc<LiveState>,
    pub query: QueryEngine,
    pub metrics: Option<PrometheusHandle>,
    pub security: Arc<Security>,
    /// Where `POST /api/v1/ingest` appends; `None` where the input is a replay.
    pub ingest: Option<Arc<dyn ingest::IngestTarget>>,
    /// The GeoJSON of the network never changes while running: rendered once.
    network_geojson: Arc<String>,
    openapi: Arc<String>,
    /// The GTFS feeds' timetable and zip, built once, and their header clock.
    gtfs: Arc<gtfs::GtfsState>,
    /// Route guidance's graph of the network: fixed while running, built once.
    road_graph: Arc<egret_model::city::RoadGraph>,
    /// WebSocket channels rendered once per live-state version for every client.
    ws_entries: Arc<ws::EntryCache>,
    /// Typed answers rendered once per live-state version for every request.
    answers: Arc<answers::AnswerCache>,
}

impl AppState {
    /// With ephemeral keys and no ingest: for tests.
    pub fn new(live: Arc<LiveState>, metrics: Option<PrometheusHandle>) -> Self {
        Self::with_config(live, metrics, ApiConfig::ephemeral(), None).unwrap_or_else(|e| unreachable!("no files to open: {e}"))
    }

    pub fn with_config(
        live: Arc<LiveState>,
        metrics: Option<PrometheusHandle>,
        config: ApiConfig,
        ingest: Option<Arc<dyn ingest::IngestTarget>>,
    ) -> std::io::Result<Self> {
        let audit = match &config.audit_path {
            Some(path) => audit::AuditLog::open(path)?,
            None => audit::AuditLog::in_memory(),
        };
        let security = Security {
            tokens: auth::TokenKey::from_secret(&config.token_secret),
            pseudonyms: keys::Pseudonymizer::new(&config.pseudonym_secret),
            audit,
            limiter: guard::Limiter::new(config.rate, config.request_timeout),
            hotlists_path: config.hotlists_path,
            hotlists_saving: std::sync::Mutex::new(()),
        };
        let network_geojson = Arc::new(network::geojson(live.city()));
        let road_graph = Arc::new(egret_model::city::RoadGraph::new(live.city()));
        Ok(AppState {
            query: QueryEngine::new(live.clone(), config.history_dir.clone()),
            live,
            metrics,
            security: Arc::new(security),
            ingest,
            network_geojson,
            openapi: Arc::new(openapi::document()),
            gtfs: gtfs::state(),
            road_graph,
            ws_entries: Arc::default(),
            answers: Arc::new(answers::AnswerCache::new(config.answer_cache)),
        })
    }
}

pub use egret_model::time::now_ms;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/network", get(network::network))
        .route("/api/v1/readers", get(network::readers))
        .route("/api/v1/cameras", get(network::cameras))
        .route("/api/v1/segments", get(segments::latest))
        .route("/api/v1/segments/{id}/history", get(segments::history))
        .route("/api/v1/parking", get(parking::lots))
        .route("/api/v1/incidents", get(transit::incidents))
        .route("/api/v1/buses", get(transit::buses))
        .route("/api/v1/routes", get(transit::routes))
        .route("/api/v1/routes/{id}/headways", get(transit::headways))
        .route("/api/v1/stops/{id}/arrivals", get(transit::arrivals))
        .route("/api/v1/route", get(route::route))
        .route("/gtfs/static.zip", get(gtfs::static_zip))
        .route("/gtfs-rt/vehicle-positions", get(gtfs::vehicle_positions))
        .route("/gtfs-rt/trip-updates", get(gtfs::trip_updates))
        .route("/api/v1/violations", get(violations::list))
        .route("/api/v1/violations/{id}", get(violations::one))
        .route("/api/v1/hotlist-hits", get(violations::possible_hits))
        .route("/api/v1/hotlists", get(hotlists::all))
        .route("/api/v1/hotlists/{name}", get(hotlists::get).put(hotlists::put).delete(hotlists::delete))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/sql", post(sql::sql))
        .route("/api/v1/ingest", post(ingest::ingest).layer(DefaultBodyLimit::max(ingest::MAX_BODY_BYTES)))
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/readyz", get(segments::ready))
        .route("/metrics", get(metrics))
        // The dashboard: public static files, not API endpoints (so not in /openapi.json).
        .route("/", get(web::index))
        .route("/web/{*path}", get(web::asset))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError { status: axum::http::StatusCode::METHOD_NOT_ALLOWED, code: "method_not_allowed", message: "method not allowed here".into() }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::guard))
        .with_state(state)
}

/// Request bodies beyond this are refused with 413 (ingest has its own limit).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Serves until `shutdown` resolves.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let security = state.security.clone();
    let sweeper = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            security.limiter.forget_idle_clients();
        }
    });
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    sweeper.abort();
    served
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Entries at or after this instant.
    since_ms: Option<i64>,
    /// The newest this many (default 1000, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntries {
    pub entries: Vec<audit::AuditEntry>,
}

/// The audit log of police reads, newest last (admin).
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", params(AuditQuery), security(("bearer" = [])),
    responses((status = 200, body = AuditEntries), (status = 400, body = error::ErrorBody), (status = 401, body = error::ErrorBody), (status = 403, body = error::ErrorBody)))]
async fn audit_log(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: auth::Caller,
    query: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<AuditEntries>, ApiError> {
    caller.require(&[auth::Role::Admin])?;
    let axum::extract::Query(q) = query?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=audit::KEPT_IN_MEMORY).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be 1 to {}", audit::KEPT_IN_MEMORY)));
    }
    let entries = state.security.audit.recent(q.since_ms.unwrap_or(i64::MIN), limit);
    Ok(axum::Json(AuditEntries { entries }))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves.
    pub status: &'static str,
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// Prometheus text: throughput, dead letters by reason, latencies, watermark.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    let snapshot = state.live.snapshot();
    let with_data = snapshot.latest.iter().filter(|w| w.is_some()).count();
    let mut text = state.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    text.push_str(&format!(
        "# TYPE egret_watermark_ms gauge\negret_watermark_ms {}\n# TYPE egret_segments_with_data gauge\negret_segments_with_data {with_data}\n\
         # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n",
        snapshot.as_of_ms,
        resident_set_bytes()
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// This process's resident set size (`VmRSS`), 0 where /proc is not there: the
/// memory an operator watches for growth (and `egret soak` samples).
pub fn resident_set_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests;
