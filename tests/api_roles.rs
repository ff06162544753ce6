//! The API's security over real HTTP, on the state a scripted 10-minute scenario
//! left behind: every endpoint against every kind of caller (the role matrix), no
//! raw plate in anything the public can read (HTTP and WebSocket), the police
//! violations list (cursor pages, filters, bad queries), the audit log (reads,
//! pseudonymised plates, refusals, surviving a restart), the rate limit and the
//! body limit.

mod support;

use egret_api::auth::Role;
use egret_api::ingest::{IngestTarget, SinkTarget};
use egret_api::keys::Pseudonymizer;
use egret_api::AppState;
use egret_ingest::memory::MemorySink;
use egret_model::city::{ReaderKind, RoadClass};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use support::{Api, Client, Reply, Who, Ws, config, high_rate, plates_in_body, scenario, token, token_as};

const KINDS: [&str; 7] = ["section_speed", "point_speed", "red_light", "bus_lane", "restricted_vehicle", "hotlist", "cloned_plate"];

/// The scenario's live state behind an API with the test keys, a high rate limit,
/// HTTP ingest into memory and no files.
fn state() -> AppState {
    let ingest: Arc<dyn IngestTarget> = Arc::new(SinkTarget { inputs: Arc::new(MemorySink::new(100)), dead_letters: Arc::new(MemorySink::new(100)) });
    AppState::with_config(scenario().live.clone(), None, config(high_rate(), None, None), Some(ingest)).expect("state")
}

/// Percent-encodes a query value (plates are not ASCII).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A `from`/`to` query that routes: the two ends of a car segment.
async fn routable(api: &Client) -> String {
    let city = &scenario().city;
    for s in city.segments.iter().filter(|s| s.road_class != RoadClass::Brt).take(40) {
        let (a, b) = (city.reader(city.reader_idx(&s.from_reader_id).expect("reader")), city.reader(city.reader_idx(&s.to_reader_id).expect("reader")));
        let query = format!("from={},{}&to={},{}", a.lat, a.lon, b.lat, b.lon);
        if api.get(&format!("/api/v1/route?{query}"), None).await.status == 200 {
            return query;
        }
    }
    panic!("no car segment's ends route")
}

fn police() -> String {
    token(Role::Police)
}

/// One endpoint of the matrix: who may call it (None: everyone) and what success is.
struct Endpoint {
    method: Method,
    path: String,
    roles: Option<&'static [Role]>,
    ok: u16,
    body: Option<(&'static str, Vec<u8>)>,
}

impl Endpoint {
    fn public(path: impl Into<String>) -> Self {
        Endpoint { method: Method::GET, path: path.into(), roles: None, ok: 200, body: None }
    }

