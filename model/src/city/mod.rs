//! The city model: readers, road segments, cameras, parking lots, bus routes and
//! rules, loaded from `data/` at start and indexed for the hot path.
//!
//! Ids in events are strings; the pipeline works on dense indices (`ReaderIdx`,
//! `SegmentIdx`) resolved once at validation, so state tables are plain vectors.

mod files;
mod geo;
mod graph;
mod rules;

pub use files::*;
pub use geo::{haversine_m, point_along};
pub use graph::{GraphPath, RoadGraph};
pub use rules::*;

use crate::time::HourRange;
use crate::fast_hash::{FastMap, map_with_capacity};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ReaderIdx(pub u32);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct SegmentIdx(pub u32);

/// A city model that failed to load: which file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum CityError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is malformed: {message}")]
    Parse { path: String, message: String },
    #[error("city data is inconsistent: {0}")]
    Invalid(String),
}

/// The loaded, validated and indexed city.
#[derive(Debug)]
pub struct CityModel {
    pub version: String,
    pub readers: Vec<Reader>,
    pub segments: Vec<Segment>,
    pub cameras: Vec<Camera>,
    pub lots: Vec<Lot>,
    pub routes: Vec<Route>,
    pub rules: RulesFile,
    reader_by_id: FastMap<String, ReaderIdx>,
    segment_by_id: FastMap<String, SegmentIdx>,
    camera_by_id: FastMap<String, u32>,
    lot_by_id: FastMap<String, u32>,
    route_by_id: FastMap<String, u32>,
    segment_by_ends: FastMap<(ReaderIdx, ReaderIdx), SegmentIdx>,
    /// Per segment: its (from, to) gantries, asked for on every read.
    segment_ends: Vec<(ReaderIdx, ReaderIdx)>,
    outgoing: Vec<Vec<SegmentIdx>>,
    /// For parking gate readers: (lot index, is entry).
    gate_of_reader: Vec<Option<(u32, bool)>>,
    /// Per segment: (restriction index, parsed hours) of the zone rules on it.
    segment_restrictions: Vec<Vec<(usize, Vec<HourRange>)>>,
    /// Per gantry: the same for the zones it stands inside (every segment that
    /// starts or ends at it is in the zone), where a read proves presence.
    reader_restrictions: Vec<Vec<(usize, Vec<HourRange>)>>,
}

type Restrictions = Vec<Vec<(usize, Vec<HourRange>)>>;

/// The zone restrictions that apply on each segment and at each gantry standing
/// inside a zone, with their hours parsed.
fn restriction_places(rules: &RulesFile, segment_by_id: &FastMap<String, SegmentIdx>, ends: &[(ReaderIdx, ReaderIdx)], readers: usize) -> Result<(Restrictions, Restrictions), CityError> {
    let mut on_segment = vec![Vec::new(); ends.len()];
    let mut at_reader = vec![Vec::new(); readers];
    for (i, r) in rules.restrictions.iter().enumerate() {
        let hours = parse_hours(&r.rule_id, &r.hours).map_err(CityError::Invalid)?;
        for zone in rules.zones.iter().filter(|z| z.zone_id == r.zone_id) {
            let mut in_zone = vec![false; ends.len()];
            for s in zone.segments.iter().filter_map(|s| segment_by_id.get(s)) {
                on_segment[s.0 as usize].push((i, hours.clone()));
                in_zone[s.0 as usize] = true;
            }
            // A gantry is inside when no segment outside the zone touches it.
            let mut touches_outside = vec![false; readers];
            let mut touches = vec![false; readers];
            for (s, (from, to)) in ends.iter().enumerate() {
                for r in [from, to] {
                    touches[r.0 as usize] = true;
                    touches_outside[r.0 as usize] |= !in_zone[s];
                }
            }
            for (reader, slot) in at_reader.iter_mut().enumerate() {
                if touches[reader] && !touches_outside[reader] {
                    slot.push((i, hours.clone()));
                }
            }
        }
    }
    Ok((on_segment, at_reader))
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<T, CityError> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|source| CityError::Io { path: path.display().to_string(), source })?;
    serde_json::from_str(&text).map_err(|e| CityError::Parse { path: path.display().to_string(), message: e.to_string() })
}

fn index<T>(items: &[T], id: impl Fn(&T) -> &str, what: &str) -> Result<FastMap<String, u32>, CityError> {
    let mut map = map_with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if map.insert(id(item).to_owned(), i as u32).is_some() {
            return Err(CityError::Invalid(format!("duplicate {what} id {}", id(item))));
        }
    }
    Ok(map)
}

