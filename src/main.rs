//! `egret`: the command line. Each subcommand only parses its arguments and calls
//! `egret::commands`; see `egret --help`.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use egret::commands::{self, Input};
use egret::drive::{DriveOptions, Pace};
use egret::serve::ServeOptions;
use egret_api::auth::{Role, TokenKey};
use egret_api::keys;
use egret_ingest::kafka::KafkaConfig;
use egret_pipeline::PipelineConfig;
use egret_simulator::{Noise, SimConfig};
use std::path::PathBuf;
use std::time::Duration;

/// The pipeline allocates and frees many small blocks per record (records,
/// keys, payloads, evidence); mimalloc serves them from thread-local pages
/// where glibc's malloc spent 12–20% of the pipeline thread (BENCHMARKS.md,
/// session 15). Built without transparent huge pages (`no_thp`): mimalloc
/// advises them on its arenas and gives freed ranges back, and each page faulted
/// in again was a 2 MiB page zeroed: 12–19% of the bench's samples, and its
/// system time fell from 3.5–5.3 s to 0.9–1.4 s without them (BENCHMARKS.md,
/// sessions 20 and 21).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Monday 2026-11-30 07:45 in Xiamen (UTC+8): the start of the standard scenarios,
/// so they cover the morning rush.
const SCENARIO_START_MS: i64 = 1_795_995_900_000;

