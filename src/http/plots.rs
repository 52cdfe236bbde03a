//! `GET …/plot.svg`: a job's curves and a model version's decision boundary as SVG, drawn by
//! [`crate::plot`] on the blocking pool (a decision boundary predicts 22,500 grid cells).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::blocking::blocking;
use super::error::ApiError;
use super::extract::{AppPath, AppQuery};
use super::state::AppState;
use crate::experiments::{ExperimentRecord, Leaderboard, Metric};
use crate::jobs::{JobRecord, JobState, Jobs};
use crate::nn::{Dataset, EpochRecord, Targets};
use crate::plot::{self, BandSeries, Bar, Boundary, JobPlotKind, Part, Point};
use crate::registry::Version;

/// `?kind=` of a plot. Read as a string so that a missing and an unknown kind get the same
/// answer, listing the kinds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlotQuery {
    /// What to draw.
    pub kind: Option<String>,
}

/// `?kind=&metric=` of an experiment's plot.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentPlotQuery {
    /// `curves` or `leaderboard`.
    pub kind: Option<String>,
    /// What the curves or bars show (each kind has a default).
    pub metric: Option<String>,
}

/// The kinds of an experiment's plot.
const EXPERIMENT_KINDS: &[&str] = &["curves", "leaderboard"];
/// What `kind=curves` can show, per epoch: `(name, y label, log y axis)`.
const CURVE_METRICS: &[(&str, &str, bool)] = &[
    ("val_loss", "validation loss", false),
    ("train_loss", "training loss", false),
    ("val_accuracy", "validation accuracy", false),
    ("train_accuracy", "training accuracy", false),
    ("val_r2", "validation R²", false),
    ("generalization_gap", "validation − training loss", false),
    (
        "grad_ratio",
        "gradient norm, first layer / last layer",
        true,
    ),
];

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

/// Epochs a job's chart draws at most: more than its width has pixels. A longer history is
/// drawn from evenly spaced epochs, so that a chart of 100,000 epochs costs what one of 1,000
/// does (and the records are not copied whole for each request).
const PLOT_POINTS: usize = 1_000;

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
    let history = state.jobs.history_sample(id, PLOT_POINTS)?;
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

/// `GET /v1/experiments/{id}/plot.svg?kind=curves|leaderboard&metric=…`: one curve per cell
/// (mean ± std over its succeeded seeds, epoch by epoch), or the leaderboard as bars (mean ±
/// std of a leaderboard metric, in the leaderboard's order).
pub(crate) async fn experiment(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<ExperimentPlotQuery>,
) -> Result<Response, ApiError> {
    let record = state.experiments.record(id)?;
    let name = record
        .name
        .clone()
        .unwrap_or_else(|| format!("experiment {}", short(id)));
    let body = match q.kind.as_deref() {
        Some("curves") => {
            let (metric, y_label, log_y) = curve_metric(q.metric.as_deref())?;
            let title = format!("{name} · {metric}, mean ± std over seeds");
            let jobs = state.jobs.clone();
            // Histories are copied (and reduced) on the blocking pool, not on a worker.
            blocking(move || {
                let series = cell_bands(&jobs, &record, metric);
                Ok(plot::band_curves(&title, y_label, &series, log_y))
            })
            .await?
        }
        Some("leaderboard") => {
            let metric = leaderboard_metric(q.metric.as_deref())?;
            let experiments = state.experiments.clone();
            let view =
                blocking(move || Ok(experiments.view(id, Some(metric.name()), None)?)).await?;
            let bars = leaderboard_bars(&view.leaderboard, metric);
            let title = format!("{name} · {} by cell, mean ± std over seeds", metric.name());
            blocking(move || Ok(plot::bar_chart(&title, metric_label(metric), &bars))).await?
        }
        other => return Err(unknown_kind(other, EXPERIMENT_KINDS)),
    };
    Ok(svg(body))
}

/// The curve metric `asked` names (default `val_loss`), with its axis label and whether its
/// axis is logarithmic.
fn curve_metric(asked: Option<&str>) -> Result<(&'static str, &'static str, bool), ApiError> {
    let metric = asked.unwrap_or("val_loss");
    CURVE_METRICS
        .iter()
        .find(|(m, _, _)| *m == metric)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = CURVE_METRICS.iter().map(|(m, ..)| *m).collect();
            ApiError::validation(
                "metric",
                format!(
                    "unknown curve metric '{metric}': one of {}",
                    names.join(", ")
                ),
            )
        })
}

