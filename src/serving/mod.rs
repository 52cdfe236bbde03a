//! The prediction engine: from (model, version selector, rows) to outputs, with no HTTP in it.
//!
//! [`Predictor`] is the one place that decides where a prediction is computed:
//! - requests of a few rows for a model that gains from it join the [`batching`] queue, so
//!   that those that arrive together share one product (`--batch-predictions`);
//! - other requests of up to [`INLINE_ROWS`](dispatch::INLINE_ROWS) rows are computed right on the async worker
//!   (a row takes microseconds, less than a hand-off to another thread);
//! - larger ones go to the blocking pool, so that no worker thread stalls the connections it
//!   serves.
//!
//! Prediction never waits on training: the version's `Arc<Model>` is cloned out of the
//! registry (whose lock is released at once) before anything is computed. [`admission`] holds
//! the slots that bound how many predictions are served at once. [`labels`] names the
//! outputs' columns and the predicted classes. The `/v1` predict and `/v2` infer handlers
//! decode a body, call a [`Predictor`] and encode its answer; the statuses of
//! [`ServingError`] are decided in `http`, the only layer that knows HTTP.

pub mod admission;
mod batching;
pub mod dispatch;
pub mod error;
pub mod inputs;
pub mod labels;
pub mod predictor;
pub mod stats;

pub use admission::PredictionSlots;
pub use error::ServingError;
pub use inputs::Inputs;
pub use predictor::{Predictor, Selector};
pub use stats::Stats;
