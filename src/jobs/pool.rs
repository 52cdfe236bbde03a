//! The blocking pool that training runs on.
//!
//! Training runs on tokio's blocking pool, but on a pool of its own (a runtime that is never
//! driven, kept for its blocking threads), so that its threads can run at a lower scheduling
//! priority without that following a prediction onto them: the pool of the serving runtime
//! also runs large predictions and file writes, and an unprivileged thread cannot raise its
//! priority back once lowered. At `--training-nice 10` a training thread weighs about a tenth of
//! a serving thread for Linux's scheduler, so while jobs keep every core busy a prediction
//! still gets a core within a scheduler tick, and with nothing else to run training keeps all
//! of its speed.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

/// Runs `work` on a training thread at `nice` (0 = the server's own priority).
pub(super) fn spawn<R: Send + 'static>(
    nice: i32,
    work: impl FnOnce() -> R + Send + 'static,
) -> JoinHandle<R> {
    static POOL: OnceLock<Runtime> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        Builder::new_current_thread()
            .thread_name("mlp-lab-train")
            .build()
            .expect("a runtime without drivers builds")
    });
    pool.spawn_blocking(move || {
        set_nice(nice);
        work()
    })
}

/// Sets the calling thread's nice value (Linux keeps one per thread). Raising it is always
/// allowed; lowering it (a job with a smaller `--training-nice` on a thread a previous server in
/// the same process raised, as in tests) may be refused, which only costs priority, so a
/// failure is logged, not returned.
fn set_nice(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` and `getpriority`/`setpriority` on the calling thread's own id touch
        // no memory of ours.
        let (tid, current) = unsafe {
            let tid = libc::gettid() as libc::id_t;
            *libc::__errno_location() = 0;
            (tid, libc::getpriority(libc::PRIO_PROCESS, tid))
        };
        if current == nice {
            return;
        }
        // SAFETY: as above.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
            let error = std::io::Error::last_os_error();
            tracing::debug!(%error, nice, "cannot set the training thread's nice value");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    fn nice() -> i32 {
        // SAFETY: reads the calling thread's own priority.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as _) }
    }

    #[tokio::test]
    async fn training_threads_run_at_the_nice_value_asked_for() {
        // Relative to the test's own priority, should the tests run under `nice`.
        let base = nice();
        let want = (base + 7).min(19);
        let (got, name) = super::spawn(want, || {
            (nice(), std::thread::current().name().map(str::to_owned))
        })
        .await
        .unwrap();
        assert_eq!(got, want);
        assert_eq!(name.as_deref(), Some("mlp-lab-train"));
        // The serving runtime's own blocking threads keep the server's priority.
        let serving = tokio::task::spawn_blocking(nice).await.unwrap();
        assert_eq!(serving, base);
    }
}
