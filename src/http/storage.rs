//! `/v1/storage`: what the data directory holds that could not be loaded.

use axum::extract::State;
use serde::Serialize;

use super::extract::AppJson;
use super::state::AppState;
use crate::registry::Unavailable;

/// Every stored object that could not be loaded at start-up.
#[derive(Debug, Serialize)]
pub struct UnavailableView {
    /// Datasets, models, versions and jobs, by file.
    pub items: Vec<Unavailable>,
    /// How many.
    pub total: usize,
}

/// `GET /v1/storage/unavailable`
pub(crate) async fn unavailable(State(state): State<AppState>) -> AppJson<UnavailableView> {
    let mut items = state.registry.unavailable();
    items.extend(state.jobs.unavailable());
    items.sort_by(|a, b| a.file.cmp(&b.file));
    AppJson(UnavailableView {
        total: items.len(),
        items,
    })
}
