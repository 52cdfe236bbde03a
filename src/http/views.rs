//! What responses look like: pages, dataset and model summaries, versions. Built from the
//! registry's records; nothing here is deserialized.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::AppJson;
use crate::config::{Limit, Limits};
use crate::nn::data::FeatureStats;
use crate::nn::{Metrics, ModelSpec, Task};
use crate::registry::{
    DatasetEntry, DatasetSource, ModelEntry, UnavailableVersion, Version, VersionInfo,
};

/// Default page size of listings.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// `?limit=&offset=` of a listing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items a page (default 100, at most `--max-page-size`).
    pub limit: Option<usize>,
    /// Items to skip.
    pub offset: Option<usize>,
}

/// Checks a page request against `--max-page-size`; returns (offset, limit).
///
/// # Errors
/// 422 for a zero limit, the limit error over the maximum.
pub fn page_bounds(
    limit: Option<usize>,
    offset: Option<usize>,
    limits: &Limits,
) -> Result<(usize, usize), ApiError> {
    let limit = page_limit(limit, DEFAULT_PAGE_SIZE, limits)?;
    Ok((offset.unwrap_or(0), limit))
}

/// A page size `limit` checked against `--max-page-size`; `default` (at most the maximum)
/// when none is given.
///
/// # Errors
/// 422 for a zero limit, the limit error over the maximum.
pub fn page_limit(
    limit: Option<usize>,
    default: usize,
    limits: &Limits,
) -> Result<usize, ApiError> {
    let max = limits.max_page_size;
    let limit = limit.unwrap_or(default.min(max));
    if limit == 0 {
        return Err(ApiError::validation("limit", "must be at least 1"));
    }
    if limit > max {
        return Err(ApiError::limit_exceeded(
            "limit",
            Limit::PageSize,
            max,
            limit,
        ));
    }
    Ok(limit)
}

/// One page of a listing.
#[derive(Debug, Serialize)]
pub struct PageView<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// Items in the whole listing.
    pub total: usize,
    /// The page size used.
    pub limit: usize,
    /// Items skipped.
    pub offset: usize,
    /// The offset of the next page, absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

impl<T> PageView<T> {
    /// A page of `items` out of `total`.
    pub fn new(items: Vec<T>, total: usize, offset: usize, limit: usize) -> Self {
        let end = offset.saturating_add(items.len());
        Self {
            items,
            total,
            limit,
            offset,
            next_offset: (end < total).then_some(end),
        }
    }
}

/// `201 Created` with `Location` and a JSON body.
pub fn created<T: Serialize>(location: String, body: T) -> Response {
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        AppJson(body),
    )
        .into_response()
}

/// A class and how many rows it has.
#[derive(Debug, Serialize)]
pub struct ClassCount {
    /// The label as the data named it.
    pub name: String,
    /// Rows of this class.
    pub count: usize,
}

/// A dataset's summary.
#[derive(Debug, Serialize)]
pub struct DatasetView {
    /// UUIDv7.
    pub id: Uuid,
    /// Optional name.
    pub name: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// `inline`, `csv`, `generator` or `builtin`.
    pub source: DatasetSource,
    /// `classification`, `regression` or `multi_label`.
    pub task: Task,
    /// Rows.
    pub rows: usize,
    /// Feature columns.
    pub features: usize,
    /// Feature names.
    pub feature_names: Vec<String>,
    /// Class names with counts (classification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<ClassCount>>,
    /// Target or label names (regression, multi-label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_names: Option<Vec<String>>,
    /// Per-feature min, max, mean, std (on single datasets, not in listings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_stats: Option<Vec<FeatureStats>>,
}

impl DatasetView {
    /// The summary; `stats` adds per-feature statistics.
    #[must_use]
    pub fn new(entry: &DatasetEntry, stats: bool) -> Self {
        let data = &entry.data;
        let names = data.targets.names();
        let classes = entry.class_counts.as_ref().map(|counts| {
            names
                .iter()
                .zip(counts)
                .map(|(n, &c)| ClassCount {
                    name: n.clone(),
                    count: c,
                })
                .collect()
        });
        Self {
            id: entry.info.id,
            name: entry.info.name.clone(),
            created_at: entry.info.created_at.clone(),
            source: entry.info.source,
            task: data.task(),
            rows: data.rows(),
            features: data.n_features(),
            feature_names: data.feature_names.clone(),
            target_names: classes.is_none().then(|| names.to_vec()),
            classes,
            feature_stats: stats.then(|| entry.stats.clone()),
        }
    }
}

/// Final metrics of a version.
#[derive(Debug, Serialize)]
pub struct VersionMetrics {
    /// On the training rows.
    pub train: Metrics,
    /// On the validation rows.
    pub validation: Option<Metrics>,
    /// On the test rows.
    pub test: Option<Metrics>,
}

