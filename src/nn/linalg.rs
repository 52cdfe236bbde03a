//! The few-row products and the elementwise kernels of the hot loop.
//!
//! Larger products are [`super::product`]'s, through the pure-Rust `gemm` crate. A product
//! with a single left row (one-row prediction) does not go through `gemm` at all: with
//! weights stored `[in, out]` row-major, `x·W` is a sum of contiguous weight rows scaled by
//! the inputs, which streams the weights once and needs no packing. Up to [`FEW_ROWS`] left
//! rows take the same path, several rows sharing each pass over the weights, so that each row
//! gets exactly its one-row bits (what lets the server batch small predictions unseen).
//!
//! Shipped binaries are built for baseline x86-64, so the elementwise loops here are compiled
//! several times with `multiversion` and the best version is picked once at run time; they
//! are written without branches so that each version vectorizes, and without fused
//! multiply-adds the compiler could choose differently per version, so every version gives
//! the same bits.

use multiversion::multiversion;

use super::isa::Isa;
use super::parallel;

/// Up to this many rows, a product of row-major operands goes through the one-row kernels
/// (several rows at a time), not through `gemm`: packing `W` costs more than the product then,
/// and every row comes out with the bits it has when it is multiplied alone, so a prediction
/// does not depend on the other rows of its request or of its batch.
pub const FEW_ROWS: usize = 16;

/// `dst (+)= x · W` for `rows` row-major rows of `x` and `dst`, `W` row-major: on a CPU with
/// AVX-512 the register-blocked kernels of [`avx512`], elsewhere [`vec_mat_portable`] on each
/// row. All add the rows of `W` in order with one fused multiply-add each, so they give the
/// same bits, and a row gets the same bits whatever rows come with it.
pub(crate) fn few_rows_mat(dst: &mut [f32], x: &[f32], w: &[f32], rows: usize, accumulate: bool) {
    #[cfg(target_arch = "x86_64")]
    if Isa::get() == Isa::Avx512 {
        // SAFETY: the CPU has AVX-512F (`Isa::get` checked it); the slice lengths are checked
        // inside.
        unsafe { avx512::rows_mat(dst, x, w, rows, accumulate) };
        return;
    }
    if rows == 0 {
        return;
    }
    let (n, k) = (dst.len() / rows, x.len() / rows);
    for (d, xr) in dst.chunks_exact_mut(n).zip(x.chunks_exact(k)) {
        vec_mat_portable(d, xr, w, accumulate);
    }
}

