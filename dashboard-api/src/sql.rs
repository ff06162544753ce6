//! `POST /api/v1/sql` (police, admin): read-only DataFusion SQL over the live
//! tables and the Parquet history. The query layer refuses anything but a query
//! and caps the rows; this handler checks the role, bounds the text and audits
//! the query, with plate literals written as their pseudonyms.

use crate::auth::{Caller, Role};
use crate::error::ErrorBody;
use crate::violations::audited;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use egret_query::QueryError;
use serde::Deserialize;
use utoipa::ToSchema;

/// Longest SQL text accepted.
pub const MAX_SQL_BYTES: usize = 64 * 1024;
pub const SQL_ROLES: &[Role] = &[Role::Police, Role::Admin];

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One SELECT (or EXPLAIN). Live tables: segments, segment_windows, parking,
    /// incidents, violations, possible_hits, buses, arrivals, headways, readers;
    /// history: history_segment_windows, history_violations (partition column `hour`).
    #[schema(example = "SELECT segment_id, mean_speed_kmh FROM segments ORDER BY mean_speed_kmh LIMIT 10")]
    pub sql: String,
}

/// `{"columns":[{"name","type"}],"rows":[{column: value}],"row_count","truncated"}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SqlResult {
    pub columns: Vec<SqlColumn>,
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Value>,
    pub row_count: u64,
    /// More rows matched than were returned.
    pub truncated: bool,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SqlColumn {
    pub name: String,
    #[schema(rename = "type")]
    pub data_type: String,
}

/// Read-only SQL over live state and history.
#[utoipa::path(post, path = "/api/v1/sql", tag = "police", request_body = SqlRequest, security(("bearer" = [])),
    responses((status = 200, body = SqlResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn sql(State(state): State<AppState>, caller: Caller, body: Result<Json<SqlRequest>, JsonRejection>) -> Result<Json<serde_json::Value>, ApiError> {
    let detail = body.as_ref().map(|Json(b)| pseudonymise_literals(&state, &b.sql)).unwrap_or_default();
    let result = async {
        caller.require(SQL_ROLES)?;
        let Json(request) = body?;
        if request.sql.len() > MAX_SQL_BYTES {
            return Err(ApiError::bad_request(format!("the SQL is {} bytes; at most {MAX_SQL_BYTES}", request.sql.len())));
        }
        let answer = state.query.sql_json(&request.sql).await.map_err(|e| match e {
            QueryError::Plan(m) => ApiError::bad_request(m),
            QueryError::Execution(m) => ApiError::unavailable(m),
        })?;
        let rows = answer.get("row_count").and_then(serde_json::Value::as_u64).unwrap_or(0);
        Ok((answer, rows))
    }
    .await;
    audited(&state, &caller, "POST /api/v1/sql", detail, result).map(Json)
}

/// The SQL with every single-quoted literal that is a plate replaced by its
/// pseudonym, for the audit log.
fn pseudonymise_literals(state: &AppState, sql: &str) -> String {
    crate::input::pseudonymise_literals(sql, |plate| state.security.pseudonyms.pseudonym(plate))
}
