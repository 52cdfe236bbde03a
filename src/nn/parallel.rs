//! Threads that help a training thread with its large products.
//!
//! A [`Team`] is a training thread's helpers. While the thread has [entered](Team::enter) it,
//! [`for_each`] (what [`super::product`] splits a large product with) and [`for_each_mut`]
//! (what splits the optimizer's update and the elementwise passes of large layers) hand
//! blocks to any helper that is free, the calling thread taking blocks too. The blocks are
//! cut from the data's shape alone, and each block computes its outputs exactly as it would
//! alone (a block's share of a sum is kept apart and added in block order by the caller), so
//! the bits do not depend on how many threads took part (tested).
//!
//! The cores are shared between all teams: [`set_cores`] says how many training may use, a
//! thread that has entered a team counts as one while it is entered, and a helper joins a
//! product only while fewer than that many are busy. One job alone trains on every core it
//! may use; two jobs on two cores each run on their own; nothing is oversubscribed, and no
//! thread waits for a helper that has not started. A helper runs with the floating-point
//! mode (subnormals flushed or not) of the thread it helps, so that its blocks get the bits
//! that thread would give them.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::fpenv;

/// Cores training may keep busy, over all teams; 0 until [`set_cores`] (then every core).
static CORES: AtomicUsize = AtomicUsize::new(0);
/// Threads computing for a team: entered leaders and helpers inside a product.
static BUSY: AtomicUsize = AtomicUsize::new(0);
/// Blocks run by helpers since the process started.
static HELPED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The team the calling thread has entered, if any.
    static CURRENT: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// Sets how many cores training may keep busy at once (at least 1).
pub fn set_cores(cores: usize) {
    CORES.store(cores.max(1), Ordering::Relaxed);
}

/// Blocks that helpers (not the threads that asked) have run since the process started: what
/// shows that products were really split (tests, benchmarks).
#[must_use]
pub fn blocks_helped() -> usize {
    HELPED.load(Ordering::Relaxed)
}

fn cores() -> usize {
    match CORES.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// Takes a core for a helper if fewer than [`cores`] are busy.
fn claim_core() -> bool {
    let limit = cores();
    BUSY.fetch_update(Ordering::AcqRel, Ordering::Acquire, |busy| {
        (busy < limit).then_some(busy + 1)
    })
    .is_ok()
}

fn release_core() {
    BUSY.fetch_sub(1, Ordering::AcqRel);
}

/// A training thread's helpers (none is a valid team: the thread then works alone).
pub struct Team {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// `state.generation`, readable without the lock: what a helper spins on.
    published: AtomicU64,
}

#[derive(Default)]
struct State {
    task: Option<Arc<Task>>,
    /// Counts the tasks published, so that a helper joins each at most once.
    generation: u64,
    stop: bool,
}

/// One call of [`for_each`], as its helpers see it.
struct Task {
    /// The caller's closure, its lifetime erased: [`for_each`] does not return before every
    /// helper that joined has left, and none can join after it has unpublished the task.
    work: *const (dyn Fn(usize) + Sync + 'static),
    blocks: usize,
    next: AtomicUsize,
    /// The caller's floating-point mode.
    mode: Option<u64>,
    /// Helpers inside the task (joined under the state's lock, while it is published).
    joined: AtomicUsize,
    /// Where the caller waits for the last helper to leave, after spinning.
    left: (Mutex<()>, Condvar),
    panicked: AtomicBool,
}

// SAFETY: `work` points to a `Sync` closure that outlives every use (see its field), and the
// rest is `Send + Sync` by itself.
unsafe impl Send for Task {}
// SAFETY: as above.
unsafe impl Sync for Task {}

impl Team {
    /// A team of `helpers` threads, each running `setup` once when it starts (the training
    /// thread's priority and CPUs, for instance).
    ///
    /// # Errors
    /// When a thread cannot be spawned.
    pub fn new(helpers: usize, setup: Arc<dyn Fn() + Send + Sync>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            published: AtomicU64::new(0),
        });
        let mut team = Self {
            shared,
            threads: Vec::with_capacity(helpers),
        };
        for _ in 0..helpers {
            let (shared, setup) = (Arc::clone(&team.shared), Arc::clone(&setup));
            let thread = std::thread::Builder::new()
                .name("mlp-lab-help".into())
                .spawn(move || {
                    setup();
                    help(&shared);
                })?;
            team.threads.push(thread);
        }
        Ok(team)
    }

    /// The number of helper threads.
    #[must_use]
    pub fn helpers(&self) -> usize {
        self.threads.len()
    }

    /// Makes this team the calling thread's until the guard is dropped; the thread counts as
    /// one busy core meanwhile.
    pub fn enter(&self) -> Entered {
        BUSY.fetch_add(1, Ordering::AcqRel);
        let previous = CURRENT.with(|c| c.replace(Some(Arc::clone(&self.shared))));
        Entered { previous }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_all();
        for thread in self.threads.drain(..) {
            // A helper catches the panics of the work it runs, so this cannot fail but for a
            // panic in `setup`, which has nothing left to tell.
            let _ = thread.join();
        }
    }
}

