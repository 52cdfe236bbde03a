//! The training loop: [`fit`], its configuration, and the per-epoch records it reports.
//!
//! `fit` splits the data (stratified for classes), fits standardization on the training rows,
//! and runs mini-batch epochs. It copies no part of the dataset: the split is three lists of
//! row indices into the caller's (shared) dataset, and rows are gathered and standardized
//! batch by batch into the workspace, or chunk by chunk for evaluation, so two jobs training
//! on one dataset hold it once between them. Before any update it reports an epoch-0 record; after each epoch
//! it reports losses, metrics and per-layer diagnostics through a callback that may stop
//! training. Between batches it checks an [`Interrupter`] so a cancellation takes effect within
//! one batch. A non-finite loss or weight ends training with [`NnError::Diverged`]: no model
//! with NaN weights ever comes out.
//!
//! The same model, data, configuration and seed give the same weights bit for bit: every
//! random choice comes from a stream of the seed (split, shuffle, dropout), and every kernel
//! sums in a fixed order, whichever threads of the job's team run its blocks
//! ([`super::parallel`]).

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ndarray::ArrayView2;
use serde::{Deserialize, Deserializer, Serialize};

use super::activation::ACTIVATION_NAMES;
use super::backprop::Workspace;
use super::data::{Dataset, RowScaler, Standardizer, Targets};
use super::error::{NnError, Result};
use super::head::{BatchTargets, MetricAccumulator, Metrics};
use super::linalg::{scale, sum_squares};
use super::model::{EvalBuffers, Model, ParamKind, UnitStats};
use super::optim::{Optimizer, OptimizerConfig};
use super::rng::{Rng, Stream};
use super::schedule::{Schedule, Scheduler};

/// Hyper-parameters of a training run. Omitted fields take the documented defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Passes over the training rows (default 100).
    pub epochs: usize,
    /// Rows per gradient step (default 32; capped at the training rows).
    pub batch_size: usize,
    /// Reshuffle the training rows every epoch (default true).
    pub shuffle: bool,
    /// Seed of the split, the batch order, dropout and (for new models) the init.
    pub seed: u64,
    /// Optimizer and its hyper-parameters (default Adam, lr 0.001).
    pub optimizer: OptimizerConfig,
    /// L1 penalty on weight matrices: `l1·Σ|w|` (default 0).
    pub l1: f32,
    /// L2 penalty on weight matrices: `l2/2·Σw²` (default 0).
    pub l2: f32,
    /// Rescale gradients whose global L2 norm exceeds this (default none).
    pub gradient_clip_norm: Option<f32>,
    /// Learning-rate schedule (default constant).
    pub lr_schedule: Schedule,
    /// Fraction of rows held out for validation each epoch (default 0.2).
    pub validation_split: f64,
    /// Fraction of rows held out for a final test (default 0).
    pub test_split: f64,
    /// Standardize features with training-row statistics (default true).
    pub standardize: bool,
    /// Stop when the monitored quantity stops improving (default off).
    pub early_stopping: Option<EarlyStopping>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 32,
            shuffle: true,
            seed: 0,
            optimizer: OptimizerConfig::default(),
            l1: 0.0,
            l2: 0.0,
            gradient_clip_norm: None,
            lr_schedule: Schedule::Constant,
            validation_split: 0.2,
            test_split: 0.0,
            standardize: true,
            early_stopping: None,
        }
    }
}

/// What early stopping watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Validation loss (lower is better).
    #[default]
    ValLoss,
    /// Validation accuracy (higher is better; classification).
    ValAccuracy,
    /// Training loss (lower is better; needs no validation rows).
    TrainLoss,
}

/// Early-stopping settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// The quantity watched (default `val_loss`).
    #[serde(default)]
    pub monitor: Monitor,
    /// Epochs without improvement before stopping (default 10).
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// Smallest change that counts as improvement (default 1e-4).
    #[serde(default = "default_min_delta")]
    pub min_delta: f64,
    /// Return the best epoch's weights rather than the last (default true).
    #[serde(default = "yes")]
    pub restore_best: bool,
}

fn default_patience() -> usize {
    10
}
fn default_min_delta() -> f64 {
    1e-4
}
fn yes() -> bool {
    true
}

