//! Output heads: the last layer's nonlinearity fused with its loss, and the metrics they imply.
//!
//! | head | loss | targets | metrics |
//! |---|---|---|---|
//! | `softmax` | categorical cross-entropy (log-sum-exp stable) | class indices | accuracy |
//! | `sigmoid` | binary cross-entropy from logits | two classes, or 0/1 labels | accuracy (per label) |
//! | `identity` | mean squared error | real values | R², MAE |
//!
//! Losses are means as PyTorch computes them: cross-entropy over rows, BCE and MSE over every
//! element. Gradients are taken of the logits, so the head never divides by a probability.

use ndarray::{ArrayView2, ArrayViewMut2};
use serde::{Deserialize, Serialize};

use super::data::Task;
use super::{linalg, vmath};

/// The output layer's nonlinearity, which decides the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// Class probabilities; cross-entropy on class indices.
    Softmax,
    /// Independent probabilities; binary cross-entropy.
    Sigmoid,
    /// Real values; mean squared error.
    Identity,
}

/// The names accepted for [`Head`].
pub const HEAD_NAMES: &[&str] = &["softmax", "sigmoid", "identity"];

/// The targets of one batch, borrowed from the training buffers.
#[derive(Clone, Copy, Debug)]
pub enum BatchTargets<'a> {
    /// One class index per row.
    Classes(&'a [u32]),
    /// One row of real values (or 0/1 labels) per row.
    Dense(ArrayView2<'a, f32>),
}

impl Head {
    /// Whether this head classifies (accuracy) or regresses (R², MAE).
    pub fn is_classifier(&self) -> bool {
        !matches!(self, Head::Identity)
    }

    /// Checks that this head with `outputs` units can learn `task` with `classes` classes or
    /// target columns; the message says what would fit.
    pub fn check_task(&self, outputs: usize, task: Task, columns: usize) -> Result<(), String> {
        match (self, task) {
            (Head::Softmax, Task::Classification) if outputs == columns => Ok(()),
            (Head::Softmax, Task::Classification) => Err(format!(
                "a softmax head needs one output per class: the data has {columns} classes, the \
                 model {outputs} outputs"
            )),
            (Head::Sigmoid, Task::Classification) if columns == 2 && outputs == 1 => Ok(()),
            (Head::Sigmoid, Task::Classification) => Err(format!(
                "a sigmoid head classifies two classes with one output (the data has {columns} \
                 classes, the model {outputs} outputs); use softmax for more classes"
            )),
            (Head::Sigmoid, Task::MultiLabel) if outputs == columns => Ok(()),
            (Head::Identity, Task::Regression) if outputs == columns => Ok(()),
            (Head::Sigmoid, Task::MultiLabel) | (Head::Identity, Task::Regression) => Err(format!(
                "the data has {columns} target columns, the model {outputs} outputs"
            )),
            (Head::Identity, _) => Err(
                "an identity head regresses real values; this dataset has class labels (use \
                 softmax or sigmoid)"
                    .into(),
            ),
            (_, Task::Regression) => Err(
                "this dataset has real-valued targets; use output \"identity\" to regress them"
                    .into(),
            ),
            (Head::Softmax, Task::MultiLabel) => Err(
                "multi-label targets need output \"sigmoid\" (one independent probability per \
                 label)"
                    .into(),
            ),
        }
    }

    /// Computes the batch's mean loss gradient into `grad` (same shape as `logits`) and adds
    /// the batch to `acc`. Rows are weighted `1/rows`, so the gradient is of the batch mean.
    pub fn loss_and_grad(
        &self,
        logits: ArrayView2<f32>,
        targets: BatchTargets,
        mut grad: ArrayViewMut2<f32>,
        acc: &mut MetricAccumulator,
    ) {
        let rows = logits.nrows();
        let cols = logits.ncols();
        let zs = logits.as_slice().expect("logits are contiguous");
        let gs = grad.as_slice_mut().expect("gradient buffer is contiguous");
        match (self, targets) {
            (Head::Softmax, BatchTargets::Classes(ys)) => {
                let inv = 1.0 / rows as f32;
                gs.copy_from_slice(zs);
                softmax_numerators(gs, cols);
                for ((z, g), &y) in zs.chunks_exact(cols).zip(gs.chunks_exact_mut(cols)).zip(ys) {
                    let (max, argmax) = max_and_argmax(z);
                    let sum: f32 = g.iter().sum();
                    let s = inv / sum;
                    g.iter_mut().for_each(|gi| *gi *= s);
                    g[y as usize] -= inv;
                    acc.loss_sum += (max + sum.ln() - z[y as usize]) as f64;
                    acc.correct += (argmax == y as usize) as u64 as f64;
                }
                acc.count += rows;
                acc.label_count += rows;
            }
            (Head::Sigmoid, BatchTargets::Classes(ys)) => {
                let inv = 1.0 / rows as f32;
                for ((&z, g), &y) in zs.iter().zip(gs.iter_mut()).zip(ys) {
                    let y = y as f32;
                    acc.loss_sum += bce_with_logits(z, y) as f64;
                    *g = (vmath::sigmoid(z) - y) * inv;
                    acc.correct += ((z > 0.0) == (y > 0.5)) as u64 as f64;
                }
                acc.count += rows;
                acc.label_count += rows;
            }
            (Head::Sigmoid, BatchTargets::Dense(ys)) => {
                let ys = ys.as_slice().expect("targets are contiguous");
                let inv = 1.0 / (rows * cols) as f32;
                let mut loss = 0.0f64;
                for ((&z, g), &y) in zs.iter().zip(gs.iter_mut()).zip(ys) {
                    loss += bce_with_logits(z, y) as f64;
                    *g = (vmath::sigmoid(z) - y) * inv;
                    acc.correct += ((z > 0.0) == (y > 0.5)) as u64 as f64;
                }
                // Mean over labels per row, so the epoch loss is a per-row mean like the others.
                acc.loss_sum += loss / cols as f64;
                acc.count += rows;
                acc.label_count += rows * cols;
            }
            (Head::Identity, BatchTargets::Dense(ys)) => {
                let ys = ys.as_slice().expect("targets are contiguous");
                let scale = 2.0 / (rows * cols) as f32;
                for (g, (&z, &y)) in gs.iter_mut().zip(zs.iter().zip(ys)) {
                    *g = (z - y) * scale;
                }
                acc.add_regression(zs, ys, cols);
            }
            (head, _) => unreachable!("{head:?} head with mismatched targets; checked by fit"),
        }
    }

    /// Adds a batch's loss and metrics to `acc` without a gradient (evaluation).
    pub fn evaluate(
        &self,
        logits: ArrayView2<f32>,
        targets: BatchTargets,
        acc: &mut MetricAccumulator,
    ) {
        let rows = logits.nrows();
        let cols = logits.ncols();
        let zs = logits.as_slice().expect("logits are contiguous");
        match (self, targets) {
            (Head::Softmax, BatchTargets::Classes(ys)) => {
                for (z, &y) in zs.chunks_exact(cols).zip(ys) {
                    let (lse, argmax) = log_sum_exp(z);
                    acc.loss_sum += (lse - z[y as usize]) as f64;
                    acc.correct += (argmax == y as usize) as u64 as f64;
                }
                acc.count += rows;
                acc.label_count += rows;
            }
            (Head::Sigmoid, BatchTargets::Classes(ys)) => {
                for (&z, &y) in zs.iter().zip(ys) {
                    acc.loss_sum += bce_with_logits(z, y as f32) as f64;
                    acc.correct += ((z > 0.0) == (y == 1)) as u64 as f64;
                }
                acc.count += rows;
                acc.label_count += rows;
            }
            (Head::Sigmoid, BatchTargets::Dense(ys)) => {
                let ys = ys.as_slice().expect("targets are contiguous");
                let mut loss = 0.0f64;
                for (&z, &y) in zs.iter().zip(ys) {
                    loss += bce_with_logits(z, y) as f64;
                    acc.correct += ((z > 0.0) == (y > 0.5)) as u64 as f64;
                }
                acc.loss_sum += loss / cols as f64;
                acc.count += rows;
                acc.label_count += rows * cols;
            }
            (Head::Identity, BatchTargets::Dense(ys)) => {
                let ys = ys.as_slice().expect("targets are contiguous");
                acc.add_regression(zs, ys, cols);
            }
            (head, _) => unreachable!("{head:?} head with mismatched targets; checked by fit"),
        }
    }

    /// Turns logits into what prediction returns: probabilities or values.
    pub fn activate(&self, mut logits: ArrayViewMut2<f32>) {
        match self {
            Head::Softmax => {
                // As training computes them (`loss_and_grad`); row by row, the same bits
                // whatever the batch.
                let cols = logits.ncols();
                let probabilities = |zs: &mut [f32]| {
                    softmax_numerators(zs, cols);
                    for z in zs.chunks_exact_mut(cols) {
                        let sum: f32 = z.iter().sum();
                        z.iter_mut().for_each(|v| *v /= sum);
                    }
                };
                match logits.as_slice_mut() {
                    Some(zs) => probabilities(zs),
                    None => {
                        let mut owned = logits.to_owned();
                        probabilities(owned.as_slice_mut().expect("a new array is contiguous"));
                        logits.assign(&owned);
                    }
                }
            }
            Head::Sigmoid => logits.mapv_inplace(vmath::sigmoid),
            Head::Identity => {}
        }
    }
}

/// `-[y ln σ(z) + (1-y) ln(1-σ(z))]` without forming σ(z): `max(z,0) - z·y + ln(1+e^-|z|)`.
fn bce_with_logits(z: f32, y: f32) -> f32 {
    z.max(0.0) - z * y + vmath::ln_1p(vmath::exp(-z.abs()))
}

/// The maximum of `z` and the index of its first occurrence.
fn max_and_argmax(z: &[f32]) -> (f32, usize) {
    let (mut argmax, mut max) = (0, f32::NEG_INFINITY);
    for (i, &v) in z.iter().enumerate() {
        if v > max {
            max = v;
            argmax = i;
        }
    }
    (max, argmax)
}

/// `ln Σ e^z` shifted by the maximum, and the index of the maximum.
fn log_sum_exp(z: &[f32]) -> (f32, usize) {
    let (max, argmax) = max_and_argmax(z);
    let sum: f32 = z.iter().map(|&v| vmath::exp(v - max)).sum();
    (max + sum.ln(), argmax)
}

/// Softmax numerators in place: each `cols`-wide row of `x` (logits) becomes `e^(x - max)`,
/// the exponentials in one vector loop over the whole batch rather than row by row (ten
/// columns make a poor vector). Each row's sum is then at least 1, its maximum's own term.
fn softmax_numerators(x: &mut [f32], cols: usize) {
    for row in x.chunks_exact_mut(cols) {
        let (max, _) = max_and_argmax(row);
        row.iter_mut().for_each(|v| *v -= max);
    }
    linalg::exp_in_place(x);
}

/// Running sums from which a pass's metrics are computed.
#[derive(Clone, Debug, Default)]
pub struct MetricAccumulator {
    /// Sum of per-row losses.
    pub loss_sum: f64,
    /// Rows seen.
    pub count: usize,
    /// Correct labels (classification).
    pub correct: f64,
    /// Labels judged (rows × labels for multi-label).
    pub label_count: usize,
    /// Per output: Σ residual², Σ |residual|, Σ y, Σ y² (regression).
    reg: Vec<[f64; 4]>,
}

/// Loss and quality of a model on some rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean loss per row.
    pub loss: f64,
    /// Fraction of correct labels (classification).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub accuracy: Option<f64>,
    /// Coefficient of determination, averaged over outputs (regression).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub r2: Option<f64>,
    /// Mean absolute error (regression).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mae: Option<f64>,
}