/// How a version came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionSource {
    /// A training job made it.
    Training,
    /// Weights were imported (`POST /v1/models/{model}/versions`).
    Import,
}

/// Whether a version serves (TF Serving's AVAILABLE / UNAVAILABLE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Loaded; predictions use it.
    Available,
    /// Its stored files cannot be loaded; `reason` says why.
    Unavailable,
}

/// A version: trained, or imported.
#[derive(Debug, Serialize)]
pub struct VersionView {
    /// 1, 2, …
    pub version: u32,
    /// `available`, or `unavailable` when its stored files cannot be loaded.
    pub status: VersionStatus,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// `training` or `import`.
    pub source: VersionSource,
    /// The job that trained it (`null` when imported).
    pub job: Option<Uuid>,
    /// The dataset it was trained on.
    pub dataset: Option<Uuid>,
    /// The epoch whose weights it has.
    pub best_epoch: usize,
    /// Epochs run.
    pub epochs_run: usize,
    /// Whether training stopped early.
    pub stopped_early: bool,
    /// Final metrics (`null` when imported: they are not known).
    pub metrics: Option<VersionMetrics>,
}

impl VersionView {
    /// The view of `v`.
    #[must_use]
    pub fn new(v: &Arc<Version>) -> Self {
        Self::of(&v.info, VersionStatus::Available, None)
    }

    fn of(i: &VersionInfo, status: VersionStatus, reason: Option<String>) -> Self {
        // Every trained version has its job; only an import has none.
        let source = if i.job.is_some() {
            VersionSource::Training
        } else {
            VersionSource::Import
        };
        Self {
            version: i.version,
            status,
            reason,
            created_at: i.created_at.clone(),
            source,
            job: i.job,
            dataset: i.dataset,
            best_epoch: i.fit.best_epoch,
            epochs_run: i.fit.epochs_run,
            stopped_early: i.fit.stopped_early,
            metrics: (source == VersionSource::Training).then_some(VersionMetrics {
                train: i.fit.train,
                validation: i.fit.validation,
                test: i.fit.test,
            }),
        }
    }
}

/// An unavailable version whose record itself cannot be read: only its number (from the
/// file name) and the reason are known.
#[derive(Debug, Serialize)]
pub struct BareVersionView {
    /// From the file name.
    pub version: u32,
    /// Always `unavailable`.
    pub status: VersionStatus,
    /// Why.
    pub reason: String,
}

/// A version as listed: every stored version, those that serve and those that do not.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum VersionEntryView {
    /// With its record.
    Known(Box<VersionView>),
    /// Its record is unreadable.
    Bare(BareVersionView),
}

impl VersionEntryView {
    /// The view of an unavailable version.
    #[must_use]
    pub fn unavailable(u: &UnavailableVersion) -> Self {
        match &u.info {
            Some(info) => Self::Known(Box::new(VersionView::of(
                info,
                VersionStatus::Unavailable,
                Some(u.reason.clone()),
            ))),
            None => Self::Bare(BareVersionView {
                version: u.version,
                status: VersionStatus::Unavailable,
                reason: u.reason.clone(),
            }),
        }
    }

    fn number(&self) -> u32 {
        match self {
            Self::Known(v) => v.version,
            Self::Bare(v) => v.version,
        }
    }

    /// Every version of `entry`, serving or not, oldest first.
    #[must_use]
    pub fn all(entry: &ModelEntry) -> Vec<Self> {
        let mut all: Vec<Self> = entry
            .versions
            .iter()
            .map(|v| Self::Known(Box::new(VersionView::new(v))))
            .chain(entry.unavailable.iter().map(Self::unavailable))
            .collect();
        all.sort_by_key(Self::number);
        all
    }
}

/// A model: its spec, size and versions.
#[derive(Debug, Serialize)]
pub struct ModelView {
    /// UUIDv7.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// The architecture (`layers`, `activations`, `output`, `init`, `dropout`, `batch_norm`).
    #[serde(flatten)]
    pub spec: ModelSpec,
    /// Trainable parameters.
    pub parameter_count: u64,
    /// Trained versions, oldest first, with those whose files cannot be loaded.
    pub versions: Vec<VersionEntryView>,
}

impl ModelView {
    /// The view of `entry`.
    #[must_use]
    pub fn new(entry: &ModelEntry) -> Self {
        let r = &entry.record;
        Self {
            id: r.id,
            name: r.name.clone(),
            created_at: r.created_at.clone(),
            spec: r.spec.clone(),
            parameter_count: r.parameter_count,
            versions: VersionEntryView::all(entry),
        }
    }
}
