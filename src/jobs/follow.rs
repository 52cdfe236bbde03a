//! Following jobs that other replicas run, when replicas share the store: [`Jobs::refresh`]
//! reads a job's stored record and history after another replica wrote it, and tells this
//! replica's subscribers what is new, so `GET /v1/jobs/{id}` and its event stream answer on
//! every replica, whichever trains the job.
//!
//! The worker writes a running job's record at most once a second (see `run`), so a follower
//! sees its epochs in bursts of a second's worth. A small burst goes to subscribers as the
//! events they would have had from the worker itself; a large one, which would overflow the
//! ring of live events and make every subscriber lag, as one [`JobEvent::Appended`], on which
//! they read the new epochs from the history (appended under the same lock as the event is
//! sent) before the live events that follow it.

use std::sync::Arc;

use uuid::Uuid;

use super::record::StoredJob;
use super::{Job, JobEvent, Jobs, EVENT_BUFFER};
use crate::registry::ObjectKind;

/// The most epochs a follower sends subscribers one event each; a larger burst is one
/// [`JobEvent::Appended`].
const APPENDED_LIVE: usize = EVENT_BUFFER / 8;

impl Jobs {
    /// Brings this replica's view of the job stored under `key` (`jobs/<id>.json`) in line
    /// with the store; other keys are ignored. A job this replica trains is left alone while
    /// it runs: its record is this replica's to write.
    pub fn refresh(&self, key: &str) {
        let Some(id) = key
            .strip_prefix("jobs/")
            .and_then(|rest| rest.strip_suffix(".json"))
            .and_then(|id| Uuid::parse_str(id).ok())
        else {
            return;
        };
        let known = self
            .inner
            .jobs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned();
        if let Some(job) = &known {
            let shared = job.lock();
            if shared.lease.is_some() && !shared.record.state.is_finished() {
                return;
            }
        }
        let stored = self
            .inner
            .registry
            .read_record::<StoredJob>(ObjectKind::Job, key);
        match (stored, known) {
            (Ok(Some(stored)), _) if stored.record.id != id => {
                tracing::warn!(%key, "a job's record names another job; not followed");
            }
            (Ok(Some(stored)), Some(job)) => follow(&job, stored),
            (Ok(Some(stored)), None) => {
                let job = Arc::new(Job::new(stored.record, stored.history));
                self.inner
                    .jobs
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(id, job);
            }
            (Ok(None), Some(_)) => {
                self.inner
                    .jobs
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id);
            }
            (Ok(None), None) => {}
            (Err(reason), _) => {
                tracing::warn!(%key, %reason, "a job's record changed and cannot be read");
            }
        }
    }
}

/// Takes `stored` as `job`'s record and history, and sends subscribers the epochs they have
/// not had and the change of state, under the job's lock as the worker would.
fn follow(job: &Job, stored: StoredJob) {
    let mut shared = job.lock();
    let had = shared.history.len();
    let new = stored.history.len().saturating_sub(had);
    if stored.history.len() >= had {
        // A few epochs go out live, as the worker sent them; more would overflow the ring that
        // a subscriber reads live events from, so it is told to read them from the history.
        if new <= APPENDED_LIVE {
            for record in &stored.history[had..] {
                let _ = job.events.send(JobEvent::Epoch(Arc::new(record.clone())));
            }
        } else {
            let _ = job.events.send(JobEvent::Appended(stored.history.len()));
        }
        shared.history.extend(stored.history.into_iter().skip(had));
    } else {
        // Not a record of the same run (a history only grows): taken as it is.
        shared.history = stored.history;
    }
    let changed = shared.record.state != stored.record.state;
    shared.record = stored.record;
    if changed {
        let _ = job
            .events
            .send(JobEvent::Status(Arc::new(shared.record.clone())));
    }
}
