//! The error shape of the Open Inference Protocol: `{"error": "…"}` as `application/json`.
//!
//! The statuses are those of [`ApiError`] (the one table of statuses, in `http/error/mod.rs`),
//! except that a request the protocol cannot carry out is 400 where `/v1` says 422: the
//! protocol and Triton answer every bad request with 400, and clients such as `tritonclient`
//! report any non-200 with the body's `error`. Errors made outside the `/v2` handlers (unknown
//! routes, wrong methods, body limits, timeouts, panics) are rewritten into this shape by
//! [`crate::http::middleware::problem_json::ProblemJsonOnly`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ApiError;

/// An error of a `/v2` route.
#[derive(Debug)]
pub struct V2Error {
    status: StatusCode,
    message: String,
    /// Sent as `Retry-After` (whole seconds), for a refusal the client should retry.
    retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
}

impl V2Error {
    /// A 400 with this message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 404 with this message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<ApiError> for V2Error {
    fn from(error: ApiError) -> Self {
        if let ApiError::Internal(_) = &error {
            // The body says nothing of the cause (`to_problem` sees to it); the log does.
            tracing::error!(error = %error, "internal error");
        }
        let status = match error.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            status => status,
        };
        let retry_after = match &error {
            ApiError::QueueFull { retry_after }
            | ApiError::TooManyPredictions { retry_after, .. }
            | ApiError::TooManySubscribers { retry_after, .. }
            | ApiError::TooManyImports { retry_after, .. } => {
                Some(super::retry_after_secs(*retry_after))
            }
            _ => None,
        };
        Self {
            status,
            message: error.to_problem().detail,
            retry_after,
        }
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            error: &self.message,
        })
        // Serializing one string cannot fail; still, never panic here.
        .unwrap_or_else(|_| br#"{"error":"error"}"#.to_vec());
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Whether `path` is one of the Open Inference Protocol's, whose errors are `{"error"}`.
#[must_use]
pub fn is_v2_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}
