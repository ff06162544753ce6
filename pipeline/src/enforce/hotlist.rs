//! Hotlists: named watch lists of plates (stolen, unpaid fines, wanted), each entry
//! with a reason and an expiry. Every sighting is checked against them: an exact
//! match is a hit; a plate one character away from a listed one is only a possible
//! hit (a misread either way), for a person to look at and never a ticket.
//!
//! A wildcard index (the plate with one character replaced by `*`) finds those
//! neighbours with a handful of lookups instead of a scan of every list.

use egret_model::fast_hash::map_with_capacity;
use egret_model::{FastMap, Plate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A listed plate seen again within this long is the same hit, not a new one.
pub const REALERT_AFTER_MS: i64 = 30 * 60_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HotlistEntry {
    pub plate: String,
    pub reason: String,
    /// The entry stops applying at this instant; `None` never expires.
    #[serde(default)]
    pub expires_ms: Option<i64>,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
struct Entry {
    reason: String,
    expires_ms: Option<i64>,
}

impl Entry {
    fn applies_at(&self, ts_ms: i64) -> bool {
        self.expires_ms.is_none_or(|e| ts_ms < e)
    }
}

/// What one sighting matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub list: String,
    pub listed_plate: Plate,
    pub reason: String,
    pub exact: bool,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
pub struct Hotlists {
    /// The lists come from the hotlist board, which the pipeline follows, also after
    /// a restore: a checkpoint keeps only the recent hits.
    #[serde(skip)]
    lists: BTreeMap<String, FastMap<Plate, Entry>>,
    /// Wildcard key → (list, listed plate).
    #[serde(skip)]
    fuzzy: FastMap<[u8; 16], Vec<(String, Plate)>>,
    /// (list, plate) → time of the last hit, to hold back repeats.
    last_hit: FastMap<(String, Plate), i64>,
}

impl Hotlists {
    /// Keeps the recent hits of the plates `keep` accepts (see `rescale`); the
    /// lists themselves are every instance's.
    pub fn retain_plates(&mut self, keep: &dyn Fn(&Plate) -> bool) {
        self.last_hit.retain(|(_, plate), _| keep(plate));
    }

    /// Takes in another instance's recent hits.
    pub fn absorb(&mut self, other: Hotlists) {
        self.last_hit.extend(other.last_hit);
    }

    /// Replaces a whole list. Entries whose plate is not a plate are returned, not kept.
    pub fn set_list(&mut self, name: &str, entries: &[HotlistEntry]) -> Vec<String> {
        let mut bad = Vec::new();
        let mut list = map_with_capacity(entries.len());
        for e in entries {
            match Plate::parse(&e.plate) {
                Ok(p) => {
                    list.insert(p, Entry { reason: e.reason.clone(), expires_ms: e.expires_ms });
                }
                Err(_) => bad.push(e.plate.clone()),
            }
        }
        self.lists.insert(name.to_owned(), list);
        self.reindex();
        bad
    }

    pub fn remove_list(&mut self, name: &str) -> bool {
        let removed = self.lists.remove(name).is_some();
        self.reindex();
        removed
    }

    pub fn has_list(&self, name: &str) -> bool {
        self.lists.contains_key(name)
    }

    pub fn is_empty(&self) -> bool {
        self.lists.values().all(FastMap::is_empty)
    }

    fn reindex(&mut self) {
        self.fuzzy.clear();
        for (name, list) in &self.lists {
            for plate in list.keys() {
                for key in plate.wildcard_keys() {
                    self.fuzzy.entry(key).or_default().push((name.clone(), *plate));
                }
            }
        }
    }

    /// Matches of a sighting at `ts_ms` that are due an alert now (repeats within
    /// `REALERT_AFTER_MS` of the last hit are held back).
    pub fn check(&mut self, plate: Plate, ts_ms: i64) -> Vec<Match> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (name, list) in &self.lists {
            if let Some(e) = list.get(&plate).filter(|e| e.applies_at(ts_ms)) {
                out.push(Match { list: name.clone(), listed_plate: plate, reason: e.reason.clone(), exact: true });
            }
        }
        for key in plate.wildcard_keys() {
            for (name, listed) in self.fuzzy.get(&key).into_iter().flatten() {
                let entry = self.lists.get(name).and_then(|l| l.get(listed)).filter(|e| e.applies_at(ts_ms));
                if *listed != plate && let Some(e) = entry && !out.iter().any(|m| m.list == *name && m.listed_plate == *listed) {
                    out.push(Match { list: name.clone(), listed_plate: *listed, reason: e.reason.clone(), exact: false });
                }
            }
        }
        out.retain(|m| {
            let key = (m.list.clone(), if m.exact { m.listed_plate } else { plate });
            let due = self.last_hit.get(&key).is_none_or(|last| (ts_ms - last).abs() >= REALERT_AFTER_MS);
            if due {
                self.last_hit.insert(key, ts_ms);
            }
            due
        });
        out
    }

    /// Forgets hits older than `horizon_ms`.
    pub fn expire(&mut self, horizon_ms: i64) {
        self.last_hit.retain(|_, t| *t >= horizon_ms.saturating_sub(REALERT_AFTER_MS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plate(s: &str) -> Plate {
        Plate::parse(s).expect("plate")
    }

    fn lists() -> Hotlists {
        let mut h = Hotlists::default();
        let entries = [
            HotlistEntry { plate: "闽D12345".into(), reason: "stolen".into(), expires_ms: None },
            HotlistEntry { plate: "闽E88888".into(), reason: "unpaid".into(), expires_ms: Some(1_000_000) },
        ];
        assert!(h.set_list("stolen", &entries).is_empty());
        h
    }

    #[test]
    fn an_exact_match_hits_and_repeats_are_held_back_for_thirty_minutes() {
        let mut h = lists();
        let hits = h.check(plate("闽D12345"), 0);
        assert_eq!(hits.len(), 1);
        assert!(hits[0].exact);
        assert!(h.check(plate("闽D12345"), REALERT_AFTER_MS - 1).is_empty());
        assert_eq!(h.check(plate("闽D12345"), REALERT_AFTER_MS).len(), 1);
    }

    #[test]
    fn one_character_away_is_a_possible_hit_two_is_nothing() {
        let mut h = lists();
        let hits = h.check(plate("闽D12845"), 0);
        assert_eq!(hits.len(), 1);
        assert!(!hits[0].exact);
        assert_eq!(hits[0].listed_plate, plate("闽D12345"));
        assert!(h.check(plate("闽D17845"), 0).is_empty());
    }

    #[test]
    fn expired_entries_do_not_hit() {
        let mut h = lists();
        assert_eq!(h.check(plate("闽E88888"), 999_999).len(), 1);
        let mut h = lists();
        assert!(h.check(plate("闽E88888"), 1_000_000).is_empty());
    }

    #[test]
    fn a_bad_plate_in_a_list_is_reported_not_kept() {
        let mut h = Hotlists::default();
        let bad = h.set_list("x", &[HotlistEntry { plate: "not a plate".into(), reason: "r".into(), expires_ms: None }]);
        assert_eq!(bad, vec!["not a plate".to_owned()]);
        assert!(h.is_empty());
    }
}
