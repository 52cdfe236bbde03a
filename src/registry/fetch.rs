//! MINIMAL, for the shared job queue (issue 25, phase 2) until the change feed applies other
//! replicas' writes to this registry: a replica that claims a job whose model or dataset was
//! created on another replica, after this one loaded the store, reads them from the store into
//! its cache here. The change feed makes this a rare fallback (a claim that beats the feed).

use std::sync::Arc;

use uuid::Uuid;

use super::keys::{dataset_key, model_key};
use super::records::{DatasetEntry, DatasetFile, ModelEntry, ModelRecord, ObjectKind};
use super::{Registry, RegistryError};

impl Registry {
    /// The dataset `id`, from the cache or else from the store (then cached).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] when the store has none either, [`RegistryError::Corrupt`]
    /// when its record cannot be read.
    pub fn fetch_dataset(&self, id: Uuid) -> Result<Arc<DatasetEntry>, RegistryError> {
        if let Ok(found) = self.dataset(id) {
            return Ok(found);
        }
        let key = dataset_key(id);
        let corrupt = |message: String| RegistryError::Corrupt {
            key: key.clone(),
            message,
        };
        let file = self
            .read_record::<DatasetFile>(ObjectKind::Dataset, &key)
            .map_err(corrupt)?
            .ok_or_else(|| RegistryError::NotFound {
                what: "dataset",
                id: id.to_string(),
            })?;
        let (info, data) = file.into_dataset().map_err(corrupt)?;
        let entry = Arc::new(DatasetEntry::new(info, data));
        let mut inner = self.write();
        Ok(Arc::clone(inner.datasets.entry(id).or_insert(entry)))
    }

    /// The model `id` with its versions, from the cache or else from the store (then cached).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] when the store has none either, [`RegistryError::Corrupt`]
    /// when it cannot be read or its name is held here by another model.
    pub fn fetch_model(&self, id: Uuid) -> Result<Arc<ModelEntry>, RegistryError> {
        if let Ok(found) = self.model(&id.to_string()) {
            return Ok(found);
        }
        let key = model_key(id);
        let corrupt = |message: String| RegistryError::Corrupt {
            key: key.clone(),
            message,
        };
        let record = self
            .read_record::<ModelRecord>(ObjectKind::Model, &key)
            .map_err(corrupt)?
            .ok_or_else(|| RegistryError::NotFound {
                what: "model",
                id: id.to_string(),
            })?;
        self.check_spec(&record.spec)?;
        let (versions, unavailable) = self.load_versions(&record)?;
        let mut inner = self.write();
        if let Some(found) = inner.models.get(&id) {
            return Ok(Arc::clone(found));
        }
        if let Some(holder) = inner.names.get(&record.name) {
            return Err(corrupt(format!(
                "its name '{}' is held here by model {holder}",
                record.name
            )));
        }
        inner.names.insert(record.name.clone(), id);
        inner.writers.insert(id, Arc::default());
        let entry = Arc::new(ModelEntry {
            record,
            versions,
            unavailable,
        });
        inner.models.insert(id, Arc::clone(&entry));
        Ok(entry)
    }
}
