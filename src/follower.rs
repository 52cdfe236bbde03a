//! The follower: where replicas share a store (`--database-url`), a thread that applies the
//! other replicas' writes to this replica's caches — the registry's datasets, models and
//! versions, the jobs and the experiments — as the store reports them
//! ([`Store::follow`](crate::store::Store::follow)).
//!
//! Each replica serves from memory, as a single process does; the follower is what keeps that
//! memory the same world on every replica: a model created on one is found on the others, a
//! version trained on one is served by the others, a job running on one streams its epochs on
//! the others. A key whose refresh fails because the store cannot be read (a database that is
//! down) is tried again a second later, until it can be.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::experiments::Experiments;
use crate::jobs::Jobs;
use crate::registry::Registry;
use crate::store::Changes;

/// How long the follower waits for changes before it looks again whether it should stop.
const WAIT: Duration = Duration::from_secs(1);

/// The running follower; dropping it stops the thread (after the change it is applying).
#[derive(Debug)]
pub struct Follower {
    changes: Arc<Changes>,
    thread: Option<JoinHandle<()>>,
}

/// What the follower brings up to date.
#[derive(Debug)]
pub struct Caches {
    /// Datasets, models and versions.
    pub registry: Arc<Registry>,
    /// Jobs and their histories.
    pub jobs: Jobs,
    /// Experiments' records.
    pub experiments: Experiments,
}

impl Follower {
    /// Starts applying `changes` to `caches` on a thread of its own.
    ///
    /// # Errors
    /// The system's error when the thread cannot be started.
    pub fn start(changes: Arc<Changes>, caches: Caches) -> std::io::Result<Self> {
        let thread = std::thread::Builder::new()
            .name("mlp-lab-follow".to_owned())
            .spawn({
                let changes = Arc::clone(&changes);
                move || run(&changes, &caches)
            })?;
        Ok(Self {
            changes,
            thread: Some(thread),
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.changes.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(changes: &Changes, caches: &Caches) {
    while let Some(keys) = changes.wait(WAIT) {
        let mut again = Vec::new();
        for key in keys {
            if changes.is_closed() {
                return;
            }
            apply(caches, &key, &mut again);
        }
        if !again.is_empty() {
            std::thread::sleep(WAIT);
            for key in &again {
                changes.push(key);
            }
        }
    }
}

/// Applies the change of `key`; when the store cannot be read, `key` goes to `again`.
fn apply(caches: &Caches, key: &str, again: &mut Vec<String>) {
    let kind = key.split('/').next().unwrap_or_default();
    match kind {
        "datasets" | "models" | "versions" => {
            if let Err(error) = caches.registry.refresh(key) {
                tracing::debug!(%key, %error, "cannot follow a change yet");
                again.push(key.to_owned());
            }
        }
        "jobs" => caches.jobs.refresh(key),
        "experiments" => caches.experiments.refresh(key),
        _ => {}
    }
}
