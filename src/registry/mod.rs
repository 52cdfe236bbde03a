//! The registry: datasets, model specs and trained versions, in memory and written through to
//! a [`Store`] (the [`crate::store`] layer below).
//!
//! Everything lives in `Arc` snapshots behind one `std::sync::RwLock` whose sections are short
//! and never span an `.await` or a computation: a prediction clones the `Arc<Model>` of a
//! version out and drops the guard before computing, so it never waits on training (which
//! holds no registry lock at all while it runs).
//!
//! What one model's files go through is ordered, so that what a client was answered is what
//! the store holds, whatever runs beside it. A new model's name is reserved under the lock
//! (a duplicate is caught atomically), its record written, and only then is the model served:
//! a delete that comes meanwhile does not find it (404), rather than removing a file that the
//! create then writes. A model's versions are written, and its files removed, under a lock of
//! its own (`Inner::writers`, held on a blocking thread, never across an `.await`): a delete
//! waits for the version being written and removes it too, and a version whose model is gone
//! is never written. A failed write is undone and reported, so nothing is acknowledged that
//! is not stored, and nothing is left that was refused.
//!
//! Keys: `datasets/<id>.json`, `models/<id>.json`, `versions/<model id>/<v>.json` and
//! `versions/<model id>/<v>.safetensors` (weights are written before their record, and a
//! version is loaded only when its record exists). Every JSON record is written in a
//! checksummed [`envelope`]; a version's record holds the SHA-256 of its weights. The store
//! methods are blocking: call the writing methods from a blocking thread.
//!
//! Loading never fails on one bad object: a file that is truncated, corrupt (checksum), of
//! an unknown format version or over `--max-stored-file-bytes` makes that object
//! [`Unavailable`] with the reason (logged, listed, and answered for its id), its file is
//! left in place, and everything else loads and serves.

pub mod csv;
mod fetch;
mod follow;
pub mod ingest;
mod keys;
mod load;
mod models;
#[cfg(test)]
mod models_tests;
mod orphans;
pub mod records;
mod weights;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use uuid::Uuid;

use crate::config::{Limit, Limits};
use crate::nn::NnError;
use crate::store::{clock, envelope, Store, StoreError};
pub use ingest::Ingested;
pub(crate) use keys::stem;
use keys::{dataset_key, version_key};
pub use models::MAX_NAME_LEN as MAX_MODEL_NAME_LEN;
pub use orphans::orphan_reason;
pub use records::{
    DatasetEntry, DatasetInfo, DatasetSource, ModelEntry, ModelRecord, ObjectKind, Unavailable,
    UnavailableVersion, Version, VersionInfo,
};
use records::{DatasetFile, DatasetFileRef};

/// Everything that can go wrong in the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such dataset, model or version.
    #[error("no {what} '{id}'")]
    NotFound {
        /// `dataset`, `model` or `version`.
        what: &'static str,
        /// What was asked for.
        id: String,
    },
    /// Another model has this name.
    #[error("a model named '{0}' exists already")]
    NameTaken(String),
    /// The model has no trained version to predict with.
    #[error("model '{0}' has no trained version yet")]
    NotTrained(String),
    /// A value in the request is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// Path of the value.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A value exceeds a configured limit.
    #[error("{field}: {given} exceeds the limit {max} ({limit})")]
    Limit {
        /// Path of the value.
        field: String,
        /// Which limit.
        limit: Limit,
        /// Its value in force.
        max: String,
        /// What was asked for.
        given: String,
    },
    /// The numerical core refused something.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object exists in the store but cannot be loaded.
    #[error("{what} '{id}' is unavailable: {reason}")]
    Unavailable {
        /// `dataset`, `model`, `version` or `job`.
        what: &'static str,
        /// What was asked for.
        id: String,
        /// Why it cannot be loaded.
        reason: String,
    },
    /// A stored record cannot be read back.
    #[error("stored record `{key}` is unreadable: {message}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why.
        message: String,
    },
}

