//! Against a real Apache Kafka broker (`EGRET_KAFKA`, started by `.ci/run` with
//! deploy/kafka/kafka.sh): a seeded scenario published to Kafka and processed from
//! Kafka gives exactly the closed windows of the embedded run and the same accuracy
//! against the ground truth; malformed input lands in `egret.dlq` with its reason.
//!
//! Each test works in its own topic namespace and consumer group, so tests can share
//! one broker. Without `EGRET_KAFKA` the tests are skipped, except under `CI=true`,
//! where a missing broker is a failure.

use egret::drive::{self, DriveOptions};
use egret_ingest::embedded::EmbeddedLog;
use egret::instance::{self, InstanceReport};
use egret_ingest::kafka::KafkaConfig;
use egret_ingest::memory::MemorySink;
use egret_model::{CityModel, Topic};
use egret_pipeline::runner::{self, Ended, Outputs};
use egret_pipeline::{ClockMode, DLQ_TOPIC, LiveState, Pipeline, PipelineConfig, Stats};
use egret_pipeline::ownership::Ownership;
use egret_simulator::{GroundTruth, Noise, SimConfig, Simulator};
use std::collections::BTreeMap;

#[path = "support/broker.rs"]
mod broker;
use broker::*;
#[path = "support/final_windows.rs"]
mod final_windows;
use final_windows::final_window_row;
use std::sync::Arc;
use std::time::Duration;

fn input_topics() -> Vec<&'static str> {
    Topic::ALL.iter().map(|t| t.default_name()).collect()
}

async fn embedded_run(city: Arc<CityModel>, sim: SimConfig) -> (Arc<LiveState>, GroundTruth) {
    let log = EmbeddedLog::new(4, 20_000);
    let mut source = log.subscribe(&input_topics(), Duration::from_millis(20));
    let producer = {
        let (log, city) = (log.clone(), city.clone());
        tokio::spawn(async move {
            let mut truth = GroundTruth::default();
            drive::drive(&mut Simulator::new(city, sim), &log, DriveOptions::fast(), |r| truth.extend(r)).await.expect("embedded send");
            log.close();
            truth
        })
    };
    let live = Arc::new(LiveState::new(city.clone()));
    let mut pipeline = Pipeline::new(city, PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() });
    let (dlq, derived) = (MemorySink::new(10), MemorySink::new(0));
    let outputs = Outputs { dead_letters: &dlq, derived: &derived };
    runner::run(&mut source, &outputs, &mut pipeline, &live, std::future::pending()).await.expect("embedded pipeline");
    (live, producer.await.expect("producer"))
}

/// One `egret run --kafka` instance until its input has been idle for `idle`.
async fn instance(city: Arc<CityModel>, config: KafkaConfig, idle: Duration) -> (Arc<LiveState>, InstanceReport) {
    instance_of(city, config, idle, Ownership::default()).await
}

/// Instance `ownership` (`egret run --kafka --instance K/N`) until its input has
/// been idle for `idle`.
async fn instance_of(city: Arc<CityModel>, config: KafkaConfig, idle: Duration, ownership: Ownership) -> (Arc<LiveState>, InstanceReport) {
    let live = Arc::new(LiveState::new(city.clone()));
    let pipeline = PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() };
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let options = instance::RunOptions { exit_when_idle: Some(idle), ownership, ..Default::default() };
    let report = instance::run(city, pipeline, &config, live.clone(), stop, &options).await.expect("instance runs");
    assert_eq!(report.ended, Ended::InputEnd);
    (live, report)
}

/// Publishes the scenario, then processes it with one instance.
async fn kafka_run(city: Arc<CityModel>, sim: SimConfig, config: &KafkaConfig) -> (Arc<LiveState>, Stats, u64) {
    let sent = publish(city.clone(), sim, config).await;
    let (live, report) = instance(city, config.clone(), Duration::from_secs(5)).await;
    (live, report.stats, sent)
}

/// Every record of a topic, read in a fresh group until it has been idle for 3 s.
async fn read_topic(config: &KafkaConfig, topic: &str) -> Vec<egret_ingest::Record> {
    instance::read_topic(config, topic).await.expect("read the topic back")
}

