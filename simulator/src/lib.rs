//! The Egret simulator: a seeded, deterministic model of traffic in Xiamen,
//! Zhangzhou and Quanzhou that emits contract-v1 events from the devices vehicles
//! pass, and records the ground truth those events were made from.
//!
//! Vehicles of every class drive random trips under a time-of-day demand profile and
//! a congestion field; buses run their routes by the timetable; cars park and leave
//! through gate readers. Device noise (missed, duplicate, misread, skewed, late and
//! malformed messages) is applied on emission, never to the truth.

pub mod buses;
pub mod config;
pub mod demand;
mod emit;
pub mod parking;
pub mod plates;
pub mod scenario;
pub mod truth;
pub mod vehicles;
pub mod watch;
pub mod zone_truth;

pub use config::{Noise, SimConfig};
pub use emit::Emitted;
pub use truth::{GroundTruth, TruthRecord};
pub use watch::WantedPlate;

use egret_model::CityModel;
use emit::Emitter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// How far before `start_ms` the simulation begins, so the roads and buses are
/// already busy at the start; nothing is emitted for that warm-up.
const WARM_UP_MS: i64 = 30 * 60_000;
const STEP_MS: i64 = 1_000;

/// A running simulation. Call [`Simulator::advance_to`] with increasing times.
pub struct Simulator {
    city: Arc<CityModel>,
    config: SimConfig,
    rng: ChaCha8Rng,
    /// Simulated time up to which trips have been generated.
    generated_until: i64,
    emitter: Emitter,
    network: Arc<vehicles::Network>,
    fleet: vehicles::Fleet,
    lots: parking::Lots,
    bus_plan: buses::BusPlan,
    script: scenario::Script,
    /// Scripted trips not yet started.
    next_scripted: usize,
}

impl Simulator {
    pub fn new(city: Arc<CityModel>, config: SimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let network = Arc::new(vehicles::Network::new(&city));
        let lots = parking::Lots::new(&city, &mut rng);
        let mut bus_plan = buses::BusPlan::new(&city, config.start_ms - WARM_UP_MS, config.end_ms());
        let mut emitter = Emitter::new(&city, config.clone(), rng.random());
        let mut fleet = vehicles::Fleet::new(&mut rng, &config, &mut emitter.watch);
        for dep in bus_plan.departures() {
            fleet.reserve(buses::bus_plate(&dep.bus_id).0);
        }
        let script = if config.scripted { scenario::Script::standard(&city, config.seed, config.start_ms, config.duration_ms) } else { scenario::Script::default() };
        if let Some((route, direction, from)) = script.bunched_departure {
            bus_plan.bunch(route, direction, from);
        }
        if let Some((route, direction, from)) = script.cancelled_departure
            && let Some(dep) = bus_plan.cancel(route, direction, from)
        {
            let route_id = city.routes[dep.route].route_id.clone();
            emitter.truth(dep.ts_ms, TruthRecord::GhostTrip { route_id, trip_id: dep.trip_id, scheduled_ms: dep.ts_ms });
        }
        for i in &script.incidents {
            let segment_id = city.segment(i.segment).segment_id.clone();
            emitter.truth(i.onset_ms, TruthRecord::Incident { segment_id, onset_ms: i.onset_ms, cleared_ms: i.cleared_ms });
        }
        let mut sim = Simulator {
            generated_until: config.start_ms - WARM_UP_MS,
            fleet,
            city,
            config,
            rng,
            emitter,
            network,
            lots,
            bus_plan,
            script,
            next_scripted: 0,
        };
        sim.lots.emit_snapshots(sim.config.start_ms, &mut sim.emitter);
        sim
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    pub fn city(&self) -> &Arc<CityModel> {
        &self.city
    }

    /// Generates everything that happens up to `until_ms` and returns the events whose
    /// delivery time has come, in delivery order.
    pub fn advance_to(&mut self, until_ms: i64) -> Vec<Emitted> {
        let until = until_ms.min(self.config.end_ms());
        while self.generated_until < until {
            let t = self.generated_until;
            self.step(t);
            self.generated_until += STEP_MS;
        }
        self.emitter.drain_until(until_ms)
    }

    /// True when the scenario's end has been reached and every event delivered.
    pub fn finished(&self) -> bool {
        self.generated_until >= self.config.end_ms() && self.emitter.is_empty()
    }

    /// Everything left, once the scenario has ended (late deliveries included).
    pub fn drain_all(&mut self) -> Vec<Emitted> {
        let mut events = self.advance_to(self.config.end_ms());
        self.emitter.settle_zones(i64::MAX);
        events.extend(self.emitter.drain_until(i64::MAX));
        events
    }

    /// The scenario's hotlists, as the police would have loaded them before it starts.
    pub fn hotlists(&self) -> Vec<WantedPlate> {
        self.emitter.watch.wanted()
    }

    /// Ground truth recorded so far; the simulator forgets it once taken.
    pub fn take_truth(&mut self) -> Vec<TruthRecord> {
        self.emitter.take_truth()
    }

    fn step(&mut self, t: i64) {
        let live = t >= self.config.start_ms;
        let rate = self.config.demand_per_min * demand::trip_rate_factor(t, self.city.rules.timezone_offset_minutes);
        let starts = demand::poisson(&mut self.rng, rate * STEP_MS as f64 / 60_000.0);
        for _ in 0..starts {
            let start_ms = t + self.rng.random_range(0..STEP_MS);
            let vehicle = self.fleet.new_vehicle(&mut self.rng, &mut self.emitter.watch, start_ms);
            let parks = live && vehicles::parks(vehicle.class) && self.rng.random_bool(self.config.parking_share);
            if parks {
                parking::drive_to_lot(self, vehicle, start_ms);
            } else {
                let from = self.network.random_origin(&mut self.rng);
                let path = self.network.random_walk(&self.city, &mut self.rng, from);
                vehicles::drive(self, &vehicle, &path, start_ms);
            }
        }
        self.scripted_step(t);
        // A snapshot at t counts the passages before t, so it goes before this step's.
        if live && (t - self.config.start_ms) % self.config.parking_snapshot_every_ms == 0 && t > self.config.start_ms {
            self.lots.emit_snapshots(t, &mut self.emitter);
        }
        parking::release_due(self, t);
        buses::depart_due(self, t);
        // Every passage up to now has been generated (trips are planned whole).
        self.emitter.settle_zones(t);
    }
}

impl Simulator {
    /// The scripted scenario events (empty unless `SimConfig::scripted`).
    pub fn script(&self) -> &scenario::Script {
        &self.script
    }

