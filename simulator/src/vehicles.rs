//! Private and commercial vehicles: who they are, where they drive, and what every
//! device on their way sees. A trip is planned whole when it starts; each segment's
//! true speed comes from the congestion field and the driver's own habit.

use crate::Simulator;
use crate::demand::segment_speed_kmh;
use crate::emit::Sighting;
use crate::plates;
use crate::truth::TruthRecord;
use crate::SimConfig;
use egret_model::city::{SignalPlan, parse_hours};
use egret_model::time::{HourRange, in_hours, local_minute_of_day};
use egret_model::{CameraKind, CityModel, Plate, ReaderIdx, SegmentIdx, VehicleClass};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use crate::watch::{Watch, WantedPlate};
use std::collections::{HashSet, VecDeque};

/// A vehicle on one trip.
#[derive(Debug, Clone)]
pub struct Vehicle {
    pub plate: Plate,
    pub tag_id: String,
    pub class: VehicleClass,
    /// Speed relative to the traffic around it (speeders are well above 1).
    pub driver_factor: f64,
    /// Drives through a red light instead of stopping.
    pub runs_red: bool,
    /// Uses a bus lane when it is not allowed to.
    pub uses_bus_lane: bool,
    /// Drives at this multiple of each segment's limit, whatever the traffic (a
    /// scripted speeder).
    pub limit_factor: Option<f64>,
}

/// Classes that end trips in public car parks.
pub fn parks(class: VehicleClass) -> bool {
    matches!(class, VehicleClass::Car | VehicleClass::Taxi)
}

/// Share of new vehicles that drive on a hotlisted plate, while any is left.
const WANTED_SHARE: f64 = 0.004;
/// Share of new vehicles whose plate will later be cloned by another vehicle.
const CLONED_SHARE: f64 = 0.002;
/// How soon after its original the clone may take to the road.
const CLONE_AFTER_MS: i64 = 2 * 60_000;

/// Hands out vehicles; remembers plates so no two vehicles share one, except the
/// clones it makes on purpose.
/// How long a plate handed out stays unique: a day of simulated time, longer than
/// the pipeline keeps anything per plate, so a plate handed out again after that is
/// a vehicle coming back, not a clone. Remembering every plate ever issued made a
/// long simulation grow without bound (found by `egret soak`: its RSS stepped up
/// by 34 MiB when the set of 1.8 million plates resized).
const PLATE_UNIQUE_MS: i64 = 24 * 3_600_000;

#[derive(Default)]
pub struct Fleet {
    /// Plates that must not be handed out: reserved ones, and those issued lately.
    plates: HashSet<Plate>,
    /// Plates issued, with when, oldest first: forgotten after `PLATE_UNIQUE_MS`.
    issued: VecDeque<(i64, Plate)>,
    /// Hotlisted plates not yet on the road.
    wanted: Vec<Plate>,
    /// Plates that a later vehicle will copy, with when their original appeared.
    to_clone: VecDeque<(Plate, i64)>,
    /// Wanted and cloned plates take to the road from here on (not in the warm-up,
    /// when nobody would see them).
    special_from_ms: i64,
}

impl Fleet {
    /// A fleet with the scenario's hotlists: 40 stolen plates, and 20 with unpaid
    /// fines of which 5 expired the day before and 5 expire halfway through.
    pub fn new(rng: &mut ChaCha8Rng, config: &SimConfig, watch: &mut Watch) -> Self {
        let mut fleet = Fleet { special_from_ms: config.start_ms - 5 * 60_000, ..Fleet::default() };
        for i in 0..60 {
            let plate = fleet.fresh_plate(rng, None);
            let (list, reason, expires_ms) = match i {
                0..40 => ("stolen", "reported stolen", None),
                40..45 => ("unpaid-fines", "unpaid fines (settled)", Some(config.start_ms - 86_400_000)),
                45..50 => ("unpaid-fines", "unpaid fines", Some(config.start_ms + config.duration_ms / 2)),
                _ => ("unpaid-fines", "unpaid fines", None),
            };
            watch.add_wanted(plate, WantedPlate { list: list.into(), plate: plate.to_string(), reason: reason.into(), expires_ms });
            fleet.wanted.push(plate);
        }
        fleet
    }

    /// Keeps a plate (a bus's) from ever being handed to another vehicle.
    pub fn reserve(&mut self, plate: Plate) {
        self.plates.insert(plate);
    }