impl TrainConfig {
    /// Checks every field's range, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(NnError::invalid("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(NnError::invalid("batch_size", "must be at least 1"));
        }
        for (field, v) in [("l1", self.l1), ("l2", self.l2)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(NnError::invalid(
                    field,
                    format!("must be finite and ≥ 0, got {v}"),
                ));
            }
        }
        if let Some(c) = self.gradient_clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return Err(NnError::invalid(
                    "gradient_clip_norm",
                    format!("must be positive, got {c}"),
                ));
            }
        }
        for (field, f) in [
            ("validation_split", self.validation_split),
            ("test_split", self.test_split),
        ] {
            if !(0.0..1.0).contains(&f) {
                return Err(NnError::invalid(
                    field,
                    format!("must be in [0, 1), got {f}"),
                ));
            }
        }
        if let Some(es) = &self.early_stopping {
            if es.monitor != Monitor::TrainLoss && self.validation_split == 0.0 {
                return Err(NnError::invalid(
                    "early_stopping.monitor",
                    "monitoring validation needs validation_split > 0 (or monitor train_loss)",
                ));
            }
            if !(es.min_delta >= 0.0 && es.min_delta.is_finite()) {
                return Err(NnError::invalid("early_stopping.min_delta", "must be ≥ 0"));
            }
        }
        self.optimizer.validate()?;
        self.lr_schedule.validate()
    }
}

/// Asks a running fit to stop at the next batch. Cloning shares the flag.
#[derive(Clone, Debug, Default)]
pub struct Interrupter(Arc<AtomicBool>);

impl Interrupter {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests the stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the epoch callback wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on training.
    Continue,
    /// Stop after this epoch and keep the model.
    Stop,
}

/// Diagnostics of one layer over one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerDiagnostics {
    /// Layer index: hidden layers from 0, the output layer last.
    pub layer: usize,
    /// The layer's activation (`output` for the output layer). One of a few names, held as a
    /// `&'static str` when it is a known one: a history of 100,000 epochs would otherwise hold
    /// (and allocate) 100,000 copies of it a layer.
    #[serde(deserialize_with = "known_name")]
    pub activation: Cow<'static, str>,
    /// Mean over the epoch's batches of ‖∂L/∂W‖ (data loss only: no penalty, no clipping).
    pub grad_norm: Option<f64>,
    /// ‖W‖ at the end of the epoch.
    pub weight_norm: f64,
    /// Mean per-step update norm ‖ΔW‖ divided by ‖W‖ at the end of the epoch.
    pub update_ratio: Option<f64>,
    /// Fraction of unit activations whose derivative was below 1e-3 of its maximum (sigmoid,
    /// tanh).
    pub saturated_fraction: Option<f64>,
    /// Fraction of units whose pre-activation was ≤ 0 for every sample of the epoch (ReLU
    /// family).
    pub dead_fraction: Option<f64>,
    /// Mean PReLU slope.
    pub prelu_slope_mean: Option<f64>,
}

/// A layer's activation name, borrowed from the known names when it is one of them.
fn known_name<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Cow<'static, str>, D::Error> {
    let name = String::deserialize(d)?;
    let known = ACTIVATION_NAMES
        .iter()
        .chain(&["output"])
        .find(|&&n| n == name);
    Ok(known.map_or(Cow::Owned(name), |&n| Cow::Borrowed(n)))
}

/// What one epoch did. Epoch 0 describes the model before any update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0 before training, then 1, 2, …
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (epoch 0: evaluated without dropout).
    pub train_loss: f64,
    /// Validation loss at the end of the epoch.
    pub val_loss: Option<f64>,
    /// Training accuracy (classification).
    pub train_accuracy: Option<f64>,
    /// Validation accuracy (classification).
    pub val_accuracy: Option<f64>,
    /// Training R² (regression).
    pub train_r2: Option<f64>,
    /// Validation R² (regression).
    pub val_r2: Option<f64>,
    /// Training mean absolute error (regression).
    pub train_mae: Option<f64>,
    /// Validation mean absolute error (regression).
    pub val_mae: Option<f64>,
    /// `val_loss − train_loss`.
    pub generalization_gap: Option<f64>,
    /// Learning rate used in the epoch.
    pub learning_rate: f64,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
    /// Per-layer diagnostics, hidden layers then the output layer.
    pub layers: Vec<LayerDiagnostics>,
}

