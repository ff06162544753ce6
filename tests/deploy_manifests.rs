//! deploy/ as an operator uses it: the Compose file, the Dockerfile, the Kubernetes
//! manifests, the Grafana dashboard and the Prometheus alert rules are checked by
//! `tests/deploy/check.py` against schemas (the Compose specification, Kubernetes'
//! OpenAPI through kubernetes-validate, the Strimzi fields relied on), against each
//! other, and against the code: the topic constants and the repartition partition
//! count given here, the flags and environment variables of `egret run --help` of the
//! built binary, the key variables, and the metric names in the sources. The pipeline
//! tier is checked for active/standby: at least 2 instances sharing one checkpoint
//! directory (`--checkpoint-dir` on one Compose named volume, or on a Kubernetes
//! ReadWriteMany PersistentVolumeClaim) and one `--instance-id`.
//!
//! A second run over a copy of the repository with known mistakes put in proves the
//! checker sees them: a checker that passes everything would pass unseen.
//!
//! The Python side runs in the venv `.ci/python-venv.sh` makes (`$HOME/.cache/egret/venv`,
//! or the interpreter in `EGRET_PYTHON`). Without it this test fails and says how to
//! make it. `docker compose config -q`, `kubectl kustomize` and `promtool check rules`
//! run where those tools exist, and the output says when one was skipped.

#[path = "support/scratch.rs"]
mod scratch;
mod venv;

use scratch::scratch_dir;
use venv::python;
use egret_ingest::kafka::{DERIVED_TOPICS, KafkaConfig};
use egret_model::Topic;
use egret_pipeline::DLQ_TOPIC;
use egret_pipeline::repartition::repartition_topic;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The flags of `egret <command>` (with whether each takes a value) and the
/// environment variables it reads, from the built binary's own help.
fn cli(command: &str) -> (serde_json::Map<String, Value>, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_egret")).args([command, "--help"]).output().expect("egret --help");
    assert!(out.status.success(), "egret {command} --help failed");
    let help = String::from_utf8(out.stdout).expect("utf-8 help");
    let (mut flags, mut env) = (serde_json::Map::new(), Vec::new());
    for line in help.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix("-h, ").unwrap_or(line);
        if let Some(rest) = line.strip_prefix("--") {
            let mut words = rest.split_whitespace();
            let name = format!("--{}", words.next().unwrap_or_default());
            flags.insert(name, Value::Bool(words.next().is_some_and(|w| w.starts_with('<'))));
        }
        if let Some((_, after)) = line.split_once("[env: ") {
            env.push(after.split('=').next().unwrap_or_default().to_owned());
        }
    }
    assert!(flags.contains_key("--kafka") && flags.contains_key("--group"), "unexpected `egret {command} --help`:\n{help}");
    (flags, env)
}

/// Everything the checker compares the manifests with, from the code.
fn expectations() -> Value {
    let (run_flags, run_env) = cli("run");
    let (serve_flags, serve_env) = cli("serve");
    let (autoscale_flags, autoscale_env) = cli("autoscale");
    json!({
        "topics": {
            "inputs": Topic::ALL.iter().map(|t| t.default_name()).collect::<Vec<_>>(),
            "derived": DERIVED_TOPICS.iter().map(|(name, compacted)| json!([name, compacted])).collect::<Vec<_>>(),
            "dlq": DLQ_TOPIC,
            // The manifests run the pipeline in the consumer group `egret`.
            "repartition": repartition_topic("egret"),
            // Stage 1 marks exactly this many repartition partitions.
            "repartition_partitions": KafkaConfig::new("").partitions,
        },
        // Pipeline instances run `egret run`, API instances `egret serve`.
        "run_flags": run_flags,
        "serve_flags": serve_flags,
        "autoscale_flags": autoscale_flags,
        "run_env": run_env.into_iter().chain(serve_env).chain(autoscale_env).collect::<std::collections::BTreeSet<_>>(),
        "key_env": [egret_api::keys::TOKEN_KEY_ENV, egret_api::keys::PSEUDONYM_KEY_ENV],
        "min_secret_bytes": egret_api::keys::MIN_SECRET_BYTES,
    })
}

/// Runs the checker on `root` (a repository) and returns (success, stdout).
fn run_checker(root: &Path, expect: &Value, scratch: &Path) -> (bool, String) {
    let python = python();
    assert!(
        python.exists(),
        "no Python for the deploy checks at {}: run .ci/python-venv.sh to create the venv (or point EGRET_PYTHON at an interpreter with PyYAML, kubernetes-validate, check-jsonschema and promql-parser)",
        python.display()
    );
    let expect_path = scratch.join("expect.json");
    std::fs::write(&expect_path, serde_json::to_vec_pretty(expect).expect("json")).expect("write expect.json");
    let output = Command::new(&python).arg(repo().join("tests/deploy/check.py")).arg(root).arg(&expect_path).output().expect("run check.py");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr));
    if !stderr.trim().is_empty() {
        eprintln!("{stderr}");
    }
    (output.status.success(), stdout)
}

