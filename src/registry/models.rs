//! Model specs and their trained versions.

use std::sync::Arc;

use uuid::Uuid;

use super::records::{ModelEntry, ModelRecord, Version, VersionInfo};
use super::{clock, page, to_json, Page, Registry, RegistryError};
use crate::config::Limit;
use crate::nn::serialize::{from_safetensors, to_safetensors};
use crate::nn::{Model, ModelSpec, NetworkLimits};

/// Longest model name, in bytes.
pub const MAX_NAME_LEN: usize = 100;

fn check_name(name: &str) -> Result<(), RegistryError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars {
        return Err(RegistryError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '-', '_', '.'"),
        ));
    }
    if Uuid::parse_str(name).is_ok() {
        return Err(RegistryError::invalid(
            "name",
            "must not be a UUID: names and ids are interchangeable in paths",
        ));
    }
    Ok(())
}

fn model_key(id: Uuid) -> String {
    format!("models/{id}.json")
}

fn version_key(model: Uuid, version: u32, ext: &str) -> String {
    format!("versions/{model}/{version:08}.{ext}")
}

impl Registry {
    /// Checks `spec` against the configured network limits (naming the setting that raises
    /// the one hit) and then everything else `nn` checks. Returns the parameter count.
    ///
    /// # Errors
    /// [`RegistryError::Limit`] or [`RegistryError::Nn`] naming the field.
    pub fn check_spec(&self, spec: &ModelSpec) -> Result<u64, RegistryError> {
        let l = &self.limits;
        if spec.layers.len() > l.max_layers {
            return Err(RegistryError::limit(
                "layers",
                Limit::Layers,
                l.max_layers,
                spec.layers.len(),
            ));
        }
        if let Some((i, &n)) = spec
            .layers
            .iter()
            .enumerate()
            .find(|&(_, &n)| n > l.max_units_per_layer)
        {
            let field = format!("layers[{i}]");
            return Err(RegistryError::limit(
                field,
                Limit::UnitsPerLayer,
                l.max_units_per_layer,
                n,
            ));
        }
        let count = spec.parameter_count().map(|c| c as u64);
        match count {
            Some(c) if c <= l.max_parameters => {}
            _ => {
                let given = count.map_or_else(|| "more than 2^64".to_owned(), |c| c.to_string());
                return Err(RegistryError::limit(
                    "layers",
                    Limit::Parameters,
                    l.max_parameters,
                    given,
                ));
            }
        }
        spec.validate(&NetworkLimits {
            max_layers: l.max_layers,
            max_units: l.max_units_per_layer,
            max_parameters: usize::try_from(l.max_parameters).unwrap_or(usize::MAX),
        })?;
        Ok(count.unwrap_or(0))
    }

    /// Adds a model spec under a unique `name` and writes it through.
    ///
    /// # Errors
    /// [`RegistryError::NameTaken`], an invalid name or spec, or a store failure.
    pub fn create_model(
        &self,
        name: String,
        spec: ModelSpec,
    ) -> Result<Arc<ModelEntry>, RegistryError> {
        check_name(&name)?;
        let parameter_count = self.check_spec(&spec)?;
        let record = ModelRecord {
            id: Uuid::now_v7(),
            name,
            spec,
            parameter_count,
            created_at: clock::now_rfc3339(),
        };
        let bytes = to_json(&record)?;
        let entry = Arc::new(ModelEntry {
            record,
            versions: Vec::new(),
        });
        let id = entry.record.id;
        {
            let mut inner = self.write();
            if inner.names.contains_key(&entry.record.name) {
                return Err(RegistryError::NameTaken(entry.record.name.clone()));
            }
            inner.names.insert(entry.record.name.clone(), id);
            inner.models.insert(id, Arc::clone(&entry));
        }
        if let Err(error) = self.store.put(&model_key(id), &bytes) {
            let mut inner = self.write();
            inner.models.remove(&id);
            inner.names.remove(&entry.record.name);
            return Err(error.into());
        }
        Ok(entry)
    }

    /// The model with this id or name.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`].
    pub fn model(&self, id_or_name: &str) -> Result<Arc<ModelEntry>, RegistryError> {
        let inner = self.read();
        let id = Uuid::parse_str(id_or_name)
            .ok()
            .or_else(|| inner.names.get(id_or_name).copied());
        id.and_then(|id| inner.models.get(&id).cloned())
            .ok_or_else(|| RegistryError::NotFound {
                what: "model",
                id: id_or_name.to_owned(),
            })
    }

    /// A page of models, oldest first.
    #[must_use]
    pub fn models(&self, offset: usize, limit: usize) -> Page<Arc<ModelEntry>> {
        page(self.read().models.values().cloned(), offset, limit)
    }

