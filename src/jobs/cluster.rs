//! The job runner on the queue that every replica shares (`store::queue`, under
//! `--database-url`): the claim loop that fills this replica's free slots with the oldest
//! queued jobs, the heartbeat that renews each lease, the reaper that interrupts jobs whose
//! worker went quiet, and the cancel of a job that runs on another replica.
//!
//! A lease that cannot be renewed because the database cannot be reached is kept until it
//! would expire by this replica's clock (a short outage costs nothing); then the job is
//! interrupted here: training stops and nothing more is written, since by then another
//! replica may have reaped it. Training does not pause and wait for the database instead,
//! because the job is no longer this replica's to finish once its lease may have run out.
//!
//! The clocks of the replicas are not trusted for safety: a lease's expiry is decided by the
//! database's clock (`now()` in the reaper's query), and a write is fenced by the token in
//! the database, so a replica whose clock or scheduling is off (a paused process) can only
//! give up early, never write late.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use super::persist::{key, persist_final, sealed};
use super::record::StoredJob;
use super::run::{self, Work};
use super::{Inner, Job, JobError, JobFailure, JobRecord, JobState, Jobs};
use crate::registry::{seal, ObjectKind, RegistryError};
use crate::store::queue::{Cancel, Lease, Renewal};
use crate::store::{clock, envelope};

/// How often a replica looks for queued jobs when nothing woke it (a submit on another
/// replica is seen this late at most).
const POLL: Duration = Duration::from_millis(300);

/// How often the reaper looks for expired leases.
const REAP_EVERY: Duration = Duration::from_secs(1);

