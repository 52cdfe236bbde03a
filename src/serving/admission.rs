//! The cap on predictions served at once (`--max-concurrent-predictions`), shared by every
//! prediction route.
//!
//! A request holds a slot while it is served, so the cap bounds the memory that predictions
//! hold (bodies, matrices, answers) as well as the CPU they share. A request that finds every
//! slot taken is refused at once (the HTTP layer answers 429 with `Retry-After`): nothing waits
//! in a queue that could grow without bound, and a client told to back off can go to another
//! replica.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::stats::Stats;

/// A taken slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// The prediction slots of one server. Cloning is shallow.
#[derive(Clone, Debug)]
pub struct PredictionSlots {
    semaphore: Arc<Semaphore>,
    max: usize,
    stats: Arc<Stats>,
}

impl PredictionSlots {
    /// `max` slots, all free; refusals are counted in `stats`.
    #[must_use]
    pub fn new(max: usize, stats: Arc<Stats>) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
            stats,
        }
    }

    /// A free slot, or `None` (counted as a refusal) when every one is taken.
    #[must_use]
    pub fn try_take(&self) -> Option<Slot> {
        match Arc::clone(&self.semaphore).try_acquire_owned() {
            Ok(permit) => Some(Slot(permit)),
            Err(_) => {
                self.stats.reject();
                None
            }
        }
    }

    /// The number of slots.
    #[must_use]
    pub fn max(&self) -> usize {
        self.max
    }

    /// Predictions being served now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.max - self.semaphore.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_counts_taken_slots_and_refusals_are_counted() {
        let stats = Arc::new(Stats::default());
        let slots = PredictionSlots::new(2, Arc::clone(&stats));
        assert_eq!(slots.in_flight(), 0);
        let one = slots.try_take().expect("a slot");
        let _two = slots.try_take().expect("a slot");
        assert_eq!(slots.in_flight(), 2);
        assert!(slots.try_take().is_none());
        assert_eq!(stats.rejected(), 1);
        drop(one);
        assert_eq!(slots.in_flight(), 1);
    }
}