fn mape_vs_truth(live: &LiveState, truth: &GroundTruth) -> f64 {
    let expected = truth.segment_speeds(60_000);
    let city = live.city();
    let served: Vec<(f64, f64)> = live
        .all_history()
        .iter()
        .filter(|w| w.sample_count >= 3)
        .filter_map(|w| expected.get(&(city.segment(w.segment).segment_id.clone(), w.window_start_ms)).map(|t| (w.mean_speed_kmh, t.mean_kmh)))
        .collect();
    100.0 * served.iter().map(|(s, t)| (s - t).abs() / t).sum::<f64>() / served.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_path_gives_the_embedded_windows() {
    let Some(brokers) = brokers() else { return };
    let city = egret::load_city(None).expect("city");
    let sim = SimConfig::clean(11, START, 8 * 60_000);
    let config = config(&brokers, &namespace("windows"));
    let (kafka_live, stats, sent) = kafka_run(city.clone(), sim.clone(), &config).await;
    let consumed: u64 = stats.consumed.values().sum();
    assert_eq!(consumed, sent, "every published event was consumed once");
    let (embedded_live, truth) = embedded_run(city, sim).await;
    let (from_kafka, embedded) = (windows(&kafka_live), windows(&embedded_live));
    let (mape_kafka, mape_embedded) = (mape_vs_truth(&kafka_live, &truth), mape_vs_truth(&embedded_live, &truth));
    println!(
        "kafka path: {sent} events, {} closed windows (embedded {}), MAPE {mape_kafka:.4}% (embedded {mape_embedded:.4}%, target <= 1%)",
        from_kafka.len(),
        embedded.len()
    );
    assert!(from_kafka.len() > 1_000);
    assert_same_windows(&from_kafka, &embedded, "the Kafka run", "the embedded run");
    assert!(mape_kafka <= 1.0);
    assert_same_tickets(&kafka_live, &embedded_live);
}

fn assert_same_tickets(kafka: &LiveState, embedded: &LiveState) {
    let (kafka, embedded) = (tickets(kafka), tickets(embedded));
    let missing: Vec<&String> = embedded.difference(&kafka).collect();
    let extra: Vec<&String> = kafka.difference(&embedded).collect();
    assert!(missing.is_empty() && extra.is_empty(), "of {} tickets, the Kafka run misses {missing:?} and adds {extra:?}", embedded.len());
}

/// With gantries missing reads, section tickets over bridged drives are held until
/// no late read could split them, and those of the last minutes go out only when
/// the input ends: the Kafka path must issue them as the embedded one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_path_issues_the_tickets_held_to_the_end_of_input() {
    let Some(brokers) = brokers() else { return };
    let city = egret::load_city(None).expect("city");
    let mut sim = SimConfig::clean(14, START, 8 * 60_000);
    sim.noise = Noise { missed: 0.1, ..Noise::clean() };
    let config = config(&brokers, &namespace("held"));
    let (kafka_live, _, _) = kafka_run(city.clone(), sim.clone(), &config).await;
    let (embedded_live, _) = embedded_run(city, sim).await;
    assert!(!tickets(&embedded_live).is_empty(), "the scenario has tickets");
    assert_same_tickets(&kafka_live, &embedded_live);
}

