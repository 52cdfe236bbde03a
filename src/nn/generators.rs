//! Synthetic datasets: the classic toy problems for watching a network learn.
//!
//! A [`GeneratorSpec`] names one problem and its parameters; [`generate`] validates it, checks
//! its size against a cell budget before allocating anything, and draws every random number from
//! the seed's [`Stream::Data`] stream, so the same spec gives the same dataset, bit for bit.
//!
//! Classification sets have exactly balanced classes (row `i` gets class `i % k`, then the rows
//! are shuffled), so a small set is not lopsided by chance and never comes in class blocks. Class
//! names are `"0"`, `"1"`, …; features are named `x0`, `x1`, …; regression targets are `y`.
//! `noise` is always the standard deviation of Gaussian jitter (on the coordinates of
//! classification sets, on the target of regression sets) and defaults to 0: the clean problem.
//! The jitter is drawn even when it is 0, so raising the noise moves the same points further.

mod normal;
mod shapes;

use serde::{Deserialize, Serialize};

use self::normal::Gaussian;
use self::shapes::Draw;
use super::data::Dataset;
use super::error::{NnError, Result};
use super::rng::{Rng, Stream};

/// Most classes a generator makes: more is a typo, not a toy problem.
const MAX_CLASSES: usize = 1_000;
/// Largest noise, spread or box size accepted; larger values only overflow `f32` features.
const MAX_SCALE: f64 = 1e6;

/// A synthetic dataset to generate; `kind` in JSON selects the variant, every field is optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GeneratorSpec {
    /// Points uniform in `[-1, 1]²`, labelled by `sign(x)·sign(y)`: class 1 where the signs
    /// agree, class 0 where they differ. The smallest problem that needs a hidden layer.
    Xor {
        /// Number of rows (default 200).
        #[serde(default = "default_samples")]
        samples: usize,
        /// Standard deviation of the jitter added to both coordinates (default 0).
        #[serde(default)]
        noise: f64,
        /// Seed of the data stream (default 0).
        #[serde(default)]
        seed: u64,
    },
    /// Two concentric circles, as scikit-learn's `make_circles`: class 0 on the unit circle,
    /// class 1 on a circle of radius `factor`, each evenly spaced in angle.
    Circles {
        /// Number of rows (default 200).
        #[serde(default = "default_samples")]
        samples: usize,
        /// Standard deviation of the jitter added to both coordinates (default 0).
        #[serde(default)]
        noise: f64,
        /// Seed of the data stream (default 0).
        #[serde(default)]
        seed: u64,
        /// Inner radius over outer radius, in (0, 1) (default 0.5).
        #[serde(default = "default_factor")]
        factor: f64,
    },
    /// Two interleaved half circles, as scikit-learn's `make_moons`: class 0 the upper arc of
    /// the unit circle, class 1 the lower arc shifted to `(1, 0.5)`.
    Moons {
        /// Number of rows (default 200).
        #[serde(default = "default_samples")]
        samples: usize,
        /// Standard deviation of the jitter added to both coordinates (default 0).
        #[serde(default)]
        noise: f64,
        /// Seed of the data stream (default 0).
        #[serde(default)]
        seed: u64,
    },
    /// `classes` interleaved spiral arms from the origin to radius 1, as in CS231n and the
    /// TensorFlow Playground; arm `c` starts at angle `2π·c/classes`.
    Spirals {
        /// Number of rows (default 200).
        #[serde(default = "default_samples")]
        samples: usize,
        /// Standard deviation of the jitter added to both coordinates (default 0).
        #[serde(default)]
        noise: f64,
        /// Seed of the data stream (default 0).
        #[serde(default)]
        seed: u64,
        /// Number of arms, one class each, 2 to 1,000 (default 2).
        #[serde(default = "default_two")]
        classes: usize,
        /// Full turns each arm makes, in (0, 100] (default 1).
        #[serde(default = "default_turns")]
        turns: f64,
    },
    /// Gaussian clusters, as scikit-learn's `make_blobs`: one centre per class, uniform in
    /// `[-center_box, center_box]^features`. Also the benchmark set (60,000 × 784 × 10).
    Blobs {
        /// Number of rows (default 200).
        #[serde(default = "default_samples")]
        samples: usize,
        /// Extra jitter on every feature, on top of `cluster_std` (default 0).
        #[serde(default)]
        noise: f64,
        /// Seed of the data stream (default 0).
        #[serde(default)]
        seed: u64,
        /// Number of feature columns, at least 1 (default 2).
        #[serde(default = "default_two")]
        features: usize,
        /// Number of clusters, one class each, 2 to 1,000 (default 3).
        #[serde(default = "default_three")]
        classes: usize,
        /// Standard deviation of every cluster along every axis (default 1).
        #[serde(default = "default_one")]
        cluster_std: f64,
        /// Half the side of the box the centres are drawn in (default 10).
        #[serde(default = "default_center_box")]
        center_box: f64,
    },
    /// Points in `[-1, 1]²` on a `cells × cells` board; class 0 is the colour of the corner
    /// cell at `(-1, -1)`, class 1 the other colour.
    Checkerboard {
        /// Number of rows (default 200).
        #[serde(default = "default_samples")]
        samples: usize,
        /// Standard deviation of the jitter added to both coordinates (default 0).
        #[serde(default)]
        noise: f64,
        /// Seed of the data stream (default 0).
        #[serde(default)]
        seed: u64,
        /// Cells per side, 2 to 100 (default 4).
        #[serde(default = "default_cells")]
        cells: usize,
    },
    /// Regression `y = w·x + noise`: `x` uniform in `[-1, 1]^features`, the weights `w` standard
    /// normal draws from the seed, no intercept.
    RegressionPlane {
        /// Number of rows (default 200).
        #[serde(default = "default_samples")]
        samples: usize,
        /// Standard deviation of the noise added to `y` (default 0).
        #[serde(default)]
        noise: f64,
        /// Seed of the data stream (default 0).
        #[serde(default)]
        seed: u64,
        /// Number of feature columns, at least 1 (default 2).
        #[serde(default = "default_two")]
        features: usize,
    },
    /// 2-D regression on `[-1, 1]²`: `y` is a sum of Gaussian bumps with seeded centres (in
    /// the square) and heights (±0.5 to ±1), plus noise; like the TensorFlow Playground's
    /// "gauss" regression set.
    GaussianBumps {
        /// Number of rows (default 200).
        #[serde(default = "default_samples")]
        samples: usize,
        /// Standard deviation of the noise added to `y` (default 0).
        #[serde(default)]
        noise: f64,
        /// Seed of the data stream (default 0).
        #[serde(default)]
        seed: u64,
        /// Number of bumps, 1 to 100 (default 4).
        #[serde(default = "default_bumps")]
        bumps: usize,
        /// Standard deviation of every bump, 0.01 to 100 (default 0.3).
        #[serde(default = "default_width")]
        width: f64,
    },
}

