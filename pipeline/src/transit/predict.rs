//! Arrival predictions: the time to each stop ahead from the live speed of every
//! segment on the way (what the cars there are doing now), at the route's own pace
//! (buses run slower than cars; learnt from the legs its buses complete), plus a
//! dwell at each stop on the way. The early/late bounds are those of the ETA
//! accuracy benchmark for the horizon: what the prediction claims to meet.

use super::StopEta;
use super::path::RoutePath;
use egret_model::CityModel;
use egret_model::FastMap;

/// Time a bus stands at a stop.
const DWELL_S: f64 = 30.0;
/// Stops further ahead than this are not predicted.
const HORIZON_MS: i64 = 15 * 60_000;
/// Measured segments of a kind of road before its median speaks for the others.
const MEASURED_OF_KIND: usize = 5;
/// What a route's pace starts from before any leg is seen (seconds of model time
/// at car speed, seconds driven), i.e. 0.8 of car speed, worth five minutes.
const PACE_PRIOR: (f64, f64) = (240.0, 300.0);

/// (up to this many minutes ahead, early, late) in seconds.
const BANDS: [(i64, i64, i64); 4] = [(3, 30, 90), (6, 60, 150), (10, 60, 210), (15, 90, 270)];

#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct Predictor {
    /// Per route: (model seconds at car speed, seconds actually driven) over legs.
    pace: Vec<(f64, f64)>,
    /// Per bus: its last settled stop arrival (route, direction, stop, time).
    last_arrival: FastMap<String, (u32, usize, usize, i64)>,
    free_flow: Vec<f64>,
    /// Each segment's kind of road (class, on the island or not), as an index.
    kind: Vec<usize>,
    /// Where no car has been measured lately: free flow times the median ratio of
    /// live to free-flow speed over the measured segments of the same kind of road
    /// (the rush hour slows the unmeasured streets too, the island's most); `None`
    /// until enough of that kind are measured.
    unmeasured_ratio: Vec<Option<f64>>,
}

impl Predictor {
    pub fn new(city: &CityModel) -> Self {
        let mut kinds: Vec<String> = Vec::new();
        let kind = city
            .segments
            .iter()
            .map(|s| {
                let k = format!("{:?}/{}", s.road_class, s.on_island);
                kinds.iter().position(|x| *x == k).unwrap_or_else(|| {
                    kinds.push(k);
                    kinds.len() - 1
                })
            })
            .collect();
        Predictor {
            pace: vec![PACE_PRIOR; city.routes.len()],
            last_arrival: FastMap::default(),
            free_flow: city.segments.iter().map(|s| s.free_flow_kmh).collect(),
            kind,
            unmeasured_ratio: vec![None; kinds.len()],
        }
    }

    /// Moves the pace and the buses' last arrivals of the routes `keys` picks
    /// (`rescale`); a bus's latest arrival wins. Where no live speed is dealt to
    /// measure a kind of road by, its ratio is the first instance's.
    pub(crate) fn take_keys(&mut self, from: &mut Predictor, keys: &crate::rescale::Keys) {
        crate::rescale::move_indexed(&mut self.pace, &mut from.pace, |r| keys.route(r as u32));
        for (bus, arrival) in from.last_arrival.iter().filter(|(_, a)| keys.route(a.0)) {
            let kept = self.last_arrival.entry(bus.clone()).or_insert(*arrival);
            if arrival.3 > kept.3 {
                *kept = *arrival;
            }
        }
        from.last_arrival.retain(|_, a| !keys.route(a.0));
        for (mine, theirs) in self.unmeasured_ratio.iter_mut().zip(&from.unmeasured_ratio) {
            *mine = mine.or(*theirs);
        }
    }

    fn pace(&self, route: u32) -> f64 {
        let (model, driven) = self.pace[route as usize];
        (model / driven.max(1.0)).clamp(0.2, 1.5)
    }

    /// Seconds to drive from `from_m` to `to_m` along the path at car speed now, or
    /// `None` if a segment on the way has neither a live speed nor a measured kind
    /// of road to go by (right after a start, before the network is measured: free
    /// flow in a rush hour would promise every bus minutes early).
    fn car_seconds(&self, path: &RoutePath, from_m: f64, to_m: f64, live_kmh: &[Option<f64>]) -> Option<f64> {
        let mut secs = 0.0;
        for (i, seg) in path.segments.iter().enumerate() {
            let (start, end) = (path.segment_starts[i], path.segment_starts[i + 1]);
            let overlap = end.min(to_m) - start.max(from_m);
            if overlap > 0.0 {
                let free_flow = self.free_flow[seg.0 as usize];
                let by_kind = self.unmeasured_ratio[self.kind[seg.0 as usize]].map(|ratio| free_flow * ratio);
                let kmh = live_kmh.get(seg.0 as usize).copied().flatten().or(by_kind)?.max(5.0);
                secs += overlap / (kmh / 3.6);
            }
        }
        Some(secs)
    }

