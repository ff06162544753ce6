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

/// Removes `prefix{pid}-{n}` (or older `prefix{pid}`) directories of processes that
/// are no longer running. Only those: `egret-scenario-7-history-…` is not a
/// directory of a test named `scenario`.
fn remove_ended(root: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else { continue };
        let (pid, n) = rest.split_once('-').unwrap_or((rest, "0"));
        let Some(pid) = Some(pid).filter(|p| number(p) && number(n)).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[test]
fn only_directories_of_ended_processes_of_this_name_are_removed() {
    let root = scratch_dir("scratch-sweep");
    let me = std::process::id();
    // No process has pid 4,000,000,000: above the kernel's maximum.
    let names = ["egret-t-4000000000-0", "egret-t-4000000000", &format!("egret-t-{me}-0"), "egret-t-7-history-4000000000-0", "egret-t-4000000000-x", "egret-tt-4000000000-0"];
    for name in names {
        std::fs::create_dir_all(root.join(name)).expect("create");
    }
    remove_ended(&root, "egret-t-");
    let left: Vec<bool> = names.iter().map(|n| root.join(n).exists()).collect();
    assert_eq!(left, [false, false, true, true, true, true], "{names:?}");
}
