//! Incidents and buses for commuters and dispatchers: open incidents, buses on the
//! map, the routes, each route's headway state (bunching, gaps, trips that never
//! ran) and the predicted arrivals at a stop, with their early/late bounds.

use crate::auth::{Caller, Role};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, Query, State};
use egret_pipeline::transit::TransitEvent;
use serde::Deserialize;
use serde_json::json;

pub async fn incidents(State(state): State<AppState>) -> Json<serde_json::Value> {
    let (open, cleared) = state.live.incidents();
    Json(json!({"incidents": open, "recently_cleared": cleared}))
}

#[derive(Deserialize)]
pub struct BusFilter {
    route: Option<String>,
}

pub async fn buses(State(state): State<AppState>, filter: Result<Query<BusFilter>, axum::extract::rejection::QueryRejection>) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(filter) = filter?;
    if let Some(route) = &filter.route
        && state.live.city().route_idx(route).is_none()
    {
        return Err(ApiError::not_found(format!("no route {route}")));
    }
    let buses: Vec<_> = state.live.buses().into_iter().filter(|b| filter.route.as_ref().is_none_or(|r| *r == b.route_id)).collect();
    Ok(Json(json!({"buses": buses})))
}

pub async fn routes(State(state): State<AppState>) -> Json<serde_json::Value> {
    let city = state.live.city();
    let routes: Vec<_> = city
        .routes
        .iter()
        .map(|r| {
            let directions: Vec<_> = r
                .directions
                .iter()
                .map(|d| json!({"direction_id": d.direction_id, "headsign": d.headsign, "stops": d.stops.iter().map(|s| json!({"stop_id": s.stop_id, "name": s.name, "lat": s.lat, "lon": s.lon})).collect::<Vec<_>>()}))
                .collect();
            json!({"route_id": r.route_id, "name": r.name, "kind": r.kind, "cities": r.cities, "directions": directions})
        })
        .collect();
    Json(json!({"routes": routes}))
}

/// Headway state is for dispatchers (and admins), not the public.
pub const DISPATCH: &[Role] = &[Role::Dispatcher, Role::Admin];

pub async fn headways(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    let buses: Vec<_> = state.live.buses().into_iter().filter(|b| b.route_id == id).collect();
    Ok(Json(json!({"route_id": id, "buses": buses, "headways": headways, "ghost_trips": ghost_trips})))
}

pub async fn arrivals(State(state): State<AppState>, id: Result<Path<String>, axum::extract::rejection::PathRejection>) -> Result<Json<serde_json::Value>, ApiError> {
    let Path(id) = id?;
    let known = state.live.city().routes.iter().flat_map(|r| &r.directions).flat_map(|d| &d.stops).any(|s| s.stop_id == id);
    if !known {
        return Err(ApiError::not_found(format!("no stop {id}")));
    }
    let mut arrivals: Vec<_> = state
        .live
        .buses()
        .into_iter()
        .flat_map(|b| {
            b.next_stops.iter().filter(|e| e.stop_id == id).map(|e| {
                json!({"bus_id": b.bus_id, "route_id": b.route_id, "trip_id": b.trip_id, "predicted_ms": e.predicted_ms, "early_ms": e.early_ms, "late_ms": e.late_ms})
            }).collect::<Vec<_>>()
        })
        .collect();
    arrivals.sort_by_key(|a| a["predicted_ms"].as_i64());
    Ok(Json(json!({"stop_id": id, "arrivals": arrivals})))
}
