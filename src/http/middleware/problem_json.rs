//! What answers when no handler does, or when a layer answers for one: unknown routes, wrong
//! methods, panics, and the middleware [`ProblemJsonOnly`] that turns any bare error response
//! into problem+json (or `{"error"}` under `/v2`).
//!
//! Handlers return [`ApiError`], so their errors are already problem+json. The rest come from
//! layers that know nothing of our shape: axum's router (404, 405), tower-http's timeout (408)
//! and body limit (413), a `Bytes` or `Json` extractor used directly (text/plain 4xx). The
//! middleware [`ProblemJsonOnly`] rewrites those, keeping their headers (`Allow`,
//! `Retry-After`, …), so no text/plain error ever leaves the server.

use std::any::Any;

use axum::body::{self, Body};
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};

use super::gate::{Gate, Reply};
use crate::http::error::{is_v2_path, V2Error};
use crate::http::error::{ApiError, Problem, PROBLEM_JSON};
use crate::http::extract::media_type::{is_json_media_type, media_type};

/// The longest request path echoed back in a 404, in bytes.
const MAX_ECHOED_PATH: usize = 200;

/// The longest bare error body read to become a problem's `detail`, in bytes.
const MAX_BARE_DETAIL: usize = 4096;

/// The longest problem+json body read to become a `/v2` error, in bytes.
const MAX_PROBLEM_BYTES: usize = 64 * 1024;

/// The fallback for unknown routes.
pub(crate) async fn route_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        method,
        path: echoable_path(&uri),
    }
}

/// The fallback for a known route with the wrong method. axum adds `Allow` to our response
/// after this returns, as long as we do not set it ourselves.
pub(crate) async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed { method }
}

/// The response to a panic in a handler, for `CatchPanicLayer::custom`: a 500 whose body says
/// nothing of the panic; the message is logged.
pub(crate) fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    };
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}

/// Middleware: rewrites every 4xx/5xx response whose body is not JSON into problem+json,
/// and on `/v2` paths every error that is not `{"error": …}` into that shape.
///
/// JSON error bodies pass untouched: ours are problem+json already, and the `/v2` handlers
/// answer `{"error": …}` as the Open Inference Protocol requires. On `/v2` paths the errors
/// made before or around those handlers (unknown route, wrong method, body limit, timeout,
/// panic, path rejection) are problem+json or bare, and become `{"error": detail}` with their
/// status and headers (`Allow`, …) kept.
///
/// Only an error response that must be rewritten costs more than a look at its headers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProblemJsonOnly;

impl Gate for ProblemJsonOnly {
    type Kept = (Method, Uri);

    fn before(&self, request: Request) -> Result<(Self::Kept, Request), Reply> {
        Ok(((request.method().clone(), request.uri().clone()), request))
    }

    fn after((method, uri): Self::Kept, response: Response) -> Reply {
        let status = response.status();
        let is_error = status.is_client_error() || status.is_server_error();
        if is_v2_path(uri.path()) {
            if !is_error || media_type(response.headers()).as_deref() == Some("application/json") {
                return Reply::Now(response);
            }
            return Reply::Later(Box::pin(v2_error(response, method, uri)));
        }
        if !is_error || is_json(&response) {
            return Reply::Now(response);
        }
        Reply::Later(Box::pin(problem_json(response, method, uri)))
    }
}

/// A bare error response, outside `/v2`, as problem+json.
async fn problem_json(response: Response, method: Method, uri: Uri) -> Response {
    let status = response.status();
    let (parts, body) = response.into_parts();
    // 4xx text from axum's rejections is meant for the client; 5xx text never is.
    let text = if status.is_client_error() && is_text(&parts.headers) {
        body::to_bytes(body, MAX_BARE_DETAIL)
            .await
            .ok()
            .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
    } else {
        None
    };
    let error = ApiError::from_bare_response(status, method, echoable_path(&uri), text);
    with_headers_of(error.into_response(), &parts.headers)
}

/// An error response on a `/v2` path that is not `{"error": …}` yet, in that shape.
async fn v2_error(response: Response, method: Method, uri: Uri) -> Response {
    let status = response.status();
    let (parts, body) = response.into_parts();
    let problem = media_type(&parts.headers).as_deref() == Some(PROBLEM_JSON);
    let readable = problem || (status.is_client_error() && is_text(&parts.headers));
    let bytes = if readable {
        body::to_bytes(body, MAX_PROBLEM_BYTES).await.ok()
    } else {
        None
    };
    let message = match bytes {
        Some(bytes) if problem => serde_json::from_slice::<Problem>(&bytes)
            .ok()
            .map(|p| p.detail),
        Some(bytes) => {
            let text = String::from_utf8(bytes.to_vec()).ok();
            let error =
                ApiError::from_bare_response(status, method.clone(), echoable_path(&uri), text);
            Some(error.to_problem().detail)
        }
        None => None,
    };
    let message = message.unwrap_or_else(|| {
        ApiError::from_bare_response(status, method, echoable_path(&uri), None)
            .to_problem()
            .detail
    });
    with_headers_of(
        V2Error::new(status, message).into_response(),
        &parts.headers,
    )
}

/// Whether the response's body is JSON (`application/json` or `application/*+json`).
pub(crate) fn is_json(response: &Response) -> bool {
    media_type(response.headers()).is_some_and(|m| is_json_media_type(&m))
}

fn is_text(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m.starts_with("text/"))
}

/// `response`'s status and headers with `error`'s body: for a layer that knows better what a
/// bare error meant (such as the body limit of its route group).
pub(crate) fn replace_body(response: Response, error: ApiError) -> Response {
    let (parts, _) = response.into_parts();
    with_headers_of(error.into_response(), &parts.headers)
}

/// Copies the headers of a replaced response onto its replacement, except those that describe
/// the old body.
fn with_headers_of(mut response: Response<Body>, old: &HeaderMap) -> Response {
    let new = response.headers_mut();
    let already: Vec<_> = new.keys().cloned().collect();
    for (name, value) in old {
        let describes_body = name == header::CONTENT_TYPE
            || name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING;
        if !describes_body && !already.contains(name) {
            new.append(name.clone(), value.clone());
        }
    }
    response
}

fn echoable_path(uri: &Uri) -> String {
    let path = uri.path();
    if path.len() <= MAX_ECHOED_PATH {
        return path.to_owned();
    }
    let mut end = MAX_ECHOED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}
