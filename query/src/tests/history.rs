//! The Parquet archive: what the pipeline finalises lands in hourly partitions,
//! SQL reads it back beside the live tables, and `WHERE hour = …` skips the rest.

use super::*;
use crate::history::{HISTORY_TABLES, HistoryArchive, hour_partition};
use egret_pipeline::live::Archive;
use std::path::{Path, PathBuf};

/// A fresh directory under the system's temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("egret-history-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file under `dir`, as paths relative to it.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path.strip_prefix(dir).expect("under dir").display().to_string());
            }
        }
    }
    out.sort();
    out
}

const HOUR_MS: i64 = 3_600_000;
/// 2026-11-29T23:00Z, so the next hour is another day too.
const T0: i64 = 1_795_996_800_000 - HOUR_MS;

#[test]
fn hours_are_utc_and_civil() {
    assert_eq!(hour_partition(0), "1970-01-01T00");
    assert_eq!(hour_partition(1_709_200_800_000), "2024-02-29T10");
    assert_eq!(hour_partition(1_735_689_599_999), "2024-12-31T23");
    assert_eq!(hour_partition(T0), "2026-11-29T23");
    assert_eq!(hour_partition(T0 + HOUR_MS), "2026-11-30T00");
}

#[tokio::test]
async fn windows_of_two_hours_land_in_two_partitions_and_hour_prunes() {
    let scratch = Scratch::new("hours");
    let live = live();
    let archive = Arc::new(HistoryArchive::open(&scratch.0, live.city().clone()).expect("open"));
    live.set_archive(archive.clone());
    live.apply(&BatchOutput {
        windows: vec![
            window(0, T0 + 58 * 60_000, 40.0, true),
            window(1, T0 + 59 * 60_000, 42.0, true),
            window(0, T0 + HOUR_MS, 44.0, true),
            window(2, T0 + HOUR_MS, 99.0, false), // provisional: never archived
        ],
        watermark_ms: T0 + HOUR_MS + 200_000,
        ..Default::default()
    });
    archive.flush().expect("flush");
    let written = files(&scratch.0.join("segment_windows"));
    assert_eq!(written.len(), 2, "{written:?}");
    assert!(written[0].starts_with("hour=2026-11-29T23/part-") && written[0].ends_with(".parquet"), "{written:?}");
    assert!(written[1].starts_with("hour=2026-11-30T00/part-"), "{written:?}");

    let engine = QueryEngine::new(live, Some(scratch.0.clone()));
    let per_hour = engine.sql_json("SELECT hour, count(*) AS n, sum(mean_speed_kmh) AS s FROM history_segment_windows GROUP BY hour ORDER BY hour").await.expect("sql");
    assert_eq!(per_hour["rows"], serde_json::json!([{"hour": "2026-11-29T23", "n": 2, "s": 82.0}, {"hour": "2026-11-30T00", "n": 1, "s": 44.0}]));

    // A file that is not Parquet in the other hour: a query that opened it would fail.
    std::fs::write(scratch.0.join("segment_windows/hour=2026-11-29T23/garbage.parquet"), b"not parquet").expect("garbage");
    let pruned = engine.sql_json("SELECT segment_id, mean_speed_kmh FROM history_segment_windows WHERE hour = '2026-11-30T00'").await.expect("pruned");
    assert_eq!(pruned["rows"], serde_json::json!([{"segment_id": live_segment_id(&engine, 0), "mean_speed_kmh": 44.0}]));
    assert!(engine.sql("SELECT count(*) FROM history_segment_windows").await.is_err(), "without the filter the garbage is read");
}

fn live_segment_id(engine: &QueryEngine, idx: usize) -> String {
    engine.live.city().segments[idx].segment_id.clone()
}

