//! Router tests: status codes, content and the JSON error shape, via `oneshot`.

use super::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use egret_model::CityModel;
use tower::ServiceExt;

fn app() -> Router {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    let city = Arc::new(CityModel::load(&dir).expect("city data"));
    router(AppState::new(Arc::new(LiveState::new(city)), None))
}

async fn get(uri: &str) -> (StatusCode, serde_json::Value) {
    let response = app().oneshot(Request::get(uri).body(Body::empty()).expect("request")).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 50_000_000).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn network_is_geojson_with_contract_properties() {
    let (status, body) = get("/api/v1/network").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["type"], "FeatureCollection");
    let features = body["features"].as_array().expect("features");
    assert!(features.len() >= 300, "{} segments", features.len());
    let props = &features[0]["properties"];
    for key in ["segment_id", "name", "length_m", "speed_limit_kmh", "from_reader_id", "to_reader_id", "road_class"] {
        assert!(props.get(key).is_some(), "{key} missing");
    }
    assert_eq!(features[0]["geometry"]["type"], "LineString");
}

#[tokio::test]
async fn registries_health_and_empty_state() {
    let (status, body) = get("/api/v1/readers").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["readers"].as_array().is_some_and(|r| !r.is_empty()));
    let (status, body) = get("/api/v1/cameras").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["cameras"].as_array().is_some_and(|c| !c.is_empty()));
    assert_eq!(get("/healthz").await.0, StatusCode::OK);
    assert_eq!(get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE, "not ready before any data");
    let (status, body) = get("/api/v1/segments").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["segments"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let (status, body) = get("/api/v1/segments/NOPE/history").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let first = {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
        CityModel::load(&dir).expect("city").segments[0].segment_id.clone()
    };
    let (status, body) = get(&format!("/api/v1/segments/{first}/history?from_ms=abc")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
    let (status, body) = get(&format!("/api/v1/segments/{first}/history?from_ms=10&to_ms=5")).await;
    assert_eq!((status, body["windows"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    let (status, body) = get(&format!("/api/v1/segments/{first}/history")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["windows"].as_array().map(Vec::len), Some(0));
    let (status, body) = get("/api/v1/segments/%FF/history").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    let response = app().oneshot(Request::post("/api/v1/segments").body(Body::empty()).expect("request")).await.expect("response");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let bytes = axum::body::to_bytes(response.into_body(), 10_000).await.expect("body");
    let body: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON error body");
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let (status, body) = get("/no/such/thing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"].is_string());
}
