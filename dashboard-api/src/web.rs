//! The dashboard at `GET /`: one static page with its ES modules, stylesheet and the
//! vendored Leaflet and uPlot (`dashboard-api/web/`), embedded in the binary with
//! `include_bytes!` so `egret` serves it with nothing beside it on disk and no
//! build step. The page reads everything else from the API and the WebSocket.
//!
//! These are not API endpoints, so they are not in the OpenAPI document. Every
//! response carries a Content-Security-Policy that allows only 'self': the page
//! can load nothing and talk to nothing but this server. The vendored files sit
//! under versioned directories and are cached for a year; the page's own files are
//! revalidated every time (`no-cache` with an ETag), so a new binary is picked up
//! at the next load without a stale mix of old and new modules.

use crate::ApiError;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::OnceLock;

/// One embedded file, by its path under `web/`.
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal) => {
        Asset { path: $path, bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)) }
    };
}

/// Every file the page may ask for; anything else is a JSON 404 like the API's.
const ASSETS: &[Asset] = &[
    asset!("index.html"),
    asset!("app.css"),
    asset!("favicon.svg"),
    asset!("js/main.js"),
    asset!("js/i18n.js"),
    asset!("js/api.js"),
    asset!("js/live.js"),
    asset!("js/ui.js"),
    asset!("js/map.js"),
    asset!("js/map-layers.js"),
    asset!("js/segment-panel.js"),
    asset!("js/signin.js"),
    asset!("js/police.js"),
    asset!("js/hotlists.js"),
    asset!("js/dispatch.js"),
    asset!("vendor/leaflet-1.9.4/leaflet.js"),
    asset!("vendor/leaflet-1.9.4/leaflet.css"),
    asset!("vendor/leaflet-1.9.4/LICENSE"),
    asset!("vendor/leaflet-1.9.4/images/layers.png"),
    asset!("vendor/leaflet-1.9.4/images/layers-2x.png"),
    asset!("vendor/leaflet-1.9.4/images/marker-icon.png"),
    asset!("vendor/leaflet-1.9.4/images/marker-icon-2x.png"),
    asset!("vendor/leaflet-1.9.4/images/marker-shadow.png"),
    asset!("vendor/uplot-1.6.32/uPlot.iife.min.js"),
    asset!("vendor/uplot-1.6.32/uPlot.min.css"),
    asset!("vendor/uplot-1.6.32/LICENSE"),
];

/// Only this server: scripts, styles, images and connections (fetch and the
/// WebSocket, which CSP 3 lets 'self' cover) alike. No inline script or style
/// attribute is allowed, and the page cannot be framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    }
}

/// A strong ETag per file, from its content, computed once.
fn etags() -> &'static HashMap<&'static str, String> {
    static ETAGS: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    ETAGS.get_or_init(|| ASSETS.iter().map(|a| (a.path, format!("\"{}\"", &hex::encode(Sha256::digest(a.bytes))[..20]))).collect())
}

