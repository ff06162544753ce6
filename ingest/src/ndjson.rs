//! NDJSON files as a source and a sink: `egret simulate --out DIR` writes one
//! `<topic>.ndjson` per topic, and `egret run --input DIR` replays them. Each file is
//! one partition; the line number is the offset.

use crate::{IngestError, OutRecord, Poll, Record, Sink, Source};
use bytes::Bytes;
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IngestError + '_ {
    move |source| IngestError::Io { path: path.display().to_string(), source }
}

/// Writes each topic to `<dir>/<topic>.ndjson`, one message per line.
pub struct NdjsonSink {
    dir: PathBuf,
    files: Mutex<HashMap<String, BufWriter<File>>>,
}

impl NdjsonSink {
    pub fn create(dir: &Path) -> Result<Self, IngestError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(NdjsonSink { dir: dir.to_owned(), files: Mutex::new(HashMap::new()) })
    }

    pub fn path_of(dir: &Path, topic: &str) -> PathBuf {
        dir.join(format!("{topic}.ndjson"))
    }

    /// Writes synchronously; the async `Sink::send` wraps this.
    pub fn write(&self, records: &[OutRecord]) -> Result<(), IngestError> {
        let mut files = self.files.lock();
        for r in records {
            let path = Self::path_of(&self.dir, &r.topic);
            let file = match files.get_mut(&r.topic) {
                Some(f) => f,
                None => {
                    let f = File::create(&path).map_err(io_err(&path))?;
                    files.entry(r.topic.clone()).or_insert(BufWriter::new(f))
                }
            };
            file.write_all(&r.payload).and_then(|_| file.write_all(b"\n")).map_err(io_err(&path))?;
        }
        Ok(())
    }

    pub fn flush(&self) -> Result<(), IngestError> {
        for (topic, f) in self.files.lock().iter_mut() {
            f.flush().map_err(io_err(&Self::path_of(&self.dir, topic)))?;
        }
        Ok(())
    }
}

impl Sink for NdjsonSink {
    async fn send(&self, records: Vec<OutRecord>) -> Result<(), IngestError> {
        self.write(&records)
    }
}

/// Replays `<dir>/<topic>.ndjson` files; topics whose file is absent are skipped.
/// Files are merged by the `ts_ms` of their next line (each file's own order kept),
/// so a small file (lot counts every 15 minutes) is not read far ahead of the others.
pub struct NdjsonSource {
    files: Vec<NdjsonFile>,
    /// Next line of each file, by its event time: (ts, file index).
    heads: BinaryHeap<Reverse<(i64, usize)>>,
}

struct NdjsonFile {
    topic: String,
    reader: BufReader<File>,
    path: PathBuf,
    /// Offset of `next`.
    offset: u64,
    next: Option<Vec<u8>>,
    last_ts: i64,
}

impl NdjsonFile {
    /// Reads the following line into `next`; returns its merge time.
    fn advance(&mut self) -> Result<Option<i64>, IngestError> {
        let mut line = Vec::new();
        let n = self.reader.read_until(b'\n', &mut line).map_err(io_err(&self.path))?;
        if n == 0 {
            self.next = None;
            return Ok(None);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        // A line without a readable time (it may be malformed) keeps its file's pace.
        self.last_ts = ts_of(&line).unwrap_or(self.last_ts);
        self.next = Some(line);
        Ok(Some(self.last_ts))
    }
}

/// The number after `"ts_ms":`, without parsing the whole line.
fn ts_of(line: &[u8]) -> Option<i64> {
    const FIELD: &[u8] = b"\"ts_ms\":";
    let at = line.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let rest = std::str::from_utf8(&line[at..]).ok()?.trim_start();
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl NdjsonSource {
    pub fn open(dir: &Path, topics: &[&str]) -> Result<Self, IngestError> {
        let mut files = Vec::new();
        let mut heads = BinaryHeap::new();
        for topic in topics {
            let path = NdjsonSink::path_of(dir, topic);
            if path.exists() {
                let f = File::open(&path).map_err(io_err(&path))?;
                let mut file = NdjsonFile { topic: (*topic).to_owned(), reader: BufReader::new(f), path, offset: 0, next: None, last_ts: i64::MIN };
                if let Some(ts) = file.advance()? {
                    heads.push(Reverse((ts, files.len())));
                }
                files.push(file);
            }
        }
        if files.is_empty() {
            return Err(IngestError::Io {
                path: dir.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no <topic>.ndjson input files here"),
            });
        }
        Ok(NdjsonSource { files, heads })
    }
}

impl Source for NdjsonSource {
    async fn poll(&mut self, max: usize) -> Result<Poll, IngestError> {
        let mut out = Vec::with_capacity(max);
        while out.len() < max {
            let Some(Reverse((_, i))) = self.heads.pop() else { break };
            let file = &mut self.files[i];
            if let Some(line) = file.next.take() {
                out.push(Record { topic: file.topic.clone(), partition: 0, offset: file.offset, key: None, payload: Bytes::from(line), headers: Vec::new(), timestamp_ms: None });
                file.offset += 1;
            }
            if let Some(ts) = file.advance()? {
                self.heads.push(Reverse((ts, i)));
            }
        }
        Ok(if out.is_empty() { Poll::End } else { Poll::Records(out) })
    }

    fn commit(&mut self, _topic: &str, _partition: u32, _offset: u64) -> Result<(), IngestError> {
        // A file is replayed from its start on every run; nothing to remember.
        Ok(())
    }

    fn idle_partitions(&self) -> Vec<(String, u32)> {
        self.files.iter().filter(|f| f.next.is_none()).map(|f| (f.topic.clone(), 0)).collect()
    }

    fn reports_idle(&self) -> bool {
        true
    }

    fn assignment(&self) -> Vec<(String, u32)> {
        self.files.iter().map(|f| (f.topic.clone(), 0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_are_merged_by_event_time_and_keep_their_own_order() {
        let dir = std::env::temp_dir().join(format!("egret-ndjson-{}", std::process::id()));
        let sink = NdjsonSink::create(&dir).expect("dir");
        let line = |topic: &str, ts: i64| OutRecord::new(topic, None, format!(r#"{{"id":1,"ts_ms":{ts}}}"#));
        let mut records: Vec<OutRecord> = (0..10).map(|i| line("a", i * 100)).collect();
        records.push(line("b", 50));
        records.push(line("b", 950));
        records.push(OutRecord::new("b", None, "garbled"));
        sink.write(&records).expect("write");
        sink.flush().expect("flush");
        let mut source = NdjsonSource::open(&dir, &["a", "b"]).expect("open");
        let Poll::Records(got) = source.poll(100).await.expect("poll") else { panic!("records expected") };
        let order: Vec<(String, u64)> = got.iter().map(|r| (r.topic.clone(), r.offset)).collect();
        assert_eq!(order.len(), 13);
        assert_eq!(order[1], ("b".into(), 0), "the 50 ms line comes right after the 0 ms line");
        assert_eq!(&order[11..], &[("b".into(), 1), ("b".into(), 2)], "the garbled line keeps its place after 950");
        assert!(matches!(source.poll(100).await.expect("poll"), Poll::End));
        assert_eq!(source.idle_partitions().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