impl CityModel {
    /// Loads `city/*.json` and `rules.toml` from a data directory (the repo's `data/`).
    pub fn load(data_dir: &Path) -> Result<CityModel, CityError> {
        let readers: ReadersFile = read_json(&data_dir.join("city"), "readers.json")?;
        let segments: SegmentsFile = read_json(&data_dir.join("city"), "segments.json")?;
        let cameras: CamerasFile = read_json(&data_dir.join("city"), "cameras.json")?;
        let lots: LotsFile = read_json(&data_dir.join("city"), "parking.json")?;
        let routes: RoutesFile = read_json(&data_dir.join("city"), "routes.json")?;
        let rules_path = data_dir.join("rules.toml");
        let rules_text = std::fs::read_to_string(&rules_path)
            .map_err(|source| CityError::Io { path: rules_path.display().to_string(), source })?;
        let rules: RulesFile = toml::from_str(&rules_text)
            .map_err(|e| CityError::Parse { path: rules_path.display().to_string(), message: e.to_string() })?;
        Self::build(readers.version, readers.readers, segments.segments, cameras.cameras, lots.lots, routes.routes, rules)
    }

    fn build(
        version: String,
        readers: Vec<Reader>,
        segments: Vec<Segment>,
        cameras: Vec<Camera>,
        lots: Vec<Lot>,
        routes: Vec<Route>,
        rules: RulesFile,
    ) -> Result<CityModel, CityError> {
        let reader_by_id: FastMap<String, ReaderIdx> =
            index(&readers, |r| &r.reader_id, "reader")?.into_iter().map(|(k, v)| (k, ReaderIdx(v))).collect();
        let segment_by_id: FastMap<String, SegmentIdx> =
            index(&segments, |s| &s.segment_id, "segment")?.into_iter().map(|(k, v)| (k, SegmentIdx(v))).collect();
        let camera_by_id = index(&cameras, |c| &c.camera_id, "camera")?;
        let lot_by_id = index(&lots, |l| &l.lot_id, "lot")?;
        let route_by_id = index(&routes, |r| &r.route_id, "route")?;

        let reader = |id: &str, by: &str| {
            reader_by_id.get(id).copied().ok_or_else(|| CityError::Invalid(format!("{by} names unknown reader {id}")))
        };
        let segment = |id: &str, by: &str| {
            segment_by_id.get(id).copied().ok_or_else(|| CityError::Invalid(format!("{by} names unknown segment {id}")))
        };

        let mut segment_by_ends = map_with_capacity(segments.len());
        let mut outgoing = vec![Vec::new(); readers.len()];
        for (i, s) in segments.iter().enumerate() {
            let (from, to) = (reader(&s.from_reader_id, &s.segment_id)?, reader(&s.to_reader_id, &s.segment_id)?);
            if s.length_m == 0 || s.free_flow_kmh <= 0.0 || s.speed_limit_kmh == 0 {
                return Err(CityError::Invalid(format!("segment {} needs positive length and speeds", s.segment_id)));
            }
            if segment_by_ends.insert((from, to), SegmentIdx(i as u32)).is_some() {
                return Err(CityError::Invalid(format!("two segments join {} to {}", s.from_reader_id, s.to_reader_id)));
            }
            outgoing[from.0 as usize].push(SegmentIdx(i as u32));
        }
        for c in &cameras {
            let s = segment(&c.segment_id, &c.camera_id)?;
            if c.offset_m > segments[s.0 as usize].length_m {
                return Err(CityError::Invalid(format!("camera {} offset beyond its segment", c.camera_id)));
            }
        }
        let mut gate_of_reader = vec![None; readers.len()];
        for (i, l) in lots.iter().enumerate() {
            segment(&l.segment_id, &l.lot_id)?;
            gate_of_reader[reader(&l.entry_reader_id, &l.lot_id)?.0 as usize] = Some((i as u32, true));
            gate_of_reader[reader(&l.exit_reader_id, &l.lot_id)?.0 as usize] = Some((i as u32, false));
        }
        for r in &routes {
            for d in &r.directions {
                let path: Vec<SegmentIdx> = d.segments.iter().map(|s| segment(s, &r.route_id)).collect::<Result<_, _>>()?;
                for pair in path.windows(2) {
                    let (a, b) = (&segments[pair[0].0 as usize], &segments[pair[1].0 as usize]);
                    if a.to_reader_id != b.from_reader_id {
                        return Err(CityError::Invalid(format!("route {} breaks between {} and {}", r.route_id, a.segment_id, b.segment_id)));
                    }
                }
                for stop in &d.stops {
                    if !d.segments.contains(&stop.segment_id) {
                        return Err(CityError::Invalid(format!("stop {} is off route {}", stop.stop_id, r.route_id)));
                    }
                }
            }
        }
        for z in &rules.zones {
            for s in &z.segments {
                segment(s, &z.zone_id)?;
            }
        }
        for b in &rules.bus_lanes {
            for s in &b.segments {
                segment(s, &b.bus_lane_id)?;
            }
            parse_hours(&b.rule_id, &b.hours).map_err(CityError::Invalid)?;
        }
        for r in &rules.restrictions {
            if !rules.zones.iter().any(|z| z.zone_id == r.zone_id) {
                return Err(CityError::Invalid(format!("rule {} names unknown zone {}", r.rule_id, r.zone_id)));
            }
            parse_hours(&r.rule_id, &r.hours).map_err(CityError::Invalid)?;
        }
        let ends: Vec<(ReaderIdx, ReaderIdx)> =
            segments.iter().map(|s| (reader_by_id[s.from_reader_id.as_str()], reader_by_id[s.to_reader_id.as_str()])).collect();
        let (segment_restrictions, reader_restrictions) = restriction_places(&rules, &segment_by_id, &ends, readers.len())?;
        Ok(CityModel {
            segment_restrictions,
            reader_restrictions,
            version,
            readers,
            segments,
            cameras,
            lots,
            routes,
            rules,
            reader_by_id,
            segment_by_id,
            camera_by_id,
            lot_by_id,
            route_by_id,
            segment_by_ends,
            segment_ends: ends,
            outgoing,
            gate_of_reader,
        })
    }

