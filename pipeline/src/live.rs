//! Live state: the newest window of every segment and a bounded history of final
//! windows, shared between the pipeline (one writer) and the API and query layer
//! (many readers). Readers take consistent snapshots under a read lock.

use crate::parking::LotState;
use crate::pipeline::BatchOutput;
use crate::window::SegmentWindow;
use egret_model::CityModel;
use parking_lot::RwLock;
use crate::enforce::violation::{PossibleHit, Violation};
use crate::incident::Incident;
use crate::transit::{BusStatus, TransitEvent, TransitOutput};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// Final windows kept per segment (a day of one-minute windows).
pub const HISTORY_PER_SEGMENT: usize = 24 * 60;

#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Watermark of the data behind this snapshot.
    pub as_of_ms: i64,
    /// Newest window per segment, indexed by `SegmentIdx`.
    pub latest: Vec<Option<SegmentWindow>>,
    /// Occupancy per lot, indexed like `CityModel::lots`.
    pub lots: Vec<Option<LotState>>,
}

/// Tickets held for the API: newest last, bounded, one per violation id.
pub const VIOLATIONS_KEPT: usize = 100_000;
/// Possible hotlist hits held for a person to review.
pub const POSSIBLE_HITS_KEPT: usize = 10_000;

#[derive(Debug, Default)]
struct Tickets {
    /// With the order they arrived in: a cursor for pagination and push. Shared, so
    /// that a query can take every ticket under the lock for the price of a pointer.
    violations: VecDeque<(u64, Arc<Violation>)>,
    next_seq: u64,
    ids: HashSet<String>,
    possible_hits: VecDeque<PossibleHit>,
    /// Tickets that arrived again (a replay) and were not kept twice.
    repeats: u64,
}

/// Cleared incidents kept for the API, newest last.
pub const CLEARED_INCIDENTS_KEPT: usize = 200;

#[derive(Debug, Default)]
struct Incidents {
    open: std::collections::BTreeMap<String, Incident>,
    cleared: VecDeque<Incident>,
}

/// Headway events and trips that never ran, kept per route.
pub const TRANSIT_EVENTS_KEPT: usize = 200;
/// A bus not reported for this long is off the map.
pub const BUS_STALE_MS: i64 = 10 * 60_000;

#[derive(Debug, Default)]
struct Transit {
    buses: std::collections::BTreeMap<String, BusStatus>,
    events: std::collections::HashMap<String, VecDeque<TransitEvent>>,
}

pub struct LiveState {
    city: Arc<CityModel>,
    incidents: RwLock<Incidents>,
    transit: RwLock<Transit>,
    reader_health: RwLock<Vec<crate::health::ReaderHealth>>,
    current: RwLock<Snapshot>,
    history: RwLock<Vec<VecDeque<SegmentWindow>>>,
    tickets: RwLock<Tickets>,
    /// Bumped on every change: readers that push (WebSocket) wait on it.
    changes: tokio::sync::watch::Sender<u64>,
    archive: RwLock<Option<Arc<dyn Archive>>>,
    hotlists: crate::hotlist_board::HotlistBoard,
    /// The newest record time (the records' timestamps) stage 1 has processed.
    newest_read_ms: std::sync::atomic::AtomicI64,
}

/// Where every batch's output is also kept for later (Parquet history). It must
/// not block for long: it runs on the pipeline's path.
pub trait Archive: Send + Sync {
    fn record(&self, out: &BatchOutput);
}

impl LiveState {
    pub fn new(city: Arc<CityModel>) -> Self {
        let n = city.segments.len();
        LiveState {
            current: RwLock::new(Snapshot { as_of_ms: 0, latest: vec![None; n], lots: vec![None; city.lots.len()] }),
            history: RwLock::new(vec![VecDeque::new(); n]),
            newest_read_ms: std::sync::atomic::AtomicI64::new(0),
            tickets: RwLock::new(Tickets::default()),
            incidents: RwLock::new(Incidents::default()),
            transit: RwLock::new(Transit::default()),
            reader_health: RwLock::new(Vec::new()),
            changes: tokio::sync::watch::Sender::new(0),
            archive: RwLock::new(None),
            hotlists: Default::default(),
            city,
        }
    }

    pub fn city(&self) -> &Arc<CityModel> {
        &self.city
    }

