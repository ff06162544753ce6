//! Turns what happens into contract-v1 messages: numbers events, applies device and
//! delivery noise from its own random stream (so noise never changes the traffic),
//! orders messages by delivery time, and keeps the truth of the live period.

use crate::config::SimConfig;
use crate::plates;
use crate::truth::TruthRecord;
use crate::watch::Watch;
use crate::zone_truth::ZoneTruth;
use egret_model::event::{BusGps, CameraEvent, CameraKind, ParkingCount, PlateRead};
use egret_model::{CityModel, Plate, Topic, VehicleClass};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// One message ready for a sink.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Emitted {
    /// When the message reaches the transport (its `ts_ms` plus any delivery delay).
    pub deliver_ms: i64,
    pub seq: u64,
    pub topic: Topic,
    /// The contract's key: plate, bus id, lot id or camera id.
    pub key: String,
    pub payload: Vec<u8>,
}

pub(crate) struct Emitter {
    config: SimConfig,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Reverse<Emitted>>,
    seq: u64,
    /// Fixed clock error per device id.
    skew: HashMap<String, i64>,
    truth: Vec<TruthRecord>,
    pub watch: Watch,
    pub zones: ZoneTruth,
}

/// What a device saw, before noise.
pub(crate) enum Sighting<'a> {
    Read { reader_id: &'a str, plate: Plate, tag_id: &'a str, class: VehicleClass },
    Camera { camera_id: &'a str, kind: CameraKind, plate: Plate, speed_kmh: Option<f64>, red_elapsed_ms: Option<i64> },
}

impl Emitter {
    pub fn new(city: &CityModel, config: SimConfig, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let max = config.noise.max_skew_ms;
        let devices = city.readers.iter().map(|r| &r.reader_id).chain(city.cameras.iter().map(|c| &c.camera_id));
        let skew = devices.map(|id| (id.clone(), if max > 0 { rng.random_range(-max..=max) } else { 0 })).collect();
        Emitter { config, rng, queue: BinaryHeap::new(), seq: 0, skew, truth: Vec::new(), watch: Watch::new(city), zones: ZoneTruth::new(city) }
    }

    /// Inside the scenario's span: what devices report and the truth records.
    pub fn live(&self, ts_ms: i64) -> bool {
        ts_ms >= self.config.start_ms && ts_ms < self.config.end_ms()
    }

    pub fn truth(&mut self, ts_ms: i64, record: TruthRecord) {
        if self.live(ts_ms) {
            self.truth.push(record);
        }
    }

    /// A zone offence proven by a segment's two gantries (see `zone_truth`).
    pub fn zone_offence(&mut self, rule: usize, plate: Plate, ts_ms: i64, location: &str) {
        if self.live(ts_ms) {
            self.zones.offence(rule, plate, ts_ms, location, &mut self.truth);
        }
    }

    /// Decides passes inside zones once every passage up to `known_until_ms` exists.
    pub fn settle_zones(&mut self, known_until_ms: i64) {
        self.zones.settle(known_until_ms, &mut self.truth);
    }

    pub fn take_truth(&mut self) -> Vec<TruthRecord> {
        std::mem::take(&mut self.truth)
    }

    /// A device saw a vehicle at true time `ts_ms`: emit what the device reports.
    pub fn sighting(&mut self, ts_ms: i64, sighting: Sighting<'_>) {
        if self.live(ts_ms) {
            let (plate, device, tag) = match &sighting {
                Sighting::Read { reader_id, plate, tag_id, .. } => (*plate, *reader_id, Some(*tag_id)),
                Sighting::Camera { camera_id, plate, .. } => (*plate, *camera_id, None),
            };
            self.watch.seen(plate, device, tag, ts_ms, &mut self.truth);
            if let Sighting::Read { reader_id, plate, class, .. } = &sighting {
                self.zones.passed(*plate, *class, reader_id, ts_ms);
            }
        }
        if !self.live(ts_ms) || self.rng.random_bool(self.config.noise.missed) {
            return;
        }
        let (topic, device, plate) = match &sighting {
            Sighting::Read { reader_id, plate, .. } => (Topic::PlateReads, *reader_id, *plate),
            Sighting::Camera { camera_id, plate, .. } => (Topic::CameraEvents, *camera_id, *plate),
        };
        let plate = if self.rng.random_bool(self.config.noise.misread) { plates::misread(&mut self.rng, plate) } else { plate };
        let device_ts = ts_ms + self.skew.get(device).copied().unwrap_or(0);
        let event_id = format!("{}-{}", if topic == Topic::PlateReads { 'r' } else { 'c' }, self.seq);
        let payload = match sighting {
            Sighting::Read { reader_id, tag_id, class, .. } => json(&PlateRead {
                event_id: Cow::Borrowed(&event_id),
                reader_id: Cow::Borrowed(reader_id),
                plate: Cow::Borrowed(plate.as_str()),
                tag_id: Some(Cow::Borrowed(tag_id)),
                vehicle_class: Some(Cow::Borrowed(class.as_str())),
                lane: Some(1),
                ts_ms: device_ts,
            }),
            Sighting::Camera { camera_id, kind, speed_kmh, red_elapsed_ms, .. } => json(&CameraEvent {
                event_id: Cow::Borrowed(&event_id),
                camera_id: Cow::Borrowed(camera_id),
                kind,
                plate: Some(Cow::Borrowed(plate.as_str())),
                speed_kmh,
                signal: red_elapsed_ms.map(|_| Cow::Borrowed("red")),
                red_elapsed_ms,
                ts_ms: device_ts,
                image_ref: Some(Cow::Owned(format!("img/{camera_id}/{event_id}.jpg"))),
            }),
        };
        self.push(topic, plate.as_str().to_owned(), ts_ms, payload);
    }

