//! Orphaned versions: files under `versions/<model id>/` whose model has no record, because
//! it was deleted by hand or by a delete that stopped half way (the record goes first, see
//! [`Registry::delete_model`]). They are never served; they are found at start-up, logged
//! with their count, listed as unavailable with the reason (their model's jobs too, by the
//! job runner), and the model's id answers so, until deleting that id removes them.
//!
//! A model deleted by hand that had no version leaves nothing to find: its jobs are then
//! those of a deleted model, as after `DELETE /v1/models/{id}`.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::keys::{model_key, stem};
use super::records::{ObjectKind, Unavailable};
use super::{Registry, RegistryError};

/// Why a file of model `model`'s versions is not served; also said of its jobs.
#[must_use]
pub fn orphan_reason(model: Uuid) -> String {
    format!(
        "its model {model} has no record (models/{model}.json is missing: deleted by hand, or \
         by a delete that did not finish), so it is not served; DELETE /v1/models/{model} \
         removes the model's leftover files"
    )
}

/// The versions among `keys` (all under `versions/<model>/`), one entry each: its record, or
/// its weights when the record is gone.
fn orphans_of(model: Uuid, keys: &[String]) -> Vec<Unavailable> {
    let mut files = BTreeMap::new();
    for key in keys {
        let Ok(v) = stem(key).parse::<u32>() else {
            continue;
        };
        let file = files.entry(v).or_insert(key);
        if key.ends_with(".json") {
            *file = key;
        }
    }
    files
        .into_iter()
        .map(|(v, file)| Unavailable {
            kind: ObjectKind::Version,
            id: format!("{model}/{v}"),
            file: file.clone(),
            reason: orphan_reason(model),
        })
        .collect()
}

impl Registry {
    /// Finds the versions whose model has no record (run once the models are loaded), and
    /// logs how many. A `versions/` that cannot be listed is logged and skipped: the models
    /// whose own directory cannot be listed are unavailable already.
    pub(super) fn load_orphans(&self) {
        let keys = match self.store.list("versions/") {
            Ok(keys) => keys,
            Err(error) => {
                tracing::warn!(%error, "cannot look for versions whose model has no record");
                return;
            }
        };
        let mut by_model: BTreeMap<Uuid, Vec<String>> = BTreeMap::new();
        {
            let inner = self.read();
            for key in keys {
                let Some(model) = key.split('/').nth(1).and_then(|d| Uuid::parse_str(d).ok())
                else {
                    continue;
                };
                let known = inner.models.contains_key(&model)
                    || inner.unavailable.contains_key(&model_key(model));
                if !known {
                    by_model.entry(model).or_default().push(key);
                }
            }
        }
        let mut inner = self.write();
        for (model, keys) in by_model {
            let found = orphans_of(model, &keys);
            if !found.is_empty() {
                inner.orphans.insert(model, found);
            }
        }
        let versions: usize = inner.orphans.values().map(Vec::len).sum();
        if versions > 0 {
            tracing::warn!(
                versions,
                models = inner.orphans.len(),
                "versions whose model has no record are not served; GET /v1/storage/unavailable lists them, DELETE /v1/models/<id> removes them"
            );
        }
    }

    /// The models whose versions are orphaned: their jobs are listed as unavailable too.
    #[must_use]
    pub fn orphaned_models(&self) -> BTreeSet<Uuid> {
        self.read().orphans.keys().copied().collect()
    }

    /// The error for the id of a model whose versions are orphaned, if it is one.
    pub(super) fn orphaned(&self, model: Uuid) -> Option<RegistryError> {
        let count = self.read().orphans.get(&model)?.len();
        Some(RegistryError::Unavailable {
            what: "model",
            id: model.to_string(),
            reason: format!(
                "it has no record (models/{model}.json is missing: deleted by hand, or by a \
                 delete that did not finish) and {count} of its versions are left; DELETE \
                 /v1/models/{model} removes them"
            ),
        })
    }

    /// Lists what is left of model `model`'s versions as orphans: after a delete removed the
    /// model's record and then failed on one of its version files.
    pub(super) fn note_orphans(&self, model: Uuid) {
        match self.store.list(&format!("versions/{model}/")) {
            Ok(keys) => {
                let found = orphans_of(model, &keys);
                if !found.is_empty() {
                    self.write().orphans.insert(model, found);
                }
            }
            Err(error) => tracing::warn!(%error, %model, "cannot list a deleted model's versions"),
        }
    }

    /// Removes the orphaned versions of `model`.
    pub(super) fn delete_orphans(&self, model: Uuid) -> Result<(), RegistryError> {
        for key in self.store.list(&format!("versions/{model}/"))? {
            self.store.delete(&key)?;
        }
        self.write().orphans.remove(&model);
        Ok(())
    }
}
