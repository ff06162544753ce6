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
pub mod cloned;
pub mod hotlist;
pub mod violation;
pub mod zones;

use crate::matcher::{Read, Traversal};
use camera::{CORROBORATE_MS, CameraRules, FUZZY_WINDOW_MS, GantryLog, Pending};
use cloned::ClonedPlates;
use zones::ZoneRules;
use egret_model::{CityModel, Plate, VehicleClass};
use hotlist::Hotlists;
use egret_model::FastMap;
use egret_model::time::local_day;
use violation::{Evidence, PossibleHit, Sighting, Violation, ViolationKind, violation_id};


/// What enforcement produced for one batch.
#[derive(Debug, Default)]
pub struct Tickets {
    pub violations: Vec<Violation>,
    pub possible_hits: Vec<PossibleHit>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Enforcer {
    /// From the city model, rebuilt on restore (see `restore`).
    #[serde(skip)]
    cameras: CameraRules,
    pending: Pending,
    pub hotlists: Hotlists,
    /// (rule, plate, local day) already ticketed, for once-a-day offences; rule
    /// `usize::MAX` is the cloned plate.
    zones: ZoneRules,
    cloned: ClonedPlates,
    gantry_log: GantryLog,
    /// Section tickets over bridged drives, held until no late read can fill the
    /// gap (`hold_ms` of event time): a filled gap gives direct traversals, judged
    /// on their own, and the bridged ticket is dropped rather than issued twice.
    held: FastMap<Plate, Vec<(Violation, i64, i64)>>,
    hold_ms: i64,
    #[serde(skip)]
    plate_reads_topic: String,
    #[serde(skip)]
    camera_topic: String,
}

/// Where a record came from, for evidence.
pub fn source_ref(topic: &str, partition: u32, offset: u64) -> String {
    format!("{topic}/{partition}@{offset}")
}

impl Enforcer {
    /// Keeps the keyed state of the plates `keep` accepts: pending and held
    /// tickets, zone passes, tags per plate, recent hotlist hits. The gantry log and
    /// the tags' plates span partitions and stay whole (see `rescale::stage1`).
    pub fn retain_plates(&mut self, keep: &dyn Fn(&Plate) -> bool) {
        self.pending.retain_plates(keep);
        self.held.retain(|plate, _| keep(plate));
        self.zones.retain_plates(keep);
        self.cloned.retain_plates(keep);
        self.hotlists.retain_plates(keep);
    }

    /// Takes in another instance's keyed state (a share disjoint from this one's).
    pub fn absorb(&mut self, other: Enforcer) {
        self.pending.absorb(other.pending);
        self.held.extend(other.held);
        self.zones.absorb(other.zones);
        self.cloned.absorb(other.cloned);
        self.hotlists.absorb(other.hotlists);
    }

    /// Takes the running count of offences dropped unconfirmed, leaving zero.
    pub fn take_unconfirmed(&mut self) -> u64 {
        std::mem::take(&mut self.pending.unconfirmed)
    }

    /// Sets that count (see `take_unconfirmed`).
    pub fn set_unconfirmed(&mut self, n: u64) {
        self.pending.unconfirmed = n;
    }

    /// `hold_ms`: how long after its exit read a bridged drive may still be split
    /// by a late read (the pipeline's window plus allowed lateness).
    pub fn new(city: &CityModel, hold_ms: i64) -> Self {
        Enforcer {
            cameras: CameraRules::new(city),
            pending: Pending::default(),
            hotlists: Hotlists::default(),
            zones: ZoneRules::default(),
            cloned: ClonedPlates::default(),
            gantry_log: GantryLog::new(city.readers.len()),
            held: FastMap::default(),
            hold_ms,
            plate_reads_topic: egret_model::Topic::PlateReads.default_name().to_owned(),
            camera_topic: egret_model::Topic::CameraEvents.default_name().to_owned(),
        }
    }

    /// After a restore: the parts built from the city model (rules, topic names)
    /// come from `fresh`, built from the model now loaded, not from the checkpoint.
    pub(crate) fn take_city_parts_from(&mut self, fresh: Enforcer) {
        (self.cameras, self.hold_ms, self.plate_reads_topic, self.camera_topic) = (fresh.cameras, fresh.hold_ms, fresh.plate_reads_topic, fresh.camera_topic);
    }

    /// Camera offences dropped because no RFID read confirmed their plate.
    pub fn unconfirmed(&self) -> u64 {
        self.pending.unconfirmed
    }

