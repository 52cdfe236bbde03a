//! [`FileStore`]: the store under `--data-dir`. Every write goes to a temporary file, is
//! fsynced, renamed into place, and the directory fsynced, so a crash leaves the old value or
//! the new one, never half of one. A write that fails (a full disk) removes its temporary
//! file at once; a crash does leave the temporary file of the interrupted write
//! (`.<name>.tmp-<uuid>`): [`FileStore::open`] sweeps them, and [`Store::list`] never shows
//! them.
//!
//! [`Store::probe`] creates, fsyncs and deletes a small file in the root directory, named like
//! those temporary files (`.ready-probe.tmp-<uuid>`) so that one left by a crash is swept too.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{check_key, Store, StoreError};

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
            let written = fs::File::create(&tmp).and_then(|mut file| {
                file.write_all(bytes)?;
                file.sync_all()?;
                drop(file);
                fs::rename(&tmp, &path)
            });
            if let Err(error) = written {
                // Never acknowledged, so it goes at once, not at the next start: on a full
                // disk it holds the very space that is missing.
                if let Err(removal) = fs::remove_file(&tmp) {
                    if removal.kind() != io::ErrorKind::NotFound {
                        tracing::warn!(file = %tmp.display(), error = %removal, "cannot remove the temporary file of a failed write");
                    }
                }
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

    fn probe(&self) -> Result<(), StoreError> {
        // Into the root as it is, never creating it: a data directory that went away (or a
        // file in its place) must fail the probe, not be made anew.
        let path = self
            .root
            .join(format!(".ready-probe.tmp-{}", uuid::Uuid::now_v7()));
        let written = fs::File::create_new(&path).and_then(|mut file| {
            file.write_all(b"ready")?;
            file.sync_all()
        });
        let result = match written {
            // Never leave the file behind, even when writing it failed half way.
            Ok(()) => fs::remove_file(&path),
            Err(error) => {
                let _ = fs::remove_file(&path);
                Err(error)
            }
        };
        result.map_err(|error| {
            tracing::warn!(%error, dir = %self.root.display(), "the data directory cannot be written");
            StoreError::Unwritable(error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_store_keeps_what_it_is_given_across_reopening() {
        let dir = std::env::temp_dir().join(format!("mlp-lab-store-{}", uuid::Uuid::now_v7()));
        let store = FileStore::open(&dir).expect("open");
        crate::store::exercise(&store);
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

    #[test]
    fn the_probe_writes_and_removes_a_file_and_fails_once_the_directory_is_gone() {
        let dir = std::env::temp_dir().join(format!("mlp-lab-store-{}", uuid::Uuid::now_v7()));
        let store = FileStore::open(&dir).expect("open");
        store.probe().expect("a fresh directory takes writes");
        assert_eq!(
            fs::read_dir(&dir).expect("list").count(),
            0,
            "the probe leaves nothing behind"
        );

        let moved = dir.with_extension("moved");
        fs::rename(&dir, &moved).expect("rename");
        assert!(matches!(store.probe(), Err(StoreError::Unwritable(_))));
        assert!(!dir.exists(), "the probe does not make the directory anew");
        fs::write(&dir, b"not a directory").expect("a file in its place");
        assert!(matches!(store.probe(), Err(StoreError::Unwritable(_))));
        fs::remove_file(&dir).expect("remove the file");

        fs::rename(&moved, &dir).expect("rename back");
        store.probe().expect("writes work again");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_probe_file_left_by_a_crash_is_swept_at_start() {
        let dir = std::env::temp_dir().join(format!("mlp-lab-store-{}", uuid::Uuid::now_v7()));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join(".ready-probe.tmp-0190"), b"ready").expect("a leftover");
        let store = FileStore::open(&dir).expect("open");
        assert_eq!(store.swept(), 1);
        let _ = fs::remove_dir_all(&dir);
    }
}
