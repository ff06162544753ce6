//! Decoder tests: every reason code the decoder owns is reachable, valid events
//! resolve, and no input whatever makes it panic.

use super::*;
use crate::reason::Reason;
use proptest::prelude::*;
use std::sync::OnceLock;

fn city() -> &'static CityModel {
    static CITY: OnceLock<CityModel> = OnceLock::new();
    CITY.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
        CityModel::load(&dir).expect("the repo's city data loads")
    })
}

fn ids() -> (String, String, String, String) {
    let c = city();
    let gantry = c.readers.iter().find(|r| r.kind == crate::city::ReaderKind::Gantry).expect("a gantry");
    (gantry.reader_id.clone(), c.cameras[0].camera_id.clone(), c.lots[0].lot_id.clone(), c.routes[0].route_id.clone())
}

fn reason(topic: Topic, json: &str) -> Option<Reason> {
    Decoder::new(city()).decode(topic, json.as_bytes()).err().map(|r| r.reason)
}

#[test]
fn valid_events_of_every_topic_decode() {
    let (reader, camera, lot, route) = ids();
    let d = Decoder::new(city());
    let read = format!(r#"{{"event_id":"r-1","reader_id":"{reader}","plate":"闽ｄ12345","vehicle_class":"spaceship","ts_ms":1795838400123,"extra":1}}"#);
    match d.decode(Topic::PlateReads, read.as_bytes()) {
        Ok(Decoded::PlateRead(r)) => {
            assert_eq!(r.plate.as_str(), "闽D12345");
            assert_eq!(r.class, VehicleClass::Car, "unknown class means car");
            assert_eq!(r.ts_ms, 1_795_838_400_123);
        }
        other => panic!("{other:?}"),
    }
    let gps = format!(r#"{{"event_id":"g-1","bus_id":"XM-B1","route_id":"{route}","lat":24.48,"lon":118.09,"ts_ms":1795838400000}}"#);
    assert!(matches!(d.decode(Topic::BusGps, gps.as_bytes()), Ok(Decoded::BusGps(_))));
    let cam = format!(r#"{{"event_id":"c-1","camera_id":"{camera}","kind":"anpr","plate":"闽E6789A","ts_ms":1795838400456}}"#);
    assert!(matches!(d.decode(Topic::CameraEvents, cam.as_bytes()), Ok(Decoded::Camera(_))));
    let count = format!(r#"{{"event_id":"p-1","lot_id":"{lot}","occupied":412,"capacity":600,"ts_ms":1795838400000}}"#);
    assert!(matches!(d.decode(Topic::ParkingCounts, count.as_bytes()), Ok(Decoded::ParkingCount(_))));
}

#[test]
fn every_decoder_reason_is_reachable() {
    let (reader, camera, lot, route) = ids();
    let read = |body: &str| format!(r#"{{"event_id":"r-1","reader_id":"{reader}",{body}}}"#);
    let cases: Vec<(Topic, String, Reason)> = vec![
        (Topic::PlateReads, format!(r#"{{"pad":"{}"}}"#, "x".repeat(20_000)), Reason::Oversized),
        (Topic::PlateReads, "not json at all".into(), Reason::NotJson),
        (Topic::PlateReads, r#"{"event_id":"r-1","#.into(), Reason::NotJson),
        (Topic::PlateReads, "[1,2,3]".into(), Reason::NotAnObject),
        (Topic::PlateReads, "42".into(), Reason::NotAnObject),
        (Topic::PlateReads, read(r#""ts_ms":1795838400000"#), Reason::MissingField),
        (Topic::PlateReads, read(r#""plate":"闽D12345","ts_ms":"soon""#), Reason::InvalidField),
        (Topic::PlateReads, read(r#""plate":"闽D12345","ts_ms":1e400"#), Reason::NotJson),
        (Topic::PlateReads, read(r#""plate":"ABC","ts_ms":1795838400000"#), Reason::InvalidPlate),
        (Topic::PlateReads, read(r#""plate":"闽D12345","ts_ms":1795838400"#), Reason::TimestampTooOld),
        (Topic::PlateReads, read(r#""plate":"闽D12345","ts_ms":9999999999999"#), Reason::TimestampInFuture),
        (
            Topic::PlateReads,
            r#"{"event_id":"r-1","reader_id":"XM-R9999X","plate":"闽D12345","ts_ms":1795838400000}"#.into(),
            Reason::UnknownReader,
        ),
        (
            Topic::CameraEvents,
            r#"{"event_id":"c","camera_id":"nope","kind":"anpr","ts_ms":1795838400000}"#.into(),
            Reason::UnknownCamera,
        ),
        (
            Topic::CameraEvents,
            format!(r#"{{"event_id":"c","camera_id":"{camera}","kind":"speed","ts_ms":1795838400000}}"#),
            Reason::MissingField,
        ),
        (
            Topic::CameraEvents,
            format!(r#"{{"event_id":"c","camera_id":"{camera}","kind":"laser","ts_ms":1795838400000}}"#),
            Reason::InvalidField,
        ),
        (
            Topic::ParkingCounts,
            r#"{"event_id":"p","lot_id":"nope","occupied":1,"ts_ms":1795838400000}"#.into(),
            Reason::UnknownLot,
        ),
        (
            Topic::ParkingCounts,
            format!(r#"{{"event_id":"p","lot_id":"{lot}","occupied":-1,"ts_ms":1795838400000}}"#),
            Reason::InvalidField,
        ),
        (
            Topic::BusGps,
            r#"{"event_id":"g","bus_id":"b","route_id":"nope","lat":24.4,"lon":118.1,"ts_ms":1795838400000}"#.into(),
            Reason::UnknownRoute,
        ),
        (
            Topic::BusGps,
            format!(r#"{{"event_id":"g","bus_id":"b","route_id":"{route}","lat":91,"lon":118.1,"ts_ms":1795838400000}}"#),
            Reason::CoordinatesOutOfRange,
        ),
        (
            Topic::BusGps,
            format!(r#"{{"event_id":"g","bus_id":" ","route_id":"{route}","lat":24.4,"lon":118.1,"ts_ms":1795838400000}}"#),
            Reason::InvalidField,
        ),
    ];
    for (topic, input, expected) in &cases {
        assert_eq!(reason(*topic, input), Some(*expected), "input {input:.80}");
    }
    let invalid_utf8 = Decoder::new(city()).decode(Topic::PlateReads, b"{\"plate\":\"\xff\xfe\"}");
    let reject = invalid_utf8.err();
    assert_eq!(reject.as_ref().map(|r| r.reason), Some(Reason::InvalidUtf8));
    assert!(reject.is_some_and(|r| r.detail.contains("at byte 10")), "the dead letter says where the bad byte is");
}

/// Found by the hostile-input corpus (tests/hostile): both were accepted, the first
/// as evidence for a ticket, the second served as the lot's occupancy.
#[test]
fn offences_from_another_kind_of_camera_and_impossible_lot_counts_are_rejected() {
    let c = city();
    let of_kind = |k: CameraKind| c.cameras.iter().find(|x| x.kind == k).expect("a camera of the kind").camera_id.clone();
    let (red, speed) = (of_kind(CameraKind::RedLight), of_kind(CameraKind::Speed));
    let cam = |id: &str, body: &str| format!(r#"{{"event_id":"c","camera_id":"{id}",{body},"plate":"闽E6789A","ts_ms":1795838400000}}"#);
    assert_eq!(reason(Topic::CameraEvents, &cam(&red, r#""kind":"speed","speed_kmh":150"#)), Some(Reason::InvalidField));
    assert_eq!(reason(Topic::CameraEvents, &cam(&speed, r#""kind":"red_light","red_elapsed_ms":5000"#)), Some(Reason::InvalidField));
    assert_eq!(reason(Topic::CameraEvents, &cam(&speed, r#""kind":"speed","speed_kmh":150"#)), None);
    assert_eq!(reason(Topic::CameraEvents, &cam(&red, r#""kind":"anpr""#)), None, "any camera may capture a plate");

    let lot = &c.lots[0];
    let count = |n: u32| format!(r#"{{"event_id":"p","lot_id":"{}","occupied":{n},"ts_ms":1795838400000}}"#, lot.lot_id);
    assert_eq!(reason(Topic::ParkingCounts, &count(lot.capacity + 1)), None, "a lot overfills a little");
    assert_eq!(reason(Topic::ParkingCounts, &count(2 * lot.capacity)), None);
    assert_eq!(reason(Topic::ParkingCounts, &count(2 * lot.capacity + 1)), Some(Reason::InvalidField));
}

#[test]
fn dedup_key_depends_on_device_and_event() {
    assert_eq!(dedup_key("XM-R0001", "r-1"), dedup_key("XM-R0001", "r-1"));
    assert_ne!(dedup_key("XM-R0001", "r-1"), dedup_key("XM-R0002", "r-1"));
    assert_ne!(dedup_key("XM-R0001", "r-1"), dedup_key("XM-R0001", "r-2"));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), t in 0usize..4) {
        let _ = Decoder::new(city()).decode(Topic::ALL[t], &bytes);
    }

    #[test]
    fn mutated_valid_events_never_panic(cut in 0usize..120, byte in any::<u8>(), t in 0usize..4) {
        let (reader, ..) = ids();
        let mut bytes = format!(r#"{{"event_id":"r-1","reader_id":"{reader}","plate":"闽D12345","ts_ms":1795838400123}}"#).into_bytes();
        let at = cut % bytes.len();
        bytes[at] = byte;
        let _ = Decoder::new(city()).decode(Topic::ALL[t], &bytes);
        bytes.truncate(at);
        let _ = Decoder::new(city()).decode(Topic::ALL[t], &bytes);
    }
}
