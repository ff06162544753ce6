//! The scripted events of the standard scenarios, on top of the random traffic, so
//! every figure of the evaluation has something to find: a crash that blocks a
//! bridge, speeders past speed cameras (some just under the ticket threshold), a
//! hazardous-goods truck into the Xiang'an tunnel, a car park filling up, a pair of
//! intercity buses running together and a city bus trip that never runs.
//!
//! Everything is placed relative to the scenario's start, from the city data (found
//! by road class, zone and route kind, not hard-coded ids), and seeded.

use egret_model::city::RoadClass;
use egret_model::{CityModel, SegmentIdx};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A crash at a point of a segment: vehicles reaching it between `onset_ms` and
/// `cleared_ms` wait until it is cleared, then the queue drains in order.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedIncident {
    pub segment: SegmentIdx,
    /// Where along the segment (0–1) the road is blocked.
    pub at_fraction: f64,
    pub onset_ms: i64,
    pub cleared_ms: i64,
}

impl PlannedIncident {
    /// When a vehicle that would reach the blockage at `reach_ms` gets past it.
    pub fn passes_at(&self, reach_ms: i64) -> i64 {
        if (self.onset_ms..self.cleared_ms).contains(&reach_ms) {
            // The queue discharges four times faster than it built up.
            self.cleared_ms + (reach_ms - self.onset_ms) / 4
        } else {
            reach_ms
        }
    }
}

/// A vehicle the script puts on the road.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedTrip {
    pub start_ms: i64,
    pub class: egret_model::VehicleClass,
    pub path: Vec<SegmentIdx>,
    /// Drives at this multiple of each segment's limit, whatever the traffic.
    pub limit_factor: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Script {
    pub incidents: Vec<PlannedIncident>,
    pub trips: Vec<ScriptedTrip>,
    /// (lot index, from, to, extra cars): a burst of arrivals at one lot.
    pub lot_surge: Option<(usize, i64, i64, u32)>,
    /// (route index, direction, instant): the first departure at or after the
    /// instant leaves late, one minute before the one after it.
    pub bunched_departure: Option<(usize, usize, i64)>,
    /// (route index, direction, departure at or after this instant): never runs.
    pub cancelled_departure: Option<(usize, usize, i64)>,
    /// The morning rush over the bridges and through the tunnel: (the chain of
    /// segments, vehicles per minute) on top of the random traffic.
    pub commuter_flows: Vec<(Vec<SegmentIdx>, f64)>,
}

/// Extra vehicles per minute each way over each bridge and through the tunnel.
const COMMUTERS_PER_MIN: f64 = 8.0;

/// The one-way chains of segments along a corridor: each starts where no segment of
/// the same direction leads in, and follows the way on that does not turn back.
fn chains(city: &CityModel, on: &[SegmentIdx]) -> Vec<Vec<SegmentIdx>> {
    let leads_into = |p: &SegmentIdx, s: &SegmentIdx| city.segment_to(*p) == city.segment_from(*s) && city.segment_from(*p) != city.segment_to(*s);
    let mut out = Vec::new();
    for start in on.iter().filter(|s| !on.iter().any(|p| leads_into(p, s))) {
        let mut chain = vec![*start];
        while let Some(next) = on.iter().find(|s| chain.last().is_some_and(|last| leads_into(last, s)) && !chain.contains(s)) {
            chain.push(*next);
        }
        out.push(chain);
    }
    out
}

impl Script {
    /// The standard events of `egret eval` scenarios, placed within `[start, start + duration)`.
    pub fn standard(city: &CityModel, seed: u64, start_ms: i64, duration_ms: i64) -> Script {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5c41_7e11);
        let at = |fraction: f64| start_ms + (duration_ms as f64 * fraction) as i64;
        let mut script = Script::default();

        // A crash on a bridge a quarter of the way in, cleared a third later.
        if let Some(bridge) = (0..city.segments.len() as u32).map(SegmentIdx).find(|s| city.segment(*s).road_class == RoadClass::Bridge && city.segment(*s).segment_id.ends_with('9')) {
            script.incidents.push(PlannedIncident { segment: bridge, at_fraction: 0.6, onset_ms: at(0.27), cleared_ms: at(0.6) });
        }

        // Speeders past speed cameras, every 90 s: 5% under to 30% over the limit, so
        // both sides of the 10% tolerance are tested.
        let speed_segments: Vec<SegmentIdx> = city
            .cameras
            .iter()
            .filter(|c| c.kind == egret_model::CameraKind::Speed)
            .filter_map(|c| city.segment_idx(&c.segment_id))
            .collect();
        let mut t = start_ms + 60_000;
        let mut i = 0;
        while t < at(0.8) && !speed_segments.is_empty() {
            let first = speed_segments[i % speed_segments.len()];
            let mut path = vec![first];
            if let Some(next) = city.outgoing(city.segment_to(first)).iter().find(|s| city.segment_to(**s) != city.segment_from(first)) {
                path.push(*next);
            }
            let factor = rng.random_range(0.95..1.30);
            script.trips.push(ScriptedTrip { start_ms: t, class: egret_model::VehicleClass::Car, path, limit_factor: Some(factor) });
            t += 90_000;
            i += 7;
        }

        // A hazardous-goods truck drives into the Xiang'an subsea tunnel.
        if let Some(zone) = city.rules.zones.iter().find(|z| z.zone_id == "xiangan-tunnel") {
            let tunnel: Vec<SegmentIdx> = zone.segments.iter().filter_map(|s| city.segment_idx(s)).collect();
            if let Some(path) = chains(city, &tunnel).into_iter().next() {
                script.trips.push(ScriptedTrip { start_ms: at(0.15), class: egret_model::VehicleClass::Hazmat, path, limit_factor: None });
            }
        }

        // The smallest car park fills up: more cars than it has spaces, over a third of the run.
        if let Some((lot, l)) = city.lots.iter().enumerate().min_by_key(|(_, l)| l.capacity) {
            script.lot_surge = Some((lot, at(0.1), at(0.45), l.capacity));
        }

        // An intercity bus leaves late, a minute before the next one: they run
        // bunched, with a gap in front of them. Its scheduled departure is before the
        // start so both are on the road throughout.
        if let Some(route) = city.routes.iter().position(|r| r.kind == "intercity") {
            script.bunched_departure = Some((route, 0, start_ms - 25 * 60_000));
        }
        // A city bus trip that never runs.
        if let Some(route) = city.routes.iter().position(|r| r.kind == "bus") {
            script.cancelled_departure = Some((route, 0, at(0.2)));
        }
        // The morning rush: commuters stream over every bridge and through the tunnel,
        // both ways, all scenario long.
        let mut corridors: Vec<&str> = city.segments.iter().filter(|s| matches!(s.road_class, RoadClass::Bridge | RoadClass::Tunnel)).map(|s| s.corridor.as_str()).collect();
        corridors.sort_unstable();
        corridors.dedup();
        for corridor in corridors {
            let on: Vec<SegmentIdx> = (0..city.segments.len() as u32).map(SegmentIdx).filter(|s| city.segment(*s).corridor == corridor).collect();
            for chain in chains(city, &on) {
                script.commuter_flows.push((chain, COMMUTERS_PER_MIN));
            }
        }
        // The simulator starts them in this order.
        script.trips.sort_by_key(|t| t.start_ms);
        script
    }

    pub fn incident_on(&self, segment: SegmentIdx) -> Option<&PlannedIncident> {
        self.incidents.iter().find(|i| i.segment == segment)
    }
}
