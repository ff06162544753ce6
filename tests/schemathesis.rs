//! The API against its own OpenAPI document: schemathesis generates requests from
//! `/openapi.json` (valid and invalid ones, and sequences that follow its links)
//! and runs every check it has on the answers — no 5xx, only declared statuses,
//! bodies and content types as declared, bad input refused, good input accepted.
//! It runs twice against a live system (pipeline, ingest, audit, hotlists): once
//! as a public caller and once as a police officer. Any failure fails the test.
//!
//! The few rules a schema cannot state are listed, with why, in
//! `tests/schemathesis/schemathesis.toml`. schemathesis comes from the venv that
//! `.ci/python-venv.sh` makes (next to `EGRET_PYTHON`'s interpreter).

mod support;
mod venv;

use egret_api::auth::Role;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Fixed, so that a failure can be replayed with the same requests.
const SEED: &str = "20261129";

fn schemathesis() -> PathBuf {
    venv::python().with_file_name("schemathesis")
}

/// Runs schemathesis with `token` (if any); returns whether it passed and what it printed.
fn run(base_url: &str, token: Option<&str>, work_dir: &Path) -> (bool, String) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/schemathesis.toml");
    let mut command = Command::new(schemathesis());
    command
        .arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .args(["run", &format!("{base_url}/openapi.json"), "--checks", "all", "--seed", SEED, "--workers", "1"])
        // Its example database and reports stay out of the clone.
        .current_dir(work_dir)
        .env("NO_COLOR", "1");
    if let Some(token) = token {
        command.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", schemathesis().display()));
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), printed)
}

#[test]
fn schemathesis_finds_no_failure_as_public_or_police() {
    assert!(
        schemathesis().exists(),
        "no schemathesis at {}: run .ci/python-venv.sh to create the venv (or point EGRET_PYTHON at an interpreter of a venv that has it)",
        schemathesis().display()
    );
    let env = support::live_env();
    let base_url = env.client.url("");
    let base_url = base_url.trim_end_matches('/');
    let work_dir = support::scratch_dir("schemathesis");

    let mut failed = Vec::new();
    for (who, token) in [("public", support::token(Role::Public)), ("police", support::token(Role::Police))] {
        let (passed, printed) = run(base_url, Some(&token), &work_dir);
        println!("--- schemathesis as {who} ---\n{printed}");
        if !passed {
            failed.push(who);
        }
    }
    assert!(failed.is_empty(), "schemathesis found failures as {failed:?} (its report is printed above; rerun with `--nocapture`)");
}
