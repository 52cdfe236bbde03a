//! A multilayer perceptron: its spec, its parameters, and inference.
//!
//! Hidden layer `l` computes `u = x·W + b`, then (with batch norm) `u ← γ·(u − μ)/σ + β`, then
//! `a = f(u)`, then (while training) dropout. The output layer is `z = x·W + b` followed by the
//! head. Weights are stored `[in, out]` row-major, so a batch product is one `gemm` and a
//! single row is a sum of contiguous weight rows (see [`super::linalg`]); model files
//! transpose them to PyTorch's `[out, in]`.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use serde::{Deserialize, Serialize};

use super::activation::{prelu_forward, Activation};
use super::aligned::AlignedVec;
use super::data::{check_finite, Standardizer, Task};
use super::error::{NnError, Result};
use super::fpenv::Flush;
use super::head::Head;
use super::init::Init;
use super::linalg::{add_row, fold_column_max};
use super::product::matmul;
use super::rng::{Rng, Stream};

/// Batch norm's variance guard, as PyTorch's `BatchNorm1d`.
pub const BN_EPS: f32 = 1e-5;
/// Batch norm's running-statistics momentum, as PyTorch's `BatchNorm1d`.
pub const BN_MOMENTUM: f32 = 0.1;

/// The architecture of a network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Input width, hidden widths…, output width.
    pub layers: Vec<usize>,
    /// One activation per hidden layer.
    pub activations: Vec<Activation>,
    /// The output head, which decides the loss.
    pub output: Head,
    /// Weight init; `None` picks each layer's default from its activation.
    #[serde(default)]
    pub init: Option<Init>,
    /// Dropout probability after every hidden activation (training only).
    #[serde(default)]
    pub dropout: f32,
    /// Batch normalization between each hidden layer's product and its activation.
    #[serde(default)]
    pub batch_norm: bool,
}

/// Size limits a spec must respect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkLimits {
    /// Most entries in `layers` (input and output included).
    pub max_layers: usize,
    /// Widest layer.
    pub max_units: usize,
    /// Most trainable parameters.
    pub max_parameters: usize,
}

impl Default for NetworkLimits {
    fn default() -> Self {
        Self {
            max_layers: 64,
            max_units: 65_536,
            max_parameters: 50_000_000,
        }
    }
}

impl ModelSpec {
    /// A spec with the same activation on every hidden layer and default init, no dropout, no
    /// batch norm.
    pub fn new(layers: &[usize], activation: Activation, output: Head) -> Self {
        Self {
            layers: layers.to_vec(),
            activations: vec![activation; layers.len().saturating_sub(2)],
            output,
            init: None,
            dropout: 0.0,
            batch_norm: false,
        }
    }

    /// Number of hidden layers.
    pub fn hidden(&self) -> usize {
        self.layers.len().saturating_sub(2)
    }

    /// Input width.
    pub fn inputs(&self) -> usize {
        self.layers.first().copied().unwrap_or(0)
    }

    /// Output width.
    pub fn outputs(&self) -> usize {
        self.layers.last().copied().unwrap_or(0)
    }

