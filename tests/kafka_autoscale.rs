//! `egret autoscale` through a real Apache Kafka broker (`EGRET_KAFKA`, started by
//! `.ci/run`) and a stand-in for the Kubernetes API: the scale subresource of a
//! StatefulSet whose pods are `egret run --pod-index I` processes, started and
//! stopped (SIGTERM) as the replica count says, as the StatefulSet controller
//! would. Lag makes the controller take the deployment from one instance (an
//! active pod and a standby) to two, and a quiet input from two to one; the pods
//! stop at its cut, are scaled to 0, their checkpoints are dealt out, and the new
//! split's pods go on. What they write is what one uninterrupted instance writes.

#[path = "support/broker.rs"]
mod broker;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use broker::*;
use egret::instance;
use egret::layout::{Deployment, Layout};
use egret_ingest::kafka::KafkaConfig;
use egret_pipeline::{ClockMode, LiveState, PipelineConfig};
use egret_simulator::{Noise, SimConfig};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SCALE_PATH: &str = "/apis/apps/v1/namespaces/egret/statefulsets/egret-pipeline/scale";

/// The StatefulSet: its pods as child processes, pod I started with `--pod-index I`.
struct StatefulSet {
    pod_args: Vec<String>,
    work: PathBuf,
    wanted: u32,
    pods: Vec<(u32, Child)>,
    /// The replica counts PATCHed, in order.
    patched: Vec<u32>,
    /// Pods that have exited, and how.
    exited: Vec<(u32, std::process::ExitStatus)>,
    generation: u32,
    started: usize,
    /// Once this many pods have been started, the next wait (as pods pending a
    /// node or an image would) until this is cleared.
    hold_after: Option<usize>,
    /// The pods run on a CPU limit (`throttle`) until the new split's start.
    cpu_limited: bool,
}

impl StatefulSet {
    /// Pods exited are dropped (a real StatefulSet would start them again; here
    /// an exit is the end of a pod's input, or a failure the test reports).
    fn reap(&mut self) {
        let mut running = Vec::new();
        for (index, mut child) in self.pods.drain(..) {
            match child.try_wait().expect("a status") {
                Some(status) => self.exited.push((index, status)),
                None => running.push((index, child)),
            }
        }
        self.pods = running;
    }

    /// Stops pods above the count (newest first, as a StatefulSet does) and starts
    /// the missing ones.
    fn reconcile(&mut self) {
        self.reap();
        self.pods.sort_by_key(|(i, _)| *i);
        while self.pods.iter().any(|(i, _)| *i >= self.wanted) {
            let (_, child) = self.pods.last().expect("a pod");
            // Woken too, if the CPU limit holds it stopped: else it never sees the TERM.
            for signal in ["-TERM", "-CONT"] {
                Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill runs");
            }
            let (index, mut child) = self.pods.pop().expect("a pod");
            self.exited.push((index, child.wait().expect("the pod stops")));
        }
        self.generation += 1;
        for index in 0..self.wanted {
            if self.pods.iter().all(|(i, _)| *i != index) && self.hold_after.is_none_or(|n| self.started < n) {
                self.started += 1;
                let log = std::fs::File::create(self.work.join(format!("pod-{index}.gen-{}.log", self.generation))).expect("log file");
                let state = self.work.join(format!("pod-{index}"));
                let child = Command::new(env!("CARGO_BIN_EXE_egret"))
                    .args(&self.pod_args)
                    .args(["--pod-index", &index.to_string(), "--state-dir", state.to_str().expect("a path")])
                    .stdout(Stdio::from(log.try_clone().expect("log file")))
                    .stderr(Stdio::from(log))
                    .spawn()
                    .expect("egret starts");
                self.pods.push((index, child));
            }
        }
    }
}

type Shared = Arc<Mutex<StatefulSet>>;