/// The calling thread's membership of a team ([`Team::enter`]).
#[must_use = "the team is left when this is dropped"]
pub struct Entered {
    previous: Option<Arc<Shared>>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| c.replace(previous));
        BUSY.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `work(i)` for every `i` in `0..blocks`, each exactly once, on the calling thread and
/// on whichever helpers of its team are free; returns when all have run. Without a team, or
/// with one block, it is a plain loop.
///
/// # Panics
/// When `work` panics, on whichever thread.
pub fn for_each(blocks: usize, work: &(dyn Fn(usize) + Sync)) {
    let shared = if blocks > 1 {
        CURRENT.with(|c| c.borrow().clone())
    } else {
        None
    };
    let Some(shared) = shared else {
        (0..blocks).for_each(work);
        return;
    };
    // SAFETY: only the lifetime changes; this function does not return while a helper may
    // still call `work` (see `Task::work`).
    let erased: *const (dyn Fn(usize) + Sync + 'static) = unsafe {
        std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync)>(
            work,
        )
    };
    let task = Arc::new(Task {
        work: erased,
        blocks,
        next: AtomicUsize::new(0),
        mode: fpenv::mode(),
        joined: AtomicUsize::new(0),
        left: (Mutex::new(()), Condvar::new()),
        panicked: AtomicBool::new(false),
    });
    {
        let mut state = lock(&shared.state);
        state.task = Some(Arc::clone(&task));
        state.generation += 1;
        shared.published.store(state.generation, Ordering::Release);
    }
    shared.wake.notify_all();
    let mine = catch_unwind(AssertUnwindSafe(|| run_blocks(&task, work)));
    lock(&shared.state).task = None;
    spin_while(|| task.joined.load(Ordering::Acquire) > 0);
    let (mutex, left) = &task.left;
    let mut guard = lock(mutex);
    while task.joined.load(Ordering::Acquire) > 0 {
        guard = left.wait(guard).unwrap_or_else(PoisonError::into_inner);
    }
    drop(guard);
    if let Err(panic) = mine {
        std::panic::resume_unwind(panic);
    }
    assert!(
        !task.panicked.load(Ordering::Acquire),
        "a block of a parallel product panicked on a helper thread"
    );
}

/// Runs `work` on every item of `items`, each exactly once, as [`for_each`] runs blocks: what
/// splits a pass over slices cut into blocks (an optimizer's update, an elementwise pass),
/// each item holding a block's disjoint parts and receiving its results.
///
/// # Panics
/// When `work` panics, on whichever thread.
pub fn for_each_mut<T: Send>(items: &mut [T], work: &(dyn Fn(&mut T) + Sync)) {
    if items.len() <= 1 || CURRENT.with(|c| c.borrow().is_none()) {
        items.iter_mut().for_each(work);
        return;
    }
    // Each item behind a lock of its own, taken once by the one thread that runs it: another
    // thread gets its `&mut` without `unsafe`, for an uncontended lock an item.
    let cells: Vec<Mutex<&mut T>> = items.iter_mut().map(Mutex::new).collect();
    for_each(cells.len(), &|i| work(&mut lock(&cells[i])));
}

fn run_blocks(task: &Task, work: &(dyn Fn(usize) + Sync)) {
    loop {
        let i = task.next.fetch_add(1, Ordering::Relaxed);
        if i >= task.blocks {
            return;
        }
        work(i);
    }
}