/// `egret run --instance 1/2` and `--instance 2/2` on noisy traffic with many
/// misread plates: each reads all the input and keeps its share, and together they
/// close exactly the windows and issue exactly the tickets of one instance reading
/// topics in a consumer group of its own (a deployment of its own: its own
/// repartition topic too). Not of the embedded run: with skewed device clocks,
/// what a clock estimate has learnt depends on how the partitions were cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_splitting_the_input_write_exactly_one_instances_output() {
    let Some(brokers) = brokers() else { return };
    let city = egret::load_city(None).expect("city");
    let mut sim = SimConfig::clean(13, START, 6 * 60_000);
    sim.noise = Noise { misread: 0.2, ..Noise::noisy() };
    let config = config(&brokers, &namespace("scaleout"));
    let whole = KafkaConfig { group_id: format!("{}-whole", config.group_id), ..config.clone() };
    let sent = publish(city.clone(), sim.clone(), &config).await;
    let split = |i| Ownership::new(i, 2).expect("index below count");
    let one = tokio::spawn(instance(city.clone(), whole, Duration::from_secs(5)));
    let a = tokio::spawn(instance_of(city.clone(), config.clone(), Duration::from_secs(5), split(0)));
    let b = tokio::spawn(instance_of(city.clone(), config.clone(), Duration::from_secs(5), split(1)));
    let ((live_a, report_a), (live_b, report_b)) = (a.await.expect("instance 1/2"), b.await.expect("instance 2/2"));
    let consumed = |r: &InstanceReport| r.stats.consumed.values().sum::<u64>();
    let rejected = |r: &InstanceReport| r.stats.rejected.values().sum::<u64>();
    println!(
        "split: {sent} events; instance 1/2 kept {} ({} windows closed, {} tickets), 2/2 kept {} ({} windows closed, {} tickets)",
        consumed(&report_a),
        report_a.stats.windows_closed,
        tickets(&live_a).len(),
        consumed(&report_b),
        report_b.stats.windows_closed,
        tickets(&live_b).len()
    );
    assert_eq!(consumed(&report_a) + consumed(&report_b), sent, "every input kept by exactly one of the two");
    assert!(consumed(&report_a) > 0 && consumed(&report_b) > 0, "both instances did work");
    assert!(rejected(&report_a) > 0 && rejected(&report_b) > 0, "the malformed input of each share is dead-lettered");
    let (one, report) = one.await.expect("one instance");
    assert_eq!(rejected(&report_a) + rejected(&report_b), rejected(&report), "every bad input dead-lettered once");
    let mut union = windows(&live_a);
    union.extend(windows(&live_b));
    union.sort();
    assert_same_windows(&union, &windows(&one), "the union of the two instances", "one process");
    let (split, whole) = (&tickets(&live_a) | &tickets(&live_b), tickets(&one));
    assert!(whole.len() > 20, "the scenario issues tickets: {}", whole.len());
    assert_eq!(tickets(&live_a).len() + tickets(&live_b).len(), split.len(), "no ticket issued by both");
    let (missing, extra): (Vec<_>, Vec<_>) = (whole.difference(&split).collect(), split.difference(&whole).collect());
    assert!(missing.is_empty() && extra.is_empty(), "of {} tickets, the two instances miss {missing:?} and add {extra:?}", whole.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_lands_in_the_dead_letter_topic_with_its_reason() {
    let Some(brokers) = brokers() else { return };
    let city = egret::load_city(None).expect("city");
    let mut sim = SimConfig::clean(12, START, 4 * 60_000);
    sim.noise = Noise { malformed: 0.001, duplicate: 0.001, ..Noise::clean() };
    let config = config(&brokers, &namespace("dlq"));
    let (_, stats, sent) = kafka_run(city, sim, &config).await;
    let consumed: u64 = stats.consumed.values().sum();
    let rejected: u64 = stats.rejected.values().sum();
    assert_eq!(consumed, sent, "nothing lost");
    assert!(rejected > 0, "the scenario has malformed and duplicate messages");

    // Read the dead-letter topic back and tally its reason headers.
    let dlq_config = KafkaConfig { group_id: format!("{}dlq-reader", config.namespace), ..config.clone() };
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut letters = 0u64;
    for r in read_topic(&dlq_config, DLQ_TOPIC).await {
        letters += 1;
        let header = |name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        let reason = header("egret-error").expect("every dead letter names its reason");
        assert!(header("egret-source-topic").is_some_and(|t| Topic::from_name(&t).is_some()), "source topic header");
        assert!(header("egret-source-partition").is_some_and(|p| p.parse::<u32>().is_ok()));
        assert!(header("egret-source-offset").is_some_and(|o| o.parse::<u64>().is_ok()));
        *by_reason.entry(reason).or_default() += 1;
    }
    let expected: BTreeMap<String, u64> = stats.rejected.iter().fold(BTreeMap::new(), |mut m, ((_, reason), n)| {
        *m.entry(reason.code().to_owned()).or_default() += n;
        m
    });
    println!("dead letters: {letters} read back from {DLQ_TOPIC}, by reason in the pipeline: {expected:?}");
    assert_eq!(letters, rejected, "every rejected message is in the dead-letter topic");
    assert_eq!(by_reason, expected, "reason headers match the pipeline's counts");
}

/// The acceptance run through the binaries themselves: `egret simulate --kafka` then
/// `egret run --kafka`, reading the final windows back from `egret.segment-speeds`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_egret_commands_through_kafka_give_the_embedded_windows() {
    let Some(brokers) = brokers() else { return };
    let ns = namespace("cli");
    let egret = env!("CARGO_BIN_EXE_egret");
    let status = |args: &[&str]| {
        let out = std::process::Command::new(egret).args(args).output().expect("egret runs");
        assert!(out.status.success(), "egret {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let printed = status(&["simulate", "--kafka", &brokers, "--namespace", &ns, "--seed", "11", "--duration", "8m"]);
    assert!(printed.contains("wrote"), "{printed}");
    let group = format!("{ns}g");
    let printed = status(&["run", "--kafka", &brokers, "--namespace", &ns, "--group", &group, "--exit-when-idle", "5s", "--listen", "127.0.0.1:0"]);
    assert!(printed.contains("input processed"), "{printed}");

    let reader = KafkaConfig { group_id: format!("{ns}reader"), ..config(&brokers, &ns) };
    let city = egret::load_city(None).expect("city");
    let mut from_topic: Vec<_> = read_topic(&reader, "egret.segment-speeds").await.iter().filter_map(|r| final_window_row(&city, &r.payload)).collect();
    from_topic.sort();
    // `egret simulate` runs the standard scenario, scripted events included.
    let (embedded, _) = embedded_run(city, SimConfig { scripted: true, ..SimConfig::clean(11, START, 8 * 60_000) }).await;
    println!("egret simulate/run through Kafka: {} final windows on egret.segment-speeds", from_topic.len());
    assert_same_windows(&from_topic, &windows(&embedded), "the egret commands through Kafka", "the embedded run");
}

/// Starts `egret <args>` and returns it with the address its first line says it
/// serves on; the rest of its output is drained, so the process never writes to a
/// closed pipe.
async fn spawn_serving(args: &[&str]) -> (std::process::Child, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_egret")).args(args).stdout(std::process::Stdio::piped()).spawn().expect("egret starts");
    let stdout = child.stdout.take().expect("stdout");
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let _ = first_tx.send(lines.next());
        lines.for_each(drop);
    });
    let first = tokio::task::spawn_blocking(move || first_rx.recv()).await.expect("join").expect("the reader").expect("a first line").expect("readable");
    let addr = first.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).expect("the serving address").to_owned();
    (child, addr)
}

