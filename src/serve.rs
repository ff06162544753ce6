//! Running the pipeline and the API together in one process.

use egret_api::AppState;
use egret_ingest::{IngestError, Sink, Source};
use egret_pipeline::runner::{self, Ended, Outputs};
use egret_pipeline::{LiveState, Pipeline};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Installs the process-wide Prometheus recorder (once; later calls reuse nothing).
pub fn install_metrics() -> Option<PrometheusHandle> {
    PrometheusBuilder::new().install_recorder().ok()
}

/// Binds the API and serves it in the background until `stop` flips to true.
pub async fn start_api(listen: &str, state: AppState, mut stop: watch::Receiver<bool>) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = egret_api::serve(listener, state, shutdown).await {
            tracing::error!("API server stopped: {e}");
        }
    });
    Ok((addr, task))
}

/// Runs the pipeline over `source` until it ends or `stop` flips to true.
pub async fn run_pipeline<S: Source, D: Sink, E: Sink>(
    mut source: S,
    outputs: Outputs<'_, D, E>,
    mut pipeline: Pipeline,
    live: &Arc<LiveState>,
    mut stop: watch::Receiver<bool>,
) -> Result<(Ended, Pipeline, S), IngestError> {
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let ended = runner::run(&mut source, &outputs, &mut pipeline, live, shutdown).await?;
    Ok((ended, pipeline, source))
}

/// A watch channel flipped by Ctrl-C.
pub fn stop_on_ctrl_c() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let ctrl_c = tx.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping…");
            let _ = ctrl_c.send(true);
        }
    });
    (tx, rx)
}
