//! Fast standard normal samples for the generators: Doornik's ZIGNOR ziggurat.
//!
//! [`Rng::normal`] is Box–Muller: a logarithm, a square root and a cosine per value. A
//! 60,000 × 784 blobs benchmark set needs 47 million values, so the generators use a ziggurat
//! instead, which spends one `u64` and a table lookup on about 99% of draws. Its bits come from
//! the same deterministic [`Rng`], so generated data stay a function of the seed alone.
//!
//! Reference: J. A. Doornik (2005), "An Improved Ziggurat Method to Generate Normal Random
//! Samples", University of Oxford; the constants and the algorithm are his `ZIGNOR` routine.

use crate::nn::rng::Rng;

/// Number of equal-area blocks (one per value of the low 7 bits of a draw).
const BLOCKS: usize = 128;
/// Where the right tail starts, for 128 blocks.
const TAIL: f64 = 3.442_619_855_899;
/// Area of each block, `(R·φ(R) + P(X ≥ R))·√(2π)` for the unnormalised density.
const AREA: f64 = 9.912_563_035_262_17e-3;

/// Ziggurat tables; cheap to build (128 `exp`/`ln`), so each generator run builds its own.
pub(super) struct Gaussian {
    /// Right edges of the blocks; `x[0]` is the virtual edge of the base block, `x[128] = 0`.
    x: [f64; BLOCKS + 1],
    /// `x[i + 1] / x[i]`: below this `|u|` a draw lies inside the block's inner rectangle.
    inner: [f64; BLOCKS],
}

impl Gaussian {
    /// The tables for 128 blocks.
    pub(super) fn new() -> Self {
        let mut x = [0.0; BLOCKS + 1];
        let mut f = (-0.5 * TAIL * TAIL).exp();
        x[0] = AREA / f;
        x[1] = TAIL;
        for i in 2..BLOCKS {
            x[i] = (-2.0 * (AREA / x[i - 1] + f).ln()).sqrt();
            f = (-0.5 * x[i] * x[i]).exp();
        }
        let mut inner = [0.0; BLOCKS];
        for i in 0..BLOCKS {
            inner[i] = x[i + 1] / x[i];
        }
        Self { x, inner }
    }

    /// One standard normal value.
    pub(super) fn sample(&self, rng: &mut Rng) -> f64 {
        loop {
            let bits = rng.next_u64();
            // The top 53 bits give u in [-1, 1); the low 7 (otherwise unused) pick the block.
            let u = 2.0 * ((bits >> 11) as f64 / (1u64 << 53) as f64) - 1.0;
            let i = (bits & 0x7f) as usize;
            if u.abs() < self.inner[i] {
                return u * self.x[i];
            }
            if i == 0 {
                return tail(rng, u < 0.0);
            }
            let x = u * self.x[i];
            let f0 = (-0.5 * (self.x[i] * self.x[i] - x * x)).exp();
            let f1 = (-0.5 * (self.x[i + 1] * self.x[i + 1] - x * x)).exp();
            if f1 + rng.uniform() * (f0 - f1) < 1.0 {
                return x;
            }
        }
    }
}

/// A value beyond `±TAIL` (Marsaglia's tail method).
fn tail(rng: &mut Rng, negative: bool) -> f64 {
    loop {
        // 1 - uniform() lies in (0, 1], so both logarithms are finite.
        let x = (1.0 - rng.uniform()).ln() / TAIL;
        let y = (1.0 - rng.uniform()).ln();
        if -2.0 * y >= x * x {
            return if negative { x - TAIL } else { TAIL - x };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ziggurat_samples_have_the_moments_and_tails_of_a_standard_normal() {
        let gauss = Gaussian::new();
        let mut rng = Rng::new(11);
        let n = 1_000_000;
        let xs: Vec<f64> = (0..n).map(|_| gauss.sample(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.005, "mean {mean}");
        assert!((var - 1.0).abs() < 0.005, "var {var}");
        // P(|Z| > a) = erfc(a / √2), from Python: `math.erfc(a / 2**0.5)`.
        for (a, expected) in [
            (0.5, 0.617_075_08),
            (1.0, 0.317_310_51),
            (2.0, 0.045_500_26),
            (3.0, 0.002_699_80),
        ] {
            let share = xs.iter().filter(|x| x.abs() > a).count() as f64 / n as f64;
            // Five binomial standard errors.
            let tolerance = 5.0 * (expected * (1.0 - expected) / n as f64).sqrt();
            assert!(
                (share - expected).abs() < tolerance,
                "P(|Z| > {a}) = {share}, expected {expected}"
            );
        }
        // Draws past the tail start (|z| > 3.44, about 0.06%) must occur and stay symmetric.
        let right = xs.iter().filter(|&&x| x > TAIL).count();
        let left = xs.iter().filter(|&&x| x < -TAIL).count();
        assert!(right > 200 && left > 200, "tail counts {left} / {right}");
    }
}
