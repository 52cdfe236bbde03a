//! `GET …/plot.svg`: a job's curves and a model version's decision boundary as SVG, drawn by
//! [`crate::plot`] on the blocking pool (a decision boundary predicts 22,500 grid cells).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::error_map::blocking;
use super::extract::{AppPath, AppQuery};
use super::AppState;
use crate::jobs::JobRecord;
use crate::nn::{Dataset, Targets};
use crate::plot::{self, Boundary, JobPlotKind, Part, Point};
use crate::registry::Version;

/// `?kind=` of a plot. Read as a string so that a missing and an unknown kind get the same
/// answer, listing the kinds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlotQuery {
    /// What to draw.
    pub kind: Option<String>,
}

/// The kinds of a model version's plot.
const VERSION_KINDS: &[&str] = &["decision_boundary"];
/// Grid cells a side of a decision boundary.
const GRID: usize = 150;

fn unknown_kind(given: Option<&str>, kinds: &[&str]) -> ApiError {
    let kinds = kinds.join(", ");
    match given {
        None => ApiError::validation("kind", format!("missing: give one of {kinds}")),
        Some(k) => ApiError::validation("kind", format!("unknown plot kind '{k}': one of {kinds}")),
    }
}

fn svg(body: String) -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], body).into_response()
}

/// `GET /v1/jobs/{id}/plot.svg?kind=loss|accuracy|gap|grad_norms|units`
pub(crate) async fn job(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<PlotQuery>,
) -> Result<Response, ApiError> {
    let kind = q
        .kind
        .as_deref()
        .and_then(|k| serde_json::from_value::<JobPlotKind>(k.into()).ok())
        .ok_or_else(|| unknown_kind(q.kind.as_deref(), JobPlotKind::NAMES))?;
    let record = state.jobs.get(id)?.record();
    let history = state.jobs.history(id, 0)?;
    let title = format!(
        "{} · job {} · {}",
        record.model_name,
        short(id),
        kind.name()
    );
    let body = blocking(move || Ok(plot::job_plot(kind, &title, &history))).await?;
    Ok(svg(body))
}

/// `GET /v1/models/{model}/versions/{version}/plot.svg?kind=decision_boundary`
pub(crate) async fn version(
    State(state): State<AppState>,
    AppPath((model, version)): AppPath<(String, u32)>,
    AppQuery(q): AppQuery<PlotQuery>,
) -> Result<Response, ApiError> {
    if q.kind.as_deref() != Some("decision_boundary") {
        return Err(unknown_kind(q.kind.as_deref(), VERSION_KINDS));
    }
    let (entry, found) = state.registry.version(&model, Some(version))?;
    plot::supports(&found.model).map_err(|why| ApiError::validation("kind", why))?;
    let title = format!(
        "{} v{} · decision boundary",
        entry.record.name, found.info.version
    );
    let source = data_of(&state, &found);
    let body = blocking(move || boundary(&title, &found, source)).await?;
    Ok(svg(body))
}

/// The data a version was trained on, with the job's split, or why there is none.
type Source = Result<(Arc<Dataset>, JobRecord), &'static str>;

fn data_of(state: &AppState, found: &Version) -> Source {
    let job = found.info.job.ok_or("imported weights")?;
    let record = state.jobs.get(job).map_err(|_| "its job is gone")?.record();
    let dataset = state
        .registry
        .dataset(record.dataset)
        .map_err(|_| "its dataset was deleted")?;
    Ok((Arc::clone(&dataset.data), record))
}

/// Draws the boundary of `found` with the training and validation points of `source`.
fn boundary(title: &str, found: &Version, source: Source) -> Result<String, ApiError> {
    let (points, names, note) = match source {
        Ok((data, job)) => match points_of(&data, &job) {
            Ok(points) => (points, data.feature_names.clone(), None),
            Err(why) => (Vec::new(), Vec::new(), Some(why)),
        },
        Err(why) => (Vec::new(), Vec::new(), Some(why)),
    };
    let model = &found.model;
    let (x, y) = plot::points_range(&points).unwrap_or_else(|| {
        // No data: ±3 standard deviations of the inputs the model was fitted on.
        let around = |i: usize| match &model.standardizer {
            Some(s) => {
                let (m, sd) = (f64::from(s.mean[i]), f64::from(s.std[i]));
                (m - 3.0 * sd, m + 3.0 * sd)
            }
            None => (-3.0, 3.0),
        };
        (around(0), around(1))
    });
    let regions = plot::classify_grid(model, x, y, GRID)?;
    let title = match note {
        Some(why) => format!("{title} (no data points: {why})"),
        None => title.to_owned(),
    };
    let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| format!("x{i}"));
    Ok(plot::decision_boundary(&Boundary {
        title: &title,
        x_label: &name(0),
        y_label: &name(1),
        classes: &model.labels,
        regions: &regions,
        points: &points,
    }))
}

/// The training and validation rows of `job`'s split of `data`, as points.
fn points_of(data: &Dataset, job: &JobRecord) -> Result<Vec<Point>, &'static str> {
    let Targets::Classes { indices, .. } = &data.targets else {
        return Err("the dataset has no class labels");
    };
    if data.n_features() != 2 {
        return Err("the dataset does not have 2 features");
    }
    let c = &job.request;
    let split = data
        .split(c.validation_split, c.test_split, c.seed)
        .map_err(|_| "the job's split cannot be redone")?;
    let point = |part: Part| {
        move |&row: &usize| Point {
            x: f64::from(data.features[[row, 0]]),
            y: f64::from(data.features[[row, 1]]),
            class: indices[row] as usize,
            part,
        }
    };
    Ok(split
        .train
        .iter()
        .map(point(Part::Train))
        .chain(split.validation.iter().map(point(Part::Validation)))
        .collect())
}

/// The first 8 hex digits of `id`.
fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}
