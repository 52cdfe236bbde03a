//! The stores that keep nothing on disk: [`MemoryStore`], everything in a map, for tests; and
//! [`NullStore`], nothing at all, for `--ephemeral`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{check_key, Store, StoreError};

/// Everything in memory: for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    values: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn values(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while holding this lock cannot leave the map half-updated.
        self.values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        self.values().insert(key.to_owned(), bytes.to_vec());
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        Ok(self.values().get(key).cloned())
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        self.values().remove(key);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .values()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn probe(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A store that keeps nothing: for `--ephemeral`, where nothing outlives the process.
///
/// The registry, the job runner and the experiments keep everything they serve in memory and
/// read their store only when they start, so an ephemeral server never reads back what it
/// writes. A [`MemoryStore`] there held a second copy of every record for nothing, a dataset's
/// as JSON: 46 MB for the 6,000 × 784 set of `bench/serve.sh`, 2.5 times its `f32`s.
#[derive(Debug, Default)]
pub struct NullStore;

impl Store for NullStore {
    fn put(&self, key: &str, _bytes: &[u8]) -> Result<(), StoreError> {
        check_key(key)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key).map(|()| None)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)
    }

    fn list(&self, _prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    fn probe(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn keeps_values(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_store_keeps_what_it_is_given() {
        crate::store::exercise(&MemoryStore::new());
    }

    #[test]
    fn stores_in_memory_always_take_writes() {
        assert!(MemoryStore::new().probe().is_ok());
        assert!(NullStore.probe().is_ok());
    }
}
