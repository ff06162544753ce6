//! `GET /api/v1/route?from=lat,lon&to=lat,lon`: the fastest drive between two
//! points on live speeds, with its travel time now and at free flow, so a
//! commuter sees both the route and how much the traffic costs them.
//!
//! - **Ends.** Each point snaps to the nearest gantry a car can use; the distance
//!   to it is reported as `snap_distance_m` but not routed or timed (the network
//!   knows only gantry-to-gantry segments). Both ends on one gantry give an empty
//!   route with zero times.
//! - **Cars only.** BRT segments are left out: the BRT viaduct is bus-only, and
//!   its station gantries (which touch nothing else) are never snapped to.
//! - **Cost.** A segment costs the travel time of its newest window when that
//!   window has samples and ended no more than 10 minutes before the data's
//!   watermark (`as_of_ms`); otherwise its free-flow time, length / free-flow
//!   speed. Each segment says which it used in `speed_source`.
//! - **Errors.** A missing, malformed, non-finite or out-of-range `from`/`to` is
//!   400 `bad_request`. A point more than 5 km from any usable gantry is 404
//!   `off_network`: there is no route for it, and the code tells the client to
//!   move the point. (404 rather than 422: a well-formed question with no answer
//!   is how HTTP clients and contract testers read a lookup that finds nothing.)
//!   Two snapped ends with no drivable path between them are 404 `not_found`.

use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use egret_model::city::{RoadClass, RoadGraph, Segment};
use egret_model::{CityModel, ReaderIdx, SegmentIdx};
use egret_pipeline::SegmentWindow;
use serde::{Deserialize, Serialize};

/// Farther than this from every usable gantry, a point is off the network.
pub const MAX_SNAP_M: f64 = 5_000.0;
/// A window that ended longer than this before the watermark no longer tells
/// today's speed: free flow is the better guess than a stale jam.
pub const LIVE_MAX_AGE_MS: i64 = 10 * 60_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RouteQuery {
    /// Start as `lat,lon`.
    #[param(required = true, value_type = String, pattern = r"^-?(90(\.0+)?|[1-8]?[0-9](\.[0-9]+)?),-?(180(\.0+)?|(1[0-7][0-9]|[1-9]?[0-9])(\.[0-9]+)?)$", example = "24.4798,118.0894")]
    from: Option<String>,
    /// Destination as `lat,lon`.
    #[param(required = true, value_type = String, pattern = r"^-?(90(\.0+)?|[1-8]?[0-9](\.[0-9]+)?),-?(180(\.0+)?|(1[0-7][0-9]|[1-9]?[0-9])(\.[0-9]+)?)$", example = "24.5120,118.1510")]
    to: Option<String>,
}

/// Where one end of the route joins the network.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteEnd {
    pub reader_id: String,
    /// The gantry's position, not the point asked for.
    pub lat: f64,
    pub lon: f64,
    /// From the point asked for to the gantry, great-circle.
    pub snap_distance_m: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpeedSource {
    Live,
    FreeFlow,
}

/// One segment of the route, in driving order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteSegment {
    pub segment_id: String,
    pub name: String,
    pub length_m: u32,
    /// What the route was chosen on: live when `speed_source` is `live`.
    pub travel_time_s: f64,
    pub free_flow_time_s: f64,
    pub speed_source: SpeedSource,
}

/// The answer of `GET /api/v1/route`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteResponse {
    pub from: RouteEnd,
    pub to: RouteEnd,
    pub segments: Vec<RouteSegment>,
    pub distance_m: u64,
    pub travel_time_s: f64,
    pub free_flow_travel_time_s: f64,
    /// Watermark of the live data the route was chosen on (0 before any data).
    pub as_of_ms: i64,
}

/// The fastest route on live speeds, with travel time now and at free flow.
#[utoipa::path(get, path = "/api/v1/route", tag = "public", params(RouteQuery),
    responses((status = 200, body = RouteResponse), (status = 400, body = crate::error::ErrorBody),
        (status = 404, description = "no route between the two ends, or a point is off the network (`off_network`)", body = crate::error::ErrorBody)))]
