//! The blocking pool that training runs on.
//!
//! Training runs on tokio's blocking pool, but on a pool of its own (a runtime that is never
//! driven, kept for its blocking threads), so that its threads can run at a lower scheduling
//! priority without that following a prediction onto them: the pool of the serving runtime
//! also runs large predictions and file writes, and an unprivileged thread cannot raise its
//! priority back once lowered.
//!
//! By default (`--training-idle true`) training threads run under Linux's `SCHED_IDLE`
//! policy: a serving thread that wakes up preempts one at once, and with nothing else to run
//! training keeps all of its speed. Under the normal policy at `--training-nice 10` a training
//! thread weighs about a tenth of a serving thread, but Linux's EEVDF scheduler lets a waking
//! thread that has had more than its share wait for the running one's slice: measured on this
//! 2-core machine with `wrk` (16 connections, one-row predictions of the W2 network while two
//! jobs trained it), the p99 latency was 5.3–5.5 ms at nice 10 in four runs and 2.7–3.9 ms
//! under `SCHED_IDLE` in four (1.3–1.9 ms with no job running).
//!
//! The pool lives as long as the process, so the server's runtime no longer waits for it when
//! it is dropped: [`wait_idle`] does, before the process exits.

use std::sync::{Condvar, Mutex, OnceLock};

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

/// Training closures started and not yet returned.
static ACTIVE: Mutex<usize> = Mutex::new(0);
static IDLE: Condvar = Condvar::new();

/// Runs `work` on a training thread, `nice` steps below the server's own priority (0: at it),
/// under `SCHED_IDLE` if `idle`.
pub(super) fn spawn<R: Send + 'static>(
    nice: i32,
    idle: bool,
    work: impl FnOnce() -> R + Send + 'static,
) -> JoinHandle<R> {
    static POOL: OnceLock<Runtime> = OnceLock::new();
    // The server's own nice value, read on the first call (from a serving thread).
    static BASE: OnceLock<i32> = OnceLock::new();
    let base = *BASE.get_or_init(thread_nice);
    let pool = POOL.get_or_init(|| {
        Builder::new_current_thread()
            .thread_name("mlp-lab-train")
            .build()
            .expect("a runtime without drivers builds")
    });
    *lock_active() += 1;
    pool.spawn_blocking(move || {
        // Counted down however `work` ends, a panic included.
        struct Done;
        impl Drop for Done {
            fn drop(&mut self) {
                let mut active = lock_active();
                *active -= 1;
                if *active == 0 {
                    IDLE.notify_all();
                }
            }
        }
        let _done = Done;
        set_nice((base + nice).min(19));
        set_idle(idle);
        work()
    })
}

/// Blocks until no training closure is running: called before the process exits, so that a
/// job that did not stop within the shutdown's wait still finishes writing what it writes.
pub fn wait_idle() {
    let mut active = lock_active();
    while *active > 0 {
        active = IDLE
            .wait(active)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

fn lock_active() -> std::sync::MutexGuard<'static, usize> {
    ACTIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The calling thread's nice value (Linux keeps one per thread); 0 elsewhere.
fn thread_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` and `getpriority` on the calling thread's own id touch no memory
        // of ours. (-1 is also a valid nice value; errno is not worth telling them apart for.)
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// Sets the calling thread's nice value. Raising it is always allowed; lowering it (a job
/// with a smaller `--training-nice` on a thread a previous server in the same process raised,
/// as in tests) may be refused, which only costs priority, so a failure is logged, not
/// returned.
fn set_nice(nice: i32) {
    if thread_nice() == nice {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as in `thread_nice`.
        let tid = unsafe { libc::gettid() } as libc::id_t;
        // SAFETY: as above.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
            let error = std::io::Error::last_os_error();
            tracing::debug!(%error, nice, "cannot set the training thread's nice value");
        }
    }
}

/// Puts the calling thread under `SCHED_IDLE` (`idle`) or back under `SCHED_OTHER`. Leaving
/// `SCHED_IDLE` may be refused to an unprivileged process (a pool thread a previous server in
/// the same process made idle, as in tests); like a refused nice value, that only costs
/// priority, so it is logged, not returned.
fn set_idle(idle: bool) {
    #[cfg(target_os = "linux")]
    {
        let want = if idle {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_OTHER
        };
        // SAFETY: pid 0 is the calling thread; the call reads nothing of ours.
        if unsafe { libc::sched_getscheduler(0) } == want {
            return;
        }
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread, and `param` outlives the call.
        if unsafe { libc::sched_setscheduler(0, want, &param) } != 0 {
            let error = std::io::Error::last_os_error();
            tracing::debug!(%error, idle, "cannot set the training thread's scheduling policy");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = idle;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::thread_nice;

    #[tokio::test]
    async fn training_threads_run_below_the_servers_priority_idle_if_asked_and_are_waited_for() {
        // Relative to the test's own priority, should the tests run under `nice`.
        let base = thread_nice();
        let (got, name) = super::spawn(7, false, || {
            (
                thread_nice(),
                std::thread::current().name().map(str::to_owned),
            )
        })
        .await
        .unwrap();
        assert_eq!(got, (base + 7).min(19));
        assert_eq!(name.as_deref(), Some("mlp-lab-train"));
        // SAFETY (both): pid 0 is the calling thread; nothing of ours is read.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        assert_eq!(
            super::spawn(7, true, policy).await.unwrap(),
            libc::SCHED_IDLE
        );
        // Back to the normal policy: refused to an unprivileged process whose RLIMIT_NICE
        // does not cover the nice value, allowed to root (as in CI).
        // SAFETY: geteuid reads nothing of ours.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(
                super::spawn(7, false, policy).await.unwrap(),
                libc::SCHED_OTHER
            );
        }
        // The serving runtime's own blocking threads keep the server's priority.
        let serving = tokio::task::spawn_blocking(thread_nice).await.unwrap();
        assert_eq!(serving, base);
        // A closure still running holds `wait_idle` until it returns.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let running = super::spawn(0, false, move || rx.recv().ok());
        let waiter = std::thread::spawn(super::wait_idle);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "wait_idle returned while a job ran");
        tx.send(()).unwrap();
        running.await.unwrap();
        waiter.join().unwrap();
    }
}
