//! The layout of a deployment of split instances, kept beside their checkpoint
//! directories on the shared volume: how many active instances split the input,
//! and the cut they are to stop at for a rescale. `egret autoscale` writes it;
//! every `egret run --pod-index I` reads it to know which instance it is
//! (`pod`), and follows it while it runs, so a rescale needs no pod restarted
//! with other arguments: only files the pods and the controller both see.
//!
//! Each instance also writes how far it has got (`Progress`) into its
//! checkpoint directory, for the controller to place the cut just ahead of the
//! most advanced instance instead of ahead of the wall clock: under a backlog
//! (when a rescale is most wanted) the instances would otherwise have to work it
//! off before they could stop.

use crate::instance::group_of;
use egret_pipeline::ownership::Ownership;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the deployment is to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Active instances splitting the input (`--instance K/N`).
    pub instances: u32,
    /// Every instance is to stop at the cut at this record time (`run --stop-at`).
    #[serde(default)]
    pub stop_at: Option<i64>,
    /// A rescale to this many instances is under way (with `stop_at`): a
    /// controller restarted part way through carries it on.
    #[serde(default)]
    pub rescaling_to: Option<u32>,
    /// When the cut was set (wall clock): a rescale whose instances have not all
    /// stopped some minutes after is called off, whichever controller set it.
    #[serde(default)]
    pub cut_set_ms: Option<i64>,
    /// The directories of a split into this many instances are dealt out to this
    /// one and are to be moved aside (`retired/`).
    #[serde(default)]
    pub retire_from: Option<u32>,
}

impl Default for Layout {
    /// A deployment that has never been rescaled: one instance (and its standbys).
    fn default() -> Self {
        Layout { instances: 1, stop_at: None, rescaling_to: None, cut_set_ms: None, retire_from: None }
    }
}

impl Layout {
    /// `instances` active instances, no rescale under way.
    pub fn steady(instances: u32) -> Self {
        Layout { instances, ..Layout::default() }
    }

    /// The instance that pod `index` of the StatefulSet is: pods I and I + N are the
    /// active and the standby of one directory.
    pub fn share_of_pod(&self, index: u32) -> anyhow::Result<Ownership> {
        Ownership::new(index % self.instances.max(1), self.instances).ok_or_else(|| anyhow::anyhow!("the layout's instances must be 1 or more, not {}", self.instances))
    }
}

/// The shares of a split into `count` instances, in order.
pub fn shares(count: u32) -> impl Iterator<Item = Ownership> {
    (0..count).filter_map(move |k| Ownership::new(k, count))
}

/// Where one deployment (a namespace and consumer group) keeps its checkpoints.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The parent of the instances' directories (`--checkpoints`).
    pub checkpoints: PathBuf,
    pub namespace: String,
    pub group: String,
}

impl Deployment {
    /// The checkpoint directory of instance `share`: `<namespace><group>.K-of-N`
    /// (`<namespace><group>` for one instance), as `egret run` names it by default.
    pub fn directory(&self, share: Ownership) -> PathBuf {
        self.checkpoints.join(format!("{}{}", self.namespace, group_of(&self.group, share)))
    }

    fn layout_path(&self) -> PathBuf {
        self.checkpoints.join(format!("{}{}.layout.json", self.namespace, self.group))
    }

    /// The layout; the default (one instance) where none was written yet.
    pub fn layout(&self) -> anyhow::Result<Layout> {
        let path = self.layout_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{}: not a layout ({e}); it is written by `egret autoscale`", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Layout::default()),
            Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        }
    }

    /// Replaces the layout whole: a reader sees the old one or the new one.
    pub fn set_layout(&self, layout: &Layout) -> anyhow::Result<()> {
        anyhow::ensure!(layout.instances >= 1, "a layout of {} instances", layout.instances);
        std::fs::create_dir_all(&self.checkpoints).map_err(|e| anyhow::anyhow!("making {}: {e}", self.checkpoints.display()))?;
        write_atomically(&self.layout_path(), &serde_json::to_vec_pretty(layout)?)
    }
}

/// The layout an instance was started for (`pod`): it runs only while it holds.
#[derive(Debug, Clone)]
pub struct Expected {
    pub deployment: Deployment,
    pub layout: Layout,
}

