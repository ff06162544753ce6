//! Checkpoints: a stage's whole state saved together with the input positions it
//! reflects, so a restarted instance resumes exactly where its state says.
//!
//! The exactly-once design (argued in README "Reliability"): state and positions are
//! written together, atomically, every `interval`; only then are the positions
//! committed to Kafka, so Kafka's committed offset is never ahead of a saved state.
//! On start the state is restored and every record before the saved position is
//! skipped. Outputs since the last checkpoint are sent again on a replay, under the
//! same deterministic keys (ticket ids, window keys, update origins), and every
//! consumer drops what it already holds: stage 2 by update origin
//! (`repartition::Applied`), live state and the history by ticket id. Kafka
//! transactions were the alternative; they would hold every output back until the
//! next checkpoint, and the latency targets (a ticket within 50 ms) forbid that.
//!
//! The store is a directory (`DirStore`): write to a temporary file, fsync, rename
//! over the old one, fsync the directory. `CheckpointStore` leaves room for an object
//! store, where a put of a whole object is just as atomic.

use egret_model::CityModel;
use serde::{Deserialize, Serialize};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bumped whenever the saved layout changes: an older checkpoint is refused, not misread.
pub const FORMAT: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint i/o on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("checkpoint {path} is unreadable: {detail}")]
    Corrupt { path: String, detail: String },
    #[error(
        "checkpoint {path} was taken with another city model or pipeline settings ({detail}); \
         restart with the settings it was taken with, or delete it to start from the committed offsets with empty state"
    )]
    Mismatch { path: String, detail: String },
    #[error("checkpoint directory {path} is in use by another running instance; give each instance its own --state-dir")]
    Locked { path: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.display().to_string(), source }
}

/// Where checkpoints live: named blobs, each replaced atomically.
pub trait CheckpointStore: Send {
    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), CheckpointError>;
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, CheckpointError>;
    /// Where `name` lives, for messages.
    fn describe(&self, name: &str) -> String;
}

/// A local directory, locked for as long as this value lives (the lock dies with the
/// process, even under kill -9).
pub struct DirStore {
    dir: PathBuf,
    _lock: File,
}

impl DirStore {
    pub fn open(dir: &Path) -> Result<DirStore, CheckpointError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => Ok(DirStore { dir: dir.to_owned(), _lock: lock }),
            Err(std::fs::TryLockError::WouldBlock) => Err(CheckpointError::Locked { path: dir.display().to_string() }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&lock_path)(e)),
        }
    }
}

