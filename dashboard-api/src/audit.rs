//! The audit log: every read of police data (violations, hotlists, SQL, the
//! violations channel) and every refusal of one, with who, when, what and how many
//! rows. Appended as NDJSON and synced before the answer goes out, so a read that
//! was answered is on disk; the newest entries are also kept in memory for
//! `GET /api/v1/audit` (admin). Plates a query names are written as pseudonyms:
//! the admin who reads the log sees who looked, not whom they looked up.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Entries held in memory for reading back.
pub const KEPT_IN_MEMORY: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub ts_ms: i64,
    /// The token's subject, or `anonymous`.
    pub subject: String,
    pub role: String,
    /// `GET /api/v1/violations`, `ws violations`, …
    pub action: String,
    /// Filters or SQL, with plates pseudonymised.
    pub detail: String,
    pub rows: u64,
    /// `ok`, or why it was refused (`unauthorized`, `forbidden`, `bad_request`).
    pub outcome: String,
}

struct Inner {
    file: Option<(PathBuf, File)>,
    recent: VecDeque<AuditEntry>,
    /// Entries that could not be written (disk full…): counted and logged.
    write_errors: u64,
}

pub struct AuditLog {
    inner: Mutex<Inner>,
}

impl AuditLog {
    /// A log kept only in memory (tests, or a deployment that ships logs elsewhere).
    pub fn in_memory() -> Self {
        AuditLog { inner: Mutex::new(Inner { file: None, recent: VecDeque::new(), write_errors: 0 }) }
    }

    /// Appends to `path`, first reading back its newest entries.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut recent = VecDeque::new();
        if let Ok(existing) = File::open(path) {
            for line in std::io::BufReader::new(existing).lines() {
                // A torn last line (a crash mid-write) is skipped, not fatal.
                if let Ok(entry) = serde_json::from_str::<AuditEntry>(&line?) {
                    if recent.len() == KEPT_IN_MEMORY {
                        recent.pop_front();
                    }
                    recent.push_back(entry);
                }
            }
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        if !ends_with_newline(path)? {
            // End a torn last line, so the next entry starts a line of its own.
            file.write_all(b"\n")?;
        }
        Ok(AuditLog { inner: Mutex::new(Inner { file: Some((path.to_owned(), file)), recent, write_errors: 0 }) })
    }

    pub fn record(&self, entry: AuditEntry) {
        let mut inner = self.inner.lock();
        if let Some((path, file)) = inner.file.as_mut() {
            let mut line = serde_json::to_vec(&entry).unwrap_or_default();
            line.push(b'\n');
            if let Err(e) = file.write_all(&line).and_then(|_| file.sync_data()) {
                tracing::error!("audit log {}: {e}", path.display());
                metrics::counter!("egret_audit_write_errors_total").increment(1);
                inner.write_errors += 1;
            }
        }
        if inner.recent.len() == KEPT_IN_MEMORY {
            inner.recent.pop_front();
        }
        inner.recent.push_back(entry);
    }

    /// Newest entries last; at most `limit`, none older than `since_ms`.
    pub fn recent(&self, since_ms: i64, limit: usize) -> Vec<AuditEntry> {
        let inner = self.inner.lock();
        let newer: Vec<&AuditEntry> = inner.recent.iter().filter(|e| e.ts_ms >= since_ms).collect();
        newer[newer.len().saturating_sub(limit)..].iter().map(|e| (*e).clone()).collect()
    }
}

fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts_ms: i64) -> AuditEntry {
        AuditEntry {
            ts_ms,
            subject: "officer-1".into(),
            role: "police".into(),
            action: "GET /api/v1/violations".into(),
            detail: "kind=red_light".into(),
            rows: 3,
            outcome: "ok".into(),
        }
    }

    #[test]
    fn entries_survive_a_restart_and_a_torn_line() {
        let dir = std::env::temp_dir().join(format!("egret-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("audit.ndjson");
        let log = AuditLog::open(&path).expect("open");
        log.record(entry(1));
        log.record(entry(2));
        drop(log);
        std::fs::OpenOptions::new().append(true).open(&path).and_then(|mut f| f.write_all(b"{\"ts_ms\":3,")).expect("tear");
        let log = AuditLog::open(&path).expect("reopen");
        assert_eq!(log.recent(0, 10), vec![entry(1), entry(2)]);
        log.record(entry(4));
        assert_eq!(log.recent(2, 10), vec![entry(2), entry(4)]);
        assert_eq!(log.recent(0, 1), vec![entry(4)]);
        drop(log);
        assert_eq!(AuditLog::open(&path).expect("again").recent(0, 10), vec![entry(1), entry(2), entry(4)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