    /// Updates the speed assumed where nothing was measured from the segments that were.
    pub fn measure_network(&mut self, live_kmh: &[Option<f64>]) {
        let mut by_kind: Vec<Vec<f64>> = vec![Vec::new(); self.unmeasured_ratio.len()];
        for ((l, ff), k) in live_kmh.iter().zip(&self.free_flow).zip(&self.kind) {
            if let Some(l) = l {
                by_kind[*k].push(l / ff.max(1.0));
            }
        }
        for (k, mut ratios) in by_kind.into_iter().enumerate() {
            if ratios.len() >= MEASURED_OF_KIND {
                ratios.sort_by(f64::total_cmp);
                self.unmeasured_ratio[k] = Some(ratios[ratios.len() / 2].clamp(0.1, 1.2));
            }
        }
    }

    /// A settled arrival: a leg from the bus's previous stop teaches the route's pace.
    pub fn arrived(&mut self, path: &RoutePath, stop: usize, bus_id: &str, ts_ms: i64, live_kmh: &[Option<f64>]) {
        let (route, direction) = (path.route, path.direction);
        if let Some(&(r, d, prev, prev_ms)) = self.last_arrival.get(bus_id)
            && (r, d) == (route, direction)
            && prev + 1 == stop
        {
            let driven = (ts_ms - prev_ms) as f64 / 1000.0 - DWELL_S;
            if let Some(model) = self.car_seconds(path, path.stops[prev], path.stops[stop], live_kmh)
                && driven > 5.0
                && model > 0.0
            {
                let p = &mut self.pace[route as usize];
                // Recent legs count most: decay the sums.
                *p = (p.0 * 0.95 + model, p.1 * 0.95 + driven);
            }
        }
        self.last_arrival.insert(bus_id.to_owned(), (route, direction, stop, ts_ms));
    }

    /// Predictions for the stops ahead of a bus at `distance_m` at `now_ms`.
    /// `standing`: the bus stands at the stop it last reached, and has about half a
    /// dwell still to go.
    #[allow(clippy::too_many_arguments)]
    pub fn predict(&self, city: &CityModel, path: &RoutePath, distance_m: f64, now_ms: i64, next_stop: usize, standing: bool, live_kmh: &[Option<f64>]) -> Vec<StopEta> {
        let dir = &city.routes[path.route as usize].directions[path.direction];
        let pace = self.pace(path.route);
        let mut out = Vec::new();
        for (k, stop_m) in path.stops.iter().enumerate().skip(next_stop) {
            let Some(car) = self.car_seconds(path, distance_m, *stop_m, live_kmh) else { break };
            let drive = car / pace;
            let dwells = (k - next_stop) as f64 * DWELL_S + if standing { DWELL_S / 2.0 } else { 0.0 };
            let ahead_ms = ((drive + dwells) * 1000.0) as i64;
            if ahead_ms > HORIZON_MS {
                break;
            }
            let (_, early, late) = BANDS.iter().find(|(minutes, _, _)| ahead_ms <= minutes * 60_000).copied().unwrap_or(BANDS[3]);
            out.push(StopEta { stop_id: dir.stops[k].stop_id.clone(), predicted_ms: now_ms + ahead_ms, early_ms: early * 1000, late_ms: late * 1000 });
        }
        out
    }
}

/// The ETA benchmark band for a prediction `ahead_ms` before the arrival:
/// (early, late) in ms, or `None` beyond 15 minutes.
pub fn band(ahead_ms: i64) -> Option<(i64, i64)> {
    BANDS.iter().find(|(minutes, _, _)| ahead_ms <= minutes * 60_000).map(|(_, e, l)| (e * 1000, l * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn city() -> CityModel {
        crate::repo_city()
    }

    #[test]
    fn nothing_is_predicted_before_the_road_ahead_is_measured() {
        let city = city();
        let path = RoutePath::new(&city, 0, 0).expect("route 0 direction 0");
        let mut predictor = Predictor::new(&city);
        let unmeasured = vec![None; city.segments.len()];
        predictor.measure_network(&unmeasured);
        assert!(predictor.predict(&city, &path, 0.0, 0, 1, false, &unmeasured).is_empty());
    }

    #[test]
    fn a_measured_kind_of_road_speaks_for_its_unmeasured_segments() {
        let city = city();
        let path = RoutePath::new(&city, 0, 0).expect("route 0 direction 0");
        let mut predictor = Predictor::new(&city);
        // Every segment at half its free flow: a rush hour.
        let half: Vec<Option<f64>> = city.segments.iter().map(|s| Some(s.free_flow_kmh / 2.0)).collect();
        predictor.measure_network(&half);
        // The route's own segments are not measured: their kinds of road speak for them.
        let mut live = half.clone();
        for s in &path.segments {
            live[s.0 as usize] = None;
        }
        let by_kind = predictor.predict(&city, &path, 0.0, 0, 1, false, &live);
        let measured = predictor.predict(&city, &path, 0.0, 0, 1, false, &half);
        assert!(!by_kind.is_empty());
        assert_eq!(by_kind, measured);
    }
}