/// The portable `dst (+)= x · W`: four weight rows at a time, so each pass over `dst` does four
/// multiply-adds per load and store. (`mul_add` compiles to FMA instructions in the AVX2
/// version; only the baseline fallback for CPUs without FMA pays for a software fused
/// multiply-add.)
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn vec_mat_portable(dst: &mut [f32], x: &[f32], w: &[f32], accumulate: bool) {
    let n = dst.len();
    if !accumulate {
        dst.fill(0.0);
    }
    let (x4, x_tail) = x.as_chunks::<4>();
    let (w4, w_tail) = w.split_at(x4.len() * 4 * n);
    for (xs, rows) in x4.iter().zip(w4.chunks_exact(4 * n)) {
        let (r0, rest) = rows.split_at(n);
        let (r1, rest) = rest.split_at(n);
        let (r2, r3) = rest.split_at(n);
        for ((((d, a), b), c), e) in dst.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
            // Explicit fused multiply-adds: Rust never contracts `a * b + c` by itself.
            *d = e.mul_add(
                xs[3],
                c.mul_add(xs[2], b.mul_add(xs[1], a.mul_add(xs[0], *d))),
            );
        }
    }
    for (xi, row) in x_tail.iter().zip(w_tail.chunks_exact(n)) {
        for (d, wv) in dst.iter_mut().zip(row) {
            *d = wv.mul_add(*xi, *d);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! One-row products with the accumulators in registers.
    //!
    //! `x · W` for one row is bound by reading `W` (for the 784-256-128-10 network, 940 KB,
    //! from L2): each weight should be loaded once and do one multiply-add, and nothing else
    //! should touch memory. A block of up to 256 output columns keeps its sums in sixteen
    //! 512-bit registers while the kernel walks down all rows of `W`, so the only memory
    //! traffic is one load per sixteen weights; the last vector of the last block is masked
    //! when the width is not a multiple of sixteen, and a block of whole vectors uses no masks
    //! at all (sixteen of them would not fit in the mask registers). With the weights on a
    //! cache-line boundary ([`crate::nn::aligned`]) the product then runs at about the speed
    //! of a plain read of the weights (`nn-bench lat` measures both), where reloading masks
    //! every row, or the portable kernel's passes over `dst` every four rows, took about
    //! twice as long.

    use std::arch::x86_64::{
        __m512, _mm512_castpd_ps, _mm512_castps_pd, _mm512_fmadd_ps, _mm512_loadu_ps,
        _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_shuffle_f32x4, _mm512_storeu_ps, _mm512_unpackhi_pd, _mm512_unpackhi_ps,
        _mm512_unpacklo_pd, _mm512_unpacklo_ps,
    };

    const LANES: usize = 16;

    /// `dst (+)= x · W`, `W` row-major `[x.len(), dst.len()]`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn vec_mat(dst: &mut [f32], x: &[f32], w: &[f32], accumulate: bool) {
        let n = dst.len();
        assert_eq!(
            w.len(),
            x.len() * n,
            "vec_mat: W is not [x.len(), dst.len()]"
        );
        let mut j = 0;
        while j < n {
            let width = (n - j).min(16 * LANES);
            // SAFETY (for each call): columns j..j + width are inside every row of `w` and
            // inside `dst` (width ≤ n − j), and AVX-512F is enabled in this function.
            unsafe {
                // Up to 16 vectors of accumulators; a block whose width is a whole number of
                // vectors loads and stores without masks (masks for all sixteen would not fit
                // in the eight mask registers and would be reloaded from the stack per row).
                let vectors = match width.div_ceil(LANES) {
                    16 => 16,
                    9..=15 => 15,
                    5..=8 => 8,
                    3 | 4 => 4,
                    v => v,
                };
                match (vectors, width == vectors * LANES) {
                    (16, true) => block::<16, true>(dst, x, w, j, width, accumulate),
                    (16, false) => block::<16, false>(dst, x, w, j, width, accumulate),
                    (15, true) => block::<15, true>(dst, x, w, j, width, accumulate),
                    (15, false) => block::<15, false>(dst, x, w, j, width, accumulate),
                    (8, true) => block::<8, true>(dst, x, w, j, width, accumulate),
                    (8, false) => block::<8, false>(dst, x, w, j, width, accumulate),
                    (4, true) => block::<4, true>(dst, x, w, j, width, accumulate),
                    (4, false) => block::<4, false>(dst, x, w, j, width, accumulate),
                    (2, true) => block::<2, true>(dst, x, w, j, width, accumulate),
                    (2, false) => block::<2, false>(dst, x, w, j, width, accumulate),
                    (_, true) => block::<1, true>(dst, x, w, j, width, accumulate),
                    (_, false) => block::<1, false>(dst, x, w, j, width, accumulate),
                }
            }
            j += width;
        }
    }

    /// `dst (+)= x · W` for `rows` rows of `x` and `dst` (row-major), `W` row-major
    /// `[x.len() / rows, dst.len() / rows]`: each output is the same chain of fused
    /// multiply-adds as in [`vec_mat`], but groups of up to eight rows walk `W` together, so
    /// each 16 weights loaded serve every row of the group (eight rows × three vectors of
    /// accumulators, fewer rows × more vectors).
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn rows_mat(dst: &mut [f32], x: &[f32], w: &[f32], rows: usize, accumulate: bool) {
        if rows == 0 {
            return;
        }
        let (n, k) = (dst.len() / rows, x.len() / rows);
        assert!(
            dst.len() == rows * n && x.len() == rows * k && w.len() == k * n,
            "rows_mat: {rows} rows of x ({}) and dst ({}) do not fit W ({})",
            x.len(),
            dst.len(),
            w.len()
        );
        let mut r = 0;
        while r < rows {
            let take = (rows - r).min(8);
            let d = &mut dst[r * n..(r + take) * n];
            let xs = &x[r * k..(r + take) * k];
            // SAFETY (for each call): `d` is `take` rows of `n`, `xs` `take` rows of `k`, and
            // `w` is `k × n` (checked above); AVX-512F is enabled in this function.
            unsafe {
                match take {
                    8 => group::<8, 3>(d, xs, w, n, k, accumulate),
                    7 => group::<7, 3>(d, xs, w, n, k, accumulate),
                    6 => group::<6, 4>(d, xs, w, n, k, accumulate),
                    5 => group::<5, 4>(d, xs, w, n, k, accumulate),
                    4 => group::<4, 6>(d, xs, w, n, k, accumulate),
                    3 => group::<3, 8>(d, xs, w, n, k, accumulate),
                    2 => group::<2, 12>(d, xs, w, n, k, accumulate),
                    _ => vec_mat(d, xs, w, accumulate),
                }
            }
            r += take;
        }
    }

    /// `R` rows of `dst (+)= x · W` (`dst` `R × n`, `x` `R × k`, `W` `k × n`), `A` vectors
    /// of columns at a time.
    ///
    /// # Safety
    /// AVX-512F; the slices have exactly those lengths.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn group<const R: usize, const A: usize>(
        dst: &mut [f32],
        x: &[f32],
        w: &[f32],
        n: usize,
        k: usize,
        accumulate: bool,
    ) {
        debug_assert!(dst.len() == R * n && x.len() == R * k && w.len() == k * n);
        let mut j = 0;
        while j < n {
            let width = (n - j).min(A * LANES);
            // SAFETY: columns j..j + width are inside every row (width ≤ n − j), and with
            // `FULL` they are A · 16; the lengths are the caller's.
            unsafe {
                if width == A * LANES {
                    group_block::<R, A, true>(dst, x, w, n, k, j, width, accumulate);
                } else {
                    group_block::<R, A, false>(dst, x, w, n, k, j, width, accumulate);
                }
            }
            j += width;
        }
    }

    /// Columns `j..j + width` of [`group`]'s product, `width ≤ A · 16` (`== A · 16` with
    /// `FULL`, where no vector is masked).
    ///
    /// # Safety
    /// AVX-512F; the slices have [`group`]'s lengths; `j + width ≤ n`; with `FULL`,
    /// `width == A · 16`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn group_block<const R: usize, const A: usize, const FULL: bool>(
        dst: &mut [f32],
        x: &[f32],
        w: &[f32],
        n: usize,
        k: usize,
        j: usize,
        width: usize,
        accumulate: bool,
    ) {
        debug_assert!(!FULL || width == A * LANES);
        let masks = masks::<A>(width);
        let out = dst.as_mut_ptr().wrapping_add(j);
        // SAFETY: every vector access is masked to columns j..j + width (< n) of one row of
        // `w` (k rows) or of `dst` (R rows), or unmasked with `FULL`, where those columns
        // are all A · 16 lanes; the scalar reads of `x` are at r·k + i for r < R, i < k.
        // Masked-off lanes are neither read nor written.
        unsafe {
            let mut acc: [[__m512; A]; R] = [[_mm512_setzero_ps(); A]; R];
            if accumulate {
                for (r, acc) in acc.iter_mut().enumerate() {
                    for c in 0..A {
                        acc[c] = load::<FULL>(masks[c], out.wrapping_add(r * n + c * LANES));
                    }
                }
            }
            let mut row = w.as_ptr().wrapping_add(j);
            for i in 0..k {
                let v: [__m512; A] =
                    std::array::from_fn(|c| load::<FULL>(masks[c], row.wrapping_add(c * LANES)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let xi = _mm512_set1_ps(*x.get_unchecked(r * k + i));
                    for c in 0..A {
                        acc[c] = _mm512_fmadd_ps(v[c], xi, acc[c]);
                    }
                }
                row = row.wrapping_add(n);
            }
            for (r, acc) in acc.iter().enumerate() {
                for c in 0..A {
                    store::<FULL>(out.wrapping_add(r * n + c * LANES), masks[c], acc[c]);
                }
            }
        }
    }

    /// Columns `j..j + width` of `dst (+)= x · W` with `A` vector accumulators, where
    /// `width ≤ A · 16`; vectors past `width` are masked off entirely. With `FULL`
    /// (`width == A · 16`) no vector is masked.
    ///
    /// # Safety
    /// AVX-512F; `j + width ≤ dst.len()`, `w.len() == x.len() · dst.len()`; with `FULL`,
    /// `width == A · 16`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block<const A: usize, const FULL: bool>(
        dst: &mut [f32],
        x: &[f32],
        w: &[f32],
        j: usize,
        width: usize,
        accumulate: bool,
    ) {
        debug_assert!(!FULL || width == A * LANES);
        let n = dst.len();
        let masks = masks::<A>(width);
        let out = dst.as_mut_ptr().wrapping_add(j);
        // SAFETY: every access below is masked to the columns j..j + width of one row of
        // `w` or of `dst`, which the caller guarantees are in bounds, or is unmasked with
        // `FULL`, where those columns are all A · 16 lanes; masked-off lanes are not read or
        // written (AVX-512 masked loads and stores do not fault on them).
        unsafe {
            let mut acc: [__m512; A] = [_mm512_setzero_ps(); A];
            if accumulate {
                for c in 0..A {
                    acc[c] = load::<FULL>(masks[c], out.wrapping_add(c * LANES));
                }
            }
            let mut row = w.as_ptr().wrapping_add(j);
            for &xi in x {
                let xi = _mm512_set1_ps(xi);
                for c in 0..A {
                    let v = load::<FULL>(masks[c], row.wrapping_add(c * LANES));
                    acc[c] = _mm512_fmadd_ps(v, xi, acc[c]);
                }
                row = row.wrapping_add(n);
            }
            for c in 0..A {
                store::<FULL>(out.wrapping_add(c * LANES), masks[c], acc[c]);
            }
        }
    }

    /// For `A` vectors covering `width` columns, each vector's mask of the lanes inside.
    #[inline(always)]
    fn masks<const A: usize>(width: usize) -> [u16; A] {
        std::array::from_fn(|c| {
            let left = width.saturating_sub(c * LANES).min(LANES);
            ((1u32 << left) - 1) as u16
        })
    }

    /// Sixteen floats from `p`: all of them with `FULL`, else the lanes of `mask` (zero
    /// elsewhere).
    ///
    /// # Safety
    /// AVX-512F; the lanes read (all with `FULL`, else those of `mask`) are readable.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load<const FULL: bool>(mask: u16, p: *const f32) -> __m512 {
        // SAFETY: the caller's contract.
        unsafe {
            if FULL {
                _mm512_loadu_ps(p)
            } else {
                _mm512_maskz_loadu_ps(mask, p)
            }
        }
    }

    /// Writes `v` to sixteen floats at `p`: all of them with `FULL`, else the lanes of
    /// `mask`.
    ///
    /// # Safety
    /// AVX-512F; the lanes written are writable.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store<const FULL: bool>(p: *mut f32, mask: u16, v: __m512) {
        // SAFETY: the caller's contract.
        unsafe {
            if FULL {
                _mm512_storeu_ps(p, v)
            } else {
                _mm512_mask_storeu_ps(p, mask, v)
            }
        }
    }
    /// Transposes the `height × width` tile (both ≤ 16) at `src`, rows `src_stride` apart,
    /// into `dst`, rows `dst_stride` apart: interleaves of 32-bit, then 64-bit elements within
    /// 128-bit lanes, then two shuffles of whole lanes, 64 shuffles in all. A `FULL` tile
    /// (16 × 16) needs no masks; others load and store through them.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `src` must be readable for `height` rows of `width`
    /// values and `dst` writable for `width` rows of `height` values, at their strides.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn transpose_tile<const FULL: bool>(
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
        height: usize,
        width: usize,
    ) {
        let (height, width) = if FULL { (16, 16) } else { (height, width) };
        let zero = _mm512_setzero_ps();
        let (row_mask, column_mask) = (masks::<1>(height)[0], masks::<1>(width)[0]);
        let mut r = [zero; 16];
        for (i, v) in r.iter_mut().enumerate().take(height) {
            // SAFETY: row i < height of the tile is inside `src` (the caller's contract).
            *v = unsafe { load::<FULL>(column_mask, src.add(i * src_stride)) };
        }
        // lo[p], hi[p]: rows 2p and 2p + 1 interleaved; within 128-bit lane L, columns 4L, 4L + 1
        // (lo) or 4L + 2, 4L + 3 (hi) of both rows.
        let (mut lo, mut hi) = ([zero; 8], [zero; 8]);
        for p in 0..8 {
            lo[p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
            hi[p] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
        }
        // s[q][c]: within lane L, column 4L + c of rows 4q .. 4q + 4.
        let mut s = [[zero; 4]; 4];
        for q in 0..4 {
            for (half, pair) in [&lo, &hi].into_iter().enumerate() {
                let (a, b) = (
                    _mm512_castps_pd(pair[2 * q]),
                    _mm512_castps_pd(pair[2 * q + 1]),
                );
                s[q][2 * half] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
                s[q][2 * half + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
            }
        }
        // Column 4L + c of all sixteen rows is lane L of s[0][c], s[1][c], s[2][c], s[3][c].
        for (c, sc) in s[0]
            .iter()
            .zip(&s[1])
            .zip(s[2].iter().zip(&s[3]))
            .enumerate()
        {
            let ((s0, s1), (s2, s3)) = sc;
            let u = _mm512_shuffle_f32x4::<0x44>(*s0, *s1); // lanes 0, 1 of s0, then of s1
            let u2 = _mm512_shuffle_f32x4::<0xEE>(*s0, *s1); // lanes 2, 3
            let w = _mm512_shuffle_f32x4::<0x44>(*s2, *s3);
            let w2 = _mm512_shuffle_f32x4::<0xEE>(*s2, *s3);
            let columns = [
                _mm512_shuffle_f32x4::<0x88>(u, w), // lane 0 of each: column c
                _mm512_shuffle_f32x4::<0xDD>(u, w), // lane 1: column 4 + c
                _mm512_shuffle_f32x4::<0x88>(u2, w2),
                _mm512_shuffle_f32x4::<0xDD>(u2, w2),
            ];
            for (lane, v) in columns.into_iter().enumerate() {
                let j = 4 * lane + c;
                if j < width {
                    // SAFETY: column j < width of the tile is row j of the `dst` tile.
                    unsafe { store::<FULL>(dst.add(j * dst_stride), row_mask, v) };
                }
            }
        }
    }
}

/// `dst = srcᵀ`: `src` row-major `[rows, cols]`, `dst` row-major `[cols, rows]`.
///
/// The backward pass needs `G · Wᵀ`. Handed `W` itself, `gemm` copies it into its own layout
/// one element at a time, down columns `4·cols` bytes apart (for a 1024-wide layer, every
/// read is a new cache line in the same L1 set); handed `Wᵀ`, its kernel reads the weights in
/// place or with vector copies. This transpose moves 16 × 16 tiles through registers (on
/// AVX-512). The product keeps its bits, since only the copy changes (tested); up to
/// [`FEW_ROWS`] rows it now goes through the one-row kernels, the copy being contiguous.
///
/// From `PARALLEL_PASS` values, bands of `BAND` columns of `src` (rows of `dst`) are
/// shared with the calling thread's [team](super::parallel): a copy gives the same bits
/// whoever makes it.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert!(
        src.len() == rows * cols && dst.len() == rows * cols,
        "transpose: {} and {} values for [{rows}, {cols}]",
        src.len(),
        dst.len()
    );
    if rows * cols < PARALLEL_PASS {
        transpose_band(src, rows, cols, 0, dst);
        return;
    }
    let mut bands: Vec<(usize, &mut [f32])> = dst
        .chunks_mut(BAND * rows)
        .enumerate()
        .map(|(i, band)| (i * BAND, band))
        .collect();
    parallel::for_each_mut(&mut bands, &|(first, band)| {
        transpose_band(src, rows, cols, *first, band);
    });
}