fn default_samples() -> usize {
    200
}
fn default_two() -> usize {
    2
}
fn default_three() -> usize {
    3
}
fn default_cells() -> usize {
    4
}
fn default_bumps() -> usize {
    4
}
fn default_one() -> f64 {
    1.0
}
fn default_factor() -> f64 {
    0.5
}
fn default_turns() -> f64 {
    1.0
}
fn default_center_box() -> f64 {
    10.0
}
fn default_width() -> f64 {
    0.3
}

impl GeneratorSpec {
    /// Every valid `kind`, in declaration order (for error messages and listings).
    pub fn kinds() -> &'static [&'static str] {
        &[
            "xor",
            "circles",
            "moons",
            "spirals",
            "blobs",
            "checkerboard",
            "regression_plane",
            "gaussian_bumps",
        ]
    }

    /// The `kind` of this spec, as written in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            GeneratorSpec::Xor { .. } => "xor",
            GeneratorSpec::Circles { .. } => "circles",
            GeneratorSpec::Moons { .. } => "moons",
            GeneratorSpec::Spirals { .. } => "spirals",
            GeneratorSpec::Blobs { .. } => "blobs",
            GeneratorSpec::Checkerboard { .. } => "checkerboard",
            GeneratorSpec::RegressionPlane { .. } => "regression_plane",
            GeneratorSpec::GaussianBumps { .. } => "gaussian_bumps",
        }
    }

    /// The fields every variant has: `(samples, noise, seed)`.
    fn common(&self) -> (usize, f64, u64) {
        match *self {
            GeneratorSpec::Xor {
                samples,
                noise,
                seed,
            }
            | GeneratorSpec::Circles {
                samples,
                noise,
                seed,
                ..
            }
            | GeneratorSpec::Moons {
                samples,
                noise,
                seed,
            }
            | GeneratorSpec::Spirals {
                samples,
                noise,
                seed,
                ..
            }
            | GeneratorSpec::Blobs {
                samples,
                noise,
                seed,
                ..
            }
            | GeneratorSpec::Checkerboard {
                samples,
                noise,
                seed,
                ..
            }
            | GeneratorSpec::RegressionPlane {
                samples,
                noise,
                seed,
                ..
            }
            | GeneratorSpec::GaussianBumps {
                samples,
                noise,
                seed,
                ..
            } => (samples, noise, seed),
        }
    }

    /// `(feature columns, classes)`; `classes` is `None` for regression sets (and a given
    /// `classes: 0` is `Some(0)`, to be refused, not taken for regression).
    fn shape(&self) -> (usize, Option<usize>) {
        match *self {
            GeneratorSpec::Spirals { classes, .. } => (2, Some(classes)),
            GeneratorSpec::Blobs {
                features, classes, ..
            } => (features, Some(classes)),
            GeneratorSpec::RegressionPlane { features, .. } => (features, None),
            GeneratorSpec::GaussianBumps { .. } => (2, None),
            _ => (2, Some(2)),
        }
    }

    /// Checks every parameter except the size budget.
    fn validate(&self) -> Result<()> {
        let (samples, noise, _) = self.common();
        let (features, classes) = self.shape();
        real(
            "noise",
            noise,
            (0.0..=MAX_SCALE).contains(&noise),
            "from 0 to 1e6",
        )?;
        count("features", features, 1, usize::MAX)?;
        if let Some(classes) = classes {
            count("classes", classes, 2, MAX_CLASSES)?;
        }
        // A class without rows cannot be learned or scored, so every class gets at least one.
        let min_samples = classes.unwrap_or(1).max(1);
        if samples < min_samples {
            let why = if classes.is_some() {
                format!("at least {min_samples} (one row per class)")
            } else {
                "at least 1".to_string()
            };
            return Err(NnError::invalid(
                "generator.samples",
                format!("must be {why}, got {samples}"),
            ));
        }
        match *self {
            GeneratorSpec::Circles { factor, .. } => {
                real("factor", factor, factor > 0.0 && factor < 1.0, "in (0, 1)")
            }
            GeneratorSpec::Spirals { turns, .. } => {
                real("turns", turns, turns > 0.0 && turns <= 100.0, "in (0, 100]")
            }
            GeneratorSpec::Blobs {
                cluster_std,
                center_box,
                ..
            } => {
                let scale = 0.0..=MAX_SCALE;
                let allowed = "from 0 to 1e6";
                real(
                    "cluster_std",
                    cluster_std,
                    scale.contains(&cluster_std),
                    allowed,
                )?;
                real(
                    "center_box",
                    center_box,
                    scale.contains(&center_box),
                    allowed,
                )
            }
            GeneratorSpec::Checkerboard { cells, .. } => count("cells", cells, 2, 100),
            GeneratorSpec::GaussianBumps { bumps, width, .. } => {
                count("bumps", bumps, 1, 100)?;
                real(
                    "width",
                    width,
                    (0.01..=100.0).contains(&width),
                    "from 0.01 to 100",
                )
            }
            _ => Ok(()),
        }
    }
}

