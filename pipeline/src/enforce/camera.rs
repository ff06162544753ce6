//! Camera offences: point speed, red light and bus lane. A camera reads the plate
//! optically and misreads some; a ticket to the wrong car is the worst error, so a
//! camera offence is issued only once the same plate's RFID tag was read at a gantry
//! near the camera (its segment's ends, or up to two segments before or after, since
//! those gantries miss some vehicles too) around the same time. Until then it waits
//! (bounded, and dropped when the watermark leaves it unconfirmed). The RFID read
//! also tells the registered class, which decides who may use a bus lane.
//!
//! A camera misreads about one plate in a hundred, by one character. When no read
//! of the camera's plate turns up, the gantries around the camera are searched for
//! plates one character away from it within five minutes: if there is exactly one,
//! that vehicle's tag is what the camera saw, and the ticket goes to its registered
//! plate, with both readings in the evidence. Two or more candidates: no ticket.

use super::violation::{Evidence, Sighting, Violation, ViolationKind, violation_id};
use crate::matcher::Read;
use crate::sweep::Horizon;
use egret_model::city::parse_hours;
use egret_model::time::{HourRange, local_minute_of_day};
use egret_model::{CameraKind, CityModel, FastMap, Plate, ReaderIdx, VehicleClass};

/// An RFID read this close in time at either end of the camera's segment confirms
/// the camera's plate.
pub const CORROBORATE_MS: i64 = 15 * 60_000;
/// Camera offences waiting for confirmation, per plate.
const MAX_PENDING_PER_PLATE: usize = 8;
/// How far either side of a camera trigger a one-character neighbour is looked for.
pub const FUZZY_WINDOW_MS: i64 = 5 * 60_000;
/// Reads kept per gantry for that search.
const GANTRY_LOG_KEPT: usize = 512;
/// How many of a gantry's latest reads are searched for the same pass.
const SAME_PASS_LOOKBACK: usize = 32;

/// A camera trigger that would be an offence, waiting for its plate to be confirmed.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct CameraOffence {
    pub plate: Plate,
    pub camera: u32,
    pub kind: ViolationKind,
    pub ts_ms: i64,
    pub device_ts_ms: i64,
    pub measured: f64,
    pub limit: f64,
    pub image_ref: Option<String>,
    pub source: String,
    /// Set once the one-character search has run (it runs once).
    pub searched: bool,
}

/// Gantries this many segments before or after a camera's segment can confirm its
/// plate (the gantries at its ends may have missed the vehicle).
const CONFIRM_HOPS: usize = 2;

/// Per camera: the gantries that can confirm its plate and its bus-lane rule.
#[derive(Default)]
pub struct CameraRules {
    /// The gantries at the ends of the camera's segment and up to `CONFIRM_HOPS`
    /// segments before and after it.
    confirmers: Vec<Vec<ReaderIdx>>,
    bus_lane: Vec<Option<(usize, Vec<HourRange>)>>,
}

impl CameraRules {
    pub fn new(city: &CityModel) -> Self {
        let mut incoming: Vec<Vec<ReaderIdx>> = vec![Vec::new(); city.readers.len()];
        for i in 0..city.segments.len() {
            let s = egret_model::SegmentIdx(i as u32);
            incoming[city.segment_to(s).0 as usize].push(city.segment_from(s));
        }
        let confirmers = city
            .cameras
            .iter()
            .map(|c| {
                let s = city.segment_idx(&c.segment_id).unwrap_or(egret_model::SegmentIdx(0));
                let mut found = vec![city.segment_from(s), city.segment_to(s)];
                let (mut back, mut ahead) = (vec![city.segment_from(s)], vec![city.segment_to(s)]);
                for _ in 0..CONFIRM_HOPS {
                    back = back.iter().flat_map(|r| incoming[r.0 as usize].iter().copied()).collect();
                    ahead = ahead.iter().flat_map(|r| city.outgoing(*r).iter().map(|s| city.segment_to(*s))).collect();
                    found.extend(back.iter().chain(&ahead));
                }
                found.sort_unstable();
                found.dedup();
                found
            })
            .collect();
        let lanes = &city.rules.bus_lanes;
        let bus_lane = city
            .cameras
            .iter()
            .map(|c| {
                let lane = lanes.iter().position(|l| Some(&l.bus_lane_id) == c.bus_lane_id.as_ref() || l.segments.contains(&c.segment_id))?;
                Some((lane, parse_hours(&lanes[lane].rule_id, &lanes[lane].hours).unwrap_or_default()))
            })
            .collect();
        CameraRules { confirmers, bus_lane }
    }

