//! Rescaling through a real Apache Kafka broker (`EGRET_KAFKA`, started by
//! `.ci/run`): instances of a split stopped at a cut (`egret run --stop-at`),
//! their checkpoints dealt out to another number of instances (`egret rescale`),
//! and the new ones going on from the cut write exactly what one instance
//! writes; a rescale that would lose updates is refused; and the README's
//! commands do it as processes.

#[path = "support/broker.rs"]
mod broker;
use broker::*;
use egret::instance::{self, InstanceReport};
use egret::layout::Deployment;
use egret_ingest::kafka::KafkaConfig;
use egret_model::CityModel;
use egret_pipeline::ownership::Ownership;
use egret_pipeline::runner::Ended;
use egret_pipeline::{ClockMode, LiveState, PipelineConfig};
use egret_simulator::{Noise, SimConfig};
use std::sync::Arc;
use std::time::Duration;

/// Instance `share` of `config`'s group with checkpoints in `dir`: to the cut at
/// `stop_at` (`egret run --stop-at`), or, without one, until its input has been
/// idle for 5 s.
async fn checkpointed(city: Arc<CityModel>, config: KafkaConfig, share: Ownership, dir: std::path::PathBuf, stop_at: Option<i64>) -> (Arc<LiveState>, InstanceReport) {
    let live = Arc::new(LiveState::new(city.clone()));
    let pipeline = PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() };
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let checkpoints = Some(instance::CheckpointOptions { dir, interval: Duration::from_secs(1) });
    // Without a cut to stop at, the one instance goes on from its own cut.
    let options = instance::RunOptions { exit_when_idle: stop_at.is_none().then_some(Duration::from_secs(5)), checkpoints, ownership: share, stop_at, past_cut: stop_at.is_none(), layout: None };
    let report = instance::run(city, pipeline, &config, live.clone(), stop, &options).await.expect("instance runs");
    assert_eq!(report.ended, if stop_at.is_some() { Ended::Cut } else { Ended::InputEnd }, "instance {share}");
    (live, report)
}