    pub fn reader_idx(&self, id: &str) -> Option<ReaderIdx> {
        self.reader_by_id.get(id).copied()
    }
    pub fn segment_idx(&self, id: &str) -> Option<SegmentIdx> {
        self.segment_by_id.get(id).copied()
    }
    pub fn camera_idx(&self, id: &str) -> Option<u32> {
        self.camera_by_id.get(id).copied()
    }
    pub fn lot_idx(&self, id: &str) -> Option<u32> {
        self.lot_by_id.get(id).copied()
    }
    pub fn route_idx(&self, id: &str) -> Option<u32> {
        self.route_by_id.get(id).copied()
    }
    pub fn reader(&self, idx: ReaderIdx) -> &Reader {
        &self.readers[idx.0 as usize]
    }
    pub fn segment(&self, idx: SegmentIdx) -> &Segment {
        &self.segments[idx.0 as usize]
    }
    /// The directed segment from one gantry straight to the next, if they are adjacent.
    pub fn segment_between(&self, from: ReaderIdx, to: ReaderIdx) -> Option<SegmentIdx> {
        self.segment_by_ends.get(&(from, to)).copied()
    }
    /// The only two-segment path from one gantry to another, if there is exactly one:
    /// a vehicle read at both ends drove it, even if the middle gantry missed it.
    pub fn two_hop(&self, from: ReaderIdx, to: ReaderIdx) -> Option<(SegmentIdx, SegmentIdx)> {
        let mut found = None;
        for &first in self.outgoing(from) {
            if let Some(second) = self.segment_between(self.segment_to(first), to) {
                if found.is_some() {
                    return None;
                }
                found = Some((first, second));
            }
        }
        found
    }

    /// (restriction index, hours) of the zone rules that apply on a segment.
    pub fn restrictions_on(&self, s: SegmentIdx) -> &[(usize, Vec<HourRange>)] {
        &self.segment_restrictions[s.0 as usize]
    }

    /// (restriction index, hours) of the zone rules that apply at a gantry standing
    /// inside their zone.
    pub fn restrictions_at(&self, reader: ReaderIdx) -> &[(usize, Vec<HourRange>)] {
        &self.reader_restrictions[reader.0 as usize]
    }

    /// Where a vehicle that drove `segment` must go next, if there is one way on
    /// (turning straight back aside).
    pub fn continuation(&self, segment: SegmentIdx) -> Option<SegmentIdx> {
        let back = self.segment_from(segment);
        let mut ways = self.outgoing(self.segment_to(segment)).iter().filter(|s| self.segment_to(**s) != back);
        match (ways.next(), ways.next()) {
            (Some(only), None) => Some(*only),
            _ => None,
        }
    }

    /// Segments leaving a gantry.
    pub fn outgoing(&self, from: ReaderIdx) -> &[SegmentIdx] {
        &self.outgoing[from.0 as usize]
    }
    /// Ids of the parking gate readers (not road gantries).
    pub fn gate_reader_ids(&self) -> std::collections::HashSet<String> {
        self.lots.iter().flat_map(|l| [l.entry_reader_id.clone(), l.exit_reader_id.clone()]).collect()
    }

    /// For a parking gate reader: its lot index and whether it is the entry gate.
    pub fn gate(&self, reader: ReaderIdx) -> Option<(u32, bool)> {
        self.gate_of_reader[reader.0 as usize]
    }
    pub fn segment_from(&self, s: SegmentIdx) -> ReaderIdx {
        self.segment_ends[s.0 as usize].0
    }
    pub fn segment_to(&self, s: SegmentIdx) -> ReaderIdx {
        self.segment_ends[s.0 as usize].1
    }
}
