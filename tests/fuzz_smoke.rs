//! The short fuzzing run of CI: every cargo-fuzz target of `fuzz/` for about 10
//! seconds (`fuzz/run.sh 10`), which must end with no crash. A crash prints the
//! input that caused it (kept under `fuzz/artifacts/`) and fails the test.
//!
//! Runs under CI (`CI=true`, as `.ci/run` is run there) or when
//! `EGRET_FUZZ_SMOKE` is set; otherwise it says it is skipped, since it builds
//! the fuzz crate (about 3 minutes cold, in its own target directory) and takes
//! ~2 minutes. `run.sh` installs cargo-fuzz when it is missing; if that fails,
//! so does this test: under CI a fuzzing run that cannot happen is a failure,
//! never a pass. The fuzz targets build on stable Rust (`--sanitizer none`).

use std::process::Command;

/// Seconds per target: long enough to get past the seeds, short enough for CI.
const SECONDS_PER_TARGET: &str = "10";

fn wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    std::env::var("CI").as_deref() == Ok("true") || set("EGRET_FUZZ_SMOKE")
}

#[test]
fn every_fuzz_target_runs_briefly_without_a_crash() {
    if !wanted() {
        eprintln!("skipped: set EGRET_FUZZ_SMOKE=1 (CI=true does) to run every fuzz target for {SECONDS_PER_TARGET} s");
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let started = std::time::Instant::now();
    let output = Command::new("bash")
        .arg(format!("{root}/fuzz/run.sh"))
        .arg(SECONDS_PER_TARGET)
        // run.sh builds in a target directory of its own, whatever this run's is.
        .current_dir(root)
        .output()
        .expect("bash runs fuzz/run.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    println!("fuzz smoke run: {:.0} s in all", started.elapsed().as_secs_f64());
    let skipped = stderr.chars().count().saturating_sub(4000);
    let tail: String = stderr.chars().skip(skipped).collect();
    assert!(
        output.status.success(),
        "fuzz/run.sh {SECONDS_PER_TARGET} failed ({}): a crash above, or cargo-fuzz could not be installed or built.\n{stdout}\n--- stderr (end)\n{tail}",
        output.status,
    );
    let targets = std::fs::read_dir(format!("{root}/fuzz/fuzz_targets")).expect("fuzz/fuzz_targets").count();
    let clean = stdout.lines().filter(|l| l.starts_with("fuzz ") && l.ends_with(" s, 0 crashes")).count();
    assert_eq!(clean, targets, "every target in fuzz/fuzz_targets should report a clean run:\n{stdout}");
}
