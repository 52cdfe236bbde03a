//! The errors of the layers below, as [`ApiError`]s (and, for predictions, as the Open
//! Inference Protocol's [`V2Error`]s): the other half of the one mapping to HTTP (the statuses
//! themselves are in [`super`]).

use super::v2::V2Error;
use super::ApiError;
use crate::config::Limit;
use crate::experiments::ExperimentError;
use crate::http::error::{PREDICTION_RETRY_AFTER, STORE_RETRY_AFTER, SUBSCRIBER_RETRY_AFTER};
use crate::jobs::{JobError, RETRY_AFTER};
use crate::nn::NnError;
use crate::registry::RegistryError;
use crate::serving::ServingError;
use crate::store::StoreError;

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
            RegistryError::Store(error @ StoreError::Unavailable(_)) => {
                ApiError::StoreUnavailable {
                    retry_after: STORE_RETRY_AFTER,
                    cause: error.into(),
                }
            }
            RegistryError::Store(error) => match error.no_room() {
                Some(room) => ApiError::InsufficientStorage {
                    room,
                    cause: error.into(),
                },
                None => ApiError::internal(error),
            },
            error @ RegistryError::Corrupt { .. } => ApiError::internal(error),
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
            JobError::TooManySubscribers { max, job } => ApiError::TooManySubscribers {
                max,
                job,
                retry_after: SUBSCRIBER_RETRY_AFTER,
            },
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

/// `/v1`'s answers: those the registry gives for the same lookups (409 for a model without a
/// trained version, 404 for a version it does not have, 409 for one that cannot be loaded).
impl From<ServingError> for ApiError {
    fn from(error: ServingError) -> Self {
        match error {
            ServingError::Registry(error) => error.into(),
            ServingError::VersionUnavailable {
                model,
                version,
                reason,
            } => RegistryError::Unavailable {
                what: "version",
                id: format!("{model}/versions/{version}"),
                reason,
            }
            .into(),
            ServingError::NotTrained { model }
            | ServingError::NoSuchVersion {
                model,
                trained: false,
                ..
            } => RegistryError::NotTrained(model).into(),
            ServingError::NoSuchVersion { asked, version, .. } => RegistryError::NotFound {
                what: "version",
                id: format!("{asked}/versions/{version}"),
            }
            .into(),
            ServingError::TooManyRows { max, given } => {
                ApiError::limit_exceeded("inputs", Limit::PredictRows, max, given)
            }
            ServingError::Invalid { field, message } => ApiError::validation(field, message),
            ServingError::Nn(error) => error.into(),
            ServingError::Busy { slots, queue, .. } => ApiError::TooManyPredictions {
                max: slots,
                queue,
                retry_after: PREDICTION_RETRY_AFTER,
            },
            ServingError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

/// The Open Inference Protocol's answers: a version that cannot serve (none trained yet, or
/// its files unreadable) is "not ready", which Triton answers with 400; one that does not
/// exist is 404.
impl From<ServingError> for V2Error {
    fn from(error: ServingError) -> Self {
        match error {
            ServingError::VersionUnavailable {
                model,
                version,
                reason,
            } => V2Error::bad_request(format!(
                "version {version} of model '{model}' is not ready: its stored files cannot be \
                 loaded ({reason})"
            )),
            ServingError::NotTrained { model } => V2Error::bad_request(format!(
                "model '{model}' has no trained version yet, so it is not ready; train it with \
                 POST /v1/jobs"
            )),
            ServingError::NoSuchVersion { model, version, .. } => {
                V2Error::not_found(format!("model '{model}' has no version '{version}'"))
            }
            other => ApiError::from(other).into(),
        }
    }
}
