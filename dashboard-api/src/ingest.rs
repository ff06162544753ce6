//! `POST /api/v1/ingest` (device role): NDJSON events, each with a `"type"`
//! (`plate_read`, `bus_gps`, `camera`, `parking_count`). Each line is checked by
//! the same decoder the Kafka path uses; a good line is appended, as its original
//! bytes and keyed as contract-v1 says, to its input topic, where the pipeline
//! takes it like any other event; a bad line goes to the dead-letter topic with its
//! reason and the device is told which line and why. Nothing is dropped silently.

use crate::auth::{Caller, Role};
use crate::input::{check_line, ingest_lines, is_blank, key_of};
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use egret_ingest::{IngestError, OutRecord, Sink};
use egret_model::decode::Decoder;
use egret_model::reason::Reject;
use crate::error::ErrorBody;
use serde::Serialize;
use utoipa::ToSchema;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Lines one request may carry.
pub const MAX_LINES: usize = 50_000;
/// Bytes one request may carry.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Errors described in a response; the rest are only counted.
const ERRORS_DESCRIBED: usize = 100;

type Appended<'a> = Pin<Box<dyn Future<Output = Result<(), IngestError>> + Send + 'a>>;

/// Where ingested events go: the input topics of whatever log the pipeline reads
/// (the embedded log in the demo, Kafka in a cluster), and the dead letters to
/// wherever the pipeline's own go.
pub trait IngestTarget: Send + Sync {
    fn append_inputs(&self, records: Vec<OutRecord>) -> Appended<'_>;
    fn append_dead_letters(&self, records: Vec<OutRecord>) -> Appended<'_>;
}

/// A target from two sinks (they may be the same one).
pub struct SinkTarget<I, D> {
    pub inputs: Arc<I>,
    pub dead_letters: Arc<D>,
}

impl<I: Sink, D: Sink> IngestTarget for SinkTarget<I, D> {
    fn append_inputs(&self, records: Vec<OutRecord>) -> Appended<'_> {
        Box::pin(self.inputs.send(records))
    }

    fn append_dead_letters(&self, records: Vec<OutRecord>) -> Appended<'_> {
        Box::pin(self.dead_letters.send(records))
    }
}

#[derive(Serialize, ToSchema)]
pub struct LineError {
    /// 1-based line number in the body.
    pub line: usize,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct IngestReport {
    pub accepted: usize,
    pub rejected: usize,
    /// The first rejected lines and why.
    pub errors: Vec<LineError>,
}

fn dead_letter(line: &[u8], number: usize, reject: &Reject, topic: &str) -> OutRecord {
    let mut r = OutRecord::new(egret_pipeline::DLQ_TOPIC, None, line.to_vec());
    r.headers = vec![
        ("egret-error".into(), reject.reason.code().as_bytes().to_vec()),
        ("egret-error-detail".into(), reject.detail.as_bytes().to_vec()),
        ("egret-source-topic".into(), topic.as_bytes().to_vec()),
        ("egret-source-partition".into(), b"http".to_vec()),
        ("egret-source-offset".into(), number.to_string().into_bytes()),
    ];
    r
}

/// NDJSON events from devices, each with a `type`: checked, appended to the input topics, bad lines dead-lettered.
#[utoipa::path(post, path = "/api/v1/ingest", tag = "device", security(("bearer" = [])),
    request_body(content = String, content_type = "text/plain", description = "NDJSON (sent as application/x-ndjson or text/plain): one event per line, as contract-v1 §1, with \"type\""),
    responses((status = 200, body = IngestReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<IngestReport>, ApiError> {
    caller.require(&[Role::Device])?;
    let body = body.map_err(|r| {
        let status = r.status();
        let code = if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else { "bad_request" };
        ApiError { status, code, message: format!("{}; at most {MAX_BODY_BYTES} bytes per request", r.body_text()) }
    })?;
    let Some(target) = &state.ingest else {
        return Err(ApiError::unavailable("this instance takes no HTTP ingest (it replays recorded files)"));
    };
    let city = state.live.city();
    let decoder = Decoder::new(city);
    let lines = ingest_lines(&body);
    if lines.len() > MAX_LINES {
        return Err(ApiError::bad_request(format!("{} lines; at most {MAX_LINES} per request", lines.len())));
    }
    let (mut accepted, mut errors, mut rejected) = (Vec::new(), Vec::new(), 0);
    let mut letters = Vec::new();
    for (i, line) in lines.iter().enumerate().filter(|(_, l)| !is_blank(l)) {
        let number = i + 1;
        match check_line(&decoder, line) {
            Ok((topic, decoded)) => {
                let key = key_of(&decoded, city);
                accepted.push(OutRecord::new(topic.default_name(), Some(Bytes::from(key.into_bytes())), line.to_vec()));
            }
            Err(reject) => {
                rejected += 1;
                metrics::counter!("egret_dead_letters_total", "reason" => reject.reason.code()).increment(1);
                letters.push(dead_letter(line, number, &reject, "http"));
                if errors.len() < ERRORS_DESCRIBED {
                    errors.push(LineError { line: number, code: reject.reason.code(), message: reject.detail.clone() });
                }
            }
        }
    }
    let count = accepted.len();
    // Dead letters first: if appending the good lines then fails, the device
    // retries the whole request and nothing it sent is lost.
    if !letters.is_empty() {
        target.append_dead_letters(letters).await.map_err(|e| ApiError::unavailable(format!("dead-letter topic: {e}")))?;
    }
    target.append_inputs(accepted).await.map_err(|e| ApiError::unavailable(format!("input topics: {e}")))?;
    metrics::counter!("egret_ingest_http_events_total").increment(count as u64);
    Ok(Json(IngestReport { accepted: count, rejected, errors }))
}
