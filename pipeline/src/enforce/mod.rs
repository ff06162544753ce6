//! Enforcement, in stage 1 where everything about one plate meets: section speed
//! and zone restrictions from the matched traversals, camera offences confirmed by
//! the plate's RFID reads, hotlist hits on every sighting, and cloned plates (two
//! tags for one plate, or one plate at two places no vehicle could link).
//!
//! Every rule comes from the versioned rules file; a ticket carries the rule id and
//! version and a deterministic id, so a replay issues the same tickets, never new
//! ones. Where a measurement is uncertain (device clocks), the doubt goes to the
//! driver: a section-speed ticket must hold with the clock error added to the time.

pub mod camera;
pub mod hotlist;
pub mod violation;

use crate::matcher::{Read, Traversal};
use camera::{CORROBORATE_MS, CameraRules, Pending};
use egret_model::city::{haversine_m, parse_hours};
use egret_model::time::{HourRange, local_minute_of_day};
use egret_model::{CityModel, Plate, SegmentIdx, VehicleClass};
use hotlist::Hotlists;
use std::collections::{HashMap, HashSet};
use violation::{Evidence, PossibleHit, Sighting, Violation, ViolationKind, violation_id};

/// Two sightings this close are never called impossible travel (clock and
/// position error).
const MIN_CLONE_DISTANCE_M: f64 = 2_000.0;
/// Two tags of one plate count as two vehicles when each was read twice this close.
pub const CLONE_WINDOW_MS: i64 = 45 * 60_000;
/// Read times kept per tag of a plate seen with several tags.
const TAG_READS_KEPT: usize = 4;

/// What enforcement produced for one batch.
#[derive(Debug, Default)]
pub struct Tickets {
    pub violations: Vec<Violation>,
    pub possible_hits: Vec<PossibleHit>,
}

pub struct Enforcer {
    /// Per segment: (restriction index, hours) of the zone rules covering it.
    restrictions: Vec<Vec<(usize, Vec<HourRange>)>>,
    cameras: CameraRules,
    pending: Pending,
    pub hotlists: Hotlists,
    /// (rule, plate, local day) already ticketed, for once-a-day offences; rule
    /// `usize::MAX` is the cloned plate.
    daily: HashSet<(usize, Plate, i64)>,
    /// Plates read with more than one RFID tag: per tag, its recent read times. Only
    /// such plates (clones, and misreads that hit a real plate) are here.
    multi_tag: HashMap<Plate, Vec<(u32, Vec<i64>)>>,
    /// Section tickets over bridged drives, held until no late read can fill the
    /// gap (`hold_ms` of event time): a filled gap gives direct traversals, judged
    /// on their own, and the bridged ticket is dropped rather than issued twice.
    held: HashMap<Plate, Vec<(Violation, i64, i64)>>,
    hold_ms: i64,
    plate_reads_topic: String,
    camera_topic: String,
}

/// Where a record came from, for evidence.
pub fn source_ref(topic: &str, partition: u32, offset: u64) -> String {
    format!("{topic}/{partition}@{offset}")
}

impl Enforcer {
    /// `hold_ms`: how long after its exit read a bridged drive may still be split
    /// by a late read (the pipeline's window plus allowed lateness).
    pub fn new(city: &CityModel, hold_ms: i64) -> Self {
        let mut restrictions = vec![Vec::new(); city.segments.len()];
        for (i, r) in city.rules.restrictions.iter().enumerate() {
            let hours = parse_hours(&r.rule_id, &r.hours).unwrap_or_default();
            for zone in city.rules.zones.iter().filter(|z| z.zone_id == r.zone_id) {
                for s in zone.segments.iter().filter_map(|s| city.segment_idx(s)) {
                    restrictions[s.0 as usize].push((i, hours.clone()));
                }
            }
        }
        Enforcer {
            restrictions,
            cameras: CameraRules::new(city),
            pending: Pending::default(),
            hotlists: Hotlists::default(),
            daily: HashSet::new(),
            multi_tag: HashMap::new(),
            held: HashMap::new(),
            hold_ms,
            plate_reads_topic: egret_model::Topic::PlateReads.default_name().to_owned(),
            camera_topic: egret_model::Topic::CameraEvents.default_name().to_owned(),
        }
    }

    /// Camera offences dropped because no RFID read confirmed their plate.
    pub fn unconfirmed(&self) -> u64 {
        self.pending.unconfirmed
    }