    /// Checks sizes, activations and options against `limits`, naming the offending field.
    pub fn validate(&self, limits: &NetworkLimits) -> Result<()> {
        if self.layers.len() < 2 {
            return Err(NnError::invalid(
                "layers",
                format!(
                    "needs at least an input and an output size, got {} entries",
                    self.layers.len()
                ),
            ));
        }
        if self.layers.len() > limits.max_layers {
            return Err(NnError::invalid(
                "layers",
                format!(
                    "{} entries exceed the limit of {} layers",
                    self.layers.len(),
                    limits.max_layers
                ),
            ));
        }
        for (i, &n) in self.layers.iter().enumerate() {
            if n == 0 {
                return Err(NnError::invalid(
                    format!("layers[{i}]"),
                    "a layer needs at least 1 unit",
                ));
            }
            if n > limits.max_units {
                return Err(NnError::invalid(
                    format!("layers[{i}]"),
                    format!(
                        "{n} units exceed the limit of {} units a layer",
                        limits.max_units
                    ),
                ));
            }
        }
        if self.activations.len() != self.hidden() {
            return Err(NnError::invalid(
                "activations",
                format!(
                    "{} activations for {} hidden layers",
                    self.activations.len(),
                    self.hidden()
                ),
            ));
        }
        for (i, a) in self.activations.iter().enumerate() {
            a.validate()
                .map_err(|m| NnError::invalid(format!("activations[{i}]"), m))?;
        }
        if self.output == Head::Sigmoid && self.outputs() > 65_536 {
            return Err(NnError::invalid("layers", "too many sigmoid outputs"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(NnError::invalid(
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            ));
        }
        let count = self
            .parameter_count()
            .ok_or_else(|| NnError::invalid("layers", "the parameter count overflows"))?;
        if count > limits.max_parameters {
            return Err(NnError::invalid(
                "layers",
                format!(
                    "{count} parameters exceed the limit of {}",
                    limits.max_parameters
                ),
            ));
        }
        Ok(())
    }

    /// Trainable parameters (weights, biases, batch-norm scales and shifts, PReLU slopes), or
    /// `None` if the count overflows.
    pub fn parameter_count(&self) -> Option<usize> {
        let mut total = 0usize;
        for (l, pair) in self.layers.windows(2).enumerate() {
            let (i, o) = (pair[0], pair[1]);
            total = total.checked_add(i.checked_mul(o)?.checked_add(o)?)?;
            if l < self.hidden() {
                if self.batch_norm {
                    total = total.checked_add(o.checked_mul(2)?)?;
                }
                if matches!(self.activations.get(l), Some(Activation::Prelu { .. })) {
                    total = total.checked_add(o)?;
                }
            }
        }
        Some(total)
    }
}

/// What a parameter tensor is, which decides whether it is decayed or penalized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// A weight matrix `[in, out]`.
    Weight,
    /// A bias vector.
    Bias,
    /// Batch norm's scale γ.
    BnScale,
    /// Batch norm's shift β.
    BnShift,
    /// PReLU's per-unit slopes.
    PreluSlope,
}

/// One trainable tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// What it is.
    pub kind: ParamKind,
    /// `(rows, cols)`; vectors are `(1, n)`.
    pub shape: (usize, usize),
    /// Row-major values, from a cache-line boundary (see [`AlignedVec`]).
    pub data: AlignedVec,
}

impl Param {
    fn new(kind: ParamKind, shape: (usize, usize), fill: f32) -> Self {
        Self {
            kind,
            shape,
            data: AlignedVec::from_elem(fill, shape.0 * shape.1),
        }
    }

    /// The values as a matrix view.
    pub fn view(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape(self.shape, &self.data).expect("param data matches its shape")
    }
}

/// Where a layer's tensors sit in [`Model::params`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerParams {
    /// Weight matrix.
    pub weight: usize,
    /// Bias.
    pub bias: usize,
    /// Batch norm's (scale, shift), hidden layers with batch norm only.
    pub bn: Option<(usize, usize)>,
    /// PReLU slopes.
    pub prelu: Option<usize>,
}

/// Batch norm's running mean and (unbiased) variance for one layer, used in evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningStats {
    /// Running mean.
    pub mean: Vec<f32>,
    /// Running variance.
    pub var: Vec<f32>,
    /// Training batches seen (PyTorch's `num_batches_tracked`).
    pub batches: u64,
}