/// Values from which an elementwise pass or a copy ([`transpose`], [`bias_relu_fold_max`],
/// `Activation::forward` and `backward`) is shared with the helpers of the calling thread's
/// [team](super::parallel), in blocks of [`PASS_BLOCK`]: a hidden layer of 1,024 units at a
/// batch of 64 rows. Below, handing the blocks out costs more than the helpers save.
pub(crate) const PARALLEL_PASS: usize = 1 << 16;

/// Values of a block of an elementwise pass: a whole number of every version's vectors.
pub(crate) const PASS_BLOCK: usize = 1 << 14;

/// Columns of a band of [`transpose`]: whole 16 × 16 tiles.
const BAND: usize = 64;

/// Rows `first..` of `dst = srcᵀ` (as many as `band` holds): columns `first..` of `src`.
fn transpose_band(src: &[f32], rows: usize, cols: usize, first: usize, band: &mut [f32]) {
    let width = band.len() / rows.max(1);
    assert!(
        src.len() == rows * cols && band.len() == rows * width && first + width <= cols,
        "transpose: columns {first}..{} of [{rows}, {cols}] into {} values",
        first + width,
        band.len()
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        for r in (0..rows).step_by(16) {
            for c in (0..width).step_by(16) {
                let (height, tile_width) = ((rows - r).min(16), (width - c).min(16));
                let (from, to) = (
                    src[r * cols + first + c..].as_ptr(),
                    band[c * rows + r..].as_mut_ptr(),
                );
                // SAFETY: the CPU has AVX-512F (checked just above); the tile's rows
                // r..r + height and columns first + c..first + c + tile_width lie inside
                // `src`, and its transposed rectangle inside `band` (checked at the top).
                unsafe {
                    if height == 16 && tile_width == 16 {
                        avx512::transpose_tile::<true>(from, cols, to, rows, 16, 16);
                    } else {
                        avx512::transpose_tile::<false>(from, cols, to, rows, height, tile_width);
                    }
                }
            }
        }
        return;
    }
    transpose_portable(src, rows, cols, first, band);
}

