//! The HTTP half of `tests/hostile_input.rs`: the corpus through
//! `POST /api/v1/ingest` of an `egret run --kafka` process. Devices post valid
//! simulator traffic live (30 s in real time, so their clocks match the collector's);
//! then every item goes alone in its own request, and the decoder-level ones again
//! inside batches of further valid lines. Checked: each response names each
//! rejected line and its reason (stream-clock kinds are accepted by HTTP and
//! dead-lettered by the pipeline); requests that are not a batch at all get a clear
//! 4xx; `egret.dlq` holds each rejection once per sending with its reason; `/metrics`
//! counts them; every accepted line is consumed; the process keeps serving.

use super::hostile::{self, Corpus, Item, Point, Row};
use super::{Egret, by_reason, header, namespace, read_back};
use egret_api::auth::{Role, TokenKey};
use egret_ingest::OutRecord;
use egret_model::Topic;
use egret_pipeline::DLQ_TOPIC;
use egret_simulator::{SimConfig, Simulator};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const TOKEN_KEY: &str = "hostile-input test: the token-signing key, 32+ bytes";
const LIVE_MS: i64 = 30_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A response of the ingest endpoint: (status, accepted, rejected, [(line, code)]).
struct Report {
    status: u16,
    accepted: u64,
    rejected: u64,
    errors: Vec<(u64, String)>,
    body: String,
}

/// A valid bus report dated `ts_ms`: the first one of a simulated morning (08:00 in
/// the cities' time on the day of `ts_ms`), moved to `ts_ms`.
fn bus_report_at(city: &std::sync::Arc<egret_model::CityModel>, ts_ms: i64) -> OutRecord {
    let offset = city.rules.timezone_offset_minutes;
    let local_midnight = egret_model::time::local_day(ts_ms, offset) * 86_400_000 - i64::from(offset) * 60_000;
    let morning = local_midnight + 8 * 3_600_000;
    let mut sim = Simulator::new(city.clone(), SimConfig::clean(12, morning, 5 * 60_000));
    let report = (1..=300)
        .flat_map(|s| sim.advance_to(morning + s * 1000))
        .map(egret::drive::to_record)
        .find(|r| r.topic == Topic::BusGps.default_name())
        .expect("a bus report within five minutes of a simulated 08:00");
    let mut event: Value = serde_json::from_slice(&report.payload).expect("a bus report is JSON");
    event["ts_ms"] = ts_ms.into();
    event["event_id"] = format!("g-night-{ts_ms}").into();
    OutRecord { payload: serde_json::to_vec(&event).expect("json").into(), timestamp_ms: Some(ts_ms), ..report }
}

async fn ingest(egret: &Egret, token: Option<&str>, body: Vec<u8>) -> Report {
    let (status, bytes) = egret.post("/api/v1/ingest", token, body).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let errors = v["errors"]
        .as_array()
        .map(|a| a.iter().map(|e| (e["line"].as_u64().unwrap_or(0), e["code"].as_str().unwrap_or("").to_owned())).collect())
        .unwrap_or_default();
    let code = v["error"]["code"].as_str().map(str::to_owned);
    Report { status, accepted: n("accepted"), rejected: n("rejected"), errors, body: code.unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect()) }
}

fn ndjson(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.join(&b'\n')
}

/// Whether HTTP ingest itself rejects the item (else it accepts or skips it).
fn rejected_by_http(item: &Item) -> bool {
    let e = item.http_expect();
    e != hostile::ACCEPTED && e != hostile::SKIPPED && !item.by_pipeline()
}

