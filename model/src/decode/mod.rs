//! Decoding and validation of input messages: bytes → typed, resolved event, or a
//! `Reject` carrying the contract's reason code. Never panics, whatever the bytes.
//!
//! Ids are resolved against the city model here, once, so the pipeline works on
//! dense indices and normalised plates. Checks that need the stream's clock (far
//! future, late) belong to the pipeline, which knows the watermark.

use crate::city::{CityModel, ReaderIdx};
use crate::event::{BusGps, CameraEvent, CameraKind, ParkingCount, PlateRead, Topic, VehicleClass};
use crate::plate::Plate;
use crate::reason::{Reason, Reject};
use serde_json::error::Category;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Largest message accepted by default; bigger ones are dead-lettered as `oversized`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// 2000-01-01T00:00:00Z: anything earlier is a clock in seconds or a dead battery.
const MIN_TS_MS: i64 = 946_684_800_000;
/// 2100-01-01T00:00:00Z: anything later cannot be a real device clock.
const MAX_TS_MS: i64 = 4_102_444_800_000;
/// Lot counts above this many times the lot's capacity are rejected.
const MAX_OCCUPANCY_FACTOR: u32 = 2;
/// The region served (Zhangzhou to Quanzhou with a margin), for bus positions.
const SERVICE_AREA: ([f64; 2], [f64; 2]) = ([116.8, 23.4], [119.4, 25.8]);

/// A plate read resolved against the city model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadIn {
    pub reader: ReaderIdx,
    pub plate: Plate,
    pub class: VehicleClass,
    pub ts_ms: i64,
    pub dedup_key: u64,
    /// `tag_fingerprint` of the RFID tag id; 0 when the read names no tag.
    pub tag: u32,
}

/// A bus position resolved against the city model.
#[derive(Debug, Clone, PartialEq)]
pub struct GpsIn {
    pub route: u32,
    pub bus_id: String,
    pub trip_id: Option<String>,
    pub lat: f64,
    pub lon: f64,
    pub speed_kmh: Option<f64>,
    pub ts_ms: i64,
    pub dedup_key: u64,
}

/// A camera trigger resolved against the city model.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraIn {
    pub camera: u32,
    pub kind: CameraKind,
    pub plate: Option<Plate>,
    pub speed_kmh: Option<f64>,
    pub red_elapsed_ms: Option<i64>,
    pub ts_ms: i64,
    pub image_ref: Option<String>,
    pub dedup_key: u64,
}

/// A lot controller's occupancy snapshot resolved against the city model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountIn {
    pub lot: u32,
    pub occupied: u32,
    pub ts_ms: i64,
    pub dedup_key: u64,
}

/// Any accepted input event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    PlateRead(ReadIn),
    BusGps(GpsIn),
    Camera(CameraIn),
    ParkingCount(CountIn),
}

impl Decoded {
    pub fn ts_ms(&self) -> i64 {
        match self {
            Decoded::PlateRead(e) => e.ts_ms,
            Decoded::BusGps(e) => e.ts_ms,
            Decoded::Camera(e) => e.ts_ms,
            Decoded::ParkingCount(e) => e.ts_ms,
        }
    }

    pub fn dedup_key(&self) -> u64 {
        match self {
            Decoded::PlateRead(e) => e.dedup_key,
            Decoded::BusGps(e) => e.dedup_key,
            Decoded::Camera(e) => e.dedup_key,
            Decoded::ParkingCount(e) => e.dedup_key,
        }
    }
}

/// `bytes` as text, checked with simdutf8 (about 15 ns where the standard
/// library took 24 for a plate read in cache; in the pipeline the check is the
/// payload's first touch and mostly waits for memory, BENCHMARKS.md session 21).
/// Only a message that fails is checked again, for where it fails.
fn utf8(bytes: &[u8]) -> Result<&str, Reject> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| {
        let valid_up_to = std::str::from_utf8(bytes).err().map_or(bytes.len(), |e| e.valid_up_to());
        Reject::new(Reason::InvalidUtf8, format!("invalid UTF-8 at byte {valid_up_to}"))
    })
}

