//! The one place that knows HTTP status codes: [`ApiError`] and its `application/problem+json`
//! rendering (RFC 9457).
//!
//! Layers below `http` have their own error enums; each gets a `From` impl here (or a `map_err`
//! in its handler) so that a handler can `?` them. Every error body looks like
//!
//! ```json
//! { "type": "urn:mlp-lab:problem:validation_failed", "title": "Validation failed",
//!   "status": 422, "detail": "…", "code": "validation_failed",
//!   "errors": [{ "field": "layers[1]", "message": "…" }] }
//! ```
//!
//! `code` is the stable, machine-readable part; `detail` is for people and may change.
//!
//! | code                     | status | variant                                              |
//! |--------------------------|--------|------------------------------------------------------|
//! | `malformed_json`         | 400    | [`ApiError::MalformedJson`]                          |
//! | `unauthorized`           | 401    | [`ApiError::Unauthorized`] (`WWW-Authenticate` set)  |
//! | `forbidden`              | 403    | [`ApiError::Forbidden`] (`WWW-Authenticate` set)     |
//! | `bad_request` (or other) | 400    | [`ApiError::BadRequest`]                             |
//! | `not_found`              | 404    | [`ApiError::NotFound`], [`ApiError::InvalidPath`]    |
//! | `route_not_found`        | 404    | [`ApiError::RouteNotFound`]                          |
//! | `method_not_allowed`     | 405    | [`ApiError::MethodNotAllowed`] (`Allow` kept)        |
//! | `timeout`                | 408    | [`ApiError::Timeout`]                                |
//! | `model_not_trained`, `job_finished`, `name_taken`, … | 409 | [`ApiError::Conflict`]     |
//! | `payload_too_large`      | 413    | [`ApiError::PayloadTooLarge`]                        |
//! | `limit_exceeded`         | 413    | [`ApiError::LimitExceeded`] of a body-size limit     |
//! | `unsupported_media_type` | 415    | [`ApiError::UnsupportedMediaType`]                   |
//! | `validation_failed`      | 422    | [`ApiError::Validation`]                             |
//! | `limit_exceeded`         | 422    | [`ApiError::LimitExceeded`] of any other limit       |
//! | `headers_too_large`      | 431    | [`ApiError::HeadersTooLarge`]                        |
//! | `queue_full`             | 429    | [`ApiError::QueueFull`] (`Retry-After` set)          |
//! | `too_many_predictions`   | 429    | [`ApiError::TooManyPredictions`] (`Retry-After` set) |
//! | `too_many_subscribers`   | 429    | [`ApiError::TooManySubscribers`] (`Retry-After` set) |
//! | `too_many_imports`       | 429    | [`ApiError::TooManyImports`] (`Retry-After` set)     |
//! | `internal`               | 500    | [`ApiError::Internal`] (cause logged, never sent)    |
//! | `unavailable`            | 503    | [`ApiError::Unavailable`]                            |
//! | `store_unavailable`      | 503    | [`ApiError::StoreUnavailable`] (`Retry-After`; logged) |
//! | `insufficient_storage`   | 507    | [`ApiError::InsufficientStorage`] (cause logged)     |
//! | from the status          | any    | [`ApiError::Status`]: a bare error response rewritten |

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::config::{ByteSize, Limit};
use crate::store::NoRoom;

mod map;
pub mod v2;

/// What a client refused a prediction is told to wait: predictions take milliseconds, so one
/// second (the least `Retry-After` can say) is plenty.
pub const PREDICTION_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a client refused an event stream is told to wait: a slot frees when another
/// subscriber leaves, which takes as long as a person watching a job does.
pub const SUBSCRIBER_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What a client refused a weights import is told to wait: a slot frees when another import
/// is read and stored, a second or so for all but the largest files.
pub const IMPORT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a client whose request met an unreachable store (a database that is down) is told to
/// wait: a database restart or fail-over takes seconds.
pub const STORE_RETRY_AFTER: Duration = Duration::from_secs(5);

pub use v2::{is_v2_path, V2Error};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The prefix of every problem `type`; the code follows it.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:mlp-lab:problem:";

