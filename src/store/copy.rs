//! [`copy()`]: every object of one store into another, as `mlp-lab copy --from … --to …` does
//! to move a data directory into PostgreSQL or back, without retraining anything.
//!
//! The keys and bytes are copied as they are (records keep their envelopes and checksums,
//! weights their SHA-256 in their version's record), so the server on the target loads the
//! same objects and answers the same predictions, bit for bit. The target must be empty: a
//! copy never mixes two registries, nor overwrites one. Each value is read back from the
//! target and compared before the copy counts as done.
//!
//! [`copy_between`] opens the two ends as `mlp-lab copy` names them: a data directory is
//! locked for the whole copy (so it is never copied while a server runs on it, nor written by
//! one), and a database is connected to and migrated.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::postgres::PgError;
use super::{DataDirLock, FileStore, LockError, PgStore, Store, StoreError};

/// One end of a copy, as `mlp-lab copy` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place<'a> {
    /// A data directory.
    Dir(&'a Path),
    /// A database, by its URL (which may hold its password).
    Database(&'a str),
}

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target holds objects already.
    #[error(
        "the target holds {objects} objects already; copy into an empty data directory or \
         database (nothing was copied)"
    )]
    TargetNotEmpty {
        /// How many.
        objects: usize,
    },
    /// Reading the source failed.
    #[error("reading the source: {0}")]
    Source(#[source] StoreError),
    /// Writing or reading back the target failed.
    #[error("writing the target: {0}")]
    Target(#[source] StoreError),
    /// A value read back from the target is not what was written.
    #[error("`{0}` reads back from the target other than it was written")]
    Mismatch(String),
    /// `--from` and `--to` are the same.
    #[error("--from and --to are the same")]
    Same,
    /// The source directory does not exist.
    #[error("there is no data directory {0}")]
    NoSource(PathBuf),
    /// A data directory is in use, or cannot be locked.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A data directory cannot be opened.
    #[error("cannot open the data directory {dir}: {source}")]
    Open {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A database cannot be used.
    #[error(transparent)]
    Database(#[from] PgError),
}

/// One end of a copy, with its data directory's lock when it is one (held while this lives).
struct End {
    store: Arc<dyn Store>,
    _lock: Option<DataDirLock>,
}

fn open(place: Place<'_>, source: bool, password_file: Option<&Path>) -> Result<End, CopyError> {
    match place {
        Place::Dir(dir) if source && !dir.is_dir() => Err(CopyError::NoSource(dir.to_owned())),
        Place::Dir(dir) => {
            let lock = DataDirLock::acquire(dir)?;
            let store = FileStore::open(dir).map_err(|source| CopyError::Open {
                dir: dir.to_owned(),
                source,
            })?;
            Ok(End {
                store: Arc::new(store),
                _lock: Some(lock),
            })
        }
        Place::Database(url) => Ok(End {
            store: Arc::new(PgStore::open(url, password_file)?.0),
            _lock: None,
        }),
    }
}

/// [`copy()`] from `from` into `to`, as `mlp-lab copy --from … --to …` names them; a
/// database's password comes from `password_file` when given (`--database-password-file`).
///
/// # Errors
/// [`CopyError`], also when either end cannot be opened or a data directory is in use.
pub fn copy_between(
    from: Place<'_>,
    to: Place<'_>,
    password_file: Option<&Path>,
    progress: impl FnMut(usize, usize),
) -> Result<(usize, u64), CopyError> {
    if from == to {
        return Err(CopyError::Same);
    }
    let source = open(from, true, password_file)?;
    let target = open(to, false, password_file)?;
    copy(&*source.store, &*target.store, progress)
}

/// Copies every object of `from` into `to`, which must be empty; returns how many objects
/// and bytes were copied. `progress` is called after each object with the count so far.
///
/// # Errors
/// [`CopyError`]; what was copied before it stays in the target.
pub fn copy(
    from: &dyn Store,
    to: &dyn Store,
    mut progress: impl FnMut(usize, usize),
) -> Result<(usize, u64), CopyError> {
    let there = to.list("").map_err(CopyError::Target)?;
    if !there.is_empty() {
        return Err(CopyError::TargetNotEmpty {
            objects: there.len(),
        });
    }
    let keys = from.list("").map_err(CopyError::Source)?;
    let mut bytes = 0u64;
    for (done, key) in keys.iter().enumerate() {
        // Gone since it was listed (nothing should write the source meanwhile): skipped.
        let Some(value) = from.get(key).map_err(CopyError::Source)? else {
            continue;
        };
        to.put(key, &value).map_err(CopyError::Target)?;
        if to.get(key).map_err(CopyError::Target)?.as_deref() != Some(&value[..]) {
            return Err(CopyError::Mismatch(key.clone()));
        }
        bytes += value.len() as u64;
        progress(done + 1, keys.len());
    }
    Ok((keys.len(), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn everything_is_copied_into_an_empty_store_and_a_full_one_is_refused() {
        let (from, to) = (MemoryStore::new(), MemoryStore::new());
        from.put("models/1.json", b"{}").expect("put");
        from.put("versions/1/1.safetensors", b"weights")
            .expect("put");

        let (objects, bytes) = copy(&from, &to, |_, _| {}).expect("copied");

        assert_eq!((objects, bytes), (2, 9));
        assert_eq!(to.list("").expect("list"), from.list("").expect("list"));
        assert_eq!(
            to.get("versions/1/1.safetensors").expect("get"),
            Some(b"weights".to_vec())
        );
        assert!(matches!(
            copy(&from, &to, |_, _| {}),
            Err(CopyError::TargetNotEmpty { objects: 2 })
        ));
    }
}
