//! The job runner: training requests wait in a bounded FIFO queue, at most N run at once (a
//! tokio `Semaphore`, which hands out permits in order), each on tokio's blocking pool so the
//! async workers keep serving.
//!
//! A job's record and history live behind its own short `std::sync::Mutex`; events (one per
//! epoch, one per state change) are sent on a `broadcast` channel *while that mutex is held*,
//! so a subscriber that has read the history and subscribes under the same lock misses
//! nothing and sees nothing twice. Histories are read a page at a time, never copied whole
//! for a client ([`HistoryPage`], [`Subscriber`]). Cancellation sets the job's state at once
//! and raises its [`Interrupter`], which `nn::fit` checks between batches; once training has
//! ended and the version is being stored, a cancel waits for it and answers that the job
//! finished, so a `cancelled` (or `interrupted`) job never writes a version. Records are
//! written through the registry's store at every state change and, while running, at most
//! once a second (so a fast job's thousands of epochs do not become thousands of fsyncs, each
//! rewriting a growing history); the final write holds the whole history. A `kill -9`
//! therefore loses at most the epochs that ended in the last second before it (see
//! `run::PERSIST_EVERY`); a graceful [`Jobs::shutdown`] loses none.
//!
//! Under a store that many replicas share (`--database-url`) the queue is the database's
//! instead (`store::queue`, driven from `cluster`): a submit writes the record and queues the
//! job in one transaction, every replica claims jobs into its free slots, holds each under a
//! lease it renews, and writes through the lease (fenced); the in-memory FIFO is not used.

mod cluster;
mod follow;
mod history;
mod lease;
mod lifecycle;
mod persist;
mod pool;
mod queue;
mod record;
mod run;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, Notify, Semaphore};
use uuid::Uuid;

use crate::nn::{EpochRecord, Interrupter, NnError, TrainConfig};
use crate::registry::{DatasetEntry, ModelEntry, Registry, RegistryError, Unavailable};
use crate::store::queue::{JobQueue, Lease};
use crate::store::Store;
pub use history::{HistoryPage, Subscriber, Update};
pub use lease::{leases_lost, writes_fenced};
pub use pool::wait_idle as wait_for_training_threads;
#[cfg(any(test, fuzzing))]
pub(crate) use record::StoredJob;
pub use record::{JobEvent, JobFailure, JobRecord, JobResult, JobState, Progress, WarmStart};

/// How long a client is told to wait when the queue is full.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Live events a subscriber may fall behind by: the job's ring of recent events, shared by
/// all its subscribers. One that falls further behind is told so ([`Update::Lagged`]) and
/// resumes from the stored history.
pub const EVENT_BUFFER: usize = 1024;

/// Everything that can go wrong in the job layer.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No such job.
    #[error("no job '{0}'")]
    NotFound(String),
    /// The queue holds as many jobs as allowed.
    #[error("the queue of {max} jobs is full")]
    QueueFull {
        /// `--max-queued-jobs`.
        max: usize,
    },
    /// The job is finished and cannot change.
    #[error("job {id} is {} already", state.name())]
    Finished {
        /// The job.
        id: Uuid,
        /// Its final state.
        state: JobState,
    },
    /// The job's stored record cannot be loaded.
    #[error("job {id} is unavailable: {reason}")]
    Unavailable {
        /// The job.
        id: Uuid,
        /// Why its record cannot be loaded.
        reason: String,
    },
    /// A retry of a job that is still queued or running.
    #[error("job {id} is still {}", state.name())]
    NotFinished {
        /// The job.
        id: Uuid,
        /// Its state.
        state: JobState,
    },
    /// A retry of a job that succeeded.
    #[error("job {id} succeeded (version {version})")]
    Succeeded {
        /// The job.
        id: Uuid,
        /// The version it made.
        version: u32,
    },
    /// A retry whose model, dataset or warm-start version was deleted since.
    #[error("the {what} '{id}' of the job was deleted")]
    SourceDeleted {
        /// `model`, `dataset` or `warm_start.version`.
        what: &'static str,
        /// Which.
        id: String,
    },
    /// The service is shutting down and starts no more jobs.
    #[error("the service is shutting down")]
    ShuttingDown,
    /// As many clients follow job events as `--max-event-subscribers` allows, or follow this
    /// job's as `--max-event-subscribers-per-job` does.
    #[error("{max} clients follow {} already", job.map_or("job events".into(), |id| format!("job {id}")))]
    TooManySubscribers {
        /// The cap that was hit.
        max: usize,
        /// The job, when its own cap was hit; `None` for the cap over all jobs.
        job: Option<Uuid>,
    },
    /// The request is invalid or over a limit.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl From<NnError> for JobError {
    fn from(error: NnError) -> Self {
        JobError::Registry(RegistryError::Nn(error))
    }
}

