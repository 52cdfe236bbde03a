//! Reading a job's history without copying the whole of it for a client: a page at a time
//! ([`HistoryPage`], for `GET /v1/jobs/{id}/metrics`), in place ([`Jobs::read_history`], for
//! the leaderboard), and by [`Subscriber`]s, which read the stored history a page at a time
//! and then follow the live events.
//!
//! A history holds up to `--max-epochs` records (tens of megabytes at the default), so a copy
//! for each request or subscriber lets a few clients that do not read take gigabytes. A page
//! is copied out under the job's lock only when the caller asks for it, which the HTTP layer
//! does once the client has taken the previous one: a client that stops reading holds a page.
//!
//! Live events come from the job's ring of the last [`EVENT_BUFFER`](super::EVENT_BUFFER)
//! events, shared by its subscribers. A subscriber that falls further behind is not kept a
//! buffer of its own: it is told so ([`Update::Lagged`]) and nothing follows, and it resumes
//! from the stored history with a new subscription after the last epoch it saw. That is the
//! policy of Kubernetes watches (a watcher that cannot keep up is closed and re-watches from
//! its last resource version) and of Redis pub/sub (a client over its output buffer limit is
//! disconnected); with the whole history stored, resuming loses nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use super::{Inner, Job, JobError, JobEvent, JobRecord, JobState, Jobs};
use crate::nn::EpochRecord;

/// A page of a job's history: its records from an epoch on, at most a page size of them, as
/// the history was when the page was taken. Its records are copied out a few at a time.
#[derive(Debug)]
pub struct HistoryPage {
    job: Arc<Job>,
    /// The index in the history of the next record to take.
    next: usize,
    /// The index of the first record after the page.
    end: usize,
    /// The job's state when the page was taken.
    pub state: JobState,
    /// The epoch of the first record after the page, when the history had one.
    pub next_since: Option<usize>,
}

impl HistoryPage {
    /// The next at most `n` records of the page, in order (none once all are taken).
    #[must_use]
    pub fn take(&mut self, n: usize) -> Vec<EpochRecord> {
        let to = self.end.min(self.next.saturating_add(n));
        if to <= self.next {
            return Vec::new();
        }
        // A history only grows, so the indices of the page stay its records.
        let records = self.job.lock().history[self.next..to].to_vec();
        self.next = to;
        records
    }
}

/// What a [`Subscriber`] reads next.
#[derive(Debug)]
pub enum Update {
    /// Stored records it had not read, in order: at most the page it asked for.
    Epochs(Vec<EpochRecord>),
    /// One more epoch, live.
    Epoch(Arc<EpochRecord>),
    /// The job changed state; its record after the change.
    Status(Arc<JobRecord>),
    /// The job was finished when the subscriber had read all its history: nothing follows.
    Finished(Arc<JobRecord>),
    /// It fell more than [`EVENT_BUFFER`](super::EVENT_BUFFER) live events behind, and
    /// `missed` of them are gone from the ring: nothing follows. A new subscription after the
    /// last epoch it read resumes from the stored history.
    Lagged {
        /// Events gone from the ring before it read them.
        missed: u64,
    },
}

/// A client following one job: it reads the stored history from an epoch on, a page at a
/// time, then the live events. It holds a slot of `--max-event-subscribers` and one of
/// `--max-event-subscribers-per-job` until it is dropped.
#[derive(Debug)]
pub struct Subscriber {
    job: Arc<Job>,
    jobs: Arc<Inner>,
    /// The index in the history of the next record to read.
    next: usize,
    /// The live events, once it has read the whole history.
    live: Option<broadcast::Receiver<JobEvent>>,
    /// While live, the length of the history to read from it before the next live event
    /// ([`JobEvent::Appended`]).
    until: usize,
}