/// How long a thread spins for what it waits for before it sleeps: longer than the gaps
/// between the products of a training step, so that a helper is awake for the next one (a
/// wake-up from sleep costs tens of microseconds, a good part of a product of a few million
/// multiply-adds). Helpers run at training's priority (`SCHED_IDLE` by default), so the
/// spinning takes no time from anything else.
const SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// Spins while `waiting` holds, for at most [`SPIN`].
fn spin_while(waiting: impl Fn() -> bool) {
    let until = std::time::Instant::now() + SPIN;
    while waiting() && std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// A helper's life: wait for a task, join it if a core is free, leave when its blocks are
/// taken.
fn help(shared: &Shared) {
    let mut seen = 0;
    loop {
        spin_while(|| shared.published.load(Ordering::Acquire) == seen);
        let task = {
            let mut state = lock(&shared.state);
            loop {
                if state.stop {
                    return;
                }
                if state.generation != seen {
                    seen = state.generation;
                    if let Some(task) = &state.task {
                        if claim_core() {
                            // Joined under the state's lock, while the task is published:
                            // its caller waits for us from the moment it unpublishes it.
                            task.joined.fetch_add(1, Ordering::AcqRel);
                            break Arc::clone(task);
                        }
                    }
                }
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let saved = fpenv::mode();
        if let Some(mode) = task.mode {
            fpenv::set_mode(mode);
        }
        // SAFETY: the caller of `for_each` waits for us to leave before `work` goes away.
        let work = unsafe { &*task.work };
        let counted = |i| {
            work(i);
            HELPED.fetch_add(1, Ordering::Relaxed);
        };
        if catch_unwind(AssertUnwindSafe(|| run_blocks(&task, &counted))).is_err() {
            task.panicked.store(true, Ordering::Release);
        }
        if let Some(mode) = saved {
            fpenv::set_mode(mode);
        }
        release_core();
        if task.joined.fetch_sub(1, Ordering::AcqRel) == 1 {
            let (mutex, left) = &task.left;
            let _guard = lock(mutex);
            left.notify_all();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_runs_once_with_or_without_helpers() {
        for helpers in [0, 1, 3] {
            let team = Team::new(helpers, Arc::new(|| {})).unwrap();
            let _entered = team.enter();
            for blocks in [0, 1, 2, 7, 64] {
                let counts: Vec<AtomicUsize> = (0..blocks).map(|_| AtomicUsize::new(0)).collect();
                for_each(blocks, &|i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(
                    counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                    "{helpers} helpers, {blocks} blocks"
                );
            }
        }
    }

    #[test]
    fn every_item_is_handed_out_once_with_or_without_helpers() {
        for helpers in [0, 1, 3] {
            let team = Team::new(helpers, Arc::new(|| {})).unwrap();
            let _entered = team.enter();
            for items in [0, 1, 2, 7, 64] {
                let mut seen: Vec<(usize, u32)> = (0..items).map(|i| (i, 0)).collect();
                for_each_mut(&mut seen, &|(i, count)| {
                    *count += 1;
                    *i *= 2;
                });
                assert!(
                    seen.iter().enumerate().all(|(i, &s)| s == (2 * i, 1)),
                    "{helpers} helpers, {items} items"
                );
            }
        }
    }

    #[test]
    fn a_panic_in_a_block_reaches_the_caller_and_the_team_survives() {
        let team = Team::new(2, Arc::new(|| {})).unwrap();
        let _entered = team.enter();
        let result = catch_unwind(|| {
            for_each(16, &|i| assert!(i != 9, "block nine"));
        });
        assert!(result.is_err());
        let sum = AtomicUsize::new(0);
        for_each(16, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 120);
    }

    #[test]
    fn helpers_run_in_the_callers_floating_point_mode() {
        let team = Team::new(2, Arc::new(|| {})).unwrap();
        let _entered = team.enter();
        let _flush = fpenv::Flush::subnormals();
        let flushing: Vec<AtomicBool> = (0..32).map(|_| AtomicBool::new(false)).collect();
        for_each(32, &|i| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            flushing[i].store(fpenv::flushing(), Ordering::Relaxed);
        });
        assert!(flushing.iter().all(|f| f.load(Ordering::Relaxed)));
    }
}
