//! CORS: none unless `--cors-origin` lists origins; then exactly those, never `*`.
//!
//! Credentials mode stays off: the API authenticates with an `Authorization` header that a
//! page sets itself, not with cookies, so browsers need only `Authorization` among the allowed
//! request headers. Preflights are answered before the token check, as browsers send them
//! without credentials.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::request_id::REQUEST_ID_HEADER;

/// How long a browser may cache a preflight's answer.
const MAX_AGE: Duration = Duration::from_secs(600);

/// The layer for `origins` (checked by the configuration), or `None` when there are none.
#[must_use]
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let inference_header = HeaderName::from_static("inference-header-content-length");
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                REQUEST_ID_HEADER,
                inference_header.clone(),
            ])
            .expose_headers([
                REQUEST_ID_HEADER,
                header::LOCATION,
                header::RETRY_AFTER,
                header::WWW_AUTHENTICATE,
                inference_header,
            ])
            .max_age(MAX_AGE),
    )
}
