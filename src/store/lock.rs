//! [`DataDirLock`]: one process per data directory. Two servers on one `--data-dir` would
//! overwrite each other's files and each serve a registry the other no longer matches, so the
//! second refuses to start, naming the first.
//!
//! The lock is the operating system's: an exclusive `flock` (std's [`File::try_lock`]) on
//! `<data-dir>/.lock`, held by the open file. The kernel drops it when the process ends
//! however it ends, `kill -9` and a crash included, so a stale lock never needs removing by
//! hand; the file itself stays, and says who held it last. Its name starts with a dot, so the
//! store never lists, copies or sweeps it.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = ".lock";

/// The exclusive lock on a data directory, held until this value is dropped or the process
/// ends.
#[derive(Debug)]
pub struct DataDirLock {
    // Never read: holding the open file is holding the lock.
    _file: File,
    path: PathBuf,
}

/// Why a data directory cannot be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "the data directory {dir} is in use by another mlp-lab process ({holder}); stop that \
         process or give this one another --data-dir (one process per data directory)"
    )]
    Held {
        /// The directory.
        dir: PathBuf,
        /// Who holds it, as the holder wrote it (`pid 1234 on host web-1 since …`).
        holder: String,
    },
    /// The lock file cannot be opened or locked.
    #[error("cannot lock the data directory {dir} ({path}): {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl DataDirLock {
    /// Locks `dir` (created if missing) for this process, and writes who holds it into the
    /// lock file.
    ///
    /// # Errors
    /// [`LockError::Held`] naming the holder when another process holds the lock, and
    /// [`LockError::Io`] when the directory or its lock file cannot be made or locked.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            dir: dir.to_owned(),
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // Best effort: the holder may not have written its name yet.
                let _ = file.take(512).read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    holder: if holder.is_empty() {
                        "it has not said who it is yet".to_owned()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(TryLockError::Error(source)) => return Err(io(source)),
        }
        let holder = format!(
            "pid {} on host {} since {}",
            std::process::id(),
            hostname(),
            super::clock::now_rfc3339()
        );
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(holder.as_bytes()))
            .map_err(io)?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// This machine's name, as the kernel has it (`unknown` where it cannot be read).
fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_directory_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("mlp-lab-lock-{}", uuid::Uuid::now_v7()));
        let first = DataDirLock::acquire(&dir).expect("the first lock");

        let second = DataDirLock::acquire(&dir);

        let Err(LockError::Held { holder, .. }) = second else {
            panic!("a second lock was not refused: {second:?}");
        };
        assert!(
            holder.starts_with(&format!("pid {} on host ", std::process::id())),
            "{holder}"
        );
        drop(first);
        let third = DataDirLock::acquire(&dir).expect("free again once dropped");
        assert!(third.path().ends_with(LOCK_FILE));
        drop(third);
        let _ = fs::remove_dir_all(&dir);
    }
}
