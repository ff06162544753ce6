//! Scratch directories for tests: `egret-{name}-{pid}-{n}` under the system's temp
//! directory, fresh and empty.
//!
//! A test that fails keeps its directory for whoever looks into why, and a test
//! whose state outlives it (a server kept up for the whole process) cannot remove
//! its own. So each new one first removes those whose process has ended: the
//! directories of earlier runs do not pile up in /tmp.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub fn scratch_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let root = std::env::temp_dir();
    remove_ended(&root, &format!("egret-{name}-"));
    let dir = root.join(format!("egret-{name}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Removes `prefix{pid}-…` directories of processes that are no longer running.
fn remove_ended(root: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)).and_then(|rest| rest.split('-').next()?.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
