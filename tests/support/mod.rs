//! Shared set-up of the API tests (`api_roles`, `api_live`): fixed keys and tokens
//! of every role, an `ApiConfig` builder, a server on port 0 with a small HTTP
//! client, a scripted scenario run once through the embedded pipeline (with every
//! plate the simulator put on the input topics), a live environment where the
//! pipeline keeps running on an embedded log that `POST /api/v1/ingest` appends
//! to, and a WebSocket client.

#![allow(dead_code)]

pub mod scratch;

pub use scratch::scratch_dir;
use egret::drive::{self, DriveOptions, Pace};
use egret_api::auth::{Role, TokenKey};
use egret_api::guard::RateLimit;
use egret_api::ingest::{IngestTarget, SinkTarget};
use egret_api::{ApiConfig, AppState};
use egret_ingest::embedded::EmbeddedLog;
use egret_ingest::memory::MemorySink;
use egret_ingest::{IngestError, OutRecord, Sink};
use egret_model::city::ReaderKind;
use egret_model::{CityModel, Topic};
use egret_pipeline::runner::{self, Ended, Outputs};
use egret_pipeline::{ClockMode, LiveState, Pipeline, PipelineConfig};
use egret_query::history::HistoryArchive;
use egret_simulator::{SimConfig, Simulator};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Monday 2026-11-30 07:45 CST, the standard scenario's start.
pub const START: i64 = 1_795_995_900_000;
pub const TOKEN_SECRET: &[u8] = b"egret api tests: the token-signing key, 32+ bytes";
/// Another deployment's key: its tokens have a signature this API must refuse.
pub const OTHER_SECRET: &[u8] = b"another deployment's token-signing key, 32+ bytes";
pub const PSEUDONYM_SECRET: &[u8] = b"egret api tests: the pseudonym key, 32+ bytes long";

pub fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A valid token for `subject` in `role`, for an hour.
pub fn token_as(role: Role, subject: &str) -> String {
    TokenKey::from_secret(TOKEN_SECRET).issue(subject, role, now_s(), 3600)
}

/// A valid token whose subject is the role's name plus `-1`.
pub fn token(role: Role) -> String {
    token_as(role, &format!("{}-1", role.as_str()))
}

/// Who calls: the caller kinds of the role matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    Valid(Role),
    /// A token of the right key that expired an hour ago (police role).
    Expired,
    /// A police token signed with another key.
    BadSignature,
}

impl Who {
    pub const ALL: [Who; 8] = [
        Who::Anonymous,
        Who::Valid(Role::Public),
        Who::Valid(Role::Dispatcher),
        Who::Valid(Role::Police),
        Who::Valid(Role::Admin),
        Who::Valid(Role::Device),
        Who::Expired,
        Who::BadSignature,
    ];

    pub fn token(self) -> Option<String> {
        match self {
            Who::Anonymous => None,
            Who::Valid(role) => Some(token(role)),
            Who::Expired => Some(TokenKey::from_secret(TOKEN_SECRET).issue("police-expired", Role::Police, now_s() - 7200, 3600)),
            Who::BadSignature => Some(TokenKey::from_secret(OTHER_SECRET).issue("police-forged", Role::Police, now_s(), 3600)),
        }
    }
}

/// Far above anything a test sends.
pub fn high_rate() -> RateLimit {
    let n = NonZeroU32::new(10_000).expect("non-zero");
    RateLimit { per_second: n, burst: n }
}

pub fn config(rate: RateLimit, audit_path: Option<PathBuf>, hotlists_path: Option<PathBuf>) -> ApiConfig {
    ApiConfig {
        token_secret: TOKEN_SECRET.to_vec(),
        pseudonym_secret: PSEUDONYM_SECRET.to_vec(),
        audit_path,
        hotlists_path,
        rate,
        request_timeout: Duration::from_secs(30),
        // Whatever else the config grows (history, …): off, as for tests.
        ..ApiConfig::ephemeral()
    }
}


/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// Asserts the contract's error shape `{"error":{"code","message"}}` and returns the code.
    pub fn error_code(&self) -> String {
        let body = self.json();
        let code = body["error"]["code"].as_str().unwrap_or_else(|| panic!("no error.code in {body}")).to_owned();
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "no error.message in {body}");
        code
    }
}