/// A network with its parameters and everything prediction needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The architecture.
    pub spec: ModelSpec,
    /// Trainable tensors, layer by layer (see [`Model::layer_params`]).
    pub params: Vec<Param>,
    /// Batch-norm running statistics per hidden layer (`None` without batch norm).
    pub bn_stats: Vec<Option<RunningStats>>,
    /// Input standardization fitted on the training rows.
    pub standardizer: Option<Standardizer>,
    /// Class names (classification), label names or output names.
    pub labels: Vec<String>,
    /// The task the model was trained for.
    pub task: Option<Task>,
}

impl Model {
    /// A freshly initialized network. Weights come from the init stream of `seed`.
    pub fn new(spec: ModelSpec, seed: u64) -> Result<Self> {
        spec.validate(&NetworkLimits {
            max_layers: usize::MAX,
            max_units: usize::MAX,
            max_parameters: usize::MAX,
        })?;
        let mut rng = Rng::stream(seed, Stream::Init);
        let mut params = Vec::new();
        let mut bn_stats = Vec::new();
        for (l, pair) in spec.layers.windows(2).enumerate() {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let hidden = l < spec.hidden();
            let act = spec.activations.get(l).copied();
            let init = spec.init.unwrap_or_else(|| match act {
                Some(a) => Init::default_for(&a),
                // The output layer feeds a sigmoid/softmax/identity: Glorot.
                None => Init::XavierUniform,
            });
            let mut w = Param::new(ParamKind::Weight, (fan_in, fan_out), 0.0);
            init.fill(&mut w.data, fan_in, fan_out, &mut rng);
            params.push(w);
            params.push(Param::new(ParamKind::Bias, (1, fan_out), 0.0));
            if hidden {
                if spec.batch_norm {
                    params.push(Param::new(ParamKind::BnScale, (1, fan_out), 1.0));
                    params.push(Param::new(ParamKind::BnShift, (1, fan_out), 0.0));
                    bn_stats.push(Some(RunningStats {
                        mean: vec![0.0; fan_out],
                        var: vec![1.0; fan_out],
                        batches: 0,
                    }));
                } else {
                    bn_stats.push(None);
                }
                if let Some(Activation::Prelu { init }) = act {
                    params.push(Param::new(ParamKind::PreluSlope, (1, fan_out), init));
                }
            }
        }
        Ok(Self {
            spec,
            params,
            bn_stats,
            standardizer: None,
            labels: Vec::new(),
            task: None,
        })
    }

    /// Where each layer's tensors are in `params`: hidden layers, then the output layer.
    pub fn layer_params(&self) -> Vec<LayerParams> {
        layer_params(&self.spec)
    }

    /// A name for each tensor in `params`, as in model files: `hidden.0.weight`,
    /// `hidden.0.bn.weight`, `hidden.0.prelu.weight`, `output.bias`, ….
    pub fn param_names(&self) -> Vec<String> {
        let mut names = vec![String::new(); self.params.len()];
        let hidden = self.spec.hidden();
        for (l, lp) in self.layer_params().iter().enumerate() {
            let prefix = if l < hidden {
                format!("hidden.{l}")
            } else {
                "output".to_string()
            };
            names[lp.weight] = format!("{prefix}.weight");
            names[lp.bias] = format!("{prefix}.bias");
            if let Some((g, b)) = lp.bn {
                names[g] = format!("{prefix}.bn.weight");
                names[b] = format!("{prefix}.bn.bias");
            }
            if let Some(p) = lp.prelu {
                names[p] = format!("{prefix}.prelu.weight");
            }
        }
        names
    }

    /// Whether every parameter and statistic is finite.
    pub fn is_finite(&self) -> bool {
        self.params
            .iter()
            .all(|p| p.data.iter().all(|v| v.is_finite()))
            && self
                .bn_stats
                .iter()
                .flatten()
                .all(|s| s.mean.iter().chain(&s.var).all(|v| v.is_finite()))
    }

