//! `GET /openapi.yaml`: the API description, compiled into the binary from the repository's
//! `openapi.yaml`, so the served description is always the one of this build.

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;

/// The OpenAPI 3.1 description of the API.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// `GET /openapi.yaml`
pub(crate) async fn openapi_yaml() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        )],
        OPENAPI_YAML,
    )
}