    pub fn bus_gps(&mut self, bus_id: &str, route_id: &str, trip_id: &str, pos: [f64; 2], speed_kmh: f64, ts_ms: i64) {
        if !self.live(ts_ms) {
            return;
        }
        let event_id = format!("g-{}", self.seq);
        let payload = json(&BusGps {
            event_id: Cow::Borrowed(&event_id),
            bus_id: Cow::Borrowed(bus_id),
            route_id: Cow::Borrowed(route_id),
            trip_id: Some(Cow::Borrowed(trip_id)),
            lat: (pos[1] * 1e6).round() / 1e6,
            lon: (pos[0] * 1e6).round() / 1e6,
            speed_kmh: Some((speed_kmh * 10.0).round() / 10.0),
            heading_deg: None,
            ts_ms,
        });
        self.push(Topic::BusGps, bus_id.to_owned(), ts_ms, payload);
    }

    pub fn parking_count(&mut self, lot_id: &str, occupied: u32, capacity: u32, ts_ms: i64) {
        let event_id = format!("p-{}", self.seq);
        let payload = json(&ParkingCount {
            event_id: Cow::Borrowed(&event_id),
            lot_id: Cow::Borrowed(lot_id),
            occupied,
            capacity: Some(capacity),
            ts_ms,
        });
        self.push(Topic::ParkingCounts, lot_id.to_owned(), ts_ms, payload);
    }

    /// Queues a message made at true time `ts_ms`, applying transport latency and
    /// duplicate, late and malformed noise. Delivery follows the true clock, not the
    /// device's: the collector stamps arrival with its own time.
    fn push(&mut self, topic: Topic, key: String, ts_ms: i64, payload: Vec<u8>) {
        let noise = &self.config.noise;
        let late = self.rng.random_bool(noise.late) && noise.max_late_ms > 0;
        let latency = if noise.max_latency_ms > 0 { self.rng.random_range(0..=noise.max_latency_ms) } else { 0 };
        let deliver_ms = ts_ms + latency + if late { self.rng.random_range(1..=noise.max_late_ms) } else { 0 };
        let duplicate = self.rng.random_bool(noise.duplicate);
        let payload = if self.rng.random_bool(noise.malformed) { self.malform(&payload) } else { payload };
        if duplicate {
            let again = deliver_ms + self.rng.random_range(0..5_000);
            self.enqueue(again, topic, key.clone(), payload.clone());
        }
        self.enqueue(deliver_ms, topic, key, payload);
    }

    fn enqueue(&mut self, deliver_ms: i64, topic: Topic, key: String, payload: Vec<u8>) {
        self.seq += 1;
        self.queue.push(Reverse(Emitted { deliver_ms, seq: self.seq, topic, key, payload }));
    }

    /// The kinds of damage seen from real devices: cut short, garbled, wrong types.
    fn malform(&mut self, payload: &[u8]) -> Vec<u8> {
        match self.rng.random_range(0..4) {
            0 => payload[..payload.len() / 2].to_vec(),
            1 => b"\x00\xff garbled frame".to_vec(),
            2 => String::from_utf8_lossy(payload).replace("\"ts_ms\":", "\"ts_ms\":\"x\",\"_\":").into_bytes(),
            _ => b"{}".to_vec(),
        }
    }

    /// Messages whose delivery time is at or before `until_ms`, in delivery order.
    pub fn drain_until(&mut self, until_ms: i64) -> Vec<Emitted> {
        let mut out = Vec::new();
        while self.queue.peek().is_some_and(|Reverse(e)| e.deliver_ms <= until_ms) {
            if let Some(Reverse(e)) = self.queue.pop() {
                out.push(e);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}
