//! `egret faults`: the reliability table of targets.md, run for real. The same
//! simulated input (noisy: duplicates, late and malformed events) goes into a fresh
//! namespace per scenario; `egret run --kafka` child processes consume it while the
//! harness kills them with SIGKILL, stops and restarts brokers, or lets a standby
//! take over from an active instance that leaves; each scenario's tickets and closed windows
//! are then compared with those of an uninterrupted run. A second uninterrupted run
//! is the control: it shows how far two clean runs agree at all.

mod child;
mod compare;

use crate::bench::workload;
use anyhow::Context;
use child::{Instance, Launch};
use compare::{Diff, Outputs};
use egret_ingest::kafka::KafkaConfig;
use egret_model::CityModel;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct FaultOptions {
    pub brokers: String,
    pub events: usize,
    pub kills: usize,
    pub broker_restarts: usize,
    /// The cluster's script and port, for broker restarts (`deploy/kafka/kafka.sh`).
    pub cluster: Option<(PathBuf, u16)>,
    /// Nodes in that cluster; restarts go round them.
    pub cluster_nodes: usize,
    pub rebalances: usize,
    pub replication: i32,
    pub seed: u64,
    pub checkpoint_interval_ms: i64,
    pub work_dir: PathBuf,
}

/// Longest a scenario may take before the harness calls it hung.
const SCENARIO_LIMIT: Duration = Duration::from_secs(900);

struct Scenario {
    name: String,
    faults: String,
    took: Duration,
    diff: Diff,
}

pub async fn run(city: &Arc<CityModel>, options: &FaultOptions) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&options.work_dir).with_context(|| format!("creating {}", options.work_dir.display()))?;
    let exe = std::env::current_exe().context("finding the egret binary")?;
    let records = workload::simulated_with(city, options.events, 400.0, options.seed, egret_simulator::Noise::noisy());
    let stamp = crate::commands::now_ms();
    let launch_for = |name: &str| Launch {
        exe: exe.clone(),
        brokers: options.brokers.clone(),
        namespace: format!("faults-{stamp}-{name}."),
        replication: options.replication,
        checkpoint_interval_ms: options.checkpoint_interval_ms,
        exit_when_idle: "8s",
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
    println!("faults: {} events (seed {}), logs and state in {}", records.len(), options.seed, options.work_dir.display());

    let (reference, took) = scenario(options, &records, &launch_for("reference"), &Fault::None).await?;
    println!("faults: the uninterrupted run took {took:.1?}: {} tickets, {} closed windows", reference.tickets.len(), reference.windows.len());
    anyhow::ensure!(!reference.tickets.is_empty() && !reference.windows.is_empty(), "the uninterrupted run issued no tickets or closed no windows: nothing to compare");
    let mut table = Vec::new();
    let mut add = |name: &str, faults: String, (outputs, took): (Outputs, Duration)| {
        let diff = compare::diff(&reference, &outputs);
        println!("faults: {name}: {} tickets lost, {} extra; samples {} / {}", diff.tickets_lost, diff.tickets_extra, diff.samples.0, diff.samples.1);
        table.push(Scenario { name: name.to_owned(), faults, took, diff });
    };

    let control = scenario(options, &records, &launch_for("control"), &Fault::None).await?;
    add("control: uninterrupted again", "none".into(), control);
    if options.kills > 0 {
        let per_kill = options.events as f64 / options.kills as f64;
        let targets: Vec<f64> = (0..options.kills).map(|_| rng.random_range(0.1..0.6) * per_kill).collect();
        let (outputs, took, done) = kill_scenario(options, &records, &launch_for("kills"), &targets).await?;
        add("kill -9 and restart", format!("{done} kills"), (outputs, took));
    }
    if options.broker_restarts > 0 {
        let (script, port) = options.cluster.clone().context("--broker-restarts needs --cluster-script and --cluster-port")?;
        let nodes = options.cluster_nodes.max(1);
        let result = scenario(options, &records, &launch_for("brokers"), &Fault::BrokerRestarts { script, port, nodes }).await?;
        add("broker stop and restart", format!("{} restarts, {nodes} nodes", options.broker_restarts), result);
    }
    if options.rebalances > 0 {
        let launch = launch_for("rebalance");
        let result = scenario(options, &records, &launch, &Fault::Rebalances { joiner: launch.clone() }).await?;
        add("a standby joins, the active instance leaves", format!("{} takeovers", options.rebalances), result);
    }
    Ok(print_table(&table, &reference))
}