/// `generator.<name>` must lie in `[min, max]`.
fn count(name: &str, value: usize, min: usize, max: usize) -> Result<()> {
    if value < min || value > max {
        let allowed = if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("from {min} to {max}")
        };
        return Err(NnError::invalid(
            format!("generator.{name}"),
            format!("must be {allowed}, got {value}"),
        ));
    }
    Ok(())
}

/// `generator.<name>` must satisfy `ok`, described by `allowed`; NaN never does.
fn real(name: &str, value: f64, ok: bool, allowed: &str) -> Result<()> {
    if !ok || !value.is_finite() {
        return Err(NnError::invalid(
            format!("generator.{name}"),
            format!("must be a finite number {allowed}, got {value}"),
        ));
    }
    Ok(())
}

/// Generates the dataset `spec` describes, refusing (before allocating) any that would hold
/// more than `max_cells` feature and target values.
///
/// Every parameter is checked first; a bad one is [`NnError::Invalid`] with the field
/// `generator.<name>` and a message saying what is allowed and what was given. Classification
/// sets need at least one row per class.
pub fn generate(spec: &GeneratorSpec, max_cells: usize) -> Result<Dataset> {
    spec.validate()?;
    let (samples, noise, seed) = spec.common();
    let (features, classes) = spec.shape();
    let classes = classes.unwrap_or(0);
    let columns = features.checked_add(1);
    match columns.and_then(|c| samples.checked_mul(c)) {
        Some(cells) if cells <= max_cells => {}
        Some(cells) => {
            return Err(NnError::invalid(
                "generator.samples",
                format!(
                    "{samples} samples × {} columns = {cells} values, over the limit of \
                     {max_cells}",
                    features + 1
                ),
            ))
        }
        None => {
            return Err(NnError::invalid(
                "generator.samples",
                format!(
                    "{samples} samples × ({features} features + 1 target) overflows; the limit is \
                     {max_cells} values"
                ),
            ))
        }
    }
    // Blob centres (classes × features) need no check of their own: `validate` made
    // samples ≥ classes, so they are fewer than the row values just allowed.

    let mut draw = Draw {
        rng: Rng::stream(seed, Stream::Data),
        gauss: Gaussian::new(),
    };
    let d = &mut draw;
    match *spec {
        GeneratorSpec::Xor { .. } => shapes::xor(d, samples, noise),
        GeneratorSpec::Circles { factor, .. } => shapes::circles(d, samples, noise, factor),
        GeneratorSpec::Moons { .. } => shapes::moons(d, samples, noise),
        GeneratorSpec::Spirals { classes, turns, .. } => {
            shapes::spirals(d, samples, noise, classes, turns)
        }
        GeneratorSpec::Checkerboard { cells, .. } => shapes::checkerboard(d, samples, noise, cells),
        GeneratorSpec::Blobs {
            cluster_std,
            center_box,
            ..
        } => {
            // Jitter on top of a Gaussian cluster is a wider cluster: one draw, not two.
            let std = cluster_std.hypot(noise);
            shapes::blobs(d, samples, features, classes, std, center_box)
        }
        GeneratorSpec::RegressionPlane { .. } => {
            shapes::regression_plane(d, samples, noise, features)
        }
        GeneratorSpec::GaussianBumps { bumps, width, .. } => {
            shapes::gaussian_bumps(d, samples, noise, bumps, width)
        }
    }
}

#[cfg(test)]
mod tests;
