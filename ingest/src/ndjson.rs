//! NDJSON files as a source and a sink: `egret simulate --out DIR` writes one
//! `<topic>.ndjson` per topic, and `egret run --input DIR` replays them. Each file is
//! one partition; the line number is the offset.

use crate::{IngestError, OutRecord, Poll, Record, Sink, Source};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
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
pub struct NdjsonSource {
    files: Vec<(String, BufReader<File>, u64, PathBuf)>,
    /// Topics whose file has been read to its end.
    exhausted: Vec<String>,
    next: usize,
}

impl NdjsonSource {
    pub fn open(dir: &Path, topics: &[&str]) -> Result<Self, IngestError> {
        let mut files = Vec::new();
        for topic in topics {
            let path = NdjsonSink::path_of(dir, topic);
            if path.exists() {
                let f = File::open(&path).map_err(io_err(&path))?;
                files.push(((*topic).to_owned(), BufReader::new(f), 0, path));
            }
        }
        if files.is_empty() {
            return Err(IngestError::Io {
                path: dir.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no <topic>.ndjson input files here"),
            });
        }
        Ok(NdjsonSource { files, exhausted: Vec::new(), next: 0 })
    }
}

impl Source for NdjsonSource {
    async fn poll(&mut self, max: usize) -> Result<Poll, IngestError> {
        let mut out = Vec::with_capacity(max);
        // Interleave files in small slices so event time advances together on all topics.
        let slice = (max / self.files.len().max(1)).max(1);
        let mut exhausted = 0;
        while out.len() < max && exhausted < self.files.len() {
            let (topic, reader, offset, path) = &mut self.files[self.next];
            let mut took = 0;
            let mut line = Vec::new();
            while took < slice && out.len() < max {
                line.clear();
                let n = reader.read_until(b'\n', &mut line).map_err(io_err(path))?;
                if n == 0 {
                    if !self.exhausted.contains(topic) {
                        self.exhausted.push(topic.clone());
                    }
                    break;
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                out.push(Record { topic: topic.clone(), partition: 0, offset: *offset, key: None, payload: Bytes::copy_from_slice(&line), headers: Vec::new() });
                *offset += 1;
                took += 1;
            }
            exhausted = if took == 0 { exhausted + 1 } else { 0 };
            self.next = (self.next + 1) % self.files.len();
        }
        Ok(if out.is_empty() { Poll::End } else { Poll::Records(out) })
    }

    fn commit(&mut self, _topic: &str, _partition: u32, _offset: u64) -> Result<(), IngestError> {
        // A file is replayed from its start on every run; nothing to remember.
        Ok(())
    }

    fn idle_partitions(&self) -> Vec<(String, u32)> {
        self.exhausted.iter().map(|t| (t.clone(), 0)).collect()
    }

    fn assignment(&self) -> Vec<(String, u32)> {
        self.files.iter().map(|(t, ..)| (t.clone(), 0)).collect()
    }
}
