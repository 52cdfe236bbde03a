//! CPU-heavy or blocking work of a handler (parsing a large upload, writing to the store,
//! drawing a plot) on Tokio's blocking pool, so that no worker thread stalls the connections
//! it serves.

use super::error::ApiError;

/// Runs `work` on the blocking pool, keeping the request's span; a panic there is a 500 and
/// the server keeps serving.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(ApiError::internal)?
}