impl RegistryError {
    /// An invalid value.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A value over a limit.
    pub fn limit(
        field: impl Into<String>,
        limit: Limit,
        max: impl fmt::Display,
        given: impl fmt::Display,
    ) -> Self {
        Self::Limit {
            field: field.into(),
            limit,
            max: max.to_string(),
            given: given.to_string(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    datasets: BTreeMap<Uuid, Arc<DatasetEntry>>,
    models: BTreeMap<Uuid, Arc<ModelEntry>>,
    names: HashMap<String, Uuid>,
    /// Datasets and models that could not be loaded, by key.
    unavailable: BTreeMap<String, Unavailable>,
    /// Versions whose model has no record, by model ([`orphans`]).
    orphans: BTreeMap<Uuid, Vec<Unavailable>>,
    /// Per served model, the lock its files are written and removed under (see
    /// [`Registry::add_version`] and [`Registry::delete_model`]).
    writers: HashMap<Uuid, Arc<Mutex<()>>>,
}

/// Takes a model's writer lock. It guards no data, only the order of writes, so a panic
/// while it was held leaves nothing to repair.
fn lock_writer(writer: &Mutex<()>) -> MutexGuard<'_, ()> {
    writer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The registry. Share it as `Arc<Registry>`.
#[derive(Debug)]
pub struct Registry {
    inner: RwLock<Inner>,
    store: Arc<dyn Store>,
    limits: Limits,
}

/// A page of a listing: the items and the total.
#[derive(Debug)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// How many there are in all.
    pub total: usize,
}

fn page<T: Clone>(all: impl ExactSizeIterator<Item = T>, offset: usize, limit: usize) -> Page<T> {
    let total = all.len();
    Page {
        items: all.skip(offset).take(limit).collect(),
        total,
    }
}

/// `value` as a checksummed record of `kind` ([`envelope::seal`]).
pub(crate) fn seal<T: serde::Serialize>(
    kind: ObjectKind,
    value: &T,
) -> Result<Vec<u8>, RegistryError> {
    envelope::seal(kind.name(), value).map_err(|e| RegistryError::Corrupt {
        key: "(new record)".to_owned(),
        message: e.to_string(),
    })
}

/// Logs an object that cannot be loaded and says what is known of it.
pub(crate) fn unavailable(kind: ObjectKind, id: &str, key: &str, reason: String) -> Unavailable {
    tracing::error!(
        kind = kind.name(),
        id,
        file = key,
        %reason,
        "a stored object cannot be loaded: it is unavailable and its file is left in place"
    );
    Unavailable {
        kind,
        id: id.to_owned(),
        file: key.to_owned(),
        reason,
    }
}

impl Registry {
    /// An empty registry over `store`, with the limits specs and data are checked against.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            store,
            limits,
        }
    }

    /// A registry over `store` with everything it holds loaded back.
    ///
    /// # Errors
    /// [`RegistryError`] when the store cannot be read or a record is corrupt.
    pub fn load(store: Arc<dyn Store>, limits: Limits) -> Result<Self, RegistryError> {
        let registry = Self::new(store, limits);
        registry.load_datasets()?;
        registry.load_models()?;
        registry.load_orphans();
        Ok(registry)
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The store this registry writes to, shared with the job runner.
    #[must_use]
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // Every section leaves `Inner` consistent at each step, so a poisoned lock is usable.
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The writer lock of the served model `id` ([`lock_writer`]).
    fn writer(&self, id: Uuid) -> Option<Arc<Mutex<()>>> {
        self.read().writers.get(&id).cloned()
    }

    /// The checksummed record of `kind` under `key`: `Ok(None)` when there is none, and the
    /// reason it cannot be read otherwise (too large, unreadable, corrupt, unknown format).
    pub(crate) fn read_record<T: serde::de::DeserializeOwned>(
        &self,
        kind: ObjectKind,
        key: &str,
    ) -> Result<Option<T>, String> {
        let bytes = match self.store.get(key) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(StoreError::TooLarge { size, max, .. }) => {
                return Err(format!("oversized: the file has {size} bytes, over the limit of {max} (raise it with --max-stored-file-bytes / MLP_LAB_MAX_STORED_FILE_BYTES)"))
            }
            Err(StoreError::Io { source, .. }) => return Err(format!("cannot be read: {source}")),
            Err(error) => return Err(error.to_string()),
        };
        envelope::open(kind.name(), &bytes).map(Some)
    }

    fn load_datasets(&self) -> Result<(), RegistryError> {
        for key in self.store.list("datasets/")? {
            if key.ends_with(".json") {
                self.load_dataset(&key);
            }
        }
        Ok(())
    }

