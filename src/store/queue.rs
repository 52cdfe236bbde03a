//! [`JobQueue`]: one job queue shared by every replica on a database, with leases whose token
//! fences each write a worker makes. Only a store that many processes share has one
//! ([`super::Store::job_queue`]: PostgreSQL); under a data directory or in memory the job
//! runner keeps its own queue in memory, as one process owns that state anyway.
//!
//! The queue keeps no job records: those stay ordinary store values (`jobs/<id>.json`), which
//! the queue writes in the same transaction as the change of a job's queue row, so the record
//! and the queue never disagree after a crash. Which key a job's record lives under is the job
//! runner's business: it is passed in.
//!
//! A worker holds a job under a [`Lease`]: its token is drawn fresh at each claim, and
//! anything that takes the job away from a worker (the reaper of an expired lease) draws
//! another. Every write made under a lease checks, in the database and in the same
//! transaction, that the job's row still holds that token, and is refused otherwise
//! ([`StoreError::Fenced`]): a worker that was paused or cut off past its lease cannot
//! overwrite what happened meanwhile, whatever its clock says.

use std::time::Duration;

use uuid::Uuid;

use super::StoreError;

/// A job held by this replica: the job and the token its writes carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job: Uuid,
    /// Its token now; a stale one is refused.
    pub token: i64,
}

/// What a renewal found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The lease is held for another term; `cancel` when a client asked (on any replica) to
    /// cancel the job.
    Held {
        /// A cancel was asked for.
        cancel: bool,
    },
    /// The token is no longer the job's (reaped, or finished): stop, and write nothing more.
    Lost,
}

/// What a cancel did ([`JobQueue::cancel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancel {
    /// The job was queued: it left the queue and its record was written, in one transaction.
    Dequeued,
    /// The job runs on a replica (maybe this one): it is asked to stop, which its worker sees
    /// at its next renewal.
    Requested,
    /// The job is no longer in the queue (finished), or never was.
    NotActive,
}

/// A reaped job ([`JobQueue::reap`]): the replica that lost it, and its record as rewritten.
#[derive(Clone, Debug)]
pub struct Reaped {
    /// The job.
    pub job: Uuid,
    /// The replica whose lease expired.
    pub worker: String,
    /// The record as stored now, when the rewrite gave one.
    pub record: Option<Vec<u8>>,
}

/// How the reaper rewrites the record of a job whose lease expired: given the job, the replica
/// that lost it and the stored record (if any), the new record (`None` leaves it as it is).
/// Runs inside the reaper's transaction: it must only compute.
pub type Rewrite = dyn Fn(Uuid, &str, Option<&[u8]>) -> Option<Vec<u8>> + Send + Sync;

/// One job queue for every replica on a store; see the module's comment. Methods are
/// synchronous and called from blocking threads, as [`super::Store`]'s are.
pub trait JobQueue: Send + Sync + std::fmt::Debug {
    /// Writes the queued `record` under `key` and queues job `id`, in one transaction, unless
    /// `max_queued` jobs are queued already over all replicas (then `Ok(false)`, nothing
    /// written).
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    fn submit(
        &self,
        id: Uuid,
        key: &str,
        record: &[u8],
        max_queued: usize,
    ) -> Result<bool, StoreError>;

    /// Claims the oldest queued job for `worker` under a lease of `lease`; `None` when none is
    /// queued.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn claim(&self, worker: &str, lease: Duration) -> Result<Option<Lease>, StoreError>;

    /// Extends `lease` by `term` from now, if its token is still the job's.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached (the lease runs on meanwhile).
    fn renew(&self, lease: Lease, term: Duration) -> Result<Renewal, StoreError>;

    /// Stores `bytes` under `key` if `lease` still holds its job; [`StoreError::Fenced`]
    /// otherwise, with nothing written.
    ///
    /// # Errors
    /// [`StoreError::Fenced`], or the write's failure.
    fn put_fenced(&self, lease: Lease, key: &str, bytes: &[u8]) -> Result<(), StoreError>;

    /// [`Store::put_new`](super::Store::put_new) if `lease` still holds its job
    /// ([`StoreError::Fenced`] otherwise): `Ok(false)` when `key` holds a value already.
    ///
    /// # Errors
    /// [`StoreError::Fenced`], or the write's failure.
    fn put_new_fenced(&self, lease: Lease, key: &str, bytes: &[u8]) -> Result<bool, StoreError>;

    /// Removes `key` if `lease` still holds its job ([`StoreError::Fenced`] otherwise).
    ///
    /// # Errors
    /// [`StoreError::Fenced`], or the removal's failure.
    fn delete_fenced(&self, lease: Lease, key: &str) -> Result<(), StoreError>;

    /// The final write of a job: stores its `record` under `key` and takes the job out of the
    /// queue (`done`), in one transaction, if `lease` still holds it.
    ///
    /// # Errors
    /// [`StoreError::Fenced`], or the write's failure.
    fn finish(&self, lease: Lease, key: &str, record: &[u8]) -> Result<(), StoreError>;

    /// Cancels job `id`: a queued one leaves the queue with `record` (its cancelled record)
    /// written under `key`, in one transaction; a running one is asked to stop.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn cancel(&self, id: Uuid, key: &str, record: &[u8]) -> Result<Cancel, StoreError>;

    /// Whether job `id` is still queued or running (`None`: it has no queue row).
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn active(&self, id: Uuid) -> Result<Option<bool>, StoreError>;

    /// Every job with a queue row, whatever its state: what start-up leaves to the queue.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn queued_ids(&self) -> Result<Vec<Uuid>, StoreError>;

    /// Takes the jobs whose lease expired away from their workers (a new token, `done`) and
    /// rewrites each one's record under `key(job)` with `rewrite`, in one transaction per
    /// round; returns them.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached.
    fn reap(
        &self,
        key: fn(Uuid) -> String,
        rewrite: std::sync::Arc<Rewrite>,
    ) -> Result<Vec<Reaped>, StoreError>;
}