    /// The offence a camera trigger shows, before its plate is confirmed.
    #[allow(clippy::too_many_arguments)]
    pub fn offence(
        &self,
        city: &CityModel,
        camera: u32,
        kind: CameraKind,
        plate: Plate,
        ts_ms: i64,
        device_ts_ms: i64,
        speed_kmh: Option<f64>,
        red_elapsed_ms: Option<i64>,
        image_ref: Option<&str>,
        source: String,
    ) -> Option<CameraOffence> {
        let cam = &city.cameras[camera as usize];
        let rules = &city.rules;
        let (kind, measured, limit) = match kind {
            CameraKind::Speed => {
                let segment = city.segment_idx(&cam.segment_id).map(|s| city.segment(s).speed_limit_kmh)?;
                let limit_kmh = cam.speed_limit_kmh.unwrap_or(segment);
                let speed = speed_kmh?;
                rules.point_speed.exceeded_by_speed(limit_kmh, speed).then_some((ViolationKind::PointSpeed, speed, f64::from(limit_kmh)))?
            }
            CameraKind::RedLight => {
                let elapsed = red_elapsed_ms?;
                let grace = rules.red_light.grace_ms;
                (elapsed > grace).then_some((ViolationKind::RedLight, elapsed as f64, grace as f64))?
            }
            CameraKind::BusLane => {
                let (_, hours) = self.bus_lane[camera as usize].as_ref()?;
                let minute = local_minute_of_day(ts_ms, rules.timezone_offset_minutes);
                hours.iter().any(|h| h.contains(minute)).then_some((ViolationKind::BusLane, 0.0, 0.0))?
            }
            CameraKind::Anpr | CameraKind::Gate => return None,
        };
        Some(CameraOffence { plate, camera, kind, ts_ms, device_ts_ms, measured, limit, image_ref: image_ref.map(str::to_owned), source, searched: false })
    }

    /// The read among `reads` that confirms the offence's plate, if any.
    pub fn confirming<'r>(&self, offence: &CameraOffence, reads: &'r [Read]) -> Option<&'r Read> {
        let confirmers = &self.confirmers[offence.camera as usize];
        reads.iter().find(|r| confirmers.contains(&r.reader) && (r.ts_ms - offence.ts_ms).abs() <= CORROBORATE_MS)
    }

    /// The one vehicle read near the camera, around its trigger, whose plate is one
    /// character from the camera's reading; `None` when there is none or several.
    pub fn one_character_away<'l>(&self, o: &CameraOffence, log: &'l GantryLog) -> Option<&'l (Plate, VehicleClass, Read)> {
        let mut found: Option<&(Plate, VehicleClass, Read)> = None;
        for reader in &self.confirmers[o.camera as usize] {
            for entry in log.around(*reader, o.ts_ms, FUZZY_WINDOW_MS).filter(|(p, _, _)| p.one_character_from(&o.plate)) {
                match found {
                    Some((p, _, _)) if *p != entry.0 => return None,
                    _ => found = found.or(Some(entry)),
                }
            }
        }
        found
    }

    /// The ticket for a confirmed offence; `None` when the vehicle's class may do it
    /// (a bus, school bus or taxi in a bus lane).
    pub fn ticket(&self, city: &CityModel, o: &CameraOffence, class: VehicleClass, read: &Read, read_source: String) -> Option<Violation> {
        let cam = &city.cameras[o.camera as usize];
        let rules = &city.rules;
        let (rule_id, rule_version, summary, threshold) = match o.kind {
            ViolationKind::PointSpeed => {
                let threshold = rules.point_speed.threshold_kmh(o.limit);
                let summary = format!(
                    "speed camera {} measured {:.1} km/h; limit {} km/h + {}% tolerance = {:.1} km/h",
                    cam.camera_id, o.measured, o.limit, rules.point_speed.tolerance_pct, threshold
                );
                (&rules.point_speed.rule_id, rules.point_speed.rule_version, summary, Some(threshold))
            }
            ViolationKind::RedLight => {
                let summary = format!("red-light camera {} triggered {} ms into red; grace {} ms", cam.camera_id, o.measured, rules.red_light.grace_ms);
                (&rules.red_light.rule_id, rules.red_light.rule_version, summary, Some(o.limit))
            }
            ViolationKind::BusLane => {
                let (lane, _) = self.bus_lane[o.camera as usize].as_ref()?;
                let lane = &rules.bus_lanes[*lane];
                if lane.allowed_classes.contains(&class) {
                    return None;
                }
                let summary = format!("{} ({}) in bus lane {} within its hours, seen by {}", o.plate, class.as_str(), lane.bus_lane_id, cam.camera_id);
                (&lane.rule_id, lane.rule_version, summary, None)
            }
            _ => return None,
        };
        let camera_sighting = Sighting {
            device_id: cam.camera_id.clone(),
            device_ts_ms: o.device_ts_ms,
            ts_ms: o.ts_ms,
            source: o.source.clone(),
            image_ref: o.image_ref.clone(),
            value: (o.kind != ViolationKind::BusLane).then_some(o.measured),
        };
        let rfid = Sighting {
            device_id: city.reader(read.reader).reader_id.clone(),
            device_ts_ms: read.device_ts_ms(),
            ts_ms: read.ts_ms,
            source: read_source,
            image_ref: None,
            value: None,
        };
        let plate = o.plate.to_string();
        Some(Violation {
            violation_id: violation_id(o.kind, &plate, rule_id, &format!("{}@{}", cam.camera_id, o.device_ts_ms)),
            kind: o.kind,
            plate,
            ts_ms: o.ts_ms,
            location: cam.camera_id.clone(),
            measured: o.measured,
            limit: o.limit,
            rule_id: rule_id.clone(),
            rule_version,
            evidence: Evidence {
                summary: format!("{summary}; plate confirmed by its RFID tag at {}", rfid.device_id),
                sightings: vec![camera_sighting, rfid],
                vehicle_class: Some(class.as_str().to_owned()),
                threshold,
                ..Evidence::default()
            },
        })
    }
}

