//! Buses: every route and direction departs by its timetable; a bus drives its path
//! at the traffic's pace (BRT at its own), dwells at each stop, reports GPS at a fixed
//! interval and passes gantries like any vehicle. True arrivals are recorded per stop.

use crate::Simulator;
use crate::demand::segment_speed_kmh;
use crate::emit::Sighting;
use crate::plates;
use crate::truth::TruthRecord;
use egret_model::city::{RoadClass, point_along};
use egret_model::{CityModel, VehicleClass};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One scheduled departure.
#[derive(Debug, Clone)]
pub struct Departure {
    pub ts_ms: i64,
    pub route: usize,
    pub direction: usize,
    pub trip_id: String,
    pub bus_id: String,
}

/// All departures in the simulated span, in time order.
pub struct BusPlan {
    departures: Vec<Departure>,
    next: usize,
}

impl BusPlan {
    pub fn new(city: &CityModel, from_ms: i64, to_ms: i64) -> Self {
        let tz_ms = i64::from(city.rules.timezone_offset_minutes) * 60_000;
        let first_day = (from_ms + tz_ms).div_euclid(86_400_000);
        let last_day = (to_ms + tz_ms).div_euclid(86_400_000);
        let mut departures = Vec::new();
        for day in first_day..=last_day {
            let midnight = day * 86_400_000 - tz_ms;
            for (r, route) in city.routes.iter().enumerate() {
                let t = &route.timetable;
                for (d, dir) in route.directions.iter().enumerate() {
                    for (k, minute) in t.departure_minutes().into_iter().enumerate() {
                        let ts_ms = midnight + i64::from(minute) * 60_000;
                        if (from_ms..to_ms).contains(&ts_ms) {
                            departures.push(Departure {
                                ts_ms,
                                route: r,
                                direction: d,
                                trip_id: route.trip_id(dir.direction_id, minute),
                                bus_id: format!("{}-B{:04}", route.route_id.chars().take(2).collect::<String>(), r * 400 + d * 200 + k % 200),
                            });
                        }
                    }
                }
            }
        }
        departures.sort_by(|a, b| (a.ts_ms, &a.trip_id).cmp(&(b.ts_ms, &b.trip_id)));
        BusPlan { departures, next: 0 }
    }

    pub fn departures(&self) -> &[Departure] {
        &self.departures
    }

    /// The first departure of a route and direction at or after `from_ms`.
    fn find(&self, route: usize, direction: usize, from_ms: i64) -> Option<usize> {
        self.departures.iter().position(|d| d.route == route && d.direction == direction && d.ts_ms >= from_ms)
    }

    /// Holds a departure back until one minute before the next one on its route and
    /// direction: the two buses then run bunched.
    pub fn bunch(&mut self, route: usize, direction: usize, from_ms: i64) {
        let Some(i) = self.find(route, direction, from_ms) else { return };
        let Some(next) = self.find(route, direction, self.departures[i].ts_ms + 1) else { return };
        self.departures[i].ts_ms = self.departures[next].ts_ms - 60_000;
        self.departures.sort_by(|a, b| (a.ts_ms, &a.trip_id).cmp(&(b.ts_ms, &b.trip_id)));
    }

    /// Removes a departure (the trip never runs) and returns it.
    pub fn cancel(&mut self, route: usize, direction: usize, from_ms: i64) -> Option<Departure> {
        let i = self.find(route, direction, from_ms)?;
        Some(self.departures.remove(i))
    }
}

/// A bus keeps its plate and tag: derived from its id, not from the traffic stream.
pub fn bus_plate(bus_id: &str) -> (egret_model::Plate, String) {
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(egret_model::decode::tag_fingerprint(bus_id)));
    (plates::random_plate(&mut rng), plates::random_tag(&mut rng))
}

/// Runs every trip departing within this step.
pub fn depart_due(sim: &mut Simulator, t: i64) {
    while let Some(dep) = sim.bus_plan.departures.get(sim.bus_plan.next).filter(|d| d.ts_ms < t + 1_000).cloned() {
        sim.bus_plan.next += 1;
        run_trip(sim, &dep);
    }
}

