//! Free parking spaces (掌上停车场): occupancy of every lot, as contract-v1 lists it.

use crate::AppState;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Lot<'a> {
    pub lot_id: &'a str,
    name: &'a str,
    lat: f64,
    lon: f64,
    capacity: u32,
    occupied: Option<u32>,
    available: Option<u32>,
    state: &'static str,
    trend: &'static str,
    minutes_to_full: Option<f64>,
    over_capacity: bool,
    as_of_ms: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Lots<'a> {
    pub lots: Vec<Lot<'a>>,
}

/// Occupancy of every lot; `state` is open, full, closed or unknown.
#[utoipa::path(get, path = "/api/v1/parking", tag = "public", responses((status = 200, body = Lots<'_>)))]
pub async fn lots(State(state): State<AppState>) -> impl IntoResponse {
    state.answers.json("parking", state.live.version(), || Lots { lots: states(state.live.city(), &state.live.snapshot()) })
}

/// Every lot of the city with its latest occupancy, as served.
pub(crate) fn states<'a>(city: &'a egret_model::CityModel, snapshot: &egret_pipeline::live::Snapshot) -> Vec<Lot<'a>> {
    city
        .lots
        .iter()
        .zip(&snapshot.lots)
        .map(|(lot, live)| {
            let occupied = live.as_ref().and_then(|l| l.occupied);
            Lot {
                lot_id: &lot.lot_id,
                name: &lot.name,
                lat: lot.lat,
                lon: lot.lon,
                capacity: lot.capacity,
                occupied,
                available: occupied.map(|o| lot.capacity.saturating_sub(o)),
                state: live.as_ref().map_or("unknown", |l| l.state),
                trend: live.as_ref().map_or("steady", |l| l.trend),
                minutes_to_full: live.as_ref().and_then(|l| l.minutes_to_full),
                over_capacity: live.as_ref().is_some_and(|l| l.over_capacity),
                as_of_ms: live.as_ref().map(|l| l.as_of_ms),
            }
        })
        .collect()
}
