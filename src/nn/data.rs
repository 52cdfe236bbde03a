//! Datasets: features, targets, splits and standardization.
//!
//! A [`Dataset`] holds an `f32` feature matrix and one of three kinds of targets: class indices
//! with their names (softmax, or sigmoid for two classes), several 0/1 labels (multi-label
//! sigmoid), or real values (regression). Splits are index lists so that the same seed gives the
//! same split whatever network later trains on it.

use std::collections::{BTreeMap, BTreeSet};

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use super::error::{NnError, Result};
use super::rng::{Rng, Stream};

/// What the targets of a dataset are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// One class per row.
    Classification,
    /// Several independent 0/1 labels per row.
    MultiLabel,
    /// One or several real values per row.
    Regression,
}

/// The targets of a dataset, one entry (or row) per sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// Class indices into `names`.
    Classes {
        /// Per-row class index.
        indices: Vec<u32>,
        /// The label of each class, as the data named it.
        names: Vec<String>,
    },
    /// 0/1 labels, `[rows, labels]`.
    MultiLabel {
        /// The label matrix.
        values: Array2<f32>,
        /// The name of each label column.
        names: Vec<String>,
    },
    /// Real-valued targets, `[rows, outputs]`.
    Values {
        /// The target matrix.
        values: Array2<f32>,
        /// The name of each output column.
        names: Vec<String>,
    },
}

impl Targets {
    /// Class targets from labels as written in the data. Classes are ordered numerically when
    /// every label is a number and lexically otherwise (as scikit-learn orders `classes_`).
    pub fn from_labels<S: AsRef<str>>(labels: &[S]) -> Self {
        Self::from_label_iter(labels.iter().map(AsRef::as_ref))
    }

    /// [`Targets::from_labels`] from an iterator that can be walked twice (once for the
    /// distinct labels, once for each row's index), so that a large upload's labels need not
    /// be collected first.
    pub fn from_label_iter<'a>(labels: impl Iterator<Item = &'a str> + Clone) -> Self {
        // The distinct labels first: a dataset has millions of rows and a handful of classes.
        let distinct: BTreeSet<&str> = labels.clone().collect();
        let mut names: Vec<String> = distinct.into_iter().map(str::to_owned).collect();
        let numeric: Option<Vec<f64>> = names.iter().map(|n| n.trim().parse().ok()).collect();
        if let Some(values) = numeric {
            let mut pairs: Vec<(f64, String)> = values.into_iter().zip(names).collect();
            pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            names = pairs.into_iter().map(|p| p.1).collect();
        }
        let index: BTreeMap<&str, u32> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u32))
            .collect();
        let indices = labels.map(|l| index[l]).collect();
        Targets::Classes { indices, names }
    }

    /// The task these targets pose.
    pub fn task(&self) -> Task {
        match self {
            Targets::Classes { .. } => Task::Classification,
            Targets::MultiLabel { .. } => Task::MultiLabel,
            Targets::Values { .. } => Task::Regression,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes { indices, .. } => indices.len(),
            Targets::MultiLabel { values, .. } | Targets::Values { values, .. } => values.nrows(),
        }
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Class, label or output names.
    pub fn names(&self) -> &[String] {
        match self {
            Targets::Classes { names, .. }
            | Targets::MultiLabel { names, .. }
            | Targets::Values { names, .. } => names,
        }
    }

    /// The targets of the rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Targets {
        match self {
            Targets::Classes { indices, names } => Targets::Classes {
                indices: idx.iter().map(|&i| indices[i]).collect(),
                names: names.clone(),
            },
            Targets::MultiLabel { values, names } => Targets::MultiLabel {
                values: values.select(Axis(0), idx),
                names: names.clone(),
            },
            Targets::Values { values, names } => Targets::Values {
                values: values.select(Axis(0), idx),
                names: names.clone(),
            },
        }
    }
}

/// A feature matrix with its targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `[rows, features]`.
    pub features: Array2<f32>,
    /// One name per feature column.
    pub feature_names: Vec<String>,
    /// One target per row.
    pub targets: Targets,
}