#[derive(Parser)]
#[command(name = "egret", version, about = "Real-time intelligent-transport streaming engine for Xiamen, Zhangzhou and Quanzhou")]
struct Cli {
    /// Directory holding city/*.json and rules.toml (default: the repo's data/).
    #[arg(long, global = true, env = "EGRET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Window length of segment speeds.
    #[arg(long, global = true, default_value = "60s", value_parser = egret::parse_duration_ms)]
    window: i64,
    /// How far behind the newest event an event may arrive and still be in order.
    #[arg(long, global = true, default_value = "5s", value_parser = egret::parse_duration_ms)]
    out_of_orderness: i64,
    /// How long after a window's end late events still revise it (then it is final).
    #[arg(long, global = true, default_value = "90s", value_parser = egret::parse_duration_ms)]
    allowed_lateness: i64,
    /// With --kafka: a prefix for every topic name, so deployments (or test runs) can
    /// share a cluster.
    #[arg(long, global = true, default_value = "", env = "EGRET_KAFKA_NAMESPACE")]
    namespace: String,
    /// With --kafka: the replication factor of topics Egret creates (3 on a cluster).
    #[arg(long, global = true, default_value_t = 1, env = "EGRET_KAFKA_REPLICATION")]
    replication: i32,
    /// Where keys, the audit log and saved hotlist edits live (created if missing).
    #[arg(long, global = true, default_value = "egret-state", env = "EGRET_STATE_DIR")]
    state_dir: PathBuf,
    /// API requests per second per client (a token's subject, else an address);
    /// bursts of twice as many pass.
    #[arg(long, global = true, default_value_t = 50, env = "EGRET_RATE_LIMIT")]
    rate_limit: u32,
    /// Render every typed API answer per request instead of once per live-state
    /// version: the same-run baseline of `egret bench`'s API figure.
    #[arg(long, global = true, hide = true)]
    no_answer_cache: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Scenario {
    /// No device noise: every read arrives once, on time, correct.
    Clean,
    /// The noise of targets.md: missed, duplicate, misread, skewed, late, malformed.
    Noisy,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process, no broker: the simulator feeds the embedded log,
    /// the pipeline computes live speeds, the API serves them.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080", env = "EGRET_LISTEN")]
        listen: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Simulated traffic before now, replayed at once so the map is busy at start.
        #[arg(long, default_value = "10m", value_parser = egret::parse_duration_ms)]
        preroll: i64,
        /// realtime, or xN to run N times faster than real time.
        #[arg(long, default_value = "realtime")]
        pace: Pace,
        /// How long to simulate before stopping.
        #[arg(long, default_value = "24h", value_parser = egret::parse_duration_ms)]
        duration: i64,
        /// Private-vehicle trip starts per minute at the demand profile's 1.0.
        #[arg(long)]
        demand: Option<f64>,
    },
    /// Generate a seeded scenario: into NDJSON files (<topic>.ndjson per input topic
    /// plus truth.ndjson, the ground truth) or into Kafka, keyed per contract-v1.
    Simulate {
        /// Directory for the NDJSON files.
        #[arg(long, required_unless_present = "kafka", conflicts_with = "kafka")]
        out: Option<PathBuf>,
        /// Kafka bootstrap servers to publish to instead (e.g. 127.0.0.1:9092).
        #[arg(long)]
        kafka: Option<String>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_enum, default_value = "clean")]
        scenario: Scenario,
        /// Start instant in epoch ms, or "now" (default: Monday 2026-11-30 07:45 CST).
        #[arg(long)]
        start: Option<String>,
        #[arg(long, default_value = "15m", value_parser = egret::parse_duration_ms)]
        duration: i64,
        /// fast, realtime, or xN.
        #[arg(long, default_value = "fast")]
        pace: Pace,
        /// At most this many events per second (default: as the pace allows).
        #[arg(long, value_parser = positive_rate)]
        rate: Option<f64>,
        /// Private-vehicle trip starts per minute at the demand profile's 1.0.
        #[arg(long)]
        demand: Option<f64>,
    },
    /// Run the pipeline over recorded NDJSON input or Kafka topics and serve the API
    /// until Ctrl-C.
    Run {
        /// Directory of <topic>.ndjson files (from `egret simulate --out`).
        #[arg(long, required_unless_present = "kafka", conflicts_with = "kafka")]
        input: Option<PathBuf>,
        /// Kafka bootstrap servers: consume the input topics in a consumer group.
        #[arg(long)]
        kafka: Option<String>,
        /// Consumer group; instances in one group share the partitions.
        #[arg(long, default_value = "egret")]
        group: String,
        /// With --kafka: this instance is instance K of N active instances splitting
        /// the input, as in 2/3. Each reads all of it in a group of its own
        /// (<group>.K-of-N) and keeps the plates, segments, lots and routes of the
        /// partitions p with p mod N = K-1; together they write exactly what one
        /// instance would. Every instance of a deployment must be given the same N.
        #[arg(long, env = "EGRET_INSTANCE", default_value = "1/1")]
        instance: egret_pipeline::ownership::Ownership,
        /// With --kafka: treat the input as finished after this long with nothing new.
        #[arg(long, value_parser = egret::parse_duration_ms)]
        exit_when_idle: Option<i64>,
        /// With --kafka: where this instance saves its state with the offsets it
        /// reflects, and restores it from on start (default:
        /// <state-dir>/checkpoints/<namespace><group>, with .K-of-N after it for
        /// --instance K/N). One directory per instance.
        #[arg(long, env = "EGRET_CHECKPOINT_DIR")]
        checkpoint_dir: Option<PathBuf>,
        /// With --kafka: how often to checkpoint.
        #[arg(long, default_value = "10s", value_parser = egret::parse_duration_ms)]
        checkpoint_interval: i64,
        /// With --kafka: keep no checkpoints (a restart then loses in-flight state).
        #[arg(long, conflicts_with = "checkpoint_dir")]
        no_checkpoints: bool,
        /// With --kafka: this instance's static consumer-group membership id. A
        /// restart under the same id takes its partitions straight back, without a
        /// rebalance (default, with checkpoints: from the host name and the
        /// checkpoint directory, which are this instance's identity).
        #[arg(long, env = "EGRET_INSTANCE_ID")]
        instance_id: Option<String>,
        #[arg(long, default_value = "127.0.0.1:8080", env = "EGRET_LISTEN")]
        listen: String,
        /// Stop when the input ends and print a summary.
        #[arg(long)]
        exit_at_end: bool,
        /// With --kafka and checkpoints: stop at the cut at this instant (ms since
        /// the epoch, the records' timestamps: `date +%s%3N`), saving the state there,
        /// then run `egret rescale`. Give every instance of the split the same instant.
        #[arg(long, requires = "kafka", conflicts_with_all = ["exit_when_idle", "exit_at_end", "no_checkpoints"])]
        stop_at: Option<i64>,
        /// With --kafka: go on from a checkpoint saved at a cut (`--stop-at`) as the
        /// same split, instead of refusing it: the rescale it was saved for is
        /// called off.
        #[arg(long, requires = "kafka")]
        past_cut: bool,
        /// With --kafka: the parent of a deployment's checkpoint directories, whose
        /// pods follow its layout (with --pod-index; see deploy/SCALE-OUT.md).
        #[arg(long, requires = "pod_index")]
        checkpoints: Option<PathBuf>,
        /// With --kafka and --checkpoints: this pod's ordinal in its StatefulSet (the
        /// label apps.kubernetes.io/pod-index: `--pod-index $(POD_INDEX)`). It runs instance (I mod N) + 1 of the
        /// N in the layout `egret autoscale` keeps, active or standby, and stops at
        /// the cut the layout sets.
        #[arg(long, requires_all = ["checkpoints", "kafka"], conflicts_with_all = ["checkpoint_dir", "no_checkpoints", "stop_at", "past_cut"])]
        pod_index: Option<u32>,
        /// Police hotlists to check every sighting against: a JSON file
        /// `{"stolen": [{"plate": "闽D12345", "reason": "...", "expires_ms": 1800000000000}]}`.
        #[arg(long)]
        hotlists: Option<PathBuf>,
    },
    /// Serve the API without a pipeline, from the derived topics that `egret run
    /// --kafka` instances publish: every API instance then answers for the whole
    /// city (reader health excepted: it is not on a topic).
    Serve {
        /// Kafka bootstrap servers.
        #[arg(long)]
        kafka: String,
        /// The pipeline instances' consumer group (names this instance's own).
        #[arg(long, default_value = "egret")]
        group: String,
        #[arg(long, default_value = "127.0.0.1:8080", env = "EGRET_LISTEN")]
        listen: String,
    },
    /// Deal the checkpoints of N active instances (`run --kafka --instance K/N`),
    /// stopped at one cut, out to M, so the deployment goes on with M instances
    /// from where the N stopped. Stop every old instance first with `run ...
    /// --stop-at T` (one T for all); then start `run --instance K/M` for K = 1..M
    /// with the same group and settings.
    Rescale {
        /// The instances' consumer group.
        #[arg(long, default_value = "egret")]
        group: String,
        /// How many instances the checkpoints are of.
        #[arg(long)]
        from: u32,
        /// How many instances to deal them out to.
        #[arg(long)]
        to: u32,
        /// The directory holding the instances' checkpoint directories, named as
        /// `run` names them (default: <state-dir>/checkpoints).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// Kafka bootstrap servers: the repartition topic is checked there, and the
        /// new consumer groups' offsets are committed at the cut.
        #[arg(long)]
        kafka: String,
    },
    /// How far behind the input each pipeline instance is: records its consumer
    /// groups have not committed, on the input topics and the repartition topic.
    Lag {
        /// Kafka bootstrap servers.
        #[arg(long)]
        kafka: String,
        /// The instances' consumer group.
        #[arg(long, default_value = "egret")]
        group: String,
        /// How many active instances split the input (`run --instance K/N`).
        #[arg(long, default_value_t = 1)]
        instances: u32,
    },
    /// Change the number of active instances of a deployment on Kubernetes with its
    /// consumer lag: stop the pods at a cut, deal their checkpoints out, start the
    /// new split there (see deploy/SCALE-OUT.md).
    Autoscale(egret::autoscale::AutoscaleArgs),
    /// Print a bearer token for the API, signed with this deployment's key
    /// (EGRET_TOKEN_KEY, else <state-dir>/token.key).
    Token {
        /// public, dispatcher, police, admin or device.
        #[arg(long)]
        role: String,
        /// Who holds it: written to the audit log with every police read.
        #[arg(long, default_value = "egret-cli")]
        subject: String,
        /// How long it is valid.
        #[arg(long, default_value = "12h", value_parser = egret::parse_duration_ms)]
        ttl: i64,
    },
    /// Run a seeded scenario through the pipeline and score what it served against
    /// the simulator's ground truth: every accuracy figure of targets.md beside its
    /// target. Exits non-zero when a figure misses its target.
    Eval {
        #[arg(long, value_enum, default_value = "clean")]
        scenario: Scenario,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Scenario length (from 07:45 local time on a Monday).
        #[arg(long, default_value = "30m", value_parser = egret::parse_duration_ms)]
        duration: i64,
        /// Run it through this Apache Kafka cluster (e.g. 127.0.0.1:9092) instead of
        /// the embedded log: simulator → input topics → `egret run --kafka` → derived
        /// topics, read back from the broker.
        #[arg(long)]
        kafka: Option<String>,
    },
    /// The reliability table of targets.md: `egret run --kafka` children killed
    /// with SIGKILL, brokers restarted, a second instance joining and leaving, each
    /// run's tickets and closed windows compared with an uninterrupted run's.
    /// Exits non-zero when any scenario differs.
    Faults {
        /// Kafka bootstrap servers (127.0.0.1 only: this is a load of faults).
        #[arg(long)]
        kafka: String,
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Lives of the pipeline ended by kill -9 at random points.
        #[arg(long, default_value_t = 20)]
        kills: usize,
        /// Brokers stopped and restarted mid-stream (needs --cluster-script).
        #[arg(long, default_value_t = 0)]
        broker_restarts: usize,
        /// deploy/kafka/kafka.sh, which started the cluster behind --kafka.
        #[arg(long, requires = "cluster_port")]
        cluster_script: Option<PathBuf>,
        /// The --port the cluster was started with.
        #[arg(long)]
        cluster_port: Option<u16>,
        /// Nodes in that cluster (restarts go round them).
        #[arg(long, default_value_t = 1)]
        cluster_nodes: usize,
        /// Times a second instance joins the group and leaves it.
        #[arg(long, default_value_t = 0)]
        rebalances: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The children's --checkpoint-interval.
        #[arg(long, default_value = "1s", value_parser = egret::parse_duration_ms)]
        checkpoint_interval: i64,
        /// Where the children keep their state and logs (default: a new temporary directory).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// Is memory bounded? Noisy simulated traffic at a steady rate through the
    /// whole pipeline in this process, RSS sampled as it goes; exits non-zero unless
    /// RSS stays within 10% after the warm-up and the rate is kept (use --release).
    Soak {
        #[arg(long, default_value_t = 20_000.0, value_parser = positive_rate)]
        rate: f64,
        #[arg(long, default_value = "30m", value_parser = egret::parse_duration_ms)]
        duration: i64,
        #[arg(long, default_value = "30s", value_parser = egret::parse_duration_ms)]
        sample_every: i64,
        #[arg(long, default_value = "5m", value_parser = egret::parse_duration_ms)]
        warmup: i64,
        /// Trip starts per simulated minute.
        #[arg(long, default_value_t = 2_000.0)]
        demand: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The performance figures of targets.md, measured here and printed beside
    /// their targets (build with --release: the dev profile is far slower).
    Bench(egret::bench::BenchOptions),
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Clean => "clean",
            Scenario::Noisy => "noisy",
        }
    }
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?}: a positive number of events per second")),
    }
}

