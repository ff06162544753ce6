//! Enforcement end to end: hand-built plate reads and camera events, on the real city
//! data and rules (`data/`), go through `Pipeline` and must come out as exactly the
//! tickets the rules call for - and no others. Each rule is tested at its boundary
//! (a ticket only when strictly above the limit plus tolerance, or the grace, or
//! inside the hours) and with the cases that must never be ticketed: an unconfirmed
//! camera plate, an allowed vehicle class, a stray misread, an expired hotlist entry,
//! a clock that is not yet calibrated. Tickets go to the police as evidence, so their
//! fields (rule id and version, measurement, sightings) and their deterministic ids
//! (a replay must not issue new tickets) are checked too.
//!
//! Times: `T0` is Monday 2026-11-30 07:45 local (UTC+8), inside the bus-lane and
//! island truck-ban hours. Records carry `timestamp_ms` equal to the device time, so
//! device clocks calibrate with no offset; most tests set `uncalibrated_clock_ms: 0`.

use egret_ingest::Record;
use egret_model::reason::Reason;
use egret_model::Topic;
use egret_pipeline::enforce::hotlist::HotlistEntry;
use egret_pipeline::enforce::violation::{PossibleHit, Violation, ViolationKind};
use egret_pipeline::{Pipeline, PipelineConfig};
use std::collections::HashSet;
use std::time::Instant;

mod common;

use common::{MIN, T0, city, config, record};

/// Input records; offsets (and event ids) count up from 0 in the order they are added.
#[derive(Default)]
struct Feed(Vec<Record>);

impl Feed {
    /// The records in event-time order (stable), as a stream would deliver them: the
    /// pipeline rejects events more than 5 min ahead of the newest one, and late ones.
    fn sorted(&self) -> Vec<Record> {
        let mut records = self.0.clone();
        records.sort_by_key(|r| r.timestamp_ms);
        records
    }

    fn push(&mut self, topic: Topic, json: String, ts_ms: i64) -> &mut Self {
        let offset = self.0.len() as u64;
        self.0.push(record(topic, offset, &json, ts_ms));
        self
    }

