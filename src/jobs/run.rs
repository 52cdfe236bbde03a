//! Running one job: wait for a slot, train on the blocking pool, record the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::persist::{persist, persist_final};
use super::{Inner, Job, JobEvent, JobFailure, JobRecord, JobResult, JobState, Shared};
use crate::nn::{fit, Control, EpochRecord, Model, ModelSpec, NnError};
use crate::registry::{DatasetEntry, VersionInfo};
use crate::store::clock;

/// While running, a job's record is written at most this often (and at every state change).
///
/// Each write rewrites the whole history, so writing every epoch would make a job of n tiny
/// epochs cost O(n²) bytes and n fsyncs (a durable write takes ~11 ms on the development VM,
/// an XOR epoch ~4 µs). The price: a `kill -9` loses the epochs that ended
/// after the last write, i.e. those of the last second before the crash plus the one in
/// progress (a job's history after a restart ends at most this long before the crash).
pub(super) const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// What a checked job needs to run.
#[derive(Debug)]
pub(super) struct Work {
    pub record: JobRecord,
    pub spec: ModelSpec,
    pub start: Option<Arc<Model>>,
    pub dataset: Arc<DatasetEntry>,
}

/// Moves a job to a final state, once: later calls (a fit that ends after a cancel) do nothing.
pub(super) fn finish(
    job: &Job,
    shared: &mut Shared,
    state: JobState,
    result: Option<JobResult>,
    error: Option<JobFailure>,
) -> bool {
    if !finish_silently(shared, state, result, error) {
        return false;
    }
    let _ = job
        .events
        .send(JobEvent::Status(Arc::new(shared.record.clone())));
    true
}

/// Sets the final state and its fields, without telling subscribers; false if the job had
/// already finished.
fn finish_silently(
    shared: &mut Shared,
    state: JobState,
    result: Option<JobResult>,
    error: Option<JobFailure>,
) -> bool {
    if shared.record.state.is_finished() {
        return false;
    }
    shared.record.state = state;
    shared.record.finished_at = Some(clock::now_rfc3339());
    // Nothing is left to wait for, whether all epochs ran or training stopped early.
    if shared.record.progress.eta_seconds.is_some() {
        shared.record.progress.eta_seconds = Some(0.0);
    }
    shared.record.result = result;
    shared.record.error = error;
    true
}

/// Waits for a slot (or a cancel), then trains on the training pool ([`super::pool`]).
pub(super) async fn drive(inner: Arc<Inner>, job: Arc<Job>, work: Work) {
    let permit = tokio::select! {
        permit = Arc::clone(&inner.slots).acquire_owned() => permit.ok(),
        () = job.wake.notified() => None,
    };
    let Some(permit) = permit else { return };
    {
        let mut shared = job.lock();
        if shared.record.state != JobState::Queued {
            return; // cancelled while queued
        }
        inner
            .queued
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        shared.record.state = JobState::Running;
        shared.record.started_at = Some(clock::now_rfc3339());
        shared.record.worker = Some(inner.replica.clone());
        let _ = job
            .events
            .send(JobEvent::Status(Arc::new(shared.record.clone())));
    }
    train_in_slot(inner, job, work, permit).await;
}

/// Trains a running job on the training pool, holding `permit` (its slot) until it ends.
pub(super) async fn train_in_slot(
    inner: Arc<Inner>,
    job: Arc<Job>,
    work: Work,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let id = work.record.id;
    let span = tracing::info_span!("job", %id);
    let outcome = super::pool::spawn(inner.placement, {
        let (inner, job) = (Arc::clone(&inner), Arc::clone(&job));
        move || span.in_scope(|| train(&inner, &job, work))
    })
    .await;
    drop(permit);
    // A slot is free: the shared queue's claim loop may take another job.
    inner.claim.notify_one();
    if let Err(error) = outcome {
        let message = match error.try_into_panic() {
            Ok(panic) => panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned()),
            Err(error) => error.to_string(),
        };
        tracing::error!(job = %id, %message, "training panicked");
        let failure = JobFailure {
            message: "training stopped on an internal error; the server logged it".to_owned(),
            epoch: job.lock().history.last().map(|r| r.epoch),
            hint: None,
        };
        finish(&job, &mut job.lock(), JobState::Failed, None, Some(failure));
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(error) = persist_final(&inner, &mut job.lock()) {
                tracing::error!(%error, job = %id, "cannot store a failed job");
            }
        })
        .await;
    }
}