/// Decodes messages of any input topic against one city model.
#[derive(Debug, Clone, Copy)]
pub struct Decoder<'c> {
    city: &'c CityModel,
    max_bytes: usize,
}

impl<'c> Decoder<'c> {
    pub fn new(city: &'c CityModel) -> Self {
        Decoder { city, max_bytes: DEFAULT_MAX_MESSAGE_BYTES }
    }

    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    pub fn decode(&self, topic: Topic, bytes: &[u8]) -> Result<Decoded, Reject> {
        if bytes.len() > self.max_bytes {
            return Err(Reject::new(Reason::Oversized, format!("{} bytes, limit {}", bytes.len(), self.max_bytes)));
        }
        let text = utf8(bytes)?;
        match topic {
            // Nearly every read has the flat shape `flat` reads without serde.
            Topic::PlateReads => self.plate_read(flat::plate_read(text).map_or_else(|| parse(text), Ok)?).map(Decoded::PlateRead),
            Topic::BusGps => self.bus_gps(parse(text)?).map(Decoded::BusGps),
            Topic::CameraEvents => self.camera(parse(text)?).map(Decoded::Camera),
            Topic::ParkingCounts => self.parking(parse(text)?).map(Decoded::ParkingCount),
        }
    }

    fn plate_read(&self, e: PlateRead<'_>) -> Result<ReadIn, Reject> {
        let reader = self
            .city
            .reader_idx(&e.reader_id)
            .ok_or_else(|| Reject::new(Reason::UnknownReader, format!("reader_id {}", e.reader_id)))?;
        Ok(ReadIn {
            reader,
            plate: plate(&e.plate)?,
            class: VehicleClass::from_wire(e.vehicle_class.as_deref()),
            ts_ms: timestamp(e.ts_ms)?,
            dedup_key: dedup_key(&e.reader_id, &e.event_id),
            tag: e.tag_id.as_deref().map_or(0, tag_fingerprint),
        })
    }

    fn bus_gps(&self, e: BusGps<'_>) -> Result<GpsIn, Reject> {
        // The topic's key: a report of no bus could be kept by no instance, and
        // would track every such report as one bus (found by fuzzing).
        if e.bus_id.trim().is_empty() {
            return Err(Reject::new(Reason::InvalidField, "bus_id is empty"));
        }
        let route = self
            .city
            .route_idx(&e.route_id)
            .ok_or_else(|| Reject::new(Reason::UnknownRoute, format!("route_id {}", e.route_id)))?;
        let (lo, hi) = SERVICE_AREA;
        if !(lo[0]..=hi[0]).contains(&e.lon) || !(lo[1]..=hi[1]).contains(&e.lat) {
            return Err(Reject::new(Reason::CoordinatesOutOfRange, format!("lat {} lon {}", e.lat, e.lon)));
        }
        if e.speed_kmh.is_some_and(|s| !(0.0..=200.0).contains(&s)) {
            return Err(Reject::new(Reason::InvalidField, "speed_kmh outside 0..=200"));
        }
        let dedup_key = dedup_key(&e.bus_id, &e.event_id);
        Ok(GpsIn {
            route,
            bus_id: e.bus_id.into_owned(),
            trip_id: e.trip_id.map(|t| t.into_owned()),
            lat: e.lat,
            lon: e.lon,
            speed_kmh: e.speed_kmh,
            ts_ms: timestamp(e.ts_ms)?,
            dedup_key,
        })
    }

