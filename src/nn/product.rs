//! Matrix products that give the same bits on every machine and at every thread count.
//!
//! Each output of a product is a sum over `k`. Its bits depend on the order of that sum and
//! on nothing else: no kernel here vectorizes along `k` (they vectorize across outputs, one
//! chain of fused multiply-adds per output), so AVX-512, AVX2 + FMA and NEON give the same
//! chain. What the `gemm` crate would decide by itself, and this module decides instead:
//!
//! - **The blocking of `k`.** `gemm` sums an output as one chain per block of `k` and adds
//!   the blocks' sums; it sizes the block from the L1 cache it detects (512 on a 32 KiB
//!   8-way L1, 1,024 on Intel's 48 KiB 12-way one), so `k` = 784 was one block on some
//!   machines and two on others. Here `k` is cut into [`pieces`] of at most [`MAX_PIECE`],
//!   from `k` alone, and each piece is one call whose block is the whole piece (`gemm` never
//!   cuts a block below 512).
//! - **The kernel.** `gemm` has kernels that sum along `k` across vector lanes and reduce at
//!   the end ("horizontal" kernels for small products of two `k`-contiguous operands, the
//!   matrix–vector kernels for one row or one column); their bits depend on the vector
//!   width. They are never reached: this module calls `gemm`'s driver without horizontal
//!   kernels, and sends one-column, one-row and `k ≤ 2` products to the few-row kernels of
//!   [`super::linalg`] (a one-column product on its transpose).
//! - **The instruction set**, chosen once ([`Isa`]), for `gemm` and the few-row kernels alike,
//!   so that a test can force AVX2 on an AVX-512 machine.
//! - **The split across threads.** A large product is cut into blocks of outputs ([`Grid`]),
//!   from its shape alone, never along `k`; each block is a product of its own, computed by
//!   whichever thread of the training thread's [team](super::parallel) takes it.
//!
//! Only the order of operations is fixed: cache sizes still decide `gemm`'s tiling and
//! packing, which move values, not sums. The same bits then hold on every x86-64 CPU with
//! FMA (and, by the same argument, on aarch64 with NEON, which has not been checked on such a
//! machine), for any cache sizes and thread counts: the tests hash training runs under forced
//! instruction sets and thread counts against golden values (see docs/determinism.md).

use gemm_common::gemm::gemm_basic_generic;
use gemm_common::Parallelism;
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2};

use super::isa::Isa;
use super::linalg::{few_rows_mat, FEW_ROWS};
use super::parallel;

/// The longest piece of `k` one call sums as one chain. 512 is the smallest block `gemm`
/// ever chooses by itself, so on a machine whose L1 gives it 512 (Zen 4's, for one) the pieces
/// are the blocks it chose anyway, and cost nothing.
pub const MAX_PIECE: usize = 512;

/// Multiply-adds below which a product stays on one thread: handing out blocks costs a
/// helper's wake-up, some tens of microseconds.
pub const PARALLEL_WORK: usize = 1 << 22;

/// At most this many blocks of outputs a product is cut into.
const MAX_BLOCKS: usize = 16;

/// Rows or columns a block has at least (so that no block reaches a matrix–vector kernel).
const MIN_SIDE: usize = 32;

/// `gemm`'s threshold for copying ("packing") a panel of the weights before a product: it
/// packs when the product has more than this many times 6 (its kernel's width) left rows;
/// 8 by default. With 16, products of up to 96 rows read the weights where they are (they
/// are laid out as the kernel reads them), and larger ones pack as before: a 64-row forward
/// is faster that way (`nn-bench lat`) and large products do not change. Packing copies
/// values and changes no arithmetic, so no result changes (tested).
const LHS_PACKING_THRESHOLD: usize = 16;

/// Sets [`LHS_PACKING_THRESHOLD`] once, before the first `gemm` product.
fn gemm_setup() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        gemm_common::gemm::set_lhs_packing_threshold_single_thread(LHS_PACKING_THRESHOLD);
    });
}

