//! The hostile-input corpus (`tests/hostile/corpus.json`) made concrete: each item's
//! bytes for a point of a valid stream (placeholders filled, raw byte parts joined,
//! copies of stream events resolved), its NDJSON line for HTTP ingest, and the
//! bookkeeping both channels of `tests/hostile_input.rs` share: matching dead letters
//! back to items, per-kind tables, and reading Prometheus counters.

#![allow(dead_code)]

use egret_ingest::OutRecord;
use egret_model::Topic;
use serde_json::Value;
use std::collections::BTreeMap;

pub const ACCEPTED: &str = "accepted";
pub const SKIPPED: &str = "skipped";

pub struct Corpus {
    pub vars: BTreeMap<String, String>,
    pub items: Vec<Item>,
}

/// One kind of hostile input (fields as in tests/hostile/README.md).
#[derive(Debug, Clone)]
pub struct Item {
    pub kind: String,
    /// Ingest type of the input topic (`plate_read`, ...).
    pub topic: String,
    pub payload: Option<Vec<Part>>,
    pub copy: Option<String>,
    pub patch: Option<serde_json::Map<String, Value>>,
    pub expect: String,
    pub http_expect: Option<String>,
    pub http_line: Option<String>,
    pub phase: Option<String>,
    pub stage: Option<String>,
    pub channels: Option<Vec<String>>,
    pub key: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Part {
    Text(String),
    Hex(String),
    Repeat(String, usize),
    Utf16le(String),
}

impl Corpus {
    pub fn load() -> Corpus {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile/corpus.json");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let vars = v["vars"].as_object().expect("vars").iter().map(|(k, x)| (k.clone(), x.as_str().expect("a var is a string").to_owned())).collect();
        let items = v["items"].as_array().expect("items").iter().map(Item::from_json).collect();
        Corpus { vars, items }
    }

    /// The items sent through one channel (`kafka` or `http`).
    pub fn for_channel(&self, channel: &str) -> Vec<&Item> {
        self.items.iter().filter(|i| i.channels.as_ref().is_none_or(|c| c.iter().any(|x| x == channel))).collect()
    }
}

fn part(v: &Value, kind: &str) -> Part {
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    match (v.as_str(), s("hex"), s("repeat"), s("utf16le")) {
        (Some(t), ..) => Part::Text(t.to_owned()),
        (_, Some(h), ..) => Part::Hex(h),
        (_, _, Some(r), _) => Part::Repeat(r, v["times"].as_u64().unwrap_or_else(|| panic!("{kind}: repeat without times")) as usize),
        (_, _, _, Some(t)) => Part::Utf16le(t),
        _ => panic!("{kind}: a payload part is a string, hex, repeat or utf16le: {v}"),
    }
}

impl Item {
    fn from_json(v: &Value) -> Item {
        let s = |k: &str| v[k].as_str().map(str::to_owned);
        let kind = s("kind").expect("every item has a kind");
        let payload = match &v["payload"] {
            Value::Null => None,
            Value::Array(parts) => Some(parts.iter().map(|p| part(p, &kind)).collect()),
            other => Some(vec![part(other, &kind)]),
        };
        Item {
            topic: s("topic").unwrap_or_else(|| panic!("{kind}: no topic")),
            expect: s("expect").unwrap_or_else(|| panic!("{kind}: no expect")),
            payload,
            copy: s("copy"),
            patch: v["patch"].as_object().cloned(),
            http_expect: s("http_expect"),
            http_line: s("http_line"),
            phase: s("phase"),
            stage: s("stage"),
            channels: v["channels"].as_array().map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect()),
            key: s("key"),
            kind,
        }
    }
}

impl Item {
    pub fn topic(&self) -> Topic {
        Topic::from_name(&self.topic).unwrap_or_else(|| panic!("{}: unknown topic {}", self.kind, self.topic))
    }

    pub fn after(&self) -> bool {
        self.phase.as_deref() == Some("after")
    }

    /// Whether its payload is timed by the drive (`{{enter_ts}}`, `{{exit_ts}}`).
    pub fn uses_drive(&self) -> bool {
        self.payload.iter().flatten().any(|p| matches!(p, Part::Text(t) if t.contains("{{enter_ts}}") || t.contains("{{exit_ts}}")))
    }