pub async fn route(State(state): State<AppState>, query: Result<Query<RouteQuery>, QueryRejection>) -> Result<Json<RouteResponse>, ApiError> {
    let Query(query) = query?;
    let from = parse_point("from", query.from.as_deref())?;
    let to = parse_point("to", query.to.as_deref())?;
    let city = state.live.city();
    let graph = &state.road_graph;
    let (from_reader, from_snap) = snap(city, &graph, "from", from)?;
    let (to_reader, to_snap) = snap(city, &graph, "to", to)?;

    let snapshot = state.live.snapshot();
    let costs: Vec<(f64, SpeedSource)> = city
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| segment_cost(s, snapshot.latest.get(i).and_then(Option::as_ref), snapshot.as_of_ms))
        .collect();
    let cost = |s: SegmentIdx| drivable(city.segment(s)).then(|| costs[s.0 as usize].0);
    let path = graph.shortest_path(from_reader, to_reader, cost).ok_or_else(|| {
        ApiError::not_found(format!(
            "no drivable route from {} to {}",
            city.reader(from_reader).reader_id,
            city.reader(to_reader).reader_id
        ))
    })?;

    let mut distance_m = 0u64;
    let (mut travel_s, mut free_flow_s) = (0.0, 0.0);
    let segments: Vec<RouteSegment> = path
        .segments
        .iter()
        .map(|&s| {
            let seg = city.segment(s);
            let (time, source) = costs[s.0 as usize];
            let free = free_flow_s_of(seg);
            distance_m += u64::from(seg.length_m);
            travel_s += time;
            free_flow_s += free;
            RouteSegment {
                segment_id: seg.segment_id.clone(),
                name: seg.name.clone(),
                length_m: seg.length_m,
                travel_time_s: round1(time),
                free_flow_time_s: round1(free),
                speed_source: source,
            }
        })
        .collect();
    Ok(Json(RouteResponse {
        from: end(city, from_reader, from_snap),
        to: end(city, to_reader, to_snap),
        segments,
        distance_m,
        travel_time_s: round1(travel_s),
        free_flow_travel_time_s: round1(free_flow_s),
        as_of_ms: snapshot.as_of_ms,
    }))
}

/// Cars may drive everything but the bus-only BRT viaduct.
fn drivable(segment: &Segment) -> bool {
    segment.road_class != RoadClass::Brt
}

fn free_flow_s_of(segment: &Segment) -> f64 {
    // The model refuses a non-positive free-flow speed at load.
    f64::from(segment.length_m) / (segment.free_flow_kmh / 3.6)
}

/// Live travel time when the newest window is recent and measured, else free flow.
fn segment_cost(segment: &Segment, newest: Option<&SegmentWindow>, as_of_ms: i64) -> (f64, SpeedSource) {
    let live = newest
        .filter(|w| w.sample_count > 0 && as_of_ms.saturating_sub(w.window_end_ms) <= LIVE_MAX_AGE_MS)
        .map(|w| w.travel_time_s)
        .filter(|t| t.is_finite() && *t > 0.0);
    match live {
        Some(t) => (t, SpeedSource::Live),
        None => (free_flow_s_of(segment), SpeedSource::FreeFlow),
    }
}

/// The nearest gantry that a drivable segment starts or ends at.
fn snap(city: &CityModel, graph: &RoadGraph, name: &str, (lat, lon): (f64, f64)) -> Result<(ReaderIdx, f64), ApiError> {
    let usable = |r: ReaderIdx| graph.outgoing(r).iter().chain(graph.incoming(r)).any(|s| drivable(city.segment(*s)));
    match graph.nearest(lat, lon, usable) {
        Some((reader, d)) if d <= MAX_SNAP_M => Ok((reader, d)),
        found => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "off_network",
            message: match found {
                Some((_, d)) => format!(
                    "`{name}` ({lat},{lon}) is {:.1} km from the nearest road gantry; it must be within {} km of the network",
                    d / 1000.0,
                    MAX_SNAP_M / 1000.0
                ),
                None => "the road network has no gantry to route from".to_owned(),
            },
        }),
    }
}

fn end(city: &CityModel, reader: ReaderIdx, snap_m: f64) -> RouteEnd {
    let r = city.reader(reader);
    RouteEnd { reader_id: r.reader_id.clone(), lat: r.lat, lon: r.lon, snap_distance_m: round1(snap_m) }
}

/// Parses `lat,lon` (`input::parse_point`); every error is a 400.
fn parse_point(name: &str, value: Option<&str>) -> Result<(f64, f64), ApiError> {
    crate::input::parse_point(name, value).map_err(ApiError::bad_request)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
