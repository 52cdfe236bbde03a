//! Admission of prediction requests: the middleware of `POST /v1/models/{model}/predict` and
//! the `/v2` infer routes that takes one of the prediction engine's slots
//! ([`PredictionSlots`]) before the body is read, holds it until the response is made, and
//! answers 429 with `Retry-After` at once when there is none (`too_many_predictions`;
//! `{"error"}` under `/v2`).
//!
//! A connection whose request body is left unread cannot carry another request, so a small
//! body (up to [`DRAIN_MAX`] by `Content-Length`) is read and dropped before the 429, and the
//! connection stays open; a larger one is not read, and the 429 says `Connection: close`.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;

use super::gate::{Gate, Reply};
use crate::http::error::ApiError;
use crate::serving::admission::{PredictionSlots, Slot};

/// What a client that found every slot taken is told to wait: predictions take milliseconds,
/// so one second (the least `Retry-After` can say) is plenty.
pub const PREDICTION_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The largest body read and dropped so that a 429 keeps its connection open.
pub const DRAIN_MAX: usize = 64 * 1024;

/// Middleware of the prediction routes: serves the request while it holds a slot (until its
/// response is made), or answers 429 at once when there is none.
#[derive(Clone, Debug)]
pub(crate) struct LimitPredictions(pub PredictionSlots);

impl Gate for LimitPredictions {
    type Kept = Slot;

    fn before(&self, request: Request) -> Result<(Self::Kept, Request), Reply> {
        if let Some(slot) = self.0.try_take() {
            return Ok((slot, request));
        }
        let max = self.0.max();
        Err(Reply::Later(Box::pin(async move {
            let drained = drain_small_body(request).await;
            let mut response = ApiError::TooManyPredictions {
                max,
                retry_after: PREDICTION_RETRY_AFTER,
            }
            .into_response();
            if !drained {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        })))
    }
}

/// Reads and drops the body when `Content-Length` says it is at most [`DRAIN_MAX`]; whether
/// it was read whole.
async fn drain_small_body(request: Request) -> bool {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
    match length {
        Some(0) => true,
        Some(n) if n <= DRAIN_MAX => axum::body::to_bytes(request.into_body(), DRAIN_MAX)
            .await
            .is_ok(),
        _ => false,
    }
}