/// `/metrics` of a running `egret run --kafka` counts exactly the dead letters that
/// landed in `egret.dlq`, for the noisy scenario (0.1% malformed, 1% duplicates…).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_the_dead_letter_topic_holds() {
    let Some(brokers) = brokers() else { return };
    let ns = namespace("metrics");
    let egret = env!("CARGO_BIN_EXE_egret");
    let sim = std::process::Command::new(egret)
        .args(["simulate", "--kafka", &brokers, "--namespace", &ns, "--scenario", "noisy", "--duration", "3m"])
        .output()
        .expect("simulate");
    assert!(sim.status.success(), "{}", String::from_utf8_lossy(&sim.stderr));
    let (mut run, addr) = spawn_serving(&["run", "--kafka", &brokers, "--namespace", &ns, "--group", &format!("{ns}g"), "--listen", "127.0.0.1:0"]).await;
    // Wait until the consumed count stops moving and a window has been made final
    // (on a loaded machine a turn can stall past one look), then compare.
    let metric = |text: &str, name: &str| -> u64 {
        text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum::<f64>() as u64
    };
    let mut last = (u64::MAX, String::new());
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let text = reqwest::get(format!("http://{addr}/metrics")).await.expect("GET /metrics").text().await.expect("text");
        let consumed = metric(&text, "egret_events_consumed_total");
        if consumed > 0 && consumed == last.0 && metric(&text, "egret_window_final_delay_seconds_count") > 0 {
            last.1 = text;
            break;
        }
        last = (consumed, text);
    }
    let _ = run.kill();
    let _ = run.wait();
    let dead_letters = metric(&last.1, "egret_dead_letters_total");
    let reader = KafkaConfig { group_id: format!("{ns}reader"), ..config(&brokers, &ns) };
    let in_topic = read_topic(&reader, DLQ_TOPIC).await.len() as u64;
    println!("metrics: {} events consumed, {dead_letters} dead letters counted in /metrics, {in_topic} in {DLQ_TOPIC}", last.0);
    assert!(dead_letters > 0);
    assert_eq!(dead_letters, in_topic);
    // What the dashboard and the alert rules read besides the counters.
    let text = &last.1;
    assert!(text.lines().any(|l| l == "egret_pipeline_active 1"), "the only instance on its checkpoint directory is active:\n{text}");
    assert!(metric(text, "process_resident_memory_bytes") > 10 << 20, "the process's RSS is reported");
    let tickets = metric(text, "egret_violations_total");
    assert!(tickets > 0 && metric(text, "egret_violation_delay_seconds_count") == tickets, "one delay per ticket issued ({tickets})");
    assert!(metric(text, "egret_window_final_delay_seconds_count") > 0, "final windows' delays are recorded");
}

