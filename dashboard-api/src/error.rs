//! API errors as contract-v1 wants them: `{"error":{"code","message"}}` with a
//! fitting status, never a panic and never a 500 for bad input.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The JSON of every error response.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `rate_limited`, `payload_too_large`, `unavailable`…
    pub code: String,
    /// For people.
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, code: "bad_request", message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::NOT_FOUND, code: "not_found", message: message.into() }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::UNAUTHORIZED, code: "unauthorized", message: message.into() }
    }

    /// A fault of ours, not the caller's (an answer that could not be rendered).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "internal", message: message.into() }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::SERVICE_UNAVAILABLE, code: "unavailable", message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE { "unsupported_media_type" } else { "bad_request" };
        // axum answers a well-formed body of the wrong shape with 422; the API's
        // one status for a request it cannot read is 400, as the schema says.
        let status = if code == "bad_request" { StatusCode::BAD_REQUEST } else { status };
        ApiError { status, code, message: r.body_text() }
    }
}