    fn read_sighting(&self, city: &CityModel, r: &Read) -> Sighting {
        Sighting {
            device_id: city.reader(r.reader).reader_id.clone(),
            device_ts_ms: r.device_ts_ms(),
            ts_ms: r.ts_ms,
            source: source_ref(&self.plate_reads_topic, u32::from(r.partition), r.offset),
            image_ref: None,
            value: None,
        }
    }

    /// A new RFID read of `plate` (already in `recent`, the plate's reads) and the
    /// traversals it completed.
    pub fn on_read(&mut self, city: &CityModel, plate: Plate, class: VehicleClass, read: &Read, traversals: &[Traversal], recent: &[Read], out: &mut Tickets) {
        for t in traversals {
            if t.via.is_none() {
                self.drop_held_within(plate, t.enter_ms, t.exit_ms);
            }
            match self.section_speed(city, t) {
                Some(v) if t.via.is_some() => self.held.entry(plate).or_default().push((v, t.enter_ms, t.exit_ms)),
                Some(v) => out.violations.push(v),
                None => {}
            }
            self.restricted(city, t, out);
        }
        let sighting = self.read_sighting(city, read);
        self.hotlist(plate, sighting, out);
        self.track_tags(plate, read, recent);
        self.cloned(city, plate, recent, out);
        let confirmed = self.pending.take_confirmed(&plate, |o| self.cameras.confirming(o, std::slice::from_ref(read)).is_some());
        for o in confirmed {
            let source = source_ref(&self.plate_reads_topic, u32::from(read.partition), read.offset);
            out.violations.extend(self.cameras.ticket(city, &o, class, read, source));
        }
    }

    /// A read at a parking gate: a sighting, nothing more.
    pub fn on_gate_read(&mut self, city: &CityModel, plate: Plate, read: &Read, out: &mut Tickets) {
        let sighting = self.read_sighting(city, read);
        self.hotlist(plate, sighting, out);
    }

    /// A camera trigger, with its clock corrected; `recent` are its plate's reads.
    #[allow(clippy::too_many_arguments)]
    pub fn on_camera(
        &mut self,
        city: &CityModel,
        cam: &egret_model::decode::CameraIn,
        device_ts_ms: i64,
        partition: u32,
        offset: u64,
        recent: Option<(VehicleClass, &[Read])>,
        out: &mut Tickets,
    ) {
        let Some(plate) = cam.plate else { return };
        let source = source_ref(&self.camera_topic, partition, offset);
        let sighting = Sighting {
            device_id: city.cameras[cam.camera as usize].camera_id.clone(),
            device_ts_ms,
            ts_ms: cam.ts_ms,
            source: source.clone(),
            image_ref: cam.image_ref.clone(),
            value: cam.speed_kmh,
        };
        self.hotlist(plate, sighting, out);
        let image = cam.image_ref.as_deref();
        let Some(offence) =
            self.cameras.offence(city, cam.camera, cam.kind, plate, cam.ts_ms, device_ts_ms, cam.speed_kmh, cam.red_elapsed_ms, image, source)
        else {
            return;
        };
        match recent.and_then(|(class, reads)| Some((class, *self.cameras.confirming(&offence, reads)?))) {
            Some((class, read)) => {
                let source = source_ref(&self.plate_reads_topic, u32::from(read.partition), read.offset);
                out.violations.extend(self.cameras.ticket(city, &offence, class, &read, source));
            }
            None => self.pending.add(offence),
        }
    }