    pub fn accepted(&self) -> bool {
        self.expect == ACCEPTED
    }

    pub fn http_expect(&self) -> &str {
        self.http_expect.as_deref().unwrap_or(&self.expect)
    }

    /// Rejected by the pipeline, not the decoder: it takes the stream's clock or
    /// memory (late, duplicate, and `"stage": "pipeline"` items).
    pub fn by_pipeline(&self) -> bool {
        matches!(self.expect.as_str(), "late" | "duplicate") || self.stage.as_deref() == Some("pipeline")
    }
}

/// Where in the stream an item is made: the newest valid event time there, and the
/// valid events before it (for `copy`).
pub struct Point<'a> {
    pub vars: &'a BTreeMap<String, String>,
    pub head_ts: i64,
    /// Valid records so far, in order, with their topics.
    pub before: &'a [(Topic, OutRecord)],
    /// Items already made, by kind.
    pub made: &'a BTreeMap<String, OutRecord>,
    /// The drive over `vars.segment` (enter, exit), behind the stream.
    pub drive: (i64, i64),
}

/// An item's record for its input topic: its bytes, key and collector timestamp.
pub fn make(item: &Item, at: &Point<'_>, arrival_ms: i64) -> OutRecord {
    let topic = item.topic().default_name();
    if let Some(copy) = &item.copy {
        let mut r = resolve_copy(copy, at).unwrap_or_else(|| panic!("{}: nothing to copy for {copy}", item.kind));
        if let Some(patch) = &item.patch {
            let mut v: Value = serde_json::from_slice(&r.payload).expect("a copied event is JSON");
            for (k, x) in patch {
                v[k] = x.clone();
            }
            r.payload = serde_json::to_vec(&v).expect("json").into();
        }
        r.timestamp_ms = Some(arrival_ms);
        return r;
    }
    let parts = item.payload.as_ref().unwrap_or_else(|| panic!("{}: no payload", item.kind));
    let payload: Vec<u8> = parts.iter().flat_map(|p| part_bytes(p, item, at)).collect();
    let key = item.key.as_ref().map(|k| bytes::Bytes::from(fill(k, item, at).into_bytes()));
    OutRecord { timestamp_ms: Some(arrival_ms), ..OutRecord::new(topic, key, payload) }
}

fn resolve_copy(copy: &str, at: &Point<'_>) -> Option<OutRecord> {
    let (how, what) = copy.split_once(':')?;
    match how {
        "item" => at.made.get(what).cloned(),
        "stream" | "stream_first" => {
            let topic = Topic::from_name(what)?;
            let mut of_topic = at.before.iter().filter(|(t, _)| *t == topic).map(|(_, r)| r);
            if how == "stream" { of_topic.next_back() } else { of_topic.next() }.cloned()
        }
        _ => None,
    }
}

fn part_bytes(part: &Part, item: &Item, at: &Point<'_>) -> Vec<u8> {
    match part {
        Part::Text(t) => fill(t, item, at).into_bytes(),
        Part::Hex(hex) => {
            let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            digits.chunks(2).map(|d| u8::from_str_radix(std::str::from_utf8(d).expect("ascii"), 16).expect("hex digits")).collect()
        }
        Part::Repeat(text, times) => text.repeat(*times).into_bytes(),
        Part::Utf16le(text) => fill(text, item, at).encode_utf16().flat_map(u16::to_le_bytes).collect(),
    }
}

/// Fills `{{name}}` placeholders (see tests/hostile/README.md).
pub fn fill(text: &str, item: &Item, at: &Point<'_>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let close = rest[open..].find("}}").map(|c| open + c).unwrap_or_else(|| panic!("{}: unclosed {{{{", item.kind));
        out.push_str(&value_of(&rest[open + 2..close], item, at));
        rest = &rest[close + 2..];
    }
    out.push_str(rest);
    out
}