/// `dst = x · w` (or `dst += x · w` when `accumulate`), for any strides (so transposed views
/// from `.t()` cost nothing). Shapes must agree; a mismatch is a bug in the caller and panics
/// with both shapes.
pub fn matmul(
    mut dst: ArrayViewMut2<f32>,
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    accumulate: bool,
) {
    let (m, k) = x.dim();
    let (k2, n) = w.dim();
    assert!(
        k == k2 && dst.dim() == (m, n),
        "matmul shapes: {:?} · {:?} into {:?}",
        x.dim(),
        w.dim(),
        dst.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    if m <= FEW_ROWS {
        if let (Some(xs), Some(ws), Some(ds)) = (x.as_slice(), w.as_slice(), dst.as_slice_mut()) {
            few_rows_mat(ds, xs, ws, m, accumulate);
            return;
        }
    }
    if n == 1 {
        one_column(dst, x, w, accumulate);
    } else if m == 1 || k <= 2 {
        through_rows(dst, x, w, accumulate);
    } else {
        blocked(dst, x, w, accumulate);
    }
}

/// The pieces `k` is summed in: `count` of them, the `i`-th `k·i/count .. k·(i+1)/count`
/// (lengths differing by at most one, none longer than [`MAX_PIECE`]).
pub fn pieces(k: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let count = k.div_ceil(MAX_PIECE).max(1);
    (0..count).map(move |i| k * i / count..k * (i + 1) / count)
}

/// Blocks of outputs: `rows × cols` rectangles, from the product's shape alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    m: usize,
    n: usize,
    rows: usize,
    cols: usize,
}

impl Grid {
    /// One block up to [`PARALLEL_WORK`] multiply-adds; above, one per `PARALLEL_WORK / 2`,
    /// at most [`MAX_BLOCKS`], cut across columns first, none narrower or shorter than
    /// [`MIN_SIDE`].
    #[must_use]
    pub fn of(m: usize, n: usize, k: usize) -> Self {
        let work = m.saturating_mul(n).saturating_mul(k);
        let target = if work < PARALLEL_WORK {
            1
        } else {
            (work / (PARALLEL_WORK / 2)).min(MAX_BLOCKS)
        };
        let cols = target.min(n / MIN_SIDE).max(1);
        let rows = (target / cols).min(m / MIN_SIDE).max(1);
        Self { m, n, rows, cols }
    }

    /// The number of blocks.
    #[must_use]
    pub fn count(&self) -> usize {
        self.rows * self.cols
    }

    /// Block `i`'s rows and columns.
    #[must_use]
    pub fn block(&self, i: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let (r, c) = (i / self.cols, i % self.cols);
        (
            self.m * r / self.rows..self.m * (r + 1) / self.rows,
            self.n * c / self.cols..self.n * (c + 1) / self.cols,
        )
    }
}

/// A pointer handed to the threads of a product; the blocks they write do not overlap.
#[derive(Clone, Copy)]
struct Shared<T>(T);
// SAFETY: used only for `dst`'s pointer, whose blocks are disjoint, and the inputs', which are
// only read, while `matmul`'s borrows keep them alive.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

impl<T: Copy> Shared<T> {
    /// The pointer (a method, so that a closure captures the `Sync` wrapper, not its field).
    fn get(self) -> T {
        self.0
    }
}

