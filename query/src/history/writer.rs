//! The history writer thread: buffers rows per table and UTC hour, and writes a
//! buffer to one Parquet file when it is full, on the timer, on `flush` and when the
//! archive is dropped. Each file is written under a hidden temporary name and
//! renamed into place, so a reader lists whole files or nothing.

use super::{FLUSH_EVERY, HISTORY_TABLES, HistoryError, ROWS_PER_FILE, hour_partition};
use crate::tables::{segment_windows_batch, violations_batch};
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use egret_model::CityModel;
use egret_pipeline::SegmentWindow;
use egret_pipeline::enforce::violation::Violation;
use egret_pipeline::live::VIOLATIONS_KEPT;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Instant;

pub(super) enum Msg {
    Rows { windows: Vec<SegmentWindow>, violations: Vec<Violation> },
    /// Write everything buffered, then answer.
    Flush(SyncSender<Result<(), HistoryError>>),
}

pub(super) struct Writer {
    dir: PathBuf,
    city: Arc<CityModel>,
    windows: BTreeMap<String, Vec<SegmentWindow>>,
    violations: BTreeMap<String, Vec<Violation>>,
    /// Ticket ids written recently: a replayed ticket is archived once, as the
    /// live state keeps it once. Bounded like the live state's.
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    /// Makes file names unique within a first timestamp.
    seq: u64,
}

impl Writer {
    pub(super) fn new(dir: PathBuf, city: Arc<CityModel>) -> Self {
        Writer { dir, city, windows: BTreeMap::new(), violations: BTreeMap::new(), seen: HashSet::new(), seen_order: VecDeque::new(), seq: 0 }
    }

    /// Runs until the archive is dropped (the channel closes), then writes what is left.
    pub(super) fn run(mut self, rx: Receiver<Msg>) {
        let mut next_write = Instant::now() + FLUSH_EVERY;
        loop {
            match rx.recv_timeout(next_write.saturating_duration_since(Instant::now())) {
                Ok(Msg::Rows { windows, violations }) => self.add(windows, violations),
                Ok(Msg::Flush(ack)) => {
                    let result = self.write_all();
                    // The caller may have given up waiting; nothing to do then.
                    let _ = ack.send(result);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.write_all();
                    return;
                }
            }
            if Instant::now() >= next_write {
                let _ = self.write_all();
                next_write = Instant::now() + FLUSH_EVERY;
            }
        }
    }

    fn add(&mut self, windows: Vec<SegmentWindow>, violations: Vec<Violation>) {
        let (mut full_windows, mut full_violations) = (Vec::new(), Vec::new());
        for w in windows {
            let hour = hour_partition(w.window_start_ms);
            let rows = self.windows.entry(hour.clone()).or_default();
            rows.push(w);
            if rows.len() == ROWS_PER_FILE {
                full_windows.push(hour);
            }
        }
        for v in violations {
            if !self.remember(&v.violation_id) {
                continue;
            }
            let hour = hour_partition(v.ts_ms);
            let rows = self.violations.entry(hour.clone()).or_default();
            rows.push(v);
            if rows.len() == ROWS_PER_FILE {
                full_violations.push(hour);
            }
        }
        // Errors are logged and counted where they happen; the rows are gone.
        for hour in full_windows {
            let _ = self.write_windows(&hour);
        }
        for hour in full_violations {
            let _ = self.write_violations(&hour);
        }
    }

    /// False if this ticket id was archived recently.
    fn remember(&mut self, id: &str) -> bool {
        if !self.seen.insert(id.to_owned()) {
            return false;
        }
        self.seen_order.push_back(id.to_owned());
        if self.seen_order.len() > VIOLATIONS_KEPT
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }

    /// Writes every buffer; the first error, if any, after trying them all.
    fn write_all(&mut self) -> Result<(), HistoryError> {
        let mut first_error = None;
        let hours: Vec<String> = self.windows.keys().cloned().collect();
        for hour in hours {
            if let Err(e) = self.write_windows(&hour) {
                first_error.get_or_insert(e);
            }
        }
        let hours: Vec<String> = self.violations.keys().cloned().collect();
        for hour in hours {
            if let Err(e) = self.write_violations(&hour) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn write_windows(&mut self, hour: &str) -> Result<(), HistoryError> {
        let Some(rows) = self.windows.remove(hour) else { return Ok(()) };
        let Some(first_ms) = rows.iter().map(|w| w.window_start_ms).min() else { return Ok(()) };
        let batch = segment_windows_batch(&self.city, &rows);
        self.write(HISTORY_TABLES[0].1, hour, first_ms, &batch)
    }

    fn write_violations(&mut self, hour: &str) -> Result<(), HistoryError> {
        let Some(rows) = self.violations.remove(hour) else { return Ok(()) };
        let Some(first_ms) = rows.iter().map(|v| v.ts_ms).min() else { return Ok(()) };
        let batch = violations_batch(&rows);
        self.write(HISTORY_TABLES[1].1, hour, first_ms, &batch)
    }

    /// One file, logged and counted if it fails.
    fn write(&mut self, table: &str, hour: &str, first_ms: i64, batch: &RecordBatch) -> Result<(), HistoryError> {
        let started = Instant::now();
        let result = self.write_file(table, hour, first_ms, batch);
        match &result {
            Ok(path) => {
                metrics::counter!("egret_history_rows_written_total", "table" => table.to_owned()).increment(batch.num_rows() as u64);
                tracing::debug!(path = %path.display(), rows = batch.num_rows(), ms = started.elapsed().as_millis() as u64, "history file written");
            }
            Err(e) => {
                metrics::counter!("egret_history_write_errors_total").increment(1);
                tracing::error!(table, hour, rows = batch.num_rows(), error = %e, "could not write history; rows dropped");
            }
        }
        result.map(|_| ())
    }

    fn write_file(&mut self, table: &str, hour: &str, first_ms: i64, batch: &RecordBatch) -> Result<PathBuf, HistoryError> {
        let part_dir = self.dir.join(table).join(format!("{}={hour}", super::PARTITION_COLUMN));
        std::fs::create_dir_all(&part_dir)?;
        // A restarted process starts counting again: skip names already taken.
        let name = loop {
            self.seq += 1;
            let name = format!("part-{first_ms}-{}.parquet", self.seq);
            if !part_dir.join(&name).exists() {
                break name;
            }
        };
        // Hidden and without the `.parquet` extension, so listings never see it.
        let tmp = part_dir.join(format!(".{name}.tmp"));
        let path = part_dir.join(name);
        let written = write_parquet(&tmp, batch).and_then(|()| Ok(std::fs::rename(&tmp, &path)?));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map(|()| path)
    }
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), HistoryError> {
    let parquet = |e: datafusion::parquet::errors::ParquetError| HistoryError::Write(e.to_string());
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let file = std::fs::File::create(path)?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(parquet)?;
    writer.write(batch).map_err(parquet)?;
    let file = writer.into_inner().map_err(parquet)?;
    // On disk before it gets its final name: a crash leaves a temp file, not a torn one.
    file.sync_all()?;
    Ok(())
}
