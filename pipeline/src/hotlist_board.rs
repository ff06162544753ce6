//! Police hotlists as edited through the API, shared between the API (which writes
//! them) and the pipeline (which follows them). Each list carries the version of
//! its last edit, so the pipeline re-indexes only the lists that changed, between
//! two batches, and never waits on the API.

use crate::enforce::hotlist::HotlistEntry;
use crate::stage1::Stage1;
use parking_lot::RwLock;
use std::collections::BTreeMap;

/// One named list as the board holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardList {
    pub entries: Vec<HotlistEntry>,
    /// The board version of the edit that made this list what it is.
    pub version: u64,
}

#[derive(Debug, Default)]
struct Inner {
    version: u64,
    lists: BTreeMap<String, BoardList>,
}

#[derive(Debug, Default)]
pub struct HotlistBoard {
    inner: RwLock<Inner>,
}

impl HotlistBoard {
    /// Replaces (or creates) a list. The caller has checked that every plate parses.
    pub fn put(&self, name: &str, entries: Vec<HotlistEntry>) {
        let mut inner = self.inner.write();
        inner.version += 1;
        let version = inner.version;
        inner.lists.insert(name.to_owned(), BoardList { entries, version });
    }

    /// Removes a list; false when there was none of that name.
    pub fn delete(&self, name: &str) -> bool {
        let mut inner = self.inner.write();
        let removed = inner.lists.remove(name).is_some();
        if removed {
            inner.version += 1;
        }
        removed
    }

    pub fn get(&self, name: &str) -> Option<BoardList> {
        self.inner.read().lists.get(name).cloned()
    }

    /// Every list, by name.
    pub fn all(&self) -> BTreeMap<String, BoardList> {
        self.inner.read().lists.clone()
    }

    pub fn version(&self) -> u64 {
        self.inner.read().version
    }
}

/// What the pipeline last took from the board.
#[derive(Debug, Default)]
pub struct BoardFollower {
    seen_version: u64,
    seen: BTreeMap<String, u64>,
}

impl BoardFollower {
    /// Brings `stage1`'s hotlists up to date with the board, when it has changed.
    pub fn sync(&mut self, board: &HotlistBoard, stage1: &mut Stage1) {
        if board.version() == self.seen_version {
            return;
        }
        let (version, lists) = {
            let inner = board.inner.read();
            (inner.version, inner.lists.clone())
        };
        for gone in self.seen.keys().filter(|name| !lists.contains_key(*name)) {
            stage1.remove_hotlist(gone);
        }
        for (name, list) in &lists {
            if self.seen.get(name) != Some(&list.version) {
                // The API checked every plate before putting the list on the board.
                stage1.set_hotlist(name, &list.entries);
            }
        }
        self.seen = lists.into_iter().map(|(name, list)| (name, list.version)).collect();
        self.seen_version = version;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_model::CityModel;
    use std::sync::Arc;

    fn entry(plate: &str) -> HotlistEntry {
        HotlistEntry { plate: plate.into(), reason: "stolen".into(), expires_ms: None }
    }

    #[test]
    fn the_follower_applies_puts_and_deletes_once() {
        let city = Arc::new(CityModel::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../data"))).expect("city data"));
        let mut stage1 = Stage1::new(city, crate::PipelineConfig::default());
        let board = HotlistBoard::default();
        let mut follower = BoardFollower::default();
        board.put("stolen", vec![entry("闽D12345")]);
        follower.sync(&board, &mut stage1);
        assert!(stage1.has_hotlist("stolen"));
        board.put("wanted", vec![entry("闽E67890")]);
        board.delete("stolen");
        follower.sync(&board, &mut stage1);
        assert!(!stage1.has_hotlist("stolen"));
        assert!(stage1.has_hotlist("wanted"));
        assert_eq!(follower.seen.len(), 1);
    }
}
