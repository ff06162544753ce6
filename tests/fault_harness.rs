//! The fault harness, shortened for CI: `egret faults` on a 3-broker KRaft cluster
//! of its own (topics replicated 3 times), with 5 kills -9 of the pipeline and one
//! broker stopped and restarted mid-stream. It must print the table and pass its
//! exactly-once verdict: the same tickets as the uninterrupted run and the same
//! number of traversal samples in closed windows. (Window figures themselves may
//! move by milliseconds between any two runs; see `src/faults/compare.rs`.)
//!
//! Runs where Kafka runs (`EGRET_KAFKA` set, as `.ci/run` does); the cluster is
//! started and stopped here with `deploy/kafka/kafka.sh` on its own ports.

use std::path::PathBuf;
use std::process::Command;

const PORT: &str = "19392";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kafka_sh(args: &[&str]) -> std::process::Output {
    Command::new("bash").arg(repo().join("deploy/kafka/kafka.sh")).args(args).output().expect("running kafka.sh")
}

/// Stops the cluster however the test ends.
struct Cluster;

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = kafka_sh(&["stop", "--port", PORT]);
    }
}

#[test]
fn kills_and_a_broker_restart_change_no_ticket_and_no_closed_window() {
    if std::env::var_os("EGRET_KAFKA").is_none() {
        eprintln!("skipped: set EGRET_KAFKA (as .ci/run does) to run the fault harness");
        return;
    }
    let _ = kafka_sh(&["stop", "--port", PORT]);
    let started = kafka_sh(&["start", "--port", PORT, "--brokers", "3"]);
    assert!(started.status.success(), "starting the 3-broker cluster: {}", String::from_utf8_lossy(&started.stderr));
    let _cluster = Cluster;
    let bootstrap = String::from_utf8_lossy(&started.stdout).trim().to_owned();
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fault-harness");
    let _ = std::fs::remove_dir_all(&work);
    let out = Command::new(env!("CARGO_BIN_EXE_egret"))
        .args(["--replication", "3", "faults", "--kafka", &bootstrap, "--events", "20000", "--kills", "5", "--broker-restarts", "1"])
        .args(["--cluster-nodes", "3", "--cluster-port", PORT, "--seed", "3"])
        .arg("--cluster-script")
        .arg(repo().join("deploy/kafka/kafka.sh"))
        .arg("--work-dir")
        .arg(&work)
        .output()
        .expect("running egret faults");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("| kill -9 and restart | 5 kills |"), "the five kills happened");
    assert!(stdout.contains("| broker stop and restart |"), "the broker restart happened");
    assert!(out.status.success(), "a scenario lost or duplicated output (logs in {})", work.display());
    assert!(stdout.contains("exactly once in every scenario: yes"), "the exactly-once verdict");
}