/// The leaderboard metric `asked` names (default `best_val_loss`).
fn leaderboard_metric(asked: Option<&str>) -> Result<Metric, ApiError> {
    let name_given = asked.unwrap_or("best_val_loss");
    Metric::ALL
        .into_iter()
        .find(|m| m.name() == name_given)
        .ok_or_else(|| {
            let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            ApiError::validation(
                "metric",
                format!(
                    "unknown leaderboard metric '{name_given}': one of {}",
                    names.join(", ")
                ),
            )
        })
}

/// One band a cell of `record`: `metric` over the histories of its succeeded runs, each read
/// in place for that one value an epoch (not copied whole).
fn cell_bands(jobs: &Jobs, record: &ExperimentRecord, metric: &str) -> Vec<BandSeries> {
    record
        .cells
        .iter()
        .map(|cell| {
            let runs: Vec<Vec<Option<f64>>> = cell
                .jobs
                .iter()
                .filter(|run| {
                    jobs.get(run.job)
                        .is_ok_and(|j| j.record().state == JobState::Succeeded)
                })
                .filter_map(|run| {
                    jobs.read_history(run.job, |h| {
                        h.iter().map(|r| curve_value(r, metric)).collect()
                    })
                    .ok()
                })
                .collect();
            band_of(&cell.label, &runs)
        })
        .collect()
}

/// One bar a row of `board`: its `metric`'s mean ± std.
fn leaderboard_bars(board: &Leaderboard, metric: Metric) -> Vec<Bar> {
    board
        .rows
        .iter()
        .map(|row| {
            let s = row.metric(metric);
            Bar {
                label: row.label.clone(),
                mean: s.and_then(|s| s.mean).unwrap_or(f64::NAN),
                std: s.and_then(|s| s.std),
            }
        })
        .collect()
}

/// The y label of a leaderboard metric.
fn metric_label(metric: Metric) -> &'static str {
    match metric {
        Metric::BestValLoss => "best validation loss",
        Metric::ValAccuracy => "validation accuracy at the best epoch",
        Metric::ValR2 => "validation R² at the best epoch",
        Metric::FinalGap => "validation − training loss, last epoch",
        Metric::EpochsToBest => "epoch of the best validation loss",
        Metric::GradRatioFirst => "gradient norm first / last layer, epoch 1",
        Metric::GradRatioFinal => "gradient norm first / last layer, last epoch",
        Metric::DeadFraction => "dead hidden units, last epoch",
        Metric::SaturatedFraction => "saturated hidden units, last epoch",
    }
}

/// `metric` of one epoch record.
fn curve_value(r: &EpochRecord, metric: &str) -> Option<f64> {
    match metric {
        "val_loss" => r.val_loss,
        "train_loss" => Some(r.train_loss),
        "val_accuracy" => r.val_accuracy,
        "train_accuracy" => r.train_accuracy,
        "val_r2" => r.val_r2,
        "generalization_gap" => r.generalization_gap,
        "grad_ratio" => {
            let (first, last) = (r.layers.first()?.grad_norm?, r.layers.last()?.grad_norm?);
            (r.layers.len() > 1 && last > 0.0).then(|| first / last)
        }
        _ => None,
    }
    .filter(|v| v.is_finite())
}

/// Mean ± sample std over `runs` (a metric's values, epoch by epoch), epoch by epoch (epochs
/// that no run reached, or where the metric is missing, are left out; a single value has
/// std 0).
fn band_of(label: &str, runs: &[Vec<Option<f64>>]) -> BandSeries {
    let epochs = runs.iter().map(Vec::len).max().unwrap_or(0);
    let mut series = BandSeries {
        label: format!("{label} (n={})", runs.len()),
        x: Vec::new(),
        mean: Vec::new(),
        std: Vec::new(),
    };
    for e in 0..epochs {
        let values: Vec<f64> = runs
            .iter()
            .filter_map(|values| values.get(e).copied().flatten())
            .collect();
        let Some(mean) = crate::experiments::stats::mean(&values) else {
            continue;
        };
        series.x.push(e as f64);
        series.mean.push(mean);
        series
            .std
            .push(crate::experiments::stats::sample_std(&values).unwrap_or(0.0));
    }
    series
}

/// The first 8 hex digits of `id`.
fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}
