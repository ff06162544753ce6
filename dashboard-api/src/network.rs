//! The city as the public sees it: road segments as GeoJSON, readers (with their
//! health) and cameras.

use crate::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use egret_model::CityModel;
use egret_model::city::{Camera, Reader, Segment};
use serde::Serialize;
use utoipa::ToSchema;

/// A GeoJSON FeatureCollection of the road segments.
#[derive(Serialize, ToSchema)]
pub struct Network<'a> {
    /// Always `FeatureCollection`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub features: Vec<SegmentFeature<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct SegmentFeature<'a> {
    /// Always `Feature`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'a str,
    pub geometry: LineString<'a>,
    pub properties: SegmentProperties<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct LineString<'a> {
    /// Always `LineString`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `[lon, lat]` pairs.
    pub coordinates: &'a [[f64; 2]],
}

/// The properties contract-v1 lists, plus city and free-flow speed.
#[derive(Serialize, ToSchema)]
pub struct SegmentProperties<'a> {
    pub segment_id: &'a str,
    pub name: &'a str,
    pub length_m: u32,
    pub speed_limit_kmh: u32,
    pub from_reader_id: &'a str,
    pub to_reader_id: &'a str,
    /// expressway, bridge, tunnel, brt, arterial…
    #[schema(value_type = String)]
    pub road_class: egret_model::city::RoadClass,
    pub city: &'a str,
    pub free_flow_kmh: f64,
}

fn feature(s: &Segment) -> SegmentFeature<'_> {
    SegmentFeature {
        kind: "Feature",
        id: &s.segment_id,
        geometry: LineString { kind: "LineString", coordinates: &s.geometry },
        properties: SegmentProperties {
            segment_id: &s.segment_id,
            name: &s.name,
            length_m: s.length_m,
            speed_limit_kmh: s.speed_limit_kmh,
            from_reader_id: &s.from_reader_id,
            to_reader_id: &s.to_reader_id,
            road_class: s.road_class,
            city: &s.city,
            free_flow_kmh: s.free_flow_kmh,
        },
    }
}

/// The network rendered once: it never changes while running.
pub fn geojson(city: &CityModel) -> String {
    let network = Network { kind: "FeatureCollection", features: city.segments.iter().map(feature).collect() };
    serde_json::to_string(&network).unwrap_or_default()
}

/// The road network.
#[utoipa::path(get, path = "/api/v1/network", tag = "public",
    responses((status = 200, description = "GeoJSON FeatureCollection of road segments", body = Network<'_>, content_type = "application/geo+json")))]
pub async fn network(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/geo+json")], state.network_geojson.as_ref().clone())
}

#[derive(Serialize, ToSchema)]
pub struct ReaderView<'a> {
    pub reader_id: &'a str,
    pub name: &'a str,
    pub name_zh: Option<&'a str>,
    pub city: &'a str,
    pub lat: f64,
    pub lon: f64,
    /// `gantry` or `parking_gate`.
    #[schema(value_type = String)]
    pub kind: egret_model::city::ReaderKind,
    pub lot_id: Option<&'a str>,
    /// Absent until the pipeline has reported on readers.
    pub health: Option<ReaderHealthView>,
}

#[derive(Serialize, ToSchema)]
pub struct ReaderHealthView {
    /// `ok`, `clock_skewed` (corrected), `untrusted` (reads excluded), `silent` or `unknown`.
    pub status: String,
    pub clock_offset_ms: Option<i64>,
    pub last_read_ms: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Readers<'a> {
    pub readers: Vec<ReaderView<'a>>,
}

fn reader_view<'a>(r: &'a Reader, health: Option<&egret_pipeline::health::ReaderHealth>) -> ReaderView<'a> {
    ReaderView {
        reader_id: &r.reader_id,
        name: &r.name,
        name_zh: r.name_zh.as_deref(),
        city: &r.city,
        lat: r.lat,
        lon: r.lon,
        kind: r.kind,
        lot_id: r.lot_id.as_deref(),
        health: health.map(|h| ReaderHealthView { status: h.status.clone(), clock_offset_ms: h.clock_offset_ms, last_read_ms: h.last_read_ms }),
    }
}

/// The reader registry, each with its health.
#[utoipa::path(get, path = "/api/v1/readers", tag = "public", responses((status = 200, body = Readers<'_>)))]
pub async fn readers(State(state): State<AppState>) -> impl IntoResponse {
    let health = state.live.reader_health();
    let city = state.live.city();
    let readers = city.readers.iter().enumerate().map(|(i, r)| reader_view(r, health.get(i))).collect();
    Json(Readers { readers }).into_response()
}

#[derive(Serialize, ToSchema)]
pub struct CameraView<'a> {
    pub camera_id: &'a str,
    pub name: &'a str,
    /// `anpr`, `speed`, `red_light`, `bus_lane` or `gate`.
    #[schema(value_type = String)]
    pub kind: egret_model::CameraKind,
    pub segment_id: &'a str,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Serialize, ToSchema)]
pub struct Cameras<'a> {
    pub cameras: Vec<CameraView<'a>>,
}

fn camera_view(c: &Camera) -> CameraView<'_> {
    CameraView { camera_id: &c.camera_id, name: &c.name, kind: c.kind, segment_id: &c.segment_id, lat: c.lat, lon: c.lon }
}

/// The camera registry.
#[utoipa::path(get, path = "/api/v1/cameras", tag = "public", responses((status = 200, body = Cameras<'_>)))]
pub async fn cameras(State(state): State<AppState>) -> impl IntoResponse {
    Json(Cameras { cameras: state.live.city().cameras.iter().map(camera_view).collect() }).into_response()
}