impl Jobs {
    /// Starts the claim loop and the reaper, under a shared queue and inside a runtime.
    pub(super) fn start_cluster(&self) {
        if self.inner.queue.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no runtime: this replica claims no jobs from the shared queue");
            return;
        };
        runtime.spawn(claim_loop(Arc::downgrade(&self.inner)));
        runtime.spawn(reap_loop(Arc::downgrade(&self.inner)));
    }

    /// Submits under the shared queue: the record and the queue row in one transaction, the
    /// queue's bound counted over every replica.
    pub(super) async fn submit_shared(&self, job: Arc<Job>) -> Result<(), JobError> {
        let Some(queue) = self.inner.queue.clone() else {
            return Ok(());
        };
        let max = self.inner.max_queued;
        let id = job.id;
        let submitted = tokio::task::spawn_blocking(move || {
            let bytes = sealed(&job.lock())?;
            Ok::<_, RegistryError>(queue.submit(id, &key(id), &bytes, max)?)
        })
        .await
        .unwrap_or_else(|_| {
            Err(RegistryError::Corrupt {
                key: key(id),
                message: "the write did not finish".into(),
            })
        })?;
        if submitted {
            self.inner.claim.notify_one();
            Ok(())
        } else {
            Err(JobError::QueueFull { max })
        }
    }

    /// Cancels `job` under the shared queue when this replica does not run it: a queued job
    /// leaves the queue with its record written in one transaction; a running one is asked to
    /// stop, and the answer waits (a lease or so at most) for its worker's final record.
    pub(super) async fn cancel_shared(&self, job: Arc<Job>) -> Result<JobRecord, JobError> {
        let Some(queue) = self.inner.queue.clone() else {
            return Err(JobError::NotFound(job.id.to_string()));
        };
        let id = job.id;
        let (record, bytes) = {
            let shared = job.lock();
            let mut record = shared.record.clone();
            record.state = JobState::Cancelled;
            record.finished_at = Some(clock::now_rfc3339());
            record.error = Some(JobFailure {
                message: "cancelled by a client while queued".to_owned(),
                epoch: None,
                hint: None,
            });
            let bytes = seal(
                ObjectKind::Job,
                &StoredJob {
                    record: record.clone(),
                    history: shared.history.clone(),
                },
            )?;
            (record, bytes)
        };
        let outcome = {
            let queue = Arc::clone(&queue);
            tokio::task::spawn_blocking(move || queue.cancel(id, &key(id), &bytes))
                .await
                .map_err(|_| JobError::Unavailable {
                    id,
                    reason: "the cancel did not finish".into(),
                })?
                .map_err(RegistryError::from)?
        };
        if outcome == Cancel::Dequeued {
            let mut shared = job.lock();
            run::finish(&job, &mut shared, record.state, None, record.error.clone());
            return Ok(shared.record.clone());
        }
        // Its worker sees the cancel at its next renewal, a third of a lease away; one that
        // died is reaped a lease later.
        let deadline = Instant::now() + self.inner.lease * 2 + Duration::from_secs(2);
        while outcome == Cancel::Requested && Instant::now() < deadline {
            let queue = Arc::clone(&queue);
            let active = tokio::task::spawn_blocking(move || queue.active(id)).await;
            if matches!(active, Ok(Ok(Some(false) | None))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stored = self.read_stored(id).await?;
        adopt(&job, stored);
        let record = job.record();
        match (outcome, record.state) {
            (Cancel::Requested, JobState::Cancelled) => Ok(record),
            (_, state) if state.is_finished() => Err(JobError::Finished { id, state }),
            _ => Ok(record),
        }
    }

    async fn read_stored(&self, id: Uuid) -> Result<StoredJob, JobError> {
        let registry = Arc::clone(&self.inner.registry);
        let read = tokio::task::spawn_blocking(move || {
            registry.read_record::<StoredJob>(ObjectKind::Job, &key(id))
        })
        .await
        .map_err(|_| "the read did not finish".to_owned())
        .and_then(|read| read);
        match read {
            Ok(Some(stored)) => Ok(stored),
            Ok(None) => Err(JobError::NotFound(id.to_string())),
            Err(reason) => Err(JobError::Unavailable { id, reason }),
        }
    }
}

/// Makes `stored` (the job as the store has it now) the cached job's state, telling its
/// subscribers when that changed its state.
fn adopt(job: &Job, stored: StoredJob) {
    let mut shared = job.lock();
    if shared.record == stored.record {
        return;
    }
    let changed = shared.record.state != stored.record.state;
    if stored.history.len() >= shared.history.len() {
        shared.history = stored.history;
    }
    shared.record = stored.record;
    if changed {
        let _ = job
            .events
            .send(super::JobEvent::Status(Arc::new(shared.record.clone())));
    }
}

/// Claims queued jobs into this replica's free slots: when a slot frees, when this replica
/// submits, and every [`POLL`] otherwise. Ends when the runner is dropped or shuts down.
async fn claim_loop(weak: Weak<Inner>) {
    let mut failing = false;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        let Ok(permit) = Arc::clone(&inner.slots).acquire_owned().await else {
            return;
        };
        if inner.closing.load(Ordering::Acquire) {
            return; // a slot freed by the shutdown: claim nothing more
        }
        let Some(queue) = inner.queue.clone() else {
            return;
        };
        let (replica, lease) = (inner.replica.clone(), inner.lease);
        let claimed = tokio::task::spawn_blocking(move || queue.claim(&replica, lease)).await;
        match claimed {
            Ok(Ok(Some(lease))) => {
                failing = false;
                tokio::spawn(start_claimed(Arc::clone(&inner), lease, permit));
                continue;
            }
            Ok(Ok(None)) => failing = false,
            Ok(Err(error)) => {
                if !failing {
                    tracing::warn!(%error, "cannot claim jobs from the shared queue; trying again");
                }
                failing = true;
            }
            Err(_) => {}
        }
        drop(permit);
        tokio::select! {
            () = inner.claim.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Takes expired leases away from their workers every [`REAP_EVERY`], and marks their jobs
/// `interrupted` (in the same transaction).
async fn reap_loop(weak: Weak<Inner>) {
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        let Some(queue) = inner.queue.clone() else {
            return;
        };
        let term = inner.lease;
        let rewrite = Arc::new(move |id: Uuid, worker: &str, stored: Option<&[u8]>| {
            interrupted(id, worker, term, stored?)
        });
        let reaped = tokio::task::spawn_blocking(move || queue.reap(key, rewrite)).await;
        let reaped = match reaped {
            Ok(Ok(reaped)) => reaped,
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot look for expired leases");
                continue;
            }
            Err(_) => continue,
        };
        for gone in reaped {
            tracing::warn!(job = %gone.job, worker = %gone.worker, "a job's lease expired: the job is interrupted");
            let cached = inner
                .jobs
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&gone.job)
                .cloned();
            let stored = gone
                .record
                .and_then(|bytes| envelope::open::<StoredJob>(ObjectKind::Job.name(), &bytes).ok());
            if let (Some(job), Some(stored)) = (cached, stored) {
                adopt(&job, stored);
            }
        }
    }
}