/// How a fit ended, in the numbers worth keeping once its history is gone: which epoch's
/// weights the model has, how many epochs ran, and the final metrics on each part of the split.
///
/// Declared once here and flattened into every record that describes a finished fit, so those
/// records share its field names. The default (no epoch run, zero training metrics, no
/// validation or test metrics) describes weights that no fit made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    /// The epoch whose weights the model has (the best one with `restore_best`).
    pub best_epoch: usize,
    /// Epochs actually run.
    pub epochs_run: usize,
    /// Whether early stopping (or the callback) ended training before `epochs`.
    pub stopped_early: bool,
    /// Final metrics on the training rows (evaluation mode).
    pub train: Metrics,
    /// Final metrics on the validation rows (none without a validation split).
    pub validation: Option<Metrics>,
    /// Final metrics on the test rows (none without a test split).
    pub test: Option<Metrics>,
}

/// The outcome of a fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Every epoch record, from epoch 0.
    pub history: Vec<EpochRecord>,
    /// Where training ended and the final metrics.
    #[serde(flatten)]
    pub summary: FitSummary,
    /// Rows in each part of the split.
    pub rows: [usize; 3],
}

/// Trains `model` on `data` and returns the trained model with its report.
///
/// `on_epoch` sees every record (epoch 0 first) and may stop training; `interrupter` cancels
/// it between batches with [`NnError::Cancelled`]. Subnormal floats are flushed to zero while
/// it runs ([`super::fpenv`]). A model that already has standardization
/// statistics (a warm start) keeps them.
pub fn fit(
    mut model: Model,
    data: &Dataset,
    config: &TrainConfig,
    interrupter: &Interrupter,
    on_epoch: &mut dyn FnMut(&EpochRecord) -> Control,
) -> Result<(Model, FitReport)> {
    config.validate()?;
    check_fit(&model, data)?;
    // The same arithmetic whatever thread calls: subnormals flushed (see `nn::fpenv`).
    let _flush = super::fpenv::Flush::subnormals();
    let split = data.split(config.validation_split, config.test_split, config.seed)?;
    if model.standardizer.is_none() && config.standardize {
        model.standardizer = Some(Standardizer::fit_rows(data.features.view(), &split.train));
    }
    model.labels = data.targets.names().to_vec();
    model.task = Some(data.task());
    let scaler = model.standardizer.as_ref().map(Standardizer::row_scaler);
    let train = Part {
        data,
        rows: &split.train,
        scaler: scaler.as_ref(),
    };
    let val = (!split.validation.is_empty()).then_some(Part {
        rows: &split.validation,
        ..train
    });
    let test = (!split.test.is_empty()).then_some(Part {
        rows: &split.test,
        ..train
    });
    let mut loop_ = Loop::new(&model, train, config);
    let mut history = Vec::new();

    let start = Instant::now();
    let record0 = loop_.epoch_zero(&model, train, val, start);
    let mut control = on_epoch(&record0);
    history.push(record0);
    let mut best = Best::new(config.early_stopping);
    let mut epochs_run = 0;
    let mut stopped_early = control == Control::Stop;
    for epoch in 1..=config.epochs {
        if control == Control::Stop {
            break;
        }
        let record = loop_.epoch(&mut model, train, val, epoch, interrupter)?;
        epochs_run = epoch;
        best.observe(&record, &model);
        loop_
            .scheduler
            .observe(record.val_loss.unwrap_or(record.train_loss));
        control = on_epoch(&record);
        history.push(record);
        if best.exhausted() {
            stopped_early = epoch < config.epochs;
            break;
        }
        if control == Control::Stop {
            stopped_early = epoch < config.epochs;
        }
    }
    let best_epoch = best.restore(&mut model).unwrap_or(epochs_run);
    let ws = &mut loop_.eval;
    let report = FitReport {
        summary: FitSummary {
            best_epoch,
            epochs_run,
            stopped_early,
            train: evaluate_part(&model, train, ws, None),
            validation: val.map(|v| evaluate_part(&model, v, ws, None)),
            test: test.map(|t| evaluate_part(&model, t, ws, None)),
        },
        rows: [split.train.len(), split.validation.len(), split.test.len()],
        history,
    };
    Ok((model, report))
}

