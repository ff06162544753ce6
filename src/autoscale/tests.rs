//! The controller's steps that need no broker, against an HTTP stand-in for the
//! StatefulSet's scale subresource: a cut never reached is called off, a call-off
//! that would start an instance empty is refused, and a controller that stopped
//! between dealing the state out and moving the old directories aside finishes
//! the rescale. (The whole rescale, through a real broker, is
//! `tests/kafka_autoscale.rs`.)

use super::*;
use axum::routing::get;
use clap::Parser;
use std::sync::Mutex;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: AutoscaleArgs,
}

/// The replica counts PATCHed, in order, starting from `replicas`.
#[derive(Default)]
struct Scale {
    replicas: u32,
    patched: Vec<u32>,
}

async fn stand_in(replicas: u32) -> (String, Arc<Mutex<Scale>>) {
    let scale = Arc::new(Mutex::new(Scale { replicas, patched: Vec::new() }));
    let (read, write) = (scale.clone(), scale.clone());
    let router = axum::Router::new().route(
        "/apis/apps/v1/namespaces/egret/statefulsets/egret-pipeline/scale",
        get(move || async move {
            let n = read.lock().expect("scale").replicas;
            axum::Json(serde_json::json!({ "spec": { "replicas": n }, "status": { "replicas": n } }))
        })
        .patch(move |body: String| async move {
            let patch: serde_json::Value = serde_json::from_str(&body).expect("a merge patch");
            let n = patch["spec"]["replicas"].as_u64().expect("spec.replicas") as u32;
            let mut scale = write.lock().expect("scale");
            scale.replicas = n;
            scale.patched.push(n);
            axum::Json(serde_json::json!({ "spec": { "replicas": n } }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, scale)
}

fn controller(api: &str, checkpoints: &Path) -> Controller {
    let checkpoints = checkpoints.to_str().expect("a path");
    let cli = Cli::parse_from(["autoscale", "--kafka", "127.0.0.1:1", "--checkpoints", checkpoints, "--kube-api", api, "--cut-timeout", "10m"]);
    Controller::new(crate::load_city(None).expect("city"), PipelineConfig::default(), cli.args, "t.").expect("a controller")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("egret-autoscale-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

const CUT: i64 = 1_795_995_900_000;

#[tokio::test]
async fn a_cut_not_reached_in_time_is_called_off_and_the_old_split_goes_on() {
    let dir = scratch("timeout");
    let (api, scale) = stand_in(2).await;
    let mut controller = controller(&api, &dir);
    let deployment = controller.deployment.clone();
    // Instance 1/1 has a directory but never stopped at the cut.
    std::fs::create_dir_all(deployment.directory(egret_pipeline::ownership::Ownership::default())).expect("made");
    let now = egret_model::time::now_ms();
    let under_way = |set_ms| Layout { stop_at: Some(CUT), rescaling_to: Some(2), cut_set_ms: Some(set_ms), ..Layout::steady(1) };
    deployment.set_layout(&under_way(now - 60_000)).expect("written");
    controller.round().await.expect("a round");
    assert_eq!(deployment.layout().expect("read"), under_way(now - 60_000), "a minute in: still waiting");
    deployment.set_layout(&under_way(now - 11 * 60_000)).expect("written");
    controller.round().await.expect("a round");
    assert_eq!(deployment.layout().expect("read"), Layout::steady(1), "called off: the pods go on past the cut");
    assert_eq!(scale.lock().expect("scale").patched, [2], "one instance and its standby");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn no_call_off_while_an_old_directory_is_gone() {
    let dir = scratch("gone");
    let (api, scale) = stand_in(4).await;
    let mut controller = controller(&api, &dir);
    let deployment = controller.deployment.clone();
    let under_way = Layout { stop_at: Some(CUT), rescaling_to: Some(1), cut_set_ms: Some(0), ..Layout::steady(2) };
    std::fs::create_dir_all(deployment.directory(egret_pipeline::ownership::Ownership::new(0, 2).expect("a share"))).expect("made");
    deployment.set_layout(&under_way).expect("written");
    let refused = controller.round().await.expect_err("instance 2/2's directory is gone").to_string();
    assert!(refused.contains("not calling the rescale off") && refused.contains("2-of-2"), "{refused}");
    assert_eq!(deployment.layout().expect("read"), under_way, "the layout is left for an operator");
    assert!(scale.lock().expect("scale").patched.is_empty(), "the replica count left as it is");
    assert!(!deployment.directory(egret_pipeline::ownership::Ownership::new(1, 2).expect("a share")).exists(), "the missing directory is not made again");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_controller_stopped_after_the_dealing_moves_the_old_directories_aside_and_starts_the_new_split() {
    let dir = scratch("retire");
    let (api, scale) = stand_in(0).await;
    let mut controller = controller(&api, &dir);
    let deployment = controller.deployment.clone();
    let old = deployment.directory(egret_pipeline::ownership::Ownership::default());
    std::fs::create_dir_all(&old).expect("made");
    std::fs::write(old.join("stage1.cbor"), b"the old state").expect("written");
    deployment.set_layout(&Layout { retire_from: Some(1), ..Layout::steady(2) }).expect("written");
    controller.round().await.expect("a round");
    assert_eq!(deployment.layout().expect("read"), Layout::steady(2));
    assert_eq!(scale.lock().expect("scale").patched, [4], "two instances and their standbys");
    assert!(!old.exists(), "moved aside");
    let retired: Vec<PathBuf> = std::fs::read_dir(dir.join("retired")).expect("retired").flatten().map(|e| e.path()).collect();
    assert!(retired.len() == 1 && std::fs::read(retired[0].join("stage1.cbor")).expect("kept") == b"the old state", "kept, not deleted: {retired:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_read_pace_is_record_time_per_wall_time_and_none_without_time_between() {
    let at = |read_up_to_ms, written_ms| Progress { read_up_to_ms, written_ms };
    assert_eq!(read_pace(&at(130_000, 11_000), &at(100_000, 1_000)), Some(3.0), "30 s of records in 10 s: three times real time");
    assert_eq!(read_pace(&at(100_000, 1_000), &at(100_000, 1_000)), None);
}