    /// Average speed between two gantries above the limit plus tolerance. Over a
    /// bridged drive (two segments, the gantry between them missed the vehicle) the
    /// higher of the two limits applies: an average above it means the vehicle broke
    /// at least one segment's own limit.
    fn section_speed(&self, city: &CityModel, t: &Traversal) -> Option<Violation> {
        let rule = &city.rules.section_speed;
        let segments: Vec<&egret_model::city::Segment> = std::iter::once(t.segment).chain(t.via).map(|s| city.segment(s)).collect();
        let length_m: u32 = segments.iter().map(|s| s.length_m).sum();
        let limit_kmh = segments.iter().map(|s| s.speed_limit_kmh).max().unwrap_or(0);
        let limit = f64::from(limit_kmh);
        let threshold = rule.threshold_kmh(limit);
        let margin_ms = i64::from(t.from.uncertainty_ms) + i64::from(t.to.uncertainty_ms);
        let elapsed_ms = t.exit_ms - t.enter_ms;
        // Judged in the driver's favour: the clocks' doubt added to the time.
        if !rule.exceeded_by_drive(limit_kmh, length_m, elapsed_ms + margin_ms) {
            return None;
        }
        let speed = crate::matcher::speed_kmh(length_m, 0, elapsed_ms + margin_ms);
        let location = segments.iter().map(|s| s.segment_id.as_str()).collect::<Vec<_>>().join("+");
        let (from, to) = (self.read_sighting(city, &t.from), self.read_sighting(city, &t.to));
        let plate = t.plate.to_string();
        let facts = format!("{}@{}>{}@{}", from.device_id, from.device_ts_ms, to.device_id, to.device_ts_ms);
        let summary = format!(
            "{length_m} m from {} to {} ({location}) in {:.1} s (+{:.1} s clock margin) = {:.1} km/h; limit {limit_kmh} km/h + {}% tolerance = {:.1} km/h",
            from.device_id,
            to.device_id,
            elapsed_ms as f64 / 1000.0,
            margin_ms as f64 / 1000.0,
            speed,
            rule.tolerance_pct,
            threshold
        );
        Some(Violation {
            violation_id: violation_id(ViolationKind::SectionSpeed, &plate, &rule.rule_id, &facts),
            kind: ViolationKind::SectionSpeed,
            plate,
            ts_ms: t.exit_ms,
            location,
            // Rounded down (in the driver's favour) to 0.001 km/h.
            measured: (speed * 1000.0).floor() / 1000.0,
            limit,
            rule_id: rule.rule_id.clone(),
            rule_version: rule.rule_version,
            evidence: Evidence {
                summary,
                sightings: vec![from, to],
                vehicle_class: Some(t.class.as_str().to_owned()),
                distance_m: Some(length_m),
                elapsed_ms: Some(elapsed_ms),
                threshold: Some(threshold),
                clock_margin_ms: Some(margin_ms),
                ..Evidence::default()
            },
        })
    }

    /// A direct traversal inside a held bridged drive: the gap was filled.
    fn drop_held_within(&mut self, plate: Plate, enter_ms: i64, exit_ms: i64) {
        if let Some(list) = self.held.get_mut(&plate) {
            list.retain(|(_, from, to)| !(enter_ms >= *from && exit_ms <= *to));
            if list.is_empty() {
                self.held.remove(&plate);
            }
        }
    }

    /// Issues held bridged tickets that no late read can split any more.
    pub fn release_held(&mut self, watermark_ms: i64, out: &mut Tickets) {
        if self.held.is_empty() {
            return;
        }
        let due = watermark_ms.saturating_sub(self.hold_ms);
        let mut released: Vec<Violation> = Vec::new();
        self.held.retain(|_, list| {
            let (ready, wait): (Vec<_>, Vec<_>) = list.drain(..).partition(|(_, _, exit)| *exit < due);
            released.extend(ready.into_iter().map(|(v, _, _)| v));
            *list = wait;
            !list.is_empty()
        });
        // Deterministic order whatever the map's.
        released.sort_by(|a, b| (a.ts_ms, &a.violation_id).cmp(&(b.ts_ms, &b.violation_id)));
        out.violations.extend(released);
    }