#[test]
fn deploy_manifests_hold_against_the_schemas_and_the_code() {
    let expect = expectations();
    let scratch = scratch_dir("deploy-ok");
    let (ok, stdout) = run_checker(repo(), &expect, &scratch);
    println!("{stdout}");
    assert!(ok, "tests/deploy/check.py found problems in deploy/ (listed above)");
    // Each section ran and checked something: an empty section would pass unseen.
    for section in ["compose", "docker", "k8s", "grafana", "alerts", "readme"] {
        let line = stdout.lines().find(|l| l.starts_with(&format!("{section}: ")) && l.contains(" checks, 0 problems"));
        let count: u32 = line.and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(count > 0, "the checker reported no checks for {section}");
    }
    std::fs::remove_dir_all(&scratch).ok();
}

/// Copies what the checker reads into `to`: README, Cargo.toml, deploy/, and the
/// crates' Rust sources (for the metric names). Other engineers' files may come and go
/// while this runs; one that vanished between listing and copying is skipped.
fn copy_repo(to: &Path) {
    fn copy(from: &Path, to: &Path, only_rust: bool) {
        if from.is_dir() {
            std::fs::create_dir_all(to).expect("mkdir");
            for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
                copy(&entry.path(), &to.join(entry.file_name()), only_rust);
            }
        } else if !only_rust || from.extension().is_some_and(|e| e == "rs") {
            match std::fs::copy(from, to) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("copying {}: {e}", from.display()),
            }
        }
    }
    std::fs::create_dir_all(to).expect("mkdir");
    for item in ["README.md", "Cargo.toml", "deploy"] {
        copy(&repo().join(item), &to.join(item), false);
    }
    for krate in ["src", "model", "ingest", "pipeline", "query", "dashboard-api", "simulator"] {
        copy(&repo().join(krate), &to.join(krate), true);
    }
    // The Dockerfile ships data/; the checker only needs it to exist.
    std::fs::create_dir_all(to.join("data")).expect("mkdir data");
}

fn edit(root: &Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(from), "{file} no longer contains {from:?}: update this mutation");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
}

#[test]
fn the_checker_finds_mistakes_put_into_a_copy() {
    let expect = expectations();
    let scratch = scratch_dir("deploy-broken");
    let root = scratch.join("repo");
    copy_repo(&root);
    // Each mistake, and words of the problem the checker must report for it.
    let mistakes: [(&str, &str, &str, &str); 10] = [
        ("deploy/compose/topics.conf", "egret.internal.stage2.egret   4 ", "egret.internal.stage2.egret   8 ", "egret.internal.stage2.egret has 8 partitions"),
        ("deploy/k8s/topics.yaml", "cleanup.policy: compact", "cleanup.policy: delete", "egret.segment-speeds: cleanup.policy=delete"),
        ("deploy/compose/compose.yaml", "    - --group\n    - egret\n", "    - --groups\n    - egret\n", "--groups is not a flag"),
        ("deploy/k8s/api.yaml", "            - serve\n", "            - run\n", "must start with `serve`"),
        ("deploy/k8s/pipeline.yaml", "podManagementPolicy: Parallel", "podManagementPolicy: OrderedReady", "Parallel pod management"),
        // pipeline-1's checkpoint directory on its own state volume instead of the shared one.
        ("deploy/compose/compose.yaml", "      - pipeline-checkpoints:/var/lib/egret-checkpoints\n", "      - pipeline-1-state:/var/lib/egret-checkpoints\n", "pipeline-1: --checkpoint-dir /var/lib/egret-checkpoints/egret lies on its own state volume"),
        ("deploy/k8s/pipeline.yaml", "accessModes: [\"ReadWriteMany\"]", "accessModes: [\"ReadWriteOnce\"]", "egret-checkpoints, whose accessModes ['ReadWriteOnce'] lack ReadWriteMany"),
        ("deploy/k8s/autoscale.yaml", r#"verbs: ["get", "patch"]"#, r#"verbs: ["get"]"#, "may not patch statefulsets/scale of egret-pipeline"),
        ("deploy/grafana/egret-dashboard.json", "egret_consumer_lag{", "egret_consumer_lags{", "'egret_consumer_lags' is not a metric"),
        ("deploy/prometheus/alerts.yaml", r#"rate(egret_dead_letters_total{job="egret"}[10m])) > 1"#, r#"rate(egret_consumer_lag{job="egret"}[10m])) > 1"#, "rate() of egret_consumer_lag"),
    ];
    for (file, from, to, _) in &mistakes {
        edit(&root, file, from, to);
    }
    // The compose file also loses the health check of a long-running service.
    edit(&root, "deploy/compose/compose.yaml", "    healthcheck:\n      test: [\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:9090", "    x-healthcheck:\n      test: [\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:9090");
    let (ok, stdout) = run_checker(&root, &expect, &scratch);
    assert!(stdout.contains("deploy checks: "), "the checker stopped before its summary (see its error above):\n{stdout}");
    assert!(!ok, "the checker passed a repository with known mistakes:\n{stdout}");
    let problems: Vec<&str> = stdout.lines().filter(|l| l.starts_with("PROBLEM")).collect();
    for (file, _, _, words) in &mistakes {
        assert!(problems.iter().any(|p| p.contains(words)), "the mistake put into {file} was not reported as {words:?}; problems:\n{}", problems.join("\n"));
    }
    assert!(problems.iter().any(|p| p.contains("prometheus: a long-running service needs a health check")), "a service without a health check was not reported");
    println!("the checker reported all {} mistakes put in:\n{}", mistakes.len() + 1, problems.join("\n"));
    std::fs::remove_dir_all(&scratch).ok();
}
