//! Typed API endpoints under load while the pipeline ingests: `egret demo` runs
//! as a child process (simulator, pipeline and API, on 127.0.0.1 only), and this
//! process sends it GETs of the public endpoints from many connections at once.
//!
//! The child's CPU is read from `/proc/<pid>/stat` in two phases of equal length,
//! ingest alone and then ingest plus requests: the API's share of the cores is
//! the difference, so requests per second per core exclude the pipeline's work.
//! The ingest rate is the child's own `egret_events_consumed_total`. The two phases
//! rarely ingest at exactly the same rate (catching up after the pre-roll, or
//! slowed down by the requests on a saturated machine), so the ingest's cores are
//! scaled by the events each phase got through before they are subtracted.

use super::measure::{cpu_seconds_of, latency_histogram, quantile_ms, summary_ms};
use anyhow::Context;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Fewer API cores than this are noise in the difference of two phases.
const MEASURABLE_CORES: f64 = 0.05;

const ENDPOINTS: [&str; 4] = ["/api/v1/segments", "/api/v1/parking", "/api/v1/incidents", "/api/v1/buses"];

pub struct ApiLoad {
    pub requests_per_s: f64,
    /// Cores the API used beyond what ingest alone used at the same rate.
    pub api_cores: f64,
    pub ingest_per_s: f64,
    pub errors: u64,
    pub latency: hdrhistogram::Histogram<u64>,
}

impl ApiLoad {
    /// NaN when the API's cores are too few to tell from the ingest's variation.
    pub fn per_core(&self) -> f64 {
        if self.api_cores < MEASURABLE_CORES { f64::NAN } else { self.requests_per_s / self.api_cores }
    }

    pub fn p99_ms(&self) -> f64 {
        quantile_ms(&self.latency, 0.99)
    }

    pub fn describe(&self) -> String {
        let tail = format!("{}; {} errors; while ingesting {:.0} events/s", summary_ms(&self.latency), self.errors, self.ingest_per_s);
        if self.per_core().is_nan() {
            format!(
                "not measurable: {:.0} req/s on {:.2} API cores, within the noise of the ingest's own cores; {tail}",
                self.requests_per_s, self.api_cores
            )
        } else {
            format!("{:.0} req/s per API core ({:.0} req/s on {:.2} cores), {tail}", self.per_core(), self.requests_per_s, self.api_cores)
        }
    }
}