    /// A plate no vehicle has lately had: kept for good without `issued_ms` (the
    /// hotlisted ones), else remembered for `PLATE_UNIQUE_MS` from then.
    fn fresh_plate(&mut self, rng: &mut ChaCha8Rng, issued_ms: Option<i64>) -> Plate {
        if let Some(now_ms) = issued_ms {
            while let Some(&(at, old)) = self.issued.front()
                && at < now_ms.saturating_sub(PLATE_UNIQUE_MS)
            {
                self.issued.pop_front();
                self.plates.remove(&old);
            }
        }
        let mut plate = plates::random_plate(rng);
        while !self.plates.insert(plate) {
            plate = plates::random_plate(rng);
        }
        if let Some(now_ms) = issued_ms {
            self.issued.push_back((now_ms, plate));
        }
        plate
    }

    pub fn new_vehicle(&mut self, rng: &mut ChaCha8Rng, watch: &mut Watch, now_ms: i64) -> Vehicle {
        let special = now_ms >= self.special_from_ms;
        let clone_due = special && self.to_clone.front().is_some_and(|(_, since)| now_ms - since >= CLONE_AFTER_MS);
        let plate = if special && !self.wanted.is_empty() && rng.random_bool(WANTED_SHARE) {
            self.wanted.pop()
        } else if clone_due && rng.random_bool(0.05) {
            self.to_clone.pop_front().map(|(p, _)| p)
        } else {
            None
        };
        let plate = plate.unwrap_or_else(|| {
            let plate = self.fresh_plate(rng, Some(now_ms));
            if special && rng.random_bool(CLONED_SHARE) {
                self.to_clone.push_back((plate, now_ms));
                watch.watch_clone(plate);
            }
            plate
        });
        let class = plates::random_class(rng);
        let speeder = rng.random_bool(0.03);
        let driver_factor = if speeder { rng.random_range(1.15..1.45) } else { rng.random_range(0.9..1.08) };
        Vehicle {
            plate,
            tag_id: plates::random_tag(rng),
            class,
            driver_factor,
            runs_red: rng.random_bool(0.05),
            uses_bus_lane: class != VehicleClass::Taxi && rng.random_bool(0.04),
            limit_factor: None,
        }
    }
}

/// What applies on a segment, precomputed from the city model and rules.
#[derive(Default)]
struct SegmentRules {
    cameras: Vec<u32>,
    /// (bus lane rule index, hours).
    bus_lane: Option<(usize, Vec<HourRange>)>,
}

/// The road graph as the simulator walks it.
pub struct Network {
    origins: Vec<ReaderIdx>,
    incoming: Vec<Vec<SegmentIdx>>,
    rules: Vec<SegmentRules>,
}

impl Network {
    pub fn new(city: &CityModel) -> Self {
        let mut incoming = vec![Vec::new(); city.readers.len()];
        let mut rules: Vec<SegmentRules> = (0..city.segments.len()).map(|_| SegmentRules::default()).collect();
        for i in 0..city.segments.len() {
            let s = SegmentIdx(i as u32);
            incoming[city.segment_to(s).0 as usize].push(s);
        }
        for (i, c) in city.cameras.iter().enumerate() {
            if let Some(s) = city.segment_idx(&c.segment_id) {
                rules[s.0 as usize].cameras.push(i as u32);
            }
        }
        for (i, b) in city.rules.bus_lanes.iter().enumerate() {
            let hours = parse_hours(&b.rule_id, &b.hours).unwrap_or_default();
            for s in b.segments.iter().filter_map(|s| city.segment_idx(s)) {
                rules[s.0 as usize].bus_lane = Some((i, hours.clone()));
            }
        }
        let origins = (0..city.readers.len() as u32).map(ReaderIdx).filter(|r| !city.outgoing(*r).is_empty()).collect();
        Network { origins, incoming, rules }
    }

    pub fn random_origin(&self, rng: &mut ChaCha8Rng) -> ReaderIdx {
        self.origins[rng.random_range(0..self.origins.len())]
    }

    /// A forward random walk of 2–12 segments that avoids turning straight back.
    pub fn random_walk(&self, city: &CityModel, rng: &mut ChaCha8Rng, from: ReaderIdx) -> Vec<SegmentIdx> {
        let len = rng.random_range(2..=12);
        let mut path: Vec<SegmentIdx> = Vec::with_capacity(len);
        let mut at = from;
        for _ in 0..len {
            let back = path.last().map(|s| city.segment_from(*s));
            let options: Vec<SegmentIdx> = city.outgoing(at).iter().copied().filter(|s| Some(city.segment_to(*s)) != back).collect();
            let options = if options.is_empty() { city.outgoing(at).to_vec() } else { options };
            let Some(next) = options.get(rng.random_range(0..options.len().max(1))).copied() else { break };
            path.push(next);
            at = city.segment_to(next);
        }
        path
    }