/// Rescaling through a real broker: two instances stop at a cut (`--stop-at`),
/// `egret rescale` deals their checkpoints out to three and commits the new
/// groups' offsets there, and the three go on to the end. Together the five write
/// exactly the tickets and final windows of one instance stopped at the same cut
/// and restarted, and keep every input record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_stopped_at_a_cut_and_dealt_out_to_three_write_one_instances_output() {
    let Some(brokers) = brokers() else { return };
    let city = egret::load_city(None).expect("city");
    let cut = START + 4 * 60_000;
    let noise = Noise { misread: 0.2, ..Noise::noisy() };
    let config = config(&brokers, &namespace("rescale"));
    let mut sent = 0;
    for (seed, start) in [(21, START), (22, cut)] {
        sent += publish(city.clone(), SimConfig { noise: noise.clone(), ..SimConfig::clean(seed, start, 4 * 60_000) }, &config).await;
    }
    let lag = |n| {
        let config = config.clone();
        async move { egret::lag::lag(&config, &config.group_id, n).await.expect("lag read") }
    };
    let before = lag(2).await;
    assert!(before.iter().all(|l| l.input_total() == sent), "nothing read yet: every instance is the whole input behind: {before:?}");
    let state = std::env::temp_dir().join(format!("egret-rescale-e2e-{}", std::process::id()));
    let rescale = egret::rescale::RescaleOptions { deployment: Deployment { checkpoints: state.clone(), namespace: config.namespace.clone(), group: config.group_id.clone() }, from: 2, to: 3, kafka: config.clone() };
    let whole = KafkaConfig { group_id: format!("{}-whole", config.group_id), ..config.clone() };
    let whole_dir = state.join("whole");
    let one = tokio::spawn(checkpointed(city.clone(), whole.clone(), Ownership::default(), whole_dir.clone(), Some(cut)));
    let share = |k, n| Ownership::new(k, n).expect("index below count");
    let mut runs = Vec::new();
    for k in 0..2 {
        runs.push(tokio::spawn(checkpointed(city.clone(), config.clone(), share(k, 2), rescale.deployment.directory(share(k, 2)), Some(cut))));
    }
    let mut split = Vec::new();
    for run in runs {
        split.push(run.await.expect("an instance of two"));
    }
    // Started again (a supervisor, a standby), an instance stopped at the cut
    // stops there at once; started without it, it refuses to run the old split on.
    checkpointed(city.clone(), config.clone(), share(0, 2), rescale.deployment.directory(share(0, 2)), Some(cut)).await;
    let pipeline = PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() };
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let checkpoints = Some(instance::CheckpointOptions { dir: rescale.deployment.directory(share(1, 2)), interval: Duration::from_secs(1) });
    let options = instance::RunOptions { exit_when_idle: Some(Duration::from_secs(5)), checkpoints, ownership: share(1, 2), ..Default::default() };
    let refused = instance::run(city.clone(), pipeline.clone(), &config, Arc::new(LiveState::new(city.clone())), stop, &options).await.expect_err("the old split refused past its cut");
    assert!(refused.to_string().contains("stopped at the cut"), "{refused}");
    let dealt = egret::rescale::rescale(&city, &pipeline, &rescale).await.expect("rescaled");
    assert_eq!((dealt.cut_ms, dealt.directories.len()), (cut, 3));
    assert!(dealt.plates_in_flight > 100, "plates with reads in flight at the cut: {}", dealt.plates_in_flight);
    let refused = egret::rescale::rescale(&city, &pipeline, &rescale).await.expect_err("the new directories hold checkpoints");
    assert!(refused.to_string().contains("already holds a checkpoint"), "{refused}");
    let mut runs = Vec::new();
    for k in 0..3 {
        runs.push(tokio::spawn(checkpointed(city.clone(), config.clone(), share(k, 3), rescale.deployment.directory(share(k, 3)), None)));
    }
    let first = one.await.expect("one instance to the cut");
    let rest = checkpointed(city.clone(), whole, Ownership::default(), whole_dir, None).await;
    for run in runs {
        split.push(run.await.expect("an instance of three"));
    }
    let after = lag(3).await;
    assert!(after.iter().all(|l| l.input_total() == 0 && l.repartition == 0), "the three read and applied everything: {after:?}");
    let consumed = |r: &InstanceReport| r.stats.consumed.values().sum::<u64>();
    let kept: Vec<u64> = split.iter().map(|(_, r)| consumed(r)).collect();
    println!("rescale: {sent} events; instances of two then of three kept {kept:?}; one instance {} then {}", consumed(&first.1), consumed(&rest.1));
    // Totals are kept in the state: across a stop they go on, and dealt out, the
    // first new instance carries the old ones'.
    assert_eq!(consumed(&rest.1), sent, "one instance counts every input once across its stop");
    assert_eq!(kept[0] + kept[1], consumed(&first.1), "the two keep what one keeps up to the cut");
    assert_eq!(kept[2..].iter().sum::<u64>(), sent, "the three, with the two's totals, count every input once");
    assert!(kept[3] > 0 && kept[4] > 0 && kept[2] > kept[0] + kept[1], "every instance of three did work: {kept:?}");
    let union = |lives: &mut dyn Iterator<Item = &Arc<LiveState>>| {
        lives.fold((std::collections::BTreeSet::new(), Vec::new()), |(mut t, mut w), live| {
            t.extend(tickets(live));
            w.extend(windows(live));
            (t, w)
        })
    };
    let (split_tickets, mut split_windows) = union(&mut split.iter().map(|(l, _)| l));
    let (one_tickets, mut one_windows) = union(&mut [&first.0, &rest.0].into_iter());
    split_windows.sort();
    one_windows.sort();
    assert!(one_tickets.len() > 20, "the scenario issues tickets: {}", one_tickets.len());
    let (missing, extra): (Vec<_>, Vec<_>) = (one_tickets.difference(&split_tickets).collect(), split_tickets.difference(&one_tickets).collect());
    assert!(missing.is_empty() && extra.is_empty(), "of {} tickets, the rescaled split misses {missing:?} and adds {extra:?}", one_tickets.len());
    assert_same_windows(&split_windows, &one_windows, "the rescaled split", "one instance");
    std::fs::remove_dir_all(&state).ok();
}

/// An old instance started again past the cut sends updates the old split's stage
/// 2 never applies, and the new one would pass over: `egret rescale` refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescaling_refuses_when_an_old_instance_ran_past_the_cut() {
    let Some(brokers) = brokers() else { return };
    let city = egret::load_city(None).expect("city");
    let cut = START + 2 * 60_000;
    let config = config(&brokers, &namespace("pastcut"));
    publish(city.clone(), SimConfig::clean(23, START, 4 * 60_000), &config).await;
    let state = std::env::temp_dir().join(format!("egret-pastcut-e2e-{}", std::process::id()));
    let rescale = egret::rescale::RescaleOptions { deployment: Deployment { checkpoints: state.clone(), namespace: config.namespace.clone(), group: config.group_id.clone() }, from: 2, to: 3, kafka: config.clone() };
    let share = |k| Ownership::new(k, 2).expect("index below count");
    let stops: Vec<_> = (0..2).map(|k| tokio::spawn(checkpointed(city.clone(), config.clone(), share(k), rescale.deployment.directory(share(k)), Some(cut)))).collect();
    for stop in stops {
        stop.await.expect("stopped at the cut");
    }
    // Both go on to the end as the same split (`--past-cut`).
    let saved = |k: u32| state.join(format!("saved-{k}"));
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        std::fs::create_dir_all(to).expect("a directory");
        for name in ["stage1.cbor", "stage2.cbor"] {
            std::fs::copy(from.join(name), to.join(name)).expect("copied");
        }
    };
    for k in 0..2 {
        copy(&rescale.deployment.directory(share(k)), &saved(k));
    }
    let runs: Vec<_> = (0..2).map(|k| tokio::spawn(checkpointed(city.clone(), config.clone(), share(k), rescale.deployment.directory(share(k)), None))).collect();
    for run in runs {
        run.await.expect("ran to the end");
    }
    let pipeline = PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() };
    let refused = egret::rescale::rescale(&city, &pipeline, &rescale).await.expect_err("they ran past the cut");
    assert!(refused.to_string().contains("not saved at a cut"), "{refused}");
    // Their checkpoints of the cut put back (a backup restored): of one cut again,
    // but what they sent past it is on the repartition topic, after where the old
    // stage 2s stopped.
    for k in 0..2 {
        copy(&saved(k), &rescale.deployment.directory(share(k)));
    }
    let refused = egret::rescale::rescale(&city, &pipeline, &rescale).await.expect_err("updates after the cut");
    assert!(refused.to_string().contains("sent updates after the cut"), "{refused}");
    assert!(!rescale.deployment.directory(Ownership::new(0, 3).expect("a share")).join("stage1.cbor").exists(), "a refusal writes nothing");
    std::fs::remove_dir_all(&state).ok();
}

