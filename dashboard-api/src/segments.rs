//! Live road speeds: the newest window of every segment, and a segment's history.

use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use egret_pipeline::SegmentWindow;
use egret_pipeline::live::{confidence, jam_factor};
use crate::error::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One entry of `GET /api/v1/segments`: the fields contract-v1 names, plus the
/// five-minute sliding median (an extension).
#[derive(Serialize, ToSchema)]
pub struct SegmentState<'a> {
    pub segment_id: &'a str,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub mean_speed_kmh: f64,
    pub median_speed_kmh: f64,
    pub median_5min_kmh: Option<f64>,
    pub travel_time_s: f64,
    pub sample_count: u32,
    pub free_flow_kmh: f64,
    /// 0 (free flow) to 10 (standstill).
    pub jam_factor: f64,
    /// 0 to 1.
    pub confidence: f64,
    /// False while late events may still revise the window.
    pub is_final: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Segments<'a> {
    /// The watermark of the data behind this answer.
    pub as_of_ms: i64,
    pub segments: Vec<SegmentState<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct SegmentHistory {
    pub segment_id: String,
    pub windows: Vec<SegmentWindow>,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub as_of_ms: i64,
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The newest window of every segment that has one, as served.
pub(crate) fn states<'a>(city: &'a egret_model::CityModel, snapshot: &egret_pipeline::live::Snapshot) -> Vec<SegmentState<'a>> {
    snapshot
        .latest
        .iter()
        .enumerate()
        .filter_map(|(i, w)| w.as_ref().map(|w| (&city.segments[i], w)))
        .map(|(s, w)| SegmentState {
            segment_id: &s.segment_id,
            window_start_ms: w.window_start_ms,
            window_end_ms: w.window_end_ms,
            mean_speed_kmh: round1(w.mean_speed_kmh),
            median_speed_kmh: round1(w.median_speed_kmh),
            median_5min_kmh: w.median_5min_kmh.map(round1),
            travel_time_s: round1(w.travel_time_s),
            sample_count: w.sample_count,
            free_flow_kmh: s.free_flow_kmh,
            jam_factor: jam_factor(w.mean_speed_kmh, s.free_flow_kmh),
            confidence: confidence(w.sample_count, w.is_final, snapshot.as_of_ms - w.window_end_ms),
            is_final: w.is_final,
        })
        .collect()
}

/// The newest window of every segment.
#[utoipa::path(get, path = "/api/v1/segments", tag = "public", responses((status = 200, body = Segments<'_>)))]
pub async fn latest(State(state): State<AppState>) -> impl IntoResponse {
    state.answers.json("segments", state.live.version(), || {
        let snapshot = state.live.snapshot();
        Segments { as_of_ms: snapshot.as_of_ms, segments: states(state.live.city(), &snapshot) }
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Windows ending after this instant.
    from_ms: Option<i64>,
    /// Windows starting before this instant.
    to_ms: Option<i64>,
}

/// Closed windows of one segment.
#[utoipa::path(get, path = "/api/v1/segments/{id}/history", tag = "public",
    params(("id" = String, Path, description = "segment id"), Range),
    responses((status = 200, body = SegmentHistory), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    range: Result<Query<Range>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(id) = id?;
    let Query(range) = range?;
    let city = state.live.city();
    let segment = city.segment_idx(&id).ok_or_else(|| ApiError::not_found(format!("no segment {id}")))?;
    let (from, to) = (range.from_ms.unwrap_or(i64::MIN), range.to_ms.unwrap_or(i64::MAX));
    // A range that ends before it starts holds no windows: an empty answer, as
    // for any other range with nothing in it.
    let windows: Vec<SegmentWindow> = if from > to { Vec::new() } else { state.live.history(segment.0 as usize, from, to) };
    Ok(Json(SegmentHistory { segment_id: id, windows }))
}

/// Ready once the pipeline has published a watermark.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, description = "no data yet", body = Readiness)))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let as_of = state.live.snapshot().as_of_ms;
    let status = if as_of > 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { ready: as_of > 0, as_of_ms: as_of }))
}
