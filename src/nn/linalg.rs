//! Matrix products and the elementwise kernels of the hot loop.
//!
//! Products go through the pure-Rust `gemm` crate, whose kernels are chosen at run time
//! (AVX-512 where the CPU has it, via its `x86-v4` feature): ndarray's own `dot` reaches about
//! 100 GFLOP/s on one core of an AVX-512 machine, `gemm` about 240. Shipped binaries are built
//! for baseline x86-64, so the elementwise loops here are compiled several times with
//! `multiversion` and the best version is picked once at run time; they are written without
//! branches so that each version vectorizes.
//!
//! A product with a single left row (one-row prediction) does not go through `gemm` at all:
//! with weights stored `[in, out]` row-major, `x·W` is a sum of contiguous weight rows scaled by
//! the inputs, which streams the weights once and needs no packing.

use multiversion::multiversion;
use ndarray::{ArrayView2, ArrayViewMut2};

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
    if m == 1 {
        if let (Some(xs), Some(ws), Some(ds)) = (x.as_slice(), w.as_slice(), dst.as_slice_mut()) {
            vec_mat(ds, xs, ws, accumulate);
            return;
        }
    }
    let [dst_rs, dst_cs] = [dst.strides()[0], dst.strides()[1]];
    let [x_rs, x_cs] = [x.strides()[0], x.strides()[1]];
    let [w_rs, w_cs] = [w.strides()[0], w.strides()[1]];
    // SAFETY: the three views are valid for their shapes and strides, `dst` is borrowed
    // mutably so it aliases neither input, and the shapes were checked above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs,
            dst_rs,
            accumulate,
            x.as_ptr(),
            x_cs,
            x_rs,
            w.as_ptr(),
            w_cs,
            w_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `dst (+)= x · W` for one row `x` and a row-major `W` of `x.len()` rows. Four weight rows at
/// a time, so each pass over `dst` does four multiply-adds per load and store. (`mul_add`
/// compiles to FMA instructions in the AVX2 and AVX-512 versions; only the baseline fallback
/// for CPUs without FMA pays for a software fused multiply-add.)
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn vec_mat(dst: &mut [f32], x: &[f32], w: &[f32], accumulate: bool) {
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

    fn naive(x: ArrayView2<f32>, w: ArrayView2<f32>) -> Array2<f32> {
        Array2::from_shape_fn((x.nrows(), w.ncols()), |(i, j)| {
            (0..x.ncols())
                .map(|k| x[[i, k]] as f64 * w[[k, j]] as f64)
                .sum::<f64>() as f32
        })
    }

    fn close(a: ndarray::ArrayView2<f32>, b: ndarray::ArrayView2<f32>) -> bool {
        a.dim() == b.dim()
            && a.iter()
                .zip(b.iter())
                .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()))
    }

    fn filled(r: usize, c: usize, seed: f32) -> Array2<f32> {
        Array2::from_shape_fn((r, c), |(i, j)| ((i * 7 + j * 13) as f32 * seed).sin())
    }

    #[test]
    fn matmul_matches_naive_for_all_transposes_and_one_row() {
        for &(m, k, n) in &[(1, 5, 3), (7, 1, 4), (33, 65, 17), (1, 784, 256)] {
            let x = filled(m, k, 0.3);
            let w = filled(k, n, 0.7);
            let want = naive(x.view(), w.view());
            let mut got = Array2::zeros((m, n));
            matmul(got.view_mut(), x.view(), w.view(), false);
            assert!(close(got.view(), want.view()), "{m}x{k}x{n}");
            // transposed operands and destination, accumulating twice
            let xt = x.t().to_owned();
            let wt = w.t().to_owned();
            let mut got_t = Array2::zeros((n, m));
            matmul(got_t.view_mut().reversed_axes(), xt.t(), wt.t(), false);
            matmul(got_t.view_mut().reversed_axes(), xt.t(), wt.t(), true);
            assert!(
                close(got_t.t(), (&want * 2.0).view()),
                "{m}x{k}x{n} transposed"
            );
        }
    }

    #[test]
    fn sum_squares_is_exact_enough_for_long_vectors() {
        let xs = vec![0.1f32; 100_003];
        let want = 100_003.0 * (0.1f32 as f64).powi(2);
        assert!((sum_squares(&xs) - want).abs() / want < 1e-5);
    }
}