/// What happens to a scenario's instance while it runs.
enum Fault {
    None,
    /// `FaultOptions::broker_restarts` times, spread over the input.
    BrokerRestarts { script: PathBuf, port: u16, nodes: usize },
    /// `FaultOptions::rebalances` times, a standby started like `joiner` joins and
    /// the active instance leaves, by SIGTERM and SIGKILL in turn: the partitions and
    /// the state move to the standby.
    Rebalances { joiner: Launch },
}

impl Fault {
    async fn act_on(&self, instance: &mut Instance, options: &FaultOptions) -> anyhow::Result<()> {
        match self {
            Fault::None => Ok(()),
            Fault::BrokerRestarts { script, port, nodes } => {
                let step = options.events as f64 / (options.broker_restarts + 1) as f64;
                for i in 0..options.broker_restarts {
                    if !instance.wait_for_progress(step * (i + 1) as f64).await? {
                        break;
                    }
                    restart_broker(script, *port, 1 + i % nodes).await?;
                }
                Ok(())
            }
            Fault::Rebalances { joiner } => {
                // Each life of the active instance consumes its share before it goes.
                let step = options.events as f64 / (options.rebalances + 1) as f64;
                for i in 0..options.rebalances {
                    if !instance.wait_for_progress(step).await? {
                        break;
                    }
                    // The joiner shares the state directory: it waits as a standby.
                    let joiner_log = options.work_dir.join(format!("rebalance-joiner-{i}.log"));
                    let mut standby = Instance::start(joiner, &state_dir(options, joiner), &joiner_log).await?;
                    standby.wait_until_standby().await?;
                    let active = std::mem::replace(instance, standby);
                    // Half the active instances leave cleanly, half crash.
                    let how = if i % 2 == 0 {
                        active.terminate().await?;
                        "stopped (SIGTERM)"
                    } else {
                        active.kill9().await?;
                        "killed (SIGKILL)"
                    };
                    println!("faults: a standby joined, the active instance {how}, the standby took over ({}/{})", i + 1, options.rebalances);
                }
                Ok(())
            }
        }
    }
}

/// Where a scenario's instances keep their state: one directory, shared by the
/// instances of a failover scenario (the first holds it, the others stand by).
fn state_dir(options: &FaultOptions, launch: &Launch) -> PathBuf {
    options.work_dir.join(launch.namespace.trim_end_matches('.').rsplit('-').next().unwrap_or("run"))
}

/// Produces the input to the scenario's namespace, runs one child through it while
/// `fault` acts on it, and reads back the outputs once it has finished.
async fn scenario(options: &FaultOptions, records: &[egret_ingest::Record], launch: &Launch, fault: &Fault) -> anyhow::Result<(Outputs, Duration)> {
    let kafka = kafka_config(options, launch);
    crate::bench::kafka::produce(&kafka, records).await?;
    let state = state_dir(options, launch);
    let name = state.file_name().map_or("run".into(), |n| n.to_string_lossy().into_owned());
    let started = Instant::now();
    let mut instance = Instance::start(launch, &state, &options.work_dir.join(format!("{name}.log"))).await?;
    fault.act_on(&mut instance, options).await?;
    let status = instance.wait(SCENARIO_LIMIT).await?;
    anyhow::ensure!(status.success(), "{name}: the pipeline exited with {status} (see its log in {})", options.work_dir.display());
    let took = started.elapsed();
    Ok((compare::read(&kafka).await?, took))
}

