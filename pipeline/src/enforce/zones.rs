//! Zone restrictions (hazardous goods in the tunnel, trucks on the island at peak
//! hours…): once per rule, plate and local day, at the first proof within the
//! rule's hours that a vehicle of a restricted class was in the zone.
//!
//! The evidence standard is two reads of the vehicle's tag: a traversal of a zone
//! segment, or a read at a gantry standing inside the zone plus another read of
//! the same tag and plate within 15 minutes, before or after (a lone read may carry
//! a misread plate and would name the wrong vehicle). A pass inside a zone waits up
//! to 15 minutes of event time for that second read; a read of the same tag with
//! another plate shows one of them misread and drops it. A bridged traversal
//! covers both its segments and must be within the hours at both ends (the time at
//! the missed gantry is not known).

use super::Tickets;
use crate::sweep::Horizon;
use super::violation::{Evidence, Sighting, Violation, ViolationKind, violation_id};
use crate::matcher::{Read, Traversal};
use egret_model::time::in_hours;
use egret_model::time::local_day;
use egret_model::{CityModel, Plate, SegmentIdx, VehicleClass};
use egret_model::{FastMap, FastSet};

/// How long a pass inside a zone waits for a second read of its tag.
pub const HOLD_LONE_READ_MS: i64 = 15 * 60_000;

#[derive(serde::Serialize, serde::Deserialize)]
struct Held {
    ticket: Violation,
    rule: usize,
    tag: u32,
    day: i64,
    release_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
pub struct ZoneRules {
    /// (rule, plate, local day) already ticketed.
    daily: FastSet<(usize, Plate, i64)>,
    /// The plate each tag was last read with, and when.
    tag_plates: FastMap<u32, (Plate, i64)>,
    /// Tags seen with two plates recently: their lone reads prove nothing.
    doubtful_tags: FastMap<u32, i64>,
    /// `tag_plates` and `doubtful_tags` forget entries older than this; they hold a
    /// tag per vehicle, so they are swept once a minute (see `sweep`).
    #[serde(default)]
    tags_horizon: Horizon,
    /// Passes inside a zone waiting for a second read of their tag, by plate: every
    /// tagged read looks its plate's up, so a scan of them all would be paid per read.
    held: FastMap<Plate, Vec<Held>>,
}

/// Rule `i` keeps `class` out. Checked before any evidence is built: nearly every
/// vehicle is of a class the zone allows.
fn restricts(city: &CityModel, i: usize, class: VehicleClass) -> bool {
    city.rules.restrictions[i].classes.contains(&class)
}

/// A ticket under rule `i`; `None` when the class is not restricted by it.
#[allow(clippy::too_many_arguments)]
fn ticket(city: &CityModel, i: usize, plate: Plate, class: VehicleClass, ts_ms: i64, day: i64, location: &str, sightings: Vec<Sighting>, how: &str) -> Option<Violation> {
    let rule = &city.rules.restrictions[i];
    if !restricts(city, i, class) {
        return None;
    }
    let zone = city.rules.zones.iter().find(|z| z.zone_id == rule.zone_id).map_or(rule.zone_id.as_str(), |z| z.name.as_str());
    let plate = plate.to_string();
    Some(Violation {
        violation_id: violation_id(ViolationKind::RestrictedVehicle, &plate, &rule.rule_id, &day.to_string()),
        kind: ViolationKind::RestrictedVehicle,
        plate: plate.clone(),
        ts_ms,
        location: location.to_owned(),
        measured: 0.0,
        limit: 0.0,
        rule_id: rule.rule_id.clone(),
        rule_version: rule.rule_version,
        evidence: Evidence {
            summary: format!("{plate}, registered as {}, {how} ({zone}, within the rule's hours)", class.as_str()),
            sightings,
            vehicle_class: Some(class.as_str().to_owned()),
            ..Evidence::default()
        },
    })
}

impl ZoneRules {
    /// Keeps the held passes and tickets of the day of the plates `keep` accepts
    /// (see `rescale`); the tags' plates span partitions and are every instance's.
    pub fn retain_plates(&mut self, keep: &dyn Fn(&Plate) -> bool) {
        self.daily.retain(|(_, plate, _)| keep(plate));
        self.held.retain(|plate, _| keep(plate));
    }

