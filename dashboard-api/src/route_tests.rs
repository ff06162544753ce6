//! `GET /api/v1/route` through the router (`oneshot`): a route across Xiamen, the
//! 400/404 errors for bad points, and live windows changing the travel time.

use super::*;
use crate::router;
use axum::body::Body;
use axum::http::Request;
use egret_pipeline::{BatchOutput, LiveState};
use tower::ServiceExt;
use std::sync::Arc;

/// Near gantry XM-R0010 (G15 K47.6, on the mainland north of the island).
const NORTH: &str = "24.6520,118.0905";
/// Near gantry XM-R0040 (Wutong, the Xiang'an Tunnel's island portal).
const WUTONG: &str = "24.5195,118.1825";
const WATERMARK_MS: i64 = 1_795_996_500_000;

fn live() -> Arc<LiveState> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    Arc::new(LiveState::new(Arc::new(CityModel::load(&dir).expect("city data"))))
}

async fn get(live: &Arc<LiveState>, uri: &str) -> (StatusCode, serde_json::Value) {
    let app = router(AppState::new(live.clone(), None));
    let response = app.oneshot(Request::get(uri).body(Body::empty()).expect("request")).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 10_000_000).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

/// A window on `segment` ending at `end_ms`, whose traversals took `factor` times
/// the free-flow time.
fn slow_window(city: &CityModel, segment: SegmentIdx, end_ms: i64, factor: f64) -> SegmentWindow {
    let s = city.segment(segment);
    SegmentWindow {
        segment,
        window_start_ms: end_ms - 60_000,
        window_end_ms: end_ms,
        mean_speed_kmh: s.free_flow_kmh / factor,
        median_speed_kmh: s.free_flow_kmh / factor,
        travel_time_s: free_flow_s_of(s) * factor,
        sample_count: 6,
        median_5min_kmh: None,
        is_final: false,
        revision: 0,
    }
}

/// Every segment leaving `reader`: a route from it cannot avoid them.
fn leaving(city: &CityModel, reader: &str) -> Vec<SegmentIdx> {
    let r = city.reader_idx(reader).expect("reader");
    city.outgoing(r).to_vec()
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().expect("a number")
}

