//! Jobs in the store: `jobs/<id>.json` holds a job's record and whole history. On start
//! they are loaded back; those that were queued or running become `interrupted`.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::{broadcast, Notify, Semaphore};
use uuid::Uuid;

use super::record::StoredJob;
use super::{Inner, Job, JobFailure, JobState, Jobs, Shared, EVENT_BUFFER};
use crate::config::Config;
use crate::nn::Interrupter;
use crate::registry::{clock, to_json, Registry, RegistryError, Store};

/// The store key of job `id`.
pub(super) fn key(id: Uuid) -> String {
    format!("jobs/{id}.json")
}

/// Writes a job through; the snapshot is taken under its lock, the write happens outside it.
pub(super) fn persist(store: &dyn Store, job: &Job) -> Result<(), RegistryError> {
    let stored = {
        let shared = job.lock();
        StoredJob {
            record: shared.record.clone(),
            history: shared.history.clone(),
        }
    };
    store.put(&key(stored.record.id), &to_json(&stored)?)?;
    Ok(())
}

/// Writes a job through from its locked state: readers of this job wait for the write (used
/// for the final state, which must be durable before anyone can see it).
pub(super) fn persist_locked(store: &dyn Store, shared: &Shared) -> Result<(), RegistryError> {
    let stored = StoredJob {
        record: shared.record.clone(),
        history: shared.history.clone(),
    };
    store.put(&key(stored.record.id), &to_json(&stored)?)?;
    Ok(())
}

impl Jobs {
    /// A runner for `config`'s limits, training into `registry`, with the jobs of its store
    /// loaded back (those that were queued or running become `interrupted`).
    ///
    /// # Errors
    /// [`RegistryError`] when the store cannot be read.
    pub fn load(config: &Config, registry: Arc<Registry>) -> Result<Self, RegistryError> {
        let store = registry.store();
        let mut jobs = BTreeMap::new();
        for k in store.list("jobs/")? {
            let Some(mut stored) = registry.read_json::<StoredJob>(&k)? else {
                continue;
            };
            let was = stored.record.state;
            if !was.is_finished() {
                stored.record.state = JobState::Interrupted;
                stored.record.finished_at = Some(clock::now_rfc3339());
                stored.record.error = Some(JobFailure {
                    message: format!("the server stopped while the job was {}", was.name()),
                    epoch: stored.history.last().map(|r| r.epoch),
                    hint: Some("submit the job again".to_owned()),
                });
                store.put(&k, &to_json(&stored)?)?;
            }
            let (events, _) = broadcast::channel(EVENT_BUFFER);
            let job = Job {
                shared: Mutex::new(Shared {
                    record: stored.record,
                    history: stored.history,
                    last_persist: Instant::now(),
                }),
                interrupter: Interrupter::new(),
                wake: Notify::new(),
                events,
            };
            jobs.insert(job.record().id, Arc::new(job));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: RwLock::new(jobs),
                queued: AtomicUsize::new(0),
                max_queued: config.max_queued_jobs,
                slots: Arc::new(Semaphore::new(config.max_running_jobs.max(1))),
                registry,
                store,
                max_epochs: config.limits.max_epochs,
            }),
        })
    }
}
