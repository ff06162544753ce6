//! A violation as the police receive it: what, who, where, the rule and its version,
//! and the evidence that proves it. Its id is derived from the evidence alone, so a
//! replay of the same input yields the same id and consumers keep one ticket.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    SectionSpeed,
    PointSpeed,
    RedLight,
    BusLane,
    RestrictedVehicle,
    Hotlist,
    ClonedPlate,
}

impl ViolationKind {
    pub const ALL: [ViolationKind; 7] = [
        ViolationKind::SectionSpeed,
        ViolationKind::PointSpeed,
        ViolationKind::RedLight,
        ViolationKind::BusLane,
        ViolationKind::RestrictedVehicle,
        ViolationKind::Hotlist,
        ViolationKind::ClonedPlate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::SectionSpeed => "section_speed",
            ViolationKind::PointSpeed => "point_speed",
            ViolationKind::RedLight => "red_light",
            ViolationKind::BusLane => "bus_lane",
            ViolationKind::RestrictedVehicle => "restricted_vehicle",
            ViolationKind::Hotlist => "hotlist",
            ViolationKind::ClonedPlate => "cloned_plate",
        }
    }
}

/// One device observation behind a violation, traceable to its source record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sighting {
    pub device_id: String,
    /// The time the device stamped.
    pub device_ts_ms: i64,
    /// The time after the device's clock correction.
    pub ts_ms: i64,
    /// `topic/partition@offset` of the original message.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ref: Option<String>,
    /// A measured value the device reported (spot speed, ms into red).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// The facts that prove a violation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evidence {
    /// One sentence a person can check against the numbers below.
    pub summary: String,
    pub sightings: Vec<Sighting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vehicle_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<i64>,
    /// The value above which the rule is broken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Clock uncertainty given to the driver's benefit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_margin_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Violation {
    pub violation_id: String,
    pub kind: ViolationKind,
    pub plate: String,
    pub ts_ms: i64,
    /// Segment, camera or zone id.
    pub location: String,
    pub measured: f64,
    pub limit: f64,
    pub rule_id: String,
    pub rule_version: u32,
    pub evidence: Evidence,
}

/// A sighting one character away from a listed plate: for a person to look at,
/// never a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PossibleHit {
    pub list: String,
    pub listed_plate: String,
    pub seen_plate: String,
    pub ts_ms: i64,
    pub reason: String,
    pub sighting: Sighting,
}

/// The deterministic id of a violation: 128-bit FNV-1a over its kind, plate, rule
/// and the identity of the facts (device and device time), as 32 hex digits. Stable
/// across runs, machines and versions of Rust.
pub fn violation_id(kind: ViolationKind, plate: &str, rule_id: &str, facts: &str) -> String {
    stable_id(&[kind.as_str(), plate, rule_id, facts])
}

/// 128-bit FNV-1a over the parts (each ended by a separator), as 32 hex digits: the
/// ids of tickets and incidents, the same whenever the same facts are seen.
pub fn stable_id(parts: &[&str]) -> String {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = OFFSET;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0x1f)) {
            hash = (hash ^ u128::from(b)).wrapping_mul(PRIME);
        }
    }
    format!("{hash:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_separate_their_inputs() {
        let a = violation_id(ViolationKind::PointSpeed, "闽D12345", "R-POINT-SPEED", "XM-C0001@1000");
        assert_eq!(a, violation_id(ViolationKind::PointSpeed, "闽D12345", "R-POINT-SPEED", "XM-C0001@1000"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, violation_id(ViolationKind::PointSpeed, "闽D12345", "R-POINT-SPEED", "XM-C0001@1001"));
        // Field boundaries matter: "ab"+"c" is not "a"+"bc".
        assert_ne!(violation_id(ViolationKind::Hotlist, "ab", "c", ""), violation_id(ViolationKind::Hotlist, "a", "bc", ""));
    }
}