    /// Takes in another instance's held passes and tickets of the day.
    pub fn absorb(&mut self, other: ZoneRules) {
        self.daily.extend(other.daily);
        self.held.extend(other.held);
    }

    fn issue(&mut self, v: Violation, rule: usize, plate: Plate, day: i64, out: &mut Tickets) {
        if self.daily.insert((rule, plate, day)) {
            self.take_held(plate, |h| h.rule == rule && h.day == day);
            out.violations.push(v);
        }
    }

    /// Removes and returns the plate's held passes that `wanted` picks, in the order held.
    fn take_held(&mut self, plate: Plate, wanted: impl Fn(&Held) -> bool) -> Vec<Held> {
        let Some(list) = self.held.get_mut(&plate) else { return Vec::new() };
        let (taken, kept): (Vec<Held>, Vec<Held>) = std::mem::take(list).into_iter().partition(|h| wanted(h));
        if kept.is_empty() {
            self.held.remove(&plate);
        } else {
            *list = kept;
        }
        taken
    }

    /// Ticketed already today, or waiting for a second read.
    fn settled(&self, rule: usize, plate: Plate, day: i64) -> bool {
        self.daily.contains(&(rule, plate, day)) || self.held.get(&plate).is_some_and(|list| list.iter().any(|h| h.rule == rule && h.day == day))
    }

    pub fn on_traversal(&mut self, city: &CityModel, t: &Traversal, sighting: impl Fn(&Read) -> Sighting, out: &mut Tickets) {
        let tz = city.rules.timezone_offset_minutes;
        let both_ends = [t.enter_ms, t.exit_ms];
        let instants = if t.via.is_some() { &both_ends[..] } else { &both_ends[1..] };
        let applicable: Vec<(SegmentIdx, usize)> = std::iter::once(t.segment)
            .chain(t.via)
            .flat_map(|s| city.restrictions_on(s).iter().map(move |(i, hours)| (s, *i, hours)))
            .filter(|(_, i, hours)| restricts(city, *i, t.class) && instants.iter().all(|ts| in_hours(hours, *ts, tz)))
            .map(|(s, i, _)| (s, i))
            .collect();
        let day = local_day(t.exit_ms, tz);
        for (s, i) in applicable {
            // A vehicle ticketed today drives on: no evidence is built for it again.
            if self.daily.contains(&(i, t.plate, day)) {
                continue;
            }
            let segment = &city.segment(s).segment_id;
            let sightings = vec![sighting(&t.from), sighting(&t.to)];
            let how = format!("drove {segment} from {} to {}", sightings[0].device_id, sightings[1].device_id);
            if let Some(v) = ticket(city, i, t.plate, t.class, t.exit_ms, day, segment, sightings, &how) {
                self.issue(v, i, t.plate, day, out);
            }
        }
    }

    /// A tagged read at a gantry, of any plate, before `on_read`: a tag read with two
    /// plates casts doubt on both. Every instance observes every read (see
    /// `ownership`): the tag's plates arrive on different partitions, and the held
    /// passes it drops are there only on the instance that owns their plate.
    pub fn observe_tag(&mut self, plate: Plate, read: &Read) {
        if read.tag == 0 {
            return;
        }
        let horizon = self.tags_horizon;
        // One probe of a large map, which the lookup and the update share.
        let last = self.tag_plates.entry(read.tag).or_insert((plate, read.ts_ms));
        let other = Some(*last).filter(|(p, ts)| *p != plate && horizon.keeps(*ts));
        *last = (plate, read.ts_ms);
        if let Some((other, _)) = other {
            self.take_held(other, |h| h.tag == read.tag);
            self.doubtful_tags.insert(read.tag, read.ts_ms);
        }
    }