impl CheckpointStore for DirStore {
    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        // The rename is durable only once the directory is.
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, CheckpointError> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn describe(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// Next offset to read, per topic and partition.
pub type Positions = BTreeMap<String, BTreeMap<u32, u64>>;

/// One stage's checkpoint.
#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint<S> {
    pub format: u32,
    /// Of the city model and pipeline settings the state was built under.
    pub fingerprint: String,
    /// Wall-clock time it was taken, for operators.
    pub taken_at_ms: i64,
    pub positions: Positions,
    pub state: S,
}

/// What the state depends on: the city model's ids (state is indexed by them) and the
/// pipeline settings (window length and lateness are baked into open windows).
pub fn fingerprint(city: &CityModel, config: &impl Serialize) -> String {
    let mut hash = Fnv::default();
    for id in city.segments.iter().map(|s| &s.segment_id).chain(city.readers.iter().map(|r| &r.reader_id)) {
        hash.write(id.as_bytes());
    }
    for id in city.cameras.iter().map(|c| &c.camera_id).chain(city.lots.iter().map(|l| &l.lot_id)).chain(city.routes.iter().map(|r| &r.route_id)) {
        hash.write(id.as_bytes());
    }
    let settings = serde_json::to_string(config).unwrap_or_default();
    format!("city {:016x}, settings {settings}", hash.0)
}

/// FNV-1a: stable across processes and builds, unlike std's hasher.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().chain(std::iter::once(&0xff)) {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Saves `checkpoint` as `name` (CBOR: compact, and self-describing, so the state's
/// serde attributes work as they do in JSON).
pub fn save<S: Serialize>(store: &dyn CheckpointStore, name: &str, checkpoint: &Checkpoint<S>) -> Result<usize, CheckpointError> {
    let mut bytes = Vec::new();
    ciborium::into_writer(checkpoint, &mut bytes).map_err(|e| CheckpointError::Corrupt { path: store.describe(name), detail: e.to_string() })?;
    store.put(name, &bytes)?;
    Ok(bytes.len())
}

/// The checkpoint saved as `name`, if any; refused when taken under another
/// fingerprint or format.
pub fn load<S: DeserializeOwned>(store: &dyn CheckpointStore, name: &str, fingerprint: &str) -> Result<Option<Checkpoint<S>>, CheckpointError> {
    let Some(bytes) = store.get(name)? else { return Ok(None) };
    let path = store.describe(name);
    let corrupt = |e: ciborium::de::Error<std::io::Error>| CheckpointError::Corrupt { path: path.clone(), detail: e.to_string() };
    // The header first: a state of another format may not parse at all, and the
    // operator should hear that it is another format, not that it is damaged.
    let header: Checkpoint<serde::de::IgnoredAny> = ciborium::from_reader(bytes.as_slice()).map_err(corrupt)?;
    if header.format != FORMAT {
        return Err(CheckpointError::Mismatch { path, detail: format!("format {} where this build writes {FORMAT}", header.format) });
    }
    if header.fingerprint != fingerprint {
        return Err(CheckpointError::Mismatch { path, detail: format!("saved: {}; now: {fingerprint}", header.fingerprint) });
    }
    ciborium::from_reader(bytes.as_slice()).map(Some).map_err(corrupt)
}

impl From<CheckpointError> for egret_ingest::IngestError {
    fn from(e: CheckpointError) -> Self {
        egret_ingest::IngestError::Checkpoint(e.to_string())
    }
}

/// One stage's checkpoints: where they go, under which name and fingerprint, and
/// how far the stage has read.
pub struct Checkpointer {
    store: std::sync::Arc<dyn CheckpointStore + Sync>,
    name: String,
    fingerprint: String,
    pub progress: Progress,
}

impl Checkpointer {
    /// Loads the checkpoint `name` (if any) and returns it with the checkpointer that
    /// goes on from its positions.
    pub fn open<S: DeserializeOwned>(
        store: std::sync::Arc<dyn CheckpointStore + Sync>,
        name: &str,
        fingerprint: String,
        interval: std::time::Duration,
    ) -> Result<(Checkpointer, Option<S>), CheckpointError> {
        let saved: Option<Checkpoint<S>> = load(&*store, name, &fingerprint)?;
        let (positions, state) = saved.map_or_else(Default::default, |c| (c.positions, Some(c.state)));
        Ok((Checkpointer { store, name: name.to_owned(), fingerprint, progress: Progress::new(positions, interval) }, state))
    }

    /// Saves `state` with the positions read so far; returns its size in bytes.
    pub fn save<S: Serialize>(&mut self, state: &S) -> Result<usize, CheckpointError> {
        let started = std::time::Instant::now();
        let taken_at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let checkpoint = Checkpoint { format: FORMAT, fingerprint: self.fingerprint.clone(), taken_at_ms, positions: self.progress.positions.clone(), state };
        let bytes = save(&*self.store, &self.name, &checkpoint)?;
        self.progress.taken();
        metrics::counter!("egret_checkpoints_total", "stage" => self.name.clone()).increment(1);
        metrics::gauge!("egret_checkpoint_bytes", "stage" => self.name.clone()).set(bytes as f64);
        metrics::histogram!("egret_checkpoint_seconds", "stage" => self.name.clone()).record(started.elapsed().as_secs_f64());
        Ok(bytes)
    }
}

/// Tracks how far a stage has read, skips what a restored state already holds, and
/// says when the next checkpoint is due.
#[derive(Debug)]
pub struct Progress {
    pub positions: Positions,
    interval: std::time::Duration,
    last: std::time::Instant,
}

impl Progress {
    pub fn new(positions: Positions, interval: std::time::Duration) -> Self {
        Progress { positions, interval, last: std::time::Instant::now() }
    }

