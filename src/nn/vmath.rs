//! Elementary functions (`exp`, `tanh`, `ln_1p`, the normal CDF) that loops over slices turn
//! into vector code.
//!
//! `f32::exp` and its relatives are calls into libm, one element at a time: a network of
//! tanh, GELU or softplus units trained about three times slower than the same network of
//! ReLUs (W1 64-128-64-10, batch 32, `nn-bench`), the activations taking more time than the
//! matrix products. These are branch-free and call nothing: range reduction, a polynomial,
//! and an exponent built from bits, with the special cases chosen by selects, so that LLVM
//! vectorizes the loops that call them (`#[inline(always)]`) in each `multiversion` target.
//!
//! They use the polynomials of Cephes (S. L. Moshier, `expf.c`, `tanhf.c`, `logf.c`), which
//! were fitted for evaluation without fused multiply-adds; written with plain `*` and `+`
//! (Rust never contracts them into FMAs), every target computes the same bits. Accuracy,
//! checked by the tests against `f64` over the whole range (the worst case found in
//! brackets): `exp` within 1 ulp (0.94), `tanh` and `ln_1p` within 1.5 ulp (1.30, 1.14),
//! `sigmoid` within 2.5 ulp (2.19), `normal_cdf` within 3e-7 absolute (the Numerical Recipes
//! fit it uses is good to 1.2e-7). NaN in gives NaN out.

/// 1.5·2^23: adding it to a float of magnitude below 2^22 rounds it to an integer (ties to
/// even), which then sits in the low bits of the sum's mantissa.
const ROUND: f32 = 12_582_912.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two: the first, 355/512, has 9 significant bits, so `n · LN2_HI` is exact
/// for every exponent `n` that `exp` meets, and the reduction loses nothing.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `2^n` for `n` in -126..=127, from the bits of the exponent field.
#[inline(always)]
fn pow2(n: i32) -> f32 {
    f32::from_bits((n.wrapping_add(127) as u32).wrapping_shl(23))
}

/// `e^x`, within 1 ulp; subnormal results are rounded once, `x` > 88.73 gives +∞ and
/// `x` < -103.98 gives 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Beyond these bounds the result is 0 or +∞ anyway; clamping keeps `n` in range. The
    // comparisons are false for NaN, which passes through.
    let x = if x < -104.0 { -104.0 } else { x };
    let x = if x > 89.0 { 89.0 } else { x };
    // x = n·ln 2 + r, |r| ≤ ln 2 / 2 (up to the rounding of x·log2 e).
    let k = x * LOG2E + ROUND;
    let n = k - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = ((((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 5e-1)
        * (r * r)
        + r)
        + 1.0;
    // n in -150..=129: two factors of 2^(n/2), each a normal float, so that p · 2^n rounds
    // once even when it is subnormal, and overflows to +∞ exactly when it should.
    let n = (k.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let half = n >> 1;
    p * pow2(half) * pow2(n - half)
}

/// The logistic function `1 / (1 + e^-x)`: exactly 0 below x ≈ -88.7 (where `e^-x` is +∞)
/// and 1 from x ≈ 17.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x`, within 1.5 ulp: an odd polynomial below |x| = 0.625, `1 - 2 / (e^2|x| + 1)` above.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328e-1)
            * z
            * x
            + x;
    // tanh x rounds to 1 from x ≈ 9.01; the bound keeps e^2|x| finite. NaN fails both
    // comparisons.
    let a = if a > 10.0 { 10.0 } else { a };
    let large = 1.0 - 2.0 / (exp(a + a) + 1.0);
    // The sign of x, also for -0 (where the polynomial's x + x·(…) gives +0).
    (if a < 0.625 { small } else { large }).copysign(x)
}

/// `ln(1 + t)` for `t ≥ 0` (as it appears in softplus and binary cross-entropy, with
/// `t = e^-|z|`), within 1.5 ulp.
#[inline(always)]
pub fn ln_1p(t: f32) -> f32 {
    let u = 1.0 + t;
    // u = m · 2^e with m in [√½, √2): ln u = ln m + e·ln 2, ln m from f = m - 1.
    let bits = u.to_bits();
    let e = ((bits >> 23) as i32).wrapping_sub(127);
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let high = m > std::f32::consts::SQRT_2;
    let m = if high { 0.5 * m } else { m };
    let e = (if high { e + 1 } else { e }) as f32;
    let f = m - 1.0;
    let z = f * f;
    let y = ((((((((7.037_683_6e-2 * f - 1.151_461e-1) * f + 1.167_699_9e-1) * f
        - 1.242_014_1e-1)
        * f
        + 1.424_932_3e-1)
        * f
        - 1.666_805_8e-1)
        * f
        + 2.000_071_4e-1)
        * f
        - 2.499_999_4e-1)
        * f
        + 3.333_333e-1)
        * f
        * z;
    let y = y + e * LN2_LO - 0.5 * z;
    let ln_u = (f + y) + e * LN2_HI;
    // 1 + t rounded away the low bits of t: ln(1 + t) = ln u + (t - (u - 1)) / u to first
    // order (and t itself when u rounded to 1).
    ln_u + (t - (u - 1.0)) / u
}

/// The standard normal CDF Φ(x) = (1 + erf(x/√2)) / 2, within 3e-7: Numerical Recipes'
/// erfc fit, `erfc z = t·exp(-z² + P(t))` with `t = 1/(1 + z/2)`, taken on the side where it
/// needs no subtraction, so that Φ keeps its relative accuracy far in the lower tail.
#[inline(always)]
pub fn normal_cdf(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let erfc = t * exp(-z * z - 1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204
                                + t * (1.488_515_9 + t * (-0.822_152_2 + t * 0.170_872_77)))))))));
    if x < 0.0 {
        0.5 * erfc
    } else {
        1.0 - 0.5 * erfc
    }
}

