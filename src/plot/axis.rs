//! Axis ranges and tick positions, computed here rather than by plotters so that a linear and
//! a log axis are the same coordinate type (a log axis is a linear axis over `log10(y)` with
//! ticks at whole powers of ten). [`Axis`] is itself the plotters coordinate: plotters'
//! `WithKeyPoints` over an f64 range cannot take a label formatter.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

/// A y axis as drawn: where values go and how ticks read.
#[derive(Clone, Debug)]
pub(super) struct Axis {
    /// The drawn range (in log10 units on a log axis).
    pub lo: f64,
    /// The drawn range's upper end.
    pub hi: f64,
    /// Tick positions, in drawn units.
    pub ticks: Vec<f64>,
    /// Whether values are drawn as `log10(v)`.
    pub log: bool,
    /// Decimals of a linear tick label.
    decimals: usize,
}

impl Axis {
    /// A linear axis over `values` (non-finite ones ignored), padded by 5 %, always including
    /// `include` when given.
    pub fn linear(values: impl IntoIterator<Item = f64>, include: Option<f64>) -> Self {
        let (mut lo, mut hi) = bounds(values.into_iter().chain(include)).unwrap_or((0.0, 1.0));
        if hi - lo < 1e-12 {
            let pad = if lo.abs() > 1e-12 {
                lo.abs() * 0.1
            } else {
                0.5
            };
            lo -= pad;
            hi += pad;
        }
        let pad = (hi - lo) * 0.05;
        Self::fixed(lo - pad, hi + pad)
    }

    /// A linear axis over `lo..hi` exactly.
    pub fn fixed(lo: f64, hi: f64) -> Self {
        let step = nice_step((hi - lo) / 6.0);
        let first = (lo / step).ceil() as i64;
        let last = (hi / step).floor() as i64;
        let ticks = (first..=last).map(|i| i as f64 * step).collect();
        let decimals = (-step.log10().floor()).max(0.0) as usize;
        Self {
            lo,
            hi,
            ticks,
            log: false,
            decimals,
        }
    }

    /// A log axis over the positive finite `values`, from a whole power of ten to another.
    pub fn log(values: impl IntoIterator<Item = f64>) -> Self {
        let positive = values.into_iter().filter(|v| *v > 0.0).map(f64::log10);
        let (lo, hi) = bounds(positive).unwrap_or((-1.0, 0.0));
        let (mut lo, mut hi) = (lo.floor(), hi.ceil());
        if hi <= lo {
            hi = lo + 1.0;
        }
        let span = (hi - lo) as i64;
        let every = (span / 8).max(1);
        lo = lo.min(hi - 1.0);
        let ticks = (lo as i64..=hi as i64)
            .filter(|e| (e - lo as i64) % every == 0)
            .map(|e| e as f64)
            .collect();
        Self {
            lo,
            hi,
            ticks,
            log: true,
            decimals: 0,
        }
    }

    /// Where `v` is drawn, or `None` when it cannot be (non-finite, or ≤ 0 on a log axis).
    pub fn place(&self, v: f64) -> Option<f64> {
        if !v.is_finite() {
            return None;
        }
        if self.log {
            (v > 0.0).then(|| v.log10())
        } else {
            Some(v)
        }
    }

    /// The label of a tick at drawn position `t`.
    pub fn label(&self, t: f64) -> String {
        if self.log {
            let e = t.round() as i64;
            match e {
                0 => "1".into(),
                1 => "10".into(),
                _ => format!("1e{e}"),
            }
        } else {
            // `+ 0.0` turns -0 into 0.
            format!("{:.*}", self.decimals, t + 0.0)
        }
    }

    /// `0..n` with a tick in the middle of each unit (categories).
    pub fn categories(n: usize) -> Self {
        Self {
            lo: 0.0,
            hi: n as f64,
            ticks: (0..n).map(|i| i as f64 + 0.5).collect(),
            log: false,
            decimals: 0,
        }
    }

    /// The plotters coordinate of this axis.
    pub fn coord(&self) -> Self {
        self.clone()
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, (start, end): (i32, i32)) -> i32 {
        let t = (v - self.lo) / (self.hi - self.lo);
        if !t.is_finite() {
            return start;
        }
        start + ((f64::from(end - start) * t).round() as i32)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        // Light (minor) grid lines are not drawn; ticks are the bold points only.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// The smallest and largest finite value, if any.
pub(super) fn bounds(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let base = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * base)
        .find(|s| *s >= raw * 0.999)
        .unwrap_or(10.0 * base)
}
