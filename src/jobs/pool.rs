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
//! training keeps all of its speed. Under the normal policy, even at `--training-nice 10`,
//! Linux's EEVDF scheduler lets a waking thread that has had more than its share wait for the
//! running one's slice, and prediction latency under training suffers for it.
//!
//! A job's own thread also stays off `--serving-cpus` CPUs (1 by default), the
//! lowest-numbered of those the process may use, so that serving has a core where no job
//! runs. On a core where a training thread runs, the scheduler never finds itself idle, and
//! so never pulls over a serving thread that waits behind another thread on the other core:
//! the periodic balancing moves it some milliseconds later. Only helpers (below) use those
//! CPUs, and only while fewer jobs than CPUs train.
//!
//! Nor may training threads share a malloc arena with the serving threads: a training thread
//! preempted while it holds the arena's lock, as `SCHED_IDLE` makes likely, stops every
//! serving thread that allocates until it runs again. glibc gives each thread an arena of its
//! own up to eight per CPU, so the server leaves that default alone.
//!
//! A job trains with a team of helper threads ([`crate::nn::parallel`]), placed as its own
//! thread is, that take blocks of its large matrix products: up to `--training-threads`
//! threads a job (0: one per training CPU). All jobs share the training CPUs: a helper works
//! only while fewer threads than those CPUs are busy training, so one job alone uses them all
//! and two jobs on two CPUs run on one each. The weights do not depend on how many threads
//! took part.
//!
//! `bench/serve.sh` measures prediction latency while jobs train; its figures, per machine,
//! are in `docs/benchmarks.md`.
//!
//! The pool lives as long as the process, so the server's runtime no longer waits for it when
//! it is dropped: [`wait_idle`] does, before the process exits.

use std::sync::{Arc, Condvar, Mutex, OnceLock};

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

use crate::nn::parallel;

/// Training closures started and not yet returned.
static ACTIVE: Mutex<usize> = Mutex::new(0);
static IDLE: Condvar = Condvar::new();

/// How training threads run (`--training-nice`, `--training-idle`, `--serving-cpus`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Placement {
    /// Nice steps below the server's own priority (0: at it).
    pub nice: i32,
    /// Under `SCHED_IDLE`.
    pub idle: bool,
    /// CPUs left to serving: the lowest-numbered this many of those the process may use.
    pub serving_cpus: usize,
    /// Threads a job may train on, helpers included (0: one per training CPU).
    pub threads: usize,
}

/// Runs `work` on a training thread placed as `placement` says.
pub(super) fn spawn<R: Send + 'static>(
    placement: Placement,
    work: impl FnOnce() -> R + Send + 'static,
) -> JoinHandle<R> {
    static POOL: OnceLock<Runtime> = OnceLock::new();
    // The server's own nice value and CPUs, read on the first call (from a serving thread).
    static BASE: OnceLock<i32> = OnceLock::new();
    let base = *BASE.get_or_init(thread_nice);
    let cpus = server_cpus();
    let Placement {
        nice,
        idle,
        serving_cpus,
        threads,
    } = placement;
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
        let training = training_cpus(cpus, serving_cpus);
        let place = move |on: &[usize]| {
            set_nice((base + nice).min(19));
            set_idle(idle);
            set_cpus(on);
        };
        place(&training);
        let team = team(cpus, threads, Arc::new(move || place(cpus)));
        let _entered = team.enter();
        work()
    })
}

/// The helpers of one job: as many as `threads` allows (0: one per CPU of the server) less
/// the job's own thread, at its priority but free to run on every CPU of the server, those
/// left to serving included: a helper works only while fewer threads than CPUs are busy
/// training ([`parallel::set_cores`]), so with as many jobs as CPUs none works (on two CPUs,
/// two jobs leave the serving one free), while one job alone on an idle server uses them
/// all. (Under
/// `SCHED_IDLE`, a prediction that wakes takes a helper's CPU at once.)
fn team(
    cpus: &'static [usize],
    threads: usize,
    place: Arc<dyn Fn() + Send + Sync>,
) -> parallel::Team {
    let cores = match cpus.len() {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    parallel::set_cores(cores);
    let threads = if threads == 0 {
        cores
    } else {
        threads.min(cores)
    };
    parallel::Team::new(threads - 1, place).unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot start a training job's helper threads; it trains on one");
        parallel::Team::new(0, Arc::new(|| {})).expect("a team without threads spawns none")
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

/// The CPUs the server's threads may run on, read once (from the thread of the first call,
/// a serving thread); empty where that cannot be read.
fn server_cpus() -> &'static [usize] {
    static CPUS: OnceLock<Vec<usize>> = OnceLock::new();
    CPUS.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: an all-zero `cpu_set_t` is a valid, empty set.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: pid 0 is the calling thread; the kernel writes at most `size_of` bytes.
            let read = unsafe {
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set)
            };
            if read == 0 {
                return (0..libc::CPU_SETSIZE as usize)
                    // SAFETY: `cpu` is below CPU_SETSIZE, inside the set.
                    .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
                    .collect();
            }
        }
        Vec::new()
    })
}

