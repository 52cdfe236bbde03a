//! [`Changes`]: the keys that other processes sharing a store have written or deleted, as a
//! store that several replicas share reports them ([`super::Store::follow`]).
//!
//! A change names a key, not a value: the follower reads the key's current value (or its
//! absence) when it applies the change, so changes may arrive twice, late or out of order
//! and the follower still ends where the store is. Keys that change again before the follower
//! takes them are kept once: a job whose record is rewritten every second is read once per
//! round, however slow the follower.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Keys changed by other processes, waiting to be applied; see the module's comment.
#[derive(Debug, Default)]
pub struct Changes {
    pending: Mutex<Pending>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct Pending {
    keys: BTreeSet<String>,
    closed: bool,
}

impl Changes {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes that `key` changed.
    pub fn push(&self, key: &str) {
        let mut pending = self.lock();
        if !pending.keys.contains(key) {
            pending.keys.insert(key.to_owned());
        }
        drop(pending);
        self.ready.notify_one();
    }

    /// Every key changed since the last call, in key order (so a model's record comes before
    /// its versions); waits up to `timeout` for one. `None` once [`Changes::close`]d and
    /// every key was taken.
    #[must_use]
    pub fn wait(&self, timeout: Duration) -> Option<Vec<String>> {
        let pending = self.lock();
        let (mut pending, _) = self
            .ready
            .wait_timeout_while(pending, timeout, |p| p.keys.is_empty() && !p.closed)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pending.closed && pending.keys.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut pending.keys).into_iter().collect())
    }

    /// Whether [`Changes::close`] was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Ends the feed: [`Changes::wait`] answers `None` from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Changes;

    #[test]
    fn keys_changed_twice_before_they_are_taken_come_once_in_key_order() {
        let changes = Changes::default();
        for key in ["versions/m/1.json", "models/m.json", "versions/m/1.json"] {
            changes.push(key);
        }
        assert_eq!(
            changes.wait(Duration::ZERO),
            Some(vec![
                "models/m.json".to_owned(),
                "versions/m/1.json".to_owned()
            ])
        );
        assert_eq!(changes.wait(Duration::from_millis(1)), Some(vec![]));
    }

    #[test]
    fn a_waiting_follower_wakes_for_a_change_and_for_the_close() {
        let changes = Arc::new(Changes::default());
        let follower = std::thread::spawn({
            let changes = Arc::clone(&changes);
            move || {
                let first = changes.wait(Duration::from_secs(30));
                let second = changes.wait(Duration::from_secs(30));
                (first, second)
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        changes.push("jobs/j.json");
        std::thread::sleep(Duration::from_millis(20));
        changes.close();
        let (first, second) = follower.join().expect("the follower");
        assert_eq!(first, Some(vec!["jobs/j.json".to_owned()]));
        assert_eq!(second, None);
    }
}
