//! `/v1/jobs`: start training, list, show, retry, cancel. The metric history is in
//! [`super::history`], live events in [`super::events`].
//!
//! A training request is flat (DESIGN.md "Training request"): `model`, `dataset` and
//! `warm_start` are taken out of the object and the rest is the `nn::TrainConfig`, parsed
//! with unknown fields refused, so `{"status": "succeeded"}` is a 422 naming `status`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::blocking::blocking;
use super::datasets::{register_json, DatasetRequest};
use super::error::ApiError;
use super::extract::{from_json_value, AppJson, AppPath, AppQuery};
use super::state::AppState;
use super::views::{page_bounds, PageView};
use crate::jobs::{JobRecord, JobState, NewJob, WarmStart};
use crate::nn::TrainConfig;
use crate::registry::DatasetEntry;

/// `?status=&model=&limit=&offset=` of the job listing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// Only jobs in this state.
    pub status: Option<JobState>,
    /// Only jobs of this model (id or name).
    pub model: Option<String>,
    /// Items a page.
    pub limit: Option<usize>,
    /// Items to skip.
    pub offset: Option<usize>,
}

fn take_string(body: &mut Map<String, Value>, field: &str, what: &str) -> Result<Value, ApiError> {
    body.remove(field)
        .ok_or_else(|| ApiError::validation(field, format!("missing field `{field}`: {what}")))
}

pub(super) async fn dataset_of(
    state: &AppState,
    value: Value,
) -> Result<Arc<DatasetEntry>, ApiError> {
    match value {
        Value::String(id) => {
            let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("dataset", id))?;
            Ok(state.registry.dataset(id)?)
        }
        Value::Object(_) => {
            let request: DatasetRequest =
                from_json_value(value).map_err(|e| prefix("dataset", e))?;
            let (registry, limits) = (Arc::clone(&state.registry), state.config.limits.clone());
            blocking(move || {
                register_json(&registry, request, &limits).map_err(|e| prefix("dataset", e))
            })
            .await
        }
        _ => Err(ApiError::validation(
            "dataset",
            "expected a dataset id or an inline dataset object",
        )),
    }
}

/// Puts `outer.` in front of the fields of a validation error.
pub(super) fn prefix(outer: &str, error: ApiError) -> ApiError {
    match error {
        ApiError::Validation { mut errors } => {
            for e in &mut errors {
                e.field = if e.field.is_empty() {
                    outer.to_owned()
                } else {
                    format!("{outer}.{}", e.field)
                };
            }
            ApiError::Validation { errors }
        }
        other => other,
    }
}

/// `POST /v1/jobs`
pub(crate) async fn create(
    State(state): State<AppState>,
    AppJson(body): AppJson<Value>,
) -> Result<Response, ApiError> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::validation("", "expected a JSON object"));
    };
    let model = take_string(&mut body, "model", "the id or name of the model to train")?;
    let dataset = take_string(&mut body, "dataset", "a dataset id or an inline dataset")?;
    let warm_start: Option<WarmStart> = match body.remove("warm_start") {
        None | Some(Value::Null) => None,
        Some(v) => Some(from_json_value(v).map_err(|e| prefix("warm_start", e))?),
    };
    let config: TrainConfig = from_json_value(Value::Object(body))?;
    let Value::String(model) = model else {
        return Err(ApiError::validation(
            "model",
            "expected the id or name of a model",
        ));
    };
    let model = state.registry.model(&model)?;
    let dataset = dataset_of(&state, dataset).await?;
    let record = state
        .jobs
        .submit(NewJob {
            model,
            dataset,
            config,
            warm_start,
        })
        .await?;
    Ok(accepted(record))
}

/// `GET /v1/jobs`
pub(crate) async fn list(
    State(state): State<AppState>,
    AppQuery(q): AppQuery<JobsQuery>,
) -> Result<AppJson<PageView<JobRecord>>, ApiError> {
    let (offset, limit) = page_bounds(q.limit, q.offset, &state.config.limits)?;
    let model = match q.model {
        Some(m) => Some(state.registry.model(&m)?.record.id),
        None => None,
    };
    let page = state.jobs.list(q.status, model, offset, limit);
    Ok(AppJson(PageView::new(
        page.items, page.total, offset, limit,
    )))
}

/// `GET /v1/jobs/{id}`
pub(crate) async fn show(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
) -> Result<AppJson<JobRecord>, ApiError> {
    Ok(AppJson(state.jobs.get(id)?.record()))
}

/// `POST /v1/jobs/{id}/retry`: a new job identical to a finished one that did not succeed.
pub(crate) async fn retry(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Response, ApiError> {
    let record = state.jobs.retry(id).await?;
    Ok(accepted(record))
}

/// `POST /v1/jobs/{id}/cancel`
pub(crate) async fn cancel(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
) -> Result<AppJson<JobRecord>, ApiError> {
    Ok(AppJson(state.jobs.cancel(id).await?))
}

/// 202 with the new job and its `Location`.
fn accepted(record: JobRecord) -> Response {
    let location = format!("/v1/jobs/{}", record.id);
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        AppJson(record),
    )
        .into_response()
}