    /// Zone rules: the first traversal of a restricted zone segment within the rule's
    /// hours, once per rule, plate and local day. A bridged drive covers both its
    /// segments, and must be within the hours from start to end (the time at the
    /// missed gantry is not known).
    fn restricted(&mut self, city: &CityModel, t: &Traversal, out: &mut Tickets) {
        let tz = city.rules.timezone_offset_minutes;
        let instants = if t.via.is_some() { vec![t.enter_ms, t.exit_ms] } else { vec![t.exit_ms] };
        let day = local_day(t.exit_ms, tz);
        let applicable: Vec<(SegmentIdx, usize)> = std::iter::once(t.segment)
            .chain(t.via)
            .flat_map(|s| self.restrictions[s.0 as usize].iter().map(move |(i, _)| (s, *i)))
            .collect();
        for (s, i) in applicable {
            let rule = &city.rules.restrictions[i];
            let hours = self.restrictions[s.0 as usize].iter().find(|(r, _)| *r == i).map_or(&[][..], |(_, h)| h.as_slice());
            let in_hours = hours.is_empty() || instants.iter().all(|ts| hours.iter().any(|h| h.contains(local_minute_of_day(*ts, tz))));
            if !in_hours || !rule.classes.contains(&t.class) || !self.daily.insert((i, t.plate, day)) {
                continue;
            }
            let segment = city.segment(s);
            let zone = city.rules.zones.iter().find(|z| z.zone_id == rule.zone_id).map_or(rule.zone_id.as_str(), |z| z.name.as_str());
            let plate = t.plate.to_string();
            let (from, to) = (self.read_sighting(city, &t.from), self.read_sighting(city, &t.to));
            out.violations.push(Violation {
                violation_id: violation_id(ViolationKind::RestrictedVehicle, &plate, &rule.rule_id, &day.to_string()),
                kind: ViolationKind::RestrictedVehicle,
                plate: plate.clone(),
                ts_ms: t.exit_ms,
                location: segment.segment_id.clone(),
                measured: 0.0,
                limit: 0.0,
                rule_id: rule.rule_id.clone(),
                rule_version: rule.rule_version,
                evidence: Evidence {
                    summary: format!("{plate}, registered as {}, drove {} in {zone} from {} to {}", t.class.as_str(), segment.segment_id, from.device_id, to.device_id),
                    sightings: vec![from, to],
                    vehicle_class: Some(t.class.as_str().to_owned()),
                    ..Evidence::default()
                },
            });
        }
    }

    fn hotlist(&mut self, plate: Plate, sighting: Sighting, out: &mut Tickets) {
        for m in self.hotlists.check(plate, sighting.ts_ms) {
            if !m.exact {
                out.possible_hits.push(PossibleHit {
                    list: m.list,
                    listed_plate: m.listed_plate.to_string(),
                    seen_plate: plate.to_string(),
                    ts_ms: sighting.ts_ms,
                    reason: m.reason,
                    sighting: sighting.clone(),
                });
                continue;
            }
            let plate = plate.to_string();
            let facts = format!("{}:{}@{}", m.list, sighting.device_id, sighting.device_ts_ms);
            out.violations.push(Violation {
                violation_id: violation_id(ViolationKind::Hotlist, &plate, &m.list, &facts),
                kind: ViolationKind::Hotlist,
                plate: plate.clone(),
                ts_ms: sighting.ts_ms,
                location: sighting.device_id.clone(),
                measured: 0.0,
                limit: 0.0,
                rule_id: format!("HOTLIST:{}", m.list),
                rule_version: 1,
                evidence: Evidence {
                    summary: format!("{plate} on hotlist {} ({}) seen by {}", m.list, m.reason, sighting.device_id),
                    sightings: vec![sighting.clone()],
                    list: Some(m.list),
                    reason: Some(m.reason),
                    ..Evidence::default()
                },
            });
        }
    }

    /// Follows the tags of a plate once its recent reads show more than one.
    fn track_tags(&mut self, plate: Plate, read: &Read, recent: &[Read]) {
        if read.tag == 0 {
            return;
        }
        if let Some(tags) = self.multi_tag.get_mut(&plate) {
            match tags.iter_mut().find(|(t, _)| *t == read.tag) {
                Some((_, times)) => {
                    times.push(read.ts_ms);
                    if times.len() > TAG_READS_KEPT {
                        times.remove(0);
                    }
                }
                None => tags.push((read.tag, vec![read.ts_ms])),
            }
        } else if recent.iter().any(|r| r.tag != 0 && r.tag != read.tag) {
            let mut tags: Vec<(u32, Vec<i64>)> = Vec::new();
            for r in recent.iter().filter(|r| r.tag != 0) {
                match tags.iter_mut().find(|(t, _)| *t == r.tag) {
                    Some((_, times)) => times.push(r.ts_ms),
                    None => tags.push((r.tag, vec![r.ts_ms])),
                }
            }
            self.multi_tag.insert(plate, tags);
        }
    }