/// Recent reads per gantry, for the one-character search.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct GantryLog {
    reads: Vec<std::collections::VecDeque<(Plate, VehicleClass, Read)>>,
    /// Reads older than this are forgotten (swept once a minute, see `sweep`).
    #[serde(default)]
    horizon: Horizon,
}

impl GantryLog {
    pub fn new(readers: usize) -> Self {
        GantryLog { reads: vec![std::collections::VecDeque::new(); readers], horizon: Horizon::default() }
    }

    pub fn record(&mut self, plate: Plate, class: VehicleClass, read: Read) {
        let Some(log) = self.reads.get_mut(read.reader.0 as usize) else { return };
        // Full: the oldest read goes. Reads the horizon has forgotten but no sweep has
        // removed yet are nearly always at the front, so they go first. Partitions can
        // drift apart by more than the allowed lateness, so now and then a remembered
        // read goes before a forgotten one, but it is then about 20 minutes old. The
        // one-character search never looks that far back: it looks ±5 minutes around
        // an offence at least 6 minutes behind the watermark.
        // A tag read twice in one pass is one sighting, as the matcher counts it: the
        // repeat would only push out older reads (it follows within a few reads).
        // The tag is compared first: one integer, and it tells vehicles apart.
        let same_pass = |(p, _, r): &(Plate, VehicleClass, Read)| r.tag == read.tag && *p == plate && (r.ts_ms - read.ts_ms).abs() < crate::matcher::SAME_PASSAGE_MS;
        if log.iter().rev().take(SAME_PASS_LOOKBACK).any(same_pass) {
            return;
        }
        if log.len() == GANTRY_LOG_KEPT {
            log.pop_front();
        }
        log.push_back((plate, class, read));
    }

    fn around(&self, reader: ReaderIdx, ts_ms: i64, window_ms: i64) -> impl Iterator<Item = &(Plate, VehicleClass, Read)> {
        let horizon = self.horizon;
        self.reads.get(reader.0 as usize).into_iter().flatten().filter(move |(_, _, r)| horizon.keeps(r.ts_ms) && (r.ts_ms - ts_ms).abs() <= window_ms)
    }

    /// Forgets reads older than `horizon_ms`.
    pub fn expire(&mut self, horizon_ms: i64) {
        if self.horizon.advance(horizon_ms) {
            let horizon = self.horizon;
            for log in &mut self.reads {
                log.retain(|(_, _, r)| horizon.keeps(r.ts_ms));
            }
        }
    }
}

