//! The HTTP API of contract-v1 §3 (axum): the road network, devices, live segment
//! speeds and their history, parking, incidents, buses, headways and predicted
//! arrivals, health and Prometheus metrics, all on one port.
//!
//! `router` builds the app for tests (`oneshot`); `serve` runs it on a listener
//! until a shutdown future resolves, so tests can bind port 0.

mod error;
mod network;
mod parking;
mod segments;
mod transit;

pub use error::ApiError;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use egret_pipeline::LiveState;
use egret_query::QueryEngine;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Everything a handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub live: Arc<LiveState>,
    pub query: QueryEngine,
    pub metrics: Option<PrometheusHandle>,
    /// The GeoJSON of the network never changes while running: rendered once.
    network_geojson: Arc<String>,
}

impl AppState {
    pub fn new(live: Arc<LiveState>, metrics: Option<PrometheusHandle>) -> Self {
        let network_geojson = Arc::new(network::geojson(live.city()));
        AppState { query: QueryEngine::new(live.clone()), live, metrics, network_geojson }
    }
}

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
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/readyz", get(segments::ready))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError { status: axum::http::StatusCode::METHOD_NOT_ALLOWED, code: "method_not_allowed", message: "method not allowed here".into() }
        })
        .with_state(state)
}

/// Serves until `shutdown` resolves.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    let snapshot = state.live.snapshot();
    let with_data = snapshot.latest.iter().filter(|w| w.is_some()).count();
    let mut text = state.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    text.push_str(&format!(
        "# TYPE egret_watermark_ms gauge\negret_watermark_ms {}\n# TYPE egret_segments_with_data gauge\negret_segments_with_data {with_data}\n",
        snapshot.as_of_ms
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

#[cfg(test)]
mod tests;