/// A new job, checked by [`Jobs::submit`].
#[derive(Debug)]
pub struct NewJob {
    /// The model to train.
    pub model: Arc<ModelEntry>,
    /// The data to train on.
    pub dataset: Arc<DatasetEntry>,
    /// Hyper-parameters.
    pub config: TrainConfig,
    /// Start from this version's weights.
    pub warm_start: Option<WarmStart>,
}

#[derive(Debug)]
struct Shared {
    record: JobRecord,
    history: Vec<EpochRecord>,
    last_persist: Instant,
    /// Training ended and the version is being stored: too late to cancel or interrupt.
    storing: bool,
    /// Under the shared queue, the lease this replica holds the job under while it runs it
    /// here; every write for the job goes through it, and none is made without it.
    lease: Option<Lease>,
}

/// One job: its record and history, its cancel flag and its event channel.
#[derive(Debug)]
pub struct Job {
    id: Uuid,
    shared: Mutex<Shared>,
    interrupter: Interrupter,
    wake: Notify,
    events: broadcast::Sender<JobEvent>,
    /// Its [`Subscriber`]s now.
    subscribers: AtomicUsize,
}

impl Job {
    /// A job with `record` and `history`, not yet written through.
    fn new(record: JobRecord, history: Vec<EpochRecord>) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            id: record.id,
            shared: Mutex::new(Shared {
                record,
                history,
                last_persist: Instant::now(),
                storing: false,
                lease: None,
            }),
            interrupter: Interrupter::new(),
            wake: Notify::new(),
            events,
            subscribers: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A snapshot of the record.
    #[must_use]
    pub fn record(&self) -> JobRecord {
        self.lock().record.clone()
    }
}

#[derive(Debug)]
struct Inner {
    jobs: RwLock<BTreeMap<Uuid, Arc<Job>>>,
    /// Jobs whose stored record cannot be loaded.
    unavailable: BTreeMap<Uuid, Unavailable>,
    queued: AtomicUsize,
    max_queued: usize,
    slots: Arc<Semaphore>,
    /// The permits of `slots`: holding them all means no job is training.
    running_slots: usize,
    /// Set by [`Jobs::shutdown`]: no job starts after it.
    closing: AtomicBool,
    registry: Arc<Registry>,
    store: Arc<dyn Store>,
    max_epochs: u64,
    /// How the training threads run (`--training-nice`, `--training-idle`, `--serving-cpus`).
    placement: pool::Placement,
    /// [`Subscriber`]s of every job now.
    subscribers: AtomicUsize,
    /// `--max-event-subscribers`.
    max_subscribers: usize,
    /// `--max-event-subscribers-per-job`.
    max_subscribers_per_job: usize,
    /// The queue every replica shares, when the store has one (`None`: the FIFO above).
    queue: Option<Arc<dyn JobQueue>>,
    /// This replica's name (`--replica-name`): a job's `worker`.
    replica: String,
    /// `--job-lease-secs`.
    lease: Duration,
    /// Wakes the claim loop (a submit here, a slot freed).
    claim: Notify,
}

/// The runner. Cloning is shallow.
#[derive(Clone, Debug)]
pub struct Jobs {
    inner: Arc<Inner>,
}