    /// Predictions for raw (unstandardized) inputs: class or label probabilities, or values.
    /// Inputs must be `[rows, inputs]` and finite.
    pub fn predict(&self, inputs: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.check_inputs(inputs)?;
        let _flush = Flush::subnormals();
        match &self.standardizer {
            Some(s) => {
                let mut owned = inputs.to_owned();
                s.apply(&mut owned);
                Ok(self.predict_standardized(owned.view()))
            }
            None => Ok(self.predict_standardized(inputs)),
        }
    }

    /// [`Model::predict`] for inputs the caller gives away: they are standardized in place,
    /// with the same arithmetic, so a request's rows are not copied once more.
    pub fn predict_owned(&self, mut inputs: Array2<f32>) -> Result<Array2<f32>> {
        self.check_inputs(inputs.view())?;
        let _flush = Flush::subnormals();
        if let Some(s) = &self.standardizer {
            s.apply(&mut inputs);
        }
        Ok(self.predict_standardized(inputs.view()))
    }

    fn check_inputs(&self, inputs: ArrayView2<f32>) -> Result<()> {
        if inputs.ncols() != self.spec.inputs() {
            return Err(NnError::Shape {
                what: "inputs".into(),
                expected: vec![inputs.nrows(), self.spec.inputs()],
                got: vec![inputs.nrows(), inputs.ncols()],
            });
        }
        check_finite("inputs", inputs, f32::INFINITY)
    }

    /// Probabilities or values for inputs already standardized.
    fn predict_standardized(&self, x: ArrayView2<f32>) -> Array2<f32> {
        // Buffers are kept per thread, so a prediction allocates only its output; rows go
        // through in chunks, so those buffers stay small however many rows a request has.
        const CHUNK: usize = 256;
        thread_local! {
            static BUFFERS: std::cell::RefCell<EvalBuffers> = Default::default();
        }
        let mut out = Array2::zeros((x.nrows(), self.spec.outputs()));
        BUFFERS.with(|ws| {
            let mut ws = ws.borrow_mut();
            for start in (0..x.nrows()).step_by(CHUNK) {
                let end = (start + CHUNK).min(x.nrows());
                let logits = self.forward_eval(x.slice(ndarray::s![start..end, ..]), &mut ws, None);
                out.slice_mut(ndarray::s![start..end, ..]).assign(&logits);
            }
        });
        self.spec.output.activate(out.view_mut());
        out
    }

    /// Logits for already standardized inputs, in evaluation mode (running batch-norm
    /// statistics, no dropout), computed in `ws`. With `diag`, adds each hidden layer's
    /// saturated counts and column maxima of `u` (for dead units).
    pub fn forward_eval<'w>(
        &self,
        x: ArrayView2<f32>,
        ws: &'w mut EvalBuffers,
        mut diag: Option<&mut [UnitStats]>,
    ) -> ArrayView2<'w, f32> {
        let rows = x.nrows();
        let hidden = self.spec.hidden();
        let widest = self.spec.layers[1..].iter().copied().max().unwrap_or(0);
        for b in [&mut ws.input, &mut ws.pre, &mut ws.output] {
            if b.len() < rows * widest {
                b.resize(rows * widest, 0.0);
            }
        }
        for (l, lp) in self.layer_params().iter().enumerate() {
            let (fan_in, fan_out) = (self.spec.layers[l], self.spec.layers[l + 1]);
            let n = rows * fan_out;
            let input = if l == 0 {
                x
            } else {
                ArrayView2::from_shape((rows, fan_in), &ws.input[..rows * fan_in])
                    .expect("buffer sized")
            };
            let target = if l < hidden {
                &mut ws.pre
            } else {
                &mut ws.output
            };
            let mut z =
                ArrayViewMut2::from_shape((rows, fan_out), &mut target[..n]).expect("buffer sized");
            matmul(z.view_mut(), input, self.params[lp.weight].view(), false);
            add_row(&mut target[..n], &self.params[lp.bias].data);
            if l == hidden {
                break;
            }
            let u = &mut ws.pre[..n];
            if let (Some((g, b)), Some(stats)) = (lp.bn, &self.bn_stats[l]) {
                bn_eval(u, &self.params[g].data, &self.params[b].data, stats);
            }
            let act = self.spec.activations[l];
            let a = &mut ws.output[..n];
            match lp.prelu {
                Some(p) => prelu_forward(u, &self.params[p].data, a),
                None => act.forward(u, a),
            }
            if let Some(d) = diag.as_deref_mut() {
                if act.can_die() {
                    fold_column_max(u, &mut d[l].max_u);
                }
                d[l].saturated += act.count_saturated(a);
                d[l].seen += n;
            }
            std::mem::swap(&mut ws.input, &mut ws.output);
        }
        let n = rows * self.spec.outputs();
        ArrayView2::from_shape((rows, self.spec.outputs()), &ws.output[..n]).expect("buffer sized")
    }
}

