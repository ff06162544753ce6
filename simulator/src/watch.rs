//! The truth of hotlist hits and cloned plates, seen where every device sighting
//! passes (before noise: what really drove past, not what a device reported).
//!
//! - A hotlisted plate is a hit at its first sighting and again at the first one at
//!   least 30 minutes after the last hit, while its entry has not expired.
//! - A plate is cloned once two vehicles with different RFID tags have each passed
//!   at least two road gantries within 45 minutes; one offence per plate and local
//!   day. (Parking gates are not on the road network and do not count.)

use crate::truth::TruthRecord;
use egret_model::{CityModel, Plate};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Same hold-back as the pipeline's hotlist (a repeat within it is the same hit).
pub const REALERT_AFTER_MS: i64 = 30 * 60_000;
/// How long both vehicles of a cloned plate must have been seen within.
pub const CLONE_WINDOW_MS: i64 = 45 * 60_000;

/// One entry of the scenario's hotlists, as police would have loaded them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WantedPlate {
    pub list: String,
    pub plate: String,
    pub reason: String,
    pub expires_ms: Option<i64>,
}

#[derive(Default)]
pub struct Watch {
    wanted: HashMap<Plate, Vec<WantedPlate>>,
    last_hit: HashMap<(String, Plate), i64>,
    /// Plates to be cloned: per tag id, (gantry passages, last passage).
    clones: HashMap<Plate, Vec<(String, Vec<i64>)>>,
    cloned_days: HashSet<(Plate, i64)>,
    gates: HashSet<String>,
    tz_minutes: i32,
    cloned_rule: (String, u32),
}

impl Watch {
    pub fn new(city: &CityModel) -> Self {
        let gates = city.gate_reader_ids();
        let rule = &city.rules.cloned_plate;
        Watch { gates, tz_minutes: city.rules.timezone_offset_minutes, cloned_rule: (rule.rule_id.clone(), rule.rule_version), ..Watch::default() }
    }

    pub fn add_wanted(&mut self, plate: Plate, entry: WantedPlate) {
        self.wanted.entry(plate).or_default().push(entry);
    }

    pub fn wanted(&self) -> Vec<WantedPlate> {
        let mut all: Vec<WantedPlate> = self.wanted.values().flatten().cloned().collect();
        all.sort_by(|a, b| (&a.list, &a.plate).cmp(&(&b.list, &b.plate)));
        all
    }

    /// This plate will be cloned: watch its gantry passages from now on.
    pub fn watch_clone(&mut self, plate: Plate) {
        self.clones.entry(plate).or_default();
    }

    /// A device really saw `plate` at `ts_ms` (gantry `reader` with `tag`, or a camera).
    pub fn seen(&mut self, plate: Plate, device_id: &str, tag: Option<&str>, ts_ms: i64, out: &mut Vec<TruthRecord>) {
        if let Some(entries) = self.wanted.get(&plate) {
            for e in entries.iter().filter(|e| e.expires_ms.is_none_or(|x| ts_ms < x)) {
                let key = (e.list.clone(), plate);
                if self.last_hit.get(&key).is_none_or(|last| ts_ms - last >= REALERT_AFTER_MS) {
                    self.last_hit.insert(key, ts_ms);
                    out.push(violation("hotlist", plate, ts_ms, (&format!("HOTLIST:{}", e.list), 1), device_id));
                }
            }
        }
        let (Some(tag), Some(tags)) = (tag, self.clones.get_mut(&plate)) else { return };
        if self.gates.contains(device_id) {
            return;
        }
        // Only passages within the window count: older ones are let go, so a long
        // simulation keeps a few per clone rather than all of them.
        for (_, passages) in tags.iter_mut() {
            passages.retain(|t| ts_ms - *t <= CLONE_WINDOW_MS);
        }
        match tags.iter_mut().find(|(t, _)| t == tag) {
            Some((_, passages)) => passages.push(ts_ms),
            None => tags.push((tag.to_owned(), vec![ts_ms])),
        }
        let recent = |p: &Vec<i64>| p.iter().filter(|t| ts_ms - **t <= CLONE_WINDOW_MS).count();
        let both_seen = tags.iter().filter(|(_, p)| recent(p) >= 2).count() >= 2;
        let day = egret_model::time::local_day(ts_ms, self.tz_minutes);
        if both_seen && self.cloned_days.insert((plate, day)) {
            out.push(violation("cloned_plate", plate, ts_ms, (&self.cloned_rule.0, self.cloned_rule.1), device_id));
        }
    }
}

fn violation(kind: &str, plate: Plate, ts_ms: i64, (rule_id, rule_version): (&str, u32), location: &str) -> TruthRecord {
    TruthRecord::Violation {
        kind: kind.to_owned(),
        plate: plate.to_string(),
        ts_ms,
        rule_id: rule_id.to_owned(),
        rule_version,
        location: location.to_owned(),
        measured: 0.0,
        limit: 0.0,
    }
}