/// Indices of the rows in each part of a split.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// Rows to train on.
    pub train: Vec<usize>,
    /// Rows to validate on each epoch.
    pub validation: Vec<usize>,
    /// Rows held out until the end.
    pub test: Vec<usize>,
}

/// Per-feature statistics of a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    /// Column name.
    pub name: String,
    /// Smallest value.
    pub min: f32,
    /// Largest value.
    pub max: f32,
    /// Mean.
    pub mean: f32,
    /// Population standard deviation.
    pub std: f32,
}

impl Dataset {
    /// A dataset, checked: at least one row and one column, targets for every row, every value
    /// finite. Feature names default to `x0, x1, …`.
    pub fn new(
        features: Array2<f32>,
        feature_names: Option<Vec<String>>,
        targets: Targets,
    ) -> Result<Self> {
        let (rows, cols) = features.dim();
        if rows == 0 {
            return Err(NnError::invalid("features", "the dataset has no rows"));
        }
        if cols == 0 {
            return Err(NnError::invalid("features", "rows have no columns"));
        }
        if targets.len() != rows {
            return Err(NnError::invalid(
                "targets",
                format!("{} targets for {rows} rows of features", targets.len()),
            ));
        }
        let feature_names =
            feature_names.unwrap_or_else(|| (0..cols).map(|j| format!("x{j}")).collect());
        if feature_names.len() != cols {
            return Err(NnError::invalid(
                "feature_names",
                format!("{} names for {cols} feature columns", feature_names.len()),
            ));
        }
        check_finite("features", features.view(), f32::INFINITY)?;
        match &targets {
            Targets::Classes { indices, names } => {
                if names.is_empty() {
                    return Err(NnError::invalid("targets", "no classes"));
                }
                if let Some(bad) = indices.iter().position(|&c| c as usize >= names.len()) {
                    return Err(NnError::invalid(
                        format!("targets[{bad}]"),
                        format!(
                            "class index {} but only {} classes",
                            indices[bad],
                            names.len()
                        ),
                    ));
                }
            }
            Targets::MultiLabel { values, names } => {
                if names.len() != values.ncols() {
                    return Err(NnError::invalid(
                        "targets",
                        "one name per label column needed",
                    ));
                }
                for ((r, c), v) in values.indexed_iter() {
                    if *v != 0.0 && *v != 1.0 {
                        return Err(NnError::BadValue {
                            what: "targets".into(),
                            row: r,
                            column: c,
                            message: format!("multi-label targets must be 0 or 1, got {v}"),
                        });
                    }
                }
            }
            Targets::Values { values, names } => {
                if names.len() != values.ncols() || values.ncols() == 0 {
                    return Err(NnError::invalid(
                        "targets",
                        "one name per output column needed",
                    ));
                }
                check_finite("targets", values.view(), f32::INFINITY)?;
            }
        }
        Ok(Self {
            features,
            feature_names,
            targets,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.features.nrows()
    }

    /// Number of feature columns.
    pub fn n_features(&self) -> usize {
        self.features.ncols()
    }

    /// The task the targets pose.
    pub fn task(&self) -> Task {
        self.targets.task()
    }

    /// Rejects any feature or target value with magnitude above `max_abs`, naming the cell.
    pub fn check_magnitude(&self, max_abs: f32) -> Result<()> {
        check_finite("features", self.features.view(), max_abs)?;
        if let Targets::Values { values, .. } = &self.targets {
            check_finite("targets", values.view(), max_abs)?;
        }
        Ok(())
    }

    /// The rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        Dataset {
            features: self.features.select(Axis(0), idx),
            feature_names: self.feature_names.clone(),
            targets: self.targets.select(idx),
        }
    }

    /// Row counts per class (classification), in class order.
    pub fn class_counts(&self) -> Option<Vec<usize>> {
        match &self.targets {
            Targets::Classes { indices, names } => {
                let mut counts = vec![0; names.len()];
                for &c in indices {
                    counts[c as usize] += 1;
                }
                Some(counts)
            }
            _ => None,
        }
    }

