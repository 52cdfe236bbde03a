//! Giving freed memory back to the system.
//!
//! glibc's malloc keeps what a thread frees in that thread's arena, for reuse, and returns it
//! to the system only from the top of the main arena. After a burst (a large upload refused
//! at its last row, hundreds of connections that each held a buffer) the freed memory lies
//! between live chunks of many arenas, and the process would stay at its peak resident size
//! for as long as it lives. `malloc_trim(0)` walks every arena and returns the whole free pages
//! inside them (`madvise(MADV_DONTNEED)`); the chunks stay free for malloc to reuse.
//!
//! [`start_trimmer`] runs it on a thread of its own, once a second at most, when the resident
//! memory that malloc does not have in use (the resident size less `mallinfo2`'s bytes in use)
//! has grown by at least [`FREE_BYTES`] over the least it was since the last trim: memory
//! freed and still resident. Live memory (a dataset, a model) is never a reason to trim, and
//! what a trim could not return (stacks, fragments smaller than a page) does not make the next
//! one. A trim holds each arena's lock while it walks that arena, so it is kept for after
//! large frees, not run on a timer.
//!
//! Chosen by measurement (`bench/memory.sh`, figures in `docs/benchmarks.md`): mimalloc, which
//! gives memory back by decay on its own, held more throughout and peaked higher on the same
//! attacks, and would put C code on every allocation of the prediction path.
//!
//! On other C libraries (musl has no arenas to trim) the trimmer is not started.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Freed bytes still resident before a trim is worth its walk.
pub const FREE_BYTES: u64 = 8 << 20;

static TRIMS: AtomicU64 = AtomicU64::new(0);
static RETURNED: AtomicU64 = AtomicU64::new(0);

/// Trims so far, and the resident bytes they gave back (process-wide).
#[must_use]
pub fn trims() -> (u64, u64) {
    (
        TRIMS.load(Ordering::Relaxed),
        RETURNED.load(Ordering::Relaxed),
    )
}

/// The process's resident set size in bytes (`/proc/self/statm`), when it can be read.
#[must_use]
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// Starts the trimming thread (once; later calls do nothing). Without glibc, does nothing.
pub fn start_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static STARTED: std::sync::Once = std::sync::Once::new();
        STARTED.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("memory-trim".into())
                .spawn(|| trim_loop(Duration::from_secs(1)));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start the memory trimming thread");
            }
        });
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_loop(period: Duration) {
    // Resident memory that is not in use: free chunks still resident, and what is no chunk
    // (the binary, stacks). After a trim it is what cannot be returned; growth over that is
    // freed memory still resident.
    let mut floor = slack().unwrap_or(0);
    loop {
        std::thread::sleep(period);
        let Some(now) = slack() else {
            return;
        };
        floor = floor.min(now);
        if now - floor < FREE_BYTES {
            continue;
        }
        let before = resident_bytes().unwrap_or(0);
        trim();
        let after = resident_bytes().unwrap_or(before);
        TRIMS.fetch_add(1, Ordering::Relaxed);
        RETURNED.fetch_add(before.saturating_sub(after), Ordering::Relaxed);
        tracing::debug!(
            before_mib = before >> 20,
            after_mib = after >> 20,
            "returned freed memory to the system"
        );
        floor = slack().unwrap_or(now);
    }
}

/// Resident bytes that malloc does not have in use: its free chunks that are still resident,
/// and everything that is not a chunk.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn slack() -> Option<u64> {
    // SAFETY: mallinfo2 takes no arguments and only reads the allocator's statistics, under
    // each arena's lock.
    let info = unsafe { libc::mallinfo2() };
    let in_use = (info.uordblks + info.hblkhd) as u64;
    Some(resident_bytes()?.saturating_sub(in_use))
}

/// Returns every arena's whole free pages to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() {
    // SAFETY: malloc_trim is thread-safe (it takes each arena's lock in turn) and frees
    // nothing that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
