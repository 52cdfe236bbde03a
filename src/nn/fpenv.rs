//! Subnormal floats are flushed to zero wherever the core computes: a numerical choice, made
//! as XLA makes it.
//!
//! Once a model fits, its gradients and Adam's moments drift into the subnormal range
//! (magnitudes below `f32::MIN_POSITIVE`, about 1.2e-38). On many x86-64 cores every operation
//! with a subnormal operand or result takes a microcode assist, tens to hundreds of cycles
//! instead of one, and a training epoch can take twice as long for values that change nothing
//! a model predicts. With the MXCSR register's FTZ (results flush to zero) and DAZ (inputs
//! read as zero) bits set, they cost nothing; on aarch64 the FPCR's FZ bit does both.
//!
//! Flushing is a property of the thread. [`fit`](super::fit) (once it has checked its
//! configuration) and the forward pass set it for their own duration ([`Flush`]) and put the
//! thread's mode back when they return, which makes `nn` give the same bits whatever thread
//! calls it. It is deliberately not set for good on the server's threads: with DAZ a
//! subnormal reads as zero in comparisons too, and a client's `"dropout": -1e-308` would pass
//! a `>= 0` check that IEEE arithmetic refuses; validation runs outside the guards.

/// Sets flushing for as long as it lives, and puts the thread's previous mode back when dropped.
#[derive(Debug)]
#[must_use = "flushing ends when the guard is dropped"]
pub struct Flush {
    saved: Option<u64>,
}

impl Flush {
    /// Flushes subnormals on the calling thread until the guard is dropped.
    pub fn subnormals() -> Self {
        let saved = read();
        if let Some(mode) = saved {
            if mode & FLUSH_BITS != FLUSH_BITS {
                write(mode | FLUSH_BITS);
                return Self { saved };
            }
        }
        Self { saved: None }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        if let Some(mode) = self.saved {
            write(mode);
        }
    }
}

/// Whether the calling thread flushes subnormals (always `false` where it cannot).
#[must_use]
pub fn flushing() -> bool {
    read().is_some_and(|mode| mode & FLUSH_BITS == FLUSH_BITS)
}

/// MXCSR's DAZ (bit 6) and FTZ (bit 15).
/// The calling thread's floating-point control word (MXCSR on x86-64, FPCR on aarch64);
/// `None` elsewhere. With [`set_mode`], what lets a helper thread compute in the mode of the
/// thread it helps ([`super::parallel`]).
pub(crate) fn mode() -> Option<u64> {
    read()
}

/// Sets the calling thread's floating-point control word to what [`mode`] returned.
pub(crate) fn set_mode(mode: u64) {
    write(mode);
}

#[cfg(target_arch = "x86_64")]
const FLUSH_BITS: u64 = (1 << 6) | (1 << 15);

/// FPCR's FZ (bit 24).
#[cfg(target_arch = "aarch64")]
const FLUSH_BITS: u64 = 1 << 24;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const FLUSH_BITS: u64 = 0;

#[cfg(target_arch = "x86_64")]
fn read() -> Option<u64> {
    let mut mode: u32 = 0;
    // SAFETY: `stmxcsr` stores the 32-bit MXCSR register into the local it is given, and
    // touches nothing else; every x86-64 core has it (SSE is part of the base instruction set).
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &raw mut mode, options(nostack, preserves_flags));
    }
    Some(u64::from(mode))
}

#[cfg(target_arch = "x86_64")]
fn write(mode: u64) {
    #[allow(clippy::cast_possible_truncation)] // MXCSR is 32 bits; `read` gave those
    let mode = mode as u32;
    // SAFETY: `ldmxcsr` loads MXCSR from the local; the value is one `read` gave with only the
    // DAZ and FTZ bits changed, both defined on every x86-64 core, so it cannot fault.
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &raw const mode, options(nostack, preserves_flags));
    }
}

#[cfg(target_arch = "aarch64")]
fn read() -> Option<u64> {
    let mode: u64;
    // SAFETY: reading FPCR has no side effects and is allowed at EL0.
    unsafe {
        std::arch::asm!("mrs {}, fpcr", out(reg) mode, options(nomem, nostack, preserves_flags));
    }
    Some(mode)
}

#[cfg(target_arch = "aarch64")]
fn write(mode: u64) {
    // SAFETY: writing FPCR is allowed at EL0; only the FZ bit differs from what was read.
    unsafe {
        std::arch::asm!("msr fpcr, {}", in(reg) mode, options(nomem, nostack, preserves_flags));
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn read() -> Option<u64> {
    None
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn write(_mode: u64) {}

#[cfg(test)]
mod tests {
    use std::hint::black_box;

    use super::*;

    /// A subnormal result and a subnormal input, as the core computes them now.
    fn subnormal_arithmetic() -> (f32, f32) {
        let smallest_normal = black_box(f32::MIN_POSITIVE);
        let subnormal = black_box(f32::from_bits(1)); // 1.4e-45
        (smallest_normal * black_box(0.5), subnormal * black_box(2.0))
    }

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn a_guard_flushes_subnormals_and_puts_the_mode_back() {
        std::thread::spawn(|| {
            assert!(!flushing(), "a new thread starts with IEEE subnormals");
            let (result, from_input) = subnormal_arithmetic();
            assert!(result.is_subnormal() && from_input.is_subnormal());
            {
                let _flush = Flush::subnormals();
                assert!(flushing());
                assert_eq!(subnormal_arithmetic(), (0.0, 0.0));
                // A nested guard leaves the outer one's mode in place.
                drop(Flush::subnormals());
                assert!(flushing());
            }
            assert!(!flushing());
            let (result, _) = subnormal_arithmetic();
            assert!(result.is_subnormal(), "IEEE arithmetic again");
        })
        .join()
        .expect("the checks pass");
    }
}