    /// Min, max, mean and standard deviation of every feature column.
    pub fn feature_stats(&self) -> Vec<FeatureStats> {
        self.features
            .axis_iter(Axis(1))
            .zip(&self.feature_names)
            .map(|(col, name)| {
                let n = col.len() as f64;
                let mean = col.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = col.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                FeatureStats {
                    name: name.clone(),
                    min: col.iter().copied().fold(f32::INFINITY, f32::min),
                    max: col.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                    mean: mean as f32,
                    std: var.sqrt() as f32,
                }
            })
            .collect()
    }

    /// Splits the rows into train, validation and test parts, seeded. Classification splits are
    /// stratified: each class contributes the same fractions (rounded), and no part that was
    /// asked for ends up empty while rows are left.
    pub fn split(&self, validation: f64, test: f64, seed: u64) -> Result<Split> {
        for (field, f) in [("validation_split", validation), ("test_split", test)] {
            if !(0.0..1.0).contains(&f) {
                return Err(NnError::invalid(
                    field,
                    format!("must be in [0, 1), got {f}"),
                ));
            }
        }
        if validation + test >= 1.0 {
            return Err(NnError::invalid(
                "validation_split",
                "validation_split + test_split must leave rows to train on",
            ));
        }
        let mut rng = Rng::stream(seed, Stream::Split);
        let groups: Vec<Vec<usize>> = match &self.targets {
            Targets::Classes { indices, names } => {
                let mut g = vec![Vec::new(); names.len()];
                for (i, &c) in indices.iter().enumerate() {
                    g[c as usize].push(i);
                }
                g
            }
            _ => vec![(0..self.rows()).collect()],
        };
        let mut split = Split::default();
        for mut group in groups {
            rng.shuffle(&mut group);
            let n = group.len();
            let n_val = (validation * n as f64).round() as usize;
            let n_test = ((test * n as f64).round() as usize).min(n - n_val.min(n));
            let n_val = n_val.min(n);
            split.validation.extend_from_slice(&group[..n_val]);
            split.test.extend_from_slice(&group[n_val..n_val + n_test]);
            split.train.extend_from_slice(&group[n_val + n_test..]);
        }
        // Tiny classes round to zero; make sure a requested part is not empty.
        for (want, part) in [(validation, 0), (test, 1)] {
            let len = if part == 0 {
                split.validation.len()
            } else {
                split.test.len()
            };
            if want > 0.0 && len == 0 && split.train.len() > 1 {
                let moved = split.train.pop().expect("train has rows");
                if part == 0 {
                    split.validation.push(moved);
                } else {
                    split.test.push(moved);
                }
            }
        }
        if split.train.is_empty() {
            return Err(NnError::invalid(
                "validation_split",
                format!("no rows left to train on out of {}", self.rows()),
            ));
        }
        // Interleave classes so a part is not ordered by class.
        rng.shuffle(&mut split.train);
        rng.shuffle(&mut split.validation);
        rng.shuffle(&mut split.test);
        Ok(split)
    }
}

/// Fails on the first value that is not finite or exceeds `max_abs` in magnitude.
pub fn check_finite(what: &str, values: ArrayView2<f32>, max_abs: f32) -> Result<()> {
    // The common case, all good, is one vectorized pass; the error path then finds the cell.
    let limit = max_abs.min(f32::MAX);
    if let Some(slice) = values.as_slice() {
        if count_outside(slice, limit) == 0 {
            return Ok(());
        }
    }
    for ((row, column), &v) in values.indexed_iter() {
        if !v.is_finite() {
            return Err(NnError::BadValue {
                what: what.into(),
                row,
                column,
                message: format!("{v} is not a finite number"),
            });
        }
        if v.abs() > max_abs {
            return Err(NnError::BadValue {
                what: what.into(),
                row,
                column,
                message: format!("|{v}| exceeds the limit {max_abs}"),
            });
        }
    }
    Ok(())
}

