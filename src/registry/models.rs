//! Model specs and their trained versions.

use std::sync::Arc;

use uuid::Uuid;

use super::keys::{model_key, version_key};
use super::records::{ModelEntry, ModelRecord, ObjectKind, StoredVersion, Version, VersionInfo};
use super::{page, seal, Page, Registry, RegistryError};
use crate::config::Limit;
use crate::nn::serialize::to_safetensors;
use crate::nn::{Model, ModelSpec, NetworkLimits};
use crate::store::clock;
use crate::store::envelope::sha256_hex;

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
            Ok(id) => self.missing("model", &model_key(id), id_or_name.to_owned()),
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

    /// Deletes a model with its versions.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] or a store failure (the record is then gone from memory
    /// and may remain on disk until the next delete).
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
        Ok(())
    }

    fn delete_unavailable_model(&self, id: Uuid) -> Result<(), RegistryError> {
        let key = model_key(id);
        self.store.delete(&key)?;
        self.write().unavailable.remove(&key);
        for key in self.store.list(&format!("versions/{id}/"))? {
            self.store.delete(&key)?;
        }
        Ok(())
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
        // The number is reserved under the lock; the files are written without it; only
        // then is the version published, so nothing is served (or answered with this
        // version number) that a crash could lose.
        let v = {
            let mut inner = self.write();
            let current = inner.models.get(&id).ok_or_else(not_found)?;
            // Numbers of unavailable versions stay taken: their files are never overwritten.
            // A stored file name can claim any number; never wrap past the last one.
            let taken = current
                .last_version_number()
                .max(inner.reserved_versions.get(&id).copied().unwrap_or(0));
            let v = taken.checked_add(1).ok_or_else(|| {
                RegistryError::invalid(
                    "version",
                    format!(
                        "model '{}' has used every version number",
                        current.record.name
                    ),
                )
            })?;
            inner.reserved_versions.insert(id, v);
            v
        };
        info.version = v;
        info.created_at = clock::now_rfc3339();
        let stored = StoredVersion {
            info: info.clone(),
            weights_sha256: sha256_hex(&weights),
            weights_bytes: weights.len() as u64,
        };
        let written = seal(ObjectKind::Version, &stored).and_then(|record| {
            self.store
                .put(&version_key(id, v, "safetensors"), &weights)?;
            self.store.put(&version_key(id, v, "json"), &record)?;
            Ok(())
        });
        let mut inner = self.write();
        if inner.reserved_versions.get(&id) == Some(&v) {
            inner.reserved_versions.remove(&id);
        }
        written?;
        let Some(current) = inner.models.get(&id) else {
            // Deleted while the files were written: they go too.
            drop(inner);
            let _ = self.store.delete(&version_key(id, v, "json"));
            let _ = self.store.delete(&version_key(id, v, "safetensors"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::nn::{Activation, Head};
    use crate::store::MemoryStore;

    #[test]
    fn models_and_versions_survive_a_reload() {
        let store: Arc<dyn crate::store::Store> = Arc::new(MemoryStore::new());
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
        let info = VersionInfo::without_training(entry.record.id, true);
        let v = registry
            .add_version(entry.record.id, model, info)
            .expect("added");
        assert_eq!(v.info.version, 1);

        let reloaded = Registry::load(store, Limits::default()).expect("loads");
        let (_, version) = reloaded.version("xor", None).expect("has a version");
        assert_eq!(version.info.version, 1);
        assert_eq!(*version.model, *v.model);
    }

    #[test]
    fn a_repaired_model_whose_name_was_taken_meanwhile_is_unavailable_and_the_newer_keeps_it() {
        let store: Arc<dyn crate::store::Store> = Arc::new(MemoryStore::new());
        let registry = Registry::new(Arc::clone(&store), Limits::default());
        let spec = ModelSpec::new(&[2, 3, 1], Activation::Tanh, Head::Sigmoid);
        let old = registry
            .create_model("a".into(), spec.clone())
            .expect("created");
        let key = model_key(old.record.id);
        let good = store.get(&key).expect("get").expect("stored");
        store.put(&key, b"{\"format\":").expect("damage");
        let reloaded = Registry::load(Arc::clone(&store), Limits::default()).expect("loads");
        let new = reloaded
            .create_model("a".into(), spec)
            .expect("the name is free");
        store.put(&key, &good).expect("repair");

        let again = Registry::load(Arc::clone(&store), Limits::default()).expect("loads");

        assert_eq!(again.model("a").expect("found").record.id, new.record.id);
        let unavailable = again.unavailable();
        assert_eq!(unavailable.len(), 1);
        assert_eq!(unavailable[0].id, old.record.id.to_string());
        assert!(
            unavailable[0].reason.contains("taken by model"),
            "{}",
            unavailable[0].reason
        );
    }

    /// A store whose writes of version records wait until the test lets them go.
    #[derive(Debug)]
    struct GatedStore {
        inner: MemoryStore,
        entered: std::sync::mpsc::SyncSender<()>,
        release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl crate::store::Store for GatedStore {
        fn put(&self, key: &str, bytes: &[u8]) -> Result<(), crate::store::StoreError> {
            if key.starts_with("versions/") && key.ends_with(".json") {
                self.entered.send(()).expect("the test waits");
                self.release.lock().expect("lock").recv().expect("released");
            }
            self.inner.put(key, bytes)
        }
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
            self.inner.get(key)
        }
        fn delete(&self, key: &str) -> Result<(), crate::store::StoreError> {
            self.inner.delete(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, crate::store::StoreError> {
            self.inner.list(prefix)
        }
        fn probe(&self) -> Result<(), crate::store::StoreError> {
            self.inner.probe()
        }
    }

    #[test]
    fn a_version_is_served_only_once_its_files_are_stored_and_numbers_are_not_shared() {
        let (entered_tx, entered) = std::sync::mpsc::sync_channel(2);
        let (release, release_rx) = std::sync::mpsc::channel();
        let store = Arc::new(GatedStore {
            inner: MemoryStore::new(),
            entered: entered_tx,
            release: std::sync::Mutex::new(release_rx),
        });
        let registry = Arc::new(Registry::new(store, Limits::default()));
        let spec = ModelSpec::new(&[2, 3, 1], Activation::Tanh, Head::Sigmoid);
        let id = registry
            .create_model("xor".into(), spec.clone())
            .expect("created")
            .record
            .id;
        let info = VersionInfo::without_training(id, true);
        let add = |seed: u64| {
            let registry = Arc::clone(&registry);
            let (model, info) = (Model::new(spec.clone(), seed).expect("model"), info.clone());
            std::thread::spawn(move || registry.add_version(id, model, info))
        };

        let first = add(1);
        entered.recv().expect("the first is writing its record");
        assert!(
            matches!(
                registry.version("xor", None),
                Err(RegistryError::NotTrained(_))
            ),
            "nothing is served while its record is being written"
        );
        let second = add(2);
        entered.recv().expect("the second is writing its record");
        release.send(()).expect("one");
        release.send(()).expect("two");
        let mut numbers =
            [first, second].map(|t| t.join().expect("no panic").expect("added").info.version);
        numbers.sort_unstable();

        assert_eq!(numbers, [1, 2]);
        let entry = registry.model("xor").expect("found");
        let listed: Vec<u32> = entry.versions.iter().map(|v| v.info.version).collect();
        assert_eq!(listed, [1, 2], "in number order");
    }
}
