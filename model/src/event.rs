//! The input events of contract-v1 §1, exactly as they travel: one JSON object per
//! message. Fields borrow from the message bytes where they can (`Cow`), so decoding
//! a batch does not allocate a string per field; the simulator fills them owned.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The four input topics, with their default Kafka names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    PlateReads,
    BusGps,
    CameraEvents,
    ParkingCounts,
}

impl Topic {
    pub const ALL: [Topic; 4] = [Topic::PlateReads, Topic::BusGps, Topic::CameraEvents, Topic::ParkingCounts];

    pub fn default_name(self) -> &'static str {
        match self {
            Topic::PlateReads => "egret.plate-reads",
            Topic::BusGps => "egret.bus-gps",
            Topic::CameraEvents => "egret.camera-events",
            Topic::ParkingCounts => "egret.parking-counts",
        }
    }

    /// Every input topic's name, as the pipeline consumes them.
    pub fn default_names() -> [&'static str; 4] {
        Topic::ALL.map(Topic::default_name)
    }

    /// The `"type"` tag of the same event in NDJSON ingest.
    pub fn ingest_type(self) -> &'static str {
        match self {
            Topic::PlateReads => "plate_read",
            Topic::BusGps => "bus_gps",
            Topic::CameraEvents => "camera",
            Topic::ParkingCounts => "parking_count",
        }
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.default_name() == name || t.ingest_type() == name)
    }
}

/// Vehicle class as registered on the electronic plate. Unknown strings mean `Car`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VehicleClass {
    Car,
    Taxi,
    Bus,
    Truck,
    Hazmat,
    SchoolBus,
    Coach,
    Motorcycle,
}

impl VehicleClass {
    pub const ALL: [VehicleClass; 8] = [
        VehicleClass::Car,
        VehicleClass::Taxi,
        VehicleClass::Bus,
        VehicleClass::Truck,
        VehicleClass::Hazmat,
        VehicleClass::SchoolBus,
        VehicleClass::Coach,
        VehicleClass::Motorcycle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VehicleClass::Car => "car",
            VehicleClass::Taxi => "taxi",
            VehicleClass::Bus => "bus",
            VehicleClass::Truck => "truck",
            VehicleClass::Hazmat => "hazmat",
            VehicleClass::SchoolBus => "school_bus",
            VehicleClass::Coach => "coach",
            VehicleClass::Motorcycle => "motorcycle",
        }
    }

    /// Contract rule: a missing or unrecognised class is a car.
    pub fn from_wire(s: Option<&str>) -> VehicleClass {
        s.and_then(|s| VehicleClass::ALL.into_iter().find(|c| c.as_str() == s)).unwrap_or(VehicleClass::Car)
    }
}

/// Camera trigger kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraKind {
    Anpr,
    Speed,
    RedLight,
    BusLane,
    Gate,
}

/// RFID electronic-plate read at a reader gantry or a parking gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlateRead<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub reader_id: Cow<'a, str>,
    #[serde(borrow)]
    pub plate: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tag_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub vehicle_class: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<u8>,
    pub ts_ms: i64,
}

/// Bus position report (AVL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusGps<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub bus_id: Cow<'a, str>,
    #[serde(borrow)]
    pub route_id: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub trip_id: Option<Cow<'a, str>>,
    pub lat: f64,
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_kmh: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
    pub ts_ms: i64,
}

/// Camera trigger: ANPR capture, speed, red light, bus lane or gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraEvent<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub camera_id: Cow<'a, str>,
    pub kind: CameraKind,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub plate: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_kmh: Option<f64>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub red_elapsed_ms: Option<i64>,
    pub ts_ms: i64,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub image_ref: Option<Cow<'a, str>>,
}

/// Occupancy snapshot from a lot controller, used to re-base drifting counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkingCount<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub lot_id: Cow<'a, str>,
    pub occupied: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    pub ts_ms: i64,
}
