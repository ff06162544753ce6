//! Running the pipeline and the API together in one process.

use anyhow::Context;
use egret_api::guard::RateLimit;
use egret_api::ingest::IngestTarget;
use egret_api::{ApiConfig, AppState, keys};
use egret_query::history::HistoryArchive;
use egret_pipeline::enforce::hotlist::HotlistEntry;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;
use egret_ingest::{IngestError, Sink, Source};
use egret_pipeline::runner::{self, Ended, Outputs};
use egret_pipeline::{LiveState, Pipeline};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Where a running Egret keeps what must outlive the process, and how its API is
/// secured: keys (from the environment or created in the state directory), the
/// audit log and saved hotlist edits.
pub struct ServeOptions {
    pub state_dir: PathBuf,
    pub rate_per_second: u32,
    /// Typed answers rendered once per live-state version (off only for a baseline).
    pub answer_cache: bool,
}

impl ServeOptions {
    pub fn api_config(&self) -> anyhow::Result<ApiConfig> {
        let dir = &self.state_dir;
        let token_secret = keys::load_or_create(keys::TOKEN_KEY_ENV, dir, "token.key").with_context(|| format!("token key in {}", dir.display()))?;
        let pseudonym_secret =
            keys::load_or_create(keys::PSEUDONYM_KEY_ENV, dir, "pseudonym.key").with_context(|| format!("pseudonym key in {}", dir.display()))?;
        let per_second = NonZeroU32::new(self.rate_per_second).context("--rate-limit must be at least 1")?;
        Ok(ApiConfig {
            token_secret,
            pseudonym_secret,
            audit_path: Some(dir.join("audit.ndjson")),
            hotlists_path: Some(dir.join("hotlists.json")),
            rate: RateLimit { per_second, burst: per_second.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN)) },
            request_timeout: Duration::from_secs(10),
            history_dir: Some(self.history_dir()),
            answer_cache: self.answer_cache,
        })
    }

    /// Closed windows and tickets as Parquet, hourly partitions.
    pub fn history_dir(&self) -> PathBuf {
        self.state_dir.join("history")
    }

    /// Hotlist edits saved by the API on an earlier run, if any.
    pub fn saved_hotlists(&self) -> anyhow::Result<Vec<(String, Vec<HotlistEntry>)>> {
        let path = self.state_dir.join("hotlists.json");
        if !path.exists() {
            return Ok(Vec::new());
        }
        crate::commands::load_hotlists(&path)
    }
}

/// The API's state for a live state, with the keys and files of `options`, and
/// the Parquet history the live state now writes to (flush it before exiting).
pub fn app_state(
    live: &Arc<LiveState>,
    metrics: Option<PrometheusHandle>,
    options: &ServeOptions,
    ingest: Option<Arc<dyn IngestTarget>>,
) -> anyhow::Result<(AppState, Arc<HistoryArchive>)> {
    let config = options.api_config()?;
    let archive = HistoryArchive::open(options.history_dir(), live.city().clone())
        .with_context(|| format!("opening the Parquet history in {}", options.history_dir().display()))?;
    let archive = Arc::new(archive);
    live.set_archive(archive.clone());
    let state = AppState::with_config(live.clone(), metrics, config, ingest).with_context(|| format!("opening the audit log in {}", options.state_dir.display()))?;
    Ok((state, archive))
}

/// Writes what the history archive still buffers, so that a stopped process
/// leaves every closed window and ticket it saw in Parquet.
pub fn flush_history(archive: &HistoryArchive) {
    match archive.flush() {
        Ok(()) => tracing::info!("history written to {}", archive.dir().display()),
        Err(e) => tracing::error!("history not fully written to {}: {e}", archive.dir().display()),
    }
}

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

/// The pipeline's own threads, apart from the runtime that serves the API and
/// pushes. A batch is milliseconds of CPU without an await: on shared worker
/// threads every request and push queued behind it waits that long, while on
/// threads of their own the OS shares the cores between them by time slices.
pub struct PipelineThreads {
    handle: tokio::runtime::Handle,
    /// Shut down without waiting when dropped, which may be in async code.
    runtime: Option<tokio::runtime::Runtime>,
}

impl PipelineThreads {
    pub fn new(threads: usize) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("egret-pipeline")
            .enable_all()
            .build()
            .context("starting the pipeline's threads")?;
        Ok(PipelineThreads { handle: runtime.handle().clone(), runtime: Some(runtime) })
    }

    /// Runs `task` on the pipeline's threads; its handle can be awaited anywhere.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }
}

impl Drop for PipelineThreads {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
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
    let stop = tx.clone();
    tokio::spawn(async move {
        // SIGTERM is how Docker, Kubernetes and systemd ask a process to stop: it
        // gets the same clean stop as Ctrl-C (flush, commit offsets, write history).
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops cleanly");
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("\nstopping…");
                let _ = stop.send(true);
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("\nstopping…");
        let _ = stop.send(true);
    });
    (tx, rx)
}
