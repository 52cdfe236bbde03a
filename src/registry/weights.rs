//! Versions made from imported weights rather than by training.

use std::sync::Arc;

use super::records::{Version, VersionInfo};
use super::{Registry, RegistryError};
use crate::nn::import::import_safetensors;

impl Registry {
    /// Reads `bytes` (a safetensors file) as weights of model `id_or_name`'s spec and adds
    /// them as its next version. The version has no job and no dataset, which is how views
    /// tell an imported version from a trained one; its metrics are not known, so `train` is
    /// left at its default and not shown. Labels are answered as numbers when every label is
    /// one (always so for a file without mlp-lab metadata, whose labels are `"0"`…).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::Nn`] naming the tensor or metadata key
    /// that does not fit the spec, or a store failure.
    pub fn import_version(
        &self,
        id_or_name: &str,
        bytes: &[u8],
    ) -> Result<(Arc<super::ModelEntry>, Arc<Version>), RegistryError> {
        let entry = self.model(id_or_name)?;
        let imported = import_safetensors(&entry.record.spec, bytes)?;
        let numeric_labels = imported
            .model
            .labels
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Number>(l).is_ok());
        let info = VersionInfo::without_training(entry.record.id, numeric_labels);
        let version = self.add_version(entry.record.id, imported.model, info)?;
        Ok((entry, version))
    }
}
