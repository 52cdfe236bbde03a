//! Request ids and the request's tracing span: a client's `x-request-id` is kept when it is
//! short and plain, else a UUIDv7 is made up; either way it is echoed on the response and
//! carried by every log line of the request.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use tower_http::request_id::{MakeRequestId, RequestId};
use uuid::Uuid;

use crate::http::metrics::UNMATCHED;

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids are UUIDv7, like every other id of the service, so they sort by time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = request_uuid().hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(id).ok().map(RequestId::new)
    }
}

/// A UUIDv7 for a request id: the time in milliseconds, and 74 bits from a generator per
/// thread that the operating system seeds once. `Uuid::now_v7` asks the kernel for random
/// bytes each time, a system call per request (about 0.7 % of a one-row prediction's time);
/// a request id only has to be unique, not unguessable.
fn request_uuid() -> Uuid {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(Uuid::now_v7().as_u64_pair().1);
    }
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (high, low) = STATE.with(|state| {
        let mut s = state.get();
        let random = (
            crate::nn::rng::splitmix64(&mut s),
            crate::nn::rng::splitmix64(&mut s),
        );
        state.set(s);
        random
    });
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&high.to_le_bytes());
    random[8..].copy_from_slice(&low.to_le_bytes()[..2]);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// One line per answered request: `INFO` for a client or server error (the trace layer also
/// logs a server error as a failure, at `ERROR`), `DEBUG` when it succeeded. Successful requests are not
/// logged at the default level: a line per prediction, at thousands a second, was about 4 %
/// of the server's time and buries what matters; `RUST_LOG=info,mlp_lab::requests=debug`
/// shows them.
pub(crate) fn log_response(response: &Response, latency: Duration, _span: &tracing::Span) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1e3;
    if response.status().is_client_error() || response.status().is_server_error() {
        tracing::info!(target: "mlp_lab::requests", status, latency_ms, "finished processing request");
    } else {
        tracing::debug!(target: "mlp_lab::requests", status, latency_ms, "finished processing request");
    }
}

pub(crate) fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(UNMATCHED, axum::extract::MatchedPath::as_str);
    // The path only: a query string is the client's to keep out of our logs. No header either:
    // `Authorization` carries a token.
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        route = %route,
        request_id = %request_id,
    )
}

/// The longest request id taken from a client.
const MAX_REQUEST_ID: usize = 128;

/// Removes a client's `x-request-id` unless it is one value of at most [`MAX_REQUEST_ID`]
/// letters, digits and `-_.:/+=@`, so that a log line never carries a client's kilobytes or
/// quoting tricks; tower-http's `SetRequestIdLayer` then makes a new one.
pub(crate) fn drop_unusable_request_id(mut request: Request) -> Request {
    let headers = request.headers_mut();
    let mut values = headers.get_all(&REQUEST_ID_HEADER).iter();
    let usable = match (values.next(), values.next()) {
        (Some(value), None) => {
            let bytes = value.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_REQUEST_ID
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
        }
        (None, _) => true,
        _ => false,
    };
    if !usable {
        headers.remove(&REQUEST_ID_HEADER);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_uuidv7s_of_the_current_millisecond() {
        let before = std::time::SystemTime::now();
        let ids: Vec<Uuid> = (0..10_000).map(|_| request_uuid()).collect();
        let after = std::time::SystemTime::now();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let millis = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_millis()
        };
        for id in &ids {
            assert_eq!(id.get_version_num(), 7, "{id}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
            let (seconds, nanos) = id.get_timestamp().expect("v7 has a time").to_unix();
            let at = u128::from(seconds) * 1000 + u128::from(nanos / 1_000_000);
            assert!((millis(before)..=millis(after)).contains(&at), "{id}");
        }
        // Another thread draws from its own generator.
        let other = std::thread::spawn(request_uuid).join().expect("joins");
        assert!(!distinct.contains(&other));
    }
}
