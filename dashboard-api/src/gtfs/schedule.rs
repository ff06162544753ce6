//! The timetable the GTFS feeds share, derived once from the city model: for every
//! route direction its stops in order with their `stop_sequence`, distance along
//! the route and scheduled times after departure, and its shape; and an index from
//! trip id to the direction and departure minute it names.
//!
//! The static zip is written from this and the realtime feeds look their trips and
//! stop sequences up in it, so the two feeds cannot disagree on an id or a
//! sequence. Trip ids come from `Route::trip_id` over `Timetable::departure_minutes`,
//! exactly as the simulator's buses report them and the pipeline passes them on.
//!
//! Scheduled times are the run at the buses' pace on free-flowing roads (the
//! simulator's 0.8 of free-flow speed, 0.9 on BRT) plus a dwell at every stop:
//! approximate, which `stop_times.txt` says with `timepoint = 0`.

use egret_model::CityModel;
use egret_model::city::{RoadClass, haversine_m};
use std::collections::HashMap;

/// Scheduled standing time at a stop, the predictor's dwell.
pub const DWELL_S: u32 = 30;

/// One stop of a direction, in order.
#[derive(Debug, Clone)]
pub struct StopPlan {
    pub stop_id: String,
    /// 1-based position in the direction, as in `stop_times.txt`.
    pub sequence: u32,
    /// Distance along the route in the city data's surveyed metres.
    pub distance_m: f64,
    /// Scheduled arrival and departure, seconds after the trip's departure minute.
    pub arrival_s: u32,
    pub departure_s: u32,
}

/// One direction of one route: its stops and its shape.
#[derive(Debug, Clone)]
pub struct DirectionPlan {
    /// Indices into `CityModel::routes` and that route's `directions`.
    pub route: usize,
    pub direction: usize,
    pub route_id: String,
    pub direction_id: u8,
    pub shape_id: String,
    pub stops: Vec<StopPlan>,
    /// `([lon, lat], distance along the route in surveyed metres)`.
    pub shape: Vec<([f64; 2], f64)>,
}

impl DirectionPlan {
    pub fn stop(&self, stop_id: &str) -> Option<&StopPlan> {
        self.stops.iter().find(|s| s.stop_id == stop_id)
    }

    /// The first stop further along than `distance_m`: where a bus there goes next.
    pub fn next_stop_after(&self, distance_m: f64) -> Option<&StopPlan> {
        self.stops.iter().find(|s| s.distance_m > distance_m)
    }
}

/// A scheduled trip: its direction (index into `Schedule::directions`) and the
/// local minute of the day it departs.
#[derive(Debug, Clone, Copy)]
pub struct TripRef {
    pub plan: usize,
    pub minute: u32,
}

#[derive(Debug)]
pub struct Schedule {
    pub tz_offset_minutes: i32,
    pub directions: Vec<DirectionPlan>,
    trips: HashMap<String, TripRef>,
}

impl Schedule {
    pub fn new(city: &CityModel) -> Self {
        let mut directions = Vec::new();
        let mut trips = HashMap::new();
        for (r, route) in city.routes.iter().enumerate() {
            let minutes = route.timetable.departure_minutes();
            for (d, dir) in route.directions.iter().enumerate() {
                let Some(plan) = plan_direction(city, r, d) else { continue };
                for &minute in &minutes {
                    trips.insert(route.trip_id(dir.direction_id, minute), TripRef { plan: directions.len(), minute });
                }
                directions.push(plan);
            }
        }
        Schedule { tz_offset_minutes: city.rules.timezone_offset_minutes, directions, trips }
    }

    /// The scheduled trip an id names, if the timetable has it.
    pub fn trip(&self, trip_id: &str) -> Option<(TripRef, &DirectionPlan)> {
        let t = *self.trips.get(trip_id)?;
        Some((t, &self.directions[t.plan]))
    }

    /// Every scheduled trip id with its reference, sorted by id (for a stable file).
    pub fn trips_sorted(&self) -> Vec<(&str, TripRef)> {
        let mut all: Vec<(&str, TripRef)> = self.trips.iter().map(|(id, t)| (id.as_str(), *t)).collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }

    pub fn direction(&self, route_id: &str, direction_id: u8) -> Option<&DirectionPlan> {
        self.directions.iter().find(|p| p.route_id == route_id && p.direction_id == direction_id)
    }

    /// The local service day (days since the epoch) of the run of a trip departing
    /// at `minute` that was seen at `ts_ms`: today's, unless that departure is still
    /// hours ahead, when the bus is on yesterday's run past midnight.
    pub fn service_day(&self, minute: u32, ts_ms: i64) -> i64 {
        let tz_ms = i64::from(self.tz_offset_minutes) * 60_000;
        let day = (ts_ms + tz_ms).div_euclid(86_400_000);
        let departure_ms = day * 86_400_000 - tz_ms + i64::from(minute) * 60_000;
        if departure_ms > ts_ms + 2 * 3_600_000 { day - 1 } else { day }
    }

    /// The epoch milliseconds of local midnight starting a service day.
    pub fn midnight_ms(&self, day: i64) -> i64 {
        day * 86_400_000 - i64::from(self.tz_offset_minutes) * 60_000
    }
}

/// The seconds a bus needs from one distance along a direction to another, at its
/// pace on free-flowing roads.
fn run_seconds(city: &CityModel, starts: &[f64], segments: &[egret_model::SegmentIdx], from_m: f64, to_m: f64) -> f64 {
    let mut secs = 0.0;
    for (i, &s) in segments.iter().enumerate() {
        let overlap = starts[i + 1].min(to_m) - starts[i].max(from_m);
        if overlap > 0.0 {
            let seg = city.segment(s);
            let pace = if seg.road_class == RoadClass::Brt { 0.9 } else { 0.8 };
            secs += overlap / (seg.free_flow_kmh * pace / 3.6).max(1.0);
        }
    }
    secs
}

