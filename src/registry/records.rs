//! What the registry keeps and writes: dataset, model and version records, and the JSON form
//! of a dataset (`nn::Dataset` itself is not serde: its arrays are written flat, row-major);
//! and what it knows of stored objects it could not load ([`Unavailable`]).

use std::borrow::Cow;

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::nn::data::FeatureStats;
use crate::nn::{Dataset, FitSummary, Model, ModelSpec, Targets};

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
    /// How the fit that made it ended ([`FitSummary::default`] for imported weights, which no
    /// fit made). Flattened, so the stored record keeps the field names it always had.
    #[serde(flatten)]
    pub fit: FitSummary,
    /// Whether class labels are answered as JSON numbers.
    #[serde(default)]
    pub numeric_labels: bool,
}

impl VersionInfo {
    /// The facts of a version of model `model` made by no job (imported weights): no job, no
    /// dataset, no epochs, metrics unknown. `version` and `created_at` are set when it is
    /// added.
    #[must_use]
    pub fn without_training(model: Uuid, numeric_labels: bool) -> Self {
        Self {
            model,
            version: 0,
            job: None,
            dataset: None,
            created_at: String::new(),
            fit: FitSummary::default(),
            numeric_labels,
        }
    }
}

/// A trained version: its record and the model predictions run on.
#[derive(Debug)]
pub struct Version {
    /// The record.
    pub info: VersionInfo,
    /// The trained network, shared with every prediction in flight.
    pub model: std::sync::Arc<Model>,
}

/// A version's record as stored: the facts and the hash of its weights file, which is
/// checked before the weights are parsed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredVersion {
    #[serde(flatten)]
    pub info: VersionInfo,
    /// Hex SHA-256 of `<v>.safetensors`.
    pub weights_sha256: String,
    /// Its length in bytes.
    pub weights_bytes: u64,
}

/// A version whose files are stored but cannot be served: TF Serving's UNAVAILABLE.
#[derive(Clone, Debug, PartialEq)]
pub struct UnavailableVersion {
    /// Its number (from the file name when the record itself is unreadable).
    pub version: u32,
    /// The record, when it could be read (the weights could not).
    pub info: Option<VersionInfo>,
    /// Why it cannot be served.
    pub reason: String,
}

/// A model in memory: its record and its versions, oldest first.
#[derive(Clone, Debug)]
pub struct ModelEntry {
    /// The record.
    pub record: ModelRecord,
    /// Trained versions that serve, in order.
    pub versions: Vec<std::sync::Arc<Version>>,
    /// Versions whose stored files could not be loaded, in order. Their numbers stay taken.
    pub unavailable: Vec<UnavailableVersion>,
}

/// What kind of object a stored file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// `datasets/<id>.json`
    Dataset,
    /// `models/<id>.json`
    Model,
    /// `versions/<model id>/<v>.json` and `.safetensors`
    Version,
    /// `jobs/<id>.json`
    Job,
}

impl ObjectKind {
    /// The name as in JSON and error messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Dataset => "dataset",
            ObjectKind::Model => "model",
            ObjectKind::Version => "version",
            ObjectKind::Job => "job",
        }
    }
}

/// A stored object that could not be loaded: its file stays where it is (nothing a user
/// stored is ever deleted automatically), and the API answers for its id with the reason.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unavailable {
    /// What it is.
    pub kind: ObjectKind,
    /// Its id as the file name gives it (`<model id>/<v>` for a version).
    pub id: String,
    /// The file, relative to the data directory.
    pub file: String,
    /// Why it cannot be loaded.
    pub reason: String,
}

impl ModelEntry {
    /// The highest version number taken, by a serving or an unavailable version.
    #[must_use]
    pub fn last_version_number(&self) -> u32 {
        let served = self.versions.last().map_or(0, |v| v.info.version);
        let broken = self
            .unavailable
            .iter()
            .map(|u| u.version)
            .max()
            .unwrap_or(0);
        served.max(broken)
    }

