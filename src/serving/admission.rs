//! Admission of predictions: at most `--max-concurrent-predictions` are computed at once, up
//! to `--max-queued-predictions` more wait for a slot in arrival order, and none waits longer
//! than `--max-prediction-wait-ms`.
//!
//! A request is admitted once its body has been read and decoded, so a client that sends its
//! body slowly holds a connection, never a slot that others need. A slot is held while the
//! rows are computed and the answer encoded, so the slots bound the memory and CPU that
//! predictions take; the queue absorbs bursts (a load balancer's pool of connections arriving
//! at once) instead of refusing them while the cores are idle, as Triton's and
//! text-embeddings-inference's queues do. A request is refused (the HTTP layer answers 429
//! with `Retry-After`) only when the queue is full or its wait runs out: the server is then
//! saturated, and a client told to back off can go to another replica.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ServingError;
use super::stats::Stats;

/// A taken slot; dropping it frees the slot for the next request in the queue.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// The bounds of admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Predictions computed at once (at least 1).
    pub slots: usize,
    /// Predictions that may wait for a slot (0: refused at once when every slot is taken).
    pub queue: usize,
    /// The longest a prediction waits for a slot.
    pub max_wait: Duration,
}

/// The prediction slots of one server and their queue. Cloning is shallow.
#[derive(Clone, Debug)]
pub struct PredictionSlots {
    semaphore: Arc<Semaphore>,
    bounds: Bounds,
    waiting: Arc<AtomicUsize>,
    stats: Arc<Stats>,
}

impl PredictionSlots {
    /// All slots free and nobody waiting; refusals are counted in `stats`.
    #[must_use]
    pub fn new(bounds: Bounds, stats: Arc<Stats>) -> Self {
        let slots = bounds.slots.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            semaphore: Arc::new(Semaphore::new(slots)),
            bounds: Bounds { slots, ..bounds },
            waiting: Arc::new(AtomicUsize::new(0)),
            stats,
        }
    }

    /// A slot: at once when one is free, else after waiting in the queue.
    ///
    /// # Errors
    /// [`ServingError::Busy`] (counted as a refusal) when the queue is full or no slot came
    /// free within the longest wait.
    pub async fn admit(&self) -> Result<Slot, ServingError> {
        if let Some(slot) = self.take_free() {
            return Ok(slot);
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _leave = Leave(&self.waiting);
        if queued >= self.bounds.queue {
            return Err(self.refuse());
        }
        let acquire = Arc::clone(&self.semaphore).acquire_owned();
        match tokio::time::timeout(self.bounds.max_wait, acquire).await {
            Ok(Ok(permit)) => Ok(Slot { _permit: permit }),
            // The semaphore is never closed; a timeout is the server being saturated.
            Ok(Err(_)) | Err(_) => Err(self.refuse()),
        }
    }

    /// A free slot now, or `None`; never waits and counts no refusal.
    #[must_use]
    pub fn take_free(&self) -> Option<Slot> {
        Arc::clone(&self.semaphore)
            .try_acquire_owned()
            .ok()
            .map(|permit| Slot { _permit: permit })
    }

    fn refuse(&self) -> ServingError {
        self.stats.reject();
        ServingError::Busy {
            slots: self.bounds.slots,
            queue: self.bounds.queue,
            max_wait: self.bounds.max_wait,
        }
    }

    /// The bounds in force.
    #[must_use]
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Predictions holding a slot now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.bounds.slots - self.semaphore.available_permits()
    }

    /// Predictions waiting for a slot now.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

/// Leaves the queue however the wait ends (a slot, a refusal, or the request dropped).
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(slots: usize, queue: usize, wait_ms: u64) -> (PredictionSlots, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let bounds = Bounds {
            slots,
            queue,
            max_wait: Duration::from_millis(wait_ms),
        };
        (PredictionSlots::new(bounds, Arc::clone(&stats)), stats)
    }

    #[tokio::test]
    async fn a_request_waits_for_a_slot_in_the_queue_and_gets_it_when_one_is_freed() {
        let (slots, stats) = slots(1, 4, 10_000);
        let held = slots.admit().await.expect("a free slot");
        assert_eq!(slots.in_flight(), 1);
        let waiter = tokio::spawn({
            let slots = slots.clone();
            async move { slots.admit().await.map(drop) }
        });
        while slots.queued() == 0 {
            tokio::task::yield_now().await;
        }
        drop(held);
        waiter
            .await
            .expect("joins")
            .expect("admitted once the slot was freed");
        assert_eq!(
            (slots.queued(), slots.in_flight(), stats.rejected()),
            (0, 0, 0)
        );
    }

    #[tokio::test]
    async fn a_full_queue_or_a_wait_that_runs_out_is_refused_and_counted() {
        let (slots, stats) = slots(1, 1, 50);
        let _held = slots.admit().await.expect("a free slot");
        // One waits (and runs out of time); the second finds the queue full at once.
        let first = tokio::spawn({
            let slots = slots.clone();
            async move { slots.admit().await.map(drop) }
        });
        while slots.queued() == 0 {
            tokio::task::yield_now().await;
        }
        let second = slots.admit().await;
        assert!(
            matches!(second, Err(ServingError::Busy { queue: 1, .. })),
            "{second:?}"
        );
        let first = first.await.expect("joins");
        assert!(matches!(first, Err(ServingError::Busy { .. })), "{first:?}");
        assert_eq!((slots.queued(), stats.rejected()), (0, 2));
    }

    #[tokio::test]
    async fn without_a_queue_a_request_is_refused_at_once() {
        let (slots, stats) = slots(1, 0, 10_000);
        let _held = slots.take_free().expect("a free slot");
        let started = std::time::Instant::now();
        assert!(slots.admit().await.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(stats.rejected(), 1);
    }
}
