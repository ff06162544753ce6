//! The versioned rules file `data/rules.toml`: limits, tolerances, hours and zones.
//! Changing a limit, an hour or a zone is a data change, never a code change.

use crate::time::{HourRange, parse_hhmm};
use crate::event::VehicleClass;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    pub version: String,
    pub timezone_offset_minutes: i32,
    pub section_speed: SpeedRule,
    pub point_speed: SpeedRule,
    pub red_light: RedLightRule,
    #[serde(default)]
    pub bus_lanes: Vec<BusLaneRule>,
    #[serde(default)]
    pub zones: Vec<Zone>,
    #[serde(default)]
    pub restrictions: Vec<Restriction>,
    pub cloned_plate: ClonedPlateRule,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedRule {
    pub rule_id: String,
    pub rule_version: u32,
    pub tolerance_pct: f64,
}

impl SpeedRule {
    /// The speed above which a ticket is due: strictly greater than limit × (1 + tolerance).
    /// For display; decisions use the exact `exceeded_*` below.
    pub fn threshold_kmh(&self, limit_kmh: f64) -> f64 {
        limit_kmh * (1.0 + self.tolerance_pct / 100.0)
    }

    /// The tolerance in thousandths of a percent (10.0 % → 10 000).
    fn tolerance_milli_pct(&self) -> i128 {
        (self.tolerance_pct * 1000.0).round() as i128
    }

    /// True when `length_m` driven in `elapsed_ms` is strictly faster than the
    /// threshold, decided in integers: a drive at exactly the threshold is never a
    /// ticket, whatever floating point would round it to.
    pub fn exceeded_by_drive(&self, limit_kmh: u32, length_m: u32, elapsed_ms: i64) -> bool {
        // length/elapsed·3600 > limit·(1 + tol) ⇔ length·3600·10⁵ > limit·(10⁵ + tol·10³)·elapsed
        elapsed_ms > 0 && i128::from(length_m) * 3_600 * 100_000 > i128::from(limit_kmh) * (100_000 + self.tolerance_milli_pct()) * i128::from(elapsed_ms)
    }

    /// True when a spot speed, as a camera reports it (to 0.1 km/h), is strictly
    /// above the threshold; decided in integers like `exceeded_by_drive`.
    pub fn exceeded_by_speed(&self, limit_kmh: u32, speed_kmh: f64) -> bool {
        let tenths = (speed_kmh * 10.0).round() as i128;
        tenths * 100_000 > i128::from(limit_kmh) * 10 * (100_000 + self.tolerance_milli_pct())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_itself_is_never_exceeded() {
        let rule = SpeedRule { rule_id: "R".into(), rule_version: 1, tolerance_pct: 10.0 };
        // 2882 m at 132 km/h (120 + 10%) takes exactly 78 600 ms; float says 132.00000000000003.
        assert!(!rule.exceeded_by_drive(120, 2882, 78_600));
        assert!(rule.exceeded_by_drive(120, 2882, 78_599));
        assert!(!rule.exceeded_by_speed(80, 88.0));
        assert!(rule.exceeded_by_speed(80, 88.1));
        assert!(!rule.exceeded_by_drive(80, 1000, 0));
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedLightRule {
    pub rule_id: String,
    pub rule_version: u32,
    pub grace_ms: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusLaneRule {
    pub bus_lane_id: String,
    pub rule_id: String,
    pub rule_version: u32,
    pub segments: Vec<String>,
    pub hours: Vec<[String; 2]>,
    pub allowed_classes: Vec<VehicleClass>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub zone_id: String,
    pub name: String,
    pub segments: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restriction {
    pub rule_id: String,
    pub rule_version: u32,
    pub zone_id: String,
    pub classes: Vec<VehicleClass>,
    /// Local hours when the restriction applies; empty means all day.
    pub hours: Vec<[String; 2]>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClonedPlateRule {
    pub rule_id: String,
    pub rule_version: u32,
    pub max_plausible_kmh: f64,
}

/// Parses `[["07:00","09:00"], ...]` into ranges, naming the rule on error.
pub fn parse_hours(rule_id: &str, hours: &[[String; 2]]) -> Result<Vec<HourRange>, String> {
    hours
        .iter()
        .map(|[from, to]| match (parse_hhmm(from), parse_hhmm(to)) {
            (Some(from_min), Some(to_min)) => Ok(HourRange { from_min, to_min }),
            _ => Err(format!("rule {rule_id}: bad hours [{from}, {to}], expected HH:MM")),
        })
        .collect()
}