    fn read(&mut self, reader: &str, plate: &str, class: &str, ts_ms: i64) -> &mut Self {
        let json = format!(r#"{{"event_id":"EID","reader_id":"{reader}","plate":"{plate}","vehicle_class":"{class}","ts_ms":{ts_ms}}}"#);
        self.push(Topic::PlateReads, json, ts_ms)
    }

    fn tagged(&mut self, reader: &str, plate: &str, tag: &str, ts_ms: i64) -> &mut Self {
        let json = format!(r#"{{"event_id":"EID","reader_id":"{reader}","plate":"{plate}","tag_id":"{tag}","vehicle_class":"car","ts_ms":{ts_ms}}}"#);
        self.push(Topic::PlateReads, json, ts_ms)
    }

    /// A camera trigger; `extra` is more JSON fields, e.g. `"speed_kmh":95.0,`.
    fn camera(&mut self, camera: &str, kind: &str, plate: &str, extra: &str, ts_ms: i64) -> &mut Self {
        let json = format!(
            r#"{{"event_id":"EID","camera_id":"{camera}","kind":"{kind}","plate":"{plate}",{extra}"ts_ms":{ts_ms},"image_ref":"img/{camera}/{ts_ms}.jpg"}}"#
        );
        self.push(Topic::CameraEvents, json, ts_ms)
    }
}

/// What a run produced: tickets issued while streaming, and those released by `finish`.
struct Run {
    streamed: Vec<Violation>,
    finished: Vec<Violation>,
    possible_hits: Vec<PossibleHit>,
    pipeline: Pipeline,
}

impl Run {
    fn all(&self) -> Vec<&Violation> {
        self.streamed.iter().chain(&self.finished).collect()
    }

    fn of(&self, kind: ViolationKind) -> Vec<&Violation> {
        self.all().into_iter().filter(|v| v.kind == kind).collect()
    }

    fn for_plate(&self, plate: &str) -> Vec<&Violation> {
        self.all().into_iter().filter(|v| v.plate == plate).collect()
    }
}

/// Feeds the records in time order, one per batch (none may be dead-lettered), then finishes.
fn run_with(config: PipelineConfig, hotlist: &[HotlistEntry], feed: &Feed) -> Run {
    let mut pipeline = Pipeline::new(city(), config);
    if !hotlist.is_empty() {
        assert!(pipeline.set_hotlist("stolen", hotlist).is_empty(), "all hotlist plates are plates");
    }
    let now = Instant::now();
    let (mut streamed, mut possible_hits) = (Vec::new(), Vec::new());
    for record in &feed.sorted() {
        let out = pipeline.process(std::slice::from_ref(record), now);
        assert!(out.dead_letters.is_empty(), "unexpected dead letter: {:?}", out.dead_letters);
        streamed.extend(out.tickets.violations);
        possible_hits.extend(out.tickets.possible_hits);
    }
    let out = pipeline.finish();
    possible_hits.extend(out.tickets.possible_hits);
    Run { streamed, finished: out.tickets.violations, possible_hits, pipeline }
}

fn run(feed: &Feed) -> Run {
    run_with(config(), &[], feed)
}

/// (length_m, speed_limit_kmh, from reader, to reader) of a segment.
fn segment(id: &str) -> (i64, i64, String, String) {
    let city = city();
    let s = city.segment(city.segment_idx(id).expect("segment exists"));
    (i64::from(s.length_m), i64::from(s.speed_limit_kmh), s.from_reader_id.clone(), s.to_reader_id.clone())
}

/// The travel time in whole ms at exactly limit * (1 + tolerance/100), for a segment
/// whose surveyed length makes it exact.
fn boundary_ms(length_m: i64, limit_kmh: i64) -> i64 {
    let tol = city().rules.section_speed.tolerance_pct;
    assert_eq!(tol, 10.0, "rules.toml: section-speed tolerance 10 %");
    // secs = length_m / (limit * 1.1 / 3.6)  =>  ms = length_m * 36_000 / (11 * limit)
    let (num, den) = (length_m * 36_000, 11 * limit_kmh);
    assert_eq!(num % den, 0, "boundary time of {length_m} m at {limit_kmh} km/h + 10 % is whole ms");
    num / den
}

#[test]
fn section_speed_is_a_ticket_only_strictly_above_limit_plus_tolerance() {
    // XM-S0063, Xinglin Bridge: 1551 m, 80 km/h: 88 km/h takes exactly 63 450 ms.
    let (len, limit, a, b) = segment("XM-S0063");
    assert_eq!((len, limit, a.as_str(), b.as_str()), (1551, 80, "XM-R0035", "XM-R0036"));
    let at = boundary_ms(len, limit);
    assert_eq!(at, 63_450);
    let kmh = |ms: i64| len as f64 / (ms as f64 / 1000.0) * 3.6;
    assert_eq!(kmh(at), 88.0);
    assert!(kmh(at - 1) > 88.0);

    let mut feed = Feed::default();
    feed.read(&a, "闽D10001", "car", T0).read(&b, "闽D10001", "car", T0 + at); // exactly 88 km/h
    feed.read(&a, "闽D10002", "car", T0 + 1_000).read(&b, "闽D10002", "car", T0 + 1_000 + at - 1); // 1 ms faster
    feed.read(&a, "闽D10003", "car", T0 + 2_000).read(&b, "闽D10003", "car", T0 + 2_000 + 55_836); // 100.0 km/h
    feed.read(&a, "闽D10004", "car", T0 + 3_000).read(&b, "闽D10004", "car", T0 + 3_000 + 90_000); // 62 km/h
    let r = run(&feed);

    assert!(r.for_plate("闽D10001").is_empty(), "exactly at the threshold is no ticket: {:?}", r.for_plate("闽D10001"));
    assert!(r.for_plate("闽D10004").is_empty());
    assert_eq!(r.all().len(), 2, "{:?}", r.all());
    let (just_above, clearly_above) = (r.for_plate("闽D10002"), r.for_plate("闽D10003"));
    assert_eq!((just_above.len(), clearly_above.len()), (1, 1));

    let v = just_above[0];
    assert_eq!(v.kind, ViolationKind::SectionSpeed);
    assert_eq!((v.location.as_str(), v.rule_id.as_str(), v.rule_version), ("XM-S0063", "R-SECTION-SPEED", 1));
    assert_eq!((v.ts_ms, v.measured, v.limit), (T0 + 1_000 + at - 1, 88.001, 80.0), "measured is floored to 0.001 km/h");
    let e = &v.evidence;
    assert_eq!((e.distance_m, e.elapsed_ms, e.threshold, e.clock_margin_ms), (Some(1551), Some(at - 1), Some(88.0), Some(0)));
    assert_eq!(e.vehicle_class.as_deref(), Some("car"));
    let s = &e.sightings;
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].device_id.as_str(), s[0].device_ts_ms, s[0].source.as_str()), ("XM-R0035", T0 + 1_000, "egret.plate-reads/0@2"));
    assert_eq!((s[1].device_id.as_str(), s[1].device_ts_ms, s[1].source.as_str()), ("XM-R0036", T0 + 1_000 + at - 1, "egret.plate-reads/0@3"));
    assert_eq!((clearly_above[0].kind, clearly_above[0].measured), (ViolationKind::SectionSpeed, 100.0));
    assert_eq!(clearly_above[0].evidence.elapsed_ms, Some(55_836));
}