/// The general case, through `gemm`'s driver: `m, n ≥ 2`, `k ≥ 3`.
fn blocked(mut dst: ArrayViewMut2<f32>, x: ArrayView2<f32>, w: ArrayView2<f32>, accumulate: bool) {
    gemm_setup();
    let (m, k) = x.dim();
    let n = w.ncols();
    let grid = Grid::of(m, n, k);
    let isa = Isa::get();
    let [dst_rs, dst_cs] = [dst.strides()[0], dst.strides()[1]];
    let [x_rs, x_cs] = [x.strides()[0], x.strides()[1]];
    let [w_rs, w_cs] = [w.strides()[0], w.strides()[1]];
    let (dp, xp, wp) = (
        Shared(dst.as_mut_ptr()),
        Shared(x.as_ptr()),
        Shared(w.as_ptr()),
    );
    parallel::for_each(grid.count(), &|b| {
        let (rows, cols) = grid.block(b);
        let (r0, c0) = (rows.start as isize, cols.start as isize);
        for (i, piece) in pieces(k).enumerate() {
            let d = piece.start as isize;
            // SAFETY: the block's rows and columns lie inside `dst` and the piece inside `k`
            // (both from the checked shapes), so every offset stays inside its view; blocks
            // do not overlap, so no two threads write the same output; `dst` aliases neither
            // input (it is borrowed mutably).
            unsafe {
                kernel(
                    isa,
                    rows.len(),
                    cols.len(),
                    piece.len(),
                    dp.get().offset(r0 * dst_rs + c0 * dst_cs),
                    dst_cs,
                    dst_rs,
                    accumulate || i > 0,
                    xp.get().offset(r0 * x_rs + d * x_cs),
                    x_cs,
                    x_rs,
                    wp.get().offset(d * w_rs + c0 * w_cs),
                    w_cs,
                    w_rs,
                );
            }
        }
    });
}

/// One `gemm` call, `dst (+)= lhs · rhs` (`gemm`'s argument order: column stride first),
/// summed as one chain per output: `k ≤ MAX_PIECE`, and `m, n ≥ 2`, `k ≥ 3` keep it off the
/// matrix–vector kernels; no horizontal kernels are passed.
///
/// # Safety
/// The pointers and strides must describe valid `[m, k]`, `[k, n]` and `[m, n]` matrices,
/// `dst` aliasing neither input, and `isa` must be one the CPU has ([`Isa::get`]).
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const f32,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const f32,
    rhs_cs: isize,
    rhs_rs: isize,
) {
    debug_assert!(m >= 2 && n >= 2 && (3..=MAX_PIECE).contains(&k));
    // As the `gemm` crate's front end does: its kernels store columns of `dst`, so a
    // row-major `dst` is computed as `dstᵀ = rhsᵀ · lhsᵀ` (the same sums, in the same order,
    // at a third of the cost), and negative strides are turned around.
    let (m, n, dst_cs, dst_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs) =
        if dst_cs.unsigned_abs() < dst_rs.unsigned_abs() {
            (
                n, m, dst_rs, dst_cs, rhs, rhs_rs, rhs_cs, lhs, lhs_rs, lhs_cs,
            )
        } else {
            (
                m, n, dst_cs, dst_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs,
            )
        };
    let (mut dst, mut dst_rs, mut lhs, mut lhs_rs) = (dst, dst_rs, lhs, lhs_rs);
    let (mut dst_cs, mut rhs, mut rhs_cs) = (dst_cs, rhs, rhs_cs);
    let (mut lhs_cs, mut rhs_rs) = (lhs_cs, rhs_rs);
    if dst_rs < 0 {
        dst = dst.wrapping_offset((m - 1) as isize * dst_rs);
        dst_rs = -dst_rs;
        lhs = lhs.wrapping_offset((m - 1) as isize * lhs_rs);
        lhs_rs = -lhs_rs;
    }
    if dst_cs < 0 {
        dst = dst.wrapping_offset((n - 1) as isize * dst_cs);
        dst_cs = -dst_cs;
        rhs = rhs.wrapping_offset((n - 1) as isize * rhs_cs);
        rhs_cs = -rhs_cs;
    }
    if lhs_cs < 0 {
        lhs = lhs.wrapping_offset((k - 1) as isize * lhs_cs);
        lhs_cs = -lhs_cs;
        rhs = rhs.wrapping_offset((k - 1) as isize * rhs_rs);
        rhs_rs = -rhs_rs;
    }
    macro_rules! call {
        ($simd:expr, $n:literal, $ukr:path) => {{
            use $ukr as ukr;
            gemm_basic_generic::<
                _,
                f32,
                $n,
                { ukr::MR_DIV_N * $n },
                { ukr::NR },
                { ukr::MR_DIV_N },
                0,
                0,
            >(
                $simd,
                m,
                n,
                k,
                dst,
                dst_cs,
                dst_rs,
                read_dst,
                lhs,
                lhs_cs,
                lhs_rs,
                rhs,
                rhs_cs,
                rhs_rs,
                1.0,
                1.0,
                false,
                false,
                false,
                |a, b, c| a * b + c,
                &ukr::UKR,
                &[],
                false,
                Parallelism::None,
            )
        }};
    }
    // SAFETY (each call): the caller's contract; the simd token proves the instruction set.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => call!(
                gemm_common::simd::V4::try_new().expect("Isa::get checked AVX-512F"),
                16,
                gemm_f32::microkernel::avx512f::f32
            ),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => call!(
                gemm_common::simd::V3::try_new().expect("Isa::get checked AVX2 and FMA"),
                8,
                gemm_f32::microkernel::fma::f32
            ),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => call!(
                gemm_common::simd::Scalar,
                4,
                gemm_f32::microkernel::neon::f32
            ),
            _ => call!(
                gemm_common::simd::Scalar,
                1,
                gemm_f32::microkernel::scalar::f32
            ),
        }
    }
}