/// `egret serve --kafka`: an API instance without a pipeline serves what the
/// pipeline instances published, for the whole city: every segment with a window
/// on `egret.segment-speeds`, and every ticket on `egret.violations`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_instance_without_a_pipeline_serves_what_the_pipeline_published() {
    let Some(brokers) = brokers() else { return };
    let ns = namespace("serve");
    let egret = env!("CARGO_BIN_EXE_egret");
    let state_dir = std::env::temp_dir().join(format!("egret-{ns}state"));
    let state = state_dir.to_str().expect("UTF-8 path").to_owned();
    let status = |args: &[&str]| {
        let out = std::process::Command::new(egret).args(["--state-dir", &state]).args(args).output().expect("egret runs");
        assert!(out.status.success(), "egret {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    status(&["simulate", "--kafka", &brokers, "--namespace", &ns, "--seed", "12", "--duration", "6m"]);
    let group = format!("{ns}g");
    status(&["run", "--kafka", &brokers, "--namespace", &ns, "--group", &group, "--exit-when-idle", "5s", "--listen", "127.0.0.1:0"]);
    let reader = KafkaConfig { group_id: format!("{ns}reader"), ..config(&brokers, &ns) };
    let field = |records: Vec<egret_ingest::Record>, name: &str| -> std::collections::BTreeSet<String> {
        records.iter().filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).ok()?[name].as_str().map(str::to_owned)).collect()
    };
    let published_segments = field(read_topic(&reader, "egret.segment-speeds").await, "segment_id");
    let published_tickets = field(read_topic(&reader, "egret.violations").await, "violation_id");
    assert!(!published_segments.is_empty() && !published_tickets.is_empty(), "the pipeline published nothing to compare with");

    let (mut serve, addr) =
        spawn_serving(&["--state-dir", &state, "serve", "--kafka", &brokers, "--namespace", &ns, "--group", &group, "--listen", "127.0.0.1:0"]).await;
    let token = status(&["token", "--role", "police"]).trim().to_owned();
    let client = reqwest::Client::new();
    let (mut served_segments, mut served_tickets) = (std::collections::BTreeSet::<String>::new(), std::collections::BTreeSet::<String>::new());
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let segments: serde_json::Value = client.get(format!("http://{addr}/api/v1/segments")).send().await.expect("GET segments").json().await.expect("JSON");
        served_segments = segments["segments"].as_array().expect("segments").iter().filter_map(|s| s["segment_id"].as_str().map(str::to_owned)).collect();
        let page: serde_json::Value =
            client.get(format!("http://{addr}/api/v1/violations?limit=1000")).bearer_auth(&token).send().await.expect("GET violations").json().await.expect("JSON");
        served_tickets = page["violations"].as_array().expect("violations").iter().filter_map(|v| v["violation_id"].as_str().map(str::to_owned)).collect();
        if served_segments == published_segments && served_tickets == published_tickets {
            break;
        }
    }
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = std::fs::remove_dir_all(&state_dir);
    println!("egret serve: {} segments and {} tickets, as published", served_segments.len(), served_tickets.len());
    assert_eq!(served_segments, published_segments, "segments served by the API instance");
    assert_eq!(served_tickets, published_tickets, "tickets served by the API instance");
}
