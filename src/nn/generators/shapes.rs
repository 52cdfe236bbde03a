//! Where each kind of generated dataset puts its points; [`super::generate`] has checked the
//! parameters and the size before any of these run.
//!
//! Every function draws in a fixed order (parameters such as centres or weights first, then the
//! shuffled labels, then row by row), so a spec's dataset depends on its seed alone.

use std::f64::consts::{PI, TAU};

use ndarray::Array2;

use super::normal::Gaussian;
use crate::nn::data::{Dataset, Targets};
use crate::nn::error::{NnError, Result};
use crate::nn::rng::Rng;

/// The random source of one generator run.
pub(super) struct Draw {
    /// The seed's data stream.
    pub rng: Rng,
    /// Normal samples drawn from `rng`.
    pub gauss: Gaussian,
}

impl Draw {
    fn normal(&mut self) -> f64 {
        self.gauss.sample(&mut self.rng)
    }
}

/// Class 1 where `x` and `y` share a sign, class 0 where they differ.
pub(super) fn xor(d: &mut Draw, samples: usize, noise: f64) -> Result<Dataset> {
    planar(d, samples, 2, noise, |c, _, _, r| {
        let x = r.uniform_range(-1.0, 1.0);
        let magnitude = r.uniform();
        let sign_x = if x < 0.0 { -1.0 } else { 1.0 };
        let sign_y = if c == 1 { sign_x } else { -sign_x };
        [x, sign_y * magnitude]
    })
}

/// Class 0 on the unit circle, class 1 at radius `factor`, evenly spaced in angle.
pub(super) fn circles(d: &mut Draw, samples: usize, noise: f64, factor: f64) -> Result<Dataset> {
    planar(d, samples, 2, noise, |c, j, n, _| {
        let radius = if c == 0 { 1.0 } else { factor };
        let angle = TAU * j as f64 / n as f64;
        [radius * angle.cos(), radius * angle.sin()]
    })
}

/// The upper unit half circle (class 0) and the lower one shifted to `(1, 0.5)` (class 1).
pub(super) fn moons(d: &mut Draw, samples: usize, noise: f64) -> Result<Dataset> {
    planar(d, samples, 2, noise, |c, j, n, _| {
        // Both ends of each arc are included, as in `make_moons`.
        let t = if n > 1 {
            PI * j as f64 / (n - 1) as f64
        } else {
            0.0
        };
        if c == 0 {
            [t.cos(), t.sin()]
        } else {
            [1.0 - t.cos(), 0.5 - t.sin()]
        }
    })
}

/// `classes` arms turning `turns` times from the origin out to radius 1.
pub(super) fn spirals(
    d: &mut Draw,
    samples: usize,
    noise: f64,
    classes: usize,
    turns: f64,
) -> Result<Dataset> {
    planar(d, samples, classes, noise, |c, j, n, _| {
        // Half a step out, so that no arm starts exactly on the shared origin.
        let radius = (j as f64 + 0.5) / n as f64;
        let angle = TAU * (turns * radius + c as f64 / classes as f64);
        [radius * angle.cos(), radius * angle.sin()]
    })
}

/// A `cells × cells` board over `[-1, 1]²`; class 0 holds the corner cell at `(-1, -1)`.
pub(super) fn checkerboard(
    d: &mut Draw,
    samples: usize,
    noise: f64,
    cells: usize,
) -> Result<Dataset> {
    let side = 2.0 / cells as f64;
    planar(d, samples, 2, noise, |c, _, _, r| {
        let x = r.uniform_range(-1.0, 1.0);
        let column = (((x + 1.0) / side) as usize).min(cells - 1);
        // Rows whose parity makes (column + row) % 2 == c: pick one, then a point in it.
        let parity = (c + column) % 2;
        let choices = (cells - parity).div_ceil(2);
        let row = parity + 2 * r.below(choices);
        [x, -1.0 + (row as f64 + r.uniform()) * side]
    })
}

/// Gaussian clusters around centres uniform in the box; written row by row into one buffer,
/// since this is the benchmark set.
pub(super) fn blobs(
    d: &mut Draw,
    samples: usize,
    features: usize,
    classes: usize,
    std: f64,
    center_box: f64,
) -> Result<Dataset> {
    let centres: Vec<f64> = (0..classes * features)
        .map(|_| d.rng.uniform_range(-center_box, center_box))
        .collect();
    let labels = balanced_labels(samples, classes, &mut d.rng);
    let mut values = Vec::with_capacity(samples * features);
    for &label in &labels {
        let centre = &centres[label as usize * features..][..features];
        values.extend(centre.iter().map(|m| (m + std * d.normal()) as f32));
    }
    let x = Array2::from_shape_vec((samples, features), values)
        .map_err(|e| NnError::invalid("generator", e.to_string()))?;
    Dataset::new(x, None, class_targets(labels, classes))
}

