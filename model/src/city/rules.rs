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
    pub fn threshold_kmh(&self, limit_kmh: f64) -> f64 {
        limit_kmh * (1.0 + self.tolerance_pct / 100.0)
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
