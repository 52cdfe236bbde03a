//! One training step's forward and backward pass, in buffers allocated once per fit.
//!
//! The [`Workspace`] holds, per layer, the pre-activations `u` (after batch norm), the
//! normalized `x̂` and batch statistics (batch norm), the activations `a`, the dropout mask and
//! the dropped-out output `h`, plus two gradient buffers that alternate between layers. A batch
//! smaller than the maximum (the last one of an epoch) uses the first rows of each buffer, so
//! nothing is allocated inside the epoch loop.

use ndarray::{ArrayView2, ArrayViewMut2};

use super::activation::{prelu_backward, prelu_forward, Activation};
use super::head::{BatchTargets, MetricAccumulator};
use super::linalg::{
    add_row, bias_relu_fold_max, column_sums, fold_column_max, mul_assign, sum_squares, transpose,
};
use super::model::{LayerParams, Model, UnitStats, BN_EPS, BN_MOMENTUM};
use super::product::matmul;
use super::rng::Rng;

/// Buffers of one layer.
#[derive(Debug, Default)]
struct LayerBuffers {
    fan_in: usize,
    fan_out: usize,
    /// Pre-activation after batch norm `[B, out]` (the logits for the output layer).
    u: Vec<f32>,
    /// Normalized product `x̂` `[B, out]` (batch norm only).
    xhat: Vec<f32>,
    /// Batch norm `1/√(σ²+ε)` per unit.
    inv_std: Vec<f32>,
    /// Batch norm per-unit scratch (batch mean, then variance / backward factors).
    scratch: [Vec<f32>; 2],
    /// Activation `[B, out]`.
    a: Vec<f32>,
    /// Dropout mask scaled by `1/(1−p)` `[B, out]` (dropout only).
    mask: Vec<f32>,
    /// Output after dropout `[B, out]` (dropout only; otherwise `a` is the output).
    h: Vec<f32>,
    /// The layer's weights transposed, `[out, in]`, for the input gradient `G · Wᵀ`
    /// (every layer but the first).
    wt: Vec<f32>,
}

/// Everything one training step needs, sized for batches of up to `max_rows`.
#[derive(Debug)]
pub struct Workspace {
    max_rows: usize,
    /// Gathered, standardized inputs `[B, in]`.
    pub x: Vec<f32>,
    /// Gathered class targets.
    pub y_classes: Vec<u32>,
    /// Gathered dense targets `[B, outputs]`.
    pub y_dense: Vec<f32>,
    layers: Vec<LayerBuffers>,
    grad_a: Vec<f32>,
    grad_b: Vec<f32>,
    /// Gradients, one per model parameter, same layout.
    pub grads: Vec<Vec<f32>>,
    /// Per hidden layer: dead-unit maxima and saturation counts over the epoch.
    pub unit_stats: Vec<UnitStats>,
    layout: Vec<LayerParams>,
}

