//! Enforcement lists for the police: tickets with their evidence, filtered and
//! paged by cursor, one ticket by id, and possible hotlist hits for a person to
//! check. Every read, and every refused attempt, is written to the audit log.

use crate::audit::AuditEntry;
use crate::auth::{Caller, Role};
use crate::{ApiError, AppState, input};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use egret_pipeline::enforce::violation::{PossibleHit, Violation, ViolationKind};
use crate::error::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ViolationQuery {
    kind: Option<ViolationKind>,
    /// A plate, normalised (full-width and case do not matter).
    plate: Option<String>,
    /// Offences at or after this instant.
    since_ms: Option<i64>,
    /// Offences before this instant.
    until_ms: Option<i64>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^v[0-9]{1,19}$")]
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ViolationPage {
    pub violations: Vec<Violation>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Who may read enforcement data.
pub const POLICE: &[Role] = &[Role::Police];

/// Writes an audit entry for a police read (or a refusal) and passes the result on.
pub fn audited<T>(state: &AppState, caller: &Caller, action: &str, detail: String, result: Result<(T, u64), ApiError>) -> Result<T, ApiError> {
    let (outcome, rows) = match &result {
        Ok((_, rows)) => ("ok".to_owned(), *rows),
        Err(e) => (e.code.to_owned(), 0),
    };
    state.security.audit.record(AuditEntry {
        ts_ms: crate::now_ms(),
        subject: caller.subject().unwrap_or("anonymous").to_owned(),
        role: caller.role().as_str().to_owned(),
        action: action.to_owned(),
        detail,
        rows,
        outcome,
    });
    result.map(|(value, _)| value)
}

/// Tickets with their evidence, oldest first, paged by cursor.
#[utoipa::path(get, path = "/api/v1/violations", tag = "police", params(ViolationQuery), security(("bearer" = [])),
    responses((status = 200, body = ViolationPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ViolationQuery>, QueryRejection>,
) -> Result<Json<ViolationPage>, ApiError> {
    let detail = query.as_ref().map(|Query(q)| describe(&state, q)).unwrap_or_default();
    let result = (|| {
        caller.require(POLICE)?;
        let Query(q) = query?;
        let kind = q.kind;
        let filter = input::violation_filter(q.plate.as_deref(), q.limit, q.cursor.as_deref(), q.since_ms, q.until_ms).map_err(ApiError::bad_request)?;
        let plate = filter.plate.map(|p| p.to_string());
        let (limit, after, since, until) = (filter.limit, filter.after, filter.since_ms, filter.until_ms);
        let keep = |v: &Violation| kind.is_none_or(|k| v.kind == k) && plate.as_ref().is_none_or(|p| v.plate == *p) && v.ts_ms >= since && v.ts_ms < until;
        let mut page = state.live.violations_after(after, limit + 1, keep);
        let next_cursor = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|(seq, _)| input::cursor(*seq))
        } else {
            None
        };
        let rows = page.len() as u64;
        Ok((ViolationPage { violations: page.into_iter().map(|(_, v)| v).collect(), next_cursor }, rows))
    })();
    audited(&state, &caller, "GET /api/v1/violations", detail, result).map(Json)
}

/// One ticket and its evidence.
#[utoipa::path(get, path = "/api/v1/violations/{id}", tag = "police", params(("id" = String, Path, description = "violation_id")), security(("bearer" = [])),
    responses((status = 200, body = Violation), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn one(State(state): State<AppState>, caller: Caller, id: Result<Path<String>, PathRejection>) -> Result<Json<Violation>, ApiError> {
    let detail = id.as_ref().map(|Path(id)| format!("violation_id={id}")).unwrap_or_default();
    let result = (|| {
        caller.require(POLICE)?;
        let Path(id) = id?;
        let found = state.live.violations(|v| v.violation_id == id).pop();
        found.map(|v| (v, 1)).ok_or_else(|| ApiError::not_found(format!("no violation {id} is held")))
    })();
    audited(&state, &caller, "GET /api/v1/violations/{id}", detail, result).map(Json)
}

#[derive(Serialize, ToSchema)]
pub struct PossibleHits {
    pub possible_hits: Vec<PossibleHit>,
}

/// Sightings one character away from a listed plate: for a person to check.
#[utoipa::path(get, path = "/api/v1/hotlist-hits", tag = "police", security(("bearer" = [])),
    responses((status = 200, body = PossibleHits), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn possible_hits(State(state): State<AppState>, caller: Caller) -> Result<Json<PossibleHits>, ApiError> {
    let result = caller.require(POLICE).map(|_| {
        let hits = state.live.possible_hits();
        let rows = hits.len() as u64;
        (PossibleHits { possible_hits: hits }, rows)
    });
    audited(&state, &caller, "GET /api/v1/hotlist-hits", String::new(), result).map(Json)
}

/// The filters of a query for the audit log, with the plate as its pseudonym.
fn describe(state: &AppState, q: &ViolationQuery) -> String {
    let mut parts = Vec::new();
    if let Some(k) = &q.kind {
        parts.push(format!("kind={}", k.as_str()));
    }
    if let Some(p) = &q.plate {
        parts.push(format!("plate={}", state.security.pseudonyms.pseudonym(p)));
    }
    for (name, value) in [("since_ms", q.since_ms), ("until_ms", q.until_ms)] {
        if let Some(v) = value {
            parts.push(format!("{name}={v}"));
        }
    }
    if let Some(c) = &q.cursor {
        parts.push(format!("cursor={c}"));
    }
    parts.join("&")
}
