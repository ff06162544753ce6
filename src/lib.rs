//! The `egret` application: wires the crates into the commands of the CLI. Nothing
//! here computes traffic; it connects the simulator, a source, the pipeline, live
//! state and the API, so `main.rs` stays a thin argument parser.

pub mod autoscale;
pub mod bench;
pub mod commands;
pub mod drive;
pub mod eval;
pub mod faults;
pub mod follow;
pub mod instance;
pub mod lag;
pub mod layout;
pub mod pod;
pub mod rescale;
pub mod serve;
pub mod soak;

use egret_model::CityModel;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The repo's data directory, used when `--data-dir` is not given.
pub fn default_data_dir() -> PathBuf {
    let here = Path::new("data");
    if here.join("city").is_dir() { here.to_owned() } else { Path::new(env!("CARGO_MANIFEST_DIR")).join("data") }
}

pub fn load_city(dir: Option<&Path>) -> anyhow::Result<Arc<CityModel>> {
    let dir = dir.map_or_else(default_data_dir, Path::to_owned);
    let city = CityModel::load(&dir).map_err(|e| anyhow::anyhow!("loading the city model from {}: {e}", dir.display()))?;
    Ok(Arc::new(city))
}

/// Parses "15m", "90s", "2h", "500ms" or plain milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 15m, 90s or 2h"))?;
    let factor = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("unknown duration unit {unit:?} in {s:?} (use ms, s, m or h)")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("15m"), Ok(900_000));
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("250"), Ok(250));
        assert!(parse_duration_ms("5 parsecs").is_err());
        assert!(parse_duration_ms("m").is_err());
        assert!(parse_duration_ms("9999999999999999h").is_err());
    }
}