/// Checks that the model's input and output widths and head fit the data.
pub fn check_fit(model: &Model, data: &Dataset) -> Result<()> {
    if data.n_features() != model.spec.inputs() {
        return Err(NnError::invalid(
            "layers[0]",
            format!(
                "the model takes {} inputs but the dataset has {} features",
                model.spec.inputs(),
                data.n_features()
            ),
        ));
    }
    let columns = match &data.targets {
        Targets::Classes { names, .. } => names.len(),
        Targets::MultiLabel { values, .. } | Targets::Values { values, .. } => values.ncols(),
    };
    let last = model.spec.layers.len() - 1;
    model
        .spec
        .output
        .check_task(model.spec.outputs(), data.task(), columns)
        .map_err(|m| NnError::invalid(format!("layers[{last}]"), m))
}

/// Loss and metrics of `model` on standardized `data`, in evaluation mode, in chunks.
pub fn evaluate(
    model: &Model,
    data: &Dataset,
    ws: &mut EvalBuffers,
    diag: Option<&mut [UnitStats]>,
) -> Metrics {
    let rows: Vec<usize> = (0..data.rows()).collect();
    let all = Part {
        data,
        rows: &rows,
        scaler: None,
    };
    let mut bufs = ChunkBuffers {
        eval: std::mem::take(ws),
        ..ChunkBuffers::default()
    };
    let metrics = evaluate_part(model, all, &mut bufs, diag);
    *ws = bufs.eval;
    metrics
}

/// One part of the split (training, validation or test rows): indices into the shared
/// dataset, and the standardizer applied to each row as it is gathered.
#[derive(Clone, Copy)]
struct Part<'a> {
    data: &'a Dataset,
    rows: &'a [usize],
    scaler: Option<&'a RowScaler>,
}

impl Part<'_> {
    fn len(&self) -> usize {
        self.rows.len()
    }

    /// Writes row `i` of the dataset into `dst`, standardized.
    fn copy_row(&self, i: usize, dst: &mut [f32]) {
        let src = self.data.features.row(i);
        match (self.scaler, src.as_slice()) {
            (Some(scaler), _) => scaler.scale_into(src, dst),
            (None, Some(src)) => dst.copy_from_slice(src),
            (None, None) => dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s),
        }
    }
}

/// Rows evaluated at once: the chunk buffers hold this many gathered rows. For the
/// 784-256-128-10 network the gathered rows and layer outputs of a chunk take 1.6 MB at 256
/// rows (3.1 MB at 512, of the ~9 MB a running job held), and W2 trains as fast as with 512
/// (`nn-bench w2`, alternating runs: 83–86k against 79–83k samples/s; 128 rows was ~8 %
/// slower).
const EVAL_CHUNK: usize = 256;

/// The evaluation buffers, and the gathered rows and targets of one chunk.
#[derive(Default)]
struct ChunkBuffers {
    eval: EvalBuffers,
    x: Vec<f32>,
    classes: Vec<u32>,
    dense: Vec<f32>,
}

/// Loss and metrics of `model` on a part of the split, in evaluation mode, in chunks of
/// [`EVAL_CHUNK`] rows gathered and standardized (the same chunks, and so the same sums, as
/// evaluating a standardized copy of the part).
fn evaluate_part(
    model: &Model,
    part: Part<'_>,
    bufs: &mut ChunkBuffers,
    mut diag: Option<&mut [UnitStats]>,
) -> Metrics {
    let mut acc = MetricAccumulator::default();
    let inputs = part.data.n_features();
    for chunk in part.rows.chunks(EVAL_CHUNK) {
        let n = chunk.len();
        bufs.x.resize(n * inputs, 0.0);
        for (&i, dst) in chunk.iter().zip(bufs.x.chunks_exact_mut(inputs)) {
            part.copy_row(i, dst);
        }
        let x = ArrayView2::from_shape((n, inputs), &bufs.x[..]).expect("sized");
        let logits = model.forward_eval(x, &mut bufs.eval, diag.as_deref_mut());
        match &part.data.targets {
            Targets::Classes { indices, .. } => {
                bufs.classes.clear();
                bufs.classes.extend(chunk.iter().map(|&i| indices[i]));
                model
                    .spec
                    .output
                    .evaluate(logits, BatchTargets::Classes(&bufs.classes), &mut acc)
            }
            Targets::MultiLabel { values, .. } | Targets::Values { values, .. } => {
                bufs.dense.clear();
                for &i in chunk {
                    bufs.dense.extend(values.row(i).iter());
                }
                let y =
                    ArrayView2::from_shape((n, values.ncols()), &bufs.dense[..]).expect("sized");
                model
                    .spec
                    .output
                    .evaluate(logits, BatchTargets::Dense(y), &mut acc)
            }
        }
    }
    acc.finish(model.spec.output)
}