/// Camera offences waiting for an RFID read of their plate.
#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
pub struct Pending {
    by_plate: FastMap<Plate, Vec<CameraOffence>>,
    pub unconfirmed: u64,
}

impl Pending {
    /// Keeps the offences of the plates `keep` accepts (see `rescale`).
    pub fn retain_plates(&mut self, keep: &dyn Fn(&Plate) -> bool) {
        self.by_plate.retain(|plate, _| keep(plate));
    }

    /// Takes in another instance's offences (its count of unconfirmed ones is a
    /// running total, dealt out by `rescale::stage1`).
    pub fn absorb(&mut self, other: Pending) {
        self.by_plate.extend(other.by_plate);
    }

    pub fn add(&mut self, o: CameraOffence) {
        let list = self.by_plate.entry(o.plate).or_default();
        if list.len() < MAX_PENDING_PER_PLATE {
            list.push(o);
        } else {
            self.unconfirmed += 1;
        }
    }

    /// Takes the plate's offences that `confirms` accepts.
    pub fn take_confirmed(&mut self, plate: &Plate, mut confirms: impl FnMut(&CameraOffence) -> bool) -> Vec<CameraOffence> {
        let Some(list) = self.by_plate.get_mut(plate) else { return Vec::new() };
        let (done, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|o| confirms(o));
        *list = keep;
        if list.is_empty() {
            self.by_plate.remove(plate);
        }
        done
    }

    /// Takes the offences not yet searched for a one-character neighbour that are
    /// older than `before_ms`.
    pub fn take_unsearched(&mut self, before_ms: i64) -> Vec<CameraOffence> {
        let mut out = Vec::new();
        for list in self.by_plate.values_mut() {
            let (due, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|o| !o.searched && o.ts_ms < before_ms);
            *list = keep;
            out.extend(due);
        }
        self.by_plate.retain(|_, list| !list.is_empty());
        // Deterministic order whatever the map's.
        out.sort_by(|a, b| (a.ts_ms, &a.source).cmp(&(b.ts_ms, &b.source)));
        out
    }

    /// Drops offences no read can confirm any more (older than `horizon_ms`).
    pub fn expire(&mut self, horizon_ms: i64) {
        let mut dropped = 0;
        self.by_plate.retain(|_, list| {
            let before = list.len();
            list.retain(|o| o.ts_ms >= horizon_ms);
            dropped += (before - list.len()) as u64;
            !list.is_empty()
        });
        self.unconfirmed += dropped;
    }

    pub fn len(&self) -> usize {
        self.by_plate.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_plate.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(ts_ms: i64) -> Read {
        Read { reader: ReaderIdx(0), clock_delta_ms: 0, ts_ms, offset: ts_ms as u64, partition: 0, uncertainty_ms: 0, tag: 0 }
    }

    fn found(log: &GantryLog, ts_ms: i64) -> Vec<i64> {
        log.around(ReaderIdx(0), ts_ms, FUZZY_WINDOW_MS).map(|(_, _, r)| r.ts_ms).collect()
    }

    fn record(log: &mut GantryLog, ts_ms: i64) {
        log.record(Plate::parse("闽D12345").expect("plate"), VehicleClass::Car, read(ts_ms));
    }

    #[test]
    fn a_tag_read_twice_in_one_pass_is_logged_once() {
        let mut log = GantryLog::new(1);
        for ts in [10_000, 12_000, 19_999, 20_000] {
            record(&mut log, ts);
        }
        assert_eq!(found(&log, 15_000), [10_000, 20_000], "the repeats within 10 s of a logged read are the same pass");
        log.record(Plate::parse("闽D12346").expect("plate"), VehicleClass::Car, read(20_500));
        assert_eq!(found(&log, 15_000), [10_000, 20_000, 20_500], "another plate is another vehicle");
    }

    #[test]
    fn forgotten_reads_are_never_found_swept_or_not() {
        let mut log = GantryLog::new(1);
        log.expire(0);
        for ts in [10_000, 20_000, 70_000] {
            record(&mut log, ts);
        }
        log.expire(15_000);
        assert_eq!(log.reads[0].len(), 3, "less than a minute after the last sweep: not swept");
        assert_eq!(found(&log, 15_000), [20_000, 70_000]);
        log.expire(61_000);
        assert_eq!(log.reads[0].len(), 1, "swept");
        assert_eq!(found(&log, 15_000), [70_000]);
    }
}
