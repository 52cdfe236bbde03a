//! Whether the data directory takes writes, asked by `/readyz` at most once a second
//! ([`WriteProbe`]): a volume that went away, a full or read-only disk make the server not
//! ready, so a load balancer sends its traffic elsewhere.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use uuid::Uuid;

/// How long a probe's answer is reused: readiness checks from many load balancers cost one
/// small write a second at most.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Whether the data directory takes writes: creates, fsyncs and deletes a small file in it,
/// at most once per [`PROBE_EVERY`], and keeps the answer meanwhile.
///
/// The file is named like the store's temporary files (`.ready-probe.tmp-<uuid>`), so one
/// left behind by a crash is swept at the next start.
#[derive(Debug)]
pub struct WriteProbe {
    dir: PathBuf,
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl WriteProbe {
    /// A probe of `dir`, not yet run.
    #[must_use]
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            last: Mutex::new(None),
        }
    }

    /// `Err` with the reason (the system's, without the path) when the last write failed.
    pub async fn check(&self) -> Result<(), String> {
        // An async mutex: concurrent checks wait for the one probe in flight.
        let mut last = self.last.lock().await;
        if let Some((at, result)) = &*last {
            if at.elapsed() < PROBE_EVERY {
                return result.clone();
            }
        }
        let dir = self.dir.clone();
        let result = tokio::task::spawn_blocking(move || probe(&dir))
            .await
            .unwrap_or_else(|_| Err("the write probe failed".to_owned()));
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

fn probe(dir: &Path) -> Result<(), String> {
    let path = dir.join(format!(".ready-probe.tmp-{}", Uuid::now_v7()));
    let written = std::fs::File::create_new(&path).and_then(|mut file| {
        file.write_all(b"ready")?;
        file.sync_all()
    });
    let result = match written {
        // Never leave the file behind, even when writing it failed half way.
        Ok(()) => std::fs::remove_file(&path),
        Err(error) => {
            let _ = std::fs::remove_file(&path);
            Err(error)
        }
    };
    result.map_err(|error| {
        tracing::warn!(%error, dir = %dir.display(), "the data directory cannot be written");
        error.to_string()
    })
}
