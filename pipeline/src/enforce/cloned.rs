//! Cloned plates: two vehicles behind one plate. Either the plate is read with two
//! RFID tags, each at least twice within 45 minutes, or its reads fall into two
//! groups (at least two reads each) that no vehicle could drive between. A single
//! misread never qualifies: it is one read, not two. One offence per plate and day.

use super::Tickets;
use super::violation::{Evidence, Sighting, Violation, ViolationKind, violation_id};
use crate::matcher::Read;
use egret_model::city::haversine_m;
use egret_model::time::local_day;
use egret_model::{CityModel, Plate};
use egret_model::{FastMap, FastSet};

/// Two sightings this close are never called impossible travel (clock and
/// position error).
const MIN_CLONE_DISTANCE_M: f64 = 2_000.0;
/// Two tags of one plate count as two vehicles when each was read twice this close.
pub const CLONE_WINDOW_MS: i64 = 45 * 60_000;
/// Read times kept per tag of a plate seen with several tags.
const TAG_READS_KEPT: usize = 4;

#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
pub struct ClonedPlates {
    /// Plates read with more than one RFID tag: per tag, its recent read times. Only
    /// such plates (clones, and misreads that hit a real plate) are here.
    multi_tag: FastMap<Plate, Vec<(u32, Vec<i64>)>>,
    /// (plate, local day) already ticketed.
    days: FastSet<(Plate, i64)>,
}

impl ClonedPlates {
    /// Keeps the plates `keep` accepts (see `rescale`).
    pub fn retain_plates(&mut self, keep: &dyn Fn(&Plate) -> bool) {
        self.multi_tag.retain(|plate, _| keep(plate));
        self.days.retain(|(plate, _)| keep(plate));
    }

    /// Takes in another instance's plates.
    pub fn absorb(&mut self, other: ClonedPlates) {
        self.multi_tag.extend(other.multi_tag);
        self.days.extend(other.days);
    }

    /// Follows the tags of a plate once its recent reads show more than one.
    fn track_tags(&mut self, plate: Plate, read: &Read, recent: &[Read]) {
        if read.tag == 0 {
            return;
        }
        if let Some(tags) = self.multi_tag.get_mut(&plate) {
            match tags.iter_mut().find(|(t, _)| *t == read.tag) {
                Some((_, times)) => {
                    times.push(read.ts_ms);
                    if times.len() > TAG_READS_KEPT {
                        times.remove(0);
                    }
                }
                None => tags.push((read.tag, vec![read.ts_ms])),
            }
        } else if recent.iter().any(|r| r.tag != 0 && r.tag != read.tag) {
            let mut tags: Vec<(u32, Vec<i64>)> = Vec::new();
            for r in recent.iter().filter(|r| r.tag != 0) {
                match tags.iter_mut().find(|(t, _)| *t == r.tag) {
                    Some((_, times)) => times.push(r.ts_ms),
                    None => tags.push((r.tag, vec![r.ts_ms])),
                }
            }
            self.multi_tag.insert(plate, tags);
        }
    }

