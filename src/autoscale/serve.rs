//! The controller's own HTTP endpoint: `/metrics` for Prometheus (the instance
//! count, the lag it acts on, its rescales and failed rounds) and `/healthz` for
//! the liveness probe, which fails once no round has finished for a while: a
//! controller stuck in a call is restarted, and carries on from the layout.

use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::watch;

/// When the last round finished (wall clock, ms).
#[derive(Clone, Default)]
pub struct Heartbeat(Arc<AtomicI64>);

impl Heartbeat {
    pub fn beat(&self) {
        self.0.store(egret_model::time::now_ms(), Ordering::Relaxed);
    }

    fn age_ms(&self) -> i64 {
        egret_model::time::now_ms() - self.0.load(Ordering::Relaxed)
    }
}

/// Serves until `stop` flips; returns the address bound.
pub async fn start(listen: &str, metrics: Option<PrometheusHandle>, heartbeat: Heartbeat, stale_after_ms: i64, mut stop: watch::Receiver<bool>) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new()
        .route("/metrics", get(move || async move { metrics.as_ref().map(PrometheusHandle::render).unwrap_or_default() }))
        .route(
            "/healthz",
            get(move || async move {
                let age = heartbeat.age_ms();
                if age <= stale_after_ms { (StatusCode::OK, "ok".to_owned()) } else { (StatusCode::SERVICE_UNAVAILABLE, format!("no round finished for {} s", age / 1000)) }
            }),
        );
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
            tracing::error!("autoscale endpoint stopped: {e}");
        }
    });
    Ok(addr)
}