impl Subscriber {
    /// The next update: up to `page` stored records while there are some it has not read,
    /// then the live events (waiting for the next).
    pub async fn next(&mut self, page: usize) -> Update {
        loop {
            if self.live.is_some() && self.next < self.until {
                // Epochs appended at once ([`JobEvent::Appended`]), read from the history
                // while the live events after them wait in the receiver.
                let to = self.until.min(self.next.saturating_add(page.max(1)));
                let records = self.job.lock().history[self.next..to].to_vec();
                self.next = to;
                return Update::Epochs(records);
            }
            let live = match &mut self.live {
                Some(live) => live,
                None => {
                    let shared = self.job.lock();
                    let stored = shared.history.len();
                    if self.next < stored {
                        let to = stored.min(self.next.saturating_add(page.max(1)));
                        let records = shared.history[self.next..to].to_vec();
                        drop(shared);
                        self.next = to;
                        return Update::Epochs(records);
                    }
                    if shared.record.state.is_finished() {
                        return Update::Finished(Arc::new(shared.record.clone()));
                    }
                    // Under the lock that every event is sent under: what it receives is
                    // exactly what follows the history it has read.
                    self.live.insert(self.job.events.subscribe())
                }
            };
            return match live.recv().await {
                Ok(JobEvent::Epoch(record)) => {
                    self.next += 1;
                    Update::Epoch(record)
                }
                Ok(JobEvent::Status(record)) => Update::Status(record),
                Ok(JobEvent::Appended(end)) => {
                    self.until = end;
                    continue;
                }
                Err(RecvError::Lagged(missed)) => Update::Lagged { missed },
                // The sender lives in the job this holds, so it does not close; if it did, the
                // record would say where the job is, and nothing more would come.
                Err(RecvError::Closed) => Update::Finished(Arc::new(self.job.record())),
            };
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.job.subscribers.fetch_sub(1, Ordering::AcqRel);
        self.jobs.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes one of `count`'s `max` slots, if one is free.
fn take_slot(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Jobs {
    /// A page of job `id`'s history: its records from epoch `since` on, at most `limit`.
    ///
    /// # Errors
    /// [`JobError::NotFound`], [`JobError::Unavailable`].
    pub fn history_page(
        &self,
        id: Uuid,
        since: usize,
        limit: usize,
    ) -> Result<HistoryPage, JobError> {
        let job = self.get(id)?;
        let (next, end, state, next_since) = {
            let shared = job.lock();
            let history = &shared.history;
            let next = history.partition_point(|r| r.epoch < since);
            let end = next.saturating_add(limit).min(history.len());
            let after = history.get(end).map(|r| r.epoch);
            (next, end, shared.record.state, after)
        };
        Ok(HistoryPage {
            job,
            next,
            end,
            state,
            next_since,
        })
    }

    /// `read` of job `id`'s whole history, in place, under the job's lock: for a quick pass
    /// over it (a running job's training waits meanwhile), never for a copy.
    ///
    /// # Errors
    /// [`JobError::NotFound`], [`JobError::Unavailable`].
    pub fn read_history<R>(
        &self,
        id: Uuid,
        read: impl FnOnce(&[EpochRecord]) -> R,
    ) -> Result<R, JobError> {
        let job = self.get(id)?;
        let shared = job.lock();
        Ok(read(&shared.history))
    }

    /// At most `max` of job `id`'s epoch records, evenly spaced from the first to the last
    /// (every record when there are no more than `max`): what a chart of the whole history
    /// can show, copied out under the job's lock without copying a long history whole.
    ///
    /// # Errors
    /// [`JobError::NotFound`], [`JobError::Unavailable`].
    pub fn history_sample(&self, id: Uuid, max: usize) -> Result<Vec<EpochRecord>, JobError> {
        self.read_history(id, |history| sample(history, max))
    }

    /// A subscriber of job `id` that reads its history after epoch `after` (all of it when
    /// `None`), then its live events.
    ///
    /// # Errors
    /// [`JobError::NotFound`], [`JobError::Unavailable`], and
    /// [`JobError::TooManySubscribers`] when every slot of `--max-event-subscribers` or of
    /// the job's `--max-event-subscribers-per-job` is taken.
    pub fn subscribe(&self, id: Uuid, after: Option<usize>) -> Result<Subscriber, JobError> {
        let job = self.get(id)?;
        let inner = &self.inner;
        if !take_slot(&inner.subscribers, inner.max_subscribers) {
            return Err(JobError::TooManySubscribers {
                max: inner.max_subscribers,
                job: None,
            });
        }
        if !take_slot(&job.subscribers, inner.max_subscribers_per_job) {
            inner.subscribers.fetch_sub(1, Ordering::AcqRel);
            return Err(JobError::TooManySubscribers {
                max: inner.max_subscribers_per_job,
                job: Some(id),
            });
        }
        let next = after.map_or(0, |epoch| {
            job.lock().history.partition_point(|r| r.epoch <= epoch)
        });
        Ok(Subscriber {
            job,
            jobs: Arc::clone(&self.inner),
            next,
            live: None,
            until: 0,
        })
    }

    /// How many clients follow job events now, over all jobs.
    #[must_use]
    pub fn subscribers(&self) -> usize {
        self.inner.subscribers.load(Ordering::Acquire)
    }
}

/// At most `max` (≥ 2) of `records`, evenly spaced, the first and the last among them.
fn sample(records: &[EpochRecord], max: usize) -> Vec<EpochRecord> {
    let n = records.len();
    let max = max.max(2);
    if n <= max {
        return records.to_vec();
    }
    // Index i·(n−1)/(max−1) for i in 0..max: strictly increasing since n > max.
    (0..max)
        .map(|i| records[i * (n - 1) / (max - 1)].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::sample;
    use crate::nn::EpochRecord;

    fn record(epoch: usize) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: 1.0,
            val_loss: None,
            train_accuracy: None,
            val_accuracy: None,
            train_r2: None,
            val_r2: None,
            train_mae: None,
            val_mae: None,
            generalization_gap: None,
            learning_rate: 0.1,
            seconds: 0.0,
            layers: Vec::new(),
        }
    }

    #[test]
    fn a_sample_keeps_the_first_and_last_epochs_evenly_spaced_and_short_histories_whole() {
        let history: Vec<EpochRecord> = (0..=100_000).map(record).collect();

        let epochs: Vec<usize> = sample(&history, 5).iter().map(|r| r.epoch).collect();
        assert_eq!(epochs, [0, 25_000, 50_000, 75_000, 100_000]);
        assert_eq!(sample(&history, 1_000).len(), 1_000);
        assert_eq!(sample(&history[..7], 1_000).len(), 7);
        assert!(sample(&[], 10).is_empty());
    }
}
