//! The statistics of a leaderboard: mean, sample standard deviation, the paired t-test and
//! the exact Wilcoxon signed-rank test, written out here (no statistics crate) so that every
//! number the API reports can be traced to a formula in this file.
//!
//! Student's t CDF goes through the regularized incomplete beta function
//! `I_x(a, b)` (Numerical Recipes, 3rd ed., §6.4: Lentz's continued fraction, with the
//! symmetry `I_x(a, b) = 1 − I_{1−x}(b, a)` where the fraction converges slowly), and
//! `ln Γ` through Lanczos' approximation (g = 7, 9 terms), good to ~1e-15 for the
//! half-integer and integer arguments degrees of freedom give.

/// The arithmetic mean, `None` for no values.
#[must_use]
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// The sample standard deviation (divisor `n − 1`), `None` for fewer than two values.
#[must_use]
pub fn sample_std(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = mean(values)?;
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    Some((ss / (values.len() - 1) as f64).sqrt())
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7).
#[must_use]
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    #[allow(clippy::excessive_precision, clippy::unreadable_literal)]
    const C: [f64; 9] = [
        0.999_999_999_999_809_93,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_13,
        -176.615_029_162_140_59,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_571_6e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-15;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=10_000 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// The regularized incomplete beta function `I_x(a, b)` for `a, b > 0`, `0 ≤ x ≤ 1`.
#[must_use]
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// `P(|T| ≥ |t|)` for Student's t with `df` degrees of freedom: `I_{df/(df+t²)}(df/2, 1/2)`.
#[must_use]
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    if t.is_infinite() {
        return 0.0;
    }
    incomplete_beta(df / 2.0, 0.5, df / (df + t * t)).clamp(0.0, 1.0)
}

/// A paired t-test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TTest {
    /// `mean(d) / (sd(d) / √n)`.
    pub statistic: f64,
    /// `n − 1`.
    pub df: usize,
    /// Two-sided.
    pub p_value: f64,
}

/// The paired t-test of `a − b` (pairs in order); `Err` says why it is undefined: fewer than
/// two pairs, or differences without spread.
///
/// # Errors
/// The reason, in words for the API.
pub fn paired_t_test(a: &[f64], b: &[f64]) -> Result<TTest, String> {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    if d.len() < 2 {
        return Err(format!(
            "{} paired runs; a t-test needs at least 2",
            d.len()
        ));
    }
    let (m, s) = (mean(&d).unwrap_or(0.0), sample_std(&d).unwrap_or(0.0));
    // A spread of rounding error only (equal differences computed two ways) is no spread: a
    // t of 1e15 would claim a certainty the data do not have.
    let scale = d.iter().fold(0.0_f64, |acc, x| acc.max(x.abs()));
    if s <= 1e-12 * scale || !s.is_finite() {
        return Err("every paired difference is the same: the t statistic is undefined".into());
    }
    let statistic = m / (s / (d.len() as f64).sqrt());
    let df = d.len() - 1;
    Ok(TTest {
        statistic,
        df,
        p_value: student_t_two_sided(statistic, df as f64),
    })
}

/// An exact Wilcoxon signed-rank test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Wilcoxon {
    /// `min(W+, W−)`, the smaller rank sum.
    pub statistic: f64,
    /// Non-zero differences ranked.
    pub n: usize,
    /// Two-sided: `min(1, 2·P(W+ ≤ min(W+, W−)))` under the exact null distribution.
    pub p_value: f64,
    /// Whether some |differences| were tied (given average ranks): the distribution used is
    /// then the exact one conditional on those ranks.
    pub ties: bool,
    /// Zero differences dropped (Wilcoxon's convention, scipy's `zero_method="wilcox"`).
    pub zeros: usize,
}

