//! Following the store when other replicas share it: [`Registry::refresh`] brings the cache
//! in line with what is stored under one key, after another replica wrote or deleted it (see
//! [`Store::follow`](crate::store::Store::follow)).
//!
//! Each call reads the key as it is now, so a change seen twice, late or out of order leaves
//! the cache where the store is. What another replica made is loaded with the same checks as
//! at start-up (a record that cannot be read makes its object unavailable, as it would after a
//! restart). A version is taken when its record appears: its weights were written before it.

use std::sync::Arc;

use uuid::Uuid;

use super::keys::{dataset_key, model_key, stem};
use super::records::{ModelEntry, ModelRecord, ObjectKind};
use super::{unavailable, Registry, RegistryError};

impl Registry {
    /// Brings the cache in line with the stored value of `key` (a dataset, a model or a
    /// version; other keys are not the registry's and are ignored).
    ///
    /// # Errors
    /// [`RegistryError::Store`] when the store cannot be read: the cache is then as it was,
    /// and the same call may be made again later.
    pub fn refresh(&self, key: &str) -> Result<(), RegistryError> {
        let mut parts = key.split('/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("datasets"), Some(_), None) if key.ends_with(".json") => {
                self.refresh_dataset(key)
            }
            (Some("models"), Some(_), None) if key.ends_with(".json") => self.refresh_model(key),
            (Some("versions"), Some(model), Some(file)) if file.ends_with(".json") => {
                match (Uuid::parse_str(model), stem(file).parse::<u32>()) {
                    (Ok(model), Ok(v)) => self.refresh_version(model, v, key),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Whether `key` holds a value now.
    fn stored(&self, key: &str) -> Result<bool, RegistryError> {
        Ok(self.store.list(key)?.iter().any(|k| k == key))
    }

    fn refresh_dataset(&self, key: &str) -> Result<(), RegistryError> {
        let Ok(id) = Uuid::parse_str(stem(key)) else {
            return Ok(());
        };
        if !self.stored(key)? {
            let mut inner = self.write();
            inner.datasets.remove(&id);
            inner.unavailable.remove(key);
            return Ok(());
        }
        // Datasets do not change once stored.
        if self.read().datasets.contains_key(&id) {
            return Ok(());
        }
        self.write().unavailable.remove(&dataset_key(id));
        self.load_dataset(key);
        Ok(())
    }

    fn refresh_model(&self, key: &str) -> Result<(), RegistryError> {
        let Ok(id) = Uuid::parse_str(stem(key)) else {
            return Ok(());
        };
        let record = self
            .read_record::<ModelRecord>(ObjectKind::Model, key)
            .unwrap_or_else(|reason| {
                tracing::debug!(%key, %reason, "a model's record changed and cannot be read");
                None
            });
        let Some(record) = record else {
            if self.stored(key)? {
                // There but unreadable: loaded as at start-up, which says why.
                self.forget_model(id, key);
                self.load_model(key);
            } else {
                self.forget_model(id, key);
            }
            return Ok(());
        };
        // A model's record does not change once stored.
        if self.read().models.contains_key(&id) {
            return Ok(());
        }
        // Its name may still be held here by a model another replica deleted and this one
        // has not heard of yet.
        let holder = self.read().names.get(&record.name).copied();
        if let Some(holder) = holder.filter(|&holder| holder != id) {
            self.refresh_model(&model_key(holder))?;
        }
        self.write().unavailable.remove(key);
        self.load_model(key);
        Ok(())
    }

    /// Removes the model `id` from the cache: another replica deleted it.
    fn forget_model(&self, id: Uuid, key: &str) {
        let mut inner = self.write();
        inner.unavailable.remove(key);
        if let Some(gone) = inner.models.remove(&id) {
            if inner.names.get(&gone.record.name) == Some(&id) {
                inner.names.remove(&gone.record.name);
            }
            inner.writers.remove(&id);
        }
    }

    fn refresh_version(&self, model: Uuid, v: u32, key: &str) -> Result<(), RegistryError> {
        let Some(current) = self.read().models.get(&model).cloned() else {
            // A model this replica has not loaded yet comes with all its versions.
            return self.refresh_model(&model_key(model));
        };
        if !self.stored(key)? {
            let mut inner = self.write();
            if let Some(now) = inner.models.get(&model) {
                let mut next = ModelEntry::clone(now);
                next.versions.retain(|x| x.info.version != v);
                next.unavailable.retain(|u| u.version != v);
                inner.models.insert(model, Arc::new(next));
            }
            return Ok(());
        }
        let known = current.versions.iter().any(|x| x.info.version == v)
            || current.unavailable.iter().any(|u| u.version == v);
        if known {
            return Ok(());
        }
        let loaded = self.load_version(&current.record, key, v);
        let mut inner = self.write();
        let Some(now) = inner.models.get(&model) else {
            return Ok(()); // deleted meanwhile
        };
        let mut next = ModelEntry::clone(now);
        match loaded {
            Ok(version) => {
                if next.versions.iter().any(|x| x.info.version == v) {
                    return Ok(());
                }
                let at = next.versions.partition_point(|x| x.info.version < v);
                next.versions.insert(at, Arc::new(version));
            }
            Err(broken) => {
                let (info, reason) = *broken;
                let id = format!("{model}/{v}");
                let gone = unavailable(ObjectKind::Version, &id, key, reason);
                let at = next.unavailable.partition_point(|u| u.version < v);
                next.unavailable.insert(
                    at,
                    super::records::UnavailableVersion {
                        version: v,
                        info,
                        reason: gone.reason,
                    },
                );
            }
        }
        inner.models.insert(model, Arc::new(next));
        Ok(())
    }
}
