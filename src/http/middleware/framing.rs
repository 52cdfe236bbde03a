//! Message framing that hyper lets through and RFC 9112 says a server must refuse.
//!
//! - An HTTP/1.1 request without `Host` (§3.2: "A server MUST respond with a 400 (Bad
//!   Request) status code to any HTTP/1.1 request message that lacks a Host header field").
//! - A `Transfer-Encoding` with a coding other than `chunked` (`gzip, chunked`, say): hyper
//!   removes the chunked framing and hands the handler the rest as if it were the body, still
//!   compressed. The server decodes no transfer coding, so such a request gets 501 (§6.1: a
//!   server that receives a transfer coding it does not understand SHOULD answer 501), in our
//!   error shape, naming the coding.
//!
//! The errors hyper answers by itself, before any of our code runs (conflicting
//! `Content-Length`s, obsolete line folding, a NUL in the request line, a head over its read
//! buffer: bare 400s and 431s without a body), are documented in the README's error section.

use axum::extract::Request;
use axum::http::{header, StatusCode, Version};
use axum::response::IntoResponse;

use super::gate::{Gate, Reply};
use crate::http::error::ApiError;

/// Middleware: refuses what [this module](self) describes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Framing;

impl Gate for Framing {
    type Kept = ();

    fn before(&self, request: Request) -> Result<((), Request), Reply> {
        if request.version() == Version::HTTP_11 && !request.headers().contains_key(header::HOST) {
            return Err(Reply::Now(
                ApiError::BadRequest {
                    code: "missing_host",
                    detail: "an HTTP/1.1 request must carry a Host header (RFC 9112 §3.2)"
                        .to_owned(),
                }
                .into_response(),
            ));
        }
        for value in request.headers().get_all(header::TRANSFER_ENCODING) {
            let text = String::from_utf8_lossy(value.as_bytes());
            let other = text
                .split(',')
                .map(str::trim)
                .find(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("chunked"));
            if let Some(coding) = other {
                return Err(Reply::Now(
                    ApiError::Status {
                        status: StatusCode::NOT_IMPLEMENTED,
                        detail: format!(
                            "Transfer-Encoding {coding:?} is not supported: send the body with \
                             Content-Length or chunked alone"
                        ),
                    }
                    .into_response(),
                ));
            }
        }
        Ok(((), request))
    }
}
