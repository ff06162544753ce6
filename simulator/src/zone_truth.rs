//! The truth of zone restrictions (hazardous goods in the tunnel, trucks on the
//! island at peak hours…) under the evidence standard of a ticket: two gantry
//! passages of the vehicle. An offence is one per rule, plate and local day, at the
//! first of, within the rule's hours:
//! - the exit from a zone segment both of whose gantries were inside the scenario;
//! - a pass of a gantry standing inside the zone, when the vehicle passed another
//!   gantry within 15 minutes of it (a lone pass proves nothing a device could
//!   confirm; it is still an offence, just not a provable one).

use crate::truth::TruthRecord;
use egret_model::time::{HourRange, in_hours, local_day};
use egret_model::{CityModel, Plate, VehicleClass};
use std::collections::{HashMap, HashSet};

/// How close in time another passage must be to confirm a pass inside a zone.
pub const CONFIRM_WITHIN_MS: i64 = 15 * 60_000;

struct Candidate {
    rule: usize,
    plate: Plate,
    ts_ms: i64,
    reader_id: String,
}

pub struct ZoneTruth {
    /// Per gantry id: (rule, hours) of the zones it stands inside.
    inside: HashMap<String, Vec<(usize, Vec<HourRange>)>>,
    /// Per rule: classes, rule id and version.
    rules: Vec<(Vec<VehicleClass>, String, u32)>,
    tz_minutes: i32,
    /// Live gantry passages of vehicles of a restricted class.
    passages: HashMap<Plate, Vec<i64>>,
    candidates: Vec<Candidate>,
    daily: HashSet<(usize, Plate, i64)>,
    /// Parking gates are not road gantries: they prove nothing about zones.
    gates: HashSet<String>,
}

impl ZoneTruth {
    pub fn new(city: &CityModel) -> Self {
        let inside = city
            .readers
            .iter()
            .enumerate()
            .map(|(i, r)| (r.reader_id.clone(), city.restrictions_at(egret_model::ReaderIdx(i as u32)).to_vec()))
            .filter(|(_, rules)| !rules.is_empty())
            .collect();
        let rules = city.rules.restrictions.iter().map(|r| (r.classes.clone(), r.rule_id.clone(), r.rule_version)).collect();
        let gates = city.gate_reader_ids();
        ZoneTruth { inside, rules, tz_minutes: city.rules.timezone_offset_minutes, passages: HashMap::new(), candidates: Vec::new(), daily: HashSet::new(), gates }
    }

    fn restricted_class(&self, class: VehicleClass) -> bool {
        self.rules.iter().any(|(classes, _, _)| classes.contains(&class))
    }

    /// A live gantry passage.
    pub fn passed(&mut self, plate: Plate, class: VehicleClass, reader_id: &str, ts_ms: i64) {
        if !self.restricted_class(class) || self.gates.contains(reader_id) {
            return;
        }
        self.passages.entry(plate).or_default().push(ts_ms);
        for (rule, hours) in self.inside.get(reader_id).into_iter().flatten() {
            if in_hours(hours, ts_ms, self.tz_minutes) && self.rules[*rule].0.contains(&class) {
                self.candidates.push(Candidate { rule: *rule, plate, ts_ms, reader_id: reader_id.to_owned() });
            }
        }
    }

    /// An offence proven by a zone segment's two gantries.
    pub fn offence(&mut self, rule: usize, plate: Plate, ts_ms: i64, location: &str, out: &mut Vec<TruthRecord>) {
        let day = local_day(ts_ms, self.tz_minutes);
        if self.daily.insert((rule, plate, day)) {
            let (_, rule_id, rule_version) = &self.rules[rule];
            out.push(TruthRecord::Violation {
                kind: "restricted_vehicle".into(),
                plate: plate.to_string(),
                ts_ms,
                rule_id: rule_id.clone(),
                rule_version: *rule_version,
                location: location.to_owned(),
                measured: 0.0,
                limit: 0.0,
            });
        }
    }

    /// Decides the passes inside zones whose confirmation window has closed: every
    /// passage up to `known_until_ms` has been generated.
    pub fn settle(&mut self, known_until_ms: i64, out: &mut Vec<TruthRecord>) {
        let (due, wait): (Vec<Candidate>, Vec<Candidate>) =
            std::mem::take(&mut self.candidates).into_iter().partition(|c| c.ts_ms.saturating_add(CONFIRM_WITHIN_MS) <= known_until_ms);
        self.candidates = wait;
        for c in due {
            let passages = self.passages.get(&c.plate).map_or(&[][..], Vec::as_slice);
            let confirmed = passages.iter().filter(|t| (**t - c.ts_ms).abs() <= CONFIRM_WITHIN_MS).count() >= 2;
            if confirmed {
                self.offence(c.rule, c.plate, c.ts_ms, &c.reader_id, out);
            }
        }
        let horizon = known_until_ms.saturating_sub(4 * CONFIRM_WITHIN_MS);
        self.passages.retain(|_, times| {
            times.retain(|t| *t >= horizon);
            !times.is_empty()
        });
    }
}