#[tokio::test]
async fn a_route_across_xiamen_at_free_flow() {
    let live = live();
    let city = live.city().clone();
    let (status, body) = get(&live, &format!("/api/v1/route?from={NORTH}&to={WUTONG}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["from"]["reader_id"], "XM-R0010");
    assert_eq!(body["to"]["reader_id"], "XM-R0040");
    assert!(f(&body["from"]["snap_distance_m"]) > 0.0 && f(&body["from"]["snap_distance_m"]) < 200.0);
    assert_eq!(body["as_of_ms"], 0);
    let segments = body["segments"].as_array().expect("segments");
    assert!(segments.len() >= 5, "{body}");
    // Connected, from one end to the other, on roads a car may use.
    let ids: Vec<SegmentIdx> = segments.iter().map(|s| city.segment_idx(s["segment_id"].as_str().expect("id")).expect("known")).collect();
    assert_eq!(city.reader(city.segment_from(ids[0])).reader_id, "XM-R0010");
    assert_eq!(city.reader(city.segment_to(ids[ids.len() - 1])).reader_id, "XM-R0040");
    for pair in ids.windows(2) {
        assert_eq!(city.segment_to(pair[0]), city.segment_from(pair[1]));
    }
    assert!(ids.iter().all(|s| drivable(city.segment(*s))));
    let length: u64 = segments.iter().map(|s| s["length_m"].as_u64().expect("length")).sum();
    assert_eq!(body["distance_m"].as_u64(), Some(length));
    assert!(segments.iter().all(|s| s["speed_source"] == "free_flow" && s["travel_time_s"] == s["free_flow_time_s"]));
    assert!(segments[0]["name"].as_str().is_some_and(|n| !n.is_empty()));
    // No live data: the time now is the free-flow time, and a plausible one.
    assert_eq!(body["travel_time_s"], body["free_flow_travel_time_s"]);
    let minutes = f(&body["travel_time_s"]) / 60.0;
    assert!((10.0..40.0).contains(&minutes), "{minutes} min for {length} m");

    // Both ends on one gantry: an empty route, not an error.
    let (status, body) = get(&live, &format!("/api/v1/route?from={NORTH}&to=24.6515,118.09")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["segments"].as_array().map(Vec::len), Some(0));
    assert_eq!((f(&body["distance_m"]), f(&body["travel_time_s"])), (0.0, 0.0));
}

#[tokio::test]
async fn bad_points_are_400_with_a_json_error() {
    let live = live();
    let cases = [
        ("/api/v1/route", "missing `from`"),
        (&format!("/api/v1/route?from={NORTH}"), "missing `to`"),
        (&format!("/api/v1/route?to={WUTONG}"), "missing `from`"),
        (&format!("/api/v1/route?from=&to={WUTONG}"), "lat,lon"),
        (&format!("/api/v1/route?from=abc&to={WUTONG}"), "lat,lon"),
        (&format!("/api/v1/route?from=24.5&to={WUTONG}"), "lat,lon"),
        (&format!("/api/v1/route?from=24.5,118.1,3&to={WUTONG}"), "lat,lon"),
        (&format!("/api/v1/route?from=24.5,east&to={WUTONG}"), "lat,lon"),
        (&format!("/api/v1/route?from=NaN,118.1&to={WUTONG}"), "finite"),
        (&format!("/api/v1/route?from={NORTH}&to=24.5,inf"), "finite"),
        (&format!("/api/v1/route?from=118.09,24.65&to={WUTONG}"), "order is lat,lon"),
        (&format!("/api/v1/route?from=-90.5,118&to={WUTONG}"), "latitude"),
        (&format!("/api/v1/route?from={NORTH}&to=24.5,180.5"), "longitude"),
        ("/api/v1/route?from=%FF&to=1,2", ""),
    ];
    for (uri, says) in cases {
        let (status, body) = get(&live, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{uri}");
        let message = body["error"]["message"].as_str().expect("a message");
        assert!(message.contains(says), "{uri}: {message}");
    }
}

#[tokio::test]
async fn a_point_far_from_every_road_is_404_off_network() {
    let live = live();
    // The middle of the Taiwan Strait, and Beijing.
    for far in ["24.0,119.0", "39.9,116.4"] {
        let (status, body) = get(&live, &format!("/api/v1/route?from={NORTH}&to={far}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "off_network");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("`to`") && m.contains("km")), "{body}");
    }
}

#[tokio::test]
async fn a_live_jam_makes_the_trip_slower_than_free_flow() {
    let live = live();
    let city = live.city().clone();
    let jammed = leaving(&city, "XM-R0010");
    let windows = jammed.iter().map(|s| slow_window(&city, *s, WATERMARK_MS, 6.0)).collect();
    live.apply(&BatchOutput { windows, watermark_ms: WATERMARK_MS, ..Default::default() });

    let (status, body) = get(&live, &format!("/api/v1/route?from={NORTH}&to={WUTONG}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["as_of_ms"], WATERMARK_MS);
    assert!(f(&body["travel_time_s"]) > f(&body["free_flow_travel_time_s"]) + 1.0, "{body}");
    let first = &body["segments"][0];
    assert_eq!(first["speed_source"], "live");
    let ratio = f(&first["travel_time_s"]) / f(&first["free_flow_time_s"]);
    assert!((ratio - 6.0).abs() < 0.05, "{ratio}");
    // The rest of the way has no windows and stays at free flow.
    assert!(body["segments"].as_array().expect("segments")[1..].iter().all(|s| s["speed_source"] == "free_flow"));
}

#[tokio::test]
async fn stale_or_empty_windows_fall_back_to_free_flow() {
    let live = live();
    let city = live.city().clone();
    let leaving_north = leaving(&city, "XM-R0010");
    let mut windows: Vec<SegmentWindow> =
        leaving_north.iter().map(|s| slow_window(&city, *s, WATERMARK_MS - LIVE_MAX_AGE_MS - 60_000, 6.0)).collect();
    // Recent, but with no samples behind it.
    for s in leaving(&city, "XM-R0040") {
        windows.push(SegmentWindow { sample_count: 0, ..slow_window(&city, s, WATERMARK_MS, 6.0) });
    }
    live.apply(&BatchOutput { windows, watermark_ms: WATERMARK_MS, ..Default::default() });

    let (status, body) = get(&live, &format!("/api/v1/route?from={NORTH}&to={WUTONG}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["travel_time_s"], body["free_flow_travel_time_s"], "{body}");
    assert!(body["segments"].as_array().expect("segments").iter().all(|s| s["speed_source"] == "free_flow"));
    let (_, back) = get(&live, &format!("/api/v1/route?from={WUTONG}&to={NORTH}")).await;
    assert_eq!(back["travel_time_s"], back["free_flow_travel_time_s"], "{back}");
}

#[test]
fn a_live_window_is_used_only_when_recent_and_measured() {
    let live = live();
    let city = live.city();
    let s = SegmentIdx(0);
    let segment = city.segment(s);
    let fresh = slow_window(city, s, WATERMARK_MS, 2.0);
    assert_eq!(segment_cost(segment, Some(&fresh), WATERMARK_MS).1, SpeedSource::Live);
    assert_eq!(segment_cost(segment, Some(&fresh), WATERMARK_MS + LIVE_MAX_AGE_MS).1, SpeedSource::Live);
    assert_eq!(segment_cost(segment, Some(&fresh), WATERMARK_MS + LIVE_MAX_AGE_MS + 1).1, SpeedSource::FreeFlow);
    let broken = SegmentWindow { travel_time_s: f64::NAN, ..fresh.clone() };
    assert_eq!(segment_cost(segment, Some(&broken), WATERMARK_MS), (free_flow_s_of(segment), SpeedSource::FreeFlow));
    assert_eq!(segment_cost(segment, None, WATERMARK_MS).1, SpeedSource::FreeFlow);
}