#[tokio::test]
async fn live_violations_join_their_history() {
    let scratch = Scratch::new("join");
    let live = live();
    let archive = Arc::new(HistoryArchive::open(&scratch.0, live.city().clone()).expect("open"));
    live.set_archive(archive.clone());
    let mut out = BatchOutput { watermark_ms: T0, ..Default::default() };
    out.tickets.violations = vec![violation("v-1", T0 + 1_000), violation("v-2", T0 + 2_000)];
    live.apply(&out);
    // A replay of the same ticket: kept once live, archived once.
    out.tickets.violations = vec![violation("v-1", T0 + 1_000)];
    live.apply(&out);
    let engine = QueryEngine::new(live, Some(scratch.0.clone()));
    // Buffered, not yet written (the timer is seconds away): history is empty...
    let before = engine.sql_json("SELECT count(*) AS n FROM history_violations").await.expect("before");
    assert_eq!(before["rows"][0]["n"], 0);
    archive.flush().expect("flush");
    // ...and the same engine sees the new file at once: listings are not cached.
    let joined = engine
        .sql_json(
            "SELECT v.violation_id, h.hour, h.limit_value, h.evidence = v.evidence AS same_evidence \
             FROM violations v JOIN history_violations h ON v.violation_id = h.violation_id ORDER BY v.violation_id",
        )
        .await
        .expect("join");
    assert_eq!(
        joined["rows"],
        serde_json::json!([
            {"violation_id": "v-1", "hour": "2026-11-29T23", "limit_value": 80.0, "same_evidence": true},
            {"violation_id": "v-2", "hour": "2026-11-29T23", "limit_value": 80.0, "same_evidence": true},
        ])
    );
}

#[tokio::test]
async fn an_empty_or_missing_archive_is_an_empty_table_with_every_column() {
    let scratch = Scratch::new("empty");
    let live = live();
    let _archive = HistoryArchive::open(&scratch.0, live.city().clone()).expect("open");
    for dir in [scratch.0.clone(), scratch.0.join("never-created")] {
        let engine = QueryEngine::new(live.clone(), Some(dir.clone()));
        let tables = engine.tables();
        for (history, live_name) in [("history_segment_windows", "segment_windows"), ("history_violations", "violations")] {
            let json = engine.sql_json(&format!("SELECT * FROM {history}")).await.unwrap_or_else(|e| panic!("{history} in {}: {e}", dir.display()));
            assert_eq!(json["row_count"], 0);
            let (_, live_schema) = tables.iter().find(|(n, _)| n == live_name).expect("live table");
            let (_, schema) = tables.iter().find(|(n, _)| n == history).expect("history table documented");
            let columns: Vec<_> = json["columns"].as_array().expect("columns").iter().map(|c| c["name"].as_str().unwrap_or_default().to_owned()).collect();
            let mut expected: Vec<String> = live_schema.fields().iter().map(|f| f.name().clone()).collect();
            expected.push("hour".into());
            assert_eq!(columns, expected, "{history}: the live columns and hour");
            assert_eq!(schema.fields().len(), expected.len());
        }
    }
    assert!(!scratch.0.join("never-created").exists(), "reading does not create directories");
}

#[test]
fn dropping_the_archive_writes_what_it_holds_and_no_temp_file_remains() {
    let scratch = Scratch::new("drop");
    let city = city();
    let archive = HistoryArchive::open(&scratch.0, city).expect("open");
    let mut out = BatchOutput { windows: vec![window(3, T0, 50.0, true)], ..Default::default() };
    out.tickets.violations = vec![violation("v-9", T0)];
    archive.record(&out);
    drop(archive);
    let written = files(&scratch.0);
    assert_eq!(written.len(), 2, "{written:?}");
    assert!(written.iter().all(|f| f.ends_with(".parquet") && !f.contains(".tmp")), "{written:?}");
    for (_, sub) in HISTORY_TABLES {
        assert!(written.iter().any(|f| f.starts_with(sub)), "{sub}: {written:?}");
    }
}

#[test]
fn a_full_buffer_is_written_without_waiting() {
    let scratch = Scratch::new("full");
    let archive = HistoryArchive::open(&scratch.0, city()).expect("open");
    let windows: Vec<_> = (0..crate::history::ROWS_PER_FILE as i64).map(|i| window((i % 700) as u32, T0 + (i / 700) * 60_000, 50.0, true)).collect();
    archive.record(&BatchOutput { windows, ..Default::default() });
    // No flush: the writer writes a full buffer as soon as it has it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !files(&scratch.0).iter().any(|f| f.ends_with(".parquet")) {
        assert!(std::time::Instant::now() < deadline, "a full buffer was not written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