    /// A read of a plate this instance owns, once `observe_tag` has seen it: checks
    /// held tickets against its tag, then the zones its gantry stands in. `recent`
    /// are the plate's reads (this one among them).
    #[allow(clippy::too_many_arguments)]
    pub fn on_read(&mut self, city: &CityModel, plate: Plate, class: VehicleClass, read: &Read, recent: &[Read], sighting: impl Fn(&Read) -> Sighting, out: &mut Tickets) {
        let tz = city.rules.timezone_offset_minutes;
        if read.tag != 0 {
            // The same tag and plate again: a held ticket is confirmed.
            let confirmed = self.take_held(plate, |h| h.tag == read.tag && (read.ts_ms - h.ticket.ts_ms).abs() <= HOLD_LONE_READ_MS);
            for mut h in confirmed.into_iter().rev() {
                let again = sighting(read);
                h.ticket.evidence.summary.push_str(&format!("; the same tag read again with this plate by {}", again.device_id));
                h.ticket.evidence.sightings.push(again);
                self.issue(h.ticket, h.rule, plate, h.day, out);
            }
        }
        // A lone read proves nothing without a tag to find again, or with a doubtful one.
        if read.tag == 0 || self.doubtful_tags.get(&read.tag).is_some_and(|ts| self.tags_horizon.keeps(*ts)) {
            return;
        }
        let day = local_day(read.ts_ms, tz);
        let rules: Vec<usize> =
            city.restrictions_at(read.reader).iter().filter(|(i, h)| restricts(city, *i, class) && in_hours(h, read.ts_ms, tz)).map(|(i, _)| *i).collect();
        for i in rules {
            if self.settled(i, plate, day) {
                continue;
            }
            let s = sighting(read);
            let how = format!("was read by {}, which stands inside the zone", s.device_id);
            let location = s.device_id.clone();
            let Some(mut v) = ticket(city, i, plate, class, read.ts_ms, day, &location, vec![s], &how) else { continue };
            // Another read of the same tag and plate already confirms it.
            if let Some(other) = recent.iter().find(|r| r.tag == read.tag && *r != read && (r.ts_ms - read.ts_ms).abs() <= HOLD_LONE_READ_MS) {
                let again = sighting(other);
                v.evidence.summary.push_str(&format!("; the same tag read with this plate by {}", again.device_id));
                v.evidence.sightings.push(again);
                self.issue(v, i, plate, day, out);
                continue;
            }
            self.held.entry(plate).or_default().push(Held { ticket: v, rule: i, tag: read.tag, day, release_ms: read.ts_ms + HOLD_LONE_READ_MS });
        }
    }

    /// Drops passes no second read came for; forgets what no later read needs.
    pub fn expire(&mut self, watermark_ms: i64, today: i64) {
        self.held.retain(|_, list| {
            list.retain(|h| h.release_ms > watermark_ms);
            !list.is_empty()
        });
        if self.tags_horizon.advance(watermark_ms.saturating_sub(HOLD_LONE_READ_MS)) {
            let horizon = self.tags_horizon;
            self.tag_plates.retain(|_, (_, ts)| horizon.keeps(*ts));
            self.doubtful_tags.retain(|_, ts| horizon.keeps(*ts));
        }
        self.daily.retain(|(_, _, day)| *day >= today - 1);
    }
}

#[cfg(test)]
mod tests {
    //! The tag memory is swept once a minute of event time: between sweeps, what it
    //! has forgotten must count as gone (see `sweep`).
    use super::*;
    use egret_model::ReaderIdx;

    /// Monday 2026-11-30 07:45 local time, in the island's truck ban.
    const T0: i64 = 1_795_995_900_000;
    const TAG: u32 = 7;

