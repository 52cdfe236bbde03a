//! What the predictions of one server have done, counted where it happens and read by the
//! metrics when they are scraped.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the predictions of one server have done, for its metrics. Counters only grow.
#[derive(Debug, Default)]
pub struct Stats {
    predicted_rows: AtomicU64,
    rejected: AtomicU64,
    batches: AtomicU64,
    batched: AtomicU64,
}

impl Stats {
    /// Rows answered.
    #[must_use]
    pub fn predicted_rows(&self) -> u64 {
        self.predicted_rows.load(Ordering::Relaxed)
    }

    /// Requests refused because every prediction slot was taken.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// (products computed for batched requests, requests answered in a batch).
    #[must_use]
    pub fn batch_counts(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.batched.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn predicted(&self, rows: usize) {
        self.predicted_rows
            .fetch_add(rows as u64, Ordering::Relaxed);
    }

    pub(crate) fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn batch(&self, requests: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched.fetch_add(requests as u64, Ordering::Relaxed);
    }
}