    /// Starts the scripted trips and surge arrivals due in this step.
    fn scripted_step(&mut self, t: i64) {
        while let Some(trip) = self.script.trips.get(self.next_scripted).filter(|s| s.start_ms < t + STEP_MS).cloned() {
            self.next_scripted += 1;
            let mut vehicle = self.fleet.new_vehicle(&mut self.rng, &mut self.emitter.watch, trip.start_ms);
            vehicle.class = trip.class;
            vehicle.limit_factor = trip.limit_factor;
            vehicle.runs_red = false;
            vehicle.uses_bus_lane = false;
            vehicles::drive(self, &vehicle, &trip.path, trip.start_ms);
        }
        if t >= self.config.start_ms - WARM_UP_MS / 2 {
            for k in 0..self.script.commuter_flows.len() {
                let per_step = self.script.commuter_flows[k].1 * STEP_MS as f64 / 60_000.0;
                for _ in 0..demand::poisson(&mut self.rng, per_step) {
                    let start_ms = t + self.rng.random_range(0..STEP_MS);
                    let vehicle = self.fleet.new_vehicle(&mut self.rng, &mut self.emitter.watch, start_ms);
                    let mut path = self.script.commuter_flows[k].0.clone();
                    if let Some(last) = path.last() {
                        // On into the city after the crossing.
                        let on = self.network.random_walk(&self.city, &mut self.rng, self.city.segment_to(*last));
                        path.extend(on.into_iter().take(3));
                    }
                    vehicles::drive(self, &vehicle, &path, start_ms);
                }
            }
        }
        if let Some((lot, from, to, extra)) = self.script.lot_surge
            && (from..to).contains(&t)
        {
            let per_step = f64::from(extra) * STEP_MS as f64 / (to - from) as f64;
            for _ in 0..demand::poisson(&mut self.rng, per_step) {
                let start_ms = t + self.rng.random_range(0..STEP_MS);
                let mut vehicle = self.fleet.new_vehicle(&mut self.rng, &mut self.emitter.watch, start_ms);
                vehicle.class = egret_model::VehicleClass::Car;
                parking::drive_to(self, vehicle, start_ms, lot);
            }
        }
    }
}

#[cfg(test)]
mod tests;