impl MetricAccumulator {
    fn add_regression(&mut self, zs: &[f32], ys: &[f32], cols: usize) {
        if self.reg.len() != cols {
            self.reg = vec![[0.0; 4]; cols];
        }
        let mut loss = 0.0f64;
        for (z, y) in zs.chunks_exact(cols).zip(ys.chunks_exact(cols)) {
            for ((r, &zi), &yi) in self.reg.iter_mut().zip(z).zip(y) {
                let e = (zi - yi) as f64;
                loss += e * e;
                r[0] += e * e;
                r[1] += e.abs();
                r[2] += yi as f64;
                r[3] += (yi as f64) * (yi as f64);
            }
        }
        self.loss_sum += loss / cols as f64;
        self.count += zs.len() / cols;
    }

    /// The metrics of everything added (zeros when nothing was).
    pub fn finish(&self, head: Head) -> Metrics {
        let n = self.count.max(1) as f64;
        let mut m = Metrics {
            loss: self.loss_sum / n,
            ..Metrics::default()
        };
        if head.is_classifier() {
            m.accuracy = Some(self.correct / self.label_count.max(1) as f64);
        } else if !self.reg.is_empty() {
            let cols = self.reg.len() as f64;
            let r2 = self
                .reg
                .iter()
                .map(|r| {
                    let ss_tot = r[3] - r[2] * r[2] / n;
                    // A constant target has no variance to explain (scikit-learn returns 1 for
                    // a perfect fit and 0 otherwise in that case).
                    if ss_tot <= 1e-12 {
                        if r[0] <= 1e-12 {
                            1.0
                        } else {
                            0.0
                        }
                    } else {
                        1.0 - r[0] / ss_tot
                    }
                })
                .sum::<f64>()
                / cols;
            m.r2 = Some(r2);
            m.mae = Some(self.reg.iter().map(|r| r[1]).sum::<f64>() / (n * cols));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    /// Loss of the batch as `evaluate` computes it, in f64 sums of f32 terms.
    fn mean_loss(head: Head, z: &Array2<f32>, t: BatchTargets) -> f64 {
        let mut acc = MetricAccumulator::default();
        head.evaluate(z.view(), t, &mut acc);
        // The gradient is of the batch mean *per element* for BCE/MSE; evaluate reports per
        // row (mean over labels), which for a batch is the same mean.
        acc.loss_sum / acc.count as f64
    }

    fn check_gradient(head: Head, z: Array2<f32>, t: BatchTargets) {
        let mut grad = Array2::zeros(z.dim());
        head.loss_and_grad(
            z.view(),
            t,
            grad.view_mut(),
            &mut MetricAccumulator::default(),
        );
        // f32 logits, f64 loss sums: h = 1e-2 keeps rounding (~1e-7/h) and truncation (~h²)
        // both below 1e-4.
        let h = 1e-2f32;
        for idx in 0..z.len() {
            let (i, j) = (idx / z.ncols(), idx % z.ncols());
            let (mut p, mut m) = (z.clone(), z.clone());
            p[[i, j]] += h;
            m[[i, j]] -= h;
            let num = (mean_loss(head, &p, t) - mean_loss(head, &m, t)) / (2.0 * h as f64);
            assert!(
                (grad[[i, j]] as f64 - num).abs() < 2e-4,
                "{head:?} d/dz[{i},{j}] = {} vs {num}",
                grad[[i, j]]
            );
        }
    }

    #[test]
    fn every_head_gradient_matches_finite_differences() {
        let z = array![[0.5f32, -1.2, 2.0], [-0.3, 0.8, 0.1], [3.0, -2.5, 0.0]];
        check_gradient(Head::Softmax, z.clone(), BatchTargets::Classes(&[2, 0, 1]));
        let y = array![[1.0f32, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]];
        check_gradient(Head::Sigmoid, z.clone(), BatchTargets::Dense(y.view()));
        let zb = array![[0.7f32], [-1.5], [2.2]];
        check_gradient(Head::Sigmoid, zb, BatchTargets::Classes(&[1, 0, 0]));
        let yr = array![[0.2f32, 1.0, -3.0], [0.0, 0.5, 0.5], [1.0, 2.0, 3.0]];
        check_gradient(Head::Identity, z, BatchTargets::Dense(yr.view()));
    }

    #[test]
    fn softmax_cross_entropy_is_stable_for_huge_logits() {
        let z = array![[1000.0f32, 0.0, -1000.0]];
        let mut acc = MetricAccumulator::default();
        Head::Softmax.evaluate(z.view(), BatchTargets::Classes(&[2]), &mut acc);
        assert!((acc.loss_sum - 2000.0).abs() < 1e-3, "{}", acc.loss_sum);
        let mut p = z.clone();
        Head::Softmax.activate(p.view_mut());
        assert_eq!(p, array![[1.0, 0.0, 0.0]]);
    }

    #[test]
    fn softmax_of_a_view_that_is_not_contiguous_equals_the_contiguous_one() {
        let z = array![[1.0f32, 2.0, 3.0], [-4.0, 0.5, 0.25]];
        let mut want = z.clone();
        Head::Softmax.activate(want.view_mut());
        // The same logits stored column by column: rows are not contiguous.
        let mut t = z.t().to_owned();
        Head::Softmax.activate(t.view_mut().reversed_axes());
        assert_eq!(t.t(), want);
        let sums = want.sum_axis(ndarray::Axis(1));
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-6), "{sums}");
    }