/// An HTTP client of one server.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    http: reqwest::Client,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Client { addr, http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client") }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Any request; `body` is sent with `content_type` when given.
    pub async fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<(&str, Vec<u8>)>) -> Reply {
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type).body(bytes);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_else(|e| panic!("{method} {path} body: {e}")).to_vec();
        Reply { status, headers, body }
    }

    /// A GET with a raw `Authorization` header value.
    pub async fn get_with_authorization(&self, path: &str, authorization: &str) -> Reply {
        let response = self.http.get(self.url(path)).header(reqwest::header::AUTHORIZATION, authorization).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_else(|e| panic!("GET {path} body: {e}")).to_vec();
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    pub async fn put_json(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(reqwest::Method::PUT, path, token, Some(("application/json", body.to_string().into_bytes()))).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(reqwest::Method::DELETE, path, token, None).await
    }

    pub async fn post_ndjson(&self, path: &str, token: Option<&str>, body: String) -> Reply {
        self.send(reqwest::Method::POST, path, token, Some(("application/x-ndjson", body.into_bytes()))).await
    }

    /// Every violation the police list holds, following the cursor; `query` is
    /// extra filters (`kind=…&`), `limit` the page size.
    pub async fn all_violations(&self, token: &str, query: &str, limit: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let path = match &cursor {
                Some(c) => format!("/api/v1/violations?{query}limit={limit}&cursor={c}"),
                None => format!("/api/v1/violations?{query}limit={limit}"),
            };
            let reply = self.get(&path, Some(token)).await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.text());
            let page = reply.json();
            let items = page["violations"].as_array().expect("violations array");
            assert!(items.len() <= limit, "{path}: {} items above the limit", items.len());
            out.extend(items.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => {
                    assert!(!items.is_empty(), "{path}: an empty page with a next cursor");
                    cursor = Some(next.to_owned());
                }
                None => {
                    assert!(page["next_cursor"].is_null(), "next_cursor is a string or null: {page}");
                    return out;
                }
            }
        }
        panic!("the cursor never ran out")
    }
}

/// A server on 127.0.0.1:0 in the calling test's runtime; it stops when dropped.
pub struct Api {
    pub client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Api {
    pub async fn start(state: AppState) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(egret_api::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Api { client: Client::new(addr), stop: Some(stop) }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl std::ops::Deref for Api {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// Forwards to the embedded log, remembering every `plate` the payloads carry.
struct PlateTap {
    log: EmbeddedLog,
    plates: Mutex<BTreeSet<String>>,
}

impl Sink for PlateTap {
    async fn send(&self, records: Vec<OutRecord>) -> Result<(), IngestError> {
        {
            let mut plates = self.plates.lock().expect("plates lock");
            for r in &records {
                if let Ok(event) = serde_json::from_slice::<Value>(&r.payload)
                    && let Some(plate) = event.get("plate").and_then(Value::as_str)
                {
                    plates.insert(plate.to_owned());
                }
            }
        }
        self.log.send(records).await
    }
}

/// The scripted scenario, run once to its end through the embedded pipeline.
pub struct Scenario {
    pub city: Arc<CityModel>,
    pub live: Arc<LiveState>,
    /// Every plate that appeared in an input event.
    pub plates: BTreeSet<String>,
    pub events: u64,
    /// The Parquet history of the run (final windows and tickets), all written.
    pub history_dir: PathBuf,
}

/// 10 minutes of the scripted morning rush (seed 7), with the simulated city's
/// hotlists on the board: violations of several kinds exist afterwards.
pub fn scenario() -> &'static Scenario {
    static SCENARIO: OnceLock<Scenario> = OnceLock::new();
    SCENARIO.get_or_init(|| {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            runtime.block_on(run_scenario(7, 10 * 60_000))
        })
        .join()
        .expect("the scenario runs")
    })
}

fn input_topics() -> Vec<&'static str> {
    Topic::ALL.iter().map(|t| t.default_name()).collect()
}