/// Trains on the current (blocking) thread and records the outcome.
fn train(inner: &Inner, job: &Job, work: Work) {
    if let Err(error) = persist(inner, job) {
        tracing::error!(%error, "cannot store a started job");
    }
    let model = match &work.start {
        Some(start) => Ok(Model::clone(start)),
        None => Model::new(work.spec.clone(), work.record.request.seed),
    };
    let data = Arc::clone(&work.dataset.data);
    let train_rows = data.rows() as f64
        * (1.0 - work.record.request.validation_split - work.record.request.test_split);
    let started = Instant::now();
    let mut on_epoch = |record: &EpochRecord| on_epoch(inner, job, record, train_rows, started);
    let fitted = model.and_then(|m| {
        fit(
            m,
            &data,
            &work.record.request,
            &job.interrupter,
            &mut on_epoch,
        )
    });
    let (state, result, error) = match fitted {
        // Cancelled (or interrupted) after the last batch: no version.
        Ok(_) if !begin_storing(job) => (JobState::Cancelled, None, None),
        Ok((model, report)) => {
            let info = VersionInfo {
                model: work.record.model,
                version: 0,
                job: Some(work.record.id),
                dataset: Some(work.record.dataset),
                created_at: String::new(),
                fit: report.summary,
                numeric_labels: work.dataset.info.numeric_labels,
            };
            // Under the shared queue, through the job's lease: a replica that lost it stores
            // no version.
            let lease = job.lock().lease;
            let added = match (&inner.queue, lease) {
                (Some(queue), Some(lease)) => inner.registry.add_version_through(
                    &super::lease::LeasedStore::new(
                        Arc::clone(queue),
                        Arc::clone(&inner.store),
                        lease,
                    ),
                    work.record.model,
                    model,
                    info,
                ),
                (Some(_), None) => Err(crate::registry::RegistryError::Store(
                    crate::store::StoreError::Fenced {
                        job: work.record.id,
                        token: 0,
                    },
                )),
                (None, _) => inner.registry.add_version(work.record.model, model, info),
            };
            match added {
                Ok(v) => (JobState::Succeeded, Some(JobResult::of(&v.info)), None),
                Err(error) => (
                    JobState::Failed,
                    None,
                    Some(failure(&error.to_string(), None, None)),
                ),
            }
        }
        Err(NnError::Cancelled { .. }) => (JobState::Cancelled, None, None),
        Err(NnError::Diverged {
            epoch,
            message,
            hint,
        }) => (
            JobState::Failed,
            None,
            Some(failure(
                &format!("training diverged: {message}"),
                Some(epoch),
                Some(hint),
            )),
        ),
        Err(other) => (
            JobState::Failed,
            None,
            Some(failure(&other.to_string(), None, None)),
        ),
    };
    // The final record is written through while the job's lock is held, so no client can see
    // the final state (by polling) before it is durable; the event goes out after the write.
    {
        let mut shared = job.lock();
        let changed = finish_silently(&mut shared, state, result, error);
        if changed || state == JobState::Cancelled {
            if let Err(error) = persist_final(inner, &mut shared) {
                tracing::error!(%error, "cannot store a finished job");
            }
        }
        if changed {
            let _ = job
                .events
                .send(JobEvent::Status(Arc::new(shared.record.clone())));
        }
    }
    tracing::info!(state = state.name(), "job finished");
}

/// Whether the job is still running, and if so marks it as storing its version: from then
/// on a cancel or a shutdown leaves it to finish (its state is not changed under the write),
/// so that a job answered `cancelled` or `interrupted` never writes one.
fn begin_storing(job: &Job) -> bool {
    let mut shared = job.lock();
    if shared.record.state != JobState::Running {
        return false;
    }
    shared.storing = true;
    true
}

fn failure(message: &str, epoch: Option<usize>, hint: Option<String>) -> JobFailure {
    JobFailure {
        message: message.to_owned(),
        epoch,
        hint,
    }
}

/// Records an epoch, tells subscribers, and writes the job through now and then.
fn on_epoch(
    inner: &Inner,
    job: &Job,
    record: &EpochRecord,
    train_rows: f64,
    started: Instant,
) -> Control {
    let due = {
        let mut shared = job.lock();
        if shared.record.state != JobState::Running {
            return Control::Stop; // cancelled: the fit ends here or at the next batch
        }
        let p = &mut shared.record.progress;
        p.epoch = record.epoch;
        p.fraction = if p.epochs == 0 {
            0.0
        } else {
            record.epoch as f64 / p.epochs as f64
        };
        if record.epoch > 0 && record.seconds > 0.0 {
            p.samples_per_second = Some(train_rows.max(1.0) / record.seconds);
            let pace = started.elapsed().as_secs_f64() / record.epoch as f64;
            p.eta_seconds = Some(pace * p.epochs.saturating_sub(record.epoch) as f64);
        }
        shared.record.latest = Some(record.clone());
        shared.history.push(record.clone());
        let _ = job.events.send(JobEvent::Epoch(Arc::new(record.clone())));
        let due = shared.last_persist.elapsed() >= PERSIST_EVERY;
        if due {
            shared.last_persist = Instant::now();
        }
        due
    };
    if due {
        if let Err(error) = persist(inner, job) {
            tracing::error!(%error, "cannot store a job's progress");
        }
    }
    Control::Continue
}
