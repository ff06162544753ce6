//! Evidence standards of enforcement, end to end through `Pipeline` on the real city
//! data and rules (`data/`): the cases where a ticket rests on more than one record
//! and a single record (a misread plate, a missed gantry, a late read) must neither
//! create a ticket nor send it to the wrong vehicle.
//!
//! 1. A zone restriction from a read at a gantry standing inside the zone needs a
//!    second read of the same tag and plate within 15 min (before or after); a lone
//!    read, or a second read showing another plate, is no ticket.
//! 2. A read one character off its RFID tag's established plate is taken as that
//!    plate (`tags.rs`); an unestablished tag corrects nothing.
//! 3. A camera plate no RFID read confirms goes to the one plate one character from
//!    it read near the camera (`camera.rs`), never when there are two.
//! 4. A drive bridged over a missed gantry is ticketed only at `finish()` (when no
//!    late read can split it); a late read of the middle gantry replaces it by the
//!    direct drives, judged on their own.
//!
//! Times: `T0` is Monday 2026-11-30 07:45 local (UTC+8), inside the island truck
//! ban's peak hours. Records carry `timestamp_ms` equal to the device time, and are
//! fed one per batch in the order they were added (a late read is added late). The
//! pipeline's event clock rejects events more than 5 min ahead of the newest, so
//! longer gaps are bridged by filler reads of unrelated cars.

use egret_ingest::Record;
use egret_model::{ReaderIdx, Topic};
use egret_pipeline::enforce::violation::{Violation, ViolationKind};
use egret_pipeline::{Pipeline, PipelineConfig};
use std::time::Instant;

mod common;

use common::{MIN, T0, city, config, record};

fn reader(id: &str) -> ReaderIdx {
    city().reader_idx(id).expect("reader exists")
}

/// Input records; offsets count up from 0 in the order they are added.
#[derive(Default)]
struct Feed(Vec<Record>);

impl Feed {
    fn push(&mut self, topic: Topic, json: String, ts_ms: i64) -> &mut Self {
        let offset = self.0.len() as u64;
        self.0.push(record(topic, offset, &json, ts_ms));
        self
    }