/// The record of a job whose worker lost its lease, as the reaper writes it: `interrupted`,
/// its history kept.
fn interrupted(id: Uuid, worker: &str, term: Duration, stored: &[u8]) -> Option<Vec<u8>> {
    let mut job: StoredJob = match envelope::open(ObjectKind::Job.name(), stored) {
        Ok(job) => job,
        Err(reason) => {
            tracing::error!(job = %id, %reason, "the record of a reaped job cannot be read; left as it is");
            return None;
        }
    };
    if job.record.state.is_finished() {
        return None;
    }
    let was = job.record.state;
    job.record.state = JobState::Interrupted;
    job.record.finished_at = Some(clock::now_rfc3339());
    if job.record.progress.eta_seconds.is_some() {
        job.record.progress.eta_seconds = Some(0.0);
    }
    job.record.error = Some(JobFailure {
        message: format!(
            "the replica {worker} lost its lease on the job while it was {} (no renewal for {}s: it stopped, or lost the database)",
            was.name(),
            term.as_secs()
        ),
        epoch: job.history.last().map(|r| r.epoch),
        hint: Some(format!("start it again with POST /v1/jobs/{id}/retry")),
    });
    seal(ObjectKind::Job, &job).ok()
}

/// Runs a job this replica just claimed: its record (from the cache when it was submitted
/// here, else from the store), its model and dataset, then training in the slot `permit`
/// holds, with a heartbeat beside it.
async fn start_claimed(inner: Arc<Inner>, lease: Lease, permit: OwnedSemaphorePermit) {
    let id = lease.job;
    let prepared = {
        let inner = Arc::clone(&inner);
        tokio::task::spawn_blocking(move || prepare(&inner, id)).await
    };
    let (job, work) = match prepared {
        Ok(Ok(found)) => found,
        Ok(Err((job, reason))) => {
            // The job cannot run here (its model or dataset is gone): it fails, through the
            // lease.
            tracing::warn!(job = %id, %reason, "a claimed job cannot run");
            if let Some(job) = job {
                let failure = JobFailure {
                    message: reason,
                    epoch: None,
                    hint: None,
                };
                fail_claimed(&inner, job, lease, JobState::Failed, failure).await;
            }
            return;
        }
        Err(_) => return,
    };
    {
        let mut shared = job.lock();
        shared.lease = Some(lease);
        shared.record.state = JobState::Running;
        shared.record.started_at = Some(clock::now_rfc3339());
        shared.record.worker = Some(inner.replica.clone());
        shared.last_persist = Instant::now();
        let _ = job
            .events
            .send(super::JobEvent::Status(Arc::new(shared.record.clone())));
    }
    if inner.closing.load(Ordering::Acquire) {
        let failure = JobFailure {
            message: "the server shut down while the job was starting".to_owned(),
            epoch: None,
            hint: Some(format!("start it again with POST /v1/jobs/{id}/retry")),
        };
        fail_claimed(&inner, job, lease, JobState::Interrupted, failure).await;
        return;
    }
    tracing::info!(job = %id, token = lease.token, "claimed a job from the shared queue");
    tokio::spawn(heartbeat(Arc::downgrade(&inner), Arc::clone(&job), lease));
    run::train_in_slot(inner, job, work, permit).await;
}

/// Ends a claimed job that cannot train with `state` and `failure`, through its lease.
async fn fail_claimed(
    inner: &Arc<Inner>,
    job: Arc<Job>,
    lease: Lease,
    state: JobState,
    failure: JobFailure,
) {
    {
        let mut shared = job.lock();
        shared.lease = Some(lease);
        shared.record.state = JobState::Running;
        run::finish(&job, &mut shared, state, None, Some(failure));
    }
    let inner = Arc::clone(inner);
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(error) = persist_final(&inner, &mut job.lock()) {
            tracing::error!(%error, job = %job.id, "cannot store a job that cannot run");
        }
    })
    .await;
}

type Prepared = Result<(Arc<Job>, Work), (Option<Arc<Job>>, String)>;