/// The CPUs training threads run on: those of `cpus` (in increasing order) after the first
/// `serving`, or all of them when that leaves none.
fn training_cpus(cpus: &[usize], serving: usize) -> Vec<usize> {
    match cpus.get(serving..) {
        Some(rest) if !rest.is_empty() => rest.to_vec(),
        _ => cpus.to_vec(),
    }
}

/// Keeps the calling thread on `cpus` (nothing to do when that is empty). A refusal only
/// costs latency, so it is logged, not returned.
fn set_cpus(cpus: &[usize]) {
    #[cfg(target_os = "linux")]
    if !cpus.is_empty() {
        // SAFETY: an all-zero `cpu_set_t` is a valid, empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &cpu in cpus {
            // SAFETY: `cpu` came from `server_cpus`, below CPU_SETSIZE.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
        // SAFETY: pid 0 is the calling thread; the kernel reads `size_of` bytes of `set`.
        let set_size = std::mem::size_of::<libc::cpu_set_t>();
        if unsafe { libc::sched_setaffinity(0, set_size, &raw const set) } != 0 {
            let error = std::io::Error::last_os_error();
            tracing::debug!(%error, ?cpus, "cannot set the training thread's CPUs");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cpus;
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

#[cfg(test)]
mod placement_tests {
    use super::training_cpus;

    #[test]
    fn training_leaves_the_first_cpus_to_serving_unless_that_leaves_it_none() {
        assert_eq!(training_cpus(&[0, 1], 1), [1]);
        assert_eq!(training_cpus(&[2, 5, 7, 9], 2), [7, 9]);
        assert_eq!(training_cpus(&[0, 1, 2, 3], 0), [0, 1, 2, 3]);
        assert_eq!(training_cpus(&[3], 1), [3]);
        assert_eq!(training_cpus(&[0, 1], 5), [0, 1]);
        assert_eq!(training_cpus(&[], 1), [] as [usize; 0]);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{thread_nice, Placement};

    fn placed(nice: i32, idle: bool) -> Placement {
        Placement {
            nice,
            idle,
            serving_cpus: 0,
            threads: 1,
        }
    }

    /// The CPUs the calling thread may run on.
    fn thread_cpus() -> Vec<usize> {
        // SAFETY: as in `server_cpus`.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: as in `server_cpus`.
        assert_eq!(unsafe { libc::sched_getaffinity(0, size, &raw mut set) }, 0);
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: below CPU_SETSIZE.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect()
    }

    #[tokio::test]
    async fn training_threads_stay_off_the_cpus_left_to_serving() {
        let all = thread_cpus();
        let on = |serving_cpus| async move {
            let placement = Placement {
                serving_cpus,
                ..placed(0, false)
            };
            super::spawn(placement, thread_cpus).await.unwrap()
        };
        assert_eq!(on(0).await, all);
        // On a machine of one CPU the job still has it.
        assert_eq!(
            on(1).await,
            if all.len() > 1 { &all[1..] } else { &all[..] }
        );
        // The same pool thread is given its CPUs back for the next job.
        assert_eq!(on(0).await, all);
        assert_eq!(on(all.len()).await, all);
        // Serving threads are not restricted.
        assert_eq!(tokio::task::spawn_blocking(thread_cpus).await.unwrap(), all);
    }

    #[tokio::test]
    async fn training_threads_run_below_the_servers_priority_idle_if_asked_and_are_waited_for() {
        // Relative to the test's own priority, should the tests run under `nice`.
        let base = thread_nice();
        let (got, name) = super::spawn(placed(7, false), || {
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
            super::spawn(placed(7, true), policy).await.unwrap(),
            libc::SCHED_IDLE
        );
        // Back to the normal policy: refused to an unprivileged process whose RLIMIT_NICE
        // does not cover the nice value, allowed to root (as in CI).
        // SAFETY: geteuid reads nothing of ours.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(
                super::spawn(placed(7, false), policy).await.unwrap(),
                libc::SCHED_OTHER
            );
        }
        // The serving runtime's own blocking threads keep the server's priority.
        let serving = tokio::task::spawn_blocking(thread_nice).await.unwrap();
        assert_eq!(serving, base);
        // A closure still running holds `wait_idle` until it returns.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let running = super::spawn(placed(0, false), move || rx.recv().ok());
        let waiter = std::thread::spawn(super::wait_idle);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "wait_idle returned while a job ran");
        tx.send(()).unwrap();
        running.await.unwrap();
        waiter.join().unwrap();
    }
}
