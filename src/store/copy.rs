//! [`copy()`]: every object of one store into another, as `mlp-lab copy --from … --to …` does
//! to move a data directory into PostgreSQL or back, without retraining anything.
//!
//! The keys and bytes are copied as they are (records keep their envelopes and checksums,
//! weights their SHA-256 in their version's record), so the server on the target loads the
//! same objects and answers the same predictions, bit for bit. The target must be empty: a
//! copy never mixes two registries, nor overwrites one. Each value is read back from the
//! target and compared before the copy counts as done.

use super::{Store, StoreError};

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
