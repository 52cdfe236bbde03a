//! `/v1/datasets`: create (inline JSON rows, a generator, a built-in set, or a `text/csv`
//! upload), list, show, delete.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::blocking::blocking;
use super::error::ApiError;
use super::extract::media_type::{is_json_media_type, media_type};
use super::extract::{from_json_slice, read_body, AppJson, AppPath, AppQuery};
use super::state::AppState;
use super::views::{created, page_bounds, DatasetView, PageQuery, PageView};
use crate::config::Limits;
use crate::nn::generators::GeneratorSpec;
use crate::nn::Task;
use crate::registry::{csv, ingest, DatasetEntry, DatasetSource, Ingested, Registry};

/// Longest dataset name, in characters.
const MAX_NAME_CHARS: usize = 200;

/// A dataset in a JSON body: exactly one of rows (`features` + `targets`), `generator` or
/// `builtin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRequest {
    /// Optional name.
    pub name: Option<String>,
    /// Rows of numbers.
    pub features: Option<Vec<Vec<f64>>>,
    /// One target per row: a label (string or number) or a value or row of values.
    pub targets: Option<Vec<Value>>,
    /// What the targets are (inferred when omitted).
    pub task: Option<Task>,
    /// One name per feature column.
    pub feature_names: Option<Vec<String>>,
    /// A synthetic dataset.
    pub generator: Option<GeneratorSpec>,
    /// A built-in dataset by name.
    pub builtin: Option<String>,
}

/// Query of a CSV upload.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The target column (CSV; default: the last).
    pub target: Option<String>,
    /// What the targets are (CSV; inferred when omitted).
    pub task: Option<Task>,
    /// A name for the dataset (CSV).
    pub name: Option<String>,
}

/// White space as `openapi.yaml`'s pattern `\S` means it: Unicode's, and the information
/// separators U+001C..U+001F, which regular expressions count as space too.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn check_name(name: Option<&String>) -> Result<(), ApiError> {
    match name {
        Some(n) if n.chars().all(is_space) || n.chars().count() > MAX_NAME_CHARS => Err(
            ApiError::validation("name", format!("must be 1 to {MAX_NAME_CHARS} characters")),
        ),
        _ => Ok(()),
    }
}

/// Builds and registers the dataset of a JSON request (blocking: call off the runtime).
pub(crate) fn register_json(
    registry: &Registry,
    req: DatasetRequest,
    limits: &Limits,
) -> Result<Arc<DatasetEntry>, ApiError> {
    let name = req.name.clone();
    let (source, ingested) = ingest_json(req, limits)?;
    Ok(registry.add_dataset(name, source, ingested)?)
}

/// Checks a JSON request and builds its dataset, without registering it.
pub(crate) fn ingest_json(
    req: DatasetRequest,
    limits: &Limits,
) -> Result<(DatasetSource, Ingested), ApiError> {
    check_name(req.name.as_ref())?;
    let rows = req.features.is_some() || req.targets.is_some();
    for (field, given) in [
        ("task", req.task.is_some()),
        ("feature_names", req.feature_names.is_some()),
    ] {
        if given && !rows {
            return Err(ApiError::validation(
                field,
                format!("`{field}` describes rows (`features` with `targets`); a generator or built-in set has its own"),
            ));
        }
    }
    let (source, ingested) = match (req.features, req.targets, req.generator, req.builtin) {
        (Some(features), Some(targets), None, None) => (
            DatasetSource::Inline,
            ingest::from_rows(&features, &targets, req.task, req.feature_names, limits)?,
        ),
        (None, None, Some(spec), None) => (
            DatasetSource::Generator,
            ingest::from_generator(&spec, limits)?,
        ),
        (None, None, None, Some(name)) => (DatasetSource::Builtin, ingest::from_builtin(&name)?),
        (Some(_), None, None, None) => {
            return Err(ApiError::validation(
                "targets",
                "missing field `targets`: one per row of `features`",
            ))
        }
        (None, Some(_), None, None) => {
            return Err(ApiError::validation(
                "features",
                "missing field `features`: one row per target",
            ))
        }
        _ => {
            return Err(ApiError::validation(
                "",
                "give exactly one of: `features` with `targets`, `generator`, or `builtin`",
            ))
        }
    };
    Ok((source, ingested))
}

enum Body {
    Json,
    Csv,
}

fn body_kind(request: &Request) -> Result<Body, ApiError> {
    match media_type(request.headers()) {
        Some(m) if is_json_media_type(&m) => Ok(Body::Json),
        Some(m) if m == "text/csv" => Ok(Body::Csv),
        _ => Err(ApiError::UnsupportedMediaType {
            expected: "application/json or text/csv",
            given: request
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        }),
    }
}

fn register_csv(
    registry: &Registry,
    bytes: &[u8],
    query: UploadQuery,
    limits: &Limits,
) -> Result<Arc<DatasetEntry>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::validation("", format!("the CSV is not UTF-8: {e}")))?;
    let ingested = csv::from_csv(text, query.target.as_deref(), query.task, limits)?;
    Ok(registry.add_dataset(query.name, DatasetSource::Csv, ingested)?)
}

/// `POST /v1/datasets`
pub(crate) async fn create(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<UploadQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    // `name` is checked whatever the body, so that a bad one is never silently ignored.
    check_name(query.name.as_ref())?;
    let kind = body_kind(&request)?;
    let bytes = read_body(request).await?;
    let (registry, limits) = (Arc::clone(&state.registry), state.config.limits.clone());
    let entry = blocking(move || match kind {
        Body::Json => register_json(&registry, from_json_slice(&bytes)?, &limits),
        Body::Csv => register_csv(&registry, &bytes, query, &limits),
    })
    .await?;
    Ok(created(
        format!("/v1/datasets/{}", entry.info.id),
        DatasetView::new(&entry, true),
    ))
}

/// `GET /v1/datasets`
pub(crate) async fn list(
    State(state): State<AppState>,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<AppJson<PageView<DatasetView>>, ApiError> {
    let (offset, limit) = page_bounds(q.limit, q.offset, &state.config.limits)?;
    let page = state.registry.datasets(offset, limit);
    let items = page
        .items
        .iter()
        .map(|e| DatasetView::new(e, false))
        .collect();
    Ok(AppJson(PageView::new(items, page.total, offset, limit)))
}

/// `GET /v1/datasets/{id}`
pub(crate) async fn show(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
) -> Result<AppJson<DatasetView>, ApiError> {
    let entry = state.registry.dataset(id)?;
    Ok(AppJson(DatasetView::new(&entry, true)))
}

/// `DELETE /v1/datasets/{id}`
pub(crate) async fn delete(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let registry = Arc::clone(&state.registry);
    blocking(move || Ok(registry.delete_dataset(id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}