fn scenario_config(seed: u64, scenario: Scenario, start_ms: i64, duration_ms: i64, demand: Option<f64>) -> SimConfig {
    let mut config = SimConfig { scripted: true, ..SimConfig::clean(seed, start_ms, duration_ms) };
    if let Scenario::Noisy = scenario {
        config.noise = Noise::noisy();
    }
    if let Some(d) = demand {
        config.demand_per_min = d;
    }
    config
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let city = egret::load_city(cli.data_dir.as_deref())?;
    if cli.window <= 0 {
        anyhow::bail!("--window must be positive");
    }
    let pipeline = PipelineConfig {
        window_ms: cli.window,
        out_of_orderness_ms: cli.out_of_orderness,
        allowed_lateness_ms: cli.allowed_lateness,
        ..PipelineConfig::default()
    };
    let serve_options = ServeOptions { state_dir: cli.state_dir.clone(), rate_per_second: cli.rate_limit, answer_cache: !cli.no_answer_cache };
    match cli.command {
        Command::Rescale { group, from, to, checkpoints, kafka } => {
            let kafka = KafkaConfig { namespace: cli.namespace.clone(), replication: cli.replication, ..KafkaConfig::new(kafka) };
            let options = egret::rescale::RescaleOptions { deployment: egret::layout::Deployment { checkpoints: checkpoints.unwrap_or_else(|| cli.state_dir.join("checkpoints")), namespace: cli.namespace.clone(), group }, from, to, kafka };
            let done = egret::rescale::rescale(&city, &pipeline, &options).await?;
            println!("{from} instances dealt out to {to}: {} plates in flight kept; start `egret run --kafka ... --instance K/{to}` for K = 1..{to}", done.plates_in_flight);
            Ok(())
        }
        Command::Lag { kafka, group, instances } => {
            let config = KafkaConfig { namespace: cli.namespace.clone(), ..KafkaConfig::new(kafka) };
            for l in egret::lag::lag(&config, &group, instances).await? {
                let topics: Vec<String> = l.input.iter().map(|(t, n)| format!("{t} {n}")).collect();
                println!("instance {}: {} input records behind ({}), {} updates behind on the repartition topic", l.instance, l.input_total(), topics.join(", "), l.repartition);
            }
            Ok(())
        }
        Command::Autoscale(args) => {
            let (_stop_tx, stop) = egret::serve::stop_on_ctrl_c();
            egret::autoscale::Controller::new(city, pipeline, args, &cli.namespace)?.run(stop).await
        }
        Command::Serve { kafka, group, listen } => {
            let config = KafkaConfig { group_id: group, namespace: cli.namespace.clone(), replication: cli.replication, ..KafkaConfig::new(kafka) };
            egret::follow::serve(city, &config, &listen, &serve_options).await
        }
        Command::Token { role, subject, ttl } => {
            let role = Role::parse(&role).with_context(|| format!("--role {role:?}: one of public, dispatcher, police, admin, device"))?;
            let secret = keys::load_or_create(keys::TOKEN_KEY_ENV, &cli.state_dir, "token.key")
                .with_context(|| format!("token key in {}", cli.state_dir.display()))?;
            let now_s = commands::now_ms() / 1000;
            println!("{}", TokenKey::from_secret(&secret).issue(&subject, role, now_s, (ttl / 1000).max(1)));
            Ok(())
        }
        Command::Demo { listen, seed, preroll, pace, duration, demand } => {
            let config = scenario_config(seed, Scenario::Clean, commands::now_ms() - preroll, preroll + duration, demand);
            commands::demo(city, pipeline, &listen, config, preroll, pace, &serve_options).await
        }
        Command::Simulate { out, kafka, seed, scenario, start, duration, pace, rate, demand } => {
            let start_ms = match start.as_deref() {
                None => SCENARIO_START_MS,
                Some("now") => commands::now_ms(),
                Some(ms) => ms.parse().with_context(|| format!("--start {ms:?}: epoch milliseconds or \"now\""))?,
            };
            let config = scenario_config(seed, scenario, start_ms, duration, demand);
            let options = DriveOptions { pace, realtime_from_ms: i64::MIN, max_rate: rate, progress: true };
            let kafka = kafka.map(|brokers| KafkaConfig { namespace: cli.namespace.clone(), replication: cli.replication, ..KafkaConfig::new(brokers) });
            commands::simulate(city, config, out.as_deref(), kafka.as_ref(), options).await
        }
        Command::Eval { scenario, seed, duration, kafka } => {
            let config = scenario_config(seed, scenario, SCENARIO_START_MS, duration, None);
            let outcome = match &kafka {
                Some(brokers) => egret::eval::run_kafka(city.clone(), pipeline, config, brokers, true).await?,
                None => egret::eval::run_embedded(city.clone(), pipeline, config, true).await?,
            };
            let rows = egret::eval::figures(&city, scenario == Scenario::Noisy, &outcome);
            let through = kafka.map(|b| format!(" --kafka {b}")).unwrap_or_default();
            let command = format!("egret eval --scenario {} --seed {seed} --duration {}s{through}", scenario.name(), duration / 1000);
            if !egret::eval::print_table(scenario.name(), &command, &outcome, &rows) {
                anyhow::bail!("some figures missed their targets");
            }
            Ok(())
        }
        Command::Bench(options) => egret::bench::run(city, pipeline, &options).await,
        Command::Soak { rate, duration, sample_every, warmup, demand, seed } => {
            let ms = |v: i64| Duration::from_millis(v.max(1) as u64);
            let options = egret::soak::SoakOptions { rate, duration: ms(duration), sample_every: ms(sample_every), warmup: ms(warmup), demand, seed };
            if !egret::soak::run(city, pipeline, &options).await? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Faults { kafka, events, kills, broker_restarts, cluster_script, cluster_port, cluster_nodes, rebalances, seed, checkpoint_interval, work_dir } => {
            let options = egret::faults::FaultOptions {
                brokers: kafka,
                events,
                kills,
                broker_restarts,
                cluster: cluster_script.zip(cluster_port),
                cluster_nodes,
                rebalances,
                replication: cli.replication,
                seed,
                checkpoint_interval_ms: checkpoint_interval,
                work_dir: work_dir.unwrap_or_else(|| std::env::temp_dir().join(format!("egret-faults-{}", egret::commands::now_ms()))),
            };
            if !egret::faults::run(&city, &options).await? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Run { input, kafka, group, instance, exit_when_idle, checkpoint_dir, checkpoint_interval, no_checkpoints, instance_id, listen, exit_at_end, hotlists, stop_at, past_cut, checkpoints, pod_index } => {
            let hotlists = match &hotlists {
                Some(path) => commands::load_hotlists(path)?,
                None => Vec::new(),
            };
            anyhow::ensure!(kafka.is_some() || instance.is_whole(), "--instance {instance} splits Kafka input between active instances: it needs --kafka");
            let input = match (&input, &kafka) {
                (Some(dir), None) => Input::Files(dir),
                (None, Some(brokers)) if pod_index.is_some() => {
                    anyhow::ensure!(instance.is_whole(), "--pod-index takes the instance from the deployment's layout: leave out --instance");
                    let deployment = egret::layout::Deployment { checkpoints: checkpoints.unwrap_or_default(), namespace: cli.namespace.clone(), group: group.clone() };
                    let options = egret::pod::PodOptions {
                        deployment,
                        pod_index: pod_index.unwrap_or_default(),
                        checkpoint_interval: Duration::from_millis(checkpoint_interval.max(1) as u64),
                        exit_when_idle: exit_when_idle.map(|ms| Duration::from_millis(ms.max(0) as u64)),
                    };
                    // One id for the pods of an instance: the standby replaces the gone member at once.
                    let instance_id = instance_id.or_else(|| Some(format!("egret-{}{group}", cli.namespace)));
                    let config = KafkaConfig { group_id: group.clone(), namespace: cli.namespace.clone(), replication: cli.replication, instance_id, ..KafkaConfig::new(brokers) };
                    Input::Pod { config, options }
                }
                (None, Some(brokers)) => {
                    let exit_when_idle = exit_when_idle.map(|ms| Duration::from_millis(ms.max(0) as u64));
                    let checkpoints = (!no_checkpoints).then(|| egret::instance::CheckpointOptions {
                        dir: checkpoint_dir.unwrap_or_else(|| egret::layout::Deployment { checkpoints: cli.state_dir.join("checkpoints"), namespace: cli.namespace.clone(), group: group.clone() }.directory(instance)),
                        interval: Duration::from_millis(checkpoint_interval.max(1) as u64),
                    });
                    let instance_id = instance_id.or_else(|| checkpoints.as_ref().map(|c| egret::instance::default_instance_id(&c.dir)));
                    let config = KafkaConfig { group_id: group.clone(), namespace: cli.namespace.clone(), replication: cli.replication, instance_id, ..KafkaConfig::new(brokers) };
                    Input::Kafka { config, options: egret::instance::RunOptions { exit_when_idle, checkpoints, ownership: instance, stop_at, past_cut, layout: None } }
                }
                _ => anyhow::bail!("give exactly one of --input DIR or --kafka BROKERS"),
            };
            commands::run(city, pipeline, input, &listen, exit_at_end || exit_when_idle.is_some(), &hotlists, &serve_options).await
        }
    }
}