    /// Drops records before the saved positions (their effect is in the state).
    pub fn skip_done(&self, records: &mut Vec<egret_ingest::Record>) -> usize {
        let before = records.len();
        records.retain(|r| self.positions.get(&r.topic).and_then(|p| p.get(&r.partition)).is_none_or(|next| r.offset >= *next));
        before - records.len()
    }

    /// Notes records as fully processed.
    pub fn advance(&mut self, records: &[egret_ingest::Record]) {
        for r in records {
            let next = self.positions.entry(r.topic.clone()).or_default().entry(r.partition).or_default();
            *next = (*next).max(r.offset + 1);
        }
    }

    pub fn due(&self) -> bool {
        self.last.elapsed() >= self.interval
    }

    pub fn taken(&mut self) {
        self.last = std::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct MemStore(Mutex<BTreeMap<String, Vec<u8>>>);

    impl CheckpointStore for MemStore {
        fn put(&self, name: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
            self.0.lock().unwrap().insert(name.to_owned(), bytes.to_vec());
            Ok(())
        }
        fn get(&self, name: &str) -> Result<Option<Vec<u8>>, CheckpointError> {
            Ok(self.0.lock().unwrap().get(name).cloned())
        }
        fn describe(&self, name: &str) -> String {
            format!("memory:{name}")
        }
    }

    fn checkpoint<S>(format: u32, fingerprint: &str, state: S) -> Checkpoint<S> {
        Checkpoint { format, fingerprint: fingerprint.to_owned(), taken_at_ms: 0, positions: Positions::from([("t".to_owned(), BTreeMap::from([(0, 7)]))]), state }
    }

    #[test]
    fn a_checkpoint_comes_back_as_saved() {
        let store = MemStore::default();
        save(&store, "stage1", &checkpoint(FORMAT, "f", 42u64)).unwrap();
        let back = load::<u64>(&store, "stage1", "f").unwrap().expect("saved");
        assert_eq!((back.state, back.positions), (42, checkpoint(FORMAT, "f", ()).positions));
        assert!(load::<u64>(&store, "stage2", "f").unwrap().is_none());
    }

    #[test]
    fn an_older_format_is_refused_as_such_even_when_its_state_does_not_parse() {
        let store = MemStore::default();
        save(&store, "stage1", &checkpoint(FORMAT - 1, "f", vec!["not", "a", "number"])).unwrap();
        let refused = load::<u64>(&store, "stage1", "f").unwrap_err();
        assert!(matches!(refused, CheckpointError::Mismatch { .. }), "{refused}");
        assert!(refused.to_string().contains(&format!("format {} where this build writes {FORMAT}", FORMAT - 1)), "{refused}");
    }

    #[test]
    fn another_fingerprint_is_refused_and_damage_is_reported_as_damage() {
        let store = MemStore::default();
        save(&store, "stage1", &checkpoint(FORMAT, "city a", 1u64)).unwrap();
        assert!(matches!(load::<u64>(&store, "stage1", "city b"), Err(CheckpointError::Mismatch { .. })));
        save(&store, "stage1", &checkpoint(FORMAT, "f", "text")).unwrap();
        assert!(matches!(load::<u64>(&store, "stage1", "f"), Err(CheckpointError::Corrupt { .. })));
        store.put("stage1", b"\xff not cbor").unwrap();
        assert!(matches!(load::<u64>(&store, "stage1", "f"), Err(CheckpointError::Corrupt { .. })));
    }
}