/// State that lives across epochs.
struct Loop<'c> {
    config: &'c TrainConfig,
    ws: Workspace,
    eval: ChunkBuffers,
    optimizer: Optimizer,
    scheduler: Scheduler,
    shuffle_rng: Rng,
    dropout_rng: Rng,
    order: Vec<usize>,
    norms: Vec<[f64; 2]>,
    decays: Vec<bool>,
}

impl<'c> Loop<'c> {
    fn new(model: &Model, train: Part<'_>, config: &'c TrainConfig) -> Self {
        let lengths: Vec<usize> = model.params.iter().map(|p| p.data.len()).collect();
        let batch = config.batch_size.min(train.len());
        Self {
            config,
            ws: Workspace::new(model, batch),
            eval: ChunkBuffers::default(),
            optimizer: Optimizer::new(config.optimizer, &lengths),
            scheduler: Scheduler::new(
                config.lr_schedule,
                decimal(config.optimizer.learning_rate()),
                config.epochs,
            ),
            shuffle_rng: Rng::stream(config.seed, Stream::Shuffle),
            dropout_rng: Rng::stream(config.seed, Stream::Dropout),
            // Positions in `train.rows`, shuffled each epoch.
            order: (0..train.len()).collect(),
            norms: vec![[0.0; 2]; lengths.len()],
            decays: model
                .params
                .iter()
                .map(|p| p.kind == ParamKind::Weight)
                .collect(),
        }
    }

    fn epoch_zero(
        &mut self,
        model: &Model,
        train: Part<'_>,
        val: Option<Part<'_>>,
        start: Instant,
    ) -> EpochRecord {
        let mut stats: Vec<UnitStats> = model.spec.layers[1..=model.spec.hidden()]
            .iter()
            .map(|&n| UnitStats::new(n))
            .collect();
        let tm = evaluate_part(model, train, &mut self.eval, Some(&mut stats));
        let vm = val.map(|v| evaluate_part(model, v, &mut self.eval, None));
        let layers = layer_diagnostics(model, &stats, None, None);
        record(
            0,
            tm,
            vm,
            decimal(self.config.optimizer.learning_rate()),
            start,
            layers,
        )
    }

    fn epoch(
        &mut self,
        model: &mut Model,
        train: Part<'_>,
        val: Option<Part<'_>>,
        epoch: usize,
        interrupter: &Interrupter,
    ) -> Result<EpochRecord> {
        let start = Instant::now();
        let lr = self.scheduler.rate(epoch);
        if self.config.shuffle {
            self.shuffle_rng.shuffle(&mut self.order);
        }
        self.ws.reset_unit_stats();
        let n_layers = model.spec.layers.len() - 1;
        let mut grad_norm_sum = vec![0.0f64; n_layers];
        let mut update_norm_sum = vec![0.0f64; n_layers];
        let mut steps = 0usize;
        let mut acc = MetricAccumulator::default();
        let inputs = model.spec.inputs();
        let dense = !matches!(train.data.targets, Targets::Classes { .. });
        let layout = model.layer_params();
        let batch = self.ws.max_rows();
        let order = std::mem::take(&mut self.order);
        for rows_idx in order.chunks(batch) {
            if interrupter.is_stopped() {
                self.order = order;
                return Err(NnError::Cancelled { epoch });
            }
            // Batch norm cannot normalize a single row; skip a lone trailing row.
            if model.spec.batch_norm && rows_idx.len() == 1 && order.len() > 1 {
                continue;
            }
            let rows = rows_idx.len();
            gather(train, rows_idx, inputs, &mut self.ws);
            let loss_before = acc.loss_sum;
            self.ws
                .step(model, rows, dense, &mut self.dropout_rng, &mut acc);
            if !acc.loss_sum.is_finite() || !(acc.loss_sum - loss_before).is_finite() {
                self.order = order;
                return Err(diverged(epoch, "the training loss became non-finite"));
            }
            // The optimizer measures the gradient it is given; when penalties or clipping
            // change it first, measure the data-loss gradient here.
            let modified = self.config.l1 > 0.0
                || self.config.l2 > 0.0
                || self.config.gradient_clip_norm.is_some();
            if modified {
                for (s, sq) in grad_norm_sum.iter_mut().zip(self.ws.weight_grad_sq()) {
                    *s += sq.sqrt();
                }
                self.apply_penalties_and_clip(model);
            }
            let grads = &self.ws.grads;
            let decays = &self.decays;
            self.optimizer.step(
                lr as f32,
                model
                    .params
                    .iter_mut()
                    .zip(grads)
                    .zip(decays)
                    .map(|((p, g), &d)| (p.data.as_mut_slice(), g.as_slice(), d)),
                &mut self.norms,
            );
            for (l, lp) in layout.iter().enumerate() {
                update_norm_sum[l] += self.norms[lp.weight][0].sqrt();
                if !modified {
                    grad_norm_sum[l] += self.norms[lp.weight][1].sqrt();
                }
            }
            steps += 1;
        }
        self.order = order;
        if !model.is_finite() {
            return Err(diverged(epoch, "a weight became non-finite"));
        }
        let tm = acc.finish(model.spec.output);
        let vm = val.map(|v| evaluate_part(model, v, &mut self.eval, None));
        if vm.is_some_and(|m| !m.loss.is_finite()) {
            return Err(diverged(epoch, "the validation loss became non-finite"));
        }
        let steps = steps.max(1) as f64;
        let grad: Vec<f64> = grad_norm_sum.iter().map(|s| s / steps).collect();
        let upd: Vec<f64> = update_norm_sum.iter().map(|s| s / steps).collect();
        let layers = layer_diagnostics(model, &self.ws.unit_stats, Some(&grad), Some(&upd));
        Ok(record(epoch, tm, vm, lr, start, layers))
    }

