//! The storage seam: the one way to durable state, below the registry, the job runner and the
//! experiments. Nothing above it reads or writes the data directory.
//!
//! A [`Store`] is a small key–value store whose keys are `/`-separated relative paths
//! (`models/<id>.json`). The trait is deliberately tiny (put, get, delete, list by prefix) so
//! that an object store (S3, GCS, Azure through the `object_store` crate) is one more
//! implementation, not a rewrite. Four exist: [`FileStore`] under `--data-dir` (atomic,
//! fsynced writes; see `file`), held by one process at a time ([`DataDirLock`]);
//! [`PgStore`] in PostgreSQL under `--database-url` (see [`postgres`]); [`NullStore`] for
//! `--ephemeral` and [`MemoryStore`] for tests (see `memory`). [`copy()`] moves everything
//! from one to another.
//!
//! A store also answers [`Store::probe`]: whether it takes writes now, which readiness asks.
//! One that cannot be reached at all (a database that is down) fails with
//! [`StoreError::Unavailable`]: nothing was done, and the same call may succeed later.
//!
//! A store may be given a cap on the size of a value it reads ([`StoreError::TooLarge`]),
//! checked before the value is read into memory, so a runaway file cannot exhaust memory at
//! start-up.
//!
//! A store that many replicas share also has their one job queue ([`Store::job_queue`], see
//! [`queue`]), whose writes are fenced by a lease's token ([`StoreError::Fenced`]).
//!
//! Beside the trait, what every stored record goes through: [`envelope`], the checksummed
//! form JSON records are written in, and [`clock`], the timestamps they carry.

mod changes;
pub mod clock;
mod copy;
pub mod envelope;
mod error;
mod file;
mod lock;
mod memory;
pub mod postgres;
pub mod queue;

use std::sync::Arc;

pub use changes::Changes;
pub use copy::{copy, copy_between, CopyError, Place};
pub use error::{NoRoom, StoreError};
pub use file::FileStore;
pub use lock::{DataDirLock, LockError, LOCK_FILE};
pub use memory::{MemoryStore, NullStore};
pub use postgres::PgStore;

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

    /// Whether the store takes writes now, found out by writing (and removing) something
    /// small: what readiness (`/readyz`) asks, at most about once a second.
    ///
    /// # Errors
    /// [`StoreError::Unwritable`] with the reason when the write fails.
    fn probe(&self) -> Result<(), StoreError>;

    /// Whether [`Store::get`] gives back what was put (false for [`NullStore`]), so that a
    /// writer can skip serializing a large value that nothing would ever read.
    fn keeps_values(&self) -> bool {
        true
    }

    /// Stores `bytes` under `key` only if no value is there: `Ok(false)`, with nothing
    /// written, when one is. What makes a number (a version's) taken once, by one writer,
    /// when several processes share the store.
    ///
    /// The default looks, then writes: right for a store that one process writes, whose
    /// callers already hold a lock of their own around it.
    ///
    /// # Errors
    /// As [`Store::put`].
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        if self.list(key)?.iter().any(|k| k == key) {
            return Ok(false);
        }
        self.put(key, bytes)?;
        Ok(true)
    }

    /// Claims the model name `name` for `owner` (a model's id) among every process that shares
    /// the store: `Ok(None)` when it is now `owner`'s (also when it was already), and the
    /// holder's id when another has it. The default claims nothing: a store that one process
    /// writes leaves names to that process.
    ///
    /// # Errors
    /// [`StoreError`] when the claim cannot be made.
    fn claim_name(&self, name: &str, owner: &str) -> Result<Option<String>, StoreError> {
        let _ = (name, owner);
        Ok(None)
    }

    /// Gives up `owner`'s claim on `name` ([`Store::claim_name`]); one that `owner` does not
    /// hold is left as it is.
    ///
    /// # Errors
    /// [`StoreError`] when the claim cannot be given up.
    fn release_name(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let _ = (name, owner);
        Ok(())
    }

    /// The keys that other processes sharing this store write and delete from now on, for a
    /// store that several processes share; `None` for one that this process alone writes.
    /// The feed is made on the first call; later calls give the same one.
    fn follow(&self) -> Option<Arc<Changes>> {
        None
    }

    /// The job queue that every replica on this store shares, for a store that many
    /// processes share (PostgreSQL); `None` (the default) for one a single process owns,
    /// whose jobs are queued in memory.
    fn job_queue(self: std::sync::Arc<Self>) -> Option<std::sync::Arc<dyn queue::JobQueue>> {
        None
    }
}

/// Refuses a key that cannot name a value: empty, absolute, or with an empty, `.` or `..`
/// segment.
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

/// What every store must do, run by each implementation's tests.
#[cfg(test)]
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
