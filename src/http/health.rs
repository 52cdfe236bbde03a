//! The operator's endpoints: `GET /healthz` answers while the process serves at all; `GET
//! /readyz` only while it should be sent traffic: not while starting or shutting down, and not
//! while the data directory cannot be written (see [`super::readiness`]); `GET /metrics`
//! renders the Prometheus metrics ([`super::metrics`]).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use super::extract::AppJson;
use super::state::AppState;

/// The body of a successful health check.
#[derive(Debug, Serialize)]
pub struct HealthStatus {
    /// `ok` or `ready`.
    pub status: &'static str,
}

/// `GET /healthz`
pub(crate) async fn healthz() -> AppJson<HealthStatus> {
    AppJson(HealthStatus { status: "ok" })
}

/// `GET /readyz`
pub(crate) async fn readyz(
    State(state): State<AppState>,
) -> Result<AppJson<HealthStatus>, ApiError> {
    state.readiness().await?;
    Ok(AppJson(HealthStatus { status: "ready" }))
}

/// `GET /metrics`
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .render(&state.jobs, &state.registry, &state.predictor)
        .map_err(ApiError::internal)?;
    let content_type = HeaderValue::from_static(prometheus::TEXT_FORMAT);
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}
