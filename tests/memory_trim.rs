//! `mlp_lab::memory::trim` gives a thread arena's freed memory back to the system.
//!
//! A test binary of its own, with one test: it reads process-wide allocator statistics, which
//! tests running beside it in the same process would change (another thread may take over the
//! arena and fill its holes).

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use mlp_lab::memory::{resident_bytes, trim};

/// Bytes the allocator holds free in its arenas, resident or not.
fn free_in_arenas() -> usize {
    // SAFETY: mallinfo2 takes no arguments and only reads the allocator's statistics.
    unsafe { libc::mallinfo2() }.fordblks
}

#[test]
fn freed_memory_in_a_threads_arena_goes_back_to_the_system_when_trimmed() {
    // Blocks under malloc's mapping threshold, so that they come from the arena of the thread
    // that made them, each followed by a small one that stays: freeing the large ones leaves
    // holes between live chunks, which glibc never returns by itself.
    let (held, _pins) = std::thread::spawn(|| {
        let (blocks, pins): (Vec<Vec<u8>>, Vec<Box<u64>>) = (0..1024)
            .map(|i| (vec![1u8; 64 * 1024], Box::new(i)))
            .unzip();
        let before = resident_bytes().expect("statm");
        drop(blocks);
        (before, pins)
    })
    .join()
    .expect("thread");
    assert!(free_in_arenas() >= 32 << 20, "{} free", free_in_arenas());
    let untrimmed = resident_bytes().expect("statm");

    trim();

    let trimmed = resident_bytes().expect("statm");
    assert!(
        untrimmed.saturating_sub(trimmed) >= 32 << 20,
        "resident {held} with the blocks, {untrimmed} after freeing them, {trimmed} after the trim"
    );
}
