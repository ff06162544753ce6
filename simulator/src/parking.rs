//! Car parks: cars that end their trip at a lot pass its entry gate reader, stay a
//! while and leave through the exit gate; a full lot turns cars away. Lot
//! controllers send occupancy snapshots now and then, as real ones do.

use crate::Simulator;
use crate::emit::{Emitter, Sighting};
use crate::truth::TruthRecord;
use crate::vehicles::{Vehicle, drive};
use egret_model::CityModel;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Gate passages waiting for their instant, so occupancy changes in time order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct GateEvent {
    ts_ms: i64,
    seq: u64,
    lot: usize,
    entering: bool,
    vehicle: usize,
}

pub struct Lots {
    lot_ids: Vec<String>,
    occupied: Vec<u32>,
    capacity: Vec<u32>,
    queue: BinaryHeap<Reverse<GateEvent>>,
    vehicles: Vec<Option<Vehicle>>,
    free_slots: Vec<usize>,
    seq: u64,
}

impl Lots {
    pub fn new(city: &CityModel, rng: &mut ChaCha8Rng) -> Self {
        let capacity: Vec<u32> = city.lots.iter().map(|l| l.capacity).collect();
        let occupied = capacity.iter().map(|c| (f64::from(*c) * rng.random_range(0.2..0.7)) as u32).collect();
        Lots { lot_ids: city.lots.iter().map(|l| l.lot_id.clone()).collect(), occupied, capacity, queue: BinaryHeap::new(), vehicles: Vec::new(), free_slots: Vec::new(), seq: 0 }
    }

    fn schedule(&mut self, ts_ms: i64, lot: usize, entering: bool, vehicle: Vehicle) {
        let slot = match self.free_slots.pop() {
            Some(i) => {
                self.vehicles[i] = Some(vehicle);
                i
            }
            None => {
                self.vehicles.push(Some(vehicle));
                self.vehicles.len() - 1
            }
        };
        self.seq += 1;
        self.queue.push(Reverse(GateEvent { ts_ms, seq: self.seq, lot, entering, vehicle: slot }));
    }

    /// Every lot controller reports its true occupancy.
    pub(crate) fn emit_snapshots(&self, ts_ms: i64, emitter: &mut Emitter) {
        for (i, lot) in self.lot_ids.iter().enumerate() {
            emitter.parking_count(lot, self.occupied[i], self.capacity[i], ts_ms);
            emitter.truth(ts_ms, TruthRecord::LotOccupancy { lot_id: lot.clone(), ts_ms, occupied: self.occupied[i] });
        }
    }

    pub fn occupied(&self) -> &[u32] {
        &self.occupied
    }
}

/// A trip that ends at a random lot: drive there, then queue the entry.
pub fn drive_to_lot(sim: &mut Simulator, vehicle: Vehicle, start_ms: i64) {
    let lot = sim.rng.random_range(0..sim.city.lots.len());
    drive_to(sim, vehicle, start_ms, lot);
}

/// A trip that ends at lot `lot`.
pub fn drive_to(sim: &mut Simulator, vehicle: Vehicle, start_ms: i64, lot: usize) {
    let Some(last) = sim.city.segment_idx(&sim.city.lots[lot].segment_id) else { return };
    let path = sim.network.random_walk_to(&sim.city, &mut sim.rng, last);
    let arrive = drive(sim, &vehicle, &path, start_ms);
    let at_gate = arrive + sim.rng.random_range(20_000..60_000);
    sim.lots.schedule(at_gate, lot, true, vehicle);
}

/// Applies gate passages due before the end of this step.
pub fn release_due(sim: &mut Simulator, t: i64) {
    while sim.lots.queue.peek().is_some_and(|Reverse(e)| e.ts_ms < t + 1_000) {
        let Some(Reverse(e)) = sim.lots.queue.pop() else { break };
        let Some(vehicle) = sim.lots.vehicles[e.vehicle].take() else { continue };
        sim.lots.free_slots.push(e.vehicle);
        let city = sim.city.clone();
        let lot = &city.lots[e.lot];
        if e.entering {
            if sim.lots.occupied[e.lot] >= sim.lots.capacity[e.lot] {
                continue; // Full: the car drives on and is not modelled further.
            }
            sim.lots.occupied[e.lot] += 1;
            gate(sim, &vehicle, &lot.entry_reader_id, e.ts_ms);
            let leave = e.ts_ms + sim.rng.random_range(10..180) * 60_000;
            sim.lots.schedule(leave, e.lot, false, vehicle);
        } else {
            sim.lots.occupied[e.lot] -= 1;
            gate(sim, &vehicle, &lot.exit_reader_id, e.ts_ms);
            let Some(seg) = city.segment_idx(&lot.segment_id) else { continue };
            let path = sim.network.random_walk(&city, &mut sim.rng, city.segment_to(seg));
            drive(sim, &vehicle, &path, e.ts_ms + 30_000);
        }
        let occupied = sim.lots.occupied[e.lot];
        sim.emitter.truth(e.ts_ms, TruthRecord::LotOccupancy { lot_id: lot.lot_id.clone(), ts_ms: e.ts_ms, occupied });
    }
}

fn gate(sim: &mut Simulator, v: &Vehicle, reader_id: &str, ts_ms: i64) {
    sim.emitter.sighting(ts_ms, Sighting::Read { reader_id, plate: v.plate, tag_id: &v.tag_id, class: v.class });
}