    /// Loads the dataset stored under `key`; one that cannot be loaded is made unavailable
    /// with its reason, and a missing one is skipped.
    fn load_dataset(&self, key: &str) {
        let id = stem(key).to_owned();
        let loaded = self
            .read_record::<DatasetFile>(ObjectKind::Dataset, key)
            .and_then(|file| file.map(DatasetFile::into_dataset).transpose())
            .and_then(|found| match found {
                Some((info, _)) if info.id.to_string() != id => Err(format!(
                    "the record is of dataset {}, not of the {id} its file name says",
                    info.id
                )),
                other => Ok(other),
            });
        match loaded {
            Ok(Some((info, data))) => {
                let entry = Arc::new(DatasetEntry::new(info, data));
                self.write().datasets.insert(entry.info.id, entry);
            }
            Ok(None) => {}
            Err(reason) => {
                let gone = unavailable(ObjectKind::Dataset, &id, key, reason);
                self.write().unavailable.insert(key.to_owned(), gone);
            }
        }
    }

    /// Every stored dataset and model (with its versions) that could not be loaded, and
    /// every version whose model has no record, by file.
    #[must_use]
    pub fn unavailable(&self) -> Vec<Unavailable> {
        let inner = self.read();
        let mut all: Vec<Unavailable> = inner.unavailable.values().cloned().collect();
        all.extend(inner.orphans.values().flatten().cloned());
        for entry in inner.models.values() {
            let id = entry.record.id;
            all.extend(entry.unavailable.iter().map(|u| Unavailable {
                kind: ObjectKind::Version,
                id: format!("{id}/{}", u.version),
                file: version_key(id, u.version, "json"),
                reason: u.reason.clone(),
            }));
        }
        all.sort_by(|a, b| a.file.cmp(&b.file));
        all
    }

    /// The error for an id that is not loaded: [`RegistryError::Unavailable`] when its file
    /// is stored but unreadable, [`RegistryError::NotFound`] otherwise.
    fn missing(&self, what: &'static str, key: &str, id: String) -> RegistryError {
        match self.read().unavailable.get(key) {
            Some(u) => RegistryError::Unavailable {
                what,
                id,
                reason: u.reason.clone(),
            },
            None => RegistryError::NotFound { what, id },
        }
    }

    /// Adds a dataset and writes it through.
    ///
    /// # Errors
    /// [`RegistryError::Store`] when it cannot be stored.
    pub fn add_dataset(
        &self,
        name: Option<String>,
        source: DatasetSource,
        ingested: Ingested,
    ) -> Result<Arc<DatasetEntry>, RegistryError> {
        let info = DatasetInfo {
            id: Uuid::now_v7(),
            name,
            created_at: clock::now_rfc3339(),
            source,
            numeric_labels: ingested.numeric_labels,
        };
        // A dataset's record is its data as JSON, 2.5 times the size of its `f32`s: not even
        // built for a store that would drop it.
        if self.store.keeps_values() {
            let bytes = seal(
                ObjectKind::Dataset,
                &DatasetFileRef::new(&info, &ingested.data),
            )?;
            self.store.put(&dataset_key(info.id), &bytes)?;
        }
        let entry = Arc::new(DatasetEntry::new(info, ingested.data));
        self.write()
            .datasets
            .insert(entry.info.id, Arc::clone(&entry));
        Ok(entry)
    }

    /// The dataset `id`.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`].
    pub fn dataset(&self, id: Uuid) -> Result<Arc<DatasetEntry>, RegistryError> {
        let found = self.read().datasets.get(&id).cloned();
        found.ok_or_else(|| self.missing("dataset", &dataset_key(id), id.to_string()))
    }

    /// A page of datasets, oldest first.
    #[must_use]
    pub fn datasets(&self, offset: usize, limit: usize) -> Page<Arc<DatasetEntry>> {
        page(self.read().datasets.values().cloned(), offset, limit)
    }

    /// Deletes the dataset `id` (jobs already training on it keep their copy).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], or [`RegistryError::Store`] (the dataset is then kept).
    ///
    /// An unavailable dataset can be deleted too: that is how its file is removed.
    pub fn delete_dataset(&self, id: Uuid) -> Result<(), RegistryError> {
        let key = dataset_key(id);
        let removed = self.write().datasets.remove(&id);
        let Some(entry) = removed else {
            let gone = self.write().unavailable.remove(&key);
            let Some(gone) = gone else {
                return Err(RegistryError::NotFound {
                    what: "dataset",
                    id: id.to_string(),
                });
            };
            if let Err(error) = self.store.delete(&key) {
                self.write().unavailable.insert(key, gone);
                return Err(error.into());
            }
            return Ok(());
        };
        if let Err(error) = self.store.delete(&key) {
            self.write().datasets.insert(id, entry);
            return Err(error.into());
        }
        Ok(())
    }
}