/// [`transpose_band`] one element at a time, for CPUs without AVX-512.
fn transpose_portable(src: &[f32], rows: usize, cols: usize, first: usize, band: &mut [f32]) {
    let width = band.len() / rows.max(1);
    for r in 0..rows {
        for c in 0..width {
            band[c * rows + r] = src[r * cols + first + c];
        }
    }
}

/// Adds `bias` to every row of the row-major `[rows, bias.len()]` matrix `z`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn add_row(z: &mut [f32], bias: &[f32]) {
    for row in z.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// Column sums of the row-major `[rows, out.len()]` matrix `g`, written to `out`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn column_sums(g: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for row in g.chunks_exact(out.len()) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// A ReLU layer's forward pass after its product, in one pass over the rows of `u`: adds
/// `bias` to each row of `u` (the pre-activation, kept for the backward pass), writes
/// `max(u, 0)` to `a`, and folds the column maxima of `u` into `acc`. The same arithmetic as
/// [`add_row`], the ReLU of `Activation::forward` and [`fold_column_max`] in turn, so the same
/// bits (tested). The three passes took 3.9 % of W1's time; fused, W1 trained at
/// 774–798k samples/s against 771–791k in six alternating pairs (`nn-bench w1`, +1.4 %).
///
/// From `PARALLEL_PASS` values, blocks of rows are shared with the calling thread's
/// [team](super::parallel), each folding its own column maxima, which are then folded into
/// `acc` in block order: `u` and `a` keep their bits, and a maximum is exact whatever the
/// grouping (only the sign of a zero maximum may differ, which no diagnostic can see: a unit
/// counts as dead when its maximum is ≤ 0).
pub fn bias_relu_fold_max(u: &mut [f32], bias: &[f32], a: &mut [f32], acc: &mut [f32]) {
    let width = bias.len();
    if u.len() < PARALLEL_PASS || width == 0 {
        bias_relu_fold_max_rows(u, bias, a, acc);
        return;
    }
    let rows = (PASS_BLOCK / width).max(1);
    let mut blocks: Vec<_> = u
        .chunks_mut(rows * width)
        .zip(a.chunks_mut(rows * width))
        .map(|(u, a)| (u, a, vec![f32::NEG_INFINITY; width]))
        .collect();
    parallel::for_each_mut(&mut blocks, &|(u, a, max)| {
        bias_relu_fold_max_rows(u, bias, a, max);
    });
    for (_, _, max) in &blocks {
        for (m, b) in acc.iter_mut().zip(max) {
            *m = m.max(*b);
        }
    }
}

