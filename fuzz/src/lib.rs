//! What the fuzz targets share: the repo's city model (loaded once per process),
//! the API's input parsers, and the properties every decoded event and every
//! parsed plate must have.
//!
//! The API's parsers are compiled from their own source files,
//! `dashboard-api/src/input.rs` and `dashboard-api/src/token.rs`, which depend on
//! nothing but `egret-model`, serde and `jsonwebtoken`, so fuzzing them does not
//! build the API's DataFusion and librdkafka. They are the very functions the
//! handlers call.

use egret_model::decode::{DEFAULT_MAX_MESSAGE_BYTES, Decoded, Decoder};
use egret_model::event::{BusGps, CameraEvent, CameraKind, ParkingCount, PlateRead};
use egret_model::reason::Reason;
use egret_model::{CityModel, Plate, Topic};
use std::sync::OnceLock;

#[path = "../../dashboard-api/src/input.rs"]
pub mod input;
#[path = "../../dashboard-api/src/token.rs"]
pub mod token;

/// 2000-01-01 and 2100-01-01 UTC: the decoder's bounds on device clocks.
const TS_RANGE: std::ops::Range<i64> = 946_684_800_000..4_102_444_800_000;

/// The city model of the repo's `data/`, as the demo and the tests load it.
pub fn city() -> &'static CityModel {
    static CITY: OnceLock<CityModel> = OnceLock::new();
    CITY.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
        CityModel::load(&dir).unwrap_or_else(|e| panic!("loading the city model from {}: {e}", dir.display()))
    })
}

/// A parsed plate: normalised, 7 or 8 characters, and its own text parses back
/// to itself.
pub fn check_plate(plate: &Plate) {
    let text = plate.as_str();
    assert_eq!(Plate::parse(text).as_ref(), Ok(plate), "plate {text:?} does not parse back to itself");
    assert_eq!(plate.to_string(), text);
    assert!(matches!(plate.char_count(), 7 | 8), "plate {text:?} has {} characters", plate.char_count());
    assert!(text.starts_with(plate.region()) && plate.region().chars().count() == 2, "region of {text:?}");
    assert!(!plate.one_character_from(plate), "{text:?} is one character from itself");
    for key in plate.wildcard_keys() {
        assert_eq!(key.iter().filter(|b| **b == b'*').count(), 1, "wildcard key of {text:?}");
    }
}

/// Decodes `bytes` as a message of `topic` and checks the answer: the same every
/// time; an accepted event is valid UTF-8 JSON within the size limit, resolved to
/// ids of the city model, stamped within the clock bounds, and decodes the same
/// after being written back by the wire types (as the simulator writes events)
/// or with trailing whitespace; a rejection carries the reason the bytes earn.
pub fn check_decode(topic: Topic, bytes: &[u8]) {
    let city = city();
    let decoder = Decoder::new(city);
    let result = decoder.decode(topic, bytes);
    assert_eq!(decoder.decode(topic, bytes), result, "decoding is not deterministic");
    let unlimited = decoder.with_max_bytes(usize::MAX);
    match &result {
        Ok(decoded) => {
            assert!(bytes.len() <= DEFAULT_MAX_MESSAGE_BYTES, "accepted {} bytes", bytes.len());
            let text = std::str::from_utf8(bytes).expect("an accepted message is UTF-8");
            assert!(text.trim_start().starts_with('{'), "accepted a message that is not an object");
            assert!(TS_RANGE.contains(&decoded.ts_ms()), "accepted ts_ms {}", decoded.ts_ms());
            check_resolved(topic, decoded, city);
            let rewritten = match topic {
                Topic::PlateReads => rewrite::<PlateRead<'_>>(bytes),
                Topic::BusGps => rewrite::<BusGps<'_>>(bytes),
                Topic::CameraEvents => rewrite::<CameraEvent<'_>>(bytes),
                Topic::ParkingCounts => rewrite::<ParkingCount<'_>>(bytes),
            };
            assert_eq!(unlimited.decode(topic, &rewritten).as_ref(), Ok(decoded), "written back: {}", String::from_utf8_lossy(&rewritten));
            let mut padded = bytes.to_vec();
            padded.extend_from_slice(b" \n");
            assert_eq!(unlimited.decode(topic, &padded).as_ref(), Ok(decoded), "with trailing whitespace");
        }
        Err(reject) => {
            assert!(!reject.reason.code().is_empty());
            if bytes.len() > DEFAULT_MAX_MESSAGE_BYTES {
                assert_eq!(reject.reason, Reason::Oversized);
            } else {
                assert_ne!(reject.reason, Reason::Oversized, "{} bytes called oversized", bytes.len());
                // Below the limit, a higher limit changes nothing.
                assert_eq!(unlimited.decode(topic, bytes), result);
            }
            if bytes.len() <= DEFAULT_MAX_MESSAGE_BYTES && std::str::from_utf8(bytes).is_err() {
                assert_eq!(reject.reason, Reason::InvalidUtf8);
            }
        }
    }
}

/// Parses accepted bytes into the wire type of their topic and writes them again.
fn rewrite<'a, T: serde::Deserialize<'a> + serde::Serialize>(bytes: &'a [u8]) -> Vec<u8> {
    let wire: T = serde_json::from_slice(bytes).expect("accepted bytes parse as the wire type");
    serde_json::to_vec(&wire).expect("a wire type serialises")
}

/// The event is of its topic's kind and names things the city model holds.
fn check_resolved(topic: Topic, decoded: &Decoded, city: &CityModel) {
    match (topic, decoded) {
        (Topic::PlateReads, Decoded::PlateRead(r)) => {
            assert!((r.reader.0 as usize) < city.readers.len());
            check_plate(&r.plate);
        }
        (Topic::BusGps, Decoded::BusGps(g)) => {
            assert!((g.route as usize) < city.routes.len());
            assert!(g.lat.is_finite() && g.lon.is_finite() && (-90.0..=90.0).contains(&g.lat) && (-180.0..=180.0).contains(&g.lon));
            assert!(g.speed_kmh.is_none_or(|s| (0.0..=200.0).contains(&s)));
        }
        (Topic::CameraEvents, Decoded::Camera(c)) => {
            assert!((c.camera as usize) < city.cameras.len());
            if let Some(p) = &c.plate {
                check_plate(p);
            }
            assert!(c.kind != CameraKind::Speed || c.speed_kmh.is_some(), "speed event without a speed");
            assert!(c.speed_kmh.is_none_or(|s| (0.0..=400.0).contains(&s)));
        }
        (Topic::ParkingCounts, Decoded::ParkingCount(p)) => assert!((p.lot as usize) < city.lots.len()),
        (topic, decoded) => panic!("a {topic:?} message decoded as {decoded:?}"),
    }
}
