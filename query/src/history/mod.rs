//! Parquet history: every final segment window and every ticket, kept on disk
//! beyond what the live state holds, and read back by SQL as `history_*` tables.
//!
//! `HistoryArchive` sits on the pipeline's path (`LiveState::set_archive`), so
//! `record` only copies the rows worth keeping into a bounded channel; a background
//! thread buffers them per table and UTC hour and writes Parquet files under
//! `<dir>/<table>/hour=YYYY-MM-DDTHH/`, a hive layout that lets `WHERE hour = ...`
//! skip whole directories. A full channel drops the batch (counted) rather than
//! stall the pipeline; a failed write is logged and counted, never a panic.

mod listing;
mod writer;

pub(crate) use listing::history_table;

use egret_model::CityModel;
use egret_pipeline::BatchOutput;
use egret_pipeline::live::Archive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;
use writer::{Msg, Writer};

/// The archived tables: (SQL name, directory under the archive).
pub const HISTORY_TABLES: [(&str, &str); 2] = [("history_segment_windows", "segment_windows"), ("history_violations", "violations")];
/// The hive partition column every history table has.
pub const PARTITION_COLUMN: &str = "hour";
/// A buffer this large is written at once rather than waiting for the timer.
pub const ROWS_PER_FILE: usize = 10_000;
/// Buffers are written at least this often, so history lags live by seconds.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// Batches waiting for the writer; beyond this the pipeline does not wait.
const CHANNEL_CAPACITY: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing history: {0}")]
    Write(String),
    #[error("the history writer has stopped")]
    Stopped,
}

/// Writes final windows and tickets to Parquet in the background. Dropping it
/// writes what is buffered and waits for the writer to finish.
pub struct HistoryArchive {
    dir: PathBuf,
    // Options so that `drop` can close the channel before joining the thread.
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

impl HistoryArchive {
    /// Creates `dir` and its table directories and starts the writer thread. The
    /// city turns segment indices into the ids the tables show.
    pub fn open(dir: impl Into<PathBuf>, city: Arc<CityModel>) -> Result<Self, HistoryError> {
        let dir = dir.into();
        for (_, sub) in HISTORY_TABLES {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let writer = Writer::new(dir.clone(), city);
        let thread = std::thread::Builder::new().name("egret-history".into()).spawn(move || writer.run(rx))?;
        Ok(HistoryArchive { dir, tx: Some(tx), thread: Some(thread) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Blocks until everything recorded so far is in Parquet files on disk. An
    /// error says some rows could not be written (they were logged and dropped).
    pub fn flush(&self) -> Result<(), HistoryError> {
        let tx = self.tx.as_ref().ok_or(HistoryError::Stopped)?;
        let (ack, done) = mpsc::sync_channel(1);
        // The channel is FIFO, so the writer sees this after every earlier batch.
        tx.send(Msg::Flush(ack)).map_err(|_| HistoryError::Stopped)?;
        done.recv().map_err(|_| HistoryError::Stopped)?
    }
}

impl Archive for HistoryArchive {
    fn record(&self, out: &BatchOutput) {
        let windows: Vec<_> = out.windows.iter().filter(|w| w.is_final).cloned().collect();
        let violations = out.tickets.violations.clone();
        if windows.is_empty() && violations.is_empty() {
            return;
        }
        let Some(tx) = self.tx.as_ref() else { return };
        match tx.try_send(Msg::Rows { windows, violations }) {
            Ok(()) => {}
            Err(TrySendError::Full(Msg::Rows { windows, violations })) => {
                metrics::counter!("egret_history_dropped_rows_total").increment((windows.len() + violations.len()) as u64);
                tracing::warn!(windows = windows.len(), violations = violations.len(), "history writer is behind; rows not archived");
            }
            Err(_) => {
                metrics::counter!("egret_history_write_errors_total").increment(1);
                tracing::error!("history writer has stopped; rows not archived");
            }
        }
    }
}

impl Drop for HistoryArchive {
    fn drop(&mut self) {
        // Closing the channel tells the writer to write what it holds and stop.
        self.tx.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("history writer panicked");
        }
    }
}

/// The UTC hour of an instant as its partition value, `YYYY-MM-DDTHH`.
pub fn hour_partition(ts_ms: i64) -> String {
    let secs = ts_ms.div_euclid(1000);
    let (days, hour) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) / 3600);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{hour:02}")
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`), to avoid a date crate for one format.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
