//! Request body limits, one per route group (dataset uploads, predictions, everything else).
//!
//! A group is wrapped by [`with_body_limit`], which does three things:
//! - answers 413 at once when `Content-Length` already says the body is too large, before a
//!   byte of it is read;
//! - answers 415 when a body comes with a `Content-Encoding` (the server decodes none);
//! - sets axum's `DefaultBodyLimit`, so extractors stop reading a chunked body at the limit;
//! - puts the [`BodyLimit`] into the request's extensions, and rewrites any bare 413 that comes
//!   back, so every 413 names the limit and the setting that raises it.

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::gate::{Gate, GateLayer, Reply};
use super::problem_json;
use crate::config::{ByteSize, Limit, Limits};
use crate::http::error::ApiError;

/// The body limit of a route group: which setting it is and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimit {
    /// Which setting; one of the body-size limits.
    pub limit: Limit,
    /// Its value in force.
    pub max: ByteSize,
}

impl BodyLimit {
    /// The limit of most routes (`--max-body-bytes`).
    #[must_use]
    pub fn body(limits: &Limits) -> Self {
        Self {
            limit: Limit::BodyBytes,
            max: limits.max_body_bytes,
        }
    }

    /// The limit of prediction routes (`--max-predict-body-bytes`).
    #[must_use]
    pub fn predict(limits: &Limits) -> Self {
        Self {
            limit: Limit::PredictBodyBytes,
            max: limits.max_predict_body_bytes,
        }
    }

    /// The limit of weights imports (`--max-weights-upload-bytes`).
    #[must_use]
    pub fn weights_upload(limits: &Limits) -> Self {
        Self {
            limit: Limit::WeightsUploadBytes,
            max: limits.max_weights_upload_bytes,
        }
    }

    /// The limit of dataset uploads (`--max-dataset-upload-bytes`).
    #[must_use]
    pub fn dataset_upload(limits: &Limits) -> Self {
        Self {
            limit: Limit::DatasetUploadBytes,
            max: limits.max_dataset_upload_bytes,
        }
    }

    /// The error for a body over this limit.
    #[must_use]
    pub fn exceeded(self) -> ApiError {
        ApiError::PayloadTooLarge {
            limit: Some((self.limit, self.max)),
        }
    }
}

/// Applies `body_limit` to every route of `router` added so far.
pub fn with_body_limit<S>(router: Router<S>, body_limit: BodyLimit) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(body_limit_layers(body_limit))
}

/// Applies `body_limit` to one method router: for a route whose methods take different limits
/// (`POST /v1/datasets` takes uploads, `GET /v1/datasets` the default).
pub fn method_with_body_limit<S>(
    route: axum::routing::MethodRouter<S>,
    body_limit: BodyLimit,
) -> axum::routing::MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    route.layer::<_, std::convert::Infallible>(body_limit_layers(body_limit))
}

/// The layers that apply `body_limit`: axum's `DefaultBodyLimit` (for extractors reading a
/// chunked body) around the [`Enforce`] gate.
fn body_limit_layers(body_limit: BodyLimit) -> (DefaultBodyLimit, GateLayer<Enforce>) {
    (
        DefaultBodyLimit::max(body_limit.max.as_usize()),
        GateLayer(Enforce(body_limit)),
    )
}

/// The gate of a body limit: 415 for an encoded body, 413 when `Content-Length` is over the
/// limit, the limit in the request's extensions, and a bare 413 from inside rewritten.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Enforce(BodyLimit);

impl Gate for Enforce {
    type Kept = BodyLimit;

    fn before(&self, mut request: Request) -> Result<(BodyLimit, Request), Reply> {
        let body_limit = self.0;
        if let Some(given) = content_encoding(request.headers()) {
            let mut response = ApiError::UnsupportedContentEncoding { given }.into_response();
            response.headers_mut().insert(
                header::ACCEPT_ENCODING,
                header::HeaderValue::from_static("identity"),
            );
            return Err(Reply::Now(response));
        }
        if content_length(request.headers()).is_some_and(|len| len > body_limit.max.0) {
            return Err(Reply::Now(body_limit.exceeded().into_response()));
        }
        request.extensions_mut().insert(body_limit);
        Ok((body_limit, request))
    }

    fn after(body_limit: BodyLimit, response: Response) -> Reply {
        if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !problem_json::is_json(&response) {
            return Reply::Now(problem_json::replace_body(response, body_limit.exceeded()));
        }
        Reply::Now(response)
    }
}

/// The body's size as its `Content-Length` declares it; `None` for a chunked body (or a
/// value that is no number, which hyper refuses before we see it).
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `Content-Encoding` of a request that has a body, unless it is `identity`: the server
/// decodes none, so such a body would be read as what it is not (a gzip bomb as JSON).
fn content_encoding(headers: &HeaderMap) -> Option<String> {
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || content_length(headers).is_some_and(|len| len > 0);
    let value = headers.get(header::CONTENT_ENCODING)?;
    let text = String::from_utf8_lossy(value.as_bytes());
    (has_body && !text.trim().eq_ignore_ascii_case("identity")).then(|| text.into_owned())
}

/// Middleware: answers 431 in our error shape when the request line and headers are larger
/// than `--max-header-bytes`. hyper itself refuses heads beyond its read buffer (see
/// `server`), with an empty 431; that buffer is set well above this limit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LimitHeaderBytes(pub ByteSize);

impl Gate for LimitHeaderBytes {
    type Kept = ();

    fn before(&self, request: Request) -> Result<((), Request), Reply> {
        let (max, given) = (self.0, head_bytes(&request));
        if u64::try_from(given).unwrap_or(u64::MAX) > max.0 {
            return Err(Reply::Now(
                ApiError::HeadersTooLarge { max, given }.into_response(),
            ));
        }
        Ok(((), request))
    }
}

/// The size of a request's head as sent in HTTP/1: `METHOD URI HTTP/1.1\r\n`, then `name:
/// value\r\n` per header.
fn head_bytes(request: &Request) -> usize {
    let line = request.method().as_str().len()
        + request
            .uri()
            .path_and_query()
            .map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n ".len();
    request.headers().iter().fold(line, |sum, (name, value)| {
        sum.saturating_add(name.as_str().len() + value.len() + ": \r\n".len())
    })
}