/// A CPU limit of 5% of a core on the pods while `cpu_limited`, as the kernel
/// enforces a container's (its CFS quota: the pod runs for its share of each
/// period, then is stopped for the rest). The pods of the first split read the
/// first half at this pace, so its lag lasts until the controller has seen it
/// beside their progress; unlimited, they read it all within a round or two of
/// the controller's, and there is no lag left to scale on.
async fn throttle(set: Shared) {
    let signal = |set: &StatefulSet, signal: &str| {
        let pids: Vec<String> = set.pods.iter().map(|(_, child)| child.id().to_string()).collect();
        if !pids.is_empty() {
            Command::new("kill").arg(signal).args(&pids).status().expect("kill runs");
        }
    };
    loop {
        signal(&set.lock().expect("the set"), "-CONT");
        tokio::time::sleep(Duration::from_millis(10)).await;
        {
            let set = set.lock().expect("the set");
            if set.cpu_limited {
                signal(&set, "-STOP");
            }
        }
        tokio::time::sleep(Duration::from_millis(190)).await;
    }
}

async fn get_scale(State(set): State<Shared>) -> axum::Json<serde_json::Value> {
    let mut set = set.lock().expect("the set");
    set.reap();
    axum::Json(serde_json::json!({ "kind": "Scale", "apiVersion": "autoscaling/v1", "spec": { "replicas": set.wanted }, "status": { "replicas": set.pods.len() } }))
}

async fn patch_scale(State(set): State<Shared>, headers: HeaderMap, body: String) -> Result<axum::Json<serde_json::Value>, (StatusCode, String)> {
    // What the API server accepts for a merge patch.
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/merge-patch+json") {
        return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "a merge patch, please".into()));
    }
    let patch: serde_json::Value = serde_json::from_str(&body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let replicas = patch["spec"]["replicas"].as_u64().ok_or((StatusCode::UNPROCESSABLE_ENTITY, "spec.replicas".into()))? as u32;
    let set = set.clone();
    // Stopping pods waits for them: off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        let mut set = set.lock().expect("the set");
        set.wanted = replicas;
        set.patched.push(replicas);
        set.reconcile();
        axum::Json(serde_json::json!({ "spec": { "replicas": replicas } }))
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Final windows (segment, start, samples, mean, median) and ticket ids, read
/// back from a namespace's derived topics.
async fn derived(config: &KafkaConfig) -> (BTreeSet<(String, i64, u64, String, String)>, BTreeSet<String>) {
    let reader = KafkaConfig { group_id: format!("{}reader", config.namespace), ..config.clone() };
    let mut windows = BTreeSet::new();
    for record in instance::read_topic(&reader, "egret.segment-speeds").await.expect("windows read") {
        let w: serde_json::Value = serde_json::from_slice(&record.payload).expect("a window");
        if w["is_final"] == true {
            let text = |k: &str| w[k].to_string();
            windows.insert((text("segment_id"), w["window_start_ms"].as_i64().expect("start"), w["sample_count"].as_u64().expect("count"), text("mean_speed_kmh"), text("median_speed_kmh")));
        }
    }
    let tickets = instance::read_topic(&reader, "egret.violations").await.expect("tickets read").iter().map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned()).collect();
    (windows, tickets)
}

fn logs(work: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(work).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            all.push_str(&format!("--- {}\n{}\n", entry.path().display(), std::fs::read_to_string(entry.path()).unwrap_or_default()));
        }
    }
    all
}

/// One rescale at a time: each runs a broker's worth of pods on the two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Lag above a bound takes one instance (an active pod and a standby) to two,
/// the controller killed (kill -9) twice on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_takes_a_deployment_of_pods_from_one_instance_to_two_and_they_write_one_instances_output() {
    let policy = ["--max-instances", "2", "--scale-up-lag", "1000", "--scale-up-after", "0s", "--scale-down-lag", "1", "--scale-down-after", "1h"];
    rescaled_by_the_controller(1, 2, &policy, true, true).await;
}

/// A quiet input takes two instances (the four pods of a split) to one: both
/// stop at one cut and are dealt into one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_input_takes_a_split_of_two_to_one_instance_and_it_writes_one_instances_output() {
    let policy = ["--min-instances", "1", "--max-instances", "2", "--scale-up-lag", "1000000000000", "--scale-down-lag", "100000000000", "--scale-down-after", "0s"];
    rescaled_by_the_controller(2, 1, &policy, false, false).await;
}