#[test]
fn bridged_section_ticket_is_held_until_no_late_read_can_split_it() {
    // Read at XM-R0035 and XM-R0037, missed at XM-R0036: 2 x 1551 m in 93.06 s = 120 km/h.
    let mut feed = Feed::default();
    feed.read("XM-R0035", "闽D10005", "car", T0).read("XM-R0037", "闽D10005", "car", T0 + 93_060);
    let r = run(&feed);
    assert!(r.streamed.is_empty(), "held while a late read at XM-R0036 could still arrive: {:?}", r.streamed);
    assert_eq!(r.finished.len(), 1);
    let v = &r.finished[0];
    assert_eq!((v.kind, v.location.as_str(), v.measured, v.limit), (ViolationKind::SectionSpeed, "XM-S0063+XM-S0065", 120.0, 80.0));
    assert_eq!((v.evidence.distance_m, v.evidence.elapsed_ms), (Some(3102), Some(93_060)));
}

#[test]
fn section_speed_exactly_at_the_threshold_on_a_120_kmh_segment_is_no_ticket() {
    // QZ-S0022: 2882 m, 120 km/h: 132 km/h takes exactly 78 600 ms.
    let (len, limit, a, b) = segment("QZ-S0022");
    let at = boundary_ms(len, limit);
    assert_eq!(at, 78_600);
    let mut feed = Feed::default();
    feed.read(&a, "闽C20001", "car", T0).read(&b, "闽C20001", "car", T0 + at);
    feed.read(&a, "闽C20002", "car", T0 + 1_000).read(&b, "闽C20002", "car", T0 + 1_000 + at - 1);
    let r = run(&feed);
    assert_eq!(r.of(ViolationKind::SectionSpeed).iter().map(|v| v.plate.as_str()).collect::<Vec<_>>(), ["闽C20002"]);
}

#[test]
fn an_uncalibrated_clock_margin_goes_to_the_driver() {
    // 1551 m in 62.04 s = 90.0 km/h, just over 88. With both gantries uncalibrated
    // (2 s each), the driver is given 66.04 s = 84.5 km/h: no ticket.
    let drive = |feed: &mut Feed, t: i64| {
        feed.read("XM-R0035", "闽D30001", "car", t).read("XM-R0036", "闽D30001", "car", t + 62_040);
    };
    let uncalibrated = PipelineConfig { uncalibrated_clock_ms: 2_000, ..config() };
    let mut feed = Feed::default();
    drive(&mut feed, T0);
    assert!(run_with(uncalibrated.clone(), &[], &feed).all().is_empty(), "4 s of clock doubt keep 90 km/h under 88");
    let v = run(&feed).all().into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(v.len(), 1, "with exact clocks the same drive is a ticket");
    assert_eq!((v[0].measured, v[0].evidence.clock_margin_ms), (90.0, Some(0)));

    // Three slow cars first: each gantry has seen three events before the
    // offender's reads, so its clock is calibrated (no doubt left). An event is
    // corrected by the events before it, never by itself.
    let mut feed = Feed::default();
    feed.read("XM-R0035", "闽D30002", "car", T0).read("XM-R0035", "闽D30003", "car", T0 + 1_000).read("XM-R0035", "闽D30004", "car", T0 + 2_000);
    feed.read("XM-R0036", "闽D30002", "car", T0 + 120_000).read("XM-R0036", "闽D30003", "car", T0 + 121_000).read("XM-R0036", "闽D30004", "car", T0 + 122_000);
    drive(&mut feed, T0 + 130_000);
    let r = run_with(uncalibrated, &[], &feed);
    let v = r.of(ViolationKind::SectionSpeed);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!((v[0].plate.as_str(), v[0].measured, v[0].evidence.clock_margin_ms), ("闽D30001", 90.0, Some(0)));
}