fn run_trip(sim: &mut Simulator, dep: &Departure) {
    let city = sim.city.clone();
    let tz = city.rules.timezone_offset_minutes;
    let route = &city.routes[dep.route];
    let dir = &route.directions[dep.direction];
    let (plate, tag) = bus_plate(&dep.bus_id);
    // Piecewise-linear motion: (time, distance along the path) keyframes.
    let mut frames: Vec<(i64, f64)> = vec![(dep.ts_ms, 0.0)];
    let mut t = dep.ts_ms;
    let mut base = 0.0;
    let mut bounds = Vec::with_capacity(dir.segments.len());
    for seg_id in &dir.segments {
        let Some(s) = city.segment_idx(seg_id) else { return };
        let seg = city.segment(s);
        if bounds.is_empty() {
            read(sim, &seg.from_reader_id, plate, &tag, t);
        }
        let pace = if seg.road_class == RoadClass::Brt { 0.9 } else { 0.8 };
        let mps = segment_speed_kmh(seg, s.0, t, tz) * pace / 3.6;
        let mut at = 0.0;
        for stop in dir.stops.iter().filter(|st| &st.segment_id == seg_id) {
            let off = f64::from(stop.offset_m);
            t += ((off - at).max(0.0) / mps * 1000.0).round() as i64;
            at = off.max(at);
            frames.push((t, base + at));
            sim.emitter.truth(
                t,
                TruthRecord::BusArrival {
                    bus_id: dep.bus_id.clone(),
                    route_id: route.route_id.clone(),
                    trip_id: dep.trip_id.clone(),
                    stop_id: stop.stop_id.clone(),
                    ts_ms: t,
                },
            );
            t += sim.rng.random_range(20_000..40_000);
            frames.push((t, base + at));
        }
        t += ((f64::from(seg.length_m) - at) / mps * 1000.0).round() as i64;
        bounds.push((base, base + f64::from(seg.length_m), s));
        base += f64::from(seg.length_m);
        frames.push((t, base));
        read(sim, &seg.to_reader_id, plate, &tag, t);
    }
    let end = t;
    let mut ping = dep.ts_ms;
    while ping <= end {
        let (d, kmh) = position(&frames, ping);
        let Some(&(seg_start, _, s)) = bounds.iter().find(|(_, end, _)| d <= *end).or(bounds.last()) else { return };
        let seg = city.segment(s);
        let frac = (d - seg_start) / f64::from(seg.length_m);
        let pos = point_along(&seg.geometry, frac);
        sim.emitter.bus_gps(&dep.bus_id, &route.route_id, &dep.trip_id, pos, kmh, ping);
        ping += sim.config.gps_every_ms;
    }
}

/// Distance along the path and speed at an instant, from the keyframes.
fn position(frames: &[(i64, f64)], t: i64) -> (f64, f64) {
    let i = frames.partition_point(|(ft, _)| *ft <= t);
    match (frames.get(i.wrapping_sub(1)), frames.get(i)) {
        (Some(&(t0, d0)), Some(&(t1, d1))) if t1 > t0 => {
            let v = (d1 - d0) / ((t1 - t0) as f64 / 1000.0);
            (d0 + v * ((t - t0) as f64 / 1000.0), v * 3.6)
        }
        (Some(&(_, d)), _) | (None, Some(&(_, d))) => (d, 0.0),
        (None, None) => (0.0, 0.0),
    }
}

fn read(sim: &mut Simulator, reader_id: &str, plate: egret_model::Plate, tag: &str, ts_ms: i64) {
    sim.emitter.sighting(ts_ms, Sighting::Read { reader_id, plate, tag_id: tag, class: VehicleClass::Bus });
    sim.emitter.truth(ts_ms, TruthRecord::Passage { plate: plate.to_string(), reader_id: reader_id.to_owned(), ts_ms });
}