/// The exact two-sided Wilcoxon signed-rank test of the differences `a − b`.
///
/// Under the null every sign is ±1 with probability ½ independently, so the distribution of
/// `W+` is computed exactly by dynamic programming over the (doubled, to keep average ranks
/// integral) ranks: `O(n · n(n+1))`, a few milliseconds for the 100 pairs seeds allow.
///
/// # Errors
/// When no non-zero difference is left.
pub fn wilcoxon_exact(a: &[f64], b: &[f64]) -> Result<Wilcoxon, String> {
    let all: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let d: Vec<f64> = all.iter().copied().filter(|v| *v != 0.0).collect();
    let zeros = all.len() - d.len();
    if d.is_empty() {
        return Err("every paired difference is zero: nothing to rank".into());
    }
    let mut order: Vec<usize> = (0..d.len()).collect();
    order.sort_by(|&i, &j| d[i].abs().total_cmp(&d[j].abs()));
    // Doubled average ranks: a tie over positions i..j (0-based) gets i + j + 2.
    let mut rank2 = vec![0usize; d.len()];
    let mut ties = false;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && d[order[j + 1]].abs() == d[order[i]].abs() {
            j += 1;
        }
        ties |= j > i;
        for &k in &order[i..=j] {
            rank2[k] = i + j + 2;
        }
        i = j + 1;
    }
    let total: usize = rank2.iter().sum();
    let plus: usize = d
        .iter()
        .zip(&rank2)
        .filter(|(v, _)| **v > 0.0)
        .map(|(_, r)| r)
        .sum();
    let w = plus.min(total - plus);
    // dist[s] = P(W+ (doubled) = s).
    let mut dist = vec![0.0f64; total + 1];
    dist[0] = 1.0;
    let mut reach = 0;
    for &r in &rank2 {
        reach += r;
        for s in (0..=reach).rev() {
            let with = if s >= r { dist[s - r] } else { 0.0 };
            dist[s] = 0.5 * (dist[s] + with);
        }
    }
    let tail: f64 = dist[..=w].iter().sum();
    Ok(Wilcoxon {
        statistic: w as f64 / 2.0,
        n: d.len(),
        p_value: (2.0 * tail).min(1.0),
        ties,
        zeros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn mean_and_sample_std_match_hand_and_numpy() {
        // By hand: mean 3, squared deviations 4+1+0+1+4 = 10, 10/4 = 2.5.
        close(mean(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap(), 3.0, 0.0);
        close(
            sample_std(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap(),
            2.5f64.sqrt(),
            1e-15,
        );
        // numpy 2 (/tmp/mlp-lab-peers): np.std([.12,.15,.11,.14,.13,.10], ddof=1), np.mean.
        let a = [0.12, 0.15, 0.11, 0.14, 0.13, 0.10];
        close(sample_std(&a).unwrap(), 0.018_708_286_933_869_705, 1e-15);
        close(mean(&a).unwrap(), 0.125, 1e-15);
        assert_eq!(mean(&[]), None);
        assert_eq!(sample_std(&[1.0]), None);
    }

    #[test]
    fn incomplete_beta_and_t_tails_match_scipy() {
        // scipy 1.17.1: scipy.special.betainc(2.5, 0.5, 0.3).
        close(
            incomplete_beta(2.5, 0.5, 0.3),
            0.018_927_124_071_945_658,
            1e-15,
        );
        close(
            incomplete_beta(5.0, 0.5, 10.0 / 12.25),
            0.164_507_326_445_440_1,
            1e-14,
        );
        // By hand: I_x(1, 1) = x; t with 1 df is Cauchy, P(|T| ≥ 1) = 1/2.
        close(incomplete_beta(1.0, 1.0, 0.37), 0.37, 1e-14);
        close(student_t_two_sided(1.0, 1.0), 0.5, 1e-14);
        // By hand: with 2 df, P(|T| ≥ t) = 1 − t/√(2 + t²); t = 2 → 1 − 2/√6.
        close(
            student_t_two_sided(2.0, 2.0),
            1.0 - 2.0 / 6f64.sqrt(),
            1e-14,
        );
        // scipy 1.17.1: 2 * scipy.stats.t.sf(|t|, df). Tolerance 1e-11: scipy's own two routes
        // differ by 3e-12 here (for t = -1.5, df = 10, t.sf gives 0.16450732644254014 and
        // special.betainc(5, 0.5, 10/12.25) gives 0.1645073264454401, as this file does).
        for (t, df, p) in [
            (2.0, 3.0, 0.139_325_968_558_843_05),
            (-1.5, 10.0, 0.164_507_326_442_540_14),
            (0.5, 1.0, 0.704_832_764_699_133_5),
            (4.0, 30.0, 0.000_381_845_636_083_756_4),
        ] {
            close(student_t_two_sided(t, df), p, 1e-11);
        }
    }

    #[test]
    fn paired_t_test_matches_hand_and_scipy() {
        // By hand: d = 1..5, mean 3, sd √2.5, t = 3/(√2.5/√5) = 3/√0.5 = 4.2426…, df 4.
        let t = paired_t_test(&[2.0, 4.0, 6.0, 8.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        close(t.statistic, 3.0 / 0.5f64.sqrt(), 1e-12);
        assert_eq!(t.df, 4);
        // scipy 1.17.1: stats.ttest_1samp([1,2,3,4,5], 0).pvalue.
        close(t.p_value, 0.013_235_599_563_682_69, 1e-12);
        // scipy 1.17.1: stats.ttest_rel(a, b) → (-2.3007075285582936, 0.06971087146303141), df 5.
        let a = [0.12, 0.15, 0.11, 0.14, 0.13, 0.10];
        let b = [0.15, 0.16, 0.14, 0.18, 0.12, 0.19];
        let t = paired_t_test(&a, &b).unwrap();
        close(t.statistic, -2.300_707_528_558_293_6, 1e-12);
        close(t.p_value, 0.069_710_871_463_031_41, 1e-12);
        assert_eq!(t.df, 5);
        assert!(paired_t_test(&[1.0], &[2.0]).is_err());
        assert!(
            paired_t_test(&[1.0, 2.0], &[0.0, 1.0]).is_err(),
            "no spread"
        );
        // 0.3 − 0.1 and 0.7 − 0.5 differ only by rounding (2e-17): still no spread.
        assert!(
            paired_t_test(&[0.3, 0.7], &[0.1, 0.5]).is_err(),
            "rounding is no spread"
        );
    }

    #[test]
    fn wilcoxon_matches_hand_counts_and_scipy() {
        // By hand: all five differences positive, W− = 0; P(W+ = 15) = 1/32, two-sided 2/32.
        // scipy 1.17.1: stats.wilcoxon([1,2,3,4,5], method="exact") → (0.0, 0.0625).
        let w = wilcoxon_exact(&[1.0, 2.0, 3.0, 4.0, 5.0], &[0.0; 5]).unwrap();
        assert_eq!((w.statistic, w.n, w.ties), (0.0, 5, false));
        close(w.p_value, 0.0625, 1e-15);
        // By hand: d = [1,-2,3,4,5,-6,7], W− = 2 + 6 = 8. Subsets of {1..7} with sum ≤ 8:
        // sums 0..8 have 1,1,1,2,2,3,4,5,5 subsets = 24, so p = 2·24/128 = 0.375.
        // scipy 1.17.1: stats.wilcoxon(d, method="exact") → (8.0, 0.375).
        let d = [1.0, -2.0, 3.0, 4.0, 5.0, -6.0, 7.0];
        let w = wilcoxon_exact(&d, &[0.0; 7]).unwrap();
        assert_eq!(w.statistic, 8.0);
        close(w.p_value, 0.375, 1e-15);
        // Ties and a zero: d = [1,1,-2,3,3,3,-4,5] (+ a 0, dropped), average ranks
        // [1.5,1.5,3,5,5,5,7,8], W− = 3 + 7 = 10. scipy 1.17.1: stats.wilcoxon(d,
        // method="exact") → (10.0, 0.3125), and the exact sign-flip permutation test
        // (stats.permutation_test of W+, n_resamples=inf) gives 0.3125 too.
        let d = [1.0, 1.0, -2.0, 3.0, 3.0, 3.0, -4.0, 5.0, 0.0];
        let w = wilcoxon_exact(&d, &[0.0; 9]).unwrap();
        assert_eq!((w.statistic, w.n, w.ties, w.zeros), (10.0, 8, true, 1));
        close(w.p_value, 0.3125, 1e-15);
        assert!(wilcoxon_exact(&[1.0, 2.0], &[1.0, 2.0]).is_err());
    }
}
