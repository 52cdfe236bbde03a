//! `/v1/experiments`: run a grid of model variants × seeds on one dataset, list, show with a
//! leaderboard, cancel. The work is in [`crate::experiments`]; this file parses and maps.
//!
//! The `dataset` is taken out of the body and resolved as `POST /v1/jobs` does (an id, or an
//! inline dataset that is registered); the rest is an [`ExperimentRequest`], checked before an
//! inline dataset is registered, so a refused grid leaves nothing behind.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{from_json_value, AppJson, AppPath, AppQuery};
use super::jobs::dataset_of;
use super::state::AppState;
use super::views::{created, page_bounds, PageQuery, PageView};
use crate::experiments::{ExperimentRequest, ExperimentSummary, ExperimentView};

/// `?sort=&order=` of an experiment's view.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewQuery {
    /// The leaderboard's sort metric (default `best_val_loss`).
    pub sort: Option<String>,
    /// `asc` or `desc` (default: descending for accuracy and R², else ascending).
    pub order: Option<String>,
}

/// `POST /v1/experiments`
pub(crate) async fn create(
    State(state): State<AppState>,
    AppJson(body): AppJson<Value>,
) -> Result<Response, ApiError> {
    let (dataset, request) = decode_create(body)?;
    // Everything that can be refused without the data is refused before an inline dataset
    // is registered.
    let plans = state.experiments.check(&request)?;
    let inline = dataset.is_object();
    let dataset = dataset_of(&state, dataset).await?;
    let dataset_id = dataset.info.id;
    // Its own task: a client that goes away (or the request timeout) while up to hundreds of
    // models and jobs are made cannot stop the creation halfway and leave them orphaned;
    // `create` itself undoes what it made when it fails.
    let experiments = state.experiments.clone();
    let made = tokio::spawn(async move { experiments.create(request, plans, dataset).await })
        .await
        .map_err(|_| ApiError::internal("the experiment could not be created"))?;
    match made {
        Ok(view) => Ok(created(format!("/v1/experiments/{}", view.id), view)),
        Err(error) => {
            if inline {
                // The dataset came with this request and nothing else uses it yet.
                let registry = std::sync::Arc::clone(&state.registry);
                let _ =
                    tokio::task::spawn_blocking(move || registry.delete_dataset(dataset_id)).await;
            }
            Err(error.into())
        }
    }
}

/// The body of `POST /v1/experiments`: its `dataset` (an id or an inline dataset, checked
/// later) and the rest as a request. A seed in `training` is refused: the seeds are the grid's.
fn decode_create(body: Value) -> Result<(Value, ExperimentRequest), ApiError> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::validation("", "expected a JSON object"));
    };
    let dataset = body.remove("dataset").ok_or_else(|| {
        ApiError::validation(
            "dataset",
            "missing field `dataset`: a dataset id or an inline dataset",
        )
    })?;
    if let Some(Value::Object(training)) = body.get("training") {
        if training.contains_key("seed") {
            return Err(ApiError::validation(
                "training.seed",
                "an experiment runs every cell once per entry of `seeds`; give the seeds there",
            ));
        }
    }
    Ok((dataset, from_json_value(Value::Object(body))?))
}

/// `GET /v1/experiments`
pub(crate) async fn list(
    State(state): State<AppState>,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<AppJson<PageView<ExperimentSummary>>, ApiError> {
    let (offset, limit) = page_bounds(q.limit, q.offset, &state.config.limits)?;
    let page = state.experiments.list(offset, limit);
    Ok(AppJson(PageView::new(
        page.items, page.total, offset, limit,
    )))
}

/// `GET /v1/experiments/{id}`
pub(crate) async fn show(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<ViewQuery>,
) -> Result<AppJson<ExperimentView>, ApiError> {
    let experiments = state.experiments.clone();
    // The leaderboard reads every run's history: off the async workers.
    let view = super::blocking::blocking(move || {
        Ok(experiments.view(id, q.sort.as_deref(), q.order.as_deref())?)
    })
    .await?;
    Ok(AppJson(view))
}

/// `POST /v1/experiments/{id}/cancel`
pub(crate) async fn cancel(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
) -> Result<AppJson<ExperimentView>, ApiError> {
    Ok(AppJson(state.experiments.cancel(id).await?))
}
