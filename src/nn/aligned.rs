//! [`AlignedVec`]: `f32` values that start on a 64-byte boundary.
//!
//! A one-row prediction streams the weights from L2 in 64-byte vector loads. From a plain
//! `Vec<f32>` of that size the allocator returns an address 16 bytes past a page (glibc's
//! `mmap`ed chunk header), so every such load straddles two cache lines, which makes the read
//! markedly slower (`nn-bench lat`). Parameters therefore live in whole cache lines.

use std::fmt;
use std::ops::{Deref, DerefMut};

/// Floats in a cache line, and in one AVX-512 vector.
const LINE: usize = 16;

/// One cache line of values; `repr(C)` with nothing but the array, so lines laid end to end
/// are a plain `[f32]`.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([f32; LINE]);

/// A fixed-length `[f32]` whose first element is 64-byte aligned. It derefs to a slice; the
/// unused tail of its last line is zero and never shown.
#[derive(Clone, Default)]
pub struct AlignedVec {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedVec {
    /// `len` copies of `value`.
    pub fn from_elem(value: f32, len: usize) -> Self {
        let mut v = Self {
            lines: vec![Line([0.0; LINE]); len.div_ceil(LINE)],
            len,
        };
        v.fill(value);
        v
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[f32]) -> Self {
        let mut v = Self::from_elem(0.0, values.len());
        v.copy_from_slice(values);
        v
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        // SAFETY: `lines` holds `lines.len() · LINE ≥ len` initialized f32s, contiguous
        // (`Line` is `repr(C)` around `[f32; LINE]`, 64 bytes, no padding); an empty `Vec`'s
        // pointer is dangling but aligned, which a zero-length slice allows.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.len) }
    }

    /// The values, writable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in `as_slice`, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), self.len) }
    }
}

impl Deref for AlignedVec {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        self.as_slice()
    }
}

impl DerefMut for AlignedVec {
    fn deref_mut(&mut self) -> &mut [f32] {
        self.as_mut_slice()
    }
}

impl From<Vec<f32>> for AlignedVec {
    fn from(values: Vec<f32>) -> Self {
        Self::from_slice(&values)
    }
}

impl From<&[f32]> for AlignedVec {
    fn from(values: &[f32]) -> Self {
        Self::from_slice(values)
    }
}

impl<'a> IntoIterator for &'a AlignedVec {
    type Item = &'a f32;
    type IntoIter = std::slice::Iter<'a, f32>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for AlignedVec {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> PartialEq<[f32; N]> for AlignedVec {
    fn eq(&self, other: &[f32; N]) -> bool {
        self.as_slice() == other
    }
}

impl fmt::Debug for AlignedVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_start_on_a_cache_line_and_read_back_as_given() {
        for len in [0, 1, 15, 16, 17, 200_704] {
            let values: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 7.0).collect();
            let v = AlignedVec::from(values.clone());
            assert_eq!(v.as_ptr() as usize % 64, 0, "len {len}");
            assert_eq!(v.as_slice(), values.as_slice());
            let mut c = v.clone();
            assert_eq!(c.as_ptr() as usize % 64, 0, "clone of len {len}");
            assert_eq!(c, v);
            if len > 0 {
                c[len - 1] = 1e9;
                assert_ne!(c, v);
            }
        }
        assert_eq!(AlignedVec::from_elem(1.5, 3), [1.5; 3]);
        assert_eq!(
            format!("{:?}", AlignedVec::from(vec![1.0, 2.0])),
            "[1.0, 2.0]"
        );
    }
}
