//! The API of a running system: the simulator feeds an embedded log, the pipeline
//! follows it, and the API serves with HTTP ingest into the same log. Police
//! hotlists edited over HTTP reach the pipeline (a device's reads of a listed
//! plate become a `hotlist` ticket), are checked and saved; a device is told which
//! lines it sent were bad and why; the WebSocket pushes a snapshot then deltas and
//! keeps police channels to the police.

mod support;

use egret_api::auth::Role;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{LiveEnv, Ws, live_env, token, token_as};

/// A plate no simulated vehicle has (a Tibetan plate in Fujian), upper-cased as
/// the API stores it.
const LISTED: &str = "藏Z9Q8X7";
/// One character off `LISTED`: a possible hit, not a ticket.
const NEAR: &str = "藏Z9Q8X8";

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn read_line(event_id: &str, reader: &str, plate: &str, ts_ms: i64) -> String {
    json!({"type": "plate_read", "event_id": event_id, "reader_id": reader, "plate": plate, "tag_id": format!("TAG-{event_id}"), "vehicle_class": "car", "ts_ms": ts_ms})
        .to_string()
}

fn saved_lists(env: &LiveEnv) -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(&env.hotlists_path).expect("the hotlists file");
    serde_json::from_str::<Value>(&text).expect("JSON").as_object().expect("an object of lists").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hotlisted_plate_ingested_by_a_device_becomes_a_ticket() {
    let env = live_env();
    let api = &env.client;
    let police = token_as(Role::Police, "officer-9");
    let device = token_as(Role::Device, "gantry-feed-1");

    // The police list a plate (lower case is normalised).
    let put = api.put_json("/api/v1/hotlists/api-live-stolen", Some(&police), &json!({"entries": [{"plate": LISTED.to_lowercase(), "reason": "stolen car"}]})).await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.json()["entries"][0]["plate"], LISTED);
    assert!(saved_lists(env).get("api-live-stolen").is_some_and(|l| l[0]["plate"] == LISTED), "the list is saved");

    // A device sends reads of it at real gantries, with bad lines among them.
    let gantries = env.gantry_ids();
    let ts = env.live.snapshot().as_of_ms + 30_000;
    let lines = [
        read_line("api-live-1", &gantries[0], LISTED, ts),
        "this is not json".to_owned(),
        json!({"type": "teleport", "event_id": "api-live-x"}).to_string(),
        read_line("api-live-2", "XM-R-NO-SUCH-READER", LISTED, ts),
        json!({"type": "plate_read", "event_id": "api-live-3", "reader_id": gantries[1], "ts_ms": ts}).to_string(),
        String::new(),
        read_line("api-live-4", &gantries[1], LISTED, ts + 20_000),
        json!({"event_id": "api-live-5", "reader_id": gantries[1], "plate": LISTED, "ts_ms": ts}).to_string(),
        read_line("api-live-6", &gantries[2], NEAR, ts + 25_000),
    ];
    let dead_before = env.ingest_dead_letters.total();
    let reply = api.post_ndjson("/api/v1/ingest", Some(&device), lines.join("\n") + "\n").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let report = reply.json();
    assert_eq!((report["accepted"].as_u64(), report["rejected"].as_u64()), (Some(3), Some(5)), "{report}");
    let errors: Vec<(u64, &str)> =
        report["errors"].as_array().expect("errors").iter().map(|e| (e["line"].as_u64().expect("line"), e["code"].as_str().expect("code"))).collect();
    assert_eq!(errors, [(2u64, "not_json"), (3, "unknown_type"), (4, "unknown_reader"), (5, "missing_field"), (8, "missing_field")], "{report}");
    assert!(report["errors"].as_array().expect("errors").iter().all(|e| e["message"].as_str().is_some_and(|m| !m.is_empty())));
    // Each bad line is a dead letter with its reason and line number.
    assert_eq!(env.ingest_dead_letters.total() - dead_before, 5);
    let letters = env.ingest_dead_letters.records();
    let header = |r: &egret_ingest::OutRecord, name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    let ours: Vec<(String, String)> = letters[letters.len() - 5..]
        .iter()
        .map(|r| (header(r, "egret-source-offset").expect("offset"), header(r, "egret-error").expect("reason")))
        .collect();
    let want: Vec<(String, String)> = errors.iter().map(|(line, code)| (line.to_string(), (*code).to_owned())).collect();
    assert_eq!(ours, want);
    assert_eq!(letters[letters.len() - 5].payload.as_ref(), b"this is not json", "the original bytes");

    // The pipeline takes the reads from the log: a hotlist ticket within seconds.
    let path = format!("/api/v1/violations?kind=hotlist&plate={}", encode(LISTED));
    let deadline = Instant::now() + Duration::from_secs(30);
    let tickets = loop {
        let reply = api.get(&path, Some(&police)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let list = reply.json()["violations"].as_array().expect("violations").clone();
        if !list.is_empty() {
            break list;
        }
        assert!(Instant::now() < deadline, "no hotlist ticket for {LISTED} after 30 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Give a second read time to be (wrongly) ticketed again: a repeat within 30 min is held back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tickets_now = api.get(&path, Some(&police)).await.json()["violations"].as_array().expect("violations").clone();
    assert_eq!(tickets_now.len(), 1, "{tickets_now:#?}");
    let ticket = &tickets[0];
    assert_eq!((ticket["kind"].as_str(), ticket["plate"].as_str()), (Some("hotlist"), Some(LISTED)));
    assert_eq!(ticket["location"].as_str(), Some(gantries[0].as_str()), "{ticket}");
    assert_eq!(ticket["rule_id"], "HOTLIST:api-live-stolen");
    assert_eq!(ticket["ts_ms"].as_i64().map(|t| (t - ts).abs() < 5_000), Some(true), "{ticket}");
    let id = ticket["violation_id"].as_str().expect("id");
    assert_eq!(api.get(&format!("/api/v1/violations/{id}"), Some(&police)).await.json()["violation_id"], id);

    // The read one character off is a possible hit for a person, not a ticket.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hits = api.get("/api/v1/hotlist-hits", Some(&police)).await.json();
        let found = hits["possible_hits"].as_array().expect("possible hits").iter().any(|h| h["listed_plate"] == LISTED && h["seen_plate"] == NEAR);
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "no possible hit of {NEAR} for {LISTED}: {hits}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let near = api.get(&format!("/api/v1/violations?plate={}", encode(NEAR)), Some(&police)).await.json();
    assert_eq!(near["violations"].as_array().map(Vec::len), Some(0), "{near}");

    // Only devices ingest.
    for who in [Role::Police, Role::Admin, Role::Public] {
        let reply = api.post_ndjson("/api/v1/ingest", Some(&token(who)), lines[0].clone()).await;
        assert_eq!((reply.status, reply.error_code().as_str()), (403, "forbidden"), "{who}");
    }
    let reply = api.post_ndjson("/api/v1/ingest", None, lines[0].clone()).await;
    assert_eq!((reply.status, reply.error_code().as_str()), (401, "unauthorized"));
    assert_eq!(env.pipeline_dead_letters.total(), 0, "the accepted lines were good events: {:?}", env.pipeline_dead_letters.records().first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotlists_are_checked_saved_and_deleted() {
    let env = live_env();
    let api = &env.client;
    let police = token(Role::Police);
    let path = "/api/v1/hotlists/api-live-crud";

    let put = api.put_json(path, Some(&police), &json!({"entries": [{"plate": "闽d7k3q9", "reason": "unpaid fines", "expires_ms": 4_000_000_000_000_i64}]})).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let list = put.json();
    assert_eq!((list["name"].as_str(), list["entries"][0]["plate"].as_str()), (Some("api-live-crud"), Some("闽D7K3Q9")));
    let version = list["version"].as_u64().expect("version");
    let got = api.get(path, Some(&police)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), list);
    let all = api.get("/api/v1/hotlists", Some(&police)).await.json();
    let summary = all["hotlists"].as_array().expect("hotlists").iter().find(|l| l["name"] == "api-live-crud").cloned().expect("listed");
    assert_eq!((summary["entries"].as_u64(), summary["version"].as_u64()), (Some(1), Some(version)));
    // Saved in the --hotlists file format, which `egret run --hotlists` loads.
    let saved = saved_lists(env);
    assert_eq!(saved["api-live-crud"], json!([{"plate": "闽D7K3Q9", "reason": "unpaid fines", "expires_ms": 4_000_000_000_000_i64}]));
    let loaded = egret::commands::load_hotlists(&env.hotlists_path).expect("the saved file loads");
    assert!(loaded.iter().any(|(name, entries)| name == "api-live-crud" && entries[0].plate == "闽D7K3Q9"));

    // A list with a non-plate is refused whole: nothing changes.
    let bad = api
        .put_json(path, Some(&police), &json!({"entries": [{"plate": "闽D11111", "reason": "fine"}, {"plate": "NOT A PLATE", "reason": "typo"}]}))
        .await;
    assert_eq!((bad.status, bad.error_code().as_str()), (400, "bad_request"), "{}", bad.text());
    assert!(bad.json()["error"]["message"].as_str().is_some_and(|m| m.contains("entry 1")), "{}", bad.text());
    let no_reason = api.put_json(path, Some(&police), &json!({"entries": [{"plate": "闽D11111", "reason": " "}]})).await;
    assert_eq!(no_reason.status, 400, "{}", no_reason.text());
    let after = api.get(path, Some(&police)).await.json();
    assert_eq!(after, list, "a refused edit changes nothing");
    assert_eq!(saved_lists(env)["api-live-crud"][0]["plate"], "闽D7K3Q9", "nor the saved file");
    // Other bad input: a bad name, JSON of another shape, not JSON at all.
    let reply = api.put_json("/api/v1/hotlists/no.dots", Some(&police), &json!({"entries": []})).await;
    assert_eq!((reply.status, reply.error_code().as_str()), (400, "bad_request"));
    let reply = api.put_json(path, Some(&police), &json!({"entries": [{"plate": "闽D11111", "reason": "x", "colour": "red"}]})).await;
    assert!(matches!(reply.status, 400 | 422), "{} {}", reply.status, reply.text());
    reply.error_code();
    let reply = api.send(reqwest::Method::PUT, path, Some(&police), Some(("application/json", b"{not json".to_vec()))).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    reply.error_code();
    assert_eq!(api.get(path, Some(&police)).await.json(), list);

    // Deleted: 204, then 404 to read or delete again, and gone from the file.
    let deleted = api.delete(path, Some(&police)).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let gone = api.get(path, Some(&police)).await;
    assert_eq!((gone.status, gone.error_code().as_str()), (404, "not_found"));
    assert_eq!(api.delete(path, Some(&police)).await.status, 404);
    assert!(!saved_lists(env).contains_key("api-live-crud"), "deleted from the file");
    // Edits are audited.
    let log = api.get("/api/v1/audit", Some(&token(Role::Admin))).await.json();
    let actions: Vec<(&str, &str)> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["detail"] == "name=api-live-crud")
        .map(|e| (e["action"].as_str().unwrap_or_default(), e["outcome"].as_str().unwrap_or_default()))
        .collect();
    for want in [("PUT /api/v1/hotlists/{name}", "ok"), ("PUT /api/v1/hotlists/{name}", "bad_request"), ("DELETE /api/v1/hotlists/{name}", "ok"), ("DELETE /api/v1/hotlists/{name}", "not_found")] {
        assert!(actions.contains(&want), "{want:?} not in {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_snapshot_then_deltas_and_police_channels() {
    let env = live_env();
    let mut ws = Ws::connect(env.client.addr, None).await;

    // Segments: a snapshot first, then deltas as the pipeline runs.
    ws.send_json(json!({"op": "subscribe", "channel": "segments"})).await;
    let snapshot = ws.next().await;
    assert_eq!((snapshot["type"].as_str(), snapshot["channel"].as_str()), (Some("snapshot"), Some("segments")), "{snapshot}");
    let items = snapshot["items"].as_array().expect("items");
    assert!(!items.is_empty(), "segments have speeds");
    assert!(items.iter().all(|s| s["segment_id"].is_string() && s["mean_speed_kmh"].is_number()), "{}", items[0]);
    let as_of = snapshot["as_of_ms"].as_i64().expect("as_of_ms");
    let delta = loop {
        let message = ws.next_within(Duration::from_secs(60)).await.expect("a delta within 60 s");
        if message["type"] == "delta" {
            break message;
        }
    };
    assert_eq!(delta["channel"], "segments", "{delta}");
    let upserts = delta["upserts"].as_array().expect("upserts");
    assert!(!upserts.is_empty() || delta["removes"].as_array().is_some_and(|r| !r.is_empty()), "{delta}");
    assert!(upserts.iter().all(|s| s["segment_id"].is_string()));
    assert!(delta["as_of_ms"].as_i64() >= Some(as_of));

    // Violations need the police: anonymous is refused, the connection stays.
    let refused = ws.ask(json!({"op": "subscribe", "channel": "violations"})).await;
    assert_eq!((refused["type"].as_str(), refused["code"].as_str(), refused["channel"].as_str()), (Some("error"), Some("unauthorized"), Some("violations")), "{refused}");
    // Bad messages are errors, not a closed connection.
    for bad in [
        "{not json".to_owned(),
        json!({"op": "subscribe", "channel": "weather"}).to_string(),
        json!({"op": "dance"}).to_string(),
        json!({"op": "subscribe"}).to_string(),
        json!({"op": "subscribe", "channel": "buses:NOPE"}).to_string(),
        json!({"op": "unsubscribe", "channel": "nowhere"}).to_string(),
    ] {
        ws.send_text(&bad).await;
        let reply = ws.reply().await;
        assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("bad_request")), "{bad}: {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()), "{reply}");
    }
    let pong = ws.ask(json!({"op": "ping"})).await;
    assert_eq!(pong["type"], "pong", "the connection is still open");

    // A bad token is refused; a dispatcher's may not read violations; a police one may.
    let forged = egret_api::auth::TokenKey::from_secret(support::OTHER_SECRET).issue("x", Role::Police, support::now_s(), 600);
    let reply = ws.ask(json!({"op": "auth", "token": forged})).await;
    assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("unauthorized")), "{reply}");
    let reply = ws.ask(json!({"op": "auth", "token": token(Role::Dispatcher)})).await;
    assert_eq!((reply["type"].as_str(), reply["role"].as_str()), (Some("authenticated"), Some("dispatcher")), "{reply}");
    let reply = ws.ask(json!({"op": "subscribe", "channel": "violations"})).await;
    assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("forbidden")), "{reply}");
    let reply = ws.ask(json!({"op": "auth", "token": token_as(Role::Police, "officer-ws")})).await;
    assert_eq!((reply["type"].as_str(), reply["role"].as_str()), (Some("authenticated"), Some("police")), "{reply}");
    let held_before = env.live.violations(|_| true).len();
    let snapshot = ws.ask(json!({"op": "subscribe", "channel": "violations"})).await;
    let held_after = env.live.violations(|_| true).len();
    assert_eq!((snapshot["type"].as_str(), snapshot["channel"].as_str()), (Some("snapshot"), Some("violations")), "{snapshot}");
    let tickets = snapshot["items"].as_array().expect("items");
    assert!((held_before.min(100)..=held_after.min(100)).contains(&tickets.len()), "the newest tickets, at most 100: {} of {held_before}..{held_after}", tickets.len());
    assert!(tickets.iter().all(|v| v["violation_id"].is_string() && v["plate"].is_string()));
    let reply = ws.ask(json!({"op": "unsubscribe", "channel": "violations"})).await;
    assert_eq!((reply["type"].as_str(), reply["channel"].as_str()), (Some("unsubscribed"), Some("violations")), "{reply}");
    assert_eq!(ws.ask(json!({"op": "ping"})).await["type"], "pong");

    // A bearer token on the upgrade works the same.
    let mut police_ws = Ws::connect(env.client.addr, Some(&token_as(Role::Police, "officer-upgrade"))).await;
    let snapshot = police_ws.ask(json!({"op": "subscribe", "channel": "violations"})).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    drop(police_ws);

    // The refusal and the police subscriptions are in the audit log.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = env.client.get("/api/v1/audit", Some(&token(Role::Admin))).await.json();
        let entries = log["entries"].as_array().expect("entries");
        let has = |subject: &str, action: &str, outcome: &str| entries.iter().any(|e| e["subject"] == subject && e["action"] == action && e["outcome"] == outcome);
        let all = has("anonymous", "WS subscribe violations", "unauthorized")
            && has("dispatcher-1", "WS subscribe violations", "forbidden")
            && has("officer-ws", "WS subscribe violations", "ok")
            && has("officer-ws", "WS end violations", "ok")
            && has("officer-upgrade", "WS subscribe violations", "ok")
            // Closing the connection ends its subscription.
            && has("officer-upgrade", "WS end violations", "ok");
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "WebSocket audit entries missing: {entries:#?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