/// [`bias_relu_fold_max`] on one thread.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn bias_relu_fold_max_rows(u: &mut [f32], bias: &[f32], a: &mut [f32], acc: &mut [f32]) {
    let width = bias.len();
    for (urow, arow) in u.chunks_exact_mut(width).zip(a.chunks_exact_mut(width)) {
        for (((z, y), b), m) in urow.iter_mut().zip(arow).zip(bias).zip(acc.iter_mut()) {
            *z += b;
            *y = z.max(0.0);
            *m = m.max(*z);
        }
    }
}

/// Column maxima of `z` folded into `acc` (`acc[j] = max(acc[j], z[i, j])`).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn fold_column_max(z: &[f32], acc: &mut [f32]) {
    for row in z.chunks_exact(acc.len()) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a = a.max(*v);
        }
    }
}

/// Sum of squares: sixteen `f32` lanes (so the loop vectorizes), folded into an `f64` total
/// every 1,024 elements so that long vectors keep their precision.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn sum_squares(xs: &[f32]) -> f64 {
    let mut total = 0.0f64;
    let (blocks, tail) = xs.as_chunks::<1024>();
    for block in blocks {
        let mut lanes = [0.0f32; 16];
        for c in block.as_chunks::<16>().0 {
            for l in 0..16 {
                lanes[l] += c[l] * c[l];
            }
        }
        total += lanes.iter().map(|&l| l as f64).sum::<f64>();
    }
    total + tail.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>()
}