fn value_of(name: &str, item: &Item, at: &Point<'_>) -> String {
    let offset = |s: &str| s.parse::<i64>().unwrap_or_else(|_| panic!("{}: bad offset in {{{{{name}}}}}", item.kind));
    match name {
        "id" => format!("h-{}", item.kind),
        "ts" => at.head_ts.to_string(),
        "ts_s" => (at.head_ts / 1000).to_string(),
        "ts_us" => (at.head_ts * 1000).to_string(),
        "enter_ts" => at.drive.0.to_string(),
        "exit_ts" => at.drive.1.to_string(),
        _ if name.starts_with("ts+") => (at.head_ts + offset(&name[3..])).to_string(),
        _ if name.starts_with("ts-") => (at.head_ts - offset(&name[3..])).to_string(),
        _ => at.vars.get(name).cloned().unwrap_or_else(|| panic!("{}: unknown placeholder {{{{{name}}}}}", item.kind)),
    }
}

/// The NDJSON line of a payload for `POST /api/v1/ingest`: its bytes with
/// `"type"` put first when they open an object (else as they are).
pub fn with_type(topic: Topic, payload: &[u8]) -> Vec<u8> {
    let start = payload.iter().position(|b| !b.is_ascii_whitespace());
    match start {
        Some(i) if payload[i] == b'{' => {
            let body = &payload[i + 1..];
            let empty = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
            let mut line = format!("{{\"type\":\"{}\"{}", topic.ingest_type(), if empty { "" } else { "," }).into_bytes();
            line.extend_from_slice(body);
            line
        }
        _ => payload.to_vec(),
    }
}

/// A plausible drive over the corpus's segment at 50 km/h, entering 70 s behind
/// `head_ts`: both reads are behind the stream by more than the out-of-orderness
/// (5 s), and the entry's window stays open until the watermark passes
/// `head_ts + 20 s` (window end + the allowed lateness of 90 s).
pub fn drive(city: &egret_model::CityModel, vars: &BTreeMap<String, String>, head_ts: i64) -> (i64, i64) {
    let segment = city.segment(city.segment_idx(&vars["segment"]).expect("the corpus's segment exists"));
    assert_eq!((segment.from_reader_id.as_str(), segment.to_reader_id.as_str()), (vars["gantry"].as_str(), vars["gantry_next"].as_str()));
    let travel_ms = i64::from(segment.length_m) * 3600 / 50;
    let enter = head_ts - 70_000;
    assert!(enter + travel_ms < head_ts - 5_000, "the drive ends behind the stream");
    (enter, enter + travel_ms)
}

/// `event_ts` of a valid simulator event (its `ts_ms`).
pub fn ts_of(record: &OutRecord) -> i64 {
    serde_json::from_slice::<Value>(&record.payload).ok().and_then(|v| v["ts_ms"].as_i64()).expect("a simulator event has ts_ms")
}

/// Sum of a Prometheus counter per value of one label, from `/metrics` text.
pub fn counter_by(text: &str, name: &str, label: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' '])) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let key = series
            .split(&format!("{label}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_owned();
        *out.entry(key).or_default() += value as u64;
    }
    out
}

/// Sum of a Prometheus counter over all its series.
pub fn counter_total(text: &str, name: &str) -> u64 {
    counter_by(text, name, "").values().sum()
}

/// One row of the per-kind table: what was expected and what happened.
pub struct Row {
    pub kind: String,
    pub expected: String,
    pub got: String,
}

impl Row {
    pub fn ok(&self) -> bool {
        self.expected == self.got
    }
}

/// Prints the table and a closing summary; returns the rows that failed.
pub fn print_table(title: &str, rows: &[Row]) -> Vec<String> {
    println!("\n{title}");
    let w = rows.iter().map(|r| r.expected.chars().count().max(r.got.chars().count())).max().unwrap_or(0).max(8);
    println!("  {:<38} {:<w$} {:<w$}", "kind", "expected", "got");
    let mut failed = Vec::new();
    for r in rows {
        let mark = if r.ok() { "ok" } else { "FAIL" };
        println!("  {:<38} {:<w$} {:<w$} {mark}", r.kind, r.expected, r.got);
        if !r.ok() {
            failed.push(format!("{}: expected {}, got {}", r.kind, r.expected, r.got));
        }
    }
    let mut by_expected: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        *by_expected.entry(r.expected.as_str()).or_default() += 1;
    }
    println!("  {} kinds, {} as expected, {} not; by expected outcome: {by_expected:?}", rows.len(), rows.len() - failed.len(), failed.len());
    failed
}