/// One invalid value in a request: where it is and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Path of the value in the request, e.g. `layers[1]` or `optimizer.kind`; empty for the
    /// body as a whole.
    pub field: String,
    /// What is wrong, for people.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document, as sent in every error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:mlp-lab:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short summary, the same for every problem with this code.
    pub title: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// What went wrong this time, for people.
    pub detail: String,
    /// The stable, machine-readable code.
    pub code: String,
    /// The invalid values, for validation failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Every way a request can fail, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// One or more values in the request are invalid (422).
    #[error("validation failed: {}", summarize(errors))]
    Validation {
        /// The invalid values.
        errors: Vec<FieldError>,
    },

    /// The body is not JSON (400); `detail` is the parser's message with line and column.
    #[error("malformed JSON: {detail}")]
    MalformedJson {
        /// The parser's message.
        detail: String,
    },

    /// The request cannot be understood for another reason (400).
    #[error("bad request ({code}): {detail}")]
    BadRequest {
        /// Machine-readable code.
        code: &'static str,
        /// What is wrong.
        detail: String,
    },

    /// The body has a media type this route does not accept (415).
    #[error("unsupported media type {given:?}, expected {expected}")]
    UnsupportedMediaType {
        /// What the route accepts, e.g. `application/json`.
        expected: &'static str,
        /// The `Content-Type` that was sent, if any.
        given: Option<String>,
    },

    /// A body with a `Content-Encoding` (gzip, …): the server decodes none (415, RFC 7694).
    #[error("unsupported content encoding {given:?}")]
    UnsupportedContentEncoding {
        /// The `Content-Encoding` that was sent.
        given: String,
    },

    /// The body is larger than the route allows (413).
    #[error("payload too large")]
    PayloadTooLarge {
        /// The limit that was hit and its value, when known.
        limit: Option<(Limit, ByteSize)>,
    },

    /// No such resource (404).
    #[error("no {what} '{id}'")]
    NotFound {
        /// The kind of resource: `model`, `job`, `dataset`, `version`.
        what: &'static str,
        /// The id or name that was asked for.
        id: String,
    },

    /// A path parameter cannot name anything that exists, e.g. a job id that is no UUID (404).
    #[error("invalid path: {detail}")]
    InvalidPath {
        /// Which parameter and why.
        detail: String,
    },

    /// No route has this path (404).
    #[error("no route {method} {path}")]
    RouteNotFound {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
    },

    /// The route exists but not for this method (405). The router sets `Allow`.
    #[error("method {method} not allowed")]
    MethodNotAllowed {
        /// The request method.
        method: Method,
    },

    /// The request conflicts with the resource's state (409).
    #[error("conflict ({code}): {detail}")]
    Conflict {
        /// `model_not_trained`, `job_finished`, `name_taken`, …
        code: &'static str,
        /// What the conflict is.
        detail: String,
    },

    /// The job queue is full (429); the client may retry after the given time.
    #[error("queue full")]
    QueueFull {
        /// Sent as `Retry-After`, rounded up to whole seconds.
        retry_after: Duration,
    },

    /// Every prediction slot is taken and the queue is full, or a wait for a slot ran out
    /// (429); the client may retry after the given time.
    #[error("too many predictions at once")]
    TooManyPredictions {
        /// Predictions computed at once.
        max: usize,
        /// Predictions that may wait.
        queue: usize,
        /// Sent as `Retry-After`, rounded up to whole seconds.
        retry_after: Duration,
    },

    /// As many clients follow job events as a cap allows (429); the client may retry after
    /// the given time.
    #[error("too many event subscribers")]
    TooManySubscribers {
        /// The cap in force.
        max: usize,
        /// The job whose own cap (`--max-event-subscribers-per-job`) was hit; `None` for the
        /// cap over all jobs (`--max-event-subscribers`).
        job: Option<uuid::Uuid>,
        /// Sent as `Retry-After`, rounded up to whole seconds.
        retry_after: Duration,
    },

    /// As many weights imports are being read as `--max-concurrent-imports` allows (429); the
    /// client may retry after the given time.
    #[error("too many weights imports at once")]
    TooManyImports {
        /// The cap in force.
        max: usize,
        /// Sent as `Retry-After`, rounded up to whole seconds.
        retry_after: Duration,
    },

    /// The request line and headers are larger than `--max-header-bytes` (431).
    #[error("request headers too large: {given} bytes")]
    HeadersTooLarge {
        /// The limit in force.
        max: ByteSize,
        /// The size of the request's line and headers.
        given: usize,
    },

    /// A value exceeds a configured limit (413 for body sizes, otherwise 422).
    #[error("{field}: {given} exceeds the limit of {max} ({limit})")]
    LimitExceeded {
        /// Path of the value, as in [`FieldError::field`].
        field: String,
        /// The limit that was hit.
        limit: Limit,
        /// The limit's value in force.
        max: String,
        /// The value that was asked for.
        given: String,
    },

    /// The route needs a bearer token and none, or a wrong one, was given (401).
    #[error("unauthorized: {detail}")]
    Unauthorized {
        /// What was wrong with the credentials, for people.
        detail: String,
        /// The `WWW-Authenticate` challenge (RFC 6750).
        challenge: String,
    },

    /// A valid token whose scope does not cover the route (403).
    #[error("forbidden: {detail}")]
    Forbidden {
        /// Which scope the route needs.
        detail: String,
        /// The `WWW-Authenticate` challenge (RFC 6750 `insufficient_scope`).
        challenge: String,
    },

    /// The request took longer than the server waits (408).
    #[error("request timed out")]
    Timeout,

    /// The service cannot answer now: starting, shutting down (503).
    #[error("unavailable: {detail}")]
    Unavailable {
        /// Why, for people.
        detail: String,
    },

    /// The store cannot be reached now (503): a database that is down or does not answer.
    /// Nothing was stored; the client may retry after the given time. The cause is logged.
    #[error("store unavailable: {cause}")]
    StoreUnavailable {
        /// Sent as `Retry-After`, rounded up to whole seconds.
        retry_after: Duration,
        /// The store's error, for the log.
        #[source]
        cause: Box<dyn StdError + Send + Sync>,
    },

    /// A bug or an environment failure (500). The cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),

    /// The store had no room for a write (507): a full disk, a used-up quota, a file over
    /// the size limit. Nothing was stored; the kind of cause is sent, the cause itself (with
    /// the file) logged.
    #[error("insufficient storage ({}): {cause}", room.errno())]
    InsufficientStorage {
        /// What kind of room was missing.
        room: NoRoom,
        /// The store's error, for the log.
        #[source]
        cause: Box<dyn StdError + Send + Sync>,
    },

    /// Any other error status, made from a bare response that some layer produced.
    #[error("{status}: {detail}")]
    Status {
        /// The status the layer chose.
        status: StatusCode,
        /// What the layer said, or the reason phrase.
        detail: String,
    },
}

fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            if e.field.is_empty() {
                e.message.clone()
            } else {
                format!("{}: {}", e.field, e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    /// A validation failure of one field.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            errors: vec![FieldError::new(field, message)],
        }
    }

    /// A validation failure of several fields.
    #[must_use]
    pub fn validation_all(errors: Vec<FieldError>) -> Self {
        Self::Validation { errors }
    }

    /// No `what` with this id or name.
    pub fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            what,
            id: id.into(),
        }
    }

    /// A conflict with the resource's state; `code` is e.g. `model_not_trained`.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }

    /// The job queue is full; retry after `retry_after`.
    #[must_use]
    pub fn queue_full(retry_after: Duration) -> Self {
        Self::QueueFull { retry_after }
    }

    /// `field` asks for `given`, over `limit`, whose value in force is `max`.
    pub fn limit_exceeded(
        field: impl Into<String>,
        limit: Limit,
        max: impl fmt::Display,
        given: impl fmt::Display,
    ) -> Self {
        Self::LimitExceeded {
            field: field.into(),
            limit,
            max: max.to_string(),
            given: given.to_string(),
        }
    }

    /// The service cannot answer now.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::Unavailable {
            detail: detail.into(),
        }
    }

    /// An unexpected failure; `cause` is logged when the response is made, never sent.
    pub fn internal(cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Internal(cause.into())
    }

    /// The HTTP status of this error.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MalformedJson { .. } | Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType { .. } | Self::UnsupportedContentEncoding { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound { .. } | Self::InvalidPath { .. } | Self::RouteNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::QueueFull { .. }
            | Self::TooManyPredictions { .. }
            | Self::TooManySubscribers { .. }
            | Self::TooManyImports { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::LimitExceeded { limit, .. } if limit.is_body_size() => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::LimitExceeded { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable { .. } | Self::StoreUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::InsufficientStorage { .. } => StatusCode::INSUFFICIENT_STORAGE,
            Self::Status { status, .. } => *status,
        }
    }

    /// The stable, machine-readable code of this error.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "validation_failed",
            Self::MalformedJson { .. } => "malformed_json",
            Self::BadRequest { code, .. } | Self::Conflict { code, .. } => code,
            Self::UnsupportedMediaType { .. } | Self::UnsupportedContentEncoding { .. } => {
                "unsupported_media_type"
            }
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::NotFound { .. } | Self::InvalidPath { .. } => "not_found",
            Self::RouteNotFound { .. } => "route_not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::QueueFull { .. } => "queue_full",
            Self::TooManyPredictions { .. } => "too_many_predictions",
            Self::TooManySubscribers { .. } => "too_many_subscribers",
            Self::TooManyImports { .. } => "too_many_imports",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::LimitExceeded { .. } => "limit_exceeded",
            Self::Timeout => "timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::StoreUnavailable { .. } => "store_unavailable",
            Self::Internal(_) => "internal",
            Self::InsufficientStorage { .. } => "insufficient_storage",
            Self::Status { status, .. } => status_code_name(*status),
        }
    }

    fn title(&self) -> Cow<'static, str> {
        let title = match self {
            Self::Validation { .. } => "Validation failed",
            Self::MalformedJson { .. } => "Malformed JSON",
            Self::BadRequest { .. } => "Bad request",
            Self::UnsupportedMediaType { .. } | Self::UnsupportedContentEncoding { .. } => {
                "Unsupported media type"
            }
            Self::PayloadTooLarge { .. } => "Payload too large",
            Self::NotFound { .. } | Self::InvalidPath { .. } => "Not found",
            Self::RouteNotFound { .. } => "No such route",
            Self::MethodNotAllowed { .. } => "Method not allowed",
            Self::Conflict { .. } => "Conflict",
            Self::QueueFull { .. } => "Queue full",
            Self::TooManyPredictions { .. } => "Too many predictions",
            Self::TooManySubscribers { .. } => "Too many subscribers",
            Self::TooManyImports { .. } => "Too many imports",
            Self::HeadersTooLarge { .. } => "Request headers too large",
            Self::Unauthorized { .. } => "Unauthorized",
            Self::Forbidden { .. } => "Forbidden",
            Self::LimitExceeded { .. } => "Limit exceeded",
            Self::Timeout => "Request timed out",
            Self::Unavailable { .. } => "Service unavailable",
            Self::StoreUnavailable { .. } => "Store unavailable",
            Self::Internal(_) => "Internal server error",
            Self::InsufficientStorage { .. } => "Insufficient storage",
            Self::Status { status, .. } => {
                return Cow::Borrowed(status.canonical_reason().unwrap_or("Error"));
            }
        };
        Cow::Borrowed(title)
    }

    fn detail(&self) -> String {
        match self {
            Self::Validation { errors } => match errors.as_slice() {
                [one] if one.field.is_empty() => format!("the request body is invalid: {}", one.message),
                [one] => format!("`{}` is invalid: {}", one.field, one.message),
                many => format!("{} values in the request are invalid", many.len()),
            },
            Self::MalformedJson { detail } => format!("the body is not valid JSON: {detail}"),
            Self::BadRequest { detail, .. }
            | Self::InvalidPath { detail }
            | Self::Conflict { detail, .. }
            | Self::Unavailable { detail }
            | Self::Unauthorized { detail, .. }
            | Self::Forbidden { detail, .. }
            | Self::Status { detail, .. } => detail.clone(),
            Self::UnsupportedMediaType { expected, given } => match given {
                Some(given) => format!("expected a body of type {expected}, got {given}"),
                None => format!("expected a body of type {expected}; set the Content-Type header"),
            },
            Self::UnsupportedContentEncoding { given } => format!(
                "the body has Content-Encoding {given}, which the server does not decode; send it \
                 uncompressed"
            ),
            Self::PayloadTooLarge { limit: Some((limit, max)) } => format!(
                "the request body is larger than the {} limit of {max} for this route; raise it with {limit}",
                limit.describe()
            ),
            Self::PayloadTooLarge { limit: None } => {
                "the request body is larger than this route accepts".to_owned()
            }
            Self::NotFound { what, id } => format!("no {what} '{id}'"),
            Self::RouteNotFound { method, path } => {
                format!("no route {method} {path}; GET /openapi.yaml lists the routes")
            }
            Self::MethodNotAllowed { method } => format!(
                "{method} is not allowed on this route; the Allow header lists the methods that are"
            ),
            Self::QueueFull { retry_after } => format!(
                "the training queue is full; retry in {} s",
                retry_after_secs(*retry_after)
            ),
            Self::TooManyPredictions {
                max,
                queue,
                retry_after,
            } => format!(
                "the server is saturated: {max} predictions are being computed \
                 (--max-concurrent-predictions) and {queue} may wait for a slot \
                 (--max-queued-predictions), for at most --max-prediction-wait-ms; retry in {} s",
                retry_after_secs(*retry_after)
            ),
            Self::TooManySubscribers {
                max,
                job: Some(job),
                retry_after,
            } => format!(
                "{max} clients follow the events of job {job} already, the most \
                 --max-event-subscribers-per-job / MLP_LAB_MAX_EVENT_SUBSCRIBERS_PER_JOB allows; \
                 retry in {} s",
                retry_after_secs(*retry_after)
            ),
            Self::TooManySubscribers {
                max,
                job: None,
                retry_after,
            } => format!(
                "{max} clients follow job events already, the most --max-event-subscribers / \
                 MLP_LAB_MAX_EVENT_SUBSCRIBERS allows; retry in {} s",
                retry_after_secs(*retry_after)
            ),
            Self::TooManyImports { max, retry_after } => format!(
                "{max} weights imports are being read already, the most \
                 --max-concurrent-imports / MLP_LAB_MAX_CONCURRENT_IMPORTS allows; retry in {} s",
                retry_after_secs(*retry_after)
            ),
            Self::HeadersTooLarge { max, given } => format!(
                "the request line and headers take {given} bytes, over the limit of {max}; send \
                 fewer or shorter headers, or raise it with --max-header-bytes / \
                 MLP_LAB_MAX_HEADER_BYTES"
            ),
            Self::LimitExceeded {
                field,
                limit,
                max,
                given,
            } => format!(
                "`{field}` asks for {given}, over the limit of {max} {}; raise it with {limit}",
                limit.describe()
            ),
            Self::Timeout => "the request took longer than the server waits".to_owned(),
            Self::Internal(_) => {
                "the server failed to answer this request; the cause is in its log under this request's x-request-id"
                    .to_owned()
            }
            Self::StoreUnavailable { retry_after, .. } => format!(
                "the server cannot reach its store (its database) now; nothing was stored. Retry \
                 in {} s",
                retry_after_secs(*retry_after)
            ),
            Self::InsufficientStorage { room, .. } => format!(
                "the server has no room to store this: {} ({}); nothing was stored. Retry once \
                 room is made; the server's log has the details under this request's x-request-id",
                room.describe(),
                room.errno()
            ),
        }
    }

    /// The problem document of this error, as it would be sent.
    #[must_use]
    pub fn to_problem(&self) -> Problem {
        let code = self.code();
        let errors = match self {
            Self::Validation { errors } => errors.clone(),
            Self::LimitExceeded { field, .. } => {
                vec![FieldError::new(field.clone(), self.detail())]
            }
            _ => Vec::new(),
        };
        Problem {
            type_: format!("{PROBLEM_TYPE_PREFIX}{code}"),
            title: self.title().into_owned(),
            status: self.status().as_u16(),
            detail: self.detail(),
            code: code.to_owned(),
            errors,
        }
    }

    /// The error that stands for a bare error response (one that is not problem+json) made by
    /// a layer outside our handlers: axum's own 404/405, tower-http's 408/413, a stray 500.
    /// `text` is the response's text body, used only for 4xx.
    #[must_use]
    pub fn from_bare_response(
        status: StatusCode,
        method: Method,
        path: String,
        text: Option<String>,
    ) -> Self {
        let text = text.filter(|t| !t.trim().is_empty() && status.is_client_error());
        match status {
            StatusCode::NOT_FOUND => Self::RouteNotFound { method, path },
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed { method },
            StatusCode::REQUEST_TIMEOUT => Self::Timeout,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge { limit: None },
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::Status {
                status,
                detail: text.unwrap_or_else(|| {
                    "this route does not accept the body's media type".to_owned()
                }),
            },
            StatusCode::INTERNAL_SERVER_ERROR => {
                Self::internal(format!("a layer answered {method} {path} with a bare 500"))
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                Self::unavailable("the service cannot answer now; retry later")
            }
            _ => Self::Status {
                status,
                detail: text.unwrap_or_else(|| {
                    status
                        .canonical_reason()
                        .unwrap_or("the request failed")
                        .to_owned()
                }),
            },
        }
    }
}

pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    // Retry-After is whole seconds; rounding down to 0 would invite an immediate retry.
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

fn status_code_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "timeout",
        409 => "conflict",
        410 => "gone",
        411 => "length_required",
        412 => "precondition_failed",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        416 => "range_not_satisfiable",
        422 => "unprocessable",
        429 => "too_many_requests",
        431 => "headers_too_large",
        500 => "internal",
        501 => "not_implemented",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "gateway_timeout",
        507 => "insufficient_storage",
        _ if status.is_client_error() => "client_error",
        _ => "server_error",
    }
}

/// The cause and its sources, for the log: `a: b: c`.
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(cause) => {
                tracing::error!(error = %error_chain(cause.as_ref()), "internal error");
            }
            Self::InsufficientStorage { cause, .. } => {
                tracing::error!(error = %error_chain(cause.as_ref()), "no room to store a write");
            }
            Self::StoreUnavailable { cause, .. } => {
                tracing::error!(error = %error_chain(cause.as_ref()), "the store cannot be reached");
            }
            _ => {}
        }
        let problem = self.to_problem();
        let status = self.status();
        let body = match serde_json::to_vec(&problem) {
            Ok(body) => body,
            // Serializing strings and numbers cannot fail; still, never panic here.
            Err(_) => br#"{"type":"urn:mlp-lab:problem:internal","title":"Internal server error","status":500,"detail":"","code":"internal"}"#.to_vec(),
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            Self::QueueFull { retry_after }
            | Self::TooManyPredictions { retry_after, .. }
            | Self::TooManySubscribers { retry_after, .. }
            | Self::TooManyImports { retry_after, .. }
            | Self::StoreUnavailable { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(retry_after)),
                );
            }
            Self::Unauthorized { challenge, .. } | Self::Forbidden { challenge, .. } => {
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem_of(error: ApiError) -> (StatusCode, Problem, Response) {
        let status = error.status();
        let problem = error.to_problem();
        (status, problem, error.into_response())
    }

    #[test]
    fn every_code_has_the_status_of_the_table() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                ApiError::validation("layers[1]", "must be ≥ 1"),
                422,
                "validation_failed",
            ),
            (
                ApiError::MalformedJson { detail: "x".into() },
                400,
                "malformed_json",
            ),
            (
                ApiError::UnsupportedMediaType {
                    expected: "application/json",
                    given: None,
                },
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::PayloadTooLarge { limit: None },
                413,
                "payload_too_large",
            ),
            (ApiError::not_found("model", "m"), 404, "not_found"),
            (
                ApiError::RouteNotFound {
                    method: Method::GET,
                    path: "/x".into(),
                },
                404,
                "route_not_found",
            ),
            (
                ApiError::MethodNotAllowed {
                    method: Method::PUT,
                },
                405,
                "method_not_allowed",
            ),
            (
                ApiError::conflict("model_not_trained", "no version"),
                409,
                "model_not_trained",
            ),
            (
                ApiError::queue_full(Duration::from_secs(5)),
                429,
                "queue_full",
            ),
            (
                ApiError::TooManySubscribers {
                    max: 64,
                    job: None,
                    retry_after: Duration::from_secs(5),
                },
                429,
                "too_many_subscribers",
            ),
            (
                ApiError::limit_exceeded("layers", Limit::Layers, 64, 70),
                422,
                "limit_exceeded",
            ),
            (
                ApiError::limit_exceeded("", Limit::BodyBytes, "1MiB", "2MiB"),
                413,
                "limit_exceeded",
            ),
            (
                ApiError::Unauthorized {
                    detail: "no token".into(),
                    challenge: "Bearer".into(),
                },
                401,
                "unauthorized",
            ),
            (
                ApiError::Forbidden {
                    detail: "wrong scope".into(),
                    challenge: "Bearer".into(),
                },
                403,
                "forbidden",
            ),
            (ApiError::Timeout, 408, "timeout"),
            (ApiError::unavailable("starting"), 503, "unavailable"),
            (ApiError::internal("disk on fire"), 500, "internal"),
            (
                ApiError::InsufficientStorage {
                    room: NoRoom::Device,
                    cause: "full".into(),
                },
                507,
                "insufficient_storage",
            ),
        ];
        for (error, status, code) in cases {
            let (s, problem, response) = problem_of(error);
            assert_eq!(s.as_u16(), status, "{code}");
            assert_eq!(problem.status, status);
            assert_eq!(problem.code, code);
            assert_eq!(problem.type_, format!("urn:mlp-lab:problem:{code}"));
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        }
    }

    #[test]
    fn internal_errors_say_nothing_of_their_cause() {
        let (_, problem, _) =
            problem_of(ApiError::internal("/var/lib/secret.db: permission denied"));
        assert!(!problem.detail.contains("secret"), "{}", problem.detail);
    }

    #[test]
    fn a_full_disk_names_the_cause_but_not_the_file() {
        let full = crate::registry::RegistryError::Store(crate::store::StoreError::Io {
            key: "datasets/0190.json".into(),
            source: std::io::Error::from(std::io::ErrorKind::QuotaExceeded),
        });

        let (status, problem, _) = problem_of(full.into());

        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
        assert!(problem.detail.contains("EDQUOT"), "{}", problem.detail);
        assert!(problem.detail.contains("quota"), "{}", problem.detail);
        assert!(!problem.detail.contains("datasets/"), "{}", problem.detail);
    }

    #[test]
    fn an_unreachable_database_is_503_store_unavailable_with_retry_after_and_no_internals() {
        let gone = crate::registry::RegistryError::Store(crate::store::StoreError::Unavailable(
            "connection refused to db.internal:5432".into(),
        ));

        let (status, problem, response) = problem_of(gone.into());

        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(problem.code, "store_unavailable");
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert!(
            !problem.detail.contains("db.internal"),
            "{}",
            problem.detail
        );
    }

    #[test]
    fn a_full_queue_says_when_to_retry() {
        let (_, _, response) = problem_of(ApiError::queue_full(Duration::from_millis(1500)));
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let (_, _, response) = problem_of(ApiError::queue_full(Duration::ZERO));
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn a_limit_names_the_setting_that_raises_it() {
        let (_, problem, _) = problem_of(ApiError::limit_exceeded("layers", Limit::Layers, 64, 70));
        assert!(
            problem.detail.contains("--max-layers / MLP_LAB_MAX_LAYERS"),
            "{}",
            problem.detail
        );
        assert_eq!(problem.errors[0].field, "layers");
        let (_, problem, _) = problem_of(ApiError::PayloadTooLarge {
            limit: Some((Limit::PredictBodyBytes, ByteSize(8 << 20))),
        });
        assert!(problem.detail.contains("8MiB"), "{}", problem.detail);
        assert!(
            problem.detail.contains("--max-predict-body-bytes"),
            "{}",
            problem.detail
        );
    }

    #[test]
    fn validation_problems_list_their_fields_and_others_omit_the_list() {
        let json =
            serde_json::to_value(ApiError::validation("optimizer.kind", "unknown").to_problem())
                .expect("serializes");
        assert_eq!(json["errors"][0]["field"], "optimizer.kind");
        let json = serde_json::to_value(ApiError::Timeout.to_problem()).expect("serializes");
        assert!(json.get("errors").is_none());
    }
}
