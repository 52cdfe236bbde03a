//! `/v1/models`: create a spec, list, show, delete (cancelling its jobs), and its versions.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::blocking::blocking;
use super::error::ApiError;
use super::extract::{AppJson, AppPath, AppQuery};
use super::state::AppState;
use super::views::{
    created, page_bounds, ModelView, PageQuery, PageView, VersionEntryView, VersionView,
};
use crate::nn::{Activation, Head, Init, ModelSpec};
use crate::registry::RegistryError;

/// A model spec as clients write it (DESIGN.md "Model spec").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateModel {
    /// Unique name, usable wherever the id is.
    pub name: String,
    /// Input size, hidden sizes…, output size.
    pub layers: Vec<usize>,
    /// The activation of every hidden layer (default `relu`).
    pub activation: Option<Activation>,
    /// One activation per hidden layer, instead of `activation`.
    pub activations: Option<Vec<Activation>>,
    /// The output head: `softmax`, `sigmoid` or `identity`.
    pub output: Head,
    /// Weight init (default: per activation).
    pub init: Option<Init>,
    /// Dropout after each hidden activation (default 0). Read as f64 and checked before it is
    /// narrowed, so that `-1e-300` is refused rather than rounded to 0.
    #[serde(default)]
    pub dropout: f64,
    /// Batch norm on each hidden layer (default false).
    #[serde(default)]
    pub batch_norm: bool,
}

impl CreateModel {
    /// The `nn` spec: `activation` repeated for every hidden layer, or `activations`.
    ///
    /// # Errors
    /// 422 when both are given.
    pub fn into_spec(self) -> Result<(String, ModelSpec), ApiError> {
        let hidden = self.layers.len().saturating_sub(2);
        let activations = match (self.activation, self.activations) {
            (Some(_), Some(_)) => {
                return Err(ApiError::validation(
                    "activations",
                    "give either `activation` (for every hidden layer) or `activations` (one per hidden layer), not both",
                ))
            }
            (_, Some(list)) => list,
            (one, None) => vec![one.unwrap_or(Activation::Relu); hidden],
        };
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ApiError::validation(
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            ));
        }
        let spec = ModelSpec {
            layers: self.layers,
            activations,
            output: self.output,
            init: self.init,
            // Below 1 as an f64 may round up to 1 as an f32: keep it below.
            dropout: (self.dropout as f32).min(1.0 - f32::EPSILON / 2.0),
            batch_norm: self.batch_norm,
        };
        Ok((self.name, spec))
    }
}

/// `POST /v1/models`
pub(crate) async fn create(
    State(state): State<AppState>,
    AppJson(body): AppJson<CreateModel>,
) -> Result<Response, ApiError> {
    let (name, spec) = body.into_spec()?;
    let registry = Arc::clone(&state.registry);
    let entry = blocking(move || Ok(registry.create_model(name, spec)?)).await?;
    Ok(created(
        format!("/v1/models/{}", entry.record.id),
        ModelView::new(&entry),
    ))
}

/// `GET /v1/models`
pub(crate) async fn list(
    State(state): State<AppState>,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<AppJson<PageView<ModelView>>, ApiError> {
    let (offset, limit) = page_bounds(q.limit, q.offset, &state.config.limits)?;
    let page = state.registry.models(offset, limit);
    let items = page.items.iter().map(|e| ModelView::new(e)).collect();
    Ok(AppJson(PageView::new(items, page.total, offset, limit)))
}

/// `GET /v1/models/{model}`
pub(crate) async fn show(
    State(state): State<AppState>,
    AppPath(model): AppPath<String>,
) -> Result<AppJson<ModelView>, ApiError> {
    let entry = state.registry.model(&model)?;
    Ok(AppJson(ModelView::new(&entry)))
}

/// `DELETE /v1/models/{model}`: cancels its queued and running jobs, then deletes it (an
/// unavailable model's files too).
pub(crate) async fn delete(
    State(state): State<AppState>,
    AppPath(model): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    match state.registry.model(&model) {
        Ok(entry) => state.jobs.cancel_model(entry.record.id).await,
        // A model whose record cannot be loaded has no jobs running; deleting it removes
        // its files.
        Err(RegistryError::Unavailable { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    let registry = Arc::clone(&state.registry);
    blocking(move || Ok(registry.delete_model(&model)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The versions of a model.
#[derive(Debug, serde::Serialize)]
pub struct VersionsView {
    /// The model's id.
    pub model: uuid::Uuid,
    /// Its name.
    pub name: String,
    /// Oldest first, with those whose files cannot be loaded (`status: unavailable`).
    pub versions: Vec<VersionEntryView>,
}

/// `GET /v1/models/{model}/versions`
pub(crate) async fn versions(
    State(state): State<AppState>,
    AppPath(model): AppPath<String>,
) -> Result<AppJson<VersionsView>, ApiError> {
    let entry = state.registry.model(&model)?;
    Ok(AppJson(VersionsView {
        model: entry.record.id,
        name: entry.record.name.clone(),
        versions: VersionEntryView::all(&entry),
    }))
}

/// `GET /v1/models/{model}/versions/{version}`: an unavailable version is shown with its
/// status and reason (predicting with it is a 409 naming the reason).
pub(crate) async fn version(
    State(state): State<AppState>,
    AppPath((model, version)): AppPath<(String, u32)>,
) -> Result<AppJson<VersionEntryView>, ApiError> {
    let entry = state.registry.model(&model)?;
    if let Some(found) = entry.version(Some(version)) {
        return Ok(AppJson(VersionEntryView::Known(Box::new(
            VersionView::new(found),
        ))));
    }
    entry
        .unavailable_version(version)
        .map(|u| AppJson(VersionEntryView::unavailable(u)))
        .ok_or_else(|| ApiError::not_found("version", format!("{model}/versions/{version}")))
}