/// `from` instances, their pods started by the controller, rescaled to `to` by
/// the `policy` arguments; the first half of the input before the cut, the second
/// after it. With `kill`, the controller is killed after it set the cut and after
/// it scaled the pods to 0, and started again. With `cpu_limited`, the first
/// split's pods run on a CPU limit (`throttle`).
async fn rescaled_by_the_controller(from: u32, to: u32, policy: &[&str], kill: bool, cpu_limited: bool) {
    let Some(brokers) = brokers() else { return };
    let _alone = ONE_AT_A_TIME.lock().await;
    let city = egret::load_city(None).expect("city");
    let (config, reference) = (config(&brokers, &namespace("autoscale")), config(&brokers, &namespace("autoscale-ref")));
    let scenario = |seed, start| SimConfig { noise: Noise { misread: 0.2, ..Noise::noisy() }, ..SimConfig::clean(seed, start, 4 * 60_000) };
    for target in [&config, &reference] {
        publish(city.clone(), scenario(31, START), target).await;
    }
    let work = std::env::temp_dir().join(format!("egret-autoscale-e2e-{}-{from}-{to}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let checkpoints = work.join("checkpoints");
    let (ns, group) = (config.namespace.clone(), config.group_id.clone());
    let common = |more: &[&str]| -> Vec<String> { ["--namespace", &ns].iter().chain(more).map(|s| s.to_string()).collect() };
    let pod_args = common(&["run", "--kafka", &brokers, "--group", &group, "--checkpoints", checkpoints.to_str().expect("a path"), "--checkpoint-interval", "1s", "--exit-when-idle", "10s", "--listen", "127.0.0.1:0"]);
    let set: Shared = Arc::new(Mutex::new(StatefulSet { pod_args, work: work.clone(), wanted: 0, pods: Vec::new(), patched: Vec::new(), exited: Vec::new(), generation: 0, started: 0, hold_after: Some(from as usize * 2), cpu_limited }));
    tokio::spawn(throttle(set.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let api = format!("http://{}", listener.local_addr().expect("an address"));
    let router = axum::Router::new().route(SCALE_PATH, get(get_scale).patch(patch_scale)).with_state(set.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let controller_log = std::fs::File::create(work.join("autoscale.log")).expect("log file");
    let mut args = common(&["autoscale", "--kafka", &brokers, "--group", &group, "--checkpoints", checkpoints.to_str().expect("a path"), "--kube-api", &api]);
    args.extend(["--cut-ahead", "30s", "--every", "1s", "--listen", "127.0.0.1:0"].iter().chain(policy).map(|a| a.to_string()));
    let start_controller = || Command::new(env!("CARGO_BIN_EXE_egret")).args(&args).stdout(Stdio::from(controller_log.try_clone().expect("log"))).stderr(Stdio::from(controller_log.try_clone().expect("log"))).spawn().expect("egret autoscale starts");
    let deployment = Deployment { checkpoints: checkpoints.clone(), namespace: ns.clone(), group: group.clone() };
    // A split from the start: its pods begin with no checkpoints, as the first
    // pods of any deployment do.
    if from > 1 {
        deployment.set_layout(&Layout::steady(from)).expect("the layout");
    }
    let mut controller = start_controller();
    let start = Instant::now();
    let mut restarted = BTreeSet::new();
    let mut cut = None;
    loop {
        let layout = deployment.layout().ok();
        cut = cut.or(layout.and_then(|l| l.stop_at));
        if layout == Some(Layout::steady(to)) {
            break;
        }
        // Killed part way through the rescale (kill -9), a controller started
        // again carries it on from the layout and the directories.
        let step = match layout {
            Some(Layout { rescaling_to: Some(_), .. }) if set.lock().expect("the set").wanted == 0 => "scaled the pods to 0",
            Some(Layout { rescaling_to: Some(_), .. }) => "set the cut",
            _ => "",
        };
        if kill && !step.is_empty() && restarted.insert(step) {
            controller.kill().expect("killed");
            controller.wait().expect("gone");
            eprintln!("killed the controller once it had {step}, and started it again");
            controller = start_controller();
        }
        assert!(start.elapsed() < Duration::from_secs(240) && controller.try_wait().expect("a status").is_none(), "not rescaled to {to} instances:\n{}", logs(&work));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(restarted.len(), if kill { 2 } else { 0 }, "the controller was killed at both steps: {restarted:?}");
    let second_half = START + 6 * 60_000;
    assert!(cut.is_some_and(|at| at < second_half), "the cut at {cut:?} is before the second half's records: its records arrive after the cut, and are stamped after it");
    eprintln!("rescaled from {from} to {to} instances {:?} after the controller started", start.elapsed());
    // Input that only the new split reads, waiting for it when its pods start:
    // split instances write exactly one instance's output when they read the
    // same records in the same order, which the aligner makes sure of for a
    // backlog; live, each takes them in its own arrival order (deploy/SCALE-OUT.md,
    // "Live agreement").
    // Stamped after the cut, as records that arrive after it are
    // (`egret_pipeline::cut`): a record stamped before it and arriving after
    // would be late for the new split, and not for one instance.
    for target in [&config, &reference] {
        publish(city.clone(), scenario(32, second_half), target).await;
    }
    {
        let mut set = set.lock().expect("the set");
        set.hold_after = None;
        set.cpu_limited = false;
        set.reconcile();
    }
    // Each active pod ends once its input has been idle, then its standby takes
    // over from the last checkpoint and ends the same way.
    wait_for("the pods of the new split end", Duration::from_secs(240), || {
        let mut set = set.lock().expect("the set");
        set.reap();
        set.pods.is_empty()
    })
    .await;
    eprintln!("the new split's pods ended {:?} after the controller started", start.elapsed());
    // What Prometheus scrapes from the controller that finished the rescale.
    let log = std::fs::read_to_string(work.join("autoscale.log")).expect("the controller's log");
    let endpoint = log.lines().rev().find_map(|l| l.split_once("metrics on ")).map(|(_, url)| url.trim().to_owned()).expect("the controller says where its metrics are");
    let scraped = reqwest::get(&endpoint).await.expect("metrics served").text().await.expect("metrics text");
    for line in [format!("egret_autoscale_instances {to}"), "egret_autoscale_rescaling 0".into(), r#"egret_autoscale_rescales_total{outcome="done"} 1"#.into()] {
        assert!(scraped.lines().any(|l| l == line), "{line} not in the controller's metrics:\n{scraped}");
    }
    let healthz = endpoint.replace("/metrics", "/healthz");
    assert_eq!(reqwest::get(&healthz).await.expect("healthz served").status(), 200);
    controller.kill().expect("the controller stops");
    controller.wait().expect("gone");
    let (patched, exited) = {
        let set = set.lock().expect("the set");
        (set.patched.clone(), set.exited.clone())
    };
    assert_eq!(patched, [from * 2, 0, to * 2], "the controller started each instance and its standby, scaled the pods away for the rescale, then to the new instances and their standbys:\n{}", logs(&work));
    assert!(exited.iter().all(|(_, status)| status.success()), "every pod stopped cleanly: {exited:?}\n{}", logs(&work));
    let retired: Vec<String> = std::fs::read_dir(checkpoints.join("retired")).expect("retired").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(retired.len() == from as usize && retired.iter().all(|r| r.starts_with(&format!("{ns}{group}")) && r.contains(".dealt-")), "every old instance's directory is kept aside: {retired:?}");

    let live = Arc::new(LiveState::new(city.clone()));
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let pipeline = PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() };
    let once = instance::RunOptions { exit_when_idle: Some(Duration::from_secs(5)), ..Default::default() };
    instance::run(city.clone(), pipeline, &reference, live, stop, &once).await.expect("the reference runs");
    let (windows, tickets) = derived(&config).await;
    let (one_windows, one_tickets) = derived(&reference).await;
    assert!(!one_tickets.is_empty() && one_windows.len() > 100, "the scenario issues tickets and closes windows");
    assert_eq!(tickets, one_tickets, "the autoscaled pods issue exactly one instance's tickets");
    let differ: Vec<_> = windows.symmetric_difference(&one_windows).take(5).collect();
    assert!(differ.is_empty(), "final windows differ from one instance's ({} against {}), first: {differ:?}", windows.len(), one_windows.len());
    let lag = egret::lag::lag(&config, &group, to).await.expect("lag read");
    assert!(lag.iter().all(|l| l.input_total() == 0 && l.repartition == 0), "every input record read by both instances: {lag:?}");
    if std::env::var_os("EGRET_KEEP_WORK").is_none() {
        std::fs::remove_dir_all(&work).ok();
    }
}