    /// Checks a plate after a new read (`recent` holds it); tickets a clone.
    /// Two vehicles behind one plate: two RFID tags each read at least twice, or two
    /// groups of reads (at least two each) that no vehicle could drive between. A
    /// single misread never qualifies: it is one read, not two.
    pub fn check(&mut self, city: &CityModel, plate: Plate, read: &Read, recent: &[Read], sighting: impl Fn(&Read) -> Sighting, out: &mut Tickets) {
        self.track_tags(plate, read, recent);
        let rule = &city.rules.cloned_plate;
        let Some(newest) = recent.iter().map(|r| r.ts_ms).max() else { return };
        let day = local_day(newest, city.rules.timezone_offset_minutes);
        if self.days.contains(&(plate, day)) {
            return;
        }
        let tags = self.multi_tag.get(&plate).map_or(&[][..], Vec::as_slice);
        let read_twice = |times: &Vec<i64>| times.iter().filter(|t| newest - **t <= CLONE_WINDOW_MS).count() >= 2;
        let tag_count = tags.len();
        let two_tags = tags.iter().filter(|(_, times)| read_twice(times)).count() >= 2;
        // Two groups of at least two reads need four reads: fewer, and the search
        // (a great-circle distance per pair, after every read) is skipped.
        let (impossible, fastest_kmh) = if recent.len() >= 4 {
            let (groups, fastest_kmh) = travel_groups(city, recent, rule.max_plausible_kmh);
            (groups.iter().filter(|size| **size >= 2).count() >= 2, fastest_kmh)
        } else {
            (false, 0.0)
        };
        if !two_tags && !impossible {
            return;
        }
        self.days.insert((plate, day));
        let sightings: Vec<Sighting> = recent.iter().map(sighting).collect();
        let plate_s = plate.to_string();
        let summary = if two_tags {
            format!("{plate_s} read with {tag_count} different RFID tags, two of them at least twice within 45 min")
        } else {
            format!("{plate_s} seen in two places linked only at {fastest_kmh:.0} km/h (limit of plausibility {} km/h)", rule.max_plausible_kmh)
        };
        out.violations.push(Violation {
            violation_id: violation_id(ViolationKind::ClonedPlate, &plate_s, &rule.rule_id, &day.to_string()),
            kind: ViolationKind::ClonedPlate,
            plate: plate_s,
            ts_ms: newest,
            location: sightings.last().map(|s| s.device_id.clone()).unwrap_or_default(),
            measured: if impossible { fastest_kmh } else { tag_count as f64 },
            limit: rule.max_plausible_kmh,
            rule_id: rule.rule_id.clone(),
            rule_version: rule.rule_version,
            evidence: Evidence { summary, sightings, reason: Some(if two_tags { "two_tags" } else { "impossible_travel" }.into()), ..Evidence::default() },
        });
    }

    /// Forgets plates and days no later read can involve.
    pub fn expire(&mut self, watermark_ms: i64, today: i64) {
        let horizon = watermark_ms.saturating_sub(CLONE_WINDOW_MS);
        self.multi_tag.retain(|_, tags| tags.iter().any(|(_, times)| times.iter().any(|t| *t >= horizon)));
        self.days.retain(|(_, day)| *day >= today - 1);
    }
}

/// Splits time-ordered reads into groups a vehicle could drive between (each read
/// joins the group whose latest read it continues at the lowest speed, if that is
/// plausible): each group's size, and the speed the most implausible new group
/// would have needed. A group is kept as its latest read and size, since joining
/// needs no more; this runs after every read of a plate.
fn travel_groups(city: &CityModel, reads: &[Read], max_kmh: f64) -> (Vec<usize>, f64) {
    let reachable = |a: &Read, b: &Read| {
        let (ra, rb) = (city.reader(a.reader), city.reader(b.reader));
        let metres = haversine_m([ra.lon, ra.lat], [rb.lon, rb.lat]);
        let secs = ((b.ts_ms - a.ts_ms).abs() as f64 / 1000.0).max(0.001);
        (metres < MIN_CLONE_DISTANCE_M || metres / secs * 3.6 <= max_kmh, metres / secs * 3.6)
    };
    let mut groups: Vec<(Read, usize)> = Vec::with_capacity(reads.len());
    let mut fastest: f64 = 0.0;
    for r in reads {
        // Join the group this read most naturally continues (the slowest link).
        let best = groups.iter().enumerate().map(|(i, (last, _))| (i, reachable(last, r))).min_by(|(_, (_, a)), (_, (_, b))| a.total_cmp(b));
        match best {
            Some((i, (true, _))) => groups[i] = (*r, groups[i].1 + 1),
            Some((_, (false, kmh))) => {
                fastest = fastest.max(kmh);
                groups.push((*r, 1));
            }
            None => groups.push((*r, 1)),
        }
    }
    (groups.into_iter().map(|(_, size)| size).collect(), fastest)
}
