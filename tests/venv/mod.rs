//! Where the tests that check Egret with Python tools (GTFS validators, the deploy
//! checker, schemathesis) find them: the venv `.ci/python-venv.sh` makes, or the
//! interpreter `EGRET_PYTHON` names.

use std::path::PathBuf;

pub fn python() -> PathBuf {
    match std::env::var_os("EGRET_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/egret/venv/bin/python"),
    }
}
