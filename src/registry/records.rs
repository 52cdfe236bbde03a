//! What the registry keeps and writes: dataset, model and version records, and the JSON form
//! of a dataset (`nn::Dataset` itself is not serde: its arrays are written flat, row-major).

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::nn::data::FeatureStats;
use crate::nn::{Dataset, Metrics, Model, ModelSpec, Targets};

/// Where a dataset came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetSource {
    /// Rows in a JSON body.
    Inline,
    /// A `text/csv` upload.
    Csv,
    /// A synthetic generator.
    Generator,
    /// One of the built-in sets.
    Builtin,
}

/// The facts of a dataset that never change after it is created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// UUIDv7.
    pub id: Uuid,
    /// An optional human name (not unique).
    pub name: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Where it came from.
    pub source: DatasetSource,
    /// Whether class labels were given as numbers (predictions answer them as numbers).
    pub numeric_labels: bool,
}

/// A dataset in memory: its record, the data, and the summary `GET` shows.
#[derive(Debug)]
pub struct DatasetEntry {
    /// The record.
    pub info: DatasetInfo,
    /// The data, shared with the jobs that train on it.
    pub data: std::sync::Arc<Dataset>,
    /// Per-feature statistics, computed once.
    pub stats: Vec<FeatureStats>,
    /// Rows per class, in class order (classification).
    pub class_counts: Option<Vec<usize>>,
}

impl DatasetEntry {
    /// The entry of `data`, with its summary computed.
    #[must_use]
    pub fn new(info: DatasetInfo, data: Dataset) -> Self {
        Self {
            stats: data.feature_stats(),
            class_counts: data.class_counts(),
            info,
            data: std::sync::Arc::new(data),
        }
    }
}

/// A model spec with its identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// UUIDv7.
    pub id: Uuid,
    /// Unique; usable wherever the id is.
    pub name: String,
    /// The validated architecture.
    pub spec: ModelSpec,
    /// Trainable parameters.
    pub parameter_count: u64,
    /// RFC 3339.
    pub created_at: String,
}

/// The facts of a trained version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The model it belongs to.
    pub model: Uuid,
    /// 1, 2, … per model.
    pub version: u32,
    /// The job that trained it.
    pub job: Option<Uuid>,
    /// The dataset it was trained on.
    pub dataset: Option<Uuid>,
    /// RFC 3339.
    pub created_at: String,
    /// The epoch whose weights it has.
    pub best_epoch: usize,
    /// Epochs run.
    pub epochs_run: usize,
    /// Whether training stopped before its epochs.
    pub stopped_early: bool,
    /// Final metrics on the training rows.
    pub train: Metrics,
    /// Final metrics on the validation rows.
    pub validation: Option<Metrics>,
    /// Final metrics on the test rows.
    pub test: Option<Metrics>,
    /// Whether class labels are answered as JSON numbers.
    #[serde(default)]
    pub numeric_labels: bool,
}

/// A trained version: its record and the model predictions run on.
#[derive(Debug)]
pub struct Version {
    /// The record.
    pub info: VersionInfo,
    /// The trained network, shared with every prediction in flight.
    pub model: std::sync::Arc<Model>,
}

/// A model in memory: its record and its versions, oldest first.
#[derive(Clone, Debug)]
pub struct ModelEntry {
    /// The record.
    pub record: ModelRecord,
    /// Trained versions, in order.
    pub versions: Vec<std::sync::Arc<Version>>,
}

impl ModelEntry {
    /// Version `v`, or the latest when `None`.
    #[must_use]
    pub fn version(&self, v: Option<u32>) -> Option<&std::sync::Arc<Version>> {
        match v {
            Some(v) => self.versions.iter().find(|x| x.info.version == v),
            None => self.versions.last(),
        }
    }
}

/// The JSON form of a dataset file: the record and the data.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DatasetFile {
    pub info: DatasetInfo,
    pub rows: usize,
    pub columns: usize,
    pub features: Vec<f32>,
    pub feature_names: Vec<String>,
    pub targets: TargetsFile,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum TargetsFile {
    Classes {
        indices: Vec<u32>,
        names: Vec<String>,
    },
    MultiLabel {
        columns: usize,
        values: Vec<f32>,
        names: Vec<String>,
    },
    Values {
        columns: usize,
        values: Vec<f32>,
        names: Vec<String>,
    },
}

fn flat(a: &Array2<f32>) -> Vec<f32> {
    a.iter().copied().collect()
}

impl DatasetFile {
    pub fn new(info: &DatasetInfo, data: &Dataset) -> Self {
        let targets = match &data.targets {
            Targets::Classes { indices, names } => TargetsFile::Classes {
                indices: indices.clone(),
                names: names.clone(),
            },
            Targets::MultiLabel { values, names } => TargetsFile::MultiLabel {
                columns: values.ncols(),
                values: flat(values),
                names: names.clone(),
            },
            Targets::Values { values, names } => TargetsFile::Values {
                columns: values.ncols(),
                values: flat(values),
                names: names.clone(),
            },
        };
        Self {
            info: info.clone(),
            rows: data.rows(),
            columns: data.n_features(),
            features: flat(&data.features),
            feature_names: data.feature_names.clone(),
            targets,
        }
    }

    /// The dataset back, checked as when it was created.
    pub fn into_dataset(self) -> Result<(DatasetInfo, Dataset), String> {
        let shape_err = |e: ndarray::ShapeError| e.to_string();
        let features =
            Array2::from_shape_vec((self.rows, self.columns), self.features).map_err(shape_err)?;
        let targets = match self.targets {
            TargetsFile::Classes { indices, names } => Targets::Classes { indices, names },
            TargetsFile::MultiLabel {
                columns,
                values,
                names,
            } => Targets::MultiLabel {
                values: Array2::from_shape_vec((self.rows, columns), values).map_err(shape_err)?,
                names,
            },
            TargetsFile::Values {
                columns,
                values,
                names,
            } => Targets::Values {
                values: Array2::from_shape_vec((self.rows, columns), values).map_err(shape_err)?,
                names,
            },
        };
        let data =
            Dataset::new(features, Some(self.feature_names), targets).map_err(|e| e.to_string())?;
        Ok((self.info, data))
    }
}
