//! The ends of a job's life that are not training: a retry of a finished job, and the
//! shutdown that interrupts every queued and running job and writes it through.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::persist::persist_final;
use super::{run, Job, JobError, JobFailure, JobRecord, JobState, Jobs, NewJob};
use crate::registry::RegistryError;

impl Jobs {
    /// Starts a job identical to the finished job `id` (same model, dataset, training
    /// request and seed, warm start), which records `retry_of`. Jobs that failed, were
    /// cancelled or were interrupted can be retried; a succeeded one cannot (its version
    /// exists, and the same request and seed would make the same weights again).
    ///
    /// # Errors
    /// [`JobError::NotFound`], [`JobError::NotFinished`], [`JobError::Succeeded`],
    /// [`JobError::SourceDeleted`] when its model, dataset or warm-start version is gone,
    /// and whatever [`Jobs::submit`] answers.
    pub async fn retry(&self, id: Uuid) -> Result<JobRecord, JobError> {
        let record = self.get(id)?.record();
        match (record.state, &record.result) {
            (JobState::Queued | JobState::Running, _) => {
                return Err(JobError::NotFinished {
                    id,
                    state: record.state,
                })
            }
            (JobState::Succeeded, result) => {
                return Err(JobError::Succeeded {
                    id,
                    version: result.as_ref().map_or(0, |r| r.version),
                })
            }
            _ => {}
        }
        if let Some(made) = self.inner.registry.versions_by_job().get(&id) {
            // Stopped while its version was being stored: it did make one.
            return Err(JobError::Succeeded {
                id,
                version: made.version,
            });
        }
        let gone = |what: &'static str| {
            move |error: RegistryError| match error {
                RegistryError::NotFound { id, .. } => JobError::SourceDeleted { what, id },
                other => other.into(),
            }
        };
        let registry = &self.inner.registry;
        let model = registry
            .model(&record.model.to_string())
            .map_err(gone("model"))?;
        let dataset = registry.dataset(record.dataset).map_err(gone("dataset"))?;
        if let Some(w) = record.warm_start {
            if let Some(broken) = model.unavailable_version(w.version) {
                return Err(RegistryError::Unavailable {
                    what: "version",
                    id: format!("{}/versions/{}", model.record.name, w.version),
                    reason: broken.reason.clone(),
                }
                .into());
            }
            if model.version(Some(w.version)).is_none() {
                return Err(JobError::SourceDeleted {
                    what: "warm_start.version",
                    id: format!("{}/versions/{}", model.record.name, w.version),
                });
            }
        }
        let new = NewJob {
            model,
            dataset,
            config: record.request,
            warm_start: record.warm_start,
        };
        self.submit_as(new, Some(id)).await
    }

    /// Stops the runner for a shutdown: no job starts after it; queued and running jobs
    /// become `interrupted` with their history (a running one stops at its next batch) and
    /// are written through. Under the shared queue only the jobs this replica runs do:
    /// queued ones stay queued for the other replicas. Returns once no job trains any more, or after `wait`.
    pub async fn shutdown(&self, wait: Duration) {
        let all: Vec<Arc<Job>> = {
            let jobs = self
                .inner
                .jobs
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.inner.closing.store(true, Ordering::Release);
            jobs.values().cloned().collect()
        };
        let mut stopped = Vec::new();
        for job in all {
            let mut shared = job.lock();
            let state = shared.record.state;
            // A job storing its version finishes by itself, soon: the wait below covers it.
            if state.is_finished() || shared.storing {
                continue;
            }
            // Under the shared queue, only the jobs this replica runs are its to stop: queued
            // ones stay queued for the other replicas.
            if self.inner.queue.is_some() && shared.lease.is_none() {
                continue;
            }
            if state == JobState::Queued {
                self.inner.queued.fetch_sub(1, Ordering::AcqRel);
            }
            job.interrupter.stop();
            let failure = JobFailure {
                message: format!("the server shut down while the job was {}", state.name()),
                epoch: shared.history.last().map(|r| r.epoch),
                hint: Some(format!(
                    "start it again with POST /v1/jobs/{}/retry",
                    job.id
                )),
            };
            run::finish(
                &job,
                &mut shared,
                JobState::Interrupted,
                None,
                Some(failure),
            );
            drop(shared);
            job.wake.notify_one();
            stopped.push(job);
        }
        if !stopped.is_empty() {
            tracing::info!(jobs = stopped.len(), "interrupting queued and running jobs");
        }
        let inner = Arc::clone(&self.inner);
        let _ = tokio::task::spawn_blocking(move || {
            for job in stopped {
                // Under the job's lock, as the training thread writes its final state: the
                // writes are ordered.
                let mut shared = job.lock();
                if let Err(error) = persist_final(&inner, &mut shared) {
                    tracing::error!(%error, job = %job.id, "cannot store an interrupted job");
                }
            }
        })
        .await;
        let all_slots = u32::try_from(self.inner.running_slots).unwrap_or(u32::MAX);
        let idle = tokio::time::timeout(wait, self.inner.slots.acquire_many(all_slots)).await;
        if idle.is_err() {
            tracing::warn!(
                ?wait,
                "jobs still training at shutdown; they may lose their last epochs"
            );
        }
    }
}