    /// Applies one batch's output: newer windows replace older ones; finals go to history.
    pub fn apply(&self, out: &BatchOutput) {
        if let Some(archive) = self.archive.read().as_ref() {
            archive.record(out);
        }
        self.apply_tickets(&out.tickets);
        self.apply_incidents(&out.incidents);
        self.apply_transit(&out.transit);
        if let Some(health) = &out.reader_health {
            *self.reader_health.write() = health.clone();
        }
        if out.windows.is_empty() && out.lots.is_empty() && out.watermark_ms <= self.current.read().as_of_ms {
            return;
        }
        {
            let mut cur = self.current.write();
            // The end of a finite input closes everything with an infinite watermark;
            // the data is still only as recent as the last real one.
            if out.watermark_ms < i64::MAX / 2 {
                cur.as_of_ms = cur.as_of_ms.max(out.watermark_ms);
            }
            for w in &out.windows {
                let slot = &mut cur.latest[w.segment.0 as usize];
                if slot.as_ref().is_none_or(|old| old.window_start_ms <= w.window_start_ms) {
                    *slot = Some(w.clone());
                }
            }
            for lot in &out.lots {
                if let Some(slot) = cur.lots.get_mut(lot.lot as usize) {
                    *slot = Some(lot.clone());
                }
            }
        }
        let mut history = self.history.write();
        for w in out.windows.iter().filter(|w| w.is_final) {
            let h = &mut history[w.segment.0 as usize];
            if h.len() == HISTORY_PER_SEGMENT {
                h.pop_front();
            }
            h.push_back(w.clone());
        }
        self.changed();
    }

    /// Keeps new tickets; one already held (same id, e.g. from a replay) is not
    /// kept again.
    pub fn apply_tickets(&self, tickets: &crate::enforce::Tickets) {
        if tickets.violations.is_empty() && tickets.possible_hits.is_empty() {
            return;
        }
        let mut held = self.tickets.write();
        for v in &tickets.violations {
            if !held.ids.insert(v.violation_id.clone()) {
                held.repeats += 1;
                continue;
            }
            if held.violations.len() == VIOLATIONS_KEPT
                && let Some((_, old)) = held.violations.pop_front()
            {
                held.ids.remove(&old.violation_id);
            }
            held.next_seq += 1;
            let seq = held.next_seq;
            held.violations.push_back((seq, Arc::new(v.clone())));
        }
        for h in &tickets.possible_hits {
            if held.possible_hits.len() == POSSIBLE_HITS_KEPT {
                held.possible_hits.pop_front();
            }
            held.possible_hits.push_back(h.clone());
        }
        self.changed();
    }

    fn apply_incidents(&self, changed: &[Incident]) {
        if changed.is_empty() {
            return;
        }
        let mut board = self.incidents.write();
        for i in changed {
            if i.cleared_ms.is_some() {
                board.open.remove(&i.incident_id);
                if board.cleared.len() == CLEARED_INCIDENTS_KEPT {
                    board.cleared.pop_front();
                }
                board.cleared.push_back(i.clone());
            } else {
                board.open.insert(i.incident_id.clone(), i.clone());
            }
        }
        self.changed();
    }

    fn apply_transit(&self, out: &TransitOutput) {
        if out.statuses.is_empty() && out.events.is_empty() {
            return;
        }
        let mut transit = self.transit.write();
        for s in &out.statuses {
            transit.buses.insert(s.bus_id.clone(), s.clone());
        }
        if let Some(newest) = transit.buses.values().map(|b| b.ts_ms).max() {
            transit.buses.retain(|_, b| b.ts_ms >= newest - BUS_STALE_MS);
        }
        for e in &out.events {
            let route = match e {
                TransitEvent::Headway { route_id, .. } | TransitEvent::GhostTrip { route_id, .. } => route_id.clone(),
            };
            let kept = transit.events.entry(route).or_default();
            if kept.len() == TRANSIT_EVENTS_KEPT {
                kept.pop_front();
            }
            kept.push_back(e.clone());
        }
        self.changed();
    }

    /// Every reader's health as last reported (empty before the first report).
    pub fn reader_health(&self) -> Vec<crate::health::ReaderHealth> {
        self.reader_health.read().clone()
    }

    /// Buses on the map now, by id.
    pub fn buses(&self) -> Vec<BusStatus> {
        self.transit.read().buses.values().cloned().collect()
    }

    /// Recent headway events and trips that never ran on a route, oldest first.
    pub fn route_events(&self, route_id: &str) -> Vec<TransitEvent> {
        self.transit.read().events.get(route_id).map(|e| e.iter().cloned().collect()).unwrap_or_default()
    }

    /// Open incidents (by id), and the most recently cleared ones.
    pub fn incidents(&self) -> (Vec<Incident>, Vec<Incident>) {
        let board = self.incidents.read();
        (board.open.values().cloned().collect(), board.cleared.iter().cloned().collect())
    }

    /// Tickets held, oldest first, that `keep` accepts.
    pub fn violations(&self, keep: impl Fn(&Violation) -> bool) -> Vec<Violation> {
        self.tickets.read().violations.iter().filter(|(_, v)| keep(v)).map(|(_, v)| Violation::clone(v)).collect()
    }

