//! Where the registry and the job runner write through to: a small key–value [`Store`].
//!
//! Keys are `/`-separated relative paths (`models/<id>.json`). The trait is deliberately tiny
//! (put, get, delete, list by prefix) so that an object store (S3, GCS, Azure through the
//! `object_store` crate) is one more implementation, not a rewrite. Three exist:
//! [`NullStore`] for `--ephemeral`, [`MemoryStore`] for tests, and [`FileStore`] under
//! `--data-dir`, whose every write
//! goes to a temporary file, is fsynced, renamed into place, and the directory fsynced, so a
//! crash leaves the old value or the new one, never half of one. A crash does leave the
//! temporary file of the interrupted write (`.<name>.tmp-<uuid>`): [`FileStore::open`] sweeps
//! them, and [`Store::list`] never shows them.
//!
//! A store may be given a cap on the size of a value it reads ([`StoreError::TooLarge`]),
//! checked before the value is read into memory, so a runaway file cannot exhaust memory at
//! start-up.

pub mod clock;
pub mod envelope;

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
    /// The stored value is larger than the store reads.
    #[error("{size} bytes, over the limit of {max} bytes for a stored file (raise it with --max-stored-file-bytes / MLP_LAB_MAX_STORED_FILE_BYTES)")]
    TooLarge {
        /// The key.
        key: String,
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
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
    /// [`StoreError`] when the key is invalid or the read fails, and
    /// [`StoreError::TooLarge`] (without reading it) when the value is over the store's cap.
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

    /// Whether [`Store::get`] gives back what was put (false for [`NullStore`]), so that a
    /// writer can skip serializing a large value that nothing would ever read.
    fn keeps_values(&self) -> bool {
        true
    }
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

/// Everything in memory: for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    values: Mutex<BTreeMap<String, Vec<u8>>>,
}

fn check_size(key: &str, size: u64, max: Option<u64>) -> Result<(), StoreError> {
    match max {
        Some(max) if size > max => Err(StoreError::TooLarge {
            key: key.to_owned(),
            size,
            max,
        }),
        _ => Ok(()),
    }
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

    fn keeps_values(&self) -> bool {
        false
    }
}

/// Files under a root directory, written atomically.
#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
    max_file_bytes: Option<u64>,
    swept: usize,
}

/// Whether `name` is the temporary file of a write ([`FileStore::put`] names them so).
fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

impl FileStore {
    /// A store under `root`, created if missing, with the temporary files of writes that a
    /// crash interrupted removed (they were never acknowledged; see [`Self::swept`]).
    ///
    /// # Errors
    /// The I/O error when the directory cannot be created or swept.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        let swept = sweep(&root)?;
        if swept > 0 {
            tracing::warn!(
                files = swept,
                "removed temporary files left by writes that did not finish"
            );
        }
        Ok(Self {
            root,
            max_file_bytes: None,
            swept,
        })
    }

    /// The same store, refusing to read files larger than `max` bytes.
    #[must_use]
    pub fn with_max_file_bytes(mut self, max: u64) -> Self {
        self.max_file_bytes = Some(max);
        self
    }

    /// How many temporary files [`Self::open`] removed.
    #[must_use]
    pub fn swept(&self) -> usize {
        self.swept
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

/// Removes every temporary file under `root`; returns how many. A directory that cannot be
/// read (a volume's `lost+found`, say) or a file that cannot be removed is logged and
/// skipped: leftovers must not stop the service from starting.
fn sweep(root: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if dir == root => return Err(error),
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot look for temporary files here");
                continue;
            }
        };
        let mut here = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            } else if is_temporary(&name.to_string_lossy()) {
                match fs::remove_file(entry.path()) {
                    Ok(()) => here += 1,
                    Err(error) => tracing::warn!(
                        file = %entry.path().display(), %error, "cannot remove a temporary file"
                    ),
                }
            }
        }
        if here > 0 {
            sync_dir(&dir)?;
            removed += here;
        }
    }
    Ok(removed)
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
        use std::io::Read;
        let mut file = match fs::File::open(self.path(key)?) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error(key)(error)),
        };
        let size = file.metadata().map_err(io_error(key))?.len();
        check_size(key, size, self.max_file_bytes)?;
        // Read no more than the cap even if the file grows meanwhile.
        let cap = self.max_file_bytes.unwrap_or(u64::MAX);
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&mut file)
            .take(cap.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io_error(key))?;
        check_size(key, bytes.len() as u64, self.max_file_bytes)?;
        Ok(Some(bytes))
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
        // The walk starts at the prefix's directory, not at the root: listing one model's
        // versions reads only its directory, so a damaged one fails only its own listing.
        let start = match prefix.rfind('/') {
            Some(end) if end > 0 => self.path(&prefix[..end])?,
            _ => self.root.clone(),
        };
        let mut stack = vec![start];
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
                    continue; // temporary files of interrupted writes, and hidden files
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

    #[test]
    fn opening_sweeps_temporary_files_and_a_cap_refuses_large_files_unread() {
        let dir = std::env::temp_dir().join(format!("mlp-lab-store-{}", uuid::Uuid::now_v7()));
        fs::create_dir_all(dir.join("a")).expect("mkdir");
        fs::write(dir.join("a/.1.json.tmp-0190"), b"half").expect("tmp");
        fs::write(dir.join(".x.tmp-1"), b"half").expect("tmp");
        fs::write(dir.join("a/.hidden"), b"kept").expect("hidden");
        fs::write(dir.join("a/1.json"), b"0123456789").expect("value");
        let store = FileStore::open(&dir).expect("open").with_max_file_bytes(9);
        assert_eq!(store.swept(), 2);
        assert!(!dir.join("a/.1.json.tmp-0190").exists());
        assert!(dir.join("a/.hidden").exists(), "only temporary files go");
        assert!(matches!(
            store.get("a/1.json"),
            Err(StoreError::TooLarge {
                size: 10,
                max: 9,
                ..
            })
        ));
        assert_eq!(store.list("a/").expect("list"), ["a/1.json"]);
        let _ = fs::remove_dir_all(&dir);
    }
}
