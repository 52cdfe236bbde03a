//! Writing through a job's lease under the shared queue (`cluster`): the store a worker
//! stores a trained version through, every put fenced by the lease, and the counters of
//! writes the database refused and of leases lost. Apart from `cluster` so that the runner
//! (`run`, `persist`) and the queue's loops share it without importing each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::registry::RegistryError;
use crate::store::queue::{JobQueue, Lease};
use crate::store::{Store, StoreError};

static FENCED: AtomicU64 = AtomicU64::new(0);
static LOST: AtomicU64 = AtomicU64::new(0);

/// Writes of this process that the database refused because their lease's token was stale
/// (`mlp_lab_job_writes_fenced_total`).
#[must_use]
pub fn writes_fenced() -> u64 {
    FENCED.load(Ordering::Relaxed)
}

/// Leases this process lost while it ran their jobs (`mlp_lab_job_leases_lost_total`).
#[must_use]
pub fn leases_lost() -> u64 {
    LOST.load(Ordering::Relaxed)
}

/// `error`, counted and logged when it is a write the database refused (fenced).
fn noted(error: StoreError) -> StoreError {
    if let StoreError::Fenced { job, token } = &error {
        FENCED.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%job, token, "a write under a stale lease was refused by the database");
    }
    error
}

/// A store failure as the registry's, counted and logged when it is a refused (fenced) write.
pub(super) fn counted(error: StoreError) -> RegistryError {
    RegistryError::Store(noted(error))
}

/// The store as a job's worker writes through it: every put and delete fenced by the job's
/// lease (what the registry writes a trained version through), reads as the store's.
#[derive(Debug)]
pub(super) struct LeasedStore {
    queue: Arc<dyn JobQueue>,
    store: Arc<dyn Store>,
    lease: Lease,
}

impl LeasedStore {
    pub(super) fn new(queue: Arc<dyn JobQueue>, store: Arc<dyn Store>, lease: Lease) -> Self {
        Self {
            queue,
            store,
            lease,
        }
    }
}

impl Store for LeasedStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.queue.put_fenced(self.lease, key, bytes).map_err(noted)
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        self.queue
            .put_new_fenced(self.lease, key, bytes)
            .map_err(noted)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(key)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.queue.delete_fenced(self.lease, key).map_err(noted)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.store.list(prefix)
    }

    fn probe(&self) -> Result<(), StoreError> {
        self.store.probe()
    }

    fn keeps_values(&self) -> bool {
        self.store.keeps_values()
    }
}

/// Counts a lease this process lost while it ran its job.
pub(super) fn count_lost() {
    LOST.fetch_add(1, Ordering::Relaxed);
}
