//! The errors of the layers below, as [`ApiError`]s: the other half of the one mapping to
//! HTTP (the statuses themselves are in [`super::error`]).

use super::error::ApiError;
use crate::experiments::ExperimentError;
use crate::jobs::{JobError, RETRY_AFTER};
use crate::nn::NnError;
use crate::registry::RegistryError;

impl From<NnError> for ApiError {
    fn from(error: NnError) -> Self {
        match error {
            NnError::Invalid { field, message } => ApiError::validation(field, message),
            NnError::Shape {
                what,
                expected,
                got,
            } => ApiError::validation(what, format!("expected shape {expected:?}, got {got:?}")),
            NnError::BadValue {
                what,
                row,
                column,
                message,
            } => ApiError::validation(
                format!("{what}[{row}][{column}]"),
                format!("row {row}, column {column}: {message}"),
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::NotFound { what, id } => ApiError::not_found(what, id),
            RegistryError::NameTaken(name) => ApiError::conflict(
                "name_taken",
                format!("a model named '{name}' exists already; names are unique"),
            ),
            RegistryError::NotTrained(name) => ApiError::conflict(
                "model_not_trained",
                format!("model '{name}' has no trained version yet; train it with POST /v1/jobs"),
            ),
            RegistryError::Invalid { field, message } => ApiError::validation(field, message),
            RegistryError::Limit {
                field,
                limit,
                max,
                given,
            } => ApiError::LimitExceeded {
                field,
                limit,
                max,
                given,
            },
            RegistryError::Unavailable { what, id, reason } => {
                unavailable_object(what, &id, &reason)
            }
            RegistryError::Nn(error) => error.into(),
            error @ (RegistryError::Store(_) | RegistryError::Corrupt { .. }) => {
                ApiError::internal(error)
            }
        }
    }
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> Self {
        match error {
            JobError::NotFound(id) => ApiError::not_found("job", id),
            JobError::QueueFull { .. } => ApiError::queue_full(RETRY_AFTER),
            JobError::Finished { id, state } => ApiError::conflict(
                "job_finished",
                format!(
                    "job {id} is {} already and cannot be cancelled",
                    state.name()
                ),
            ),
            JobError::Unavailable { id, reason } => unavailable_object("job", &id.to_string(), &reason),
            JobError::NotFinished { id, state } => ApiError::conflict(
                "job_not_finished",
                format!(
                    "job {id} is still {}; only a finished job can be retried",
                    state.name()
                ),
            ),
            JobError::Succeeded { id, version } => ApiError::conflict(
                "job_succeeded",
                format!(
                    "job {id} succeeded and made version {version}; only a job that failed, was cancelled or was interrupted is retried (POST /v1/jobs with its `request` trains again)"
                ),
            ),
            JobError::SourceDeleted { what, id } => ApiError::conflict(
                match what {
                    "model" => "model_deleted",
                    "dataset" => "dataset_deleted",
                    _ => "version_deleted",
                },
                format!("the job cannot be retried: its {what} '{id}' was deleted"),
            ),
            JobError::ShuttingDown => {
                ApiError::unavailable("the service is shutting down and starts no more jobs")
            }
            JobError::Registry(error) => error.into(),
        }
    }
}

impl From<ExperimentError> for ApiError {
    fn from(error: ExperimentError) -> Self {
        match error {
            ExperimentError::NotFound(id) => ApiError::not_found("experiment", id),
            ExperimentError::Finished(id) => ApiError::conflict(
                "experiment_finished",
                format!("every job of experiment {id} is finished already; nothing to cancel"),
            ),
            ExperimentError::Registry(error) => error.into(),
            ExperimentError::Job(error) => error.into(),
        }
    }
}

/// A stored object that cannot be loaded (DESIGN.md "Storage"): 409, because the object
/// exists but its state (its stored files) keeps it from serving, as a model without a
/// trained version does; the reason names the problem (checksum, truncation, size, format)
/// and never a path of the server.
fn unavailable_object(what: &str, id: &str, reason: &str) -> ApiError {
    ApiError::conflict(
        "object_unavailable",
        format!("{what} '{id}' is stored but unavailable: {reason}. Its file is kept as it is; GET /v1/storage/unavailable lists every such object"),
    )
}

/// Runs CPU-heavy or blocking work (parsing a large upload, writing to the store, a large
/// prediction) on the blocking pool, keeping the request's span; a panic there is a 500 and
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