/// An `egret` process killed if the test fails while it runs: left behind, it would
/// hold the test's output open and keep its consumer group busy.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The operator's steps of the README, as processes: `egret run --stop-at` stops
/// each instance at the cut and serves on, `egret rescale` deals them out to
/// three, an old instance started again without the cut is refused, and the three
/// new ones run to the end with nothing left behind (`egret lag`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rescale_commands_of_the_readme_take_a_deployment_from_two_instances_to_three() {
    let Some(brokers) = brokers() else { return };
    let ns = namespace("cmds");
    let egret = env!("CARGO_BIN_EXE_egret");
    let state = std::env::temp_dir().join(format!("egret-cmds-e2e-{}", std::process::id()));
    let state_dir = state.to_str().expect("a path").to_owned();
    let common = ["--namespace", ns.as_str(), "--state-dir", state_dir.as_str()];
    let run = |args: &[&str]| std::process::Command::new(egret).args(common).args(args).output().expect("egret runs");
    let status = |args: &[&str]| {
        let out = run(args);
        assert!(out.status.success(), "egret {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    status(&["simulate", "--kafka", &brokers, "--seed", "12", "--duration", "4m"]);
    let cut = (START + 2 * 60_000).to_string();
    let mut stopped = Vec::new();
    for k in ["1/2", "2/2"] {
        let mut child = std::process::Command::new(egret)
            .args(common)
            .args(["run", "--kafka", &brokers, "--instance", k, "--stop-at", &cut, "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("egret starts");
        let stdout = child.stdout.take().expect("stdout");
        let child = KillOnDrop(Some(child));
        let (said, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
                let _ = said.send(line);
            }
        });
        stopped.push((child, heard));
    }
    for (_, heard) in &stopped {
        let line = heard.iter().find(|l| l.contains("stopped at the cut") || l.contains("still serving")).expect("the instance says it stopped");
        assert!(line.contains("stopped at the cut"), "{line}");
    }
    for (child, _) in &mut stopped {
        let mut child = child.0.take().expect("running");
        assert!(child.try_wait().expect("a status").is_none(), "an instance stopped at the cut serves on");
        child.kill().expect("stopped");
        child.wait().expect("gone");
    }
    let refused = run(&["run", "--kafka", &brokers, "--instance", "1/2", "--exit-when-idle", "5s", "--listen", "127.0.0.1:0"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--past-cut"), "{}", String::from_utf8_lossy(&refused.stderr));
    let printed = status(&["rescale", "--kafka", &brokers, "--from", "2", "--to", "3"]);
    assert!(printed.contains("2 instances dealt out to 3"), "{printed}");
    let behind = status(&["lag", "--kafka", &brokers, "--instances", "3"]);
    assert!(behind.lines().count() == 3 && !behind.contains(" 0 input records behind"), "the three start at the cut, before the rest: {behind}");
    // At once: stage 2 of each waits for the others' final marks.
    let runs: Vec<_> = ["1/3", "2/3", "3/3"]
        .into_iter()
        .map(|k| {
            let args = ["run", "--kafka", &brokers, "--instance", k, "--exit-when-idle", "5s", "--listen", "127.0.0.1:0"];
            KillOnDrop(Some(std::process::Command::new(egret).args(common).args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("egret starts")))
        })
        .collect();
    for mut child in runs {
        let out = child.0.take().expect("running").wait_with_output().expect("egret runs");
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("stage 1 restored"), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let behind = status(&["lag", "--kafka", &brokers, "--instances", "3"]);
    assert_eq!(behind.matches(" 0 input records behind").count(), 3, "{behind}");
    assert_eq!(behind.matches(" 0 updates behind").count(), 3, "{behind}");
    std::fs::remove_dir_all(&state).ok();
}