/// The claimed job `id` and what it needs to run.
fn prepare(inner: &Inner, id: Uuid) -> Prepared {
    let cached = inner
        .jobs
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&id)
        .cloned();
    let job = match cached {
        Some(job) => job,
        None => {
            let stored = inner
                .registry
                .read_record::<StoredJob>(ObjectKind::Job, &key(id))
                .map_err(|reason| (None, format!("its record cannot be read: {reason}")))?
                .ok_or_else(|| (None, "it has no record".to_owned()))?;
            let job = Arc::new(Job::new(stored.record, stored.history));
            let mut jobs = inner
                .jobs
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(jobs.entry(id).or_insert(job))
        }
    };
    let record = job.record();
    let registry = &inner.registry;
    let resolved = registry.fetch_model(record.model).and_then(|model| {
        let dataset = registry.fetch_dataset(record.dataset)?;
        let start = match record.warm_start {
            None => None,
            Some(w) => Some(
                model
                    .version(Some(w.version))
                    .map(|v| Arc::clone(&v.model))
                    .ok_or_else(|| RegistryError::NotFound {
                        what: "version",
                        id: format!("{}/versions/{}", record.model_name, w.version),
                    })?,
            ),
        };
        Ok(Work {
            spec: model.record.spec.clone(),
            start,
            dataset,
            record: record.clone(),
        })
    });
    match resolved {
        Ok(work) => Ok((job, work)),
        Err(error) => Err((Some(job), format!("the job cannot start: {error}"))),
    }
}

/// Renews `lease` every third of a term while the job runs here; stops the job when the lease
/// is lost (or cannot be renewed before it would expire), and cancels it when a client asked.
async fn heartbeat(weak: Weak<Inner>, job: Arc<Job>, lease: Lease) {
    let mut renewed = Instant::now();
    loop {
        let Some(term) = weak.upgrade().map(|inner| inner.lease) else {
            return;
        };
        tokio::time::sleep(term / 3).await;
        let Some(inner) = weak.upgrade() else { return };
        if job.lock().lease != Some(lease) {
            return; // finished, cancelled or lost
        }
        let Some(queue) = inner.queue.clone() else {
            return;
        };
        let renewal = tokio::task::spawn_blocking(move || queue.renew(lease, term)).await;
        match renewal {
            Ok(Ok(Renewal::Held { cancel })) => {
                renewed = Instant::now();
                if cancel {
                    cancel_here(&inner, &job).await;
                }
            }
            Ok(Ok(Renewal::Lost)) => {
                lose(
                    &job,
                    lease,
                    "this replica lost its lease on the job (it did not renew it in time, \
                     and another replica marked the job interrupted)",
                );
                return;
            }
            Ok(Err(error)) if renewed.elapsed() >= term => {
                tracing::warn!(%error, job = %job.id, "cannot renew a lease before it expires");
                lose(
                    &job,
                    lease,
                    "this replica could not reach the database to renew its lease on the job",
                );
                return;
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, job = %job.id, "cannot renew a lease; trying again");
            }
            Err(_) => {}
        }
    }
}

/// Stops a job whose lease this replica lost: training stops, and nothing more is written
/// (the lease is dropped); the cached job says why.
fn lose(job: &Job, lease: Lease, message: &str) {
    let mut shared = job.lock();
    if shared.lease != Some(lease) {
        return;
    }
    super::lease::count_lost();
    tracing::warn!(job = %job.id, token = lease.token, "{message}; writing nothing more for it");
    shared.lease = None;
    job.interrupter.stop();
    let failure = JobFailure {
        message: message.to_owned(),
        epoch: shared.history.last().map(|r| r.epoch),
        hint: Some(format!(
            "start it again with POST /v1/jobs/{}/retry",
            job.id
        )),
    };
    run::finish(job, &mut shared, JobState::Interrupted, None, Some(failure));
}

/// Cancels a job that runs here, as a client on another replica asked (through the queue).
async fn cancel_here(inner: &Arc<Inner>, job: &Arc<Job>) {
    {
        let mut shared = job.lock();
        if shared.record.state != JobState::Running || shared.storing {
            return; // finishing by itself
        }
        job.interrupter.stop();
        let epoch = shared.history.last().map(|r| r.epoch);
        run::finish(
            job,
            &mut shared,
            JobState::Cancelled,
            None,
            Some(JobFailure {
                message: "cancelled by a client while running".to_owned(),
                epoch,
                hint: None,
            }),
        );
    }
    let (inner, job) = (Arc::clone(inner), Arc::clone(job));
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(error) = persist_final(&inner, &mut job.lock()) {
            tracing::error!(%error, job = %job.id, "cannot store a cancelled job");
        }
    })
    .await;
}