/// `dst (+)= x · w` for a single column: `dstᵀ = wᵀ · xᵀ`, one row times `xᵀ`, through the
/// one-row kernel, in tiles of 64 rows of `x` transposed into a buffer.
fn one_column(
    mut dst: ArrayViewMut2<f32>,
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    accumulate: bool,
) {
    const COLUMN_TILE: usize = 64;
    let (m, k) = x.dim();
    let wt: Vec<f32> = w.column(0).to_vec();
    let mut xt = Array2::<f32>::zeros((k, COLUMN_TILE.min(m)));
    let mut out = vec![0.0; COLUMN_TILE.min(m)];
    for r0 in (0..m).step_by(COLUMN_TILE) {
        let r1 = (r0 + COLUMN_TILE).min(m);
        let (tile, out) = (&mut xt.slice_mut(s![.., ..r1 - r0]), &mut out[..r1 - r0]);
        tile.assign(&x.slice(s![r0..r1, ..]).t());
        let tile = tile.as_standard_layout();
        if accumulate {
            for (o, d) in out.iter_mut().zip(dst.slice(s![r0..r1, 0])) {
                *o = *d;
            }
        }
        few_rows_mat(
            out,
            &wt,
            tile.as_slice().expect("standard layout"),
            1,
            accumulate,
        );
        for (d, o) in dst.slice_mut(s![r0..r1, 0]).iter_mut().zip(out.iter()) {
            *d = *o;
        }
    }
}