    /// Reference: torch.nn.functional.cross_entropy(torch.tensor([[1.,2.,3.]]), torch.tensor([0]))
    /// = 2.4076059644443806 and binary_cross_entropy_with_logits(torch.tensor([0.5]),
    /// torch.tensor([1.])) = 0.47407698418010663.
    #[test]
    fn losses_equal_pytorch_values() {
        let mut acc = MetricAccumulator::default();
        Head::Softmax.evaluate(
            array![[1.0f32, 2.0, 3.0]].view(),
            BatchTargets::Classes(&[0]),
            &mut acc,
        );
        assert!((acc.loss_sum - 2.407_605_964).abs() < 1e-6);
        let mut acc = MetricAccumulator::default();
        Head::Sigmoid.evaluate(
            array![[0.5f32]].view(),
            BatchTargets::Classes(&[1]),
            &mut acc,
        );
        assert!((acc.loss_sum - 0.474_076_984).abs() < 1e-6);
    }

    #[test]
    fn regression_metrics_match_hand_computation() {
        // y = [1, 2, 3], ŷ = [1, 2, 4]: SS_res = 1, SS_tot = 2, R² = 0.5, MAE = 1/3, MSE = 1/3.
        let mut acc = MetricAccumulator::default();
        let y = array![[1.0f32], [2.0], [3.0]];
        Head::Identity.evaluate(
            array![[1.0f32], [2.0], [4.0]].view(),
            BatchTargets::Dense(y.view()),
            &mut acc,
        );
        let m = acc.finish(Head::Identity);
        assert!((m.r2.unwrap() - 0.5).abs() < 1e-12);
        assert!((m.mae.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.loss - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn head_task_mismatches_explain_what_fits() {
        assert!(Head::Softmax.check_task(3, Task::Classification, 3).is_ok());
        assert!(Head::Softmax
            .check_task(2, Task::Classification, 3)
            .unwrap_err()
            .contains("3 classes"));
        assert!(Head::Sigmoid.check_task(1, Task::Classification, 2).is_ok());
        assert!(Head::Identity
            .check_task(1, Task::Classification, 2)
            .is_err());
        assert!(Head::Softmax.check_task(1, Task::Regression, 1).is_err());
    }
}
