//! The registry: datasets, model specs and trained versions, in memory and written through to
//! a [`Store`].
//!
//! Everything lives in `Arc` snapshots behind one `std::sync::RwLock` whose sections are short
//! and never span an `.await` or a computation: a prediction clones the `Arc<Model>` of a
//! version out and drops the guard before computing, so it never waits on training (which
//! holds no registry lock at all while it runs). Changes are made in memory first, under the
//! lock (so that a duplicate name is caught atomically), then written to the store; a failed
//! write is rolled back and reported, so nothing is acknowledged that is not stored.
//!
//! Keys: `datasets/<id>.json`, `models/<id>.json`, `versions/<model id>/<v>.json` and
//! `versions/<model id>/<v>.safetensors` (weights are written before their record, and a
//! version is loaded only when its record exists). The store methods are blocking: call the
//! writing methods from a blocking thread.

pub mod clock;
pub mod csv;
pub mod envelope;
pub mod ingest;
mod models;
pub mod records;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use uuid::Uuid;

use crate::config::{Limit, Limits};
use crate::nn::NnError;
pub use ingest::Ingested;
use records::DatasetFile;
pub use records::{
    DatasetEntry, DatasetInfo, DatasetSource, ModelEntry, ModelRecord, Version, VersionInfo,
};
pub use store::{FileStore, MemoryStore, Store, StoreError};

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

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, RegistryError> {
    serde_json::to_vec(value).map_err(|e| RegistryError::Corrupt {
        key: "(new record)".to_owned(),
        message: e.to_string(),
    })
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

    pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, RegistryError> {
        let Some(bytes) = self.store.get(key)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RegistryError::Corrupt {
                key: key.to_owned(),
                message: e.to_string(),
            })
    }

    fn load_datasets(&self) -> Result<(), RegistryError> {
        for key in self.store.list("datasets/")? {
            let Some(file) = self.read_json::<DatasetFile>(&key)? else {
                continue;
            };
            let (info, data) = file
                .into_dataset()
                .map_err(|message| RegistryError::Corrupt {
                    key: key.clone(),
                    message,
                })?;
            let entry = Arc::new(DatasetEntry::new(info, data));
            self.write().datasets.insert(entry.info.id, entry);
        }
        Ok(())
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
        let bytes = to_json(&DatasetFile::new(&info, &ingested.data))?;
        self.store
            .put(&format!("datasets/{}.json", info.id), &bytes)?;
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
        self.read()
            .datasets
            .get(&id)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound {
                what: "dataset",
                id: id.to_string(),
            })
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
    pub fn delete_dataset(&self, id: Uuid) -> Result<(), RegistryError> {
        let entry = self
            .write()
            .datasets
            .remove(&id)
            .ok_or_else(|| RegistryError::NotFound {
                what: "dataset",
                id: id.to_string(),
            })?;
        if let Err(error) = self.store.delete(&format!("datasets/{id}.json")) {
            self.write().datasets.insert(id, entry);
            return Err(error.into());
        }
        Ok(())
    }
}