fn plan_direction(city: &CityModel, r: usize, d: usize) -> Option<DirectionPlan> {
    let route = &city.routes[r];
    let dir = &route.directions[d];
    let segments: Vec<_> = dir.segments.iter().map(|s| city.segment_idx(s)).collect::<Option<_>>()?;
    if segments.is_empty() || dir.stops.is_empty() {
        return None;
    }
    // Where each segment starts along the route, in surveyed metres (the pipeline's
    // `RoutePath` measures the same way, so distances agree with `distance_m`).
    let mut starts = vec![0.0];
    let mut shape: Vec<([f64; 2], f64)> = Vec::new();
    for &s in &segments {
        let seg = city.segment(s);
        let base = starts.last().copied().unwrap_or(0.0);
        let drawn: f64 = seg.geometry.windows(2).map(|w| haversine_m(w[0], w[1])).sum();
        let scale = if drawn > 0.0 { f64::from(seg.length_m) / drawn } else { 0.0 };
        let mut along = base;
        for (k, p) in seg.geometry.iter().enumerate() {
            if k > 0 {
                along += haversine_m(seg.geometry[k - 1], *p) * scale;
            }
            // Consecutive segments meet at a gantry: its point is drawn once, and a
            // point that does not move along the route adds nothing to the shape.
            if shape.last().is_none_or(|(q, dist)| along > *dist + 0.05 && (q[0] != p[0] || q[1] != p[1])) {
                shape.push((*p, along));
            }
        }
        starts.push(base + f64::from(seg.length_m));
    }
    let mut stops = Vec::with_capacity(dir.stops.len());
    let (mut clock, mut at_m) = (0.0_f64, 0.0_f64);
    for (k, st) in dir.stops.iter().enumerate() {
        let i = dir.segments.iter().position(|s| *s == st.segment_id).unwrap_or(0);
        // Stops are in route order; one drawn before the last is held there.
        let distance_m = (starts[i] + f64::from(st.offset_m)).max(at_m);
        clock += run_seconds(city, &starts, &segments, at_m, distance_m);
        let arrival_s = clock.round() as u32;
        let last = k + 1 == dir.stops.len();
        let departure_s = if k == 0 || last { arrival_s } else { arrival_s + DWELL_S };
        if !last && k > 0 {
            clock += f64::from(DWELL_S);
        }
        stops.push(StopPlan { stop_id: st.stop_id.clone(), sequence: k as u32 + 1, distance_m, arrival_s, departure_s });
        at_m = distance_m;
    }
    Some(DirectionPlan {
        route: r,
        direction: d,
        route_id: route.route_id.clone(),
        direction_id: dir.direction_id,
        shape_id: format!("{}-{}", route.route_id, dir.direction_id),
        stops,
        shape,
    })
}

/// A GTFS time of day: `H:MM:SS` with hours past 24 for a service day's trips that
/// run after midnight.
pub fn gtfs_time(seconds: u32) -> String {
    format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// `YYYYMMDD` of a day number (days since 1970-01-01), by the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
pub fn gtfs_date(day: i64) -> String {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn city() -> CityModel {
        CityModel::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data")).expect("city")
    }

    #[test]
    fn dates_and_times_read_as_gtfs_wants() {
        assert_eq!(gtfs_date(0), "19700101");
        assert_eq!(gtfs_date(20_787), "20261130");
        assert_eq!(gtfs_date(11_016), "20000229");
        assert_eq!(gtfs_time(25 * 3600 + 61), "25:01:01");
        assert_eq!(gtfs_time(6 * 3600), "06:00:00");
    }

    #[test]
    fn every_trip_the_buses_report_is_scheduled_with_increasing_times() {
        let city = city();
        let schedule = Schedule::new(&city);
        for route in &city.routes {
            for dir in &route.directions {
                for minute in route.timetable.departure_minutes() {
                    let (t, plan) = schedule.trip(&route.trip_id(dir.direction_id, minute)).expect("scheduled");
                    assert_eq!((t.minute, plan.route_id.as_str(), plan.direction_id), (minute, route.route_id.as_str(), dir.direction_id));
                }
            }
        }
        for plan in &schedule.directions {
            for w in plan.stops.windows(2) {
                assert!(w[0].departure_s <= w[1].arrival_s && w[0].distance_m <= w[1].distance_m, "{} {:?}", plan.shape_id, w);
            }
            assert!(plan.shape.windows(2).all(|w| w[0].1 < w[1].1), "{} shape distances", plan.shape_id);
            let end = plan.shape.last().map_or(0.0, |p| p.1);
            assert!(plan.stops.iter().all(|s| s.distance_m <= end + 0.5), "{} stops beyond the shape", plan.shape_id);
        }
    }

    #[test]
    fn a_run_past_midnight_belongs_to_the_day_it_started() {
        let schedule = Schedule::new(&city());
        let day = 20_787; // 2026-11-30, local
        let at = |h: i64, m: i64| schedule.midnight_ms(day) + (h * 60 + m) * 60_000;
        assert_eq!(schedule.service_day(23 * 60 + 50, at(24, 10)), day);
        assert_eq!(schedule.service_day(6 * 60, at(5, 59)), day);
        assert_eq!(schedule.service_day(6 * 60, at(7, 30)), day);
    }
}
