//! [`StoreError`]: how a store fails, and [`NoRoom`], why a write found no room.

use std::io;

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
    /// The store cannot take writes now ([`Store::probe`]); says the system's reason only,
    /// without a path.
    #[error(transparent)]
    Unwritable(io::Error),
    /// The store cannot be reached now (a database that is down or does not answer): nothing
    /// was read or written, and the same call may succeed later. Says why, without secrets.
    #[error("the store cannot be reached: {0}")]
    Unavailable(String),
    /// A write made under a job's lease whose token is no longer the job's (the lease expired
    /// and was taken away): refused by the database, nothing written ([`queue`]).
    #[error("refused: the lease (token {token}) on job {job} is no longer held")]
    Fenced {
        /// The job.
        job: uuid::Uuid,
        /// The stale token.
        token: i64,
    },
}

impl StoreError {
    /// Why there was no room for a write, when that is why it failed: what a client is told
    /// (507) rather than a generic failure. Read from the I/O error's kind, so that any store
    /// whose errors carry it (the file system's ENOSPC, EDQUOT, EFBIG) is understood.
    #[must_use]
    pub fn no_room(&self) -> Option<NoRoom> {
        let (StoreError::Io { source, .. } | StoreError::Unwritable(source)) = self else {
            return None;
        };
        match source.kind() {
            io::ErrorKind::StorageFull => Some(NoRoom::Device),
            io::ErrorKind::QuotaExceeded => Some(NoRoom::Quota),
            io::ErrorKind::FileTooLarge => Some(NoRoom::FileSize),
            _ => None,
        }
    }
}

/// Why a store had no room for a write ([`StoreError::no_room`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRoom {
    /// The device is full (ENOSPC).
    Device,
    /// The user's or the project's disk quota is used up (EDQUOT).
    Quota,
    /// The file would be larger than the file system, or the process's file-size limit
    /// (`RLIMIT_FSIZE`), allows (EFBIG).
    FileSize,
}

impl NoRoom {
    /// The system's name of the error, e.g. `ENOSPC`.
    #[must_use]
    pub fn errno(self) -> &'static str {
        match self {
            NoRoom::Device => "ENOSPC",
            NoRoom::Quota => "EDQUOT",
            NoRoom::FileSize => "EFBIG",
        }
    }

    /// What it means, for people.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            NoRoom::Device => "no space is left on the device of the data directory",
            NoRoom::Quota => "the disk quota of the data directory is used up",
            NoRoom::FileSize => {
                "the file would be larger than the file system or the server's file-size limit allows"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{NoRoom, StoreError};

    #[test]
    fn no_space_an_exhausted_quota_and_a_file_too_large_are_told_from_other_failures() {
        let io = |errno| StoreError::Io {
            key: "a/1.json".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };

        assert_eq!(io(libc::ENOSPC).no_room(), Some(NoRoom::Device));
        assert_eq!(io(libc::EDQUOT).no_room(), Some(NoRoom::Quota));
        assert_eq!(io(libc::EFBIG).no_room(), Some(NoRoom::FileSize));
        assert_eq!(io(libc::EIO).no_room(), None);
        assert_eq!(io(libc::EACCES).no_room(), None);
        let unwritable = StoreError::Unwritable(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(unwritable.no_room(), Some(NoRoom::Device));
        assert_eq!(StoreError::InvalidKey("..".into()).no_room(), None);
    }
}
