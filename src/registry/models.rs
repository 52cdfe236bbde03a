//! Model specs and their trained versions.

use std::sync::Arc;

use uuid::Uuid;

use super::keys::{model_key, version_key};
use super::records::{ModelEntry, ModelRecord, ObjectKind, StoredVersion, Version, VersionInfo};
use super::{lock_writer, page, seal, Page, Registry, RegistryError};
use crate::config::Limit;
use crate::nn::serialize::to_safetensors;
use crate::nn::{Model, ModelSpec, NetworkLimits};
use crate::store::clock;
use crate::store::envelope::sha256_hex;

/// Longest model name, in bytes.
pub const MAX_NAME_LEN: usize = 100;

/// Version numbers a new version tries, one after another, when other replicas sharing the
/// store took them first.
const MAX_NUMBER_TRIES: u32 = 64;

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
        let bytes = seal(ObjectKind::Model, &record)?;
        let entry = Arc::new(ModelEntry {
            record,
            versions: Vec::new(),
            unavailable: Vec::new(),
        });
        let id = entry.record.id;
        {
            let mut inner = self.write();
            if inner.names.contains_key(&entry.record.name) {
                return Err(RegistryError::NameTaken(entry.record.name.clone()));
            }
            // Reserved, not served: until its record is stored, the model is not found.
            inner.names.insert(entry.record.name.clone(), id);
        }
        let name = &entry.record.name;
        // Then claimed in the store, which decides between replicas that share it.
        let claimed = match self.store.claim_name(name, &id.to_string()) {
            Ok(None) => self.store.put(&model_key(id), &bytes).map_err(|error| {
                self.release_name(name, id);
                RegistryError::from(error)
            }),
            Ok(Some(_)) => Err(RegistryError::NameTaken(name.clone())),
            Err(error) => Err(error.into()),
        };
        if let Err(error) = claimed {
            self.write().names.remove(name);
            return Err(error);
        }
        let mut inner = self.write();
        inner.models.insert(id, Arc::clone(&entry));
        inner.writers.insert(id, Arc::default());
        Ok(entry)
    }

    /// The model with this id or name.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`].
    /// [`RegistryError::NotFound`], or [`RegistryError::Unavailable`] for the id of a model
    /// whose record cannot be loaded.
    pub fn model(&self, id_or_name: &str) -> Result<Arc<ModelEntry>, RegistryError> {
        let found = {
            let inner = self.read();
            let id = Uuid::parse_str(id_or_name)
                .ok()
                .or_else(|| inner.names.get(id_or_name).copied());
            id.and_then(|id| inner.models.get(&id).cloned())
        };
        found.ok_or_else(|| match Uuid::parse_str(id_or_name) {
            Ok(id) => self
                .orphaned(id)
                .unwrap_or_else(|| self.missing("model", &model_key(id), id_or_name.to_owned())),
            Err(_) => RegistryError::NotFound {
                what: "model",
                id: id_or_name.to_owned(),
            },
        })
    }

    /// A page of models, oldest first.
    #[must_use]
    pub fn models(&self, offset: usize, limit: usize) -> Page<Arc<ModelEntry>> {
        page(self.read().models.values().cloned(), offset, limit)
    }

    /// How many datasets, models and versions that serve are loaded, counted under the read
    /// lock without cloning anything: what `/metrics` shows.
    #[must_use]
    pub fn sizes(&self) -> (usize, usize, usize) {
        let inner = self.read();
        let versions = inner.models.values().map(|m| m.versions.len()).sum();
        (inner.datasets.len(), inner.models.len(), versions)
    }

    /// The trained model of `version` (the latest that serves when `None`) of a model: the
    /// `Arc` is cloned out and the lock released before the caller computes anything.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::NotTrained`], or
    /// [`RegistryError::Unavailable`] for a version whose stored files cannot be loaded.
    pub fn version(
        &self,
        id_or_name: &str,
        version: Option<u32>,
    ) -> Result<(Arc<ModelEntry>, Arc<Version>), RegistryError> {
        let entry = self.model(id_or_name)?;
        let broken = match version {
            Some(v) => entry.unavailable_version(v),
            None if entry.versions.is_empty() => entry.unavailable.last(),
            None => None,
        };
        if let Some(broken) = broken {
            return Err(RegistryError::Unavailable {
                what: "version",
                id: format!("{}/versions/{}", entry.record.name, broken.version),
                reason: broken.reason.clone(),
            });
        }
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

    /// Deletes a model with its versions: once it returns, no file of the model is left and
    /// none will be written (a version being written meanwhile is waited for and removed).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], or a store failure: the model is then served as before
    /// if its record could not be removed, and gone for good if only some of its version files
    /// could not be (those are then listed as orphans, see [`super::orphans`]).
    ///
    /// The id of an unavailable model can be deleted too: that removes its files.
    pub fn delete_model(&self, id_or_name: &str) -> Result<(), RegistryError> {
        let entry = match self.model(id_or_name) {
            Ok(entry) => entry,
            Err(RegistryError::Unavailable { .. }) => {
                let id = Uuid::parse_str(id_or_name).map_err(|_| RegistryError::NotFound {
                    what: "model",
                    id: id_or_name.to_owned(),
                })?;
                return self.delete_unavailable_model(id);
            }
            Err(error) => return Err(error),
        };
        let id = entry.record.id;
        let not_found = || RegistryError::NotFound {
            what: "model",
            id: id_or_name.to_owned(),
        };
        let writer = self.writer(id).ok_or_else(not_found)?;
        let _writing = lock_writer(&writer);
        // No version of it is being written now, and none starts once it is out of `models`.
        let removed = self.write().models.remove(&id).ok_or_else(not_found)?;
        // The record goes first: without it, leftover version files are never loaded.
        if let Err(error) = self.store.delete(&model_key(id)) {
            self.write().models.insert(id, removed);
            return Err(error.into());
        }
        {
            // The name stayed reserved until now, so no new model took it while this one
            // could still come back.
            let mut inner = self.write();
            inner.names.remove(&removed.record.name);
            inner.writers.remove(&id);
        }
        self.release_name(&removed.record.name, id);
        let versions = self
            .store
            .list(&format!("versions/{id}/"))
            .and_then(|keys| keys.iter().try_for_each(|key| self.store.delete(key)));
        if let Err(error) = versions {
            // The model is gone for good; what is left of its versions is listed, and
            // deleting its id again removes it.
            self.note_orphans(id);
            return Err(error.into());
        }
        Ok(())
    }

    /// Removes the files of a model whose record cannot be loaded, or whose versions are
    /// orphaned ([`super::orphans`]).
    fn delete_unavailable_model(&self, id: Uuid) -> Result<(), RegistryError> {
        let key = model_key(id);
        self.store.delete(&key)?;
        self.write().unavailable.remove(&key);
        self.delete_orphans(id)
    }

    /// Gives up the store's claim on a model's name (logged when that fails: a claim left
    /// behind by a model without a record is taken over after a while, see migration 2).
    fn release_name(&self, name: &str, id: Uuid) {
        if let Err(error) = self.store.release_name(name, &id.to_string()) {
            tracing::warn!(%error, %name, model = %id, "cannot release a model's name in the store");
        }
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
        info: VersionInfo,
    ) -> Result<Arc<Version>, RegistryError> {
        self.add_version_through(&*Arc::clone(&self.store), id, model, info)
    }

    /// [`Self::add_version`], writing the version's files through `store` rather than the
    /// registry's own: the job runner passes one that fences each write with a job's lease
    /// (`jobs::cluster::LeasedStore`), so a replica that lost the job stores no version.
    ///
    /// # Errors
    /// As [`Self::add_version`].
    pub fn add_version_through(
        &self,
        store: &dyn crate::store::Store,
        id: Uuid,
        model: Model,
        mut info: VersionInfo,
    ) -> Result<Arc<Version>, RegistryError> {
        let weights = to_safetensors(&model)?;
        let not_found = || RegistryError::NotFound {
            what: "model",
            id: id.to_string(),
        };
        // Under the model's writer lock: a delete waits for this version and removes it too,
        // and after a delete the model is gone from `writers` or `models`, so nothing is
        // written. The version is served only once its files are stored, so nothing is served
        // (or answered with this version number) that a crash could lose.
        let writer = self.writer(id).ok_or_else(not_found)?;
        let _writing = lock_writer(&writer);
        let (mut v, name) = {
            let inner = self.read();
            let current = inner.models.get(&id).ok_or_else(not_found)?;
            // Numbers of unavailable versions stay taken: their files are never overwritten.
            (current.last_version_number(), current.record.name.clone())
        };
        // The number is taken by writing the weights where none are: another replica sharing
        // the store may have taken the next one before this one heard of it.
        let mut keys;
        let mut tries = 0;
        loop {
            // A stored file name can claim any number; never wrap past the last one.
            v = v.checked_add(1).ok_or_else(|| {
                RegistryError::invalid(
                    "version",
                    format!("model '{name}' has used every version number"),
                )
            })?;
            keys = [
                version_key(id, v, "safetensors"),
                version_key(id, v, "json"),
            ];
            if store.put_new(&keys[0], &weights)? {
                break;
            }
            tries += 1;
            if tries == MAX_NUMBER_TRIES {
                return Err(RegistryError::Store(crate::store::StoreError::Unavailable(
                    format!("no free version number of model '{name}' after {tries} tries"),
                )));
            }
        }
        info.version = v;
        info.created_at = clock::now_rfc3339();
        let stored = StoredVersion {
            info: info.clone(),
            weights_sha256: sha256_hex(&weights),
            weights_bytes: weights.len() as u64,
        };
        let written = seal(ObjectKind::Version, &stored).and_then(|record| {
            store.put(&keys[1], &record)?;
            Ok(())
        });
        if let Err(error) = written {
            // Weights without their record are never loaded; they go at once all the same.
            for key in &keys {
                if let Err(error) = store.delete(key) {
                    tracing::warn!(%error, file = %key, "cannot remove a version's file after its write failed");
                }
            }
            return Err(error);
        }
        let mut inner = self.write();
        let Some(current) = inner.models.get(&id) else {
            // Not reached: the model leaves `models` only under its writer lock.
            drop(inner);
            for key in &keys {
                let _ = store.delete(key);
            }
            return Err(not_found());
        };
        let mut next = ModelEntry::clone(current);
        let version = Arc::new(Version {
            info,
            model: Arc::new(model),
        });
        // Versions stay in number order whichever write finished first.
        let at = next
            .versions
            .partition_point(|x| x.info.version < version.info.version);
        next.versions.insert(at, Arc::clone(&version));
        inner.models.insert(id, Arc::new(next));
        drop(inner);
        Ok(version)
    }
}
