//! One `egret run --kafka` child of the fault harness: a real process with its own
//! state directory (keys, checkpoints), watched through its `/metrics`, killed with
//! SIGKILL (no chance to save anything) or stopped with SIGTERM (a clean leave).

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

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
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", launch.exe.display()))?;
        let stdout = process.stdout.take().context("child stdout")?;
        let stderr = process.stderr.take().context("child stderr")?;
        let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(log).await.with_context(|| format!("opening {}", log.display()))?;
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        // The log keeps everything the child says; the address comes from its banner.
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            let mut out = BufReader::new(stdout).lines();
            let mut err = BufReader::new(stderr).lines();
            let (mut out_open, mut err_open) = (true, true);
            while out_open || err_open {
                let line = tokio::select! {
                    l = out.next_line(), if out_open => l.ok().flatten().or_else(|| { out_open = false; None }),
                    l = err.next_line(), if err_open => l.ok().flatten().or_else(|| { err_open = false; None }),
                };
                let Some(line) = line else { continue };
                if let Some(rest) = line.strip_prefix("serving http://")
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                }
                let _ = file.write_all(format!("{line}\n").as_bytes()).await;
            }
        });
        let addr = tokio::time::timeout(Duration::from_secs(60), addr_rx)
            .await
            .with_context(|| format!("the child did not serve its API within 60 s (see {})", log.display()))?
            .with_context(|| format!("the child exited before serving its API (see {})", log.display()))?;
        Ok(Instance { process, metrics_url: format!("http://{addr}/metrics"), http: reqwest::Client::new() })
    }

    /// Input events this life has consumed (replays included); `None` once it is gone.
    pub async fn consumed(&self) -> Option<f64> {
        let text = self.http.get(&self.metrics_url).timeout(Duration::from_secs(2)).send().await.ok()?.text().await.ok()?;
        Some(crate::bench::kafka::counter_total(&text, "egret_events_consumed_total"))
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
        self.process.kill().await.context("killing the child")
    }

    /// SIGTERM: the child saves a checkpoint and leaves its group.
    pub async fn terminate(mut self) -> anyhow::Result<ExitStatus> {
        if let Some(pid) = self.process.id() {
            std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().context("sending SIGTERM")?;
        }
        tokio::time::timeout(Duration::from_secs(120), self.process.wait()).await.context("the child did not stop within 120 s of SIGTERM")?.context("waiting for the child")
    }

    /// Waits for the child to finish on its own (its input idle), at most `limit`.
    pub async fn wait(mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        tokio::time::timeout(limit, self.process.wait()).await.with_context(|| format!("the child did not finish within {limit:?}"))?.context("waiting for the child")
    }
}