/// `y = w·x + noise` with standard normal weights and no intercept.
pub(super) fn regression_plane(
    d: &mut Draw,
    samples: usize,
    noise: f64,
    features: usize,
) -> Result<Dataset> {
    let weights: Vec<f64> = (0..features).map(|_| d.normal()).collect();
    regression(d, samples, features, noise, |x| {
        x.iter().zip(&weights).map(|(x, w)| x * w).sum()
    })
}

/// `y` = a sum of `bumps` Gaussians of standard deviation `width`, centres in `[-1, 1]²`,
/// heights ±0.5 to ±1, plus noise.
pub(super) fn gaussian_bumps(
    d: &mut Draw,
    samples: usize,
    noise: f64,
    bumps: usize,
    width: f64,
) -> Result<Dataset> {
    let r = &mut d.rng;
    let centres: Vec<[f64; 3]> = (0..bumps)
        .map(|_| {
            let cx = r.uniform_range(-1.0, 1.0);
            let cy = r.uniform_range(-1.0, 1.0);
            let height = r.uniform_range(0.5, 1.0);
            let sign = if r.uniform() < 0.5 { -1.0 } else { 1.0 };
            [cx, cy, sign * height]
        })
        .collect();
    let scale = -0.5 / (width * width);
    regression(d, samples, 2, noise, |x| {
        centres
            .iter()
            .map(|[cx, cy, h]| h * (scale * ((x[0] - cx).powi(2) + (x[1] - cy).powi(2))).exp())
            .sum()
    })
}

/// Row labels `i % classes`, shuffled: exactly balanced and interleaved.
fn balanced_labels(samples: usize, classes: usize, rng: &mut Rng) -> Vec<u32> {
    let mut labels: Vec<u32> = (0..samples).map(|i| (i % classes) as u32).collect();
    rng.shuffle(&mut labels);
    labels
}

/// Class targets named `"0"`, `"1"`, … in numeric order.
fn class_targets(indices: Vec<u32>, classes: usize) -> Targets {
    Targets::Classes {
        indices,
        names: (0..classes).map(|c| c.to_string()).collect(),
    }
}

/// A 2-D classification set. `point(class, ordinal, count, rng)` places the `ordinal`-th of
/// the `count` rows of `class` (ordinals let evenly spaced shapes follow the shuffled order);
/// then both coordinates get `noise`-scaled jitter.
fn planar(
    d: &mut Draw,
    samples: usize,
    classes: usize,
    noise: f64,
    mut point: impl FnMut(usize, usize, usize, &mut Rng) -> [f64; 2],
) -> Result<Dataset> {
    let labels = balanced_labels(samples, classes, &mut d.rng);
    let per_class = |c: usize| samples / classes + usize::from(c < samples % classes);
    let mut seen = vec![0usize; classes];
    let mut x = Array2::<f32>::zeros((samples, 2));
    for (mut row, &label) in x.rows_mut().into_iter().zip(&labels) {
        let c = label as usize;
        let [a, b] = point(c, seen[c], per_class(c), &mut d.rng);
        seen[c] += 1;
        row[0] = (a + noise * d.normal()) as f32;
        row[1] = (b + noise * d.normal()) as f32;
    }
    Dataset::new(x, None, class_targets(labels, classes))
}

/// A regression set: `x` uniform in `[-1, 1]^features`, target `y = f(x) + noise`.
fn regression(
    d: &mut Draw,
    samples: usize,
    features: usize,
    noise: f64,
    f: impl Fn(&[f64]) -> f64,
) -> Result<Dataset> {
    let mut x = Array2::<f32>::zeros((samples, features));
    let mut y = Array2::<f32>::zeros((samples, 1));
    let mut point = vec![0.0; features];
    for (mut row, target) in x.rows_mut().into_iter().zip(y.iter_mut()) {
        for (p, v) in point.iter_mut().zip(row.iter_mut()) {
            // The target is computed from the stored (rounded) features, so it is exact for them.
            *v = d.rng.uniform_range(-1.0, 1.0) as f32;
            *p = f64::from(*v);
        }
        *target = (f(&point) + noise * d.normal()) as f32;
    }
    let targets = Targets::Values {
        values: y,
        names: vec!["y".to_string()],
    };
    Dataset::new(x, None, targets)
}
