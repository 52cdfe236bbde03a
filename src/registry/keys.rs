//! The store keys of the registry's objects: `datasets/<id>.json`, `models/<id>.json`,
//! `versions/<model id>/<v>.json` and `.safetensors` (the version zero-padded, so that keys
//! list in version order).

use uuid::Uuid;

/// A dataset's record and data.
pub(super) fn dataset_key(id: Uuid) -> String {
    format!("datasets/{id}.json")
}

/// A model's record.
pub(super) fn model_key(id: Uuid) -> String {
    format!("models/{id}.json")
}

/// Version `version` of model `model`: its record (`json`) or its weights (`safetensors`).
pub(super) fn version_key(model: Uuid, version: u32, ext: &str) -> String {
    format!("versions/{model}/{version:08}.{ext}")
}

/// The last path segment of `key` without its extension: the id its file name gives.
pub(crate) fn stem(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.split_once('.').map_or(name, |(stem, _)| stem)
}
