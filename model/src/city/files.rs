//! The on-disk shape of the city reference data in `data/city/*.json` and
//! `data/rules.toml` (documented in `data/README.md`). Unknown fields are errors, so
//! a typo in a hand edit is caught at start, not silently ignored.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReaderKind {
    Gantry,
    ParkingGate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateDirection {
    Entry,
    Exit,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reader {
    pub reader_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_zh: Option<String>,
    pub city: String,
    pub lat: f64,
    pub lon: f64,
    pub kind: ReaderKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateDirection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoadClass {
    Expressway,
    Bridge,
    Tunnel,
    Brt,
    Arterial,
    Urban,
}

impl RoadClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RoadClass::Expressway => "expressway",
            RoadClass::Bridge => "bridge",
            RoadClass::Tunnel => "tunnel",
            RoadClass::Brt => "brt",
            RoadClass::Arterial => "arterial",
            RoadClass::Urban => "urban",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub segment_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_zh: Option<String>,
    pub from_reader_id: String,
    pub to_reader_id: String,
    pub length_m: u32,
    pub speed_limit_kmh: u32,
    pub free_flow_kmh: f64,
    pub road_class: RoadClass,
    pub city: String,
    pub on_island: bool,
    pub corridor: String,
    /// `[lon, lat]` pairs from the from-gantry to the to-gantry.
    pub geometry: Vec<[f64; 2]>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalPlan {
    pub cycle_s: u32,
    pub red_s: u32,
    pub offset_s: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    pub camera_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_zh: Option<String>,
    pub kind: crate::event::CameraKind,
    pub segment_id: String,
    pub offset_m: u32,
    pub lat: f64,
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_limit_kmh: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalPlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus_lane_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lot {
    pub lot_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_zh: Option<String>,
    pub city: String,
    pub lat: f64,
    pub lon: f64,
    pub capacity: u32,
    pub entry_reader_id: String,
    pub exit_reader_id: String,
    pub segment_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    pub stop_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_zh: Option<String>,
    pub segment_id: String,
    pub offset_m: u32,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Direction {
    pub direction_id: u8,
    pub headsign: String,
    pub segments: Vec<String>,
    pub stops: Vec<Stop>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadwayPeriod {
    pub from: String,
    pub to: String,
    pub headway_min: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timetable {
    pub first_departure: String,
    pub last_departure: String,
    pub headways: Vec<HeadwayPeriod>,
    pub default_headway_min: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub route_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_zh: Option<String>,
    pub kind: String,
    pub cities: Vec<String>,
    pub directions: Vec<Direction>,
    pub timetable: Timetable,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadersFile {
    pub version: String,
    pub readers: Vec<Reader>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentsFile {
    pub version: String,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CamerasFile {
    pub version: String,
    pub cameras: Vec<Camera>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotsFile {
    pub version: String,
    pub lots: Vec<Lot>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    pub version: String,
    pub routes: Vec<Route>,
}

impl Timetable {
    /// Scheduled minutes between departures at a local minute of the day.
    pub fn headway_min_at(&self, minute: u32) -> u32 {
        self.headways
            .iter()
            .find(|h| matches!((crate::time::parse_hhmm(&h.from), crate::time::parse_hhmm(&h.to)), (Some(a), Some(b)) if (a..b).contains(&minute)))
            .map_or(self.default_headway_min, |h| h.headway_min)
            .max(1)
    }

    /// Every departure of a day, as local minutes of the day.
    pub fn departure_minutes(&self) -> Vec<u32> {
        let (Some(first), Some(last)) = (crate::time::parse_hhmm(&self.first_departure), crate::time::parse_hhmm(&self.last_departure)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut minute = first;
        while minute <= last {
            out.push(minute);
            minute += self.headway_min_at(minute);
        }
        out
    }
}

impl Route {
    /// The id of the trip leaving at a local minute in a direction: the same in the
    /// static timetable, the buses' reports and the dispatcher's view.
    pub fn trip_id(&self, direction_id: u8, minute: u32) -> String {
        format!("{}-{}-{:02}{:02}", self.route_id, direction_id, minute / 60, minute % 60)
    }
}