async fn run_scenario(seed: u64, duration_ms: i64) -> Scenario {
    let city = egret::load_city(None).expect("city data");
    let log = EmbeddedLog::new(4, 50_000);
    let mut source = log.subscribe(&input_topics(), Duration::from_millis(50));
    let live = Arc::new(LiveState::new(city.clone()));
    let history_dir = scratch_dir(&format!("scenario-{seed}-history"));
    let archive = Arc::new(HistoryArchive::open(&history_dir, city.clone()).expect("history archive"));
    live.set_archive(archive.clone());
    let mut pipeline = Pipeline::new(city.clone(), PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() });
    let config = SimConfig { scripted: true, ..SimConfig::clean(seed, START, duration_ms) };
    let mut sim = Simulator::new(city.clone(), config);
    for (list, entries) in egret::eval::hotlist_entries(&sim.hotlists()) {
        live.hotlists().put(&list, entries);
    }
    let tap = Arc::new(PlateTap { log: log.clone(), plates: Mutex::new(BTreeSet::new()) });
    let producer = {
        let tap = tap.clone();
        tokio::spawn(async move {
            let sent = drive::drive(&mut sim, &*tap, DriveOptions::fast(), |_| {}).await.expect("send");
            tap.log.close();
            sent
        })
    };
    let (dead_letters, derived) = (MemorySink::new(10), MemorySink::new(0));
    let ended = runner::run(&mut source, &Outputs { dead_letters: &dead_letters, derived: &derived }, &mut pipeline, &live, std::future::pending())
        .await
        .expect("the pipeline runs");
    assert_eq!(ended, Ended::InputEnd);
    let events = producer.await.expect("producer");
    let plates = std::mem::take(&mut *tap.plates.lock().expect("plates lock"));
    archive.flush().expect("history written");
    Scenario { city, live, plates, events, history_dir }
}

/// A running system: the simulator feeding an embedded log (fast for a few
/// minutes, then ten times real time), the pipeline following it, and the API
/// with HTTP ingest into the same log, an audit log and saved hotlists.
pub struct LiveEnv {
    pub city: Arc<CityModel>,
    pub live: Arc<LiveState>,
    pub client: Client,
    /// Dead letters of `POST /api/v1/ingest` (the pipeline's own go elsewhere).
    pub ingest_dead_letters: Arc<MemorySink>,
    pub pipeline_dead_letters: Arc<MemorySink>,
    pub dir: PathBuf,
    pub hotlists_path: PathBuf,
    pub audit_path: PathBuf,
}

impl LiveEnv {
    /// Gantries (not parking gates) of the city model.
    pub fn gantry_ids(&self) -> Vec<String> {
        self.city.readers.iter().filter(|r| r.kind == ReaderKind::Gantry).map(|r| r.reader_id.clone()).collect()
    }
}

/// Started once per test binary, on a runtime of its own that outlives every test.
pub fn live_env() -> &'static LiveEnv {
    static ENV: OnceLock<LiveEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let env = start_live_env().await;
                tx.send(env).expect("hand the environment over");
                // Keep the pipeline, the feed and the server running until the process ends.
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("the live environment starts")
    })
}