    fn only(roles: &'static [Role], method: Method, path: impl Into<String>) -> Self {
        Endpoint { method, path: path.into(), roles: Some(roles), ok: 200, body: None }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_against_every_caller() {
    let sc = scenario();
    let api = Api::start(state()).await;
    let police = police();
    let city = &sc.city;
    let segment = city.segments[0].segment_id.clone();
    let route = city.routes[0].route_id.clone();
    let stop = city.routes[0].directions[0].stops[0].stop_id.clone();
    let violation = api.get("/api/v1/violations?limit=1", Some(&police)).await.json()["violations"][0]["violation_id"]
        .as_str()
        .expect("the scenario has violations")
        .to_owned();
    let hotlist_body = json!({"entries": [{"plate": "闽D12345", "reason": "matrix"}]}).to_string().into_bytes();
    assert_eq!(api.put_json("/api/v1/hotlists/matrix", Some(&police), &json!({"entries": [{"plate": "闽D12345", "reason": "matrix"}]})).await.status, 200);
    let gantry = city.readers.iter().find(|r| r.kind == ReaderKind::Gantry).expect("a gantry").reader_id.clone();
    let ingest_body = format!("{{\"type\":\"plate_read\",\"event_id\":\"matrix-1\",\"reader_id\":\"{gantry}\",\"plate\":\"闽D12345\",\"ts_ms\":{}}}\n", support::START).into_bytes();
    let route_query = routable(&api).await;

    const DISPATCH: &[Role] = &[Role::Dispatcher, Role::Admin];
    const POLICE: &[Role] = &[Role::Police];
    const ADMIN: &[Role] = &[Role::Admin];
    const DEVICE: &[Role] = &[Role::Device];
    const SQL: &[Role] = &[Role::Police, Role::Admin];
    let sql_body = json!({"sql": "SELECT segment_id FROM segments LIMIT 1"}).to_string().into_bytes();
    let endpoints = vec![
        Endpoint::public("/api/v1/network"),
        Endpoint::public("/api/v1/readers"),
        Endpoint::public("/api/v1/cameras"),
        Endpoint::public("/api/v1/segments"),
        Endpoint::public(format!("/api/v1/segments/{segment}/history")),
        Endpoint::public("/api/v1/parking"),
        Endpoint::public("/api/v1/incidents"),
        Endpoint::public(format!("/api/v1/route?{route_query}")),
        Endpoint::public("/api/v1/buses"),
        Endpoint::public("/api/v1/routes"),
        Endpoint::public(format!("/api/v1/stops/{stop}/arrivals")),
        Endpoint::public("/healthz"),
        Endpoint::public("/readyz"),
        Endpoint::public("/metrics"),
        Endpoint::public("/openapi.json"),
        // TODO: /gtfs/static.zip and /gtfs-rt/* (public) are being built by others:
        // add them here once they settle.
        Endpoint::only(DISPATCH, Method::GET, format!("/api/v1/routes/{route}/headways")),
        Endpoint::only(POLICE, Method::GET, "/api/v1/violations"),
        Endpoint::only(POLICE, Method::GET, format!("/api/v1/violations/{violation}")),
        Endpoint::only(POLICE, Method::GET, "/api/v1/hotlist-hits"),
        Endpoint::only(POLICE, Method::GET, "/api/v1/hotlists"),
        Endpoint::only(POLICE, Method::GET, "/api/v1/hotlists/matrix"),
        Endpoint { body: Some(("application/json", hotlist_body.clone())), ..Endpoint::only(POLICE, Method::PUT, "/api/v1/hotlists/matrix") },
        Endpoint { ok: 204, ..Endpoint::only(POLICE, Method::DELETE, "/api/v1/hotlists/matrix-delete") },
        Endpoint::only(ADMIN, Method::GET, "/api/v1/audit"),
        Endpoint { body: Some(("application/x-ndjson", ingest_body)), ..Endpoint::only(DEVICE, Method::POST, "/api/v1/ingest") },
        Endpoint { body: Some(("application/json", sql_body)), ..Endpoint::only(SQL, Method::POST, "/api/v1/sql") },
    ];

    let mut failures = Vec::new();
    let mut checked = 0;
    for e in &endpoints {
        for who in Who::ALL {
            if e.method == Method::DELETE {
                // Something to delete, for every caller.
                let put = api.put_json("/api/v1/hotlists/matrix-delete", Some(&police), &json!({"entries": [{"plate": "闽D54321", "reason": "x"}]})).await;
                assert_eq!(put.status, 200);
            }
            let reply = api.send(e.method.clone(), &e.path, who.token().as_deref(), e.body.clone()).await;
            checked += 1;
            let expected = match (e.roles, who) {
                (None, _) => e.ok,
                (Some(_), Who::Anonymous | Who::Expired | Who::BadSignature) => 401,
                (Some(roles), Who::Valid(role)) if roles.contains(&role) => e.ok,
                (Some(_), Who::Valid(_)) => 403,
            };
            let what = format!("{} {} as {who:?}", e.method, e.path);
            if reply.status != expected {
                failures.push(format!("{what}: expected {expected}, got {} {}", reply.status, reply.text().chars().take(200).collect::<String>()));
                continue;
            }
            match expected {
                401 | 403 => {
                    let code = reply.error_code();
                    let want = if expected == 401 { "unauthorized" } else { "forbidden" };
                    if code != want {
                        failures.push(format!("{what}: error code {code}, expected {want}"));
                    }
                    if expected == 401 && reply.header("www-authenticate").as_deref() != Some("Bearer") {
                        failures.push(format!("{what}: 401 without WWW-Authenticate: Bearer ({:?})", reply.header("www-authenticate")));
                    }
                }
                204 => assert!(reply.body.is_empty(), "{what}: a 204 with a body"),
                _ if e.path == "/metrics" => assert!(reply.text().contains("egret_watermark_ms"), "{what}: {}", reply.text()),
                _ => {
                    let body = reply.json();
                    assert!(body.is_object() && body.get("error").is_none(), "{what}: {body}");
                }
            }
        }
    }
    assert_eq!(checked, endpoints.len() * Who::ALL.len());
    assert!(failures.is_empty(), "{} of {checked} calls were not as expected:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_public_carries_a_raw_plate() {
    let sc = scenario();
    assert!(sc.plates.len() > 500, "only {} plates in the input", sc.plates.len());
    let api = Api::start(state()).await;
    let city = &sc.city;

    let mut paths: Vec<String> =
        ["/api/v1/network", "/api/v1/readers", "/api/v1/cameras", "/api/v1/segments", "/api/v1/parking", "/api/v1/incidents", "/api/v1/buses", "/api/v1/routes", "/healthz", "/readyz", "/metrics", "/openapi.json"]
            .into_iter()
            .map(str::to_owned)
            .collect();
    paths.extend(city.segments.iter().map(|s| format!("/api/v1/segments/{}/history", s.segment_id)));
    let stops: BTreeSet<&str> = city.routes.iter().flat_map(|r| &r.directions).flat_map(|d| &d.stops).map(|s| s.stop_id.as_str()).collect();
    paths.extend(stops.iter().map(|s| format!("/api/v1/stops/{s}/arrivals")));
    paths.extend(city.routes.iter().map(|r| format!("/api/v1/buses?route={}", r.route_id)));
    paths.push(format!("/api/v1/route?{}", routable(&api).await));
    let gantries: Vec<_> = city.readers.iter().filter(|r| r.kind == ReaderKind::Gantry).collect();
    for pair in gantries.chunks(2).step_by(7).take(10) {
        if let [a, b] = pair {
            paths.push(format!("/api/v1/route?from={},{}&to={},{}", a.lat, a.lon, b.lat, b.lon));
        }
    }

    let mut leaks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut bytes_scanned = 0;
    for path in &paths {
        let reply = api.get(path, None).await;
        assert!(reply.status < 500, "{path}: {} {}", reply.status, reply.text());
        bytes_scanned += reply.body.len();
        let found = plates_in_body(&reply.body, &sc.plates);
        if !found.is_empty() {
            leaks.insert(path.clone(), found);
        }
    }
    // The GTFS feeds are public too (still being built by others: scanned when served).
    for path in ["/gtfs-rt/vehicle-positions", "/gtfs-rt/trip-updates", "/gtfs/static.zip"] {
        let reply = api.get(path, None).await;
        if reply.status == 200 {
            bytes_scanned += reply.body.len();
            let found = plates_in_body(&reply.body, &sc.plates);
            if !found.is_empty() {
                leaks.insert(path.to_owned(), found);
            }
        }
    }
    // The public WebSocket channels' snapshots.
    let mut ws = Ws::connect(api.addr, None).await;
    let mut channels = vec!["segments".to_owned(), "parking".to_owned(), "incidents".to_owned(), "buses".to_owned()];
    channels.extend(city.routes.iter().take(5).map(|r| format!("buses:{}", r.route_id)));
    for channel in &channels {
        let snapshot = ws.ask(json!({"op": "subscribe", "channel": channel})).await;
        assert_eq!((snapshot["type"].as_str(), snapshot["channel"].as_str()), (Some("snapshot"), Some(channel.as_str())), "{snapshot}");
        let text = snapshot.to_string();
        bytes_scanned += text.len();
        let found = plates_in_body(text.as_bytes(), &sc.plates);
        if !found.is_empty() {
            leaks.insert(format!("ws {channel}"), found);
        }
    }
    println!("scanned {} public responses ({bytes_scanned} bytes) for {} input plates", paths.len() + channels.len(), sc.plates.len());
    assert!(leaks.is_empty(), "raw plates in public responses: {leaks:?}");

    // The scan does find plates where they belong: the police list has them.
    let police = police();
    let violations = api.get("/api/v1/violations?limit=1000", Some(&police)).await;
    assert_eq!(violations.status, 200);
    let seen = plates_in_body(&violations.body, &sc.plates);
    let listed: BTreeSet<String> = violations.json()["violations"].as_array().expect("violations").iter().filter_map(|v| v["plate"].as_str().map(str::to_owned)).collect();
    assert!(!listed.is_empty(), "the scenario has violations");
    let from_input: BTreeSet<&String> = listed.iter().filter(|p| sc.plates.contains(*p)).collect();
    assert!(!from_input.is_empty(), "no violation is of a plate of the input");
    assert!(from_input.iter().all(|p| seen.contains(*p)), "the scan misses plates the police list holds: {from_input:?} vs {seen:?}");
    // And a police WebSocket snapshot of violations would have been caught too.
    let mut ws = Ws::connect(api.addr, Some(&police)).await;
    let snapshot = ws.ask(json!({"op": "subscribe", "channel": "violations"})).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert!(!plates_in_body(snapshot.to_string().as_bytes(), &sc.plates).is_empty(), "the police channel shows plates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_pages_filters_and_bad_queries() {
    let sc = scenario();
    let api = Api::start(state()).await;
    let police = police();

    let reply = api.get("/api/v1/violations?limit=1000", Some(&police)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let page = reply.json();
    assert!(page["next_cursor"].is_null(), "the scenario holds fewer than 1000 tickets: {}", page["next_cursor"]);
    let full = page["violations"].as_array().expect("violations").clone();
    assert_eq!(full.len(), sc.live.violations(|_| true).len(), "the unpaged list holds every ticket");
    assert!(full.len() > 20, "only {} tickets", full.len());
    for v in &full {
        for key in ["violation_id", "kind", "plate", "ts_ms", "location", "measured", "limit", "rule_id", "rule_version", "evidence"] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
    }
    let ids = |list: &[Value]| list.iter().map(|v| v["violation_id"].as_str().expect("id").to_owned()).collect::<Vec<_>>();
    let full_ids = ids(&full);
    assert_eq!(full_ids.iter().collect::<BTreeSet<_>>().len(), full_ids.len(), "ids are unique");

    // The default page is 100, with a cursor to the rest.
    let first = api.get("/api/v1/violations", Some(&police)).await.json();
    assert_eq!(first["violations"].as_array().map(Vec::len), Some(full.len().min(100)));
    assert_eq!(first["next_cursor"].is_string(), full.len() > 100);

    // Pages of 7: unique ids, together exactly the unpaged list, in its order.
    for limit in [1, 7, 100] {
        let paged = api.all_violations(&police, "", limit).await;
        let paged_ids = ids(&paged);
        assert_eq!(paged_ids.iter().collect::<BTreeSet<_>>().len(), paged_ids.len(), "limit {limit}: an id on two pages");
        assert_eq!(paged_ids, full_ids, "limit {limit}: the pages together are the unpaged list");
    }

    // kind= returns that kind only, and all of it; paging through a filter too.
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &full {
        *by_kind.entry(KINDS.iter().find(|k| v["kind"] == **k).unwrap_or_else(|| panic!("unknown kind in {v}"))).or_default() += 1;
    }
    assert!(by_kind.len() >= 3, "too few kinds to judge the filter: {by_kind:?}");
    for kind in KINDS {
        let of_kind = api.all_violations(&police, &format!("kind={kind}&"), 5).await;
        assert!(of_kind.iter().all(|v| v["kind"] == kind), "kind={kind} returned another kind");
        assert_eq!(of_kind.len(), by_kind.get(kind).copied().unwrap_or(0), "kind={kind}");
    }

    // plate= is normalised: lower-case letters find the same tickets.
    let plate = full[0]["plate"].as_str().expect("plate").to_owned();
    let expected: Vec<String> = full.iter().filter(|v| v["plate"] == plate.as_str()).map(|v| v["violation_id"].as_str().expect("id").to_owned()).collect();
    let lower = plate.to_lowercase();
    assert_ne!(lower, plate, "the plate has letters");
    for query in [&plate, &lower] {
        let reply = api.get(&format!("/api/v1/violations?plate={}", encode(query)), Some(&police)).await;
        assert_eq!(reply.status, 200, "plate={query}: {}", reply.text());
        assert_eq!(ids(reply.json()["violations"].as_array().expect("violations")), expected, "plate={query}");
    }

    // since_ms / until_ms: a half-open interval of ticket times.
    let mut times: Vec<i64> = full.iter().map(|v| v["ts_ms"].as_i64().expect("ts")).collect();
    times.sort_unstable();
    let (since, until) = (times[times.len() / 4], times[3 * times.len() / 4]);
    let within = api.all_violations(&police, &format!("since_ms={since}&until_ms={until}&"), 50).await;
    let want = full.iter().filter(|v| v["ts_ms"].as_i64().is_some_and(|t| t >= since && t < until)).count();
    assert_eq!(within.len(), want);
    assert!(want > 0);

    // One ticket by id is the listed one; an unknown id is a 404.
    let one = api.get(&format!("/api/v1/violations/{}", full_ids[3]), Some(&police)).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json(), full[3]);
    let missing = api.get("/api/v1/violations/0123456789abcdef0123456789abcdef", Some(&police)).await;
    assert_eq!((missing.status, missing.error_code().as_str()), (404, "not_found"));

    // Bad queries are 400 with a JSON error, never a 500.
    for query in [
        "kind=speeding",
        "kind=",
        "cursor=bogus",
        "cursor=v",
        "cursor=v-1",
        "limit=0",
        "limit=5000",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "since_ms=yesterday",
        "plate=notaplate",
        "plate=%E9%97%BDD1234",
        "colour=red",
    ] {
        let reply = api.get(&format!("/api/v1/violations?{query}"), Some(&police)).await;
        assert_eq!((reply.status, reply.error_code().as_str()), (400, "bad_request"), "{query}: {}", reply.text());
    }
    // The largest page is allowed.
    assert_eq!(api.get("/api/v1/violations?limit=1000", Some(&police)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_credentials_wrong_methods_and_unknown_paths() {
    let api = Api::start(state()).await;
    let police = police();
    // The scheme is case-insensitive as far as the API goes.
    assert_eq!(api.get_with_authorization("/api/v1/hotlists", &format!("bearer {police}")).await.status, 200);
    let mangled = format!("{police}x");
    let basic = "Basic cG9saWNlOnNlY3JldA==".to_owned();
    let unsigned = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4Iiwicm9sZSI6InBvbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.".to_owned();
    for authorization in [basic, "Bearer".to_owned(), "Bearer ".to_owned(), "Bearer not.a.jwt".to_owned(), format!("Token {police}"), format!("Bearer {mangled}"), unsigned] {
        // A public endpoint answers whatever the header says …
        let public = api.get_with_authorization("/api/v1/segments", &authorization).await;
        assert_eq!(public.status, 200, "{authorization}: {}", public.text());
        // … one that needs a role does not.
        let refused = api.get_with_authorization("/api/v1/hotlists", &authorization).await;
        assert_eq!((refused.status, refused.error_code().as_str()), (401, "unauthorized"), "{authorization}");
        assert_eq!(refused.header("www-authenticate").as_deref(), Some("Bearer"));
    }
    // Wrong methods and unknown paths are JSON errors too.
    for (method, path) in [(Method::POST, "/api/v1/violations"), (Method::DELETE, "/api/v1/audit"), (Method::GET, "/api/v1/ingest"), (Method::POST, "/api/v1/hotlists")] {
        let reply = api.send(method.clone(), path, Some(&police), None).await;
        assert_eq!((reply.status, reply.error_code().as_str()), (405, "method_not_allowed"), "{method} {path}");
    }
    let reply = api.get("/api/v1/nothing-here", Some(&police)).await;
    assert_eq!((reply.status, reply.error_code().as_str()), (404, "not_found"));
}

fn entries(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["entries"].as_array().expect("entries").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_reads_pseudonyms_and_refusals_and_survives_a_restart() {
    let sc = scenario();
    let dir = support::scratch_dir("api-audit");
    let audit_path = dir.join("audit.ndjson");
    let started_ms = egret_api::now_ms();
    let officer = token_as(Role::Police, "officer-7");
    let admin = token(Role::Admin);
    let plate = {
        let all = sc.live.violations(|_| true);
        all.first().expect("tickets").plate.clone()
    };
    let pseudonym = Pseudonymizer::new(support::PSEUDONYM_SECRET).pseudonym(&plate);

    let before = {
        let api = Api::start(AppState::with_config(sc.live.clone(), None, config(high_rate(), Some(audit_path.clone()), None), None).expect("state")).await;
        // Police reads.
        assert_eq!(api.get("/api/v1/violations?limit=50&kind=restricted_vehicle", Some(&officer)).await.status, 200);
        let by_plate = api.get(&format!("/api/v1/violations?plate={}", encode(&plate.to_lowercase())), Some(&officer)).await;
        assert_eq!(by_plate.status, 200);
        let found = by_plate.json()["violations"].as_array().map_or(0, Vec::len);
        assert!(found > 0);
        assert_eq!(api.get("/api/v1/hotlists", Some(&officer)).await.status, 200);
        assert_eq!(api.get("/api/v1/hotlist-hits", Some(&officer)).await.status, 200);
        let sql = json!({"sql": format!("SELECT violation_id FROM violations WHERE plate = '{plate}'")}).to_string().into_bytes();
        let reply = api.send(Method::POST, "/api/v1/sql", Some(&officer), Some(("application/json", sql))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        // Refused attempts.
        assert_eq!(api.get("/api/v1/violations", None).await.status, 401);
        assert_eq!(api.get("/api/v1/violations", Some(&token(Role::Dispatcher))).await.status, 403);
        assert_eq!(api.get("/api/v1/hotlists", Some(&token(Role::Admin))).await.status, 403);
        assert_eq!(api.get("/api/v1/violations?limit=0", Some(&officer)).await.status, 400);
        // Only the admin reads the log.
        assert_eq!(api.get("/api/v1/audit", Some(&officer)).await.status, 403);
        assert_eq!(api.get("/api/v1/audit", None).await.status, 401);
        let reply = api.get("/api/v1/audit", Some(&admin)).await;
        let log = entries(&reply);

        let find = |pred: &dyn Fn(&Value) -> bool| log.iter().find(|e| pred(e)).cloned();
        let read = find(&|e| e["action"] == "GET /api/v1/violations" && e["subject"] == "officer-7" && e["detail"] == "kind=restricted_vehicle")
            .unwrap_or_else(|| panic!("the officer's read is not in {log:#?}"));
        assert_eq!((read["role"].as_str(), read["outcome"].as_str(), read["rows"].as_u64()), (Some("police"), Some("ok"), Some(50)), "{read}");
        let ts = read["ts_ms"].as_i64().expect("ts_ms");
        assert!(ts >= started_ms && ts <= egret_api::now_ms(), "{read}");
        let query = find(&|e| e["action"] == "GET /api/v1/violations" && e["detail"].as_str().is_some_and(|d| d.starts_with("plate=")))
            .unwrap_or_else(|| panic!("the plate query is not in {log:#?}"));
        assert_eq!(query["detail"].as_str(), Some(format!("plate={pseudonym}").as_str()), "the plate is written as its pseudonym");
        assert!(pseudonym.starts_with("anon-"));
        assert_eq!((query["rows"].as_u64(), query["outcome"].as_str()), (Some(found as u64), Some("ok")));
        let sql = find(&|e| e["action"] == "POST /api/v1/sql" && e["subject"] == "officer-7").unwrap_or_else(|| panic!("the SQL query is not in {log:#?}"));
        let detail = sql["detail"].as_str().expect("detail");
        assert!(detail.contains(&pseudonym) && !detail.contains(&plate), "the SQL's plate literal is written as its pseudonym: {detail}");
        assert_eq!((sql["rows"].as_u64(), sql["outcome"].as_str()), (Some(found as u64), Some("ok")), "{sql}");
        for action in ["GET /api/v1/hotlists", "GET /api/v1/hotlist-hits"] {
            let e = find(&|e| e["action"] == action && e["subject"] == "officer-7").unwrap_or_else(|| panic!("{action} not in {log:#?}"));
            assert_eq!(e["outcome"], "ok");
        }
        let anonymous = find(&|e| e["subject"] == "anonymous" && e["action"] == "GET /api/v1/violations").expect("the anonymous attempt");
        assert_eq!((anonymous["role"].as_str(), anonymous["outcome"].as_str(), anonymous["rows"].as_u64()), (Some("public"), Some("unauthorized"), Some(0)));
        let dispatcher = find(&|e| e["subject"] == "dispatcher-1").expect("the dispatcher's attempt");
        assert_eq!((dispatcher["role"].as_str(), dispatcher["outcome"].as_str()), (Some("dispatcher"), Some("forbidden")));
        let admin_attempt = find(&|e| e["subject"] == "admin-1" && e["action"] == "GET /api/v1/hotlists").expect("the admin's attempt on hotlists");
        assert_eq!(admin_attempt["outcome"], "forbidden");
        let bad = find(&|e| e["subject"] == "officer-7" && e["outcome"] == "bad_request").expect("the bad query");
        assert_eq!(bad["rows"], 0);
        // No raw plate anywhere in the log the admin reads.
        let raw = plates_in_body(&reply.body, &sc.plates);
        assert!(raw.is_empty(), "raw plates in the audit log: {raw:?}");
        assert!(!reply.text().contains(&plate) && !reply.text().contains(&plate.to_lowercase()));

        // limit and since_ms.
        let newest = entries(&api.get("/api/v1/audit?limit=2", Some(&admin)).await);
        assert_eq!(newest, log[log.len() - 2..].to_vec());
        let since = entries(&api.get(&format!("/api/v1/audit?since_ms={}", ts + 1), Some(&admin)).await);
        assert!(since.iter().all(|e| e["ts_ms"].as_i64() > Some(ts)) && since.len() < log.len());
        for bad in ["limit=0", "limit=abc", "since_ms=x", "who=me"] {
            let reply = api.get(&format!("/api/v1/audit?{bad}"), Some(&admin)).await;
            assert_eq!((reply.status, reply.error_code().as_str()), (400, "bad_request"), "{bad}");
        }
        log
    };
    assert!(before.len() >= 9, "{before:#?}");

    // On disk, one JSON object a line, and read back by a new instance.
    let text = std::fs::read_to_string(&audit_path).expect("audit file");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("an NDJSON line")).collect();
    assert_eq!(lines, before, "the file holds what the admin read");
    let api = Api::start(AppState::with_config(sc.live.clone(), None, config(high_rate(), Some(audit_path.clone()), None), None).expect("reopened")).await;
    assert_eq!(api.get("/api/v1/violations?limit=3", Some(&officer)).await.status, 200);
    let after = entries(&api.get("/api/v1/audit", Some(&admin)).await);
    assert_eq!(after[..before.len()], before[..], "the earlier entries survive a restart");
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!((after[before.len()]["detail"].as_str(), after[before.len()]["rows"].as_u64()), (Some(""), Some(3)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let one = NonZeroU32::new(1).expect("1");
    let rate = egret_api::guard::RateLimit { per_second: one, burst: NonZeroU32::new(3).expect("3") };
    let api = Api::start(AppState::with_config(scenario().live.clone(), None, config(rate, None, None), None).expect("state")).await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..5 {
        let reply = api.get("/api/v1/segments", None).await;
        statuses.push(reply.status);
        if reply.status == 429 && limited.is_none() {
            limited = Some(reply);
        }
    }
    assert_eq!(statuses[..4], [200u16, 200, 200, 429], "a burst of 3, then refused: {statuses:?}");
    let limited = limited.expect("a 429");
    assert_eq!(limited.error_code(), "rate_limited");
    let retry: u64 = limited.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another client (a token's subject) has a bucket of its own.
    assert_eq!(api.get("/api/v1/segments", Some(&token(Role::Dispatcher))).await.status, 200);
    // And the refused one may go again after the wait.
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    assert_eq!(api.get("/api/v1/segments", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413_json_errors() {
    let api = Api::start(state()).await;
    let police = police();
    let big = json!({"entries": [{"plate": "闽D12345", "reason": "x".repeat(2 * 1024 * 1024)}]});
    let reply = api.put_json("/api/v1/hotlists/x", Some(&police), &big).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert_eq!(reply.error_code(), "payload_too_large");
    // The server drops a connection whose body it did not read: ask on a new one.
    let api = Client::new(api.addr);
    assert_eq!(api.get("/api/v1/hotlists/x", Some(&police)).await.status, 404, "nothing was stored");
    // A body just under the limit is read (and judged on its content).
    let fits = json!({"entries": [{"plate": "闽D12345", "reason": "x".repeat(1000 * 1024)}]});
    assert_eq!(api.put_json("/api/v1/hotlists/x", Some(&police), &fits).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_ingest_is_a_413_json_error() {
    let api = Api::start(state()).await;
    let line = format!("{{\"type\":\"plate_read\",\"pad\":\"{}\"}}\n", "x".repeat(1000));
    let body = line.repeat(17 * 1024);
    assert!(body.len() > egret_api::ingest::MAX_BODY_BYTES);
    let reply = api.post_ndjson("/api/v1/ingest", Some(&token(Role::Device)), body).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert_eq!(reply.error_code(), "payload_too_large");
}

/// Tickets are pushed at once and the map channels at most every 25 ms: a map change
/// that came within that gap of the last push is still pushed when the gap ends,
/// with nothing else changing after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_change_held_back_behind_a_ticket_is_still_pushed() {
    use egret_pipeline::enforce::Tickets;
    use egret_pipeline::{BatchOutput, LiveState};
    let source = &scenario().live;
    let windows: Vec<_> = source.snapshot().latest.iter().flatten().take(2).cloned().collect();
    assert_eq!(windows.len(), 2, "the scenario has speeds");
    let ticket = source.violations(|_| true).into_iter().next().expect("the scenario has tickets");
    let live = Arc::new(LiveState::new(scenario().city.clone()));
    let api = Api::start(AppState::with_config(live.clone(), None, config(high_rate(), None, None), None).expect("state")).await;
    let mut ws = Ws::connect(api.client.addr, Some(&token(Role::Police))).await;
    for channel in ["segments", "violations"] {
        let snapshot = ws.ask(json!({"op": "subscribe", "channel": channel})).await;
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    }
    live.apply(&BatchOutput { windows: vec![windows[0].clone()], ..BatchOutput::default() });
    let first = ws.next().await;
    assert_eq!((first["type"].as_str(), first["channel"].as_str()), (Some("delta"), Some("segments")), "{first}");
    // Right after that push: the ticket goes at once, the window when the gap ends.
    let tickets = Tickets { violations: vec![ticket.clone()], possible_hits: Vec::new() };
    live.apply(&BatchOutput { windows: vec![windows[1].clone()], tickets, ..BatchOutput::default() });
    let mut deltas = BTreeMap::new();
    while deltas.len() < 2 {
        let delta = ws.next_within(std::time::Duration::from_secs(5)).await.expect("both channels' deltas within 5 s");
        assert_eq!(delta["type"], "delta", "{delta}");
        deltas.insert(delta["channel"].as_str().unwrap_or_default().to_owned(), delta);
    }
    assert_eq!(deltas["violations"]["upserts"][0]["violation_id"], ticket.violation_id.as_str());
    let segment_id = &scenario().city.segment(windows[1].segment).segment_id;
    assert_eq!(deltas["segments"]["upserts"][0]["segment_id"], segment_id.as_str(), "{}", deltas["segments"]);
}