/// How many values are NaN or have magnitude above `limit` (infinities included, since
/// `limit` is finite).
#[allow(clippy::neg_cmp_op_on_partial_ord)] // NaN must count: `!(NaN <= x)` is true
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn count_outside(xs: &[f32], limit: f32) -> u32 {
    let mut bad = 0u32;
    for &v in xs {
        // `!(a <= b)` is true for NaN.
        bad += !(v.abs() <= limit) as u32;
    }
    bad
}

/// Per-feature shift and scale, fitted on the training rows and stored with the model, so that
/// prediction standardizes new inputs exactly as training did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Per-feature mean of the training rows.
    pub mean: Vec<f32>,
    /// Per-feature standard deviation (1 where a feature is constant).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Per-column mean and standard deviation of `x` (the training rows).
    pub fn fit(x: ArrayView2<f32>) -> Self {
        let all: Vec<usize> = (0..x.nrows()).collect();
        Self::fit_rows(x, &all)
    }

    /// Per-column mean and standard deviation of the rows `rows` of `x`, read in place: the
    /// same statistics, bit for bit, as [`Standardizer::fit`] of `x.select(Axis(0), rows)`,
    /// without that copy of the training rows.
    pub fn fit_rows(x: ArrayView2<f32>, rows: &[usize]) -> Self {
        // Row by row, every column at once (the rows are scattered), so each column's sums see
        // its values in the order of `rows`, starting from the start value of `Iterator::sum`
        // (-0.0): the additions of a column-wise `.sum::<f64>()`, one by one.
        let start: f64 = std::iter::empty::<f64>().sum();
        let n = rows.len().max(1) as f64;
        let mut sums = vec![start; x.ncols()];
        for &i in rows {
            for (s, &v) in sums.iter_mut().zip(x.row(i)) {
                *s += v as f64;
            }
        }
        let means: Vec<f64> = sums.iter().map(|s| s / n).collect();
        let mut squares = vec![start; x.ncols()];
        for &i in rows {
            for ((q, &v), m) in squares.iter_mut().zip(x.row(i)).zip(&means) {
                *q += (v as f64 - m).powi(2);
            }
        }
        let std = squares
            .iter()
            .map(|q| {
                let s = (q / n).sqrt();
                if s > 1e-12 {
                    s as f32
                } else {
                    1.0
                }
            })
            .collect();
        Self {
            mean: means.iter().map(|&m| m as f32).collect(),
            std,
        }
    }

    /// The standardizer ready to apply row by row, as the training loop gathers rows.
    pub fn row_scaler(&self) -> RowScaler {
        RowScaler {
            mean: self.mean.clone(),
            inv_std: self.std.iter().map(|s| 1.0 / s).collect(),
        }
    }

    /// Standardizes `x` in place.
    pub fn apply(&self, x: &mut Array2<f32>) {
        let inv: Vec<f32> = self.std.iter().map(|s| 1.0 / s).collect();
        match x.as_slice_mut() {
            // A request's rows and a dataset's features: one vector loop a row.
            Some(xs) if !inv.is_empty() => standardize_rows(xs, &self.mean, &inv),
            _ => {
                for mut row in x.rows_mut() {
                    for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&inv) {
                        *v = (*v - m) * s;
                    }
                }
            }
        }
    }
}

/// `(x − mean)·inv` for each `mean.len()`-wide row of the row-major `xs` (the arithmetic of
/// [`Standardizer::apply`] and [`RowScaler`]).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn standardize_rows(xs: &mut [f32], mean: &[f32], inv: &[f32]) {
    for row in xs.chunks_exact_mut(mean.len()) {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(inv) {
            *v = (*v - m) * s;
        }
    }
}

