//! Jobs in the store: `jobs/<id>.json` holds a job's record and whole history, in a
//! checksummed envelope. On start they are loaded back; those that were queued or running
//! become `interrupted` (or `succeeded`, when the version they made was stored before the
//! process died), and a record that cannot be read makes its job unavailable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, RwLock};

use tokio::sync::Semaphore;
use uuid::Uuid;

use super::record::StoredJob;
use super::{Inner, Job, JobFailure, JobResult, JobState, Jobs, Shared};
use crate::config::Config;
use crate::registry::{
    orphan_reason, seal, stem, unavailable, ObjectKind, Registry, RegistryError, Unavailable,
    VersionInfo,
};
use crate::store::clock;
use crate::store::queue::Lease;

/// The store key of job `id`.
pub(super) fn key(id: Uuid) -> String {
    format!("jobs/{id}.json")
}

/// Writes a job through; the snapshot is taken under its lock, the write happens outside it.
pub(super) fn persist(inner: &Inner, job: &Job) -> Result<(), RegistryError> {
    let (bytes, lease) = {
        let shared = job.lock();
        (sealed(&shared)?, shared.lease)
    };
    put(inner, job.id, lease, &bytes)
}

/// Writes `bytes` as job `id`'s record: through `lease` under the shared queue (refused when
/// stale, and nothing at all without a lease: the job is not this replica's to write), to the
/// store otherwise.
fn put(inner: &Inner, id: Uuid, lease: Option<Lease>, bytes: &[u8]) -> Result<(), RegistryError> {
    match (&inner.queue, lease) {
        (None, _) => inner.store.put(&key(id), bytes)?,
        (Some(queue), Some(lease)) => queue
            .put_fenced(lease, &key(id), bytes)
            .map_err(super::lease::counted)?,
        (Some(_), None) => {
            tracing::debug!(job = %id, "not written: this replica holds no lease on the job");
        }
    }
    Ok(())
}

pub(super) fn sealed(shared: &Shared) -> Result<Vec<u8>, RegistryError> {
    // Serialized from borrows: no copy of a long history is made under the lock.
    #[derive(serde::Serialize)]
    struct Borrowed<'a> {
        record: &'a super::JobRecord,
        history: &'a [crate::nn::EpochRecord],
    }
    seal(
        ObjectKind::Job,
        &Borrowed {
            record: &shared.record,
            history: &shared.history,
        },
    )
}

/// Writes a job through from its locked state: readers of this job wait for the write (used
/// for the final state, which must be durable before anyone can see it).
pub(super) fn persist_locked(inner: &Inner, shared: &Shared) -> Result<(), RegistryError> {
    put(inner, shared.record.id, shared.lease, &sealed(shared)?)
}

/// The final write of a finished job, from its locked state: under the shared queue it also
/// takes the job out of the queue (in the same transaction) and gives up the lease, so that
/// nothing more is written for it from here, whichever of the training thread, a cancel or a
/// shutdown wrote first.
pub(super) fn persist_final(inner: &Inner, shared: &mut Shared) -> Result<(), RegistryError> {
    let (Some(queue), Some(lease)) = (&inner.queue, shared.lease) else {
        return persist_locked(inner, shared);
    };
    let bytes = sealed(shared)?;
    shared.lease = None;
    queue
        .finish(lease, &key(shared.record.id), &bytes)
        .map_err(super::lease::counted)?;
    Ok(())
}

/// What a job that stopped with the process becomes: `succeeded` when its version was
/// stored (only the job's final write was lost), `interrupted` otherwise.
fn recover(stored: &mut StoredJob, made: Option<&VersionInfo>) {
    let was = stored.record.state;
    let record = &mut stored.record;
    record.finished_at = Some(clock::now_rfc3339());
    if let Some(i) = made {
        record.state = JobState::Succeeded;
        record.progress.epoch = i.fit.epochs_run;
        record.progress.fraction = if record.progress.epochs == 0 {
            0.0
        } else {
            (i.fit.epochs_run as f64 / record.progress.epochs as f64).min(1.0)
        };
        record.progress.eta_seconds = Some(0.0);
        record.result = Some(JobResult::of(i));
        record.error = None;
        return;
    }
    record.state = JobState::Interrupted;
    record.error = Some(JobFailure {
        message: format!("the server stopped while the job was {}", was.name()),
        epoch: stored.history.last().map(|r| r.epoch),
        hint: Some(format!(
            "start it again with POST /v1/jobs/{}/retry",
            record.id
        )),
    });
}

