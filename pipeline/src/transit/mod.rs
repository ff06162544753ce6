//! Buses, in stage 2 (keyed by route): GPS reports map-matched to their route and
//! direction, stop arrivals from the reports either side of each stop, headways
//! per stop against the timetable (bunching and gaps), trips that never ran, and
//! arrival predictions for the stops ahead from live road speeds. Intercity routes
//! are routes like any other.
//!
//! Arrivals are settled in time order once the watermark has passed them, so a
//! headway is always against the bus that really arrived before, whatever order
//! the reports of different buses came in.

mod path;
pub mod predict;

use egret_model::CityModel;
use egret_model::time::{local_day, local_minute_of_day};
use path::RoutePath;
use predict::Predictor;
use serde::{Deserialize, Serialize};
use egret_model::FastMap;
use std::collections::BTreeMap;

/// Arrivals are settled this long after they happened (a bus reports every 15 s).
const SETTLE_MS: i64 = 20_000;
/// A scheduled trip with no report this long after its departure never ran.
const GHOST_AFTER_MS: i64 = 10 * 60_000;
/// Farther than this beyond its last position in one report is another trip or a glitch.
const MAX_JUMP_M: f64 = 3_000.0;

/// Bunched below this headway (below `BUNCHED_FREQUENT_S` where the timetable runs
/// every 5 minutes or more often); a gap is this much longer than the timetable.
pub const BUNCHED_S: f64 = 120.0;
pub const BUNCHED_FREQUENT_S: f64 = 60.0;
pub const GAP_BEYOND_S: f64 = 300.0;

/// The headway rule of the dispatchers, shared with the evaluation.
pub fn classify(headway_s: f64, scheduled_s: f64) -> &'static str {
    let bunched = if scheduled_s <= 300.0 { BUNCHED_FREQUENT_S } else { BUNCHED_S };
    if headway_s < bunched {
        "bunched"
    } else if headway_s > scheduled_s + GAP_BEYOND_S {
        "gap"
    } else {
        "ok"
    }
}

/// The timetable's headway for a route at an instant, in seconds.
pub fn scheduled_headway_s(city: &CityModel, route: usize, ts_ms: i64) -> f64 {
    let minute = local_minute_of_day(ts_ms, city.rules.timezone_offset_minutes);
    f64::from(city.routes[route].timetable.headway_min_at(minute)) * 60.0
}

/// A bus where it is, and when it will reach the stops ahead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BusStatus {
    pub bus_id: String,
    pub route_id: String,
    pub direction_id: u8,
    pub trip_id: String,
    pub ts_ms: i64,
    pub lat: f64,
    pub lon: f64,
    pub distance_m: f64,
    pub next_stops: Vec<StopEta>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StopEta {
    pub stop_id: String,
    pub predicted_ms: i64,
    /// The bus may come this much earlier or later than predicted.
    pub early_ms: i64,
    pub late_ms: i64,
}

/// What dispatchers are told about a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransitEvent {
    Headway {
        route_id: String,
        direction_id: u8,
        stop_id: String,
        bus_id: String,
        previous_bus_id: String,
        arrival_ms: i64,
        headway_s: f64,
        scheduled_headway_s: f64,
        /// `ok`, `bunched` or `gap`.
        status: String,
    },
    GhostTrip { route_id: String, direction_id: u8, trip_id: String, scheduled_ms: i64 },
}