/// erf in `f64`, the reference the `f32` kernels are checked against, with |error| < 1.2e-7 (Numerical Recipes, 3rd ed., `erfccheb`-style fit).
pub fn erf_f64(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        1.0 - r
    } else {
        r - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `step`-th float between `lo` and `hi` (by bit pattern, on each side of zero),
    /// and the bounds themselves.
    fn floats(lo: f32, hi: f32, step: u32) -> Vec<f32> {
        let mut v = vec![lo, hi, 0.0, -0.0];
        let side = |from: f32, to: f32, v: &mut Vec<f32>| {
            let (a, b) = (from.to_bits(), to.to_bits());
            v.extend(
                (a.min(b)..=a.max(b))
                    .step_by(step as usize)
                    .map(f32::from_bits),
            );
        };
        if hi > 0.0 {
            side(f32::MIN_POSITIVE / 4.0, hi, &mut v);
        }
        if lo < 0.0 {
            side(-f32::MIN_POSITIVE / 4.0, lo, &mut v);
        }
        v
    }

    /// The distance from `got` to `want` in units in the last place of the `f32` nearest to
    /// `want` (subnormal ulps below 2^-126).
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        if w == 0.0 {
            return (got as f64 - want).abs() / f64::from(f32::from_bits(1));
        }
        let ulp = if w.is_infinite() {
            f64::from(f32::MAX) - f64::from(f32::from_bits(f32::MAX.to_bits() - 1))
        } else {
            let next = f32::from_bits(w.abs().to_bits() + 1);
            f64::from(next) - f64::from(w.abs())
        };
        if got.is_infinite() && w.is_infinite() && got == w {
            return 0.0;
        }
        (got as f64 - want).abs() / ulp
    }

    fn worst(f: impl Fn(f32) -> f32, reference: impl Fn(f64) -> f64, xs: &[f32]) -> (f64, f32) {
        xs.iter()
            .map(|&x| (ulps(f(x), reference(x as f64)), x))
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    }

    #[test]
    fn exp_is_within_one_ulp_everywhere_including_subnormal_results() {
        let (err, at) = worst(exp, f64::exp, &floats(-103.9, 88.72, 1009));
        assert!(err <= 1.0, "exp: {err} ulp at {at}");
        assert_eq!(LN2_HI, 355.0 / 512.0);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(88.73), f32::INFINITY);
        assert_eq!(exp(1e30), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(-104.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        // The largest finite result, the first that overflows, and the smallest subnormal one
        // on both sides of its rounding boundary (e^x in f64, rounded: numpy).
        assert_eq!(exp(88.722_83), 3.402_798_5e38);
        assert_eq!(exp(88.722_84), f32::INFINITY);
        assert_eq!(exp(-103.27), f32::from_bits(1));
        assert_eq!(exp(-103.97), f32::from_bits(1));
    }

    #[test]
    fn tanh_is_within_one_and_a_half_ulp_and_odd() {
        let (err, at) = worst(tanh, f64::tanh, &floats(-12.0, 12.0, 1009));
        assert!(err <= 1.5, "tanh: {err} ulp at {at}");
        // Densely where the two formulas meet, at |x| = 0.625.
        let (err, at) = worst(tanh, f64::tanh, &floats(0.5, 0.75, 7));
        assert!(err <= 1.5, "tanh: {err} ulp at {at}");
        for x in floats(-12.0, 12.0, 10_007) {
            assert_eq!(
                tanh(-x).to_bits(),
                (-tanh(x)).to_bits(),
                "tanh is odd at {x}"
            );
        }
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh(1e-30), 1e-30);
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn ln_1p_is_within_one_and_a_half_ulp() {
        let (err, at) = worst(ln_1p, f64::ln_1p, &floats(0.0, 1.0, 1009));
        assert!(err <= 1.5, "ln_1p: {err} ulp at {at}");
        // Also beyond it (u up to 2^20).
        let (err, at) = worst(ln_1p, f64::ln_1p, &floats(0.0, 1e6, 10_007));
        assert!(err <= 1.5, "ln_1p: {err} ulp at {at}");
        assert_eq!(ln_1p(0.0), 0.0);
        assert_eq!(ln_1p(1e-30), 1e-30);
        assert!(ln_1p(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_reaches_its_limits_without_nan() {
        let (err, at) = worst(
            sigmoid,
            |x| 1.0 / (1.0 + (-x).exp()),
            &floats(-80.0, 20.0, 1009),
        );
        assert!(err <= 2.5, "sigmoid: {err} ulp at {at}");
        assert_eq!(sigmoid(-100.0), 0.0);
        assert_eq!(sigmoid(f32::NEG_INFINITY), 0.0);
        assert_eq!(sigmoid(20.0), 1.0);
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert!(sigmoid(f32::NAN).is_nan());
    }

    #[test]
    fn normal_cdf_matches_the_f64_fit_and_keeps_the_lower_tail() {
        let phi = |x: f64| 0.5 * (1.0 + erf_f64(x / std::f64::consts::SQRT_2));
        for x in floats(-10.0, 10.0, 2003) {
            let (got, want) = (normal_cdf(x) as f64, phi(x as f64));
            assert!((got - want).abs() <= 3e-7, "Φ({x}) = {got}, want {want}");
        }
        // In the lower tail Φ keeps its relative accuracy (Φ(-5) = 2.8665157e-7,
        // Φ(-9) = 1.1285884e-19: scipy.stats.norm.cdf). The fit is good to 1.2e-7 relative
        // in erfc; the f32 roundings of the exponent, about -x²/2, add about x² · 1e-7.
        for (x, want) in [(-5.0f32, 2.866_515_7e-7f64), (-9.0, 1.128_588_4e-19)] {
            let got = normal_cdf(x) as f64;
            let tolerance = 2e-7 + (x * x) as f64 * 1e-7;
            assert!(
                (got / want - 1.0).abs() < tolerance,
                "Φ({x}) = {got:e}, want {want:e}"
            );
        }
        assert_eq!(normal_cdf(f32::NEG_INFINITY), 0.0);
        assert_eq!(normal_cdf(f32::INFINITY), 1.0);
        assert!(normal_cdf(f32::NAN).is_nan());
    }
}
