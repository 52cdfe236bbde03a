//! The cap on predictions served at once (`--max-concurrent-predictions`), over `POST
//! /v1/models/{model}/predict` and the `/v2` infer routes.
//!
//! A request takes a slot before its body is read and gives it back when its response is
//! made, so the cap bounds the memory that predictions hold (bodies, matrices, answers) as
//! well as the CPU they share. When no slot is free the request is answered at once with 429
//! and `Retry-After` (`too_many_predictions`; `{"error"}` under `/v2`): nothing waits in a
//! queue that could grow without bound, and a client that is told to back off can go to
//! another replica.
//!
//! A connection whose request body is left unread cannot carry another request, so a small
//! body (up to [`DRAIN_MAX`] by `Content-Length`) is read and dropped before the 429, and the
//! connection stays open; a larger one is not read, and the 429 says `Connection: close`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use super::gate::{Gate, Reply};
use super::metrics::Metrics;

/// What a client that found every slot taken is told to wait: predictions take milliseconds,
/// so one second (the least `Retry-After` can say) is plenty.
pub const PREDICTION_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The largest body read and dropped so that a 429 keeps its connection open.
pub const DRAIN_MAX: usize = 64 * 1024;

/// The prediction slots of one server. Cloning is shallow.
#[derive(Clone, Debug)]
pub struct PredictionSlots {
    semaphore: Arc<Semaphore>,
    max: usize,
}

impl PredictionSlots {
    /// `max` slots, all free.
    #[must_use]
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Predictions being served now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.max - self.semaphore.available_permits()
    }
}

/// Middleware of the prediction routes: serves the request while it holds a slot (until its
/// response is made), or answers 429 at once when there is none.
#[derive(Clone, Debug)]
pub(crate) struct LimitPredictions {
    pub slots: PredictionSlots,
    pub metrics: Metrics,
}

impl Gate for LimitPredictions {
    type Kept = OwnedSemaphorePermit;

    fn before(&self, request: Request) -> Result<(Self::Kept, Request), Reply> {
        if let Ok(slot) = Arc::clone(&self.slots.semaphore).try_acquire_owned() {
            return Ok((slot, request));
        }
        self.metrics.prediction_rejected();
        let max = self.slots.max;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_counts_taken_slots() {
        let slots = PredictionSlots::new(2);
        assert_eq!(slots.in_flight(), 0);
        let one = Arc::clone(&slots.semaphore)
            .try_acquire_owned()
            .expect("a slot");
        let _two = Arc::clone(&slots.semaphore)
            .try_acquire_owned()
            .expect("a slot");
        assert_eq!(slots.in_flight(), 2);
        assert!(Arc::clone(&slots.semaphore).try_acquire_owned().is_err());
        drop(one);
        assert_eq!(slots.in_flight(), 1);
    }
}
