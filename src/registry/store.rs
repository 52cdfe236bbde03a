//! Where the registry and the job runner write through to: a small key–value [`Store`].
//!
//! Keys are `/`-separated relative paths (`models/<id>.json`). The trait is deliberately tiny
//! (put, get, delete, list by prefix) so that an object store (S3, GCS, Azure through the
//! `object_store` crate) is one more implementation, not a rewrite. Two exist:
//! [`MemoryStore`] for `--ephemeral`, and [`FileStore`] under `--data-dir`, whose every write
//! goes to a temporary file, is fsynced, renamed into place, and the directory fsynced, so a
//! crash leaves the old value or the new one, never half of one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key cannot name a value (empty, absolute, or with `..`).
    #[error("invalid store key `{0}`")]
    InvalidKey(String),
    /// The underlying storage failed.
    #[error("store I/O on `{key}`: {source}")]
    Io {
        /// The key being read or written.
        key: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// A durable key–value store. Implementations are shared between threads.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` under `key`, replacing any value, durably before returning.
    ///
    /// # Errors
    /// [`StoreError`] when the key is invalid or the write fails.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;

    /// The value under `key`, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the key is invalid or the read fails.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes `key`; removing a missing key is not an error.
    ///
    /// # Errors
    /// [`StoreError`] when the key is invalid or the removal fails.
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Every key that starts with `prefix`, sorted.
    ///
    /// # Errors
    /// [`StoreError`] when listing fails.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
}

fn check_key(key: &str) -> Result<(), StoreError> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        Err(StoreError::InvalidKey(key.to_owned()))
    } else {
        Ok(())
    }
}

/// Everything in memory: for `--ephemeral` and tests.
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
}

/// Files under a root directory, written atomically.
#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store under `root`, created if missing.
    ///
    /// # Errors
    /// The I/O error when the directory cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io_error(key: &str) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        key: key.to_owned(),
        source,
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Directories cannot be opened for syncing on every platform; where they can, the rename
    // is only durable once the directory is synced.
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl Store for FileStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let write = || -> io::Result<()> {
            fs::create_dir_all(&dir)?;
            let tmp = dir.join(format!(
                ".{}.tmp-{}",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("value"),
                uuid::Uuid::now_v7()
            ));
            let mut file = fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            drop(file);
            if let Err(error) = fs::rename(&tmp, &path) {
                let _ = fs::remove_file(&tmp);
                return Err(error);
            }
            sync_dir(&dir)
        };
        write().map_err(io_error(key))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match fs::read(self.path(key)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(key)(error)),
        }
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(&self.root)).map_err(io_error(key)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io_error(key)(error)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io_error(prefix)(error)),
            };
            for entry in entries {
                let entry = entry.map_err(io_error(prefix))?;
                let path = entry.path();
                let name = entry.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue; // temporary files of interrupted writes
                }
                if entry.file_type().map_err(io_error(prefix))?.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    if key.starts_with(prefix) {
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &dyn Store) {
        store.put("a/1.json", b"one").expect("put");
        store.put("a/2.json", b"two").expect("put");
        store.put("b/1.json", b"other").expect("put");
        store.put("a/1.json", b"uno").expect("overwrite");
        assert_eq!(store.get("a/1.json").expect("get"), Some(b"uno".to_vec()));
        assert_eq!(store.list("a/").expect("list"), ["a/1.json", "a/2.json"]);
        store.delete("a/1.json").expect("delete");
        store.delete("a/1.json").expect("delete twice");
        assert_eq!(store.get("a/1.json").expect("get"), None);
        assert!(store.put("../escape", b"x").is_err());
        assert!(store.put("/abs", b"x").is_err());
    }

    #[test]
    fn the_memory_store_keeps_what_it_is_given() {
        exercise(&MemoryStore::new());
    }

    #[test]
    fn the_file_store_keeps_what_it_is_given_across_reopening() {
        let dir = std::env::temp_dir().join(format!("mlp-lab-store-{}", uuid::Uuid::now_v7()));
        let store = FileStore::open(&dir).expect("open");
        exercise(&store);
        let reopened = FileStore::open(&dir).expect("reopen");
        assert_eq!(
            reopened.get("b/1.json").expect("get"),
            Some(b"other".to_vec())
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