impl Jobs {
    /// A runner for `config`'s limits, training into `registry`, with the jobs of its store
    /// loaded back (those that were queued or running become `interrupted`, and those whose
    /// record cannot be read are unavailable).
    ///
    /// # Errors
    /// [`RegistryError`] when the store cannot be listed.
    pub fn load(config: &Config, registry: Arc<Registry>) -> Result<Self, RegistryError> {
        let store = registry.store();
        let queue = Arc::clone(&store).job_queue();
        // Under the shared queue, a job with a queue row is the queue's: other replicas run
        // it or will, and the reaper interrupts it if its worker is gone. Only jobs from
        // before the queue existed are recovered here.
        let in_queue: HashSet<Uuid> = match &queue {
            Some(queue) => queue.queued_ids()?.into_iter().collect(),
            None => HashSet::new(),
        };
        let made: HashMap<Uuid, VersionInfo> = registry.versions_by_job();
        let mut jobs = BTreeMap::new();
        let mut broken = BTreeMap::new();
        for k in store.list("jobs/")? {
            if !k.ends_with(".json") {
                continue;
            }
            let id = stem(&k).to_owned();
            let read = registry
                .read_record::<StoredJob>(ObjectKind::Job, &k)
                .and_then(|stored| match stored {
                    Some(s) if s.record.id.to_string() != id => Err(format!(
                        "the record is of job {}, not of the {id} its file name says",
                        s.record.id
                    )),
                    other => Ok(other),
                });
            let mut stored = match read {
                Ok(Some(stored)) => stored,
                Ok(None) => continue,
                Err(reason) => {
                    let gone = unavailable(ObjectKind::Job, &id, &k, reason);
                    if let Ok(uuid) = Uuid::parse_str(&id) {
                        broken.insert(uuid, gone);
                    }
                    continue;
                }
            };
            let made = made.get(&stored.record.id);
            // Not finished, or written as stopped although its version was stored (a
            // shutdown or cancel racing the version's write, from an older build).
            let stale = stored.record.state != JobState::Succeeded && made.is_some();
            let queued = in_queue.contains(&stored.record.id);
            if (!stored.record.state.is_finished() || stale) && !queued {
                recover(&mut stored, made);
                let rewritten = seal(ObjectKind::Job, &stored).and_then(|b| Ok(store.put(&k, &b)?));
                if let Err(error) = rewritten {
                    // It is interrupted in memory all the same, and again at the next start.
                    tracing::error!(%error, job = %id, "cannot store an interrupted job");
                }
            }
            let job = Job::new(stored.record, stored.history);
            jobs.insert(job.id, Arc::new(job));
        }
        let orphaned = registry.orphaned_models();
        let orphans = jobs
            .values()
            .filter(|job| orphaned.contains(&job.lock().record.model))
            .count();
        if orphans > 0 {
            tracing::warn!(
                jobs = orphans,
                "jobs whose model has no record but left versions; GET /v1/storage/unavailable lists them"
            );
        }
        let running = config.max_running_jobs.max(1);
        let jobs = Self {
            inner: Arc::new(Inner {
                jobs: RwLock::new(jobs),
                unavailable: broken,
                queued: AtomicUsize::new(0),
                max_queued: config.max_queued_jobs,
                slots: Arc::new(Semaphore::new(running)),
                running_slots: running,
                closing: AtomicBool::new(false),
                registry,
                store,
                max_epochs: config.limits.max_epochs,
                placement: super::pool::Placement {
                    nice: config.training_nice,
                    idle: config.training_idle,
                    serving_cpus: config.serving_cpus,
                    threads: config.training_threads,
                },
                subscribers: AtomicUsize::new(0),
                max_subscribers: config.max_event_subscribers,
                max_subscribers_per_job: config.max_event_subscribers_per_job,
                queue,
                replica: config.replica_name(),
                lease: config.job_lease(),
                claim: tokio::sync::Notify::new(),
            }),
        };
        jobs.start_cluster();
        Ok(jobs)
    }

    /// The jobs whose stored record cannot be loaded, and those whose model has no record
    /// but left versions behind (orphans: see [`Registry::orphaned_models`]), which are
    /// loaded and shown all the same.
    #[must_use]
    pub fn unavailable(&self) -> Vec<Unavailable> {
        let mut all: Vec<Unavailable> = self.inner.unavailable.values().cloned().collect();
        let orphaned = self.inner.registry.orphaned_models();
        if orphaned.is_empty() {
            return all;
        }
        let jobs = self
            .inner
            .jobs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for job in jobs.values() {
            let model = job.lock().record.model;
            if orphaned.contains(&model) {
                all.push(Unavailable {
                    kind: ObjectKind::Job,
                    id: job.id.to_string(),
                    file: key(job.id),
                    reason: orphan_reason(model),
                });
            }
        }
        all
    }
}