#[test]
fn point_speed_needs_the_speed_above_threshold_and_an_rfid_read_of_the_plate() {
    // XM-C0001 on XM-S0043 (XM-R0022 -> XM-R0023), limit 80 km/h, threshold 88.
    let mut feed = Feed::default();
    feed.read("XM-R0022", "闽D40001", "car", T0).camera("XM-C0001", "speed", "闽D40001", r#""speed_kmh":95.0,"#, T0 + 30_000);
    feed.camera("XM-C0001", "speed", "闽D40002", r#""speed_kmh":95.0,"#, T0 + 31_000); // never read by RFID
    feed.read("XM-R0022", "闽D40003", "car", T0 + 32_000).camera("XM-C0001", "speed", "闽D40003", r#""speed_kmh":88.0,"#, T0 + 60_000);
    // Camera first, RFID confirmation afterwards at the segment's far end.
    feed.camera("XM-C0001", "speed", "闽D40004", r#""speed_kmh":88.1,"#, T0 + 61_000).read("XM-R0023", "闽D40004", "car", T0 + 90_000);
    let r = run(&feed);

    let v = r.of(ViolationKind::PointSpeed);
    assert_eq!(v.iter().map(|v| v.plate.as_str()).collect::<Vec<_>>(), ["闽D40001", "闽D40004"], "{v:?}");
    assert_eq!(r.all().len(), 2);
    let t = v[0];
    assert_eq!((t.location.as_str(), t.rule_id.as_str(), t.rule_version), ("XM-C0001", "R-POINT-SPEED", 1));
    assert_eq!((t.ts_ms, t.measured, t.limit, t.evidence.threshold), (T0 + 30_000, 95.0, 80.0, Some(88.0)));
    let s = &t.evidence.sightings;
    assert_eq!(
        (s[0].device_id.as_str(), s[0].value, s[0].image_ref.as_deref()),
        ("XM-C0001", Some(95.0), Some(format!("img/XM-C0001/{}.jpg", T0 + 30_000).as_str()))
    );
    assert_eq!((s[0].source.as_str(), s[1].device_id.as_str(), s[1].source.as_str()), ("egret.camera-events/0@1", "XM-R0022", "egret.plate-reads/0@0"));
    assert_eq!(v[1].evidence.sightings[1].device_id, "XM-R0023");
    // 闽D40002 was never read; 闽D40001 and 闽D40003, each one character away, were
    // read nearby: ambiguous, so no misread correction. At the end of input the
    // offence is dropped, never ticketed.
    let (dropped, pending) = r.pipeline.stage1().unconfirmed_offences();
    assert_eq!((dropped, pending), (1, 0), "the unconfirmed plate's offence is dropped, not ticketed");
}

#[test]
fn red_light_is_a_ticket_only_after_the_grace_period() {
    // XM-C0023 on XM-S0155 (XM-R0021 -> XM-R0083); grace 500 ms.
    assert_eq!(city().rules.red_light.grace_ms, 500);
    let mut feed = Feed::default();
    for (i, elapsed) in [800, 500, 501, 0].into_iter().enumerate() {
        let (plate, t) = (format!("闽D5000{i}"), T0 + i as i64 * 10_000);
        feed.camera("XM-C0023", "red_light", &plate, &format!(r#""signal":"red","red_elapsed_ms":{elapsed},"#), t);
        feed.read("XM-R0083", &plate, "car", t + 20_000);
    }
    let r = run(&feed);
    let v = r.of(ViolationKind::RedLight);
    assert_eq!(v.iter().map(|v| (v.plate.as_str(), v.measured)).collect::<Vec<_>>(), [("闽D50000", 800.0), ("闽D50002", 501.0)]);
    assert_eq!(r.all().len(), 2);
    assert_eq!((v[0].location.as_str(), v[0].rule_id.as_str(), v[0].rule_version, v[0].limit), ("XM-C0023", "R-RED-LIGHT", 1, 500.0));
    assert_eq!(v[0].evidence.sightings.iter().map(|s| s.device_id.as_str()).collect::<Vec<_>>(), ["XM-C0023", "XM-R0083"]);
}

#[test]
fn bus_lane_is_for_buses_and_taxis_within_its_hours() {
    // XM-C0035 on XM-S0181 (XM-R0081 -> XM-R0095), lane BL-HUBIN-S, 07:00-09:00 and 17:00-19:30.
    let lane = |feed: &mut Feed, plate: &str, class: &str, t: i64| {
        feed.read("XM-R0081", plate, class, t).camera("XM-C0035", "bus_lane", plate, "", t + 20_000);
    };
    let mut feed = Feed::default();
    lane(&mut feed, "闽D60001", "car", T0);
    lane(&mut feed, "闽D60002", "taxi", T0 + 1_000);
    lane(&mut feed, "闽D60003", "bus", T0 + 2_000);
    lane(&mut feed, "闽D60004", "truck", T0 + 3_000);
    let r = run(&feed);
    let v = r.of(ViolationKind::BusLane);
    assert_eq!(v.iter().map(|v| v.plate.as_str()).collect::<Vec<_>>(), ["闽D60001", "闽D60004"]);
    assert_eq!(r.all().len(), 2);
    assert_eq!((v[0].location.as_str(), v[0].rule_id.as_str(), v[0].rule_version), ("XM-C0035", "R-BUS-LANE-HUBIN-S", 1));
    assert_eq!((v[0].ts_ms, v[0].evidence.vehicle_class.as_deref()), (T0 + 20_000, Some("car")));

    // 08:59:30 is inside; 09:00:00 (the hours are half-open) and 12:00 are not.
    for (t, tickets) in [(T0 + 74 * MIN + 10_000, 1), (T0 + 75 * MIN - 20_000, 0), (T0 + 255 * MIN, 0)] {
        let mut feed = Feed::default();
        lane(&mut feed, "闽D60005", "car", t);
        assert_eq!(run(&feed).of(ViolationKind::BusLane).len(), tickets, "camera at local {} min past 07:45", (t + 20_000 - T0) / MIN);
    }
}

#[test]
fn restricted_vehicles_are_ticketed_in_their_zone_and_hours_once_a_day() {
    // Xiang'an tunnel: XM-S0071 (XM-R0040 -> XM-R0041) then XM-S0073 (-> XM-R0042),
    // 2465 m each in 150 s (59 km/h).
    let mut feed = Feed::default();
    for (plate, class, t) in [("闽D70001", "hazmat", T0), ("闽D70002", "car", T0 + 1_000)] {
        feed.read("XM-R0040", plate, class, t).read("XM-R0041", plate, class, t + 150_000).read("XM-R0042", plate, class, t + 300_000);
    }
    let r = run(&feed);
    assert_eq!(r.all().len(), 1, "one hazmat ticket for two tunnel segments, none for the car: {:?}", r.all());
    let v = r.all()[0];
    assert_eq!((v.kind, v.plate.as_str(), v.location.as_str()), (ViolationKind::RestrictedVehicle, "闽D70001", "XM-S0071"));
    assert_eq!((v.rule_id.as_str(), v.rule_version, v.ts_ms), ("R-HAZMAT-XIANGAN-TUNNEL", 1, T0 + 150_000));
    assert_eq!(v.evidence.vehicle_class.as_deref(), Some("hazmat"));
    assert_eq!(v.evidence.sightings.iter().map(|s| s.device_id.as_str()).collect::<Vec<_>>(), ["XM-R0040", "XM-R0041"]);

    // A truck on the island (XM-S0077, 1081 m, 60 km/h, in 90 s): in the 07:00-09:00
    // peak a ticket, at 12:00 none.
    for (t, expected) in [(T0, vec!["R-TRUCK-ISLAND-PEAK"]), (T0 + 255 * MIN, vec![])] {
        let mut feed = Feed::default();
        feed.read("XM-R0044", "闽D70003", "truck", t).read("XM-R0045", "闽D70003", "truck", t + 90_000);
        let r = run(&feed);
        assert_eq!(r.all().iter().map(|v| v.rule_id.as_str()).collect::<Vec<_>>(), expected);
    }
}

fn hotlist() -> Vec<HotlistEntry> {
    vec![
        HotlistEntry { plate: "闽D54321".into(), reason: "stolen vehicle".into(), expires_ms: None },
        HotlistEntry { plate: "闽D11111".into(), reason: "unpaid fines".into(), expires_ms: Some(T0 - 1) },
    ]
}

#[test]
fn hotlist_exact_plate_is_a_ticket_a_near_miss_only_a_possible_hit() {
    let mut feed = Feed::default();
    feed.read("XM-R0022", "闽D54321", "car", T0).read("XM-R0023", "闽D54321", "car", T0 + 90_000); // repeat within 30 min
    feed.read("XM-R0022", "闽D11111", "car", T0 + 1_000); // entry expired
    feed.read("XM-R0022", "闽D54322", "car", T0 + 2_000); // one character away
    let r = run_with(config(), &hotlist(), &feed);

    assert_eq!(r.all().len(), 1, "{:?}", r.all());
    let v = r.all()[0];
    assert_eq!((v.kind, v.plate.as_str(), v.location.as_str(), v.ts_ms), (ViolationKind::Hotlist, "闽D54321", "XM-R0022", T0));
    assert_eq!((v.rule_id.as_str(), v.rule_version), ("HOTLIST:stolen", 1));
    assert_eq!((v.evidence.list.as_deref(), v.evidence.reason.as_deref()), (Some("stolen"), Some("stolen vehicle")));
    assert_eq!(v.evidence.sightings[0].device_id, "XM-R0022");

    assert_eq!(r.possible_hits.len(), 1, "{:?}", r.possible_hits);
    let h = &r.possible_hits[0];
    assert_eq!((h.list.as_str(), h.listed_plate.as_str(), h.seen_plate.as_str()), ("stolen", "闽D54321", "闽D54322"));
    assert_eq!((h.reason.as_str(), h.ts_ms), ("stolen vehicle", T0 + 2_000));
}

#[test]
fn cloned_plate_needs_two_tags_each_read_twice() {
    // Tag A on Haicang Bridge, then tag B on Xinglin Bridge (5.5 km away) 3.5 min later:
    // a plausible drive, so only the two tags make it a clone.
    let mut feed = Feed::default();
    feed.tagged("XM-R0022", "闽D80001", "TAG-A", T0).tagged("XM-R0023", "闽D80001", "TAG-A", T0 + 90_000);
    feed.tagged("XM-R0035", "闽D80001", "TAG-B", T0 + 300_000).tagged("XM-R0036", "闽D80001", "TAG-B", T0 + 390_000);
    // Same, but tag B was read once only: a stray misread.
    feed.tagged("XM-R0022", "闽D80002", "TAG-C", T0 + 1_000).tagged("XM-R0023", "闽D80002", "TAG-C", T0 + 91_000);
    feed.tagged("XM-R0035", "闽D80002", "TAG-D", T0 + 301_000);
    feed.tagged("XM-R0036", "闽D80002", "TAG-C", T0 + 391_000);
    let r = run(&feed);

    assert_eq!(r.all().len(), 1, "{:?}", r.all());
    let v = r.all()[0];
    assert_eq!((v.kind, v.plate.as_str(), v.rule_id.as_str(), v.rule_version), (ViolationKind::ClonedPlate, "闽D80001", "R-CLONED-PLATE", 1));
    assert_eq!((v.evidence.reason.as_deref(), v.measured, v.ts_ms), (Some("two_tags"), 2.0, T0 + 390_000));
    assert_eq!(v.evidence.sightings.len(), 4);
}

/// One of every kind of ticket, plus traffic that must not be ticketed.
fn mixed_feed() -> Feed {
    let mut f = Feed::default();
    f.read("XM-R0035", "闽D90001", "car", T0).read("XM-R0036", "闽D90001", "car", T0 + 55_836); // section
    f.read("XM-R0035", "闽D90002", "car", T0 + 1_000).read("XM-R0037", "闽D90002", "car", T0 + 94_060); // bridged
    f.read("XM-R0022", "闽D90003", "car", T0 + 2_000).camera("XM-C0001", "speed", "闽D90003", r#""speed_kmh":99.5,"#, T0 + 30_000);
    f.camera("XM-C0023", "red_light", "闽D90004", r#""red_elapsed_ms":1200,"#, T0 + 40_000).read("XM-R0083", "闽D90004", "car", T0 + 60_000);
    f.read("XM-R0081", "闽D90005", "car", T0 + 61_000).camera("XM-C0035", "bus_lane", "闽D90005", "", T0 + 80_000);
    f.read("XM-R0081", "闽D90006", "taxi", T0 + 62_000).camera("XM-C0035", "bus_lane", "闽D90006", "", T0 + 81_000);
    f.read("XM-R0040", "闽D90007", "hazmat", T0 + 90_000).read("XM-R0041", "闽D90007", "hazmat", T0 + 240_000);
    f.read("XM-R0042", "闽D90007", "hazmat", T0 + 390_000);
    f.read("XM-R0022", "闽D54321", "car", T0 + 100_000).read("XM-R0022", "闽D54322", "car", T0 + 101_000);
    f.tagged("XM-R0022", "闽D90008", "TAG-A", T0 + 110_000).tagged("XM-R0023", "闽D90008", "TAG-A", T0 + 200_000);
    f.tagged("XM-R0035", "闽D90008", "TAG-B", T0 + 400_000).tagged("XM-R0036", "闽D90008", "TAG-B", T0 + 490_000);
    f
}

#[test]
fn a_replay_issues_the_same_tickets_and_no_id_twice() {
    let feed = mixed_feed();
    let first = run_with(config(), &hotlist(), &feed);
    let ids = |r: &Run| r.all().iter().map(|v| v.violation_id.clone()).collect::<Vec<_>>();
    let kinds: HashSet<ViolationKind> = first.all().iter().map(|v| v.kind).collect();
    assert_eq!(kinds, ViolationKind::ALL.into_iter().collect(), "one of every kind: {:?}", first.all());
    assert_eq!(first.all().len(), 8, "two section tickets (one bridged) and one of each other kind: {:?}", first.all());
    let unique: HashSet<String> = ids(&first).into_iter().collect();
    assert_eq!(unique.len(), ids(&first).len(), "no violation_id twice in one run");
    assert!(ids(&first).iter().all(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())));

    let second = run_with(config(), &hotlist(), &feed);
    assert_eq!(ids(&second), ids(&first), "a fresh pipeline fed the same records issues the same ids, in the same order");
    assert_eq!(second.all(), first.all(), "and the same tickets");

    // Feeding the same records again into the same pipeline issues nothing new: they
    // are duplicates (or by now late), and dead-lettered.
    let mut p = Pipeline::new(city(), config());
    assert!(p.set_hotlist("stolen", &hotlist()).is_empty());
    let now = Instant::now();
    let records = feed.sorted();
    let once = p.process(&records, now);
    assert!(once.dead_letters.is_empty());
    let again = p.process(&records, now);
    assert!(again.tickets.violations.is_empty(), "{:?}", again.tickets.violations);
    assert_eq!(again.dead_letters.len(), feed.0.len());
    assert!(again.dead_letters.iter().all(|d| matches!(d.reject.reason, Reason::Duplicate | Reason::Late)));
    let mut all: Vec<String> = once.tickets.violations.iter().chain(&p.finish().tickets.violations).map(|v| v.violation_id.clone()).collect();
    all.sort();
    let mut expected = ids(&first);
    expected.sort();
    assert_eq!(all, expected, "one batch or many, the same tickets");
}