/// Runs the input through lives of the pipeline, killing each with SIGKILL once it
/// has consumed its target (a random point), until the targets are used up.
async fn kill_scenario(options: &FaultOptions, records: &[egret_ingest::Record], launch: &Launch, targets: &[f64]) -> anyhow::Result<(Outputs, Duration, usize)> {
    let kafka = kafka_config(options, launch);
    crate::bench::kafka::produce(&kafka, records).await?;
    let (state, log) = (options.work_dir.join("kills"), options.work_dir.join("kills.log"));
    let started = Instant::now();
    let mut done = 0;
    for target in targets {
        let mut instance = Instance::start(launch, &state, &log).await?;
        if !instance.wait_for_progress(*target).await? {
            break;
        }
        instance.kill9().await?;
        done += 1;
        println!("faults: kill -9 {done}/{} after {target:.0} events of that life", targets.len());
    }
    let status = Instance::start(launch, &state, &log).await?.wait(SCENARIO_LIMIT).await?;
    anyhow::ensure!(status.success(), "kills: the last life exited with {status} (see {})", log.display());
    let took = started.elapsed();
    Ok((compare::read(&kafka).await?, took, done))
}

fn kafka_config(options: &FaultOptions, launch: &Launch) -> KafkaConfig {
    KafkaConfig { namespace: launch.namespace.clone(), replication: options.replication, ..KafkaConfig::new(&options.brokers) }
}

/// Stops node `node` of the cluster, keeps it down 5 s, starts it and waits for it.
async fn restart_broker(script: &std::path::Path, port: u16, node: usize) -> anyhow::Result<()> {
    let run = |cmd: &str| {
        let status = std::process::Command::new("bash").arg(script).args([cmd, &node.to_string(), "--port", &port.to_string()]).stdout(std::process::Stdio::null()).status();
        anyhow::ensure!(status.with_context(|| format!("running {}", script.display()))?.success(), "{} {cmd} {node} failed", script.display());
        Ok(())
    };
    println!("faults: stopping broker {node}");
    tokio::task::block_in_place(|| run("stop-broker"))?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    tokio::task::block_in_place(|| run("start-broker"))?;
    println!("faults: broker {node} is back");
    Ok(())
}

fn print_table(table: &[Scenario], reference: &Outputs) -> bool {
    println!();
    println!("| scenario | faults | took | tickets lost | tickets extra | redelivered (dropped by id) | samples (reference / run) | exactly once (target: 0 lost, 0 duplicated) | windows missing / extra / differing | identical windows |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let verdict = |ok: bool| if ok { "pass" } else { "FAIL" };
    for s in table {
        let d = &s.diff;
        println!(
            "| {} | {} | {:.0} s | {} | {} | {} | {} / {} | {} | {} / {} / {} | {} |",
            s.name,
            s.faults,
            s.took.as_secs_f64(),
            d.tickets_lost,
            d.tickets_extra,
            d.redelivered,
            d.samples.0,
            d.samples.1,
            verdict(d.exactly_once()),
            d.windows_missing,
            d.windows_extra,
            d.windows_differing,
            verdict(d.identical_windows()),
        );
    }
    println!("reference: {} tickets, {} closed windows", reference.tickets.len(), reference.windows.len());
    for s in table.iter().filter(|s| !s.diff.examples.is_empty()) {
        println!("{}: windows that differ, (segment, start): reference / run:", s.name);
        for e in &s.diff.examples {
            println!("  {e}");
        }
    }
    // One line per scenario for scripts and tests to read.
    for s in table {
        let d = &s.diff;
        println!(
            "faults-summary: scenario={} tickets_reference={} lost={} extra={} samples_reference={} samples_run={} windows_missing={} windows_extra={} windows_differing={}",
            s.name.split(':').next().unwrap_or_default().replace(' ', "-"),
            reference.tickets.len(),
            d.tickets_lost,
            d.tickets_extra,
            d.samples.0,
            d.samples.1,
            d.windows_missing,
            d.windows_extra,
            d.windows_differing
        );
    }
    let once = table.iter().all(|s| s.diff.exactly_once());
    let identical = table.iter().all(|s| s.diff.identical_windows());
    println!("faults: exactly once in every scenario: {}", if once { "yes" } else { "NO" });
    println!("faults: closed windows identical in every scenario: {}", if identical { "yes" } else { "NO" });
    once && identical
}