    /// Every ticket held, oldest first, shared rather than copied: the lock is held
    /// only for one pointer per ticket, whatever the reader then does with them.
    pub fn shared_violations(&self) -> Vec<Arc<Violation>> {
        self.tickets.read().violations.iter().map(|(_, v)| Arc::clone(v)).collect()
    }

    /// Up to `limit` tickets that arrived after sequence number `after` and that
    /// `keep` accepts, oldest first, each with its sequence number (a cursor).
    pub fn violations_after(&self, after: u64, limit: usize, keep: impl Fn(&Violation) -> bool) -> Vec<(u64, Violation)> {
        let held = self.tickets.read();
        let start = held.violations.partition_point(|(seq, _)| *seq <= after);
        held.violations.range(start..).filter(|(_, v)| keep(v)).take(limit).map(|(seq, v)| (*seq, Violation::clone(v))).collect()
    }

    pub fn possible_hits(&self) -> Vec<PossibleHit> {
        self.tickets.read().possible_hits.iter().cloned().collect()
    }

    /// How many tickets are held (without copying them, unlike `violations`).
    pub fn violation_count(&self) -> usize {
        self.tickets.read().violations.len()
    }

    /// Tickets received again and not kept twice.
    pub fn repeated_tickets(&self) -> u64 {
        self.tickets.read().repeats
    }

    pub fn snapshot(&self) -> Snapshot {
        self.current.read().clone()
    }

    /// Stage 1 has processed a record stamped `ms` (its arrival time).
    pub fn note_read(&self, ms: i64) {
        self.newest_read_ms.fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The newest record time stage 1 has processed (0 before any): how far
    /// this instance has read, on the clock a cut is placed by (`cut`).
    pub fn newest_read_ms(&self) -> i64 {
        self.newest_read_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The snapshot's `as_of_ms`, without copying the snapshot.
    pub fn as_of_ms(&self) -> i64 {
        self.current.read().as_of_ms
    }

    /// Final windows of one segment overlapping `[from_ms, to_ms)`.
    pub fn history(&self, segment: usize, from_ms: i64, to_ms: i64) -> Vec<SegmentWindow> {
        self.history
            .read()
            .get(segment)
            .map(|h| h.iter().filter(|w| w.window_end_ms > from_ms && w.window_start_ms < to_ms).cloned().collect())
            .unwrap_or_default()
    }

    /// Every final window held, for queries over history.
    pub fn all_history(&self) -> Vec<SegmentWindow> {
        self.history.read().iter().flatten().cloned().collect()
    }

    /// Bumped on every change, so caches know when to rebuild.
    pub fn version(&self) -> u64 {
        *self.changes.borrow()
    }

    /// A receiver that wakes after every change (only the newest version is kept,
    /// so a slow reader skips ahead rather than queueing).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
    }

    /// From now on every applied batch is also given to `archive`.
    pub fn set_archive(&self, archive: Arc<dyn Archive>) {
        *self.archive.write() = Some(archive);
    }

    /// Police hotlists as edited through the API; the pipeline follows them.
    pub fn hotlists(&self) -> &crate::hotlist_board::HotlistBoard {
        &self.hotlists
    }
}

/// Jam factor 0 (free flow) to 10 (standstill) from the speed relative to free flow.
pub fn jam_factor(mean_kmh: f64, free_flow_kmh: f64) -> f64 {
    if free_flow_kmh <= 0.0 {
        return 0.0;
    }
    let ratio = (mean_kmh / free_flow_kmh).clamp(0.0, 1.0);
    ((1.0 - ratio) * 10.0 * 10.0).round() / 10.0
}

/// Confidence 0–1: more samples, a final window and fresh data make it higher.
pub fn confidence(sample_count: u32, is_final: bool, age_ms: i64) -> f64 {
    let samples = (f64::from(sample_count) / 5.0).min(1.0);
    let finality = if is_final { 1.0 } else { 0.85 };
    let freshness = if age_ms <= 5 * 60_000 { 1.0 } else { (15.0 * 60_000.0 / age_ms as f64).min(1.0) * 0.6 };
    (samples * finality * freshness * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jam_factor_spans_zero_to_ten() {
        assert_eq!(jam_factor(60.0, 60.0), 0.0);
        assert_eq!(jam_factor(80.0, 60.0), 0.0);
        assert_eq!(jam_factor(30.0, 60.0), 5.0);
        assert_eq!(jam_factor(0.0, 60.0), 10.0);
    }

    #[test]
    fn confidence_grows_with_samples_and_finality() {
        assert!(confidence(1, false, 0) < confidence(5, false, 0));
        assert!(confidence(5, false, 0) < confidence(5, true, 0));
        assert!(confidence(5, true, 60 * 60_000) < confidence(5, true, 0));
    }
}
