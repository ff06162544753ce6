//! The city as the public sees it: road segments as GeoJSON, readers and cameras.

use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use egret_model::CityModel;
use serde_json::{Value, json};

/// GeoJSON FeatureCollection of the road segments, properties as contract-v1 lists them.
pub fn geojson(city: &CityModel) -> String {
    let features: Vec<Value> = city
        .segments
        .iter()
        .map(|s| {
            json!({
                "type": "Feature",
                "id": s.segment_id,
                "geometry": {"type": "LineString", "coordinates": s.geometry},
                "properties": {
                    "segment_id": s.segment_id,
                    "name": s.name,
                    "length_m": s.length_m,
                    "speed_limit_kmh": s.speed_limit_kmh,
                    "from_reader_id": s.from_reader_id,
                    "to_reader_id": s.to_reader_id,
                    "road_class": s.road_class,
                    "city": s.city,
                    "free_flow_kmh": s.free_flow_kmh,
                }
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features}).to_string()
}

pub async fn network(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/geo+json")], state.network_geojson.as_ref().clone())
}

/// The reader registry, each with its health: clock offset, last read, and status
/// (`ok`, `clock_skewed`, `untrusted` — its reads excluded —, `silent`, `unknown`).
pub async fn readers(State(state): State<AppState>) -> impl IntoResponse {
    let health = state.live.reader_health();
    let readers: Vec<Value> = state
        .live
        .city()
        .readers
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            if let (Some(obj), Some(h)) = (v.as_object_mut(), health.get(i)) {
                obj.insert("health".into(), json!({"status": h.status, "clock_offset_ms": h.clock_offset_ms, "last_read_ms": h.last_read_ms}));
            }
            v
        })
        .collect();
    Json(json!({"readers": readers}))
}

pub async fn cameras(State(state): State<AppState>) -> impl IntoResponse {
    let cameras: Vec<Value> = state
        .live
        .city()
        .cameras
        .iter()
        .map(|c| json!({"camera_id": c.camera_id, "name": c.name, "kind": c.kind, "segment_id": c.segment_id, "lat": c.lat, "lon": c.lon}))
        .collect();
    Json(json!({"cameras": cameras}))
}
