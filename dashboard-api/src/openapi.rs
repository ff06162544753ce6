//! The OpenAPI document at `/openapi.json`, generated from the handlers' own
//! annotations and response types (utoipa), so it cannot drift from the code.
//! The WebSocket at `/ws` is described in its own module: OpenAPI has no words
//! for a message protocol.

use crate::auth::Role;
use crate::{audit, error, gtfs, hotlists, ingest, network, parking, route, segments, sql, transit, violations};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Egret", description = "Live road speeds, incidents, parking, buses and enforcement for Xiamen, Zhangzhou and Quanzhou (contract-v1 §3). Roles: public (no token), dispatcher, police, admin, device; a bearer token from `egret token --role R`."),
    paths(
        network::network, network::readers, network::cameras,
        segments::latest, segments::history, segments::ready,
        parking::lots,
        transit::incidents, transit::buses, transit::routes, transit::headways, transit::arrivals,
        route::route,
        gtfs::static_zip, gtfs::vehicle_positions, gtfs::trip_updates,
        violations::list, violations::one, violations::possible_hits,
        hotlists::all, hotlists::get, hotlists::put, hotlists::delete,
        ingest::ingest,
        sql::sql,
        crate::audit_log, crate::healthz, crate::metrics, openapi_json,
    ),
    components(schemas(error::ErrorBody, audit::AuditEntry)),
    modifiers(&BearerAuth),
    tags(
        (name = "public", description = "anyone, no token"),
        (name = "dispatcher", description = "dispatcher or admin token"),
        (name = "police", description = "police token; every read is audited"),
        (name = "admin", description = "admin token"),
        (name = "device", description = "device token"),
        (name = "operations", description = "health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        scheme.description = Some(format!("HS256 JWT with claims sub, role ({}), iat, exp", roles.join(", ")));
        openapi.components.get_or_insert_with(Default::default).add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document, rendered once.
pub fn document() -> String {
    ApiDoc::openapi().to_json().unwrap_or_default()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json(axum::extract::State(state): axum::extract::State<crate::AppState>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], state.openapi.as_ref().clone())
}