#[derive(Debug, Default)]
pub struct TransitOutput {
    pub statuses: Vec<BusStatus>,
    pub events: Vec<TransitEvent>,
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Track {
    route: u32,
    direction: usize,
    trip_id: String,
    /// Last report: time, distance along the route, speed (m/s).
    last: (i64, f64, f64),
    next_stop: usize,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
struct Arrival {
    ts_ms: i64,
    bus_id: String,
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct Transit {
    /// From the city model, rebuilt on restore.
    #[serde(skip)]
    paths: Vec<Vec<RoutePath>>,
    tracks: FastMap<String, Track>,
    /// Arrivals not yet settled: (route, direction, stop) → arrivals.
    pending: BTreeMap<(u32, usize, usize), Vec<Arrival>>,
    /// The last settled arrival per stop.
    last_settled: FastMap<(u32, usize, usize), Arrival>,
    predictor: Predictor,
    /// Trip ids reported, with their latest report (ids repeat every day).
    trips_seen: FastMap<String, i64>,
    first_report_ms: Option<i64>,
    newest_report_ms: i64,
    /// Per route, the instant up to which its trips were checked (`ghosts`): per
    /// route, so that routes dealt out from several instances (`rescale`) each go
    /// on from where they were.
    #[serde(default)]
    ghosts_checked_until: Vec<i64>,
    /// What checkpoints of before kept instead: one instant for all routes. Still
    /// written, the earliest of the routes kept, so a build of before reads a
    /// checkpoint of this one (and checks some trips again, none skipped).
    #[serde(rename = "ghost_checked_until", default = "long_ago")]
    ghosts_checked_until_of_all: i64,
    updated: Vec<String>,
    /// Per route, whether this instance keeps it (see `ownership`): another
    /// instance's routes report elsewhere, and their trips are not ghosts here.
    #[serde(skip)]
    owned_routes: Vec<bool>,
}

fn long_ago() -> i64 {
    i64::MIN
}

impl Transit {
    /// After a restore: the parts built from the city model come from `fresh`.
    pub(crate) fn take_city_parts_from(&mut self, fresh: Transit) {
        (self.paths, self.owned_routes) = (fresh.paths, fresh.owned_routes);
        if self.ghosts_checked_until.is_empty() {
            self.ghosts_checked_until = vec![self.ghosts_checked_until_of_all; self.paths.len()];
        }
        self.ghosts_checked_until.resize(self.paths.len(), i64::MIN);
    }

    /// Moves the buses, arrivals and pace of the routes `keys` picks from `from`
    /// (`rescale`). A bus that changed routes may be tracked by two instances, each
    /// on its route: its latest report wins, as it would in one. Trip ids are
    /// copied, not moved: one instance knows every route's (`ghosts` asks only
    /// about its own routes' trips).
    pub(crate) fn take_keys(&mut self, from: &mut Transit, keys: &crate::rescale::Keys) {
        let picked = |route: u32| keys.route(route);
        let moving: Vec<String> = from.updated.iter().filter(|bus| from.tracks.get(*bus).is_some_and(|t| picked(t.route))).cloned().collect();
        from.updated.retain(|bus| !moving.contains(bus));
        self.updated.extend(moving);
        let mut tracks = FastMap::default();
        crate::rescale::move_where(&mut tracks, &mut from.tracks, |(_, t): &(String, Track)| picked(t.route));
        for (bus, track) in tracks {
            match self.tracks.get(&bus) {
                Some(kept) if kept.last.0 >= track.last.0 => {}
                _ => _ = self.tracks.insert(bus, track),
            }
        }
        crate::rescale::move_where(&mut self.pending, &mut from.pending, |((route, _, _), _)| picked(*route));
        crate::rescale::move_where(&mut self.last_settled, &mut from.last_settled, |((route, _, _), _)| picked(*route));
        crate::rescale::move_indexed(&mut self.ghosts_checked_until, &mut from.ghosts_checked_until, |r| picked(r as u32));
        for (trip, seen) in &from.trips_seen {
            let kept = self.trips_seen.entry(trip.clone()).or_insert(*seen);
            *kept = (*kept).max(*seen);
        }
        self.first_report_ms = match (self.first_report_ms, from.first_report_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.newest_report_ms = self.newest_report_ms.max(from.newest_report_ms);
        self.predictor.take_keys(&mut from.predictor, keys);
    }

    /// After dealing: predictions judge unmeasured roads by the live speeds this
    /// instance now keeps.
    pub(crate) fn measure_network(&mut self, live_kmh: &[Option<f64>]) {
        self.predictor.measure_network(live_kmh);
    }

    /// Keep to the routes `owned` picks (by index); all of them until told.
    pub(crate) fn set_owned_routes(&mut self, owned: Vec<bool>) {
        self.owned_routes = owned;
    }

    pub fn new(city: &CityModel) -> Self {
        let paths = (0..city.routes.len() as u32)
            .map(|r| (0..city.routes[r as usize].directions.len()).filter_map(|d| RoutePath::new(city, r, d)).collect())
            .collect();
        Transit {
            paths,
            tracks: FastMap::default(),
            pending: BTreeMap::new(),
            last_settled: FastMap::default(),
            predictor: Predictor::new(city),
            trips_seen: FastMap::default(),
            first_report_ms: None,
            newest_report_ms: i64::MIN,
            ghosts_checked_until: vec![i64::MIN; city.routes.len()],
            ghosts_checked_until_of_all: i64::MIN,
            updated: Vec::new(),
            owned_routes: vec![true; city.routes.len()],
        }
    }

    /// The direction a trip id names (`ROUTE-DIRECTION-HHMM`), if it names one.
    fn direction_of(city: &CityModel, route: u32, trip_id: &str) -> Option<usize> {
        let r = &city.routes[route as usize];
        let rest = trip_id.strip_prefix(r.route_id.as_str())?.strip_prefix('-')?;
        let id: u8 = rest.split('-').next()?.parse().ok()?;
        r.directions.iter().position(|d| d.direction_id == id)
    }

    /// A bus report.
    #[allow(clippy::too_many_arguments)]
    pub fn report(&mut self, city: &CityModel, route: u32, bus_id: &str, trip_id: Option<&str>, lat: f64, lon: f64, speed_kmh: Option<f64>, ts_ms: i64) {
        self.first_report_ms.get_or_insert(ts_ms);
        self.newest_report_ms = self.newest_report_ms.max(ts_ms);
        let trip = trip_id.unwrap_or_default();
        if !trip.is_empty() {
            let seen = self.trips_seen.entry(trip.to_owned()).or_insert(ts_ms);
            *seen = (*seen).max(ts_ms);
        }
        let known = self.tracks.get(bus_id).filter(|t| t.route == route && t.trip_id == trip);
        let direction = match known {
            Some(t) => t.direction,
            None => match Self::direction_of(city, route, trip) {
                Some(d) => d,
                None => return, // A report we cannot place on a direction.
            },
        };
        let Some(path) = self.paths.get(route as usize).and_then(|p| p.iter().find(|p| p.direction == direction)) else { return };
        let speed = speed_kmh.map(|v| v / 3.6);
        match self.tracks.get_mut(bus_id).filter(|t| t.route == route && t.trip_id == trip) {
            Some(track) => {
                let (last_ts, last_d, last_v) = track.last;
                if ts_ms <= last_ts {
                    return; // Out of order: a later report has been placed already.
                }
                let Some(d) = path.locate(lat, lon, (last_d - 100.0).max(0.0), last_d + MAX_JUMP_M) else { return };
                let d = d.max(last_d);
                while let Some(&stop_d) = path.stops.get(track.next_stop) {
                    if stop_d > d {
                        break;
                    }
                    // Reached between the two reports: at the earlier report's speed,
                    // or in proportion when the bus was standing then.
                    let at = if last_v >= 1.0 {
                        last_ts + ((stop_d - last_d) / last_v * 1000.0) as i64
                    } else if d > last_d {
                        last_ts + ((stop_d - last_d) / (d - last_d) * (ts_ms - last_ts) as f64) as i64
                    } else {
                        ts_ms
                    };
                    let key = (route, direction, track.next_stop);
                    self.pending.entry(key).or_default().push(Arrival { ts_ms: at.clamp(last_ts, ts_ms), bus_id: bus_id.to_owned() });
                    track.next_stop += 1;
                }
                let v = speed.unwrap_or((d - last_d) / ((ts_ms - last_ts) as f64 / 1000.0));
                track.last = (ts_ms, d, v);
            }
            None => {
                let Some(d) = path.locate(lat, lon, 0.0, path.length_m()) else { return };
                // Stops already behind the first report were reached before we knew,
                // and so was the one a bus is standing at, unless that is where the
                // trip starts (its first report is its departure).
                let standing = speed.is_some_and(|v| v < 1.0) && d > 1.0;
                let next_stop = path.stops.partition_point(|s| *s < d - 1.0 || (standing && *s < d + 30.0));
                let track = Track { route, direction, trip_id: trip.to_owned(), last: (ts_ms, d, speed.unwrap_or(0.0)), next_stop };
                self.tracks.insert(bus_id.to_owned(), track);
            }
        }
        self.updated.push(bus_id.to_owned());
    }

    /// Settles arrivals and checks trips as of `watermark_ms`; predicts for the buses
    /// reported since the last call, from the segments' live speeds (km/h).
    pub fn advance(&mut self, city: &CityModel, watermark_ms: i64, live_kmh: &[Option<f64>]) -> TransitOutput {
        let mut out = TransitOutput::default();
        self.settle(city, watermark_ms, live_kmh, &mut out);
        self.ghosts(city, watermark_ms, &mut out);
        self.predictor.measure_network(live_kmh);
        let mut updated = std::mem::take(&mut self.updated);
        updated.sort_unstable();
        updated.dedup();
        for bus_id in updated {
            let Some(t) = self.tracks.get(&bus_id) else { continue };
            let Some(path) = self.paths[t.route as usize].iter().find(|p| p.direction == t.direction) else { continue };
            let route = &city.routes[t.route as usize];
            let (ts_ms, d, v) = t.last;
            let standing = v < 1.0 && t.next_stop > 0 && path.stops.get(t.next_stop - 1).is_some_and(|s| (d - s).abs() < 30.0);
            let next_stops = self.predictor.predict(city, path, d, ts_ms, t.next_stop, standing, live_kmh);
            let seg = path.segment_at(d).map(|(i, into)| (city.segment(path.segments[i]), into));
            let (lon, lat) = seg.map_or((0.0, 0.0), |(s, into)| {
                let p = egret_model::city::point_along(&s.geometry, into / f64::from(s.length_m.max(1)));
                (p[0], p[1])
            });
            out.statuses.push(BusStatus {
                bus_id,
                route_id: route.route_id.clone(),
                direction_id: route.directions[t.direction].direction_id,
                trip_id: t.trip_id.clone(),
                ts_ms,
                lat,
                lon,
                distance_m: (d * 10.0).round() / 10.0,
                next_stops,
            });
        }
        // Tracks of buses silent for an hour are done; trip ids a day later are new.
        self.tracks.retain(|_, t| t.last.0 >= watermark_ms.saturating_sub(3_600_000));
        self.trips_seen.retain(|_, seen| *seen >= watermark_ms.saturating_sub(12 * 3_600_000));
        out
    }

    fn settle(&mut self, city: &CityModel, watermark_ms: i64, live_kmh: &[Option<f64>], out: &mut TransitOutput) {
        let due = watermark_ms.saturating_sub(SETTLE_MS);
        for ((route, direction, stop), arrivals) in self.pending.iter_mut() {
            arrivals.sort_by(|a, b| (a.ts_ms, &a.bus_id).cmp(&(b.ts_ms, &b.bus_id)));
            let ready = arrivals.partition_point(|a| a.ts_ms < due);
            for a in arrivals.drain(..ready) {
                let key = (*route, *direction, *stop);
                let r = &city.routes[*route as usize];
                let dir = &r.directions[*direction];
                if let Some(prev) = self.last_settled.get(&key) {
                    let headway_s = (a.ts_ms - prev.ts_ms) as f64 / 1000.0;
                    let scheduled_s = scheduled_headway_s(city, *route as usize, a.ts_ms);
                    out.events.push(TransitEvent::Headway {
                        route_id: r.route_id.clone(),
                        direction_id: dir.direction_id,
                        stop_id: dir.stops[*stop].stop_id.clone(),
                        bus_id: a.bus_id.clone(),
                        previous_bus_id: prev.bus_id.clone(),
                        arrival_ms: a.ts_ms,
                        headway_s,
                        scheduled_headway_s: scheduled_s,
                        status: classify(headway_s, scheduled_s).into(),
                    });
                }
                if let Some(path) = self.paths[*route as usize].iter().find(|p| p.direction == *direction) {
                    self.predictor.arrived(path, *stop, &a.bus_id, a.ts_ms, live_kmh);
                }
                self.last_settled.insert(key, a);
            }
        }
        self.pending.retain(|_, a| !a.is_empty());
    }

    /// Trips scheduled since the first report whose departure is ten minutes past
    /// with no report of them.
    fn ghosts(&mut self, city: &CityModel, watermark_ms: i64, out: &mut TransitOutput) {
        let Some(first) = self.first_report_ms else { return };
        // Nothing is known beyond the newest report (the end of a finite input).
        let to = watermark_ms.min(self.newest_report_ms).saturating_sub(GHOST_AFTER_MS);
        let owned = |r: usize| self.owned_routes.get(r).copied().unwrap_or(false);
        let from_of = |r: usize| self.ghosts_checked_until[r].max(first);
        let Some(from) = (0..city.routes.len()).filter(|r| owned(*r)).map(from_of).min() else { return };
        if to <= from {
            return;
        }
        let tz = city.rules.timezone_offset_minutes;
        for day in local_day(from, tz)..=local_day(to, tz) {
            let midnight = day * 86_400_000 - i64::from(tz) * 60_000;
            for (i, r) in city.routes.iter().enumerate().filter(|(i, _)| owned(*i)) {
                let from = from_of(i);
                for minute in r.timetable.departure_minutes() {
                    let scheduled_ms = midnight + i64::from(minute) * 60_000;
                    if scheduled_ms < from || scheduled_ms >= to {
                        continue;
                    }
                    for d in &r.directions {
                        let trip_id = r.trip_id(d.direction_id, minute);
                        // Reported around its departure today (the same id runs every day).
                        let ran = self.trips_seen.get(&trip_id).is_some_and(|seen| *seen >= scheduled_ms - 30 * 60_000);
                        if !ran {
                            out.events.push(TransitEvent::GhostTrip { route_id: r.route_id.clone(), direction_id: d.direction_id, trip_id, scheduled_ms });
                        }
                    }
                }
            }
        }
        for r in (0..city.routes.len()).filter(|r| owned(*r)) {
            self.ghosts_checked_until[r] = self.ghosts_checked_until[r].max(to);
        }
        self.ghosts_checked_until_of_all = (0..city.routes.len()).filter(|r| owned(*r)).map(|r| self.ghosts_checked_until[r]).min().unwrap_or(i64::MIN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint of before kept one instant for every route's ghost check: it is
    /// read as that instant for each, so a restored instance neither checks a
    /// route's trips again nor skips any.
    #[test]
    fn a_checkpoint_with_one_ghost_check_for_all_routes_is_read_per_route() {
        let city = crate::repo_city();
        let mut saved = ciborium::Value::serialized(&Transit::new(&city)).expect("a value");
        let ciborium::Value::Map(fields) = &mut saved else { panic!("a map: {saved:?}") };
        fields.retain(|(name, _)| !matches!(name.as_text(), Some("ghosts_checked_until" | "ghost_checked_until")));
        fields.push((ciborium::Value::Text("ghost_checked_until".into()), ciborium::Value::Integer(1_795_996_000_000_i64.into())));
        let mut restored: Transit = saved.deserialized().expect("the old layout reads");
        restored.take_city_parts_from(Transit::new(&city));
        assert_eq!(restored.ghosts_checked_until, vec![1_795_996_000_000; city.routes.len()]);
        // Both are written: the scalar for a build of before, and it is not read
        // back over the routes' own.
        restored.ghosts_checked_until[0] = 1_795_997_000_000;
        let again: Transit = ciborium::Value::serialized(&restored).expect("a value").deserialized().expect("reads back");
        let mut again_restored = again;
        again_restored.take_city_parts_from(Transit::new(&city));
        assert_eq!(again_restored.ghosts_checked_until[0], 1_795_997_000_000);
        // Without the scalar (what the first builds with per-route checks wrote).
        let mut saved = ciborium::Value::serialized(&again_restored).expect("a value");
        let ciborium::Value::Map(fields) = &mut saved else { panic!("a map") };
        fields.retain(|(name, _)| name.as_text() != Some("ghost_checked_until"));
        let mut restored: Transit = saved.deserialized().expect("reads without the scalar");
        restored.take_city_parts_from(Transit::new(&city));
        assert_eq!(restored.ghosts_checked_until[0], 1_795_997_000_000);
    }
}
