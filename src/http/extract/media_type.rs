//! Media types of `Content-Type` headers, as the extractors and the error middleware read
//! them: lowercase, without parameters.

use axum::http::{header, HeaderMap};

/// Whether `media_type` (without parameters, lowercase) is JSON.
pub(crate) fn is_json_media_type(media_type: &str) -> bool {
    media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
}

/// The media type of `Content-Type`, lowercase and without parameters.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    Some(essence)
}