/// Whether the client's `If-None-Match` already names this version.
fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return ApiError::not_found(format!("no dashboard file {path}")).into_response();
    };
    let etag = etags().get(asset.path).cloned().unwrap_or_default();
    // Versioned directories never change content under one name.
    let cache = if path.starts_with("vendor/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    let status = if not_modified(request, &etag) { StatusCode::NOT_MODIFIED } else { StatusCode::OK };
    let body = if status == StatusCode::OK { asset.bytes } else { &[] };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// `GET /`: the page.
pub async fn index(request: HeaderMap) -> Response {
    serve("index.html", &request)
}

/// `GET /web/{*path}`: its modules, stylesheet, icon and vendored libraries.
pub async fn asset(path: Result<Path<String>, PathRejection>, request: HeaderMap) -> Response {
    match path {
        Ok(Path(path)) => serve(&path, &request),
        Err(_) => ApiError::not_found("no such dashboard file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new().route("/", get(index)).route("/web/{*path}", get(asset))
    }

    async fn fetch(uri: &str, if_none_match: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::get(uri);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        let response = app().oneshot(request.body(Body::empty()).expect("request")).await.expect("response");
        let (status, headers) = (response.status(), response.headers().clone());
        let body = axum::body::to_bytes(response.into_body(), 10_000_000).await.expect("body").to_vec();
        (status, headers, body)
    }

    fn text(headers: &HeaderMap, name: header::HeaderName) -> String {
        headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn the_page_is_html_under_a_self_only_policy_and_revalidated() {
        let (status, headers, body) = fetch("/", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(text(&headers, header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(text(&headers, header::CACHE_CONTROL), "no-cache");
        let policy = text(&headers, header::CONTENT_SECURITY_POLICY);
        // Every source list names 'self' or 'none', never a host or a scheme.
        for directive in policy.split(';') {
            let sources: Vec<&str> = directive.split_whitespace().skip(1).collect();
            assert!(!sources.is_empty() && sources.iter().all(|s| *s == "'self'" || *s == "'none'"), "{directive}");
        }
        assert!(String::from_utf8_lossy(&body).contains("<html"));
        let etag = text(&headers, header::ETAG);
        let (again, _, empty) = fetch("/", Some(&etag)).await;
        assert_eq!(again, StatusCode::NOT_MODIFIED);
        assert!(empty.is_empty());
        let (changed, _, _) = fetch("/", Some("\"stale\"")).await;
        assert_eq!(changed, StatusCode::OK);
    }

    #[tokio::test]
    async fn vendored_files_are_cached_for_good_and_unknown_files_are_json_404s() {
        let (status, headers, body) = fetch("/web/vendor/leaflet-1.9.4/leaflet.js", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(text(&headers, header::CONTENT_TYPE), "text/javascript; charset=utf-8");
        assert!(text(&headers, header::CACHE_CONTROL).contains("immutable"));
        assert!(String::from_utf8_lossy(&body).contains("1.9.4"));
        let (status, headers, _) = fetch("/web/vendor/leaflet-1.9.4/images/layers.png", None).await;
        assert_eq!((status, text(&headers, header::CONTENT_TYPE).as_str()), (StatusCode::OK, "image/png"));
        for missing in ["/web/nothing.js", "/web/../Cargo.toml", "/web/vendor/"] {
            let (status, _, body) = fetch(missing, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
            assert_eq!(body["error"]["code"], "not_found", "{missing}");
        }
    }

    /// The relative references of a file (`src=`, `href=`, `from '…'`, `url(…)`).
    fn references(source: &str) -> Vec<String> {
        let mut found = Vec::new();
        for opener in ["src=\"", "href=\"", "from '", "import('", "url("] {
            for (start, _) in source.match_indices(opener) {
                let rest = &source[start + opener.len()..];
                let end = rest.find(['"', '\'', ')']).unwrap_or(rest.len());
                found.push(rest[..end].to_owned());
            }
        }
        found
    }

    /// What the page, its modules and its stylesheets refer to is embedded, and
    /// nothing refers to another host: the page works with no network at all.
    #[test]
    fn every_reference_resolves_to_an_embedded_file() {
        let embedded: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        let mut checked = 0;
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".html") || a.path.ends_with(".css") || a.path.starts_with("js/")) {
            let source = String::from_utf8_lossy(asset.bytes);
            for reference in references(&source) {
                // Leaflet's old-IE VML behaviour: a fragment, never fetched.
                if reference.starts_with('#') {
                    continue;
                }
                assert!(!reference.contains("//"), "{} refers to another host: {reference}", asset.path);
                let base = asset.path.rsplit_once('/').map_or("", |(dir, _)| dir);
                let resolved = match reference.strip_prefix("/web/") {
                    Some(absolute) => absolute.to_owned(),
                    None => resolve(base, &reference),
                };
                assert!(embedded.contains(&resolved.as_str()), "{} refers to {reference} ({resolved}), which is not embedded", asset.path);
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} references found: the scan is broken");
    }

    /// The keys of one language's table in i18n.js (`'key': 'text',` lines).
    fn keys_of(table: &str) -> std::collections::BTreeSet<&str> {
        table.lines().filter_map(|line| line.trim().strip_prefix('\'')?.split_once("':").map(|(key, _)| key)).collect()
    }

    /// A string missing in one language would show English in the Chinese view.
    #[test]
    fn english_and_chinese_have_the_same_strings() {
        let i18n = ASSETS.iter().find(|a| a.path == "js/i18n.js").map(|a| String::from_utf8_lossy(a.bytes)).expect("i18n.js");
        let (start, middle, end) = (i18n.find("  en: {").expect("en table"), i18n.find("  zh: {").expect("zh table"), i18n.find("\n};").expect("end of tables"));
        let (english, chinese) = (keys_of(&i18n[start..middle]), keys_of(&i18n[middle..end]));
        assert!(english.len() > 100, "only {} English strings found: the scan is broken", english.len());
        assert_eq!(english.difference(&chinese).collect::<Vec<_>>(), Vec::<&&str>::new(), "missing in Chinese");
        assert_eq!(chinese.difference(&english).collect::<Vec<_>>(), Vec::<&&str>::new(), "missing in English");
    }

    fn resolve(base: &str, reference: &str) -> String {
        let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
        for part in reference.split('/') {
            match part {
                "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        parts.join("/")
    }
}
