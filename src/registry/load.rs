//! Loading the registry back from its store: each object that cannot be loaded is made
//! unavailable with its reason, and everything else loads.

use std::sync::Arc;

use uuid::Uuid;

use super::keys::{stem, version_key};
use super::records::{
    ModelEntry, ModelRecord, ObjectKind, StoredVersion, UnavailableVersion, Version, VersionInfo,
};
use super::{unavailable, Registry, RegistryError};
use crate::nn::serialize::from_safetensors_of;
use crate::store::envelope::sha256_hex;

impl Registry {
    /// The record of every stored version that names the job that made it, by job: what a
    /// job that stopped with the process made before it stopped.
    #[must_use]
    pub fn versions_by_job(&self) -> std::collections::HashMap<Uuid, VersionInfo> {
        let inner = self.read();
        let served = inner.models.values().flat_map(|e| {
            let loaded = e.versions.iter().map(|v| &v.info);
            loaded.chain(e.unavailable.iter().filter_map(|u| u.info.as_ref()))
        });
        served
            .filter_map(|i| i.job.map(|job| (job, i.clone())))
            .collect()
    }

    pub(super) fn load_models(&self) -> Result<(), RegistryError> {
        for key in self.store.list("models/")?.into_iter().rev() {
            if key.ends_with(".json") {
                self.load_model(&key);
            }
        }
        // Names claimed where replicas share the store: a database filled by `mlp-lab copy`
        // has none yet, and claiming again what a model holds already changes nothing.
        let named: Vec<(String, Uuid)> = self
            .read()
            .models
            .values()
            .map(|m| (m.record.name.clone(), m.record.id))
            .collect();
        for (name, id) in named {
            if let Some(holder) = self.store.claim_name(&name, &id.to_string())? {
                tracing::warn!(%name, model = %id, %holder, "another model holds this model's name in the store");
            }
        }
        Ok(())
    }

    /// Loads the model whose record is stored under `key`, with its versions; one that cannot
    /// be loaded is made unavailable with its reason, and a missing record is skipped.
    pub(super) fn load_model(&self, key: &str) {
        let id = stem(key).to_owned();
        let record = self
            .read_record::<ModelRecord>(ObjectKind::Model, key)
            .and_then(|record| match record {
                Some(r) if r.id.to_string() != id => Err(format!(
                    "the record is of model {}, not of the {id} its file name says",
                    r.id
                )),
                other => Ok(other),
            });
        // A record is checked as a new spec would be, against the limits in force, so a
        // hand-edited file cannot make the server build an absurd network.
        let record = record.and_then(|record| match record {
            Some(r) => match self.check_spec(&r.spec) {
                Ok(_) => Ok(Some(r)),
                Err(error) => Err(format!("its spec is refused: {error}")),
            },
            None => Ok(None),
        });
        let record = match record {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(reason) => {
                let gone = unavailable(ObjectKind::Model, &id, key, reason);
                self.write().unavailable.insert(key.to_owned(), gone);
                return;
            }
        };
        // A model whose versions cannot even be listed is unavailable as a whole: serving
        // it without them would let a new version take the number of one on disk.
        let (versions, broken) = match self.load_versions(&record) {
            Ok(loaded) => loaded,
            Err(error) => {
                let reason = format!("its versions cannot be listed: {error}");
                let gone = unavailable(ObjectKind::Model, &id, key, reason);
                self.write().unavailable.insert(key.to_owned(), gone);
                return;
            }
        };
        let mut inner = self.write();
        // While a model's record was unreadable its name was free to take; should the
        // file come back (repaired by hand), the newer model, which took the name and
        // served meanwhile, keeps it: records load newest first (ids are UUIDv7).
        if let Some(&holder) = inner.names.get(&record.name) {
            let reason = format!(
                "its name '{}' is taken by model {holder}, created while this one was unavailable; rename one of them",
                record.name
            );
            let gone = unavailable(ObjectKind::Model, &id, key, reason);
            inner.unavailable.insert(key.to_owned(), gone);
            return;
        }
        inner.names.insert(record.name.clone(), record.id);
        inner.writers.insert(record.id, Arc::default());
        inner.models.insert(
            record.id,
            Arc::new(ModelEntry {
                record,
                versions,
                unavailable: broken,
            }),
        );
    }

    /// The versions of `record` that load, and those that do not with their reasons.
    pub(super) fn load_versions(
        &self,
        record: &ModelRecord,
    ) -> Result<(Vec<Arc<Version>>, Vec<UnavailableVersion>), RegistryError> {
        let mut versions = Vec::new();
        let mut broken = Vec::new();
        for vkey in self.store.list(&format!("versions/{}/", record.id))? {
            if !vkey.ends_with(".json") {
                continue;
            }
            let Ok(v) = stem(&vkey).parse::<u32>() else {
                tracing::warn!(file = %vkey, "ignoring a file that names no version");
                continue;
            };
            match self.load_version(record, &vkey, v) {
                Ok(version) => versions.push(Arc::new(version)),
                Err(broken_version) => {
                    let (info, reason) = *broken_version;
                    let id = format!("{}/{v}", record.id);
                    let gone = unavailable(ObjectKind::Version, &id, &vkey, reason);
                    broken.push(UnavailableVersion {
                        version: v,
                        info,
                        reason: gone.reason,
                    });
                }
            }
        }
        versions.sort_by_key(|v| v.info.version);
        broken.sort_by_key(|u| u.version);
        Ok((versions, broken))
    }

    /// Version `v` of `record` from `vkey` and its weights, checked against their hash; or
    /// what is known of it and why it cannot be loaded.
    pub(super) fn load_version(
        &self,
        record: &ModelRecord,
        vkey: &str,
        v: u32,
    ) -> Result<Version, Box<(Option<VersionInfo>, String)>> {
        let stored = match self.read_record::<StoredVersion>(ObjectKind::Version, vkey) {
            Ok(Some(stored)) => stored,
            Ok(None) => {
                return Err(Box::new((
                    None,
                    "the record vanished while loading".to_owned(),
                )))
            }
            Err(reason) => return Err(Box::new((None, reason))),
        };
        let info = stored.info;
        if info.version != v || info.model != record.id {
            let reason = format!(
                "the record is of version {} of model {}, not what its file name says",
                info.version, info.model
            );
            return Err(Box::new((Some(info), reason)));
        }
        let wkey = version_key(record.id, v, "safetensors");
        let bytes = match self.store.get(&wkey) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(Box::new((
                    Some(info),
                    "the weights file is missing".to_owned(),
                )))
            }
            Err(error) => return Err(Box::new((Some(info), format!("weights: {error}")))),
        };
        let actual = sha256_hex(&bytes);
        if actual != stored.weights_sha256 || bytes.len() as u64 != stored.weights_bytes {
            let reason = format!(
                "weights checksum mismatch: the record says {} bytes with sha256 {}, the file has {} bytes with sha256 {actual}",
                stored.weights_bytes,
                stored.weights_sha256,
                bytes.len()
            );
            return Err(Box::new((Some(info), reason)));
        }
        match from_safetensors_of(&bytes, &record.spec) {
            Ok(model) if model.spec != record.spec => Err(Box::new((
                Some(info),
                "the weights are of another architecture than the model's spec".to_owned(),
            ))),
            Ok(model) => Ok(Version {
                info,
                model: Arc::new(model),
            }),
            Err(error) => Err(Box::new((
                Some(info),
                format!("weights unreadable: {error}"),
            ))),
        }
    }
}