    fn read_sighting(&self, city: &CityModel, r: &Read) -> Sighting {
        read_sighting(city, &self.plate_reads_topic, r)
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
            let topic = &self.plate_reads_topic;
            self.zones.on_traversal(city, t, |r| read_sighting(city, topic, r), out);
        }
        let topic = &self.plate_reads_topic;
        self.zones.on_read(city, plate, class, read, recent, |r| read_sighting(city, topic, r), out);
        hotlist(&mut self.hotlists, plate, read.ts_ms, || read_sighting(city, topic, read), out);
        self.cloned.check(city, plate, read, recent, |r| read_sighting(city, topic, r), out);
        let confirmed = self.pending.take_confirmed(&plate, |o| self.cameras.confirming(o, std::slice::from_ref(read)).is_some());
        for o in confirmed {
            let source = source_ref(&self.plate_reads_topic, u32::from(read.partition), read.offset);
            out.violations.extend(self.cameras.ticket(city, &o, class, read, source));
        }
    }

    /// A trusted read at a gantry, of any plate, before `on_read` if this instance
    /// owns the plate: what every instance learns from every read (see `ownership`).
    /// The one-character search of camera offences looks through the reads of all
    /// plates, and a tag read with two plates casts doubt on both. A tag read twice
    /// in one pass goes into the gantry log once (`GantryLog::record`), as the
    /// matcher counts it; for the tag's plates the repeat changes nothing.
    pub fn observe_read(&mut self, plate: Plate, class: VehicleClass, read: &Read) {
        self.gantry_log.record(plate, class, *read);
        self.zones.observe_tag(plate, read);
    }

    /// A read at a parking gate: a sighting, nothing more.
    pub fn on_gate_read(&mut self, city: &CityModel, plate: Plate, read: &Read, out: &mut Tickets) {
        let topic = &self.plate_reads_topic;
        hotlist(&mut self.hotlists, plate, read.ts_ms, || read_sighting(city, topic, read), out);
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
        let sighting = || Sighting {
            device_id: city.cameras[cam.camera as usize].camera_id.clone(),
            device_ts_ms,
            ts_ms: cam.ts_ms,
            source: source.clone(),
            image_ref: cam.image_ref.clone(),
            value: cam.speed_kmh,
        };
        hotlist(&mut self.hotlists, plate, cam.ts_ms, sighting, out);
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

    /// Forgets what no later event can need: unconfirmed camera offences, old hits
    /// and once-a-day marks of past days.
    pub fn expire(&mut self, city: &CityModel, watermark_ms: i64, out: &mut Tickets) {
        let tz_minutes = city.rules.timezone_offset_minutes;
        // Every read within the search window has arrived once the watermark is a
        // window (and a margin for late ones) past the trigger.
        for mut o in self.pending.take_unsearched(watermark_ms.saturating_sub(FUZZY_WINDOW_MS + 60_000)) {
            o.searched = true;
            match self.cameras.one_character_away(&o, &self.gantry_log).copied() {
                Some((registered, class, read)) => {
                    let camera_reading = o.plate;
                    o.plate = registered;
                    let source = source_ref(&self.plate_reads_topic, u32::from(read.partition), read.offset);
                    if let Some(mut v) = self.cameras.ticket(city, &o, class, &read, source) {
                        v.evidence.summary = format!(
                            "{}; the camera read {camera_reading}: the only plate one character from it at the gantries around the camera within 5 min is {registered}, whose RFID tag is the registration",
                            v.evidence.summary
                        );
                        out.violations.push(v);
                    }
                }
                None => self.pending.add(o),
            }
        }
        self.pending.expire(watermark_ms.saturating_sub(CORROBORATE_MS));
        self.gantry_log.expire(watermark_ms.saturating_sub(FUZZY_WINDOW_MS + CORROBORATE_MS));
        self.hotlists.expire(watermark_ms);
        let today = local_day(watermark_ms, tz_minutes);
        self.zones.expire(watermark_ms, today);
        self.cloned.expire(watermark_ms, today);
    }

    /// Camera offences waiting for their plate's RFID read.
    pub fn pending_offences(&self) -> usize {
        self.pending.len()
    }
}

/// Tickets and possible hits of `plate` seen at `ts_ms`; `sighting` is only
/// built for a plate on a list (nearly every read is of one that is not).
fn hotlist(hotlists: &mut Hotlists, plate: Plate, ts_ms: i64, sighting: impl FnOnce() -> Sighting, out: &mut Tickets) {
    let matches = hotlists.check(plate, ts_ms);
    if matches.is_empty() {
        return;
    }
    let sighting = sighting();
    for m in matches {
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

/// A gantry read as evidence.
fn read_sighting(city: &CityModel, topic: &str, r: &Read) -> Sighting {
    Sighting {
        device_id: city.reader(r.reader).reader_id.clone(),
        device_ts_ms: r.device_ts_ms(),
        ts_ms: r.ts_ms,
        source: source_ref(topic, u32::from(r.partition), r.offset),
        image_ref: None,
        value: None,
    }
}