    /// Adds the L1/L2 penalty gradients to the weight matrices, then clips the global norm.
    fn apply_penalties_and_clip(&mut self, model: &Model) {
        add_penalty_gradients(model, self.config.l1, self.config.l2, &mut self.ws.grads);
        if let Some(max_norm) = self.config.gradient_clip_norm {
            let total = self
                .ws
                .grads
                .iter()
                .map(|g| sum_squares(g))
                .sum::<f64>()
                .sqrt();
            if total > max_norm as f64 {
                let s = (max_norm as f64 / (total + 1e-6)) as f32;
                self.ws.grads.iter_mut().for_each(|g| scale(g, s));
            }
        }
    }
}

/// The L1/L2 penalty `l1·Σ|w| + l2/2·Σw²` over the weight matrices.
pub fn penalty(model: &Model, l1: f32, l2: f32) -> f64 {
    model
        .params
        .iter()
        .filter(|p| p.kind == ParamKind::Weight)
        .flat_map(|p| &p.data)
        .map(|&w| l1 as f64 * (w as f64).abs() + 0.5 * l2 as f64 * (w as f64).powi(2))
        .sum()
}

/// Adds the gradient of [`penalty`] to `grads` (a zero subgradient for L1 at w = 0).
pub fn add_penalty_gradients(model: &Model, l1: f32, l2: f32, grads: &mut [Vec<f32>]) {
    if l1 == 0.0 && l2 == 0.0 {
        return;
    }
    for (g, p) in grads.iter_mut().zip(&model.params) {
        if p.kind == ParamKind::Weight {
            for (gi, &w) in g.iter_mut().zip(&p.data) {
                let sign = (w > 0.0) as i32 as f32 - (w < 0.0) as i32 as f32;
                *gi += l2 * w + l1 * sign;
            }
        }
    }
}

/// The `f64` a user meant by an `f32` rate: `0.05f32 as f64` is 0.05000000074505806, which
/// would then show in every epoch record; the shortest decimal of the `f32` is what was asked.
fn decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

fn diverged(epoch: usize, message: &str) -> NnError {
    NnError::Diverged {
        epoch,
        message: message.into(),
        hint: "lower the learning rate, enable gradient_clip_norm, or standardize the inputs"
            .into(),
    }
}

