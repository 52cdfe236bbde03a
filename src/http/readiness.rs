//! Whether the store takes writes, asked by `/readyz`: a volume that went away, a full or
//! read-only disk make the server not ready, so a load balancer sends its traffic elsewhere.
//! The store finds that out ([`Store::probe`]); [`WriteProbe`] here only keeps its answer, so
//! that readiness checks from many load balancers probe once a second at most.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::store::Store;

/// How long a probe's answer is reused: readiness checks from many load balancers cost one
/// small write a second at most.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Whether the store takes writes: asks [`Store::probe`] (which, under a data directory,
/// creates, fsyncs and deletes a small file in it) at most once per [`PROBE_EVERY`], and keeps
/// the answer meanwhile.
#[derive(Debug)]
pub struct WriteProbe {
    store: Arc<dyn Store>,
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl WriteProbe {
    /// A probe of `store`, not yet run.
    #[must_use]
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
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
        let store = Arc::clone(&self.store);
        let result = tokio::task::spawn_blocking(move || store.probe().map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|_| Err("the write probe failed".to_owned()));
        *last = Some((Instant::now(), result.clone()));
        result
    }
}