impl Workspace {
    /// Buffers for `model` and batches of up to `max_rows` rows.
    pub fn new(model: &Model, max_rows: usize) -> Self {
        let spec = &model.spec;
        let hidden = spec.hidden();
        let widest = spec.layers.iter().copied().max().unwrap_or(0);
        let layers = spec
            .layers
            .windows(2)
            .enumerate()
            .map(|(l, w)| {
                let n = max_rows * w[1];
                let is_hidden = l < hidden;
                let bn = is_hidden && spec.batch_norm;
                let dropout = is_hidden && spec.dropout > 0.0;
                LayerBuffers {
                    fan_in: w[0],
                    fan_out: w[1],
                    u: vec![0.0; n],
                    xhat: if bn { vec![0.0; n] } else { Vec::new() },
                    inv_std: if bn { vec![0.0; w[1]] } else { Vec::new() },
                    scratch: if bn {
                        [vec![0.0; w[1]], vec![0.0; w[1]]]
                    } else {
                        Default::default()
                    },
                    a: if is_hidden { vec![0.0; n] } else { Vec::new() },
                    mask: if dropout { vec![0.0; n] } else { Vec::new() },
                    h: if dropout { vec![0.0; n] } else { Vec::new() },
                    wt: if l > 0 {
                        vec![0.0; w[0] * w[1]]
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        Self {
            max_rows,
            x: vec![0.0; max_rows * spec.inputs()],
            y_classes: vec![0; max_rows],
            y_dense: vec![0.0; max_rows * spec.outputs()],
            layers,
            grad_a: vec![0.0; max_rows * widest],
            grad_b: vec![0.0; max_rows * widest],
            grads: model
                .params
                .iter()
                .map(|p| vec![0.0; p.data.len()])
                .collect(),
            unit_stats: spec.layers[1..=hidden]
                .iter()
                .map(|&n| UnitStats::new(n))
                .collect(),
            layout: model.layer_params(),
        }
    }

    /// Largest batch the buffers hold.
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// Starts a new epoch of unit statistics.
    pub fn reset_unit_stats(&mut self) {
        for s in &mut self.unit_stats {
            *s = UnitStats::new(s.max_u.len());
        }
    }

    /// Forward and backward for the first `rows` rows of `x` and the targets, leaving the
    /// gradients of the mean batch loss in `grads` and adding the batch to `acc`.
    /// Updates batch-norm running statistics in `model`.
    pub fn step(
        &mut self,
        model: &mut Model,
        rows: usize,
        dense_targets: bool,
        dropout_rng: &mut Rng,
        acc: &mut MetricAccumulator,
    ) {
        self.forward(model, rows, dropout_rng);
        self.backward(model, rows, dense_targets, acc);
    }

    fn forward(&mut self, model: &mut Model, rows: usize, rng: &mut Rng) {
        let spec = &model.spec;
        let hidden = spec.hidden();
        let p = spec.dropout;
        for l in 0..self.layers.len() {
            let (before, rest) = self.layers.split_at_mut(l);
            let buf = &mut rest[0];
            let lp = self.layout[l];
            let (fan_in, n) = (buf.fan_in, rows * buf.fan_out);
            let input: &[f32] = match before.last() {
                None => &self.x[..rows * fan_in],
                Some(prev) => layer_output(prev, rows),
            };
            let input = ArrayView2::from_shape((rows, fan_in), input).expect("sized");
            let bn = lp.bn.is_some();
            let z = if bn {
                &mut buf.xhat[..n]
            } else {
                &mut buf.u[..n]
            };
            matmul(
                ArrayViewMut2::from_shape((rows, buf.fan_out), &mut *z).expect("sized"),
                input,
                model.params[lp.weight].view(),
                false,
            );
            if l < hidden && !bn && spec.activations[l] == Activation::Relu {
                let (u, a) = (&mut buf.u[..n], &mut buf.a[..n]);
                let max_u = &mut self.unit_stats[l].max_u;
                bias_relu_fold_max(u, &model.params[lp.bias].data, a, max_u);
                self.unit_stats[l].seen += n;
                if p > 0.0 {
                    dropout(buf, n, p, rng);
                }
                continue;
            }
            add_row(z, &model.params[lp.bias].data);
            if l == hidden {
                break;
            }
            if let Some((g, b)) = lp.bn {
                let stats = model.bn_stats[l].as_mut().expect("bn layer has stats");
                let (gamma, beta) = (&model.params[g].data, &model.params[b].data);
                bn_train_forward(
                    &mut buf.xhat[..n],
                    &mut buf.u[..n],
                    &mut buf.inv_std,
                    &mut buf.scratch,
                    gamma,
                    beta,
                    stats,
                );
            }
            let act = spec.activations[l];
            let (u, a) = (&buf.u[..n], &mut buf.a[..n]);
            match lp.prelu {
                Some(s) => prelu_forward(u, &model.params[s].data, a),
                None => act.forward(u, a),
            }
            if act.can_die() {
                fold_column_max(u, &mut self.unit_stats[l].max_u);
            }
            self.unit_stats[l].seen += n;
            if p > 0.0 {
                dropout(buf, n, p, rng);
            }
        }
    }

    fn backward(
        &mut self,
        model: &mut Model,
        rows: usize,
        dense_targets: bool,
        acc: &mut MetricAccumulator,
    ) {
        let spec = &model.spec;
        let hidden = spec.hidden();
        let outputs = spec.outputs();
        let last = &self.layers[hidden];
        let logits =
            ArrayView2::from_shape((rows, outputs), &last.u[..rows * outputs]).expect("sized");
        let targets = if dense_targets {
            BatchTargets::Dense(
                ArrayView2::from_shape((rows, outputs), &self.y_dense[..rows * outputs])
                    .expect("sized"),
            )
        } else {
            BatchTargets::Classes(&self.y_classes[..rows])
        };
        let mut g = std::mem::take(&mut self.grad_a);
        let mut g_prev = std::mem::take(&mut self.grad_b);
        spec.output.loss_and_grad(
            logits,
            targets,
            ArrayViewMut2::from_shape((rows, outputs), &mut g[..rows * outputs]).expect("sized"),
            acc,
        );
        for l in (0..self.layers.len()).rev() {
            let lp = self.layout[l];
            let (before, rest) = self.layers.split_at_mut(l);
            let buf = &mut rest[0];
            let n = rows * buf.fan_out;
            let gl = &mut g[..n];
            if l < hidden {
                if spec.dropout > 0.0 {
                    mul_assign(gl, &buf.mask[..n]);
                }
                let act: Activation = spec.activations[l];
                let saturated = match lp.prelu {
                    Some(s) => {
                        let gs = &mut self.grads[s];
                        gs.fill(0.0);
                        prelu_backward(&buf.u[..n], &model.params[s].data, gl, gs);
                        0
                    }
                    None => act.backward(&buf.u[..n], &buf.a[..n], gl),
                };
                self.unit_stats[l].saturated += saturated;
                if let Some((gi, bi)) = lp.bn {
                    let (dgamma, dbeta) = two_mut(&mut self.grads, gi, bi);
                    bn_backward(
                        gl,
                        &buf.xhat[..n],
                        &buf.inv_std,
                        &mut buf.scratch[0],
                        &model.params[gi].data,
                        dgamma,
                        dbeta,
                    );
                }
            }
            let input: &[f32] = match before.last() {
                None => &self.x[..rows * buf.fan_in],
                Some(prev) => layer_output(prev, rows),
            };
            let input = ArrayView2::from_shape((rows, buf.fan_in), input).expect("sized");
            let gview = ArrayView2::from_shape((rows, buf.fan_out), &g[..n]).expect("sized");
            let dw =
                ArrayViewMut2::from_shape((buf.fan_in, buf.fan_out), &mut self.grads[lp.weight])
                    .expect("sized");
            matmul(dw, input.t(), gview, false);
            column_sums(&g[..n], &mut self.grads[lp.bias]);
            if l > 0 {
                let gx =
                    ArrayViewMut2::from_shape((rows, buf.fan_in), &mut g_prev[..rows * buf.fan_in])
                        .expect("sized");
                // The weights changed at the last step: transpose them afresh (see
                // `linalg::transpose` for why `gemm` gets `Wᵀ` rather than a view of `W`).
                transpose(
                    &model.params[lp.weight].data,
                    buf.fan_in,
                    buf.fan_out,
                    &mut buf.wt,
                );
                let wt =
                    ArrayView2::from_shape((buf.fan_out, buf.fan_in), &buf.wt[..]).expect("sized");
                matmul(gx, gview, wt, false);
                std::mem::swap(&mut g, &mut g_prev);
            }
        }
        self.grad_a = g;
        self.grad_b = g_prev;
    }

    /// ‖∂L/∂W‖² of each layer's weight matrix, hidden layers then output.
    pub fn weight_grad_sq(&self) -> impl Iterator<Item = f64> + '_ {
        self.layout
            .iter()
            .map(|lp| sum_squares(&self.grads[lp.weight]))
    }
}

/// Inverted dropout with rate `p` on the layer's first `n` outputs: draws the mask and
/// writes the kept, rescaled outputs to `h`.
fn dropout(buf: &mut LayerBuffers, n: usize, p: f32, rng: &mut Rng) {
    let keep = 1.0 / (1.0 - p);
    // Two 32-bit draws per 64-bit word; the threshold compare is exact in f64.
    let threshold = (p as f64 * 4_294_967_296.0) as u64;
    let mask = &mut buf.mask[..n];
    for pair in mask.chunks_mut(2) {
        let bits = rng.next_u64();
        for (k, m) in pair.iter_mut().enumerate() {
            let draw = (bits >> (32 * k)) & 0xFFFF_FFFF;
            *m = if draw >= threshold { keep } else { 0.0 };
        }
    }
    buf.h[..n].copy_from_slice(&buf.a[..n]);
    mul_assign(&mut buf.h[..n], &buf.mask[..n]);
}

fn layer_output(buf: &LayerBuffers, rows: usize) -> &[f32] {
    let n = rows * buf.fan_out;
    if buf.h.is_empty() {
        &buf.a[..n]
    } else {
        &buf.h[..n]
    }
}

fn two_mut<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert!(i < j, "tensor order: scale before shift");
    let (a, b) = v.split_at_mut(j);
    (&mut a[i], &mut b[0])
}

/// Batch norm forward in training mode: `z` (in `xhat`) becomes `x̂ = (z − μ_B)/√(σ²_B + ε)`,
/// `u = γ·x̂ + β`, and the running statistics move by `BN_MOMENTUM` (unbiased variance, as
/// PyTorch keeps them).
fn bn_train_forward(
    xhat: &mut [f32],
    u: &mut [f32],
    inv_std: &mut [f32],
    scratch: &mut [Vec<f32>; 2],
    gamma: &[f32],
    beta: &[f32],
    stats: &mut super::model::RunningStats,
) {
    let units = gamma.len();
    let rows = xhat.len() / units;
    let [mean, var] = scratch;
    column_sums(xhat, mean);
    mean.iter_mut().for_each(|m| *m /= rows as f32);
    var.fill(0.0);
    for row in xhat.chunks_exact(units) {
        for ((v, x), m) in var.iter_mut().zip(row).zip(mean.iter()) {
            let d = x - m;
            *v += d * d;
        }
    }
    var.iter_mut().for_each(|v| *v /= rows as f32);
    for (s, v) in inv_std.iter_mut().zip(var.iter()) {
        *s = 1.0 / (v + BN_EPS).sqrt();
    }
    for (xr, ur) in xhat.chunks_exact_mut(units).zip(u.chunks_exact_mut(units)) {
        for j in 0..units {
            let x = (xr[j] - mean[j]) * inv_std[j];
            xr[j] = x;
            ur[j] = gamma[j] * x + beta[j];
        }
    }
    let unbias = if rows > 1 {
        rows as f32 / (rows - 1) as f32
    } else {
        1.0
    };
    for j in 0..units {
        stats.mean[j] = (1.0 - BN_MOMENTUM) * stats.mean[j] + BN_MOMENTUM * mean[j];
        stats.var[j] = (1.0 - BN_MOMENTUM) * stats.var[j] + BN_MOMENTUM * var[j] * unbias;
    }
    stats.batches += 1;
}

/// Batch norm backward: `g` holds ∂L/∂u and becomes ∂L/∂z;
/// `∂L/∂z = γ/(n·σ) · (n·g − Σg − x̂·Σ(g·x̂))`, `∂L/∂γ = Σ g·x̂`, `∂L/∂β = Σ g`.
fn bn_backward(
    g: &mut [f32],
    xhat: &[f32],
    inv_std: &[f32],
    k: &mut [f32],
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let units = gamma.len();
    let rows = g.len() / units;
    dgamma.fill(0.0);
    dbeta.fill(0.0);
    for (gr, xr) in g.chunks_exact(units).zip(xhat.chunks_exact(units)) {
        for j in 0..units {
            dgamma[j] += gr[j] * xr[j];
            dbeta[j] += gr[j];
        }
    }
    let n = rows as f32;
    for ((k, g), s) in k.iter_mut().zip(gamma).zip(inv_std) {
        *k = g * s / n;
    }
    for (gr, xr) in g.chunks_exact_mut(units).zip(xhat.chunks_exact(units)) {
        for j in 0..units {
            gr[j] = k[j] * (n * gr[j] - dbeta[j] - xr[j] * dgamma[j]);
        }
    }
}

/// The mean loss of `data` (already standardized) as one training batch, and its gradient
/// for every parameter: dropout masks come from a clone of `dropout_rng`, so two calls with
/// the same generator see the same mask. Batch norm uses the batch's statistics (and moves the
/// running ones). This is the function the finite-difference checks differentiate.
pub fn batch_gradient(
    model: &mut Model,
    data: &super::data::Dataset,
    dropout_rng: &Rng,
) -> (f64, Vec<Vec<f32>>) {
    use super::data::Targets;
    let rows = data.rows();
    let mut ws = Workspace::new(model, rows);
    let inputs = model.spec.inputs();
    for (k, row) in data.features.rows().into_iter().enumerate() {
        for (d, s) in ws.x[k * inputs..(k + 1) * inputs].iter_mut().zip(row) {
            *d = *s;
        }
    }
    let dense = match &data.targets {
        Targets::Classes { indices, .. } => {
            ws.y_classes[..rows].copy_from_slice(indices);
            false
        }
        Targets::MultiLabel { values, .. } | Targets::Values { values, .. } => {
            for (d, s) in ws.y_dense.iter_mut().zip(values.iter()) {
                *d = *s;
            }
            true
        }
    };
    let mut acc = MetricAccumulator::default();
    ws.step(model, rows, dense, &mut dropout_rng.clone(), &mut acc);
    (acc.loss_sum / rows as f64, ws.grads)
}