    fn camera(&self, e: CameraEvent<'_>) -> Result<CameraIn, Reject> {
        let camera = self
            .city
            .camera_idx(&e.camera_id)
            .ok_or_else(|| Reject::new(Reason::UnknownCamera, format!("camera_id {}", e.camera_id)))?;
        // An offence is only evidence from a camera built for it (a red-light camera
        // measures no speed); a plain plate capture may come from any camera.
        let registered = self.city.cameras[camera as usize].kind;
        if !matches!(e.kind, CameraKind::Anpr | CameraKind::Gate) && e.kind != registered {
            return Err(Reject::new(Reason::InvalidField, format!("kind {:?} from camera {}, which is a {registered:?} camera", e.kind, e.camera_id)));
        }
        match e.kind {
            CameraKind::Speed if e.speed_kmh.is_none() => {
                return Err(Reject::new(Reason::MissingField, "speed camera event without speed_kmh"));
            }
            CameraKind::RedLight if e.red_elapsed_ms.is_none() && e.signal.is_none() => {
                return Err(Reject::new(Reason::MissingField, "red-light event without signal or red_elapsed_ms"));
            }
            _ => {}
        }
        if e.speed_kmh.is_some_and(|s| !(0.0..=400.0).contains(&s)) {
            return Err(Reject::new(Reason::InvalidField, "speed_kmh outside 0..=400"));
        }
        Ok(CameraIn {
            camera,
            kind: e.kind,
            plate: e.plate.as_deref().map(plate).transpose()?,
            speed_kmh: e.speed_kmh,
            red_elapsed_ms: e.red_elapsed_ms,
            ts_ms: timestamp(e.ts_ms)?,
            image_ref: e.image_ref.map(|i| i.into_owned()),
            dedup_key: dedup_key(&e.camera_id, &e.event_id),
        })
    }

    fn parking(&self, e: ParkingCount<'_>) -> Result<CountIn, Reject> {
        let lot = self
            .city
            .lot_idx(&e.lot_id)
            .ok_or_else(|| Reject::new(Reason::UnknownLot, format!("lot_id {}", e.lot_id)))?;
        // Lots do overfill a little (the pipeline flags it); a count beyond twice the
        // lot's spaces is a broken controller, and would be served as the lot's state.
        let capacity = self.city.lots[lot as usize].capacity;
        if e.occupied > capacity.saturating_mul(MAX_OCCUPANCY_FACTOR) {
            return Err(Reject::new(Reason::InvalidField, format!("occupied {} in lot {} of {capacity} spaces", e.occupied, e.lot_id)));
        }
        Ok(CountIn { lot, occupied: e.occupied, ts_ms: timestamp(e.ts_ms)?, dedup_key: dedup_key(&e.lot_id, &e.event_id) })
    }
}

/// Parses JSON into a wire struct, mapping serde's errors onto reason codes.
/// Takes text already checked as UTF-8: serde_json's reader of `str` does not check
/// every string again, as its reader of bytes would.
fn parse<'a, T: serde::Deserialize<'a>>(text: &'a str) -> Result<T, Reject> {
    // serde would accept an array for a struct; the contract wants one object.
    if text.bytes().find(|b| !b.is_ascii_whitespace()) != Some(b'{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Reject::new(Reason::NotAnObject, "a message must be one JSON object"),
            Err(e) => Reject::new(Reason::NotJson, e.to_string()),
        });
    }
    serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let reason = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => Reason::NotJson,
            Category::Data if message.starts_with("missing field") => Reason::MissingField,
            Category::Data => Reason::InvalidField,
        };
        Reject::new(reason, message)
    })
}

fn plate(raw: &str) -> Result<Plate, Reject> {
    Plate::parse(raw).map_err(|e| Reject::new(Reason::InvalidPlate, format!("{raw:?}: {}", e.0)))
}

fn timestamp(ts_ms: i64) -> Result<i64, Reject> {
    if ts_ms < MIN_TS_MS {
        Err(Reject::new(Reason::TimestampTooOld, format!("ts_ms {ts_ms} is before 2000 (seconds instead of milliseconds?)")))
    } else if ts_ms >= MAX_TS_MS {
        Err(Reject::new(Reason::TimestampInFuture, format!("ts_ms {ts_ms} is after 2100")))
    } else {
        Ok(ts_ms)
    }
}

/// The de-duplication key: `event_id` is unique per device stream.
/// A stable 32-bit fingerprint of an RFID tag id (FNV-1a, never 0): enough to tell
/// the few tags one plate is seen with apart, at a fraction of the id's size.
pub fn tag_fingerprint(tag_id: &str) -> u32 {
    let hash = tag_id.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    hash.max(1)
}

pub fn dedup_key(device: &str, event_id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    device.hash(&mut h);
    event_id.hash(&mut h);
    h.finish()
}

mod flat;
#[cfg(test)]
mod tests;