struct Demo {
    child: Child,
    base: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start_demo(load: &LoadOptions<'_>, state_dir: &std::path::Path, http: &reqwest::Client) -> anyhow::Result<Demo> {
    let port = free_port()?;
    let exe = std::env::current_exe().context("locating the egret binary")?;
    let mut command = Command::new(exe);
    if !load.answer_cache {
        command.arg("--no-answer-cache");
    }
    let child = command
        .args(["--state-dir"])
        .arg(state_dir)
        .args(["--rate-limit", "100000000", "demo", "--listen", &format!("127.0.0.1:{port}"), "--pace", load.pace, "--preroll", "2m"])
        .args(["--demand", &load.demand.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting egret demo")?;
    let demo = Demo { child, base: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(r) = http.get(format!("{}/readyz", demo.base)).send().await
            && r.status().is_success()
        {
            return Ok(demo);
        }
        anyhow::ensure!(Instant::now() < deadline, "egret demo was not ready within 3 minutes");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn consumed(http: &reqwest::Client, base: &str) -> anyhow::Result<f64> {
    let text = http.get(format!("{base}/metrics")).send().await?.text().await?;
    Ok(super::kafka::counter_total(&text, "egret_events_consumed_total"))
}

/// CPU cores the child used and events it consumed per second over `phase`.
async fn observe(http: &reqwest::Client, demo: &Demo, phase: Duration) -> anyhow::Result<(f64, f64)> {
    let (cpu0, n0, t0) = (cpu_seconds_of(&demo.child.id().to_string()), consumed(http, &demo.base).await?, Instant::now());
    tokio::time::sleep(phase).await;
    let (cpu1, n1, secs) = (cpu_seconds_of(&demo.child.id().to_string()), consumed(http, &demo.base).await?, t0.elapsed().as_secs_f64());
    Ok(((cpu1 - cpu0) / secs, (n1 - n0) / secs))
}

/// How the API figure loads `egret demo`.
pub struct LoadOptions<'a> {
    /// `egret demo`'s pace and demand: together they set the ingest rate.
    pub pace: &'a str,
    pub demand: f64,
    pub connections: usize,
    /// Seconds of each phase (ingest alone, then ingest plus requests).
    pub phase: Duration,
    /// Off for the baseline: every request renders its own answer.
    pub answer_cache: bool,
}

pub async fn run(load: &LoadOptions<'_>) -> anyhow::Result<ApiLoad> {
    let (connections, phase) = (load.connections, load.phase);
    let http = reqwest::Client::builder().pool_max_idle_per_host(connections).timeout(Duration::from_secs(10)).build()?;
    let state_dir = std::env::temp_dir().join(format!("egret-bench-api-{}", std::process::id()));
    let demo = start_demo(load, &state_dir, &http).await?;
    let (idle_cores, idle_ingest_per_s) = observe(&http, &demo, phase).await?;

    // Requests are timed and counted only while `measuring`, the phase in
    // which the child's CPU is read; the second before lets connections open.
    let (running, measuring) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(false)));
    let mut clients = Vec::new();
    for c in 0..connections {
        let (http, base, running, measuring) = (http.clone(), demo.base.clone(), running.clone(), measuring.clone());
        clients.push(tokio::spawn(async move {
            let (mut latency, mut errors) = (latency_histogram(), 0u64);
            let mut i = c;
            while running.load(Ordering::Relaxed) {
                let counted = measuring.load(Ordering::Relaxed);
                let start = Instant::now();
                let ok = match http.get(format!("{base}{}", ENDPOINTS[i % ENDPOINTS.len()])).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if counted && ok {
                    let _ = latency.record(start.elapsed().as_micros().max(1) as u64);
                } else if counted {
                    errors += 1;
                }
                i += 1;
            }
            (latency, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let (loaded_cores, ingest_per_s) = observe(&http, &demo, phase).await?;
    measuring.store(false, Ordering::Relaxed);
    let measured_s = started.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    let (mut latency, mut errors) = (latency_histogram(), 0);
    for c in clients {
        let (h, e) = c.await?;
        latency.add(&h)?;
        errors += e;
    }
    drop(demo);
    let _ = std::fs::remove_dir_all(&state_dir);
    let requests_per_s = (latency.len() + errors) as f64 / measured_s;
    let ingest_cores = ingest_cores_at(idle_cores, idle_ingest_per_s, ingest_per_s);
    Ok(ApiLoad { requests_per_s, api_cores: loaded_cores - ingest_cores, ingest_per_s, errors, latency })
}

/// The cores ingest alone would use at `rate`, from `cores` measured at `measured_rate`.
fn ingest_cores_at(cores: f64, measured_rate: f64, rate: f64) -> f64 {
    if measured_rate > 0.0 { cores * rate / measured_rate } else { cores }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(api_cores: f64) -> ApiLoad {
        ApiLoad { requests_per_s: 20_000.0, api_cores, ingest_per_s: 20_000.0, errors: 0, latency: latency_histogram() }
    }

    #[test]
    fn the_ingest_is_charged_for_the_events_it_got_through() {
        // 1.2 cores for 24,000 events/s alone: 1.0 core at 20,000 under load.
        assert!((ingest_cores_at(1.2, 24_000.0, 20_000.0) - 1.0).abs() < 1e-12);
        assert_eq!(ingest_cores_at(0.3, 0.0, 100.0), 0.3, "no ingest measured: its cores as they were");
    }

    #[test]
    fn too_few_api_cores_are_not_a_figure() {
        assert_eq!(load(0.5).per_core(), 40_000.0);
        assert!(load(-0.32).per_core().is_nan() && load(0.01).per_core().is_nan());
        assert!(load(-0.32).describe().starts_with("not measurable"));
    }
}