/// Copies the training rows at positions `batch` of `train` (features standardized, and
/// targets) into the workspace.
fn gather(train: Part<'_>, batch: &[usize], inputs: usize, ws: &mut Workspace) {
    let rows = || batch.iter().map(|&p| train.rows[p]);
    for (i, dst) in rows().zip(ws.x.chunks_exact_mut(inputs)) {
        train.copy_row(i, dst);
    }
    match &train.data.targets {
        Targets::Classes { indices, .. } => {
            for (k, i) in rows().enumerate() {
                ws.y_classes[k] = indices[i];
            }
        }
        Targets::MultiLabel { values, .. } | Targets::Values { values, .. } => {
            let cols = values.ncols();
            for (k, i) in rows().enumerate() {
                for (d, s) in ws.y_dense[k * cols..(k + 1) * cols]
                    .iter_mut()
                    .zip(values.row(i))
                {
                    *d = *s;
                }
            }
        }
    }
}

fn record(
    epoch: usize,
    train: Metrics,
    val: Option<Metrics>,
    lr: f64,
    start: Instant,
    layers: Vec<LayerDiagnostics>,
) -> EpochRecord {
    EpochRecord {
        epoch,
        train_loss: train.loss,
        val_loss: val.map(|v| v.loss),
        train_accuracy: train.accuracy,
        val_accuracy: val.and_then(|v| v.accuracy),
        train_r2: train.r2,
        val_r2: val.and_then(|v| v.r2),
        train_mae: train.mae,
        val_mae: val.and_then(|v| v.mae),
        generalization_gap: val.map(|v| v.loss - train.loss),
        learning_rate: lr,
        seconds: start.elapsed().as_secs_f64(),
        layers,
    }
}

fn layer_diagnostics(
    model: &Model,
    stats: &[UnitStats],
    grad_norms: Option<&[f64]>,
    update_norms: Option<&[f64]>,
) -> Vec<LayerDiagnostics> {
    let hidden = model.spec.hidden();
    model
        .layer_params()
        .iter()
        .enumerate()
        .map(|(l, lp)| {
            let act = model.spec.activations.get(l).copied();
            let weight_norm = sum_squares(&model.params[lp.weight].data).sqrt();
            let unit = (l < hidden).then(|| &stats[l]);
            LayerDiagnostics {
                layer: l,
                activation: Cow::Borrowed(act.map_or("output", |a| a.name())),
                grad_norm: grad_norms.map(|g| g[l]),
                weight_norm,
                update_ratio: update_norms.map(|u| u[l] / weight_norm.max(1e-12)),
                saturated_fraction: unit.zip(act).and_then(|(s, a)| s.saturated_fraction(a)),
                dead_fraction: unit.zip(act).and_then(|(s, a)| s.dead_fraction(a)),
                prelu_slope_mean: lp.prelu.map(|p| {
                    let d = &model.params[p].data;
                    d.iter().map(|&v| v as f64).sum::<f64>() / d.len() as f64
                }),
            }
        })
        .collect()
}

/// Tracks the best epoch for early stopping and restoring.
struct Best {
    settings: Option<EarlyStopping>,
    value: f64,
    epoch: Option<usize>,
    wait: usize,
    snapshot: Option<Model>,
}

impl Best {
    fn new(settings: Option<EarlyStopping>) -> Self {
        Self {
            settings,
            value: f64::NAN,
            epoch: None,
            wait: 0,
            snapshot: None,
        }
    }

    fn observe(&mut self, r: &EpochRecord, model: &Model) {
        let Some(s) = self.settings else { return };
        // Higher is better for accuracy: compare its negation.
        let v = match s.monitor {
            Monitor::ValLoss => r.val_loss.unwrap_or(r.train_loss),
            Monitor::TrainLoss => r.train_loss,
            Monitor::ValAccuracy => -r.val_accuracy.or(r.val_r2).unwrap_or(0.0),
        };
        if self.epoch.is_none() || v < self.value - s.min_delta {
            self.value = v;
            self.epoch = Some(r.epoch);
            self.wait = 0;
            if s.restore_best {
                self.snapshot = Some(model.clone());
            }
        } else {
            self.wait += 1;
        }
    }

    fn exhausted(&self) -> bool {
        self.settings
            .is_some_and(|s| self.wait >= s.patience.max(1))
    }

    /// Puts the best weights back (with `restore_best`) and returns the epoch they are from.
    fn restore(self, model: &mut Model) -> Option<usize> {
        let snapshot = self.snapshot?;
        model.params = snapshot.params;
        model.bn_stats = snapshot.bn_stats;
        self.epoch
    }
}