/// Per-unit statistics gathered over a pass (dead units, saturation).
#[derive(Clone, Debug, Default)]
pub struct UnitStats {
    /// Largest pre-activation of each unit.
    pub max_u: Vec<f32>,
    /// Elements whose derivative was below 1e-3 of its maximum.
    pub saturated: usize,
    /// Elements seen.
    pub seen: usize,
}

impl UnitStats {
    /// Empty statistics for `units` units.
    pub fn new(units: usize) -> Self {
        Self {
            max_u: vec![f32::NEG_INFINITY; units],
            saturated: 0,
            seen: 0,
        }
    }

    /// Fraction of units whose pre-activation never rose above 0 (ReLU family only).
    pub fn dead_fraction(&self, act: Activation) -> Option<f64> {
        (act.can_die() && self.seen > 0).then(|| {
            self.max_u.iter().filter(|&&m| m <= 0.0).count() as f64 / self.max_u.len() as f64
        })
    }

    /// Fraction of saturated unit activations (sigmoid and tanh only).
    pub fn saturated_fraction(&self, act: Activation) -> Option<f64> {
        (act.saturates() && self.seen > 0).then(|| self.saturated as f64 / self.seen as f64)
    }
}

/// Applies batch norm with running statistics in place: `u ← (u − μ)·γ/√(σ²+ε) + β`.
fn bn_eval(u: &mut [f32], gamma: &[f32], beta: &[f32], stats: &RunningStats) {
    let scale: Vec<f32> = gamma
        .iter()
        .zip(&stats.var)
        .map(|(g, v)| g / (v + BN_EPS).sqrt())
        .collect();
    let shift: Vec<f32> = beta
        .iter()
        .zip(&stats.mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    for row in u.chunks_exact_mut(scale.len()) {
        for ((v, s), t) in row.iter_mut().zip(&scale).zip(&shift) {
            *v = *v * s + t;
        }
    }
}

/// Ping-pong buffers for evaluation passes, reused across calls.
#[derive(Clone, Debug, Default)]
pub struct EvalBuffers {
    input: Vec<f32>,
    pre: Vec<f32>,
    output: Vec<f32>,
}

/// Where each layer's tensors are in a model of `spec` (the order [`Model::new`] creates them).
pub fn layer_params(spec: &ModelSpec) -> Vec<LayerParams> {
    let mut next = 0;
    let mut take = || {
        next += 1;
        next - 1
    };
    (0..spec.layers.len() - 1)
        .map(|l| {
            let weight = take();
            let bias = take();
            let hidden = l < spec.hidden();
            let bn = (hidden && spec.batch_norm).then(|| (take(), take()));
            let prelu =
                (hidden && matches!(spec.activations[l], Activation::Prelu { .. })).then(&mut take);
            LayerParams {
                weight,
                bias,
                bn,
                prelu,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_count_includes_bn_and_prelu_and_catches_overflow() {
        let mut spec = ModelSpec::new(&[2, 4, 3], Activation::Prelu { init: 0.25 }, Head::Softmax);
        assert_eq!(spec.parameter_count(), Some(2 * 4 + 4 + 4 + 4 * 3 + 3));
        spec.batch_norm = true;
        assert_eq!(spec.parameter_count(), Some(31 + 8));
        let m = Model::new(spec.clone(), 0).unwrap();
        assert_eq!(m.params.iter().map(|p| p.data.len()).sum::<usize>(), 39);
        let huge = ModelSpec::new(
            &[usize::MAX, usize::MAX, 1],
            Activation::Relu,
            Head::Sigmoid,
        );
        assert_eq!(huge.parameter_count(), None);
        let err = huge.validate(&NetworkLimits::default()).unwrap_err();
        assert!(err.to_string().contains("layers[0]"), "{err}");
    }

    #[test]
    fn bad_specs_name_the_field() {
        let limits = NetworkLimits::default();
        let zero = ModelSpec::new(&[2, 0, 1], Activation::Relu, Head::Sigmoid);
        assert!(zero
            .validate(&limits)
            .unwrap_err()
            .to_string()
            .starts_with("layers[1]"));
        let mut d = ModelSpec::new(&[2, 3, 1], Activation::Relu, Head::Sigmoid);
        d.dropout = 1.0;
        assert!(d
            .validate(&limits)
            .unwrap_err()
            .to_string()
            .starts_with("dropout"));
        let big = ModelSpec::new(&[10_000, 10_000, 1], Activation::Relu, Head::Sigmoid);
        assert!(big
            .validate(&limits)
            .unwrap_err()
            .to_string()
            .contains("limit of 50000000"));
    }

    #[test]
    fn one_row_and_batched_prediction_agree() {
        let spec = ModelSpec::new(&[5, 7, 6, 3], Activation::Tanh, Head::Softmax);
        let m = Model::new(spec, 3).unwrap();
        let x = Array2::from_shape_fn((4, 5), |(i, j)| (i as f32 - j as f32) * 0.3);
        let all = m.predict(x.view()).unwrap();
        for i in 0..4 {
            let one = m.predict(x.slice(ndarray::s![i..i + 1, ..])).unwrap();
            for j in 0..3 {
                assert!((one[[0, j]] - all[[i, j]]).abs() < 1e-6);
            }
            assert!((all.row(i).sum() - 1.0).abs() < 1e-5);
        }
        let err = m.predict(Array2::zeros((2, 4)).view()).unwrap_err();
        assert!(matches!(err, NnError::Shape { .. }), "{err}");
    }

    #[test]
    fn predicting_owned_rows_standardizes_them_in_place_with_the_same_bits() {
        let spec = ModelSpec::new(&[3, 4, 2], Activation::Relu, Head::Softmax);
        let mut m = Model::new(spec, 5).unwrap();
        m.standardizer = Some(Standardizer {
            mean: vec![1.0, -2.0, 0.5],
            std: vec![0.5, 3.0, 1.0],
        });
        let x = Array2::from_shape_fn((6, 3), |(i, j)| (i * 3 + j) as f32 * 0.37 - 2.0);
        let viewed = m.predict(x.view()).unwrap();
        let owned = m.predict_owned(x.clone()).unwrap();
        assert!(viewed
            .iter()
            .zip(&owned)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        // Standardization matters here: without it the answer differs.
        let raw = Model {
            standardizer: None,
            ..m.clone()
        }
        .predict(x.view())
        .unwrap();
        assert!(raw.iter().zip(&owned).any(|(a, b)| a != b));
        // The owned path checks what the borrowed one does.
        let bad = Array2::from_shape_vec((1, 3), vec![0.0, f32::NAN, 0.0]).unwrap();
        assert!(m.predict_owned(bad).is_err());
        assert!(matches!(
            m.predict_owned(Array2::zeros((2, 4))).unwrap_err(),
            NnError::Shape { .. }
        ));
    }
}
