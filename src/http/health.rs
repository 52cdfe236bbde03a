//! Liveness and readiness: `GET /healthz` answers while the process serves at all; `GET
//! /readyz` only while it should be sent traffic (not while starting or shutting down).

use axum::extract::State;
use serde::Serialize;

use super::error::ApiError;
use super::extract::AppJson;
use super::AppState;

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
    if state.is_ready() {
        Ok(AppJson(HealthStatus { status: "ready" }))
    } else {
        Err(ApiError::unavailable(
            "the service is starting or shutting down; send no traffic to it now",
        ))
    }
}