/// `dst (+)= x · w` through the few-row kernels on row-major copies: one-row products
/// with strides, and `k ≤ 2`.
fn through_rows(
    mut dst: ArrayViewMut2<f32>,
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    accumulate: bool,
) {
    let m = x.nrows();
    let (x, w) = (x.as_standard_layout(), w.as_standard_layout());
    let (xs, ws) = (
        x.as_slice().expect("standard layout"),
        w.as_slice().expect("standard layout"),
    );
    if let Some(ds) = dst.as_slice_mut() {
        few_rows_mat(ds, xs, ws, m, accumulate);
        return;
    }
    let mut out: Vec<f32> = if accumulate {
        dst.iter().copied().collect()
    } else {
        vec![0.0; dst.len()]
    };
    few_rows_mat(&mut out, xs, ws, m, accumulate);
    for (d, o) in dst.iter_mut().zip(out.iter()) {
        *d = *o;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::nn::linalg::transpose;
    use crate::nn::parallel::Team;

    fn naive(x: ArrayView2<f32>, w: ArrayView2<f32>) -> Array2<f32> {
        Array2::from_shape_fn((x.nrows(), w.ncols()), |(i, j)| {
            (0..x.ncols())
                .map(|k| f64::from(x[[i, k]]) * f64::from(w[[k, j]]))
                .sum::<f64>() as f32
        })
    }

    fn close(a: ArrayView2<f32>, b: ArrayView2<f32>) -> bool {
        a.dim() == b.dim()
            && a.iter()
                .zip(b.iter())
                .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()) * 8.0)
    }

    fn filled(r: usize, c: usize, seed: f32) -> Array2<f32> {
        Array2::from_shape_fn((r, c), |(i, j)| ((i * 7 + j * 13) as f32 * seed).sin())
    }

    fn bits(a: &Array2<f32>) -> Vec<u32> {
        a.iter().map(|v| v.to_bits()).collect()
    }

    /// An output summed as this module promises: through `gemm` (`pieces`), one fused chain
    /// per piece of `k`, the pieces' sums added in order (the first to `dst` when
    /// accumulating); through the few-row kernels, one chain over all of `k`, from `dst`'s
    /// value when accumulating.
    fn reference(
        x: ArrayView2<f32>,
        w: ArrayView2<f32>,
        start: Option<&Array2<f32>>,
        in_pieces: bool,
    ) -> Array2<f32> {
        let k = x.ncols();
        Array2::from_shape_fn((x.nrows(), w.ncols()), |(i, j)| {
            let chain = |from: f32, range: std::ops::Range<usize>| {
                range.fold(from, |acc, p| x[[i, p]].mul_add(w[[p, j]], acc))
            };
            let start = start.map(|s| s[[i, j]]);
            if !in_pieces {
                return chain(start.unwrap_or(0.0), 0..k);
            }
            let mut total = start;
            for piece in pieces(k) {
                let sum = chain(0.0, piece);
                total = Some(total.map_or(sum, |t| t + sum));
            }
            total.unwrap_or(0.0)
        })
    }

    #[test]
    fn pieces_cover_k_in_order_none_longer_than_the_maximum() {
        for k in [1, 2, 3, 511, 512, 513, 784, 1024, 1025, 5000] {
            let all: Vec<_> = pieces(k).collect();
            assert_eq!(all.first().unwrap().start, 0);
            assert_eq!(all.last().unwrap().end, k);
            assert!(all.windows(2).all(|p| p[0].end == p[1].start));
            assert!(all.iter().all(|p| p.len() <= MAX_PIECE && !p.is_empty()));
        }
        assert_eq!(pieces(784).collect::<Vec<_>>(), [0..392, 392..784]);
    }

    #[test]
    fn grids_depend_on_the_shape_only_and_tile_the_outputs() {
        for (m, n, k) in [
            (256, 1024, 1024),
            (128, 256, 784),
            (784, 256, 128),
            (40, 3, 9000),
            (2, 2, 3),
        ] {
            let grid = Grid::of(m, n, k);
            assert!(grid.count() <= MAX_BLOCKS);
            let mut seen = vec![0u8; m * n];
            for b in 0..grid.count() {
                let (rows, cols) = grid.block(b);
                assert!(grid.count() == 1 || (rows.len() >= MIN_SIDE.min(m) && cols.len() >= 2));
                for r in rows {
                    for c in cols.clone() {
                        seen[r * n + c] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&s| s == 1), "{m}×{n}×{k}");
        }
        assert_eq!(Grid::of(256, 1024, 1024).count(), MAX_BLOCKS);
        assert_eq!(Grid::of(32, 64, 128).count(), 1);
    }

    /// Every route (few rows, one column, one strided row, k ≤ 2, `gemm` in pieces, split
    /// across threads) sums each output as [`reference`] does, bit for bit, at every stride.
    #[test]
    fn every_route_sums_in_the_promised_order() {
        let team = Team::new(3, Arc::new(|| {})).unwrap();
        for &(m, k, n) in &[
            (1, 5, 3),
            (7, 1, 4),
            (33, 65, 17),
            (1, 784, 256),
            (300, 1030, 1),
            (17, 2, 40),
            (64, 700, 96),
            (256, 1024, 300),
        ] {
            let x = filled(m, k, 0.3);
            let w = filled(k, n, 0.7);
            let start = filled(m, n, 0.1);
            let xt = x.t().as_standard_layout().into_owned();
            let wt = w.t().as_standard_layout().into_owned();
            assert!(close(
                reference(x.view(), w.view(), None, true).view(),
                naive(x.view(), w.view()).view()
            ));
            for threads in [false, true] {
                let _entered = threads.then(|| team.enter());
                for (xv, wv) in [
                    (x.view(), w.view()),
                    (xt.t(), w.view()),
                    (x.view(), wt.t()),
                    (xt.t(), wt.t()),
                ] {
                    for into_transposed in [false, true] {
                        let contiguous =
                            xv.is_standard_layout() && wv.is_standard_layout() && !into_transposed;
                        let in_pieces = !(m <= FEW_ROWS && contiguous) && m > 1 && n > 1 && k > 2;
                        let what = format!(
                            "{m}×{k}×{n}, strides {:?} {:?}, into a transposed view: {into_transposed}",
                            xv.strides(),
                            wv.strides()
                        );
                        for accumulate in [false, true] {
                            let want = reference(xv, wv, accumulate.then_some(&start), in_pieces);
                            let mut buffer = if into_transposed {
                                start.t().as_standard_layout().into_owned()
                            } else {
                                start.clone()
                            };
                            if !accumulate {
                                buffer.fill(f32::NAN);
                            }
                            let mut out = if into_transposed {
                                buffer.view_mut().reversed_axes()
                            } else {
                                buffer.view_mut()
                            };
                            matmul(out.view_mut(), xv, wv, accumulate);
                            assert_eq!(
                                bits(&out.to_owned()),
                                bits(&want),
                                "{what}, accumulate: {accumulate}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The backward pass used to hand `gemm` a strided view of `W` for `G · Wᵀ`; it now hands
    /// it a transposed copy. Above [`FEW_ROWS`] rows both go through `gemm`, which only copies
    /// the operand differently, so the product keeps its bits (up to `FEW_ROWS` rows the copy,
    /// being contiguous, goes through the one-row kernels instead).
    #[test]
    fn a_transposed_copy_gives_the_strided_views_product_its_bits() {
        for (rows, out, inputs) in [(17, 64, 128), (32, 10, 64), (100, 1030, 40), (256, 96, 300)] {
            let g = filled(rows, out, 0.37);
            let w = filled(inputs, out, 0.91);
            let mut wt = vec![0.0; inputs * out];
            transpose(w.as_slice().unwrap(), inputs, out, &mut wt);
            let wt = ArrayView2::from_shape((out, inputs), &wt).unwrap();
            let (mut strided, mut copied) =
                (Array2::zeros((rows, inputs)), Array2::zeros((rows, inputs)));
            matmul(strided.view_mut(), g.view(), w.t(), false);
            matmul(copied.view_mut(), g.view(), wt, false);
            let bits = |a: &Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&strided),
                bits(&copied),
                "{rows} rows, [{inputs}, {out}]"
            );
        }
    }

    #[test]
    fn packing_the_weights_or_not_gives_the_same_bits() {
        // 64 and 96 rows: packed under gemm's default threshold (8), read in place under ours
        // (16); 128 rows: packed under both. Other tests may run products meanwhile; the
        // threshold changes only where their weights are read from, never their bits.
        let w = filled(784, 256, 0.7);
        gemm_setup();
        for rows in [64, 96, 128] {
            let x = filled(rows, 784, 0.3);
            let product = |threshold| {
                gemm_common::gemm::set_lhs_packing_threshold_single_thread(threshold);
                let mut out = Array2::zeros((rows, 256));
                matmul(out.view_mut(), x.view(), w.view(), false);
                out
            };
            let packed = product(8);
            let ours = product(LHS_PACKING_THRESHOLD);
            assert_eq!(bits(&packed), bits(&ours), "{rows} rows");
        }
    }
}