    /// A backward random walk ending with `last`: a trip that arrives over `last`.
    pub fn random_walk_to(&self, city: &CityModel, rng: &mut ChaCha8Rng, last: SegmentIdx) -> Vec<SegmentIdx> {
        let len = rng.random_range(1..=10);
        let mut path = vec![last];
        for _ in 0..len {
            let first = path[path.len() - 1];
            let ahead = path.get(path.len().wrapping_sub(2)).map(|s| city.segment_to(*s));
            let into = &self.incoming[city.segment_from(first).0 as usize];
            let options: Vec<SegmentIdx> = into.iter().copied().filter(|s| Some(city.segment_from(*s)) != ahead).collect();
            let Some(prev) = options.get(rng.random_range(0..options.len().max(1))).copied() else { break };
            path.push(prev);
        }
        path.reverse();
        path
    }
}

/// Red phase of a signal plan: `Some(ms since red began)` when `ts_ms` falls in red.
pub fn red_elapsed(plan: &SignalPlan, ts_ms: i64) -> Option<i64> {
    let cycle = i64::from(plan.cycle_s) * 1000;
    let into = (ts_ms - i64::from(plan.offset_s) * 1000).rem_euclid(cycle.max(1));
    (into < i64::from(plan.red_s) * 1000).then_some(into)
}

/// Drives `path` from `start_ms`, emitting every sighting and recording the truth.
/// Returns the instant the vehicle leaves the last segment.
pub fn drive(sim: &mut Simulator, v: &Vehicle, path: &[SegmentIdx], start_ms: i64) -> i64 {
    let (city, network) = (sim.city.clone(), sim.network.clone());
    let tz = city.rules.timezone_offset_minutes;
    let Some(first) = path.first() else { return start_ms };
    let mut t = start_ms;
    read_at(sim, v, &city.segment(*first).from_reader_id, t);
    for &s in path {
        let seg = city.segment(s);
        let kmh = match v.limit_factor {
            Some(f) => f64::from(seg.speed_limit_kmh) * f,
            None => segment_speed_kmh(seg, s.0, t, tz) * v.driver_factor,
        };
        let mps = kmh / 3.6;
        let mut exit = t + (f64::from(seg.length_m) / mps * 1000.0).round() as i64;
        if let Some(incident) = sim.script.incident_on(s) {
            // Held at the crash until it is cleared; the rest of the way at speed.
            let reach = t + ((exit - t) as f64 * incident.at_fraction) as i64;
            exit += incident.passes_at(reach) - reach;
        }
        let rules = &network.rules[s.0 as usize];
        let minute = local_minute_of_day(t, tz);
        let in_bus_lane = rules.bus_lane.as_ref().is_some_and(|(_, h)| h.iter().any(|h| h.contains(minute)))
            && (v.uses_bus_lane || v.class == VehicleClass::Taxi);
        for &c in &rules.cameras {
            let cam = &city.cameras[c as usize];
            let at = t + (f64::from(cam.offset_m) / mps * 1000.0).round() as i64;
            match cam.kind {
                CameraKind::Speed => {
                    let spot = (kmh * (1.0 + 0.03 * sim.rng.random_range(-1.0..1.0)) * 10.0).round() / 10.0;
                    let sighting = Sighting::Camera { camera_id: &cam.camera_id, kind: cam.kind, plate: v.plate, speed_kmh: Some(spot), red_elapsed_ms: None };
                    sim.emitter.sighting(at, sighting);
                    let limit_kmh = cam.speed_limit_kmh.unwrap_or(seg.speed_limit_kmh);
                    let limit = f64::from(limit_kmh);
                    if city.rules.point_speed.exceeded_by_speed(limit_kmh, spot) {
                        let (id, ver) = (city.rules.point_speed.rule_id.clone(), city.rules.point_speed.rule_version);
                        violation(sim, "point_speed", v, at, id, ver, &cam.camera_id, spot, limit);
                    }
                }
                CameraKind::RedLight => {
                    let Some(plan) = cam.signal else { continue };
                    if let Some(elapsed) = red_elapsed(&plan, exit) {
                        if v.runs_red {
                            let sighting = Sighting::Camera { camera_id: &cam.camera_id, kind: cam.kind, plate: v.plate, speed_kmh: None, red_elapsed_ms: Some(elapsed) };
                            sim.emitter.sighting(exit, sighting);
                            if elapsed > city.rules.red_light.grace_ms {
                                let (id, ver) = (city.rules.red_light.rule_id.clone(), city.rules.red_light.rule_version);
                                violation(sim, "red_light", v, exit, id, ver, &cam.camera_id, elapsed as f64, city.rules.red_light.grace_ms as f64);
                            }
                        } else {
                            // A law-abiding driver waits for green; the wait is part of the trip.
                            exit += i64::from(plan.red_s) * 1000 - elapsed;
                        }
                    }
                }
                CameraKind::BusLane if in_bus_lane => {
                    let sighting = Sighting::Camera { camera_id: &cam.camera_id, kind: cam.kind, plate: v.plate, speed_kmh: None, red_elapsed_ms: None };
                    sim.emitter.sighting(at, sighting);
                    if let Some((b, _)) = rules.bus_lane.as_ref() {
                        let lane = &city.rules.bus_lanes[*b];
                        if !lane.allowed_classes.contains(&v.class) {
                            violation(sim, "bus_lane", v, at, lane.rule_id.clone(), lane.rule_version, &cam.camera_id, 0.0, 0.0);
                        }
                    }
                }
                CameraKind::Anpr | CameraKind::Gate => {
                    let sighting = Sighting::Camera { camera_id: &cam.camera_id, kind: cam.kind, plate: v.plate, speed_kmh: None, red_elapsed_ms: None };
                    sim.emitter.sighting(at, sighting);
                }
                CameraKind::BusLane => {}
            }
        }
        let true_kmh = f64::from(seg.length_m) / ((exit - t) as f64 / 1000.0) * 3.6;
        // Only drives wholly inside the scenario: no device saw the others begin.
        if sim.emitter.live(t) {
            let segment_id = seg.segment_id.clone();
            let record = TruthRecord::Traversal { segment_id, plate: v.plate.to_string(), enter_ms: t, exit_ms: exit, speed_kmh: true_kmh };
            sim.emitter.truth(exit, record);
        }
        let limit = f64::from(seg.speed_limit_kmh);
        // A section offence needs both gantries inside the scenario to be seen at all.
        if sim.emitter.live(t) && city.rules.section_speed.exceeded_by_drive(seg.speed_limit_kmh, seg.length_m, exit - t) {
            let (id, ver) = (city.rules.section_speed.rule_id.clone(), city.rules.section_speed.rule_version);
            violation(sim, "section_speed", v, exit, id, ver, &seg.segment_id, true_kmh, limit);
        }
        // Only a segment driven wholly inside the scenario was seen end to end.
        let seen = sim.emitter.live(t) && sim.emitter.live(exit);
        for (i, hours) in city.restrictions_on(s) {
            restricted(sim, v, *i, hours, seen, exit, &seg.segment_id);
        }
        read_at(sim, v, &seg.to_reader_id, exit);
        t = exit;
    }
    t
}