    /// The trained model of `version` (the latest when `None`) of a model: the `Arc` is
    /// cloned out and the lock released before the caller computes anything.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] or [`RegistryError::NotTrained`].
    pub fn version(
        &self,
        id_or_name: &str,
        version: Option<u32>,
    ) -> Result<(Arc<ModelEntry>, Arc<Version>), RegistryError> {
        let entry = self.model(id_or_name)?;
        if entry.versions.is_empty() {
            return Err(RegistryError::NotTrained(entry.record.name.clone()));
        }
        let found = entry
            .version(version)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound {
                what: "version",
                id: format!("{id_or_name}/versions/{}", version.unwrap_or(0)),
            })?;
        Ok((entry, found))
    }

    /// Deletes a model with its versions.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] or a store failure (the record is then gone from memory
    /// and may remain on disk until the next delete).
    pub fn delete_model(&self, id_or_name: &str) -> Result<Arc<ModelEntry>, RegistryError> {
        let entry = self.model(id_or_name)?;
        let id = entry.record.id;
        {
            let mut inner = self.write();
            let removed = inner
                .models
                .remove(&id)
                .ok_or_else(|| RegistryError::NotFound {
                    what: "model",
                    id: id_or_name.to_owned(),
                })?;
            inner.names.remove(&removed.record.name);
        }
        // The record goes first: without it, leftover version files are never loaded.
        self.store.delete(&model_key(id))?;
        for key in self.store.list(&format!("versions/{id}/"))? {
            self.store.delete(&key)?;
        }
        Ok(entry)
    }

    /// Adds a trained model as the next version of model `id` and writes it through
    /// (weights as safetensors first, then the record). `info.version` is assigned here.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] when the model was deleted meanwhile, or a store failure.
    pub fn add_version(
        &self,
        id: Uuid,
        model: Model,
        mut info: VersionInfo,
    ) -> Result<Arc<Version>, RegistryError> {
        let weights = to_safetensors(&model)?;
        let not_found = || RegistryError::NotFound {
            what: "model",
            id: id.to_string(),
        };
        let version = {
            let mut inner = self.write();
            let current = inner.models.get(&id).ok_or_else(not_found)?;
            let mut next = ModelEntry::clone(current);
            info.version = next.versions.last().map_or(1, |v| v.info.version + 1);
            info.created_at = clock::now_rfc3339();
            let version = Arc::new(Version {
                info,
                model: Arc::new(model),
            });
            next.versions.push(Arc::clone(&version));
            inner.models.insert(id, Arc::new(next));
            version
        };
        let v = version.info.version;
        let written = to_json(&version.info).and_then(|record| {
            self.store
                .put(&version_key(id, v, "safetensors"), &weights)?;
            self.store.put(&version_key(id, v, "json"), &record)?;
            Ok(())
        });
        if let Err(error) = written {
            let mut inner = self.write();
            if let Some(current) = inner.models.get(&id) {
                let mut next = ModelEntry::clone(current);
                next.versions.retain(|x| x.info.version != v);
                inner.models.insert(id, Arc::new(next));
            }
            return Err(error);
        }
        Ok(version)
    }

    pub(super) fn load_models(&self) -> Result<(), RegistryError> {
        for key in self.store.list("models/")? {
            let Some(record) = self.read_json::<ModelRecord>(&key)? else {
                continue;
            };
            let mut versions = Vec::new();
            for vkey in self.store.list(&format!("versions/{}/", record.id))? {
                if !vkey.ends_with(".json") {
                    continue;
                }
                let Some(info) = self.read_json::<VersionInfo>(&vkey)? else {
                    continue;
                };
                let wkey = version_key(record.id, info.version, "safetensors");
                let bytes = self
                    .store
                    .get(&wkey)?
                    .ok_or_else(|| RegistryError::Corrupt {
                        key: wkey.clone(),
                        message: "the weights of a recorded version are missing".to_owned(),
                    })?;
                let model = from_safetensors(&bytes).map_err(|e| RegistryError::Corrupt {
                    key: wkey,
                    message: e.to_string(),
                })?;
                versions.push(Arc::new(Version {
                    info,
                    model: Arc::new(model),
                }));
            }
            versions.sort_by_key(|v| v.info.version);
            let mut inner = self.write();
            inner.names.insert(record.name.clone(), record.id);
            inner
                .models
                .insert(record.id, Arc::new(ModelEntry { record, versions }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::nn::{Activation, Head};
    use crate::registry::MemoryStore;

    #[test]
    fn models_and_versions_survive_a_reload() {
        let store: Arc<dyn crate::registry::Store> = Arc::new(MemoryStore::new());
        let registry = Registry::new(Arc::clone(&store), Limits::default());
        let spec = ModelSpec::new(&[2, 3, 1], Activation::Tanh, Head::Sigmoid);
        let entry = registry
            .create_model("xor".into(), spec.clone())
            .expect("created");
        assert!(matches!(
            registry.create_model("xor".into(), spec.clone()),
            Err(RegistryError::NameTaken(_))
        ));
        let model = Model::new(spec, 1).expect("model");
        let info = VersionInfo {
            model: entry.record.id,
            version: 0,
            job: None,
            dataset: None,
            created_at: String::new(),
            best_epoch: 0,
            epochs_run: 0,
            stopped_early: false,
            train: crate::nn::Metrics::default(),
            validation: None,
            test: None,
            numeric_labels: true,
        };
        let v = registry
            .add_version(entry.record.id, model, info)
            .expect("added");
        assert_eq!(v.info.version, 1);

        let reloaded = Registry::load(store, Limits::default()).expect("loads");
        let (_, version) = reloaded.version("xor", None).expect("has a version");
        assert_eq!(version.info.version, 1);
        assert_eq!(*version.model, *v.model);
    }
}