async fn start_live_env() -> LiveEnv {
    let city = egret::load_city(None).expect("city data");
    let dir = scratch_dir("api-live");
    let (hotlists_path, audit_path) = (dir.join("hotlists.json"), dir.join("audit.ndjson"));
    let live = Arc::new(LiveState::new(city.clone()));
    let log = EmbeddedLog::new(4, 50_000);
    let ingest_dead_letters = Arc::new(MemorySink::new(1_000));
    let pipeline_dead_letters = Arc::new(MemorySink::new(1_000));
    let ingest: Arc<dyn IngestTarget> = Arc::new(SinkTarget { inputs: Arc::new(log.clone()), dead_letters: ingest_dead_letters.clone() });
    let state = AppState::with_config(live.clone(), None, config(high_rate(), Some(audit_path.clone()), Some(hotlists_path.clone())), Some(ingest))
        .expect("app state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(egret_api::serve(listener, state, std::future::pending()));

    let mut source = log.subscribe(&input_topics(), Duration::from_millis(100));
    {
        let (live, city, dead) = (live.clone(), city.clone(), pipeline_dead_letters.clone());
        tokio::spawn(async move {
            let mut pipeline = Pipeline::new(city, PipelineConfig { clock: ClockMode::Event, ..PipelineConfig::default() });
            let derived = MemorySink::new(0);
            runner::run(&mut source, &Outputs { dead_letters: &*dead, derived: &derived }, &mut pipeline, &live, std::future::pending()).await.expect("pipeline")
        });
    }
    let preroll_ms = 4 * 60_000;
    {
        let (log, city) = (log.clone(), city.clone());
        tokio::spawn(async move {
            // The log stays open when the simulation ends: ingest may still append.
            let mut sim = Simulator::new(city, SimConfig::clean(11, START, 60 * 60_000));
            let options = DriveOptions { pace: Pace::Accelerated(10.0), realtime_from_ms: START + preroll_ms, max_rate: None, progress: false };
            drive::drive(&mut sim, &log, options, |_| {}).await.expect("feed")
        });
    }
    // Ready once the pre-roll has gone through and segments have speeds.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let snapshot = live.snapshot();
        if snapshot.as_of_ms >= START + preroll_ms - 60_000 && snapshot.latest.iter().filter(|w| w.is_some()).count() > 20 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the pre-roll did not reach the live state in time (as_of_ms {})", snapshot.as_of_ms);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    LiveEnv { city, live, client: Client::new(addr), ingest_dead_letters, pipeline_dead_letters, dir, hotlists_path, audit_path }
}

/// Every raw plate of `plates` found in `text` (as written, or upper-cased).
pub fn plates_in(text: &str, plates: &BTreeSet<String>) -> BTreeSet<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = BTreeSet::new();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii() {
            continue;
        }
        for len in [7, 8] {
            if i + len <= chars.len() {
                let candidate: String = chars[i..i + len].iter().collect();
                if plates.contains(&candidate) {
                    found.insert(candidate.clone());
                }
                let upper = candidate.to_uppercase();
                if plates.contains(&upper) {
                    found.insert(upper);
                }
            }
        }
    }
    found
}

/// Raw plates in a body: in its text, and in every string of it when it is JSON
/// (so a `\u` escape cannot hide one).
pub fn plates_in_body(body: &[u8], plates: &BTreeSet<String>) -> BTreeSet<String> {
    let text = String::from_utf8_lossy(body);
    let mut found = plates_in(&text, plates);
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        let mut strings = Vec::new();
        collect_strings(&json, &mut strings);
        for s in strings {
            found.extend(plates_in(&s, plates));
        }
    }
    found
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                out.push(k.clone());
                collect_strings(x, out);
            }
        }
        _ => {}
    }
}

pub type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client of `/ws`, with an optional bearer token on the upgrade.
pub struct Ws {
    stream: WsStream,
}

impl Ws {
    pub async fn connect(addr: SocketAddr, token: Option<&str>) -> Ws {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{addr}/ws").into_client_request().expect("request");
        if let Some(t) = token {
            request.headers_mut().insert("authorization", format!("Bearer {t}").parse().expect("header"));
        }
        let (stream, response) = tokio_tungstenite::connect_async(request).await.expect("WebSocket upgrade");
        assert_eq!(response.status().as_u16(), 101);
        Ws { stream }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream.send(tokio_tungstenite::tungstenite::Message::Text(text.into())).await.expect("send");
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// The next JSON message, within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next()).await.ok()?;
            match message {
                Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(text.as_str()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))),
                Some(Ok(Message::Close(frame))) => panic!("the server closed the WebSocket: {frame:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("WebSocket error: {e}"),
                None => panic!("the WebSocket ended"),
            }
        }
    }

    pub async fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(20)).await.expect("a message within 20 s")
    }

    /// The next message that is not a pushed delta: the reply to what was sent.
    pub async fn reply(&mut self) -> Value {
        loop {
            let message = self.next().await;
            if message["type"] != "delta" {
                return message;
            }
        }
    }

    /// Sends `message` and returns the reply, skipping deltas.
    pub async fn ask(&mut self, message: Value) -> Value {
        self.send_json(message).await;
        self.reply().await
    }
}
