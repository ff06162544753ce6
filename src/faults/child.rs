//! One `egret run --kafka` child of the fault harness: a real process with its own
//! state directory (keys, checkpoints), watched through its `/metrics`, killed with
//! SIGKILL (no chance to save anything) or stopped with SIGTERM (a clean leave).

use anyhow::Context;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub struct Instance {
    process: Child,
    metrics_url: String,
    http: reqwest::Client,
}

/// How a child is started: the same for every life of one scenario.
#[derive(Debug, Clone)]
pub struct Launch {
    pub exe: PathBuf,
    pub brokers: String,
    pub namespace: String,
    pub replication: i32,
    pub checkpoint_interval_ms: i64,
    pub exit_when_idle: &'static str,
}

impl Instance {
    /// Starts a child with `state_dir`, appending its output to `log`, and waits until
    /// it serves its API.
    pub async fn start(launch: &Launch, state_dir: &Path, log: &Path) -> anyhow::Result<Instance> {
        let mut process = Command::new(&launch.exe)
            .args(["--namespace", &launch.namespace, "--replication", &launch.replication.to_string()])
            .arg("--state-dir")
            .arg(state_dir)
            .args(["run", "--kafka", &launch.brokers, "--group", "faults", "--listen", "127.0.0.1:0", "--exit-when-idle", launch.exit_when_idle])
            .args(["--checkpoint-interval", &format!("{}ms", launch.checkpoint_interval_ms)])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", launch.exe.display()))?;
        let stdout = process.stdout.take().context("child stdout")?;
        let stderr = process.stderr.take().context("child stderr")?;
        let open_log = || std::fs::OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("opening {}", log.display()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        // The log keeps everything the child says; the address comes from its banner.
        let mut out_log = open_log()?;
        std::thread::spawn(move || {
            let mut addr_tx = Some(addr_tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("serving http://")
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                }
                let _ = writeln!(out_log, "{line}");
            }
        });
        let mut err_log = open_log()?;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(err_log, "{line}");
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(60), addr_rx).await {
            Ok(Ok(addr)) => addr,
            failed => {
                let _ = process.kill();
                let _ = process.wait();
                anyhow::bail!("the child {} (see {})", if failed.is_err() { "did not serve its API within 60 s" } else { "exited before serving its API" }, log.display());
            }
        };
        Ok(Instance { process, metrics_url: format!("http://{addr}/metrics"), http: reqwest::Client::new() })
    }

    /// Input events this life has consumed (replays included); `None` once it is gone.
    pub async fn consumed(&self) -> Option<f64> {
        let text = self.http.get(&self.metrics_url).timeout(Duration::from_secs(2)).send().await.ok()?.text().await.ok()?;
        Some(crate::bench::kafka::counter_total(&text, "egret_events_consumed_total"))
    }

    /// Waits until this child says it is a standby (another instance holds its
    /// state directory), at most a minute.
    pub async fn wait_until_standby(&mut self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            anyhow::ensure!(self.process.try_wait()?.is_none(), "the joining instance exited before it stood by");
            let text = self.http.get(&self.metrics_url).timeout(Duration::from_secs(2)).send().await.ok();
            let text = match text {
                Some(response) => response.text().await.unwrap_or_default(),
                None => String::new(),
            };
            if text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["egret_pipeline_active", "0"]) {
                return Ok(());
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "the joining instance did not stand by within 60 s (is it running on the same state directory?)");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until this life has consumed `events`; false if it exited first.
    pub async fn wait_for_progress(&mut self, events: f64) -> anyhow::Result<bool> {
        loop {
            if self.process.try_wait()?.is_some() {
                return Ok(false);
            }
            if self.consumed().await.is_some_and(|n| n >= events) {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// kill -9, and wait until the process is gone.
    pub async fn kill9(mut self) -> anyhow::Result<()> {
        self.process.kill().context("killing the child")?;
        self.process.wait().context("waiting for the killed child")?;
        Ok(())
    }

    /// SIGTERM: the child saves a checkpoint and leaves its group.
    pub async fn terminate(self) -> anyhow::Result<ExitStatus> {
        std::process::Command::new("kill").args(["-TERM", &self.process.id().to_string()]).status().context("sending SIGTERM")?;
        self.wait(Duration::from_secs(120)).await
    }

    /// Waits for the child to finish, at most `limit`; kills it if it does not.
    pub async fn wait(mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.process.try_wait().context("waiting for the child")? {
                return Ok(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = self.process.kill();
                let _ = self.process.wait();
                anyhow::bail!("the child did not finish within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Instance {
    /// No child outlives the harness.
    fn drop(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}