pub async fn run(brokers: &str) {
    let city = egret::load_city(None).expect("city");
    let corpus = Corpus::load();
    // Originals before their copies, as through Kafka.
    let mut items = corpus.for_channel("http");
    items.sort_by_key(|i| i.after());
    assert!(items.iter().filter(|i| !i.accepted()).count() >= 50, "at least 50 hostile kinds through HTTP");
    let ns = namespace("hostile-http");
    let mut egret = Egret::spawn(brokers, &ns, &[], &[("EGRET_TOKEN_KEY", TOKEN_KEY)]);
    let key = TokenKey::from_secret(TOKEN_KEY.as_bytes());
    let device = key.issue("device-hostile", Role::Device, now_ms() / 1000, 3600);

    // Devices post live traffic, one request per second.
    let start = now_ms();
    let mut sim = Simulator::new(city.clone(), SimConfig::clean(12, start, 10 * 60_000));
    let mut steps: Vec<Vec<OutRecord>> =
        (1..=LIVE_MS / 1000).map(|step| sim.advance_to(start + step * 1000).into_iter().map(egret::drive::to_record).collect()).collect();
    // Buses keep their timetable (departures 06:00–22:30 in the cities' time, UTC+8):
    // late at night the live traffic has none, and the corpus copies one (an exact
    // duplicate report). This test failed at 00:58 there.
    if !steps.iter().flatten().any(|r| r.topic == Topic::BusGps.default_name()) {
        steps[0].push(bus_report_at(&city, start + 500));
    }
    let mut sent: Vec<(Topic, OutRecord)> = Vec::new();
    let t0 = Instant::now();
    for (step, records) in (1i64..).zip(steps) {
        let lines: Vec<Vec<u8>> = records.iter().map(|r| hostile::with_type(Topic::from_name(&r.topic).expect("input topic"), &r.payload)).collect();
        let wait = Duration::from_millis((step * 1000) as u64).saturating_sub(t0.elapsed());
        tokio::time::sleep(wait).await;
        if !lines.is_empty() {
            let r = ingest(&egret, Some(&device), ndjson(&lines)).await;
            assert_eq!((r.status, r.accepted, r.rejected), (200, lines.len() as u64, 0), "valid traffic: {}", r.body);
        }
        sent.extend(records.into_iter().map(|r| (Topic::from_name(&r.topic).expect("input topic"), r)));
    }
    let live_events = sent.len() as u64;
    egret.wait_for(live_events, 0, Duration::from_secs(60)).await;

    // Every item alone, as the newest traffic's point in time makes it.
    let head_ts = sent.iter().map(|(_, r)| hostile::ts_of(r)).max().expect("traffic");
    let drive = hostile::drive(&city, &corpus.vars, head_ts);
    let mut made: BTreeMap<String, OutRecord> = BTreeMap::new();
    let mut lines: Vec<(&Item, Vec<u8>)> = Vec::new();
    for item in &items {
        let point = Point { vars: &corpus.vars, head_ts, before: &sent, made: &made, drive };
        let line = match &item.http_line {
            Some(line) => hostile::fill(line, item, &point).into_bytes(),
            None => {
                let record = hostile::make(item, &point, 0);
                let line = hostile::with_type(item.topic(), &record.payload);
                made.insert(item.kind.clone(), record);
                line
            }
        };
        lines.push((item, line));
    }
    let mut single: Vec<String> = Vec::new();
    for (item, line) in &lines {
        let r = ingest(&egret, Some(&device), line.clone()).await;
        single.push(match (r.status, r.accepted, r.rejected, r.errors.as_slice()) {
            (200, 0, 1, [(1, code)]) => code.clone(),
            (200, 1, 0, []) => hostile::ACCEPTED.to_owned(),
            (200, 0, 0, []) => hostile::SKIPPED.to_owned(),
            _ => format!("HTTP {} {}: {}", r.status, item.kind, r.body),
        });
    }
    let accepted_singles = single.iter().filter(|s| *s == hostile::ACCEPTED).count() as u64;
    let stream_level = items.iter().filter(|i| i.by_pipeline()).count() as u64;
    let http_rejected = items.iter().filter(|i| rejected_by_http(i)).count() as u64;
    egret.wait_for(live_events + accepted_singles, http_rejected + stream_level, Duration::from_secs(60)).await;

    // Then the decoder-level ones again, mixed into batches of further valid traffic.
    let mixed: Vec<&(&Item, Vec<u8>)> = lines.iter().filter(|(i, _)| rejected_by_http(i) || i.http_expect() == hostile::SKIPPED).collect();
    let mut more_valid = 0u64;
    let mut batch_rows: HashMap<&str, String> = HashMap::new();
    for (step, chunk) in mixed.chunks(mixed.len().div_ceil(10)).enumerate() {
        let until = start + LIVE_MS + (step as i64 + 1) * 1000;
        let valid: Vec<Vec<u8>> = sim
            .advance_to(until)
            .into_iter()
            .map(egret::drive::to_record)
            .map(|r| hostile::with_type(Topic::from_name(&r.topic).expect("input topic"), &r.payload))
            .collect();
        // Valid, hostile, valid, hostile, ...: line numbers tell them apart.
        let mut body: Vec<Vec<u8>> = Vec::new();
        let mut at_line: HashMap<u64, &Item> = HashMap::new();
        let mut valid_iter = valid.iter();
        for (item, line) in chunk {
            body.extend(valid_iter.next().cloned());
            body.push(line.clone());
            at_line.insert(body.len() as u64, item);
        }
        body.extend(valid_iter.cloned());
        let r = ingest(&egret, Some(&device), ndjson(&body)).await;
        let expected_rejected = chunk.iter().filter(|(i, _)| rejected_by_http(i)).count() as u64;
        assert_eq!((r.status, r.accepted, r.rejected), (200, valid.len() as u64, expected_rejected), "a mixed batch: {}", r.body);
        more_valid += valid.len() as u64;
        for (item, _) in chunk {
            batch_rows.insert(&item.kind, hostile::SKIPPED.to_owned());
        }
        for (line, code) in &r.errors {
            let item = at_line.get(line).unwrap_or_else(|| panic!("line {line} ({code}) of a mixed batch is valid traffic"));
            batch_rows.insert(&item.kind, code.clone());
        }
    }

    // Requests that are not a batch at all.
    let police = key.issue("police-hostile", Role::Police, now_ms() / 1000, 3600);
    let one_line = lines[0].1.clone();
    let refusals = [
        ("no token", ingest(&egret, None, one_line.clone()).await, 401),
        ("a police token", ingest(&egret, Some(&police), one_line).await, 403),
        ("17 MiB body", ingest(&egret, Some(&device), vec![b'x'; 17 << 20]).await, 413),
        ("50,001 lines", ingest(&egret, Some(&device), vec![b'\n'; 50_001]).await, 400),
    ];
    let total_accepted = live_events + accepted_singles + more_valid;
    let expected_dead = 2 * http_rejected + stream_level;
    let metrics = egret.wait_for(total_accepted, expected_dead, Duration::from_secs(60)).await;
    let health = egret.get("/healthz").await;
    egret.terminate();
    let status = egret.wait_exit(Duration::from_secs(60));

    // The dead-letter topic, back to the items by their bytes.
    let letters = read_back(brokers, &ns, DLQ_TOPIC).await;
    let index: HashMap<&[u8], usize> = lines.iter().enumerate().map(|(i, (_, l))| (&l[..], i)).collect();
    let mut per_item: Vec<Vec<(String, String)>> = vec![Vec::new(); lines.len()];
    let mut strays = Vec::new();
    for r in &letters {
        let (reason, source) = (header(r, "egret-error").unwrap_or_default(), header(r, "egret-source-topic").unwrap_or_default());
        match index.get(&r.payload[..]) {
            Some(&i) => per_item[i].push((reason, source)),
            None => strays.push(format!("{reason} from {source}: {:.120}", String::from_utf8_lossy(&r.payload))),
        }
    }
    let mut rows = Vec::new();
    let mut expected_by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut expected_rejected: BTreeMap<String, u64> = BTreeMap::new();
    for (((item, _), response), letters) in lines.iter().zip(&single).zip(&per_item) {
        let e = item.http_expect();
        let topic = item.topic().default_name();
        // (response alone, in a batch, dead letters as (reason, source)) expected:
        let (alone, in_batch, dead): (&str, Option<&str>, Vec<(String, String)>) = if rejected_by_http(item) {
            (e, Some(e), vec![(e.to_owned(), "http".to_owned()); 2])
        } else if item.by_pipeline() {
            (hostile::ACCEPTED, None, vec![(e.to_owned(), topic.to_owned())])
        } else {
            (e, (e == hostile::SKIPPED).then_some(e), Vec::new())
        };
        for (reason, source) in &dead {
            *expected_by_reason.entry(reason.clone()).or_default() += 1;
            if source != "http" {
                *expected_rejected.entry(reason.clone()).or_default() += 1;
            }
        }
        let batch = batch_rows.get(item.kind.as_str()).map(String::as_str);
        let ok = response == alone && batch == in_batch && *letters == dead;
        let show = |l: &[(String, String)]| l.iter().map(|(r, s)| format!("{r}@{s}")).collect::<Vec<_>>().join(",");
        let expected = format!("{alone}; dlq {}", show(&dead));
        let got = if ok { expected.clone() } else { format!("{response}; batch {batch:?}; dlq {}", show(letters)) };
        rows.push(Row { kind: item.kind.clone(), expected, got });
    }
    let failed = hostile::print_table(&format!("through POST /api/v1/ingest (namespace {ns}; response alone; dead letters as reason@source)"), &rows);
    let in_topic = by_reason(letters.iter());
    let counted = hostile::counter_by(&metrics, "egret_dead_letters_total", "reason");
    let rejected = hostile::counter_by(&metrics, "egret_events_rejected_total", "reason");
    let consumed = hostile::counter_total(&metrics, "egret_events_consumed_total");
    println!("requests that are no batch: {}", refusals.iter().map(|(what, r, _)| format!("{what} -> {} {}", r.status, r.body)).collect::<Vec<_>>().join("; "));
    println!("dead letters by reason: expected {expected_by_reason:?}\n  in {DLQ_TOPIC}: {in_topic:?}\n  /metrics egret_dead_letters_total: {counted:?}");
    println!("lines accepted {total_accepted} ({live_events} live, {more_valid} in mixed batches, {accepted_singles} items), consumed {consumed}; /healthz {}; exit {status:?}", health.0);

    assert!(strays.is_empty(), "{} dead letters that are no corpus line (valid traffic dead-lettered?): {:#?}", strays.len(), &strays[..strays.len().min(10)]);
    assert!(failed.is_empty(), "items not handled as the corpus says: {failed:#?}");
    for (what, r, status) in &refusals {
        assert_eq!(r.status, *status, "{what}: {}", r.body);
    }
    assert_eq!(in_topic, expected_by_reason, "dead letters per reason in {DLQ_TOPIC}");
    assert_eq!(counted, expected_by_reason, "egret_dead_letters_total per reason");
    assert_eq!(rejected, expected_rejected, "egret_events_rejected_total per reason (the pipeline's own)");
    assert_eq!(consumed, total_accepted, "every accepted line was consumed: nothing valid lost");
    assert_eq!(health.0, 200, "/healthz after the corpus: {}", health.1);
    assert!(status.is_some_and(|s| s.success()), "egret run stops cleanly on SIGTERM: {status:?}\n{}", egret.stderr_tail());
}