    /// Two vehicles behind one plate: two RFID tags each read at least twice, or two
    /// groups of reads (at least two each) that no vehicle could drive between. A
    /// single misread never qualifies: it is one read, not two.
    fn cloned(&mut self, city: &CityModel, plate: Plate, recent: &[Read], out: &mut Tickets) {
        let rule = &city.rules.cloned_plate;
        let Some(newest) = recent.iter().map(|r| r.ts_ms).max() else { return };
        let day = local_day(newest, city.rules.timezone_offset_minutes);
        if self.daily.contains(&(usize::MAX, plate, day)) {
            return;
        }
        let tags = self.multi_tag.get(&plate).map_or(&[][..], Vec::as_slice);
        let read_twice = |times: &Vec<i64>| times.iter().filter(|t| newest - **t <= CLONE_WINDOW_MS).count() >= 2;
        let tag_count = tags.len();
        let two_tags = tags.iter().filter(|(_, times)| read_twice(times)).count() >= 2;
        let (groups, fastest_kmh) = travel_groups(city, recent, rule.max_plausible_kmh);
        let impossible = groups.iter().filter(|g| g.len() >= 2).count() >= 2;
        if !two_tags && !impossible {
            return;
        }
        self.daily.insert((usize::MAX, plate, day));
        let sightings: Vec<Sighting> = recent.iter().map(|r| self.read_sighting(city, r)).collect();
        let plate_s = plate.to_string();
        let summary = if two_tags {
            format!("{plate_s} read with {tag_count} different RFID tags, two of them at least twice within 45 min")
        } else {
            format!("{plate_s} seen in two places linked only at {fastest_kmh:.0} km/h (limit of plausibility {} km/h)", rule.max_plausible_kmh)
        };
        out.violations.push(Violation {
            violation_id: violation_id(ViolationKind::ClonedPlate, &plate_s, &rule.rule_id, &day.to_string()),
            kind: ViolationKind::ClonedPlate,
            plate: plate_s,
            ts_ms: newest,
            location: sightings.last().map(|s| s.device_id.clone()).unwrap_or_default(),
            measured: if impossible { fastest_kmh } else { tag_count as f64 },
            limit: rule.max_plausible_kmh,
            rule_id: rule.rule_id.clone(),
            rule_version: rule.rule_version,
            evidence: Evidence { summary, sightings, reason: Some(if two_tags { "two_tags" } else { "impossible_travel" }.into()), ..Evidence::default() },
        });
    }

    /// Forgets what no later event can need: unconfirmed camera offences, old hits
    /// and once-a-day marks of past days.
    pub fn expire(&mut self, watermark_ms: i64, tz_minutes: i32) {
        self.pending.expire(watermark_ms.saturating_sub(CORROBORATE_MS));
        self.hotlists.expire(watermark_ms);
        let today = local_day(watermark_ms, tz_minutes);
        self.daily.retain(|(_, _, day)| *day >= today - 1);
        let horizon = watermark_ms.saturating_sub(CLONE_WINDOW_MS);
        self.multi_tag.retain(|_, tags| tags.iter().any(|(_, times)| times.iter().any(|t| *t >= horizon)));
    }

    /// Camera offences waiting for their plate's RFID read.
    pub fn pending_offences(&self) -> usize {
        self.pending.len()
    }
}

/// Local calendar day number (days since the epoch in local time).
pub fn local_day(ts_ms: i64, tz_minutes: i32) -> i64 {
    (ts_ms + i64::from(tz_minutes) * 60_000).div_euclid(86_400_000)
}

/// Splits time-ordered reads into groups a vehicle could drive between (greedily,
/// each read joining the first group whose latest read it can be reached from), and
/// the fastest speed any read would have needed to join an earlier group.
fn travel_groups(city: &CityModel, reads: &[Read], max_kmh: f64) -> (Vec<Vec<Read>>, f64) {
    let reachable = |a: &Read, b: &Read| {
        let (ra, rb) = (city.reader(a.reader), city.reader(b.reader));
        let metres = haversine_m([ra.lon, ra.lat], [rb.lon, rb.lat]);
        let secs = ((b.ts_ms - a.ts_ms).abs() as f64 / 1000.0).max(0.001);
        (metres < MIN_CLONE_DISTANCE_M || metres / secs * 3.6 <= max_kmh, metres / secs * 3.6)
    };
    let mut groups: Vec<Vec<Read>> = Vec::new();
    let mut fastest: f64 = 0.0;
    for r in reads {
        let mut joined = false;
        for g in groups.iter_mut() {
            let (ok, kmh) = reachable(g.last().unwrap_or(r), r);
            if ok {
                g.push(*r);
                joined = true;
                break;
            }
            fastest = fastest.max(kmh);
        }
        if !joined {
            groups.push(vec![*r]);
        }
    }
    (groups, fastest)
}