    /// The unavailable version `v`, if it is one.
    #[must_use]
    pub fn unavailable_version(&self, v: u32) -> Option<&UnavailableVersion> {
        self.unavailable.iter().find(|u| u.version == v)
    }

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

/// A [`DatasetFile`] to write: the same fields, borrowing the dataset's arrays rather than
/// copying them (the features of the `bench/serve.sh` set are 19 MB).
#[derive(Debug, Serialize)]
pub(crate) struct DatasetFileRef<'a> {
    info: &'a DatasetInfo,
    rows: usize,
    columns: usize,
    features: Cow<'a, [f32]>,
    feature_names: &'a [String],
    targets: TargetsFileRef<'a>,
}

/// [`TargetsFile`] to write, borrowing.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum TargetsFileRef<'a> {
    Classes {
        indices: &'a [u32],
        names: &'a [String],
    },
    MultiLabel {
        columns: usize,
        values: Cow<'a, [f32]>,
        names: &'a [String],
    },
    Values {
        columns: usize,
        values: Cow<'a, [f32]>,
        names: &'a [String],
    },
}

/// The values of `a`, row-major: borrowed when they lie so in memory (always, for an array
/// made from rows), copied otherwise.
fn flat(a: &Array2<f32>) -> Cow<'_, [f32]> {
    a.as_slice()
        .map_or_else(|| Cow::Owned(a.iter().copied().collect()), Cow::Borrowed)
}

impl<'a> DatasetFileRef<'a> {
    pub fn new(info: &'a DatasetInfo, data: &'a Dataset) -> Self {
        let targets = match &data.targets {
            Targets::Classes { indices, names } => TargetsFileRef::Classes { indices, names },
            Targets::MultiLabel { values, names } => TargetsFileRef::MultiLabel {
                columns: values.ncols(),
                values: flat(values),
                names,
            },
            Targets::Values { values, names } => TargetsFileRef::Values {
                columns: values.ncols(),
                values: flat(values),
                names,
            },
        };
        Self {
            info,
            rows: data.rows(),
            columns: data.n_features(),
            features: flat(&data.features),
            feature_names: &data.feature_names,
            targets,
        }
    }
}

impl DatasetFile {
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    /// A version record as written before the fit's numbers were one flattened type, in that
    /// code's field order; `test` is null and the floats need all 17 digits.
    fn stored_before_fit_summary() -> Value {
        json!({
            "model": "0190a4d2-7c1e-7b3a-9f00-000000000001",
            "version": 3,
            "job": "0190a4d2-7c1e-7b3a-9f00-000000000002",
            "dataset": "0190a4d2-7c1e-7b3a-9f00-000000000003",
            "created_at": "2025-01-02T03:04:05Z",
            "best_epoch": 17,
            "epochs_run": 22,
            "stopped_early": true,
            "train": {"loss": 0.123_456_789_012_345_67, "accuracy": 0.975},
            "validation": {"loss": 0.318_309_886_183_712_5, "accuracy": 0.9},
            "test": null,
            "numeric_labels": true,
            "weights_sha256": "ab".repeat(32),
            "weights_bytes": 1234
        })
    }

    #[test]
    fn a_version_record_of_the_old_layout_reads_and_writes_back_the_same_fields() {
        let old = stored_before_fit_summary();

        let stored: StoredVersion = serde_json::from_str(&old.to_string()).expect("reads");
        let written = serde_json::to_value(&stored).expect("writes");

        assert_eq!(stored.info.fit.best_epoch, 17);
        assert_eq!(stored.info.fit.epochs_run, 22);
        assert!(stored.info.fit.stopped_early);
        assert_eq!(stored.info.fit.train.accuracy, Some(0.975));
        assert_eq!(stored.info.fit.test, None);
        // Same names and values (serde_json's map compares without regard to order).
        assert_eq!(written, old);
    }

    #[test]
    fn a_record_without_numeric_labels_still_reads() {
        let mut old = stored_before_fit_summary();
        old.as_object_mut()
            .expect("object")
            .remove("numeric_labels");

        let stored: StoredVersion = serde_json::from_str(&old.to_string()).expect("reads");

        assert!(!stored.info.numeric_labels);
        assert_eq!(
            stored.info.fit.validation.map(|m| m.loss),
            Some(0.318_309_886_183_712_5)
        );
    }
}