fn read_at(sim: &mut Simulator, v: &Vehicle, reader_id: &str, ts_ms: i64) {
    sim.emitter.sighting(ts_ms, Sighting::Read { reader_id, plate: v.plate, tag_id: &v.tag_id, class: v.class });
    sim.emitter.truth(ts_ms, TruthRecord::Passage { plate: v.plate.to_string(), reader_id: reader_id.to_owned(), ts_ms });
}

/// A zone restriction proven by a zone segment's two gantries (see `zone_truth`
/// for the whole rule, including passes of gantries inside a zone).
fn restricted(sim: &mut Simulator, v: &Vehicle, i: usize, hours: &[HourRange], seen: bool, ts_ms: i64, location: &str) {
    let city = sim.city.clone();
    let rule = &city.rules.restrictions[i];
    if seen && in_hours(hours, ts_ms, city.rules.timezone_offset_minutes) && rule.classes.contains(&v.class) {
        sim.emitter.zone_offence(i, v.plate, ts_ms, location);
    }
}

#[allow(clippy::too_many_arguments)]
fn violation(sim: &mut Simulator, kind: &str, v: &Vehicle, ts_ms: i64, rule_id: String, rule_version: u32, location: &str, measured: f64, limit: f64) {
    let record = TruthRecord::Violation {
        kind: kind.to_owned(),
        plate: v.plate.to_string(),
        ts_ms,
        rule_id,
        rule_version,
        location: location.to_owned(),
        measured,
        limit,
    };
    sim.emitter.truth(ts_ms, record);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn issued_plates_are_kept_unique_for_a_day_not_forever() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut fleet = Fleet::default();
        let reserved = fleet.fresh_plate(&mut rng, None);
        // Ten plates an hour for a hundred hours.
        for i in 0..1_000 {
            fleet.fresh_plate(&mut rng, Some(i * 360_000));
        }
        // The last day's 241, and the reserved one.
        assert_eq!(fleet.issued.len(), 241);
        assert_eq!(fleet.plates.len(), 242);
        assert!(fleet.plates.contains(&reserved));
    }
}