impl Expected {
    pub fn holds(&self) -> anyhow::Result<bool> {
        Ok(self.deployment.layout()? == self.layout)
    }
}

/// How far an instance has got, written into its checkpoint directory while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The newest record time (ms since the epoch) its stage 1 has processed.
    pub read_up_to_ms: i64,
    /// The wall clock when it wrote this.
    pub written_ms: i64,
}

impl Progress {
    /// Written by pod `pod_index`: an active pod and its standby, which once was
    /// active, each have a file, and the newest is the one that runs. Only into
    /// a directory there is: one moved aside by a rescale is not made again.
    pub fn write(&self, dir: &Path, pod_index: u32) -> anyhow::Result<()> {
        anyhow::ensure!(dir.is_dir(), "{} is gone", dir.display());
        write_atomically(&dir.join(format!("progress.{pod_index}.json")), &serde_json::to_vec(self)?)
    }

    /// The furthest any pod of the instance in `dir` has said it got.
    pub fn newest(dir: &Path) -> Option<Progress> {
        let said = std::fs::read_dir(dir).ok()?.filter_map(Result::ok).filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("progress.") && name.ends_with(".json")
        });
        said.filter_map(|e| serde_json::from_slice::<Progress>(&std::fs::read(e.path()).ok()?).ok()).max_by_key(|p| p.read_up_to_ms)
    }
}

/// Written beside, then renamed over: a crash leaves the old file or the new one.
/// Into a directory there is (none is made: one moved aside must stay so).
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let context = |e: std::io::Error| anyhow::anyhow!("writing {}: {e}", path.display());
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary).map_err(context)?;
    file.write_all(bytes).map_err(context)?;
    file.sync_all().map_err(context)?;
    std::fs::rename(&temporary, path).map_err(context)?;
    sync_directory(path.parent())
}

/// Makes a rename in `dir` durable (the new name is in the directory's own data).
pub fn sync_directory(dir: Option<&Path>) -> anyhow::Result<()> {
    let dir = dir.filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| anyhow::anyhow!("syncing {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_pair_up_as_active_and_standby_of_each_instance() {
        let layout = Layout { instances: 3, ..Layout::default() };
        let shares: Vec<String> = (0..6).map(|i| layout.share_of_pod(i).expect("a share").to_string()).collect();
        assert_eq!(shares, ["1/3", "2/3", "3/3", "1/3", "2/3", "3/3"]);
        assert!(Layout::default().share_of_pod(5).expect("a share").is_whole(), "one instance: every pod is it");
    }

    #[test]
    fn a_layout_reads_back_and_a_missing_one_is_a_single_instance() {
        let dir = std::env::temp_dir().join(format!("egret-layout-{}", std::process::id()));
        let deployment = Deployment { checkpoints: dir.clone(), namespace: "t.".into(), group: "egret".into() };
        assert_eq!(deployment.layout().expect("no layout yet"), Layout::default());
        let layout = Layout { instances: 2, stop_at: Some(1_000), rescaling_to: Some(3), cut_set_ms: Some(5), retire_from: None };
        deployment.set_layout(&layout).expect("written");
        assert_eq!(deployment.layout().expect("read"), layout);
        assert_eq!(deployment.directory(Ownership::new(1, 2).expect("a share")), dir.join("t.egret.2-of-2"));
        let instance = deployment.directory(Ownership::new(0, 2).expect("a share"));
        assert_eq!(Progress::newest(&instance), None);
        assert!(Progress { read_up_to_ms: 1, written_ms: 1 }.write(&instance, 0).is_err(), "a directory moved aside is not made again");
        std::fs::create_dir_all(&instance).expect("made");
        for (pod, read_up_to_ms) in [(0, 5_000), (2, 7_000)] {
            Progress { read_up_to_ms, written_ms: 1 }.write(&instance, pod).expect("written");
        }
        assert_eq!(Progress::newest(&instance).map(|p| p.read_up_to_ms), Some(7_000), "the active pod's, whichever it is");
        std::fs::write(dir.join("t.egret.layout.json"), b"{\"instances\": \"two\"}").expect("written");
        let refused = deployment.layout().expect_err("not a layout").to_string();
        assert!(refused.contains("t.egret.layout.json"), "the error names the file: {refused}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