    struct Scene {
        city: CityModel,
        zones: ZoneRules,
        out: Tickets,
        inside: ReaderIdx,
        outside: ReaderIdx,
    }

    impl Scene {
        /// The scene just after `闽D71009` was read with the tag at `old` (returned),
        /// less than a minute of horizon after the tag memory's last sweep.
        fn with_another_plate_read_long_ago() -> (Scene, i64) {
            let mut s = Scene::new();
            let old = T0 - HOLD_LONE_READ_MS - 60_000;
            s.forget_before(old - 30_000);
            s.read(s.outside, "闽D71009", old, &[]);
            (s, old)
        }

        fn new() -> Scene {
            let city = crate::repo_city();
            let ban = city.rules.restrictions.iter().position(|r| r.rule_id == "R-TRUCK-ISLAND-PEAK").expect("truck ban");
            let inside = (0..city.readers.len() as u32)
                .map(ReaderIdx)
                .find(|r| city.gate(*r).is_none() && city.restrictions_at(*r).iter().any(|(i, _)| *i == ban))
                .expect("a gantry inside the island");
            let outside = city.reader_idx("XM-R0022").expect("Haicang Bridge K1.6");
            Scene { city, zones: ZoneRules::default(), out: Tickets::default(), inside, outside }
        }

        /// A read of `plate` with the tag; `earlier` are the plate's reads before it.
        fn read(&mut self, reader: ReaderIdx, plate: &str, ts_ms: i64, earlier: &[Read]) -> Read {
            let read = Read { reader, clock_delta_ms: 0, ts_ms, offset: 0, partition: 0, uncertainty_ms: 0, tag: TAG };
            let recent: Vec<Read> = earlier.iter().copied().chain([read]).collect();
            let city = &self.city;
            let plate = Plate::parse(plate).expect("plate");
            self.zones.observe_tag(plate, &read);
            self.zones.on_read(city, plate, VehicleClass::Truck, &read, &recent, |r| super::super::read_sighting(city, "reads", r), &mut self.out);
            read
        }

        fn ticketed_plates(&self) -> Vec<&str> {
            self.out.violations.iter().map(|v| v.plate.as_str()).collect()
        }

        /// Moves the watermark so that tag reads before `horizon_ms` are forgotten.
        fn forget_before(&mut self, horizon_ms: i64) {
            self.zones.expire(horizon_ms + HOLD_LONE_READ_MS, local_day(horizon_ms, self.city.rules.timezone_offset_minutes));
        }
    }

    #[test]
    fn a_tag_forgotten_but_not_swept_casts_no_doubt_on_another_plate() {
        let (mut s, old) = Scene::with_another_plate_read_long_ago();
        s.forget_before(old + 1);
        assert!(s.zones.tag_plates.contains_key(&TAG), "less than a minute after the last sweep: not swept");
        let inside = s.read(s.inside, "闽D71001", T0, &[]);
        s.read(s.outside, "闽D71001", T0 + 2 * 60_000, &[inside]);
        assert_eq!(s.ticketed_plates(), ["闽D71001"], "the other plate's read was more than 15 min before");
    }

    #[test]
    fn a_doubt_forgotten_but_not_swept_blocks_no_ticket() {
        let (mut s, old) = Scene::with_another_plate_read_long_ago();
        let first = s.read(s.outside, "闽D71001", old + 1_000, &[]);
        let second = s.read(s.outside, "闽D71001", T0 - 5 * 60_000, &[first]);
        s.forget_before(old + 2_000);
        assert!(s.zones.doubtful_tags.contains_key(&TAG), "less than a minute after the last sweep: not swept");
        s.read(s.inside, "闽D71001", T0, &[first, second]);
        assert_eq!(s.ticketed_plates(), ["闽D71001"], "the two plates were seen on the tag more than 15 min before");
    }
}
