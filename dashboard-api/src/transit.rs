//! Incidents and buses for commuters and dispatchers: open incidents, buses on the
//! map, the routes, each route's headway state (bunching, gaps, trips that never
//! ran; dispatchers only) and the predicted arrivals at a stop, with their
//! early/late bounds.

use crate::auth::{Caller, Role};
use crate::error::ErrorBody;
use crate::{ApiError, AppState};
use axum::Json;
use axum::response::IntoResponse;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use egret_pipeline::incident::Incident;
use egret_pipeline::transit::{BusStatus, TransitEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct Incidents {
    pub incidents: Vec<Incident>,
    pub recently_cleared: Vec<Incident>,
}

/// Open incidents, and the ones most recently cleared.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "public", responses((status = 200, body = Incidents)))]
pub async fn incidents(State(state): State<AppState>) -> axum::response::Response {
    state.answers.json("incidents", state.live.version(), || {
        let (incidents, recently_cleared) = state.live.incidents();
        Incidents { incidents, recently_cleared }
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BusFilter {
    /// Only the buses of this route.
    route: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Buses {
    pub buses: Vec<BusStatus>,
}

/// Buses on the map, with their next stops' predictions.
#[utoipa::path(get, path = "/api/v1/buses", tag = "public", params(BusFilter),
    responses((status = 200, body = Buses), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn buses(State(state): State<AppState>, filter: Result<Query<BusFilter>, QueryRejection>) -> Result<axum::response::Response, ApiError> {
    let Query(filter) = filter?;
    let Some(route) = filter.route else {
        return Ok(state.answers.json("buses", state.live.version(), || Buses { buses: state.live.buses() }));
    };
    if state.live.city().route_idx(&route).is_none() {
        return Err(ApiError::not_found(format!("no route {route}")));
    }
    let buses = state.live.buses().into_iter().filter(|b| b.route_id == route).collect();
    Ok(Json(Buses { buses }).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct StopView<'a> {
    pub stop_id: &'a str,
    pub name: &'a str,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Serialize, ToSchema)]
pub struct DirectionView<'a> {
    pub direction_id: u8,
    pub headsign: &'a str,
    pub stops: Vec<StopView<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct RouteView<'a> {
    pub route_id: &'a str,
    pub name: &'a str,
    /// `city`, `brt` or `intercity`.
    pub kind: &'a str,
    pub cities: &'a [String],
    pub directions: Vec<DirectionView<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct Routes<'a> {
    pub routes: Vec<RouteView<'a>>,
}

/// Every bus route with its stops, city and intercity alike.
#[utoipa::path(get, path = "/api/v1/routes", tag = "public", responses((status = 200, body = Routes<'_>)))]
pub async fn routes(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let city = state.live.city();
    let routes = city
        .routes
        .iter()
        .map(|r| RouteView {
            route_id: &r.route_id,
            name: &r.name,
            kind: &r.kind,
            cities: &r.cities,
            directions: r
                .directions
                .iter()
                .map(|d| DirectionView {
                    direction_id: d.direction_id,
                    headsign: &d.headsign,
                    stops: d.stops.iter().map(|s| StopView { stop_id: &s.stop_id, name: &s.name, lat: s.lat, lon: s.lon }).collect(),
                })
                .collect(),
        })
        .collect();
    Json(Routes { routes }).into_response()
}

/// Headway state is for dispatchers (and admins), not the public.
pub const DISPATCH: &[Role] = &[Role::Dispatcher, Role::Admin];

#[derive(Serialize, ToSchema)]
pub struct Headways {
    pub route_id: String,
    pub buses: Vec<BusStatus>,
    /// Recent arrivals with their headway and status (`ok`, `bunched`, `gap`).
    pub headways: Vec<TransitEvent>,
    /// Scheduled trips no bus ran.
    pub ghost_trips: Vec<TransitEvent>,
}

/// A route's headway state: bunching, gaps and trips that never ran.
#[utoipa::path(get, path = "/api/v1/routes/{id}/headways", tag = "dispatcher",
    params(("id" = String, Path, description = "route id")), security(("bearer" = [])),
    responses((status = 200, body = Headways), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn headways(State(state): State<AppState>, caller: Caller, id: Result<Path<String>, PathRejection>) -> Result<Json<Headways>, ApiError> {
    caller.require(DISPATCH)?;
    let Path(id) = id?;
    if state.live.city().route_idx(&id).is_none() {
        return Err(ApiError::not_found(format!("no route {id}")));
    }
    let (mut headways, mut ghost_trips) = (Vec::new(), Vec::new());
    for e in state.live.route_events(&id) {
        match e {
            TransitEvent::Headway { .. } => headways.push(e),
            TransitEvent::GhostTrip { .. } => ghost_trips.push(e),
        }
    }
    let buses = state.live.buses().into_iter().filter(|b| b.route_id == id).collect();
    Ok(Json(Headways { route_id: id, buses, headways, ghost_trips }))
}

#[derive(Serialize, ToSchema)]
pub struct Arrival {
    pub bus_id: String,
    pub route_id: String,
    pub trip_id: String,
    pub predicted_ms: i64,
    /// The bus may come this much earlier or later than predicted.
    pub early_ms: i64,
    pub late_ms: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Arrivals {
    pub stop_id: String,
    pub arrivals: Vec<Arrival>,
}

/// Predicted arrivals at a stop, soonest first.
#[utoipa::path(get, path = "/api/v1/stops/{id}/arrivals", tag = "public",
    params(("id" = String, Path, description = "stop id")),
    responses((status = 200, body = Arrivals), (status = 404, body = ErrorBody)))]
pub async fn arrivals(State(state): State<AppState>, id: Result<Path<String>, PathRejection>) -> Result<Json<Arrivals>, ApiError> {
    let Path(id) = id?;
    let known = state.live.city().routes.iter().flat_map(|r| &r.directions).flat_map(|d| &d.stops).any(|s| s.stop_id == id);
    if !known {
        return Err(ApiError::not_found(format!("no stop {id}")));
    }
    let mut arrivals: Vec<Arrival> = state
        .live
        .buses()
        .into_iter()
        .flat_map(|b| {
            b.next_stops
                .iter()
                .filter(|e| e.stop_id == id)
                .map(|e| Arrival {
                    bus_id: b.bus_id.clone(),
                    route_id: b.route_id.clone(),
                    trip_id: b.trip_id.clone(),
                    predicted_ms: e.predicted_ms,
                    early_ms: e.early_ms,
                    late_ms: e.late_ms,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    arrivals.sort_by_key(|a| a.predicted_ms);
    Ok(Json(Arrivals { stop_id: id, arrivals }))
}
