//! An in-memory sink that keeps the newest records up to a bound and counts all of
//! them: where the embedded mode sends dead letters, and what tests inspect.

use crate::{IngestError, OutRecord, Sink};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct MemorySink {
    capacity: usize,
    records: Mutex<VecDeque<OutRecord>>,
    total: AtomicU64,
}

impl MemorySink {
    pub fn new(capacity: usize) -> Self {
        MemorySink { capacity, records: Mutex::new(VecDeque::new()), total: AtomicU64::new(0) }
    }

    /// Everything ever sent, including records no longer kept.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The newest records kept, oldest first.
    pub fn records(&self) -> Vec<OutRecord> {
        self.records.lock().iter().cloned().collect()
    }
}

impl Sink for MemorySink {
    async fn send(&self, records: Vec<OutRecord>) -> Result<(), IngestError> {
        self.total.fetch_add(records.len() as u64, Ordering::Relaxed);
        let mut kept = self.records.lock();
        for r in records {
            if kept.len() >= self.capacity {
                if self.capacity == 0 {
                    continue;
                }
                kept.pop_front();
            }
            kept.push_back(r);
        }
        Ok(())
    }
}