    /// A read of `plate` with RFID tag `tag` ("" for none) by a vehicle of `class`.
    fn read(&mut self, reader: &str, plate: &str, tag: &str, class: &str, ts_ms: i64) -> &mut Self {
        let tag = if tag.is_empty() { String::new() } else { format!(r#""tag_id":"{tag}","#) };
        let json = format!(r#"{{"event_id":"EID","reader_id":"{reader}","plate":"{plate}",{tag}"vehicle_class":"{class}","ts_ms":{ts_ms}}}"#);
        self.push(Topic::PlateReads, json, ts_ms)
    }

    fn speed(&mut self, camera: &str, plate: &str, kmh: f64, ts_ms: i64) -> &mut Self {
        let json = format!(
            r#"{{"event_id":"EID","camera_id":"{camera}","kind":"speed","plate":"{plate}","speed_kmh":{kmh:.1},"ts_ms":{ts_ms},"image_ref":"img/{camera}/{ts_ms}.jpg"}}"#
        );
        self.push(Topic::CameraEvents, json, ts_ms)
    }

    /// Unrelated traffic that moves event time (and, with `camera`, the camera
    /// topic's watermark too) to `ts_ms`: a car far away in Zhangzhou, and a slow
    /// car at the eastbound Haicang Bridge camera.
    fn filler(&mut self, ts_ms: i64, camera: bool) -> &mut Self {
        let n = self.0.len();
        self.read("ZZ-R0007", &format!("闽A{n:05}"), "", "car", ts_ms);
        if camera {
            self.speed("XM-C0002", &format!("闽B{n:05}"), 50.0, ts_ms);
        }
        self
    }
}

/// What a run produced: tickets issued while streaming (with the index of the record
/// whose batch issued them), and those released by `finish`.
struct Run {
    streamed: Vec<(usize, Violation)>,
    finished: Vec<Violation>,
    pipeline: Pipeline,
}

impl Run {
    fn all(&self) -> Vec<&Violation> {
        self.streamed.iter().map(|(_, v)| v).chain(&self.finished).collect()
    }

    fn for_plate(&self, plate: &str) -> Vec<&Violation> {
        self.all().into_iter().filter(|v| v.plate == plate).collect()
    }

    fn summary(&self) -> Vec<(ViolationKind, &str, &str)> {
        self.all().iter().map(|v| (v.kind, v.plate.as_str(), v.location.as_str())).collect()
    }
}

/// Feeds the records in the order added, one per batch (none may be dead-lettered),
/// then finishes.
fn run_with(config: PipelineConfig, feed: &Feed) -> Run {
    let mut pipeline = Pipeline::new(city(), config);
    let now = Instant::now();
    let mut streamed = Vec::new();
    for (i, record) in feed.0.iter().enumerate() {
        let out = pipeline.process(std::slice::from_ref(record), now);
        assert!(out.dead_letters.is_empty(), "unexpected dead letter: {:?}", out.dead_letters);
        streamed.extend(out.tickets.violations.into_iter().map(|v| (i, v)));
    }
    let finished = pipeline.finish().tickets.violations;
    Run { streamed, finished, pipeline }
}

fn run(feed: &Feed) -> Run {
    run_with(config(), feed)
}

fn devices(v: &Violation) -> Vec<&str> {
    v.evidence.sightings.iter().map(|s| s.device_id.as_str()).collect()
}

// ---- 1. Zone restrictions from a read inside the zone -------------------------

/// A gantry standing inside the island (every segment touching it is on the island)
/// where only island rules apply, and a gantry outside every zone that no segment
/// or two-segment path links to it (so no traversal, only the tag, joins the reads).
fn island_gantries() -> (String, String) {
    let city = city();
    let rule_zone = |i: usize| city.rules.restrictions[i].zone_id.as_str();
    let truck_ban = city.rules.restrictions.iter().position(|r| r.rule_id == "R-TRUCK-ISLAND-PEAK").expect("truck ban rule");
    let inside = (0..city.readers.len() as u32)
        .map(ReaderIdx)
        .find(|r| {
            let at = city.restrictions_at(*r);
            city.gate(*r).is_none() && at.iter().any(|(i, _)| *i == truck_ban) && at.iter().all(|(i, _)| rule_zone(*i) == "xiamen-island")
        })
        .expect("a gantry inside the island");
    let outside = reader("XM-R0022");
    assert!(city.restrictions_at(outside).is_empty(), "Haicang Bridge K1.6 is in no zone");
    for (a, b) in [(inside, outside), (outside, inside)] {
        assert!(city.segment_between(a, b).is_none() && city.two_hop(a, b).is_none());
    }
    (city.reader(inside).reader_id.clone(), city.reader(outside).reader_id.clone())
}

const TRUCK: &str = "闽D71001";
const TRUCK_MISREAD: &str = "闽D71007";

#[test]
fn a_read_inside_a_zone_is_a_ticket_with_a_second_read_of_its_tag_after_it() {
    let (inside, outside) = island_gantries();
    let mut feed = Feed::default();
    feed.read(&inside, TRUCK, "TAG-T1", "truck", T0).read(&inside, "闽D71002", "TAG-C1", "car", T0 + 1_000);
    feed.filler(T0 + 4 * MIN, false).filler(T0 + 8 * MIN, false).filler(T0 + 11 * MIN, false);
    feed.read(&outside, TRUCK, "TAG-T1", "truck", T0 + 12 * MIN).read(&outside, "闽D71002", "TAG-C1", "car", T0 + 12 * MIN + 1_000);
    let r = run(&feed);
    assert_eq!(r.summary(), [(ViolationKind::RestrictedVehicle, TRUCK, inside.as_str())], "one ticket, the truck's; none for the car");
    assert_eq!(r.streamed[0].0, 5, "issued when the second read arrives");
    let v = &r.streamed[0].1;
    assert_eq!((v.rule_id.as_str(), v.rule_version, v.ts_ms), ("R-TRUCK-ISLAND-PEAK", 1, T0));
    assert_eq!(v.evidence.vehicle_class.as_deref(), Some("truck"));
    assert_eq!(devices(v), [inside.as_str(), outside.as_str()]);
    let s = &v.evidence.sightings;
    assert_eq!((s[0].ts_ms, s[0].source.as_str()), (T0, "egret.plate-reads/0@0"));
    assert_eq!((s[1].ts_ms, s[1].source.as_str()), (T0 + 12 * MIN, "egret.plate-reads/0@5"));
    assert_eq!(
        v.evidence.summary,
        format!(
            "{TRUCK}, registered as truck, was read by {inside}, which stands inside the zone (Xiamen island (Siming, Huli), within the rule's hours); the same tag read again with this plate by {outside}"
        )
    );
}

#[test]
fn a_read_inside_a_zone_is_a_ticket_with_a_second_read_of_its_tag_before_it() {
    let (inside, outside) = island_gantries();
    let mut feed = Feed::default();
    feed.read(&outside, TRUCK, "TAG-T1", "truck", T0).filler(T0 + 4 * MIN, false);
    feed.read(&inside, TRUCK, "TAG-T1", "truck", T0 + 7 * MIN);
    let r = run(&feed);
    assert_eq!(r.summary(), [(ViolationKind::RestrictedVehicle, TRUCK, inside.as_str())]);
    let (at, v) = &r.streamed[0];
    assert_eq!((*at, v.ts_ms, v.rule_id.as_str()), (2, T0 + 7 * MIN, "R-TRUCK-ISLAND-PEAK"));
    assert_eq!(devices(v), [inside.as_str(), outside.as_str()]);
    assert!(v.evidence.summary.ends_with(&format!("; the same tag read with this plate by {outside}")), "{}", v.evidence.summary);
}

#[test]
fn a_lone_read_inside_a_zone_is_no_ticket() {
    let (inside, outside) = island_gantries();
    let mut feed = Feed::default();
    feed.read(&inside, TRUCK, "TAG-T1", "truck", T0);
    assert!(run(&feed).all().is_empty(), "a lone read, even after finish()");
    // A read of the same plate without a tag, or of the plate with another tag, is
    // not the same tag.
    feed.read(&outside, TRUCK, "", "truck", T0 + 2 * MIN).read(&outside, TRUCK, "TAG-T2", "truck", T0 + 3 * MIN);
    let r = run(&feed);
    assert!(r.all().is_empty(), "{:?}", r.all());
    // A second read more than 15 min before is no confirmation either.
    let mut feed = Feed::default();
    feed.read(&outside, TRUCK, "TAG-T1", "truck", T0 - 16 * MIN);
    for k in [-12, -8, -4] {
        feed.filler(T0 + k * MIN, false);
    }
    feed.read(&inside, TRUCK, "TAG-T1", "truck", T0);
    let r = run(&feed);
    assert!(r.all().is_empty(), "{:?}", r.all());
}

#[test]
fn a_second_read_more_than_15_min_after_is_no_confirmation() {
    let (inside, outside) = island_gantries();
    let mut feed = Feed::default();
    feed.read(&inside, TRUCK, "TAG-T1", "truck", T0);
    for k in [4, 8, 12] {
        feed.filler(T0 + k * MIN, false);
    }
    feed.read(&outside, TRUCK, "TAG-T1", "truck", T0 + 16 * MIN);
    let r = run(&feed);
    assert!(r.all().is_empty(), "reads 16 min apart: {:?}", r.all());
}

#[test]
fn a_second_read_of_the_tag_with_a_one_character_different_plate_is_a_misread() {
    let (inside, outside) = island_gantries();
    // The read inside the zone, then the tag with another plate: either may be the
    // misread, so neither plate is ticketed.
    let mut feed = Feed::default();
    feed.read(&inside, TRUCK, "TAG-T1", "truck", T0).read(&outside, TRUCK_MISREAD, "TAG-T1", "truck", T0 + 4 * MIN);
    let r = run(&feed);
    assert!(r.all().is_empty(), "{:?}", r.all());
    // The misread inside the zone, after the true plate outside it.
    let mut feed = Feed::default();
    feed.read(&outside, TRUCK, "TAG-T1", "truck", T0).read(&inside, TRUCK_MISREAD, "TAG-T1", "truck", T0 + 4 * MIN);
    let r = run(&feed);
    assert!(r.all().is_empty(), "{:?}", r.all());
    // Once the tag's plate is established (read twice), the misread inside the zone
    // is taken as the true plate: the ticket is the true plate's, never the misread's.
    let mut feed = Feed::default();
    feed.read("XM-R0022", TRUCK, "TAG-T1", "truck", T0).read("XM-R0023", TRUCK, "TAG-T1", "truck", T0 + 2 * MIN);
    feed.read(&inside, TRUCK_MISREAD, "TAG-T1", "truck", T0 + 6 * MIN);
    let r = run(&feed);
    assert!(r.for_plate(TRUCK_MISREAD).is_empty());
    assert_eq!(r.summary(), [(ViolationKind::RestrictedVehicle, TRUCK, inside.as_str())]);
    assert_eq!(devices(r.all()[0]), [inside.as_str(), "XM-R0022"]);
    assert_eq!(r.pipeline.stage1().plates_corrected(), 1);
}

// ---- 2. RFID misread correction -----------------------------------------------

/// Xinglin Bridge westbound: XM-R0035 -> XM-R0036 -> XM-R0037, 1551 m each at 80
/// km/h (88 with tolerance): 90 s is 62 km/h, 55.836 s is 100.0 km/h.
const A: &str = "XM-R0035";
const B: &str = "XM-R0036";
const C: &str = "XM-R0037";
const SLOW_MS: i64 = 90_000;
const FAST_MS: i64 = 55_836;
const CAR: &str = "闽D72001";
const CAR_MISREAD: &str = "闽D72081";

#[test]
fn a_misread_of_an_established_tag_is_taken_as_its_plate() {
    let mut feed = Feed::default();
    let (tb, tc) = (T0 + SLOW_MS, T0 + SLOW_MS + FAST_MS);
    feed.read(A, CAR, "TAG-K1", "car", T0).read(B, CAR, "TAG-K1", "car", tb).read(C, CAR_MISREAD, "TAG-K1", "car", tc);
    let r = run(&feed);
    assert!(r.for_plate(CAR_MISREAD).is_empty(), "{:?}", r.for_plate(CAR_MISREAD));
    assert_eq!(r.summary(), [(ViolationKind::SectionSpeed, CAR, "XM-S0065")], "the B->C drive is the established plate's");
    assert_eq!(r.streamed[0].0, 2);
    let v = &r.streamed[0].1;
    assert_eq!((v.ts_ms, v.measured, v.limit, v.evidence.elapsed_ms), (tc, 100.0, 80.0, Some(FAST_MS)));
    assert_eq!(devices(v), [B, C]);
    assert_eq!(v.evidence.sightings[1].source, "egret.plate-reads/0@2");
    assert_eq!(r.pipeline.stage1().plates_corrected(), 1);
}

#[test]
fn a_misread_first_read_corrects_nothing() {
    // P', then P twice: the tag was not established when P' came, and P' is not
    // taken as P afterwards; A->B would be a ticket (100 km/h) if it were.
    let mut feed = Feed::default();
    let (tb, tc) = (T0 + FAST_MS, T0 + 2 * FAST_MS);
    feed.read(A, CAR_MISREAD, "TAG-K1", "car", T0).read(B, CAR, "TAG-K1", "car", tb).read(C, CAR, "TAG-K1", "car", tc);
    let r = run(&feed);
    assert_eq!(r.summary(), [(ViolationKind::SectionSpeed, CAR, "XM-S0065")], "only B->C, named as read");
    assert_eq!(devices(r.all()[0]), [B, C]);
    assert_eq!(r.pipeline.stage1().plates_corrected(), 0);
}

#[test]
fn a_misread_read_twice_in_one_pass_corrects_nothing() {
    // The gantry at A reads the tag twice in one pass (2 s apart), both times as P'.
    let mut feed = Feed::default();
    feed.read(A, CAR_MISREAD, "TAG-K1", "car", T0).read(A, CAR_MISREAD, "TAG-K1", "car", T0 + 2_000);
    feed.read(B, CAR, "TAG-K1", "car", T0 + FAST_MS).read(C, CAR, "TAG-K1", "car", T0 + 2 * FAST_MS);
    let r = run(&feed);
    assert!(r.for_plate(CAR_MISREAD).is_empty(), "tickets to the misread plate: {:?}", r.summary());
    assert_eq!(r.summary(), [(ViolationKind::SectionSpeed, CAR, "XM-S0065")]);
    assert_eq!(r.pipeline.stage1().plates_corrected(), 0);
}

// ---- 3. Camera plate misread recovery -----------------------------------------

/// XM-C0001 on XM-S0043 (XM-R0022 -> XM-R0023), limit 80 km/h, threshold 88.
const CAMERA: &str = "XM-C0001";
const SEEN: &str = "闽D73009";
const P: &str = "闽D73001";
const Q: &str = "闽D73002";

fn check_recovered(v: &Violation) {
    assert_eq!((v.kind, v.plate.as_str(), v.location.as_str()), (ViolationKind::PointSpeed, P, CAMERA));
    assert_eq!((v.rule_id.as_str(), v.ts_ms, v.measured, v.limit, v.evidence.threshold), ("R-POINT-SPEED", T0 + 30_000, 95.0, 80.0, Some(88.0)));
    assert_eq!(v.evidence.vehicle_class.as_deref(), Some("car"));
    let s = &v.evidence.sightings;
    assert_eq!(devices(v), [CAMERA, "XM-R0022"]);
    assert_eq!((s[0].value, s[0].source.as_str(), s[1].source.as_str()), (Some(95.0), "egret.camera-events/0@1", "egret.plate-reads/0@0"));
    assert_eq!(s[0].image_ref.as_deref(), Some(format!("img/{CAMERA}/{}.jpg", T0 + 30_000).as_str()));
    let summary = &v.evidence.summary;
    assert!(summary.starts_with(&format!("speed camera {CAMERA} measured 95.0 km/h")), "{summary}");
    assert!(summary.contains(&format!("the camera read {SEEN}: the only plate one character from it")), "{summary}");
    assert!(summary.contains(&format!("within 5 min is {P}")), "{summary}");
}

#[test]
fn a_camera_misread_goes_to_the_only_plate_one_character_away_read_nearby() {
    // Searched once the watermark (both topics) is 6 min past the trigger.
    let mut feed = Feed::default();
    feed.read("XM-R0022", P, "TAG-P", "car", T0).speed(CAMERA, SEEN, 95.0, T0 + 30_000);
    feed.filler(T0 + 4 * MIN, true).filler(T0 + 7 * MIN, true);
    let r = run(&feed);
    assert_eq!(r.summary(), [(ViolationKind::PointSpeed, P, CAMERA)]);
    assert_eq!(r.streamed[0].0, 5, "issued once the camera topic's watermark passed trigger + 6 min");
    check_recovered(&r.streamed[0].1);
    assert_eq!(r.pipeline.stage1().unconfirmed_offences(), (0, 0));

    // At the end of input the search runs too.
    let mut feed = Feed::default();
    feed.read("XM-R0022", P, "TAG-P", "car", T0).speed(CAMERA, SEEN, 95.0, T0 + 30_000);
    let r = run(&feed);
    assert!(r.streamed.is_empty());
    assert_eq!(r.finished.len(), 1, "{:?}", r.finished);
    check_recovered(&r.finished[0]);
}

#[test]
fn a_camera_misread_with_two_candidates_or_none_nearby_is_no_ticket() {
    // P and Q are each one character from the camera's reading: ambiguous.
    let mut feed = Feed::default();
    feed.read("XM-R0022", P, "TAG-P", "car", T0).read("XM-R0023", Q, "TAG-Q", "car", T0 + 10_000).speed(CAMERA, SEEN, 95.0, T0 + 30_000);
    feed.filler(T0 + 4 * MIN, true).filler(T0 + 7 * MIN, true);
    let r = run(&feed);
    assert!(r.all().is_empty(), "{:?}", r.all());
    assert_eq!(r.pipeline.stage1().unconfirmed_offences(), (1, 0), "dropped unconfirmed, not ticketed");

    // The one neighbour was read near the camera, but more than 5 min before it.
    let mut feed = Feed::default();
    feed.read("XM-R0022", P, "TAG-P", "car", T0 - 6 * MIN).filler(T0 - 3 * MIN, true).speed(CAMERA, SEEN, 95.0, T0 + 30_000);
    let r = run(&feed);
    assert!(r.all().is_empty(), "{:?}", r.all());
    // Or far from the camera (Xinglin Bridge), at the same time.
    let mut feed = Feed::default();
    feed.read(A, P, "TAG-P", "car", T0).speed(CAMERA, SEEN, 95.0, T0 + 30_000);
    let r = run(&feed);
    assert!(r.all().is_empty(), "{:?}", r.all());
}

// ---- 4. Bridged section drives ------------------------------------------------

const BRIDGED: &str = "闽D74001";

#[test]
fn a_bridged_drive_is_ticketed_at_finish() {
    let city = city();
    let (s1, s2) = city.two_hop(reader(A), reader(C)).expect("one two-segment path A->B->C");
    let location = format!("{}+{}", city.segment(s1).segment_id, city.segment(s2).segment_id);
    assert_eq!(location, "XM-S0063+XM-S0065");
    assert!(city.segment_between(reader(A), reader(C)).is_none());
    // 3102 m in 93.06 s = 120 km/h.
    let mut feed = Feed::default();
    feed.read(A, BRIDGED, "TAG-B1", "car", T0).read(C, BRIDGED, "TAG-B1", "car", T0 + 93_060);
    let r = run(&feed);
    assert!(r.streamed.is_empty(), "held: a late read at B could still split it: {:?}", r.streamed);
    assert_eq!(r.summary(), [(ViolationKind::SectionSpeed, BRIDGED, location.as_str())]);
    let v = &r.finished[0];
    assert_eq!((v.ts_ms, v.measured, v.limit, v.rule_id.as_str()), (T0 + 93_060, 120.0, 80.0, "R-SECTION-SPEED"));
    assert_eq!((v.evidence.distance_m, v.evidence.elapsed_ms, v.evidence.threshold), (Some(3102), Some(93_060), Some(88.0)));
    assert_eq!(devices(v), [A, C]);
    assert!(v.evidence.summary.starts_with(&format!("3102 m from {A} to {C} ({location}) in 93.1 s")), "{}", v.evidence.summary);
}

#[test]
fn a_late_read_of_the_missed_gantry_replaces_the_bridged_drive() {
    // B's read arrives after C's: A->B in 29.61 s (188.6 km/h) is a ticket on its
    // own, B->C in 63.45 s (exactly 88 km/h) is not, and the bridged drive is dropped.
    let mut feed = Feed::default();
    feed.read(A, BRIDGED, "TAG-B1", "car", T0).read(C, BRIDGED, "TAG-B1", "car", T0 + 93_060);
    feed.read(B, BRIDGED, "TAG-B1", "car", T0 + 29_610);
    let r = run(&feed);
    assert_eq!(r.summary(), [(ViolationKind::SectionSpeed, BRIDGED, "XM-S0063")]);
    assert_eq!(r.streamed[0].0, 2, "issued when the late read arrives; nothing at finish");
    assert_eq!(devices(&r.streamed[0].1), [A, B]);
}

#[test]
fn a_late_read_with_both_direct_drives_under_the_threshold_is_no_ticket() {
    // An average over A->C above the threshold means one of the two equal halves is
    // above it too, so "both halves under" needs the clock doubt given to the driver:
    // fresh (uncalibrated) gantries add 2 s each to every drive. A->C in 120 s is
    // judged as 124 s = 90.06 km/h; A->B and B->C in 60 s each as 64 s = 87.2 km/h.
    let uncalibrated = PipelineConfig { uncalibrated_clock_ms: 2_000, ..config() };
    let mut feed = Feed::default();
    feed.read(A, BRIDGED, "TAG-B1", "car", T0).read(C, BRIDGED, "TAG-B1", "car", T0 + 120_000);
    let r = run_with(uncalibrated.clone(), &feed);
    assert!(r.streamed.is_empty());
    assert_eq!(r.summary(), [(ViolationKind::SectionSpeed, BRIDGED, "XM-S0063+XM-S0065")]);
    let e = &r.finished[0].evidence;
    assert_eq!((r.finished[0].measured, e.elapsed_ms, e.clock_margin_ms), (90.058, Some(120_000), Some(4_000)));

    feed.read(B, BRIDGED, "TAG-B1", "car", T0 + 60_000);
    let r = run_with(uncalibrated, &feed);
    assert!(r.all().is_empty(), "no ticket at all: {:?}", r.all());
}
