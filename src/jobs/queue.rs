//! The queue's side of [`Jobs`]: submitting a job (checked, queued, started when a slot is
//! free), cancelling it, and reading and listing jobs.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::broadcast;
use uuid::Uuid;

use super::persist::{key, persist, persist_final};
use super::{
    run, Job, JobError, JobEvent, JobFailure, JobRecord, JobState, Jobs, NewJob, Progress,
};
use crate::config::Limit;
use crate::registry::{Page, RegistryError};
use crate::store::clock;

impl Jobs {
    fn jobs(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Uuid, Arc<Job>>> {
        self.inner
            .jobs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The job `id`.
    ///
    /// # Errors
    /// [`JobError::NotFound`].
    /// [`JobError::NotFound`], or [`JobError::Unavailable`] for a job whose stored record
    /// cannot be loaded.
    pub fn get(&self, id: Uuid) -> Result<Arc<Job>, JobError> {
        let found = self.jobs().get(&id).cloned();
        found.ok_or_else(|| match self.inner.unavailable.get(&id) {
            Some(u) => JobError::Unavailable {
                id,
                reason: u.reason.clone(),
            },
            None => JobError::NotFound(id.to_string()),
        })
    }

    /// `--max-queued-jobs`: the most jobs that can wait at once.
    #[must_use]
    pub fn max_queued(&self) -> usize {
        self.inner.max_queued
    }

    /// How many more jobs the queue takes now (`--max-queued-jobs` minus those waiting).
    #[must_use]
    pub fn queue_room(&self) -> usize {
        self.inner
            .max_queued
            .saturating_sub(self.inner.queued.load(Ordering::Acquire))
    }

    /// Checks `new` and queues it; the job starts as soon as a slot is free.
    ///
    /// # Errors
    /// [`JobError::QueueFull`], or [`JobError::Registry`] for an invalid configuration, a
    /// model that does not fit the data, or a missing warm-start version.
    pub async fn submit(&self, new: NewJob) -> Result<JobRecord, JobError> {
        self.submit_as(new, None).await
    }

    pub(super) async fn submit_as(
        &self,
        new: NewJob,
        retry_of: Option<Uuid>,
    ) -> Result<JobRecord, JobError> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(JobError::ShuttingDown);
        }
        let mut work = self.check(new)?;
        work.record.retry_of = retry_of;
        if self.inner.queue.is_some() {
            // The shared queue's: whichever replica has a free slot claims it.
            let record = work.record.clone();
            let job = Arc::new(Job::new(record.clone(), Vec::new()));
            self.submit_shared(Arc::clone(&job)).await?;
            self.inner
                .jobs
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(record.id, job);
            return Ok(record);
        }
        let max = self.inner.max_queued;
        self.inner
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < max).then_some(q + 1)
            })
            .map_err(|_| JobError::QueueFull { max })?;
        let record = work.record.clone();
        let job = Arc::new(Job::new(record.clone(), Vec::new()));
        let inner = Arc::clone(&self.inner);
        let persisted = tokio::task::spawn_blocking({
            let job = Arc::clone(&job);
            move || persist(&inner, &job)
        })
        .await;
        if !matches!(persisted, Ok(Ok(()))) {
            self.inner.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(match persisted {
                Ok(Err(error)) => error,
                _ => RegistryError::Corrupt {
                    key: key(record.id),
                    message: "the write did not finish".into(),
                },
            }
            .into());
        }
        {
            // `closing` is set under this lock, so a job is either seen by shutdown or refused.
            let mut jobs = self
                .inner
                .jobs
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !self.inner.closing.load(Ordering::Acquire) {
                jobs.insert(record.id, Arc::clone(&job));
                drop(jobs);
                tokio::spawn(run::drive(Arc::clone(&self.inner), job, work));
                return Ok(record);
            }
        }
        self.inner.queued.fetch_sub(1, Ordering::AcqRel);
        let store = Arc::clone(&self.inner.store);
        let _ = tokio::task::spawn_blocking(move || store.delete(&key(record.id))).await;
        Err(JobError::ShuttingDown)
    }

    fn check(&self, new: NewJob) -> Result<run::Work, JobError> {
        let mut config = new.config;
        if config.epochs as u64 > self.inner.max_epochs {
            let max = self.inner.max_epochs;
            return Err(RegistryError::limit("epochs", Limit::Epochs, max, config.epochs).into());
        }
        config.validate()?;
        // `fit` needs training rows; refuse splits that leave none here, as a 422, rather
        // than fail the job later.
        let split =
            new.dataset
                .data
                .split(config.validation_split, config.test_split, config.seed)?;
        if split.train.is_empty() || config.validation_split + config.test_split >= 1.0 {
            return Err(RegistryError::invalid(
                "validation_split",
                format!(
                    "validation_split + test_split = {} leave no training rows of {}",
                    config.validation_split + config.test_split,
                    new.dataset.data.rows()
                ),
            )
            .into());
        }
        let spec = &new.model.record.spec;
        let data = &new.dataset.data;
        if data.n_features() != spec.inputs() {
            return Err(RegistryError::invalid(
                "dataset",
                format!(
                    "the model takes {} inputs but the dataset has {} features",
                    spec.inputs(),
                    data.n_features()
                ),
            )
            .into());
        }
        let columns = data.targets.names().len();
        spec.output
            .check_task(spec.outputs(), data.task(), columns)
            .map_err(|m| RegistryError::invalid("dataset", m))?;
        let start = match new.warm_start {
            Some(w) => Some(
                new.model
                    .version(Some(w.version))
                    .map(|v| Arc::clone(&v.model))
                    .ok_or_else(|| {
                        RegistryError::invalid(
                            "warm_start.version",
                            format!(
                                "model '{}' has no version {}",
                                new.model.record.name, w.version
                            ),
                        )
                    })?,
            ),
            None => None,
        };
        // A warm start keeps the version's input preprocessing, whatever `standardize` says:
        // its weights were fitted to it. `fit` keeps the statistics a version has; a version
        // without any (weights imported without mlp-lab metadata, or trained with
        // `standardize: false`) goes on with raw inputs, and the job's record says so.
        if start.as_ref().is_some_and(|m| m.standardizer.is_none()) {
            config.standardize = false;
        }
        let record = JobRecord {
            id: Uuid::now_v7(),
            model: new.model.record.id,
            model_name: new.model.record.name.clone(),
            dataset: new.dataset.info.id,
            state: JobState::Queued,
            created_at: clock::now_rfc3339(),
            started_at: None,
            finished_at: None,
            progress: Progress {
                epochs: config.epochs,
                ..Progress::default()
            },
            request: config,
            warm_start: new.warm_start,
            latest: None,
            result: None,
            error: None,
            retry_of: None,
            worker: None,
        };
        Ok(run::Work {
            record,
            spec: spec.clone(),
            start,
            dataset: Arc::clone(&new.dataset),
        })
    }

    /// Cancels a queued or running job (a running one stops within one batch). A job whose
    /// training has ended and whose version is being stored cannot be cancelled any more:
    /// the cancel waits for the version and answers that the job finished.
    ///
    /// # Errors
    /// [`JobError::NotFound`], or [`JobError::Finished`] for a finished job.
    pub async fn cancel(&self, id: Uuid) -> Result<JobRecord, JobError> {
        let job = self.get(id)?;
        let elsewhere = {
            let shared = job.lock();
            shared.lease.is_none() && !shared.record.state.is_finished()
        };
        if self.inner.queue.is_some() && elsewhere {
            // Queued in the shared queue, or running on another replica.
            return self.cancel_shared(job).await;
        }
        let cancelled = {
            let mut shared = job.lock();
            let state = shared.record.state;
            if state.is_finished() {
                return Err(JobError::Finished { id, state });
            }
            if shared.storing {
                // The final status is sent under this lock, so it cannot be missed.
                Err(job.events.subscribe())
            } else {
                if state == JobState::Queued {
                    self.inner.queued.fetch_sub(1, Ordering::AcqRel);
                }
                let epoch = shared.history.last().map(|r| r.epoch);
                job.interrupter.stop();
                run::finish(
                    &job,
                    &mut shared,
                    JobState::Cancelled,
                    None,
                    Some(JobFailure {
                        message: format!("cancelled by a client while {}", state.name()),
                        epoch,
                        hint: None,
                    }),
                );
                Ok(shared.record.clone())
            }
        };
        let record = match cancelled {
            Ok(record) => record,
            Err(events) => return Err(Self::finished(&job, events).await),
        };
        job.wake.notify_one();
        let inner = Arc::clone(&self.inner);
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(error) = persist_final(&inner, &mut job.lock()) {
                tracing::error!(%error, job = %id, "cannot store a cancelled job");
            }
        })
        .await;
        Ok(record)
    }

    /// Waits for the final status of `job` on `events` and says which it is.
    async fn finished(job: &Job, mut events: broadcast::Receiver<JobEvent>) -> JobError {
        loop {
            match events.recv().await {
                Ok(JobEvent::Status(record)) if record.state.is_finished() => break,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        JobError::Finished {
            id: job.id,
            state: job.lock().record.state,
        }
    }

    /// Cancels every queued or running job of a model (when it is deleted).
    pub async fn cancel_model(&self, model: Uuid) {
        let ids: Vec<Uuid> = self
            .jobs()
            .values()
            .map(|j| j.record())
            .filter(|r| r.model == model && !r.state.is_finished())
            .map(|r| r.id)
            .collect();
        for id in ids {
            let _ = self.cancel(id).await;
        }
    }

    /// How many jobs are in each state of [`JobState::ALL`] (same order), and the summed
    /// throughput of the running ones: what `/metrics` shows, read without cloning a record
    /// (each job's lock is held only to read two fields).
    #[must_use]
    pub fn gauges(&self) -> ([usize; JobState::ALL.len()], f64) {
        let mut counts = [0; JobState::ALL.len()];
        let mut samples_per_second = 0.0;
        for job in self.jobs().values() {
            let shared = job.lock();
            let state = shared.record.state;
            if let Some(i) = JobState::ALL.iter().position(|&s| s == state) {
                counts[i] += 1;
            }
            if state == JobState::Running {
                samples_per_second += shared.record.progress.samples_per_second.unwrap_or(0.0);
            }
        }
        (counts, samples_per_second)
    }

    /// A page of jobs, oldest first, filtered by state and model.
    #[must_use]
    pub fn list(
        &self,
        state: Option<JobState>,
        model: Option<Uuid>,
        offset: usize,
        limit: usize,
    ) -> Page<JobRecord> {
        let all: Vec<JobRecord> = self
            .jobs()
            .values()
            .map(|j| j.record())
            .filter(|r| state.is_none_or(|s| r.state == s) && model.is_none_or(|m| r.model == m))
            .collect();
        let total = all.len();
        Page {
            items: all.into_iter().skip(offset).take(limit).collect(),
            total,
        }
    }
}