/// `xs = e^xs` elementwise (`vmath::exp`: one vector loop over the whole slice).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn exp_in_place(xs: &mut [f32]) {
    for v in xs {
        *v = super::vmath::exp(*v);
    }
}

/// `xs *= s`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn scale(xs: &mut [f32], s: f32) {
    for v in xs {
        *v *= s;
    }
}

/// Elementwise product `a *= b`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn mul_assign(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x *= y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn filled(r: usize, c: usize, seed: f32) -> Array2<f32> {
        Array2::from_shape_fn((r, c), |(i, j)| ((i * 7 + j * 13) as f32 * seed).sin())
    }

    #[test]
    fn transpose_matches_the_definition_in_tiles_and_edges() {
        for (rows, cols) in [
            (1, 1),
            (16, 16),
            (17, 33),
            (64, 10),
            (128, 64),
            (48, 1024),
            (31, 16),
            (5, 3),
            (16, 1),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 - 7.5).collect();
            for portable in [false, true] {
                let mut dst = vec![f32::NAN; rows * cols];
                if portable {
                    transpose_portable(&src, rows, cols, 0, &mut dst);
                } else {
                    transpose(&src, rows, cols, &mut dst);
                }
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(
                            dst[c * rows + r],
                            src[r * cols + c],
                            "[{rows}, {cols}] at ({r}, {c}), portable: {portable}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_large_transpose_shared_with_helpers_matches_the_definition() {
        // Above `PARALLEL_PASS`, with a last band narrower than the others.
        let (rows, cols) = (1030, 300);
        assert!(rows * cols >= PARALLEL_PASS);
        let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 - 7.5).collect();
        let team = parallel::Team::new(2, std::sync::Arc::new(|| {})).unwrap();
        let _entered = team.enter();
        let mut dst = vec![f32::NAN; rows * cols];
        transpose(&src, rows, cols, &mut dst);
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(dst[c * rows + r], src[r * cols + c], "({r}, {c})");
            }
        }
    }

    #[test]
    fn fused_relu_forward_matches_its_three_passes() {
        let (rows, width) = (5, 37);
        let u0: Vec<f32> = filled(rows, width, 0.9).iter().map(|v| v * 3.0).collect();
        let bias: Vec<f32> = (0..width).map(|j| (j as f32 * 0.37).cos()).collect();
        let acc0: Vec<f32> = (0..width).map(|j| (j as f32 * 0.11).sin()).collect();

        let (mut u, mut acc) = (u0.clone(), acc0.clone());
        add_row(&mut u, &bias);
        let mut a = vec![0.0; u.len()];
        for (a, &u) in a.iter_mut().zip(&u) {
            *a = u.max(0.0); // ReLU, as `Activation::Relu` computes it
        }
        fold_column_max(&u, &mut acc);

        let (mut fu, mut fa, mut facc) = (u0, vec![0.0; rows * width], acc0);
        bias_relu_fold_max(&mut fu, &bias, &mut fa, &mut facc);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fu), bits(&u));
        assert_eq!(bits(&fa), bits(&a));
        assert_eq!(bits(&facc), bits(&acc));
    }

    #[test]
    fn the_fused_relu_forward_shared_with_helpers_matches_one_pass() {
        // Above `PARALLEL_PASS`, with a last block of fewer rows and zero columns in `u`.
        let (rows, width) = (PARALLEL_PASS / 100 + 7, 100);
        let mut u0: Vec<f32> = filled(rows, width, 0.9).iter().map(|v| v * 3.0).collect();
        u0.iter_mut().step_by(width).for_each(|v| *v = -v.abs());
        let bias: Vec<f32> = (0..width).map(|j| (j as f32 * 0.37).cos()).collect();
        let acc0: Vec<f32> = (0..width).map(|j| (j as f32 * 0.11).sin() - 5.0).collect();

        let (mut u, mut a, mut acc) = (u0.clone(), vec![0.0; rows * width], acc0.clone());
        bias_relu_fold_max_rows(&mut u, &bias, &mut a, &mut acc);

        let team = parallel::Team::new(2, std::sync::Arc::new(|| {})).unwrap();
        let _entered = team.enter();
        let (mut pu, mut pa, mut pacc) = (u0, vec![0.0; rows * width], acc0);
        bias_relu_fold_max(&mut pu, &bias, &mut pa, &mut pacc);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&pu), bits(&u));
        assert_eq!(bits(&pa), bits(&a));
        assert_eq!(pacc, acc);
    }

    #[test]
    fn one_row_kernels_agree_bit_for_bit_at_every_width() {
        // Widths around the register blocks (16 lanes, blocks of 1, 2, 4, 8, 15, 16 vectors,
        // whole or with a masked tail, and a second block), accumulating or not: the
        // dispatched kernel (AVX-512 on a CPU that has it) must give the portable kernel's
        // bits, since both add rows in order with one fused multiply-add each.
        for &n in &[
            1, 3, 10, 16, 17, 32, 33, 64, 100, 128, 129, 240, 255, 256, 257, 300, 513,
        ] {
            for &k in &[1, 5, 784] {
                let x = filled(1, k, 0.3);
                let w = filled(k, n, 0.7);
                let (xs, ws) = (x.as_slice().unwrap(), w.as_slice().unwrap());
                for accumulate in [false, true] {
                    let start: Vec<f32> = (0..n).map(|j| j as f32 * 0.25 - 3.0).collect();
                    let (mut got, mut want) = (start.clone(), start);
                    few_rows_mat(&mut got, xs, ws, 1, accumulate);
                    vec_mat_portable(&mut want, xs, ws, accumulate);
                    assert_eq!(got, want, "1x{k}x{n}, accumulate {accumulate}");
                }
            }
        }
    }

    #[test]
    fn a_row_has_the_same_bits_with_up_to_sixteen_others() {
        // Groups of eight rows and every remainder, column blocks of 3 to 16 vectors with
        // masked tails, accumulating or not: each row of a few-row product must be the
        // portable one-row product of that row, bit for bit.
        for rows in 1..=FEW_ROWS {
            for &(k, n) in &[
                (1, 1),
                (5, 10),
                (7, 47),
                (784, 256),
                (256, 128),
                (128, 10),
                (3, 200),
            ] {
                let x = filled(rows, k, 0.3);
                let w = filled(k, n, 0.7);
                let (xs, ws) = (x.as_slice().unwrap(), w.as_slice().unwrap());
                for accumulate in [false, true] {
                    let start: Vec<f32> = (0..rows * n).map(|j| j as f32 * 0.25 - 3.0).collect();
                    let mut got = start.clone();
                    few_rows_mat(&mut got, xs, ws, rows, accumulate);
                    for r in 0..rows {
                        let mut want = start[r * n..(r + 1) * n].to_vec();
                        vec_mat_portable(&mut want, &xs[r * k..(r + 1) * k], ws, accumulate);
                        assert_eq!(
                            &got[r * n..(r + 1) * n],
                            &want[..],
                            "row {r} of {rows}x{k}x{n}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn sum_squares_is_exact_enough_for_long_vectors() {
        let xs = vec![0.1f32; 100_003];
        let want = 100_003.0 * (0.1f32 as f64).powi(2);
        assert!((sum_squares(&xs) - want).abs() / want < 1e-5);
    }
}