/// A [`Standardizer`] with `1/std` computed once, applied to one row at a time with the
/// arithmetic of [`Standardizer::apply`]: `(x − mean)·(1/std)` in `f32`.
#[derive(Clone, Debug)]
pub struct RowScaler {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl RowScaler {
    /// Writes the standardized `src` into `dst` (both one row long).
    pub fn scale_into(&self, src: ArrayView1<f32>, dst: &mut [f32]) {
        let (mean, inv) = (&self.mean[..dst.len()], &self.inv_std[..dst.len()]);
        match src.as_slice() {
            Some(src) => {
                for (((d, v), m), s) in dst.iter_mut().zip(src).zip(mean).zip(inv) {
                    *d = (*v - m) * s;
                }
            }
            None => {
                for (((d, v), m), s) in dst.iter_mut().zip(src).zip(mean).zip(inv) {
                    *d = (*v - m) * s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, ShapeBuilder};

    fn labelled(n: usize, classes: usize) -> Dataset {
        let x = Array2::from_shape_fn((n, 2), |(i, j)| (i * 2 + j) as f32);
        let labels: Vec<String> = (0..n).map(|i| format!("c{}", i % classes)).collect();
        Dataset::new(x, None, Targets::from_labels(&labels)).unwrap()
    }

    #[test]
    fn labels_sort_numerically_when_numeric() {
        let t = Targets::from_labels(&["10", "2", "2", "1"]);
        assert_eq!(t.names(), &["1", "2", "10"]);
        let Targets::Classes { indices, .. } = t else {
            panic!()
        };
        assert_eq!(indices, vec![2, 1, 1, 0]);
    }

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let d = labelled(100, 4);
        let s = d.split(0.2, 0.1, 9).unwrap();
        assert_eq!(s.train.len() + s.validation.len() + s.test.len(), 100);
        let mut all: Vec<usize> = [s.train.clone(), s.validation.clone(), s.test.clone()].concat();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100);
        let counts = d.select(&s.validation).class_counts().unwrap();
        assert!(counts.iter().all(|&c| c == 5), "{counts:?}");
        assert_eq!(s, d.split(0.2, 0.1, 9).unwrap());
        assert_ne!(s, d.split(0.2, 0.1, 10).unwrap());
    }

    #[test]
    fn bad_data_is_an_error_naming_the_cell() {
        let x = array![[1.0, 2.0], [3.0, f32::NAN]];
        let err = Dataset::new(x, None, Targets::from_labels(&["a", "b"])).unwrap_err();
        assert!(
            matches!(
                err,
                NnError::BadValue {
                    row: 1,
                    column: 1,
                    ..
                }
            ),
            "{err}"
        );
        let x = array![[1.0, 2.0]];
        assert!(Dataset::new(x, None, Targets::from_labels(&["a", "b"])).is_err());
    }

    #[test]
    fn standardizer_centres_and_scales() {
        let mut x = array![[1.0f32, 5.0], [3.0, 5.0]];
        let s = Standardizer::fit(x.view());
        assert_eq!(s.mean, vec![2.0, 5.0]);
        assert_eq!(s.std, vec![1.0, 1.0]);
        // Stored column by column, the same values come out (the loop for rows that are not
        // contiguous).
        let mut columns = Array2::zeros(x.dim().f());
        columns.assign(&x);
        s.apply(&mut x);
        assert_eq!(x, array![[-1.0, 0.0], [1.0, 0.0]]);
        s.apply(&mut columns);
        assert!(columns.as_slice().is_none());
        assert_eq!(columns, x);
    }

    #[test]
    fn standardizing_rows_in_place_matches_fitting_and_applying_on_a_copy_bit_for_bit() {
        let mut rng = Rng::new(5);
        let x = Array2::from_shape_fn((300, 7), |(_, j)| {
            (rng.uniform_range(-1.0, 1.0) * 10f64.powi(j as i32 - 3) + j as f64) as f32
        });
        let rows: Vec<usize> = (0..300).rev().filter(|i| i % 3 != 0).collect();
        let mut copy = x.select(Axis(0), &rows);
        let on_copy = Standardizer::fit(copy.view());
        let in_place = Standardizer::fit_rows(x.view(), &rows);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&on_copy.mean), bits(&in_place.mean));
        assert_eq!(bits(&on_copy.std), bits(&in_place.std));

        on_copy.apply(&mut copy);
        let scaler = in_place.row_scaler();
        let mut row = vec![0.0; 7];
        for (k, &i) in rows.iter().enumerate() {
            scaler.scale_into(x.row(i), &mut row);
            assert_eq!(bits(&row), bits(copy.row(k).as_slice().unwrap()), "row {i}");
        }
    }
}
