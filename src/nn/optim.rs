//! Optimizers: SGD (momentum, Nesterov), Adam, AdamW and RMSprop, as PyTorch defines them.
//!
//! Each update follows the corresponding `torch.optim` single-tensor algorithm line by line,
//! so one step from the same state gives the same numbers (see the reference test). Weight
//! decay (coupled L2 for SGD/Adam/RMSprop, decoupled for AdamW) applies to the weight matrices
//! only: biases, batch-norm scales and shifts and PReLU slopes are not decayed.

use multiversion::multiversion;
use serde::{Deserialize, Serialize};

use super::error::{NnError, Result};
use super::parallel;

/// Which optimizer, with its hyper-parameters (PyTorch's defaults where omitted).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// Stochastic gradient descent.
    Sgd {
        /// Step size (default 0.01).
        #[serde(default = "lr_sgd")]
        learning_rate: f32,
        /// Momentum factor (default 0).
        #[serde(default)]
        momentum: f32,
        /// Nesterov momentum (default false; needs momentum > 0).
        #[serde(default)]
        nesterov: bool,
        /// Coupled L2 weight decay (default 0).
        #[serde(default)]
        weight_decay: f32,
    },
    /// Adam (Kingma & Ba 2015).
    Adam {
        /// Step size (default 0.001).
        #[serde(default = "lr_adam")]
        learning_rate: f32,
        /// First-moment decay (default 0.9).
        #[serde(default = "beta1")]
        beta1: f32,
        /// Second-moment decay (default 0.999).
        #[serde(default = "beta2")]
        beta2: f32,
        /// Denominator guard (default 1e-8).
        #[serde(default = "eps")]
        eps: f32,
        /// Coupled L2 weight decay (default 0).
        #[serde(default)]
        weight_decay: f32,
    },
    /// Adam with decoupled weight decay (Loshchilov & Hutter 2019).
    #[serde(rename = "adamw")]
    AdamW {
        /// Step size (default 0.001).
        #[serde(default = "lr_adam")]
        learning_rate: f32,
        /// First-moment decay (default 0.9).
        #[serde(default = "beta1")]
        beta1: f32,
        /// Second-moment decay (default 0.999).
        #[serde(default = "beta2")]
        beta2: f32,
        /// Denominator guard (default 1e-8).
        #[serde(default = "eps")]
        eps: f32,
        /// Decoupled weight decay (default 0.01).
        #[serde(default = "wd_adamw")]
        weight_decay: f32,
    },
    /// RMSprop (Hinton's lecture 6e).
    Rmsprop {
        /// Step size (default 0.01).
        #[serde(default = "lr_sgd")]
        learning_rate: f32,
        /// Square-average decay (default 0.99).
        #[serde(default = "rms_alpha")]
        alpha: f32,
        /// Denominator guard (default 1e-8).
        #[serde(default = "eps")]
        eps: f32,
        /// Momentum factor (default 0).
        #[serde(default)]
        momentum: f32,
        /// Coupled L2 weight decay (default 0).
        #[serde(default)]
        weight_decay: f32,
    },
}

fn lr_sgd() -> f32 {
    0.01
}
fn lr_adam() -> f32 {
    0.001
}
fn beta1() -> f32 {
    0.9
}
fn beta2() -> f32 {
    0.999
}
fn eps() -> f32 {
    1e-8
}
fn wd_adamw() -> f32 {
    0.01
}
fn rms_alpha() -> f32 {
    0.99
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self::adam(lr_adam())
    }
}

/// The names accepted for the optimizer `kind`.
pub const OPTIMIZER_NAMES: &[&str] = &["sgd", "adam", "adamw", "rmsprop"];

impl OptimizerConfig {
    /// Adam at `learning_rate` with PyTorch's other defaults (β 0.9/0.999, ε 1e-8, no decay).
    pub fn adam(learning_rate: f32) -> Self {
        OptimizerConfig::Adam {
            learning_rate,
            beta1: beta1(),
            beta2: beta2(),
            eps: eps(),
            weight_decay: 0.0,
        }
    }

    /// The base learning rate.
    pub fn learning_rate(&self) -> f32 {
        match *self {
            Self::Sgd { learning_rate, .. }
            | Self::Adam { learning_rate, .. }
            | Self::AdamW { learning_rate, .. }
            | Self::Rmsprop { learning_rate, .. } => learning_rate,
        }
    }

    /// Checks every hyper-parameter's range, naming it as `optimizer.<name>`.
    pub fn validate(&self) -> Result<()> {
        let check = |name: &str, v: f32, lo: f32, hi: f32, lo_open: bool| -> Result<()> {
            let ok = v.is_finite() && if lo_open { v > lo } else { v >= lo } && v <= hi;
            if ok {
                Ok(())
            } else {
                let lb = if lo_open { "(" } else { "[" };
                Err(NnError::invalid(
                    format!("optimizer.{name}"),
                    format!("must be in {lb}{lo}, {hi}], got {v}"),
                ))
            }
        };
        check("learning_rate", self.learning_rate(), 0.0, 10.0, true)?;
        match *self {
            Self::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => {
                check("momentum", momentum, 0.0, 0.9999, false)?;
                check("weight_decay", weight_decay, 0.0, 1.0, false)?;
                if nesterov && momentum == 0.0 {
                    return Err(NnError::invalid(
                        "optimizer.nesterov",
                        "Nesterov momentum needs momentum > 0",
                    ));
                }
            }
            Self::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            }
            | Self::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                check("beta1", beta1, 0.0, 0.9999, false)?;
                check("beta2", beta2, 0.0, 0.999999, false)?;
                check("eps", eps, 0.0, 1.0, true)?;
                check("weight_decay", weight_decay, 0.0, 1.0, false)?;
            }
            Self::Rmsprop {
                alpha,
                eps,
                momentum,
                weight_decay,
                ..
            } => {
                check("alpha", alpha, 0.0, 0.9999, false)?;
                check("eps", eps, 0.0, 1.0, true)?;
                check("momentum", momentum, 0.0, 0.9999, false)?;
                check("weight_decay", weight_decay, 0.0, 1.0, false)?;
            }
        }
        Ok(())
    }
}

/// An optimizer with its per-parameter state.
#[derive(Clone, Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    /// First moment (Adam), momentum buffer (SGD, RMSprop).
    m: Vec<Vec<f32>>,
    /// Second moment (Adam), square average (RMSprop).
    v: Vec<Vec<f32>>,
    step: u64,
    /// Elements of all the tensors.
    elements: usize,
}

impl Optimizer {
    /// An optimizer for tensors of the given lengths, with zeroed state.
    pub fn new(config: OptimizerConfig, lengths: &[usize]) -> Self {
        let zeros = || lengths.iter().map(|&n| vec![0.0; n]).collect();
        let (m, v) = match config {
            OptimizerConfig::Sgd { momentum: 0.0, .. } => (Vec::new(), Vec::new()),
            OptimizerConfig::Sgd { .. } => (zeros(), Vec::new()),
            OptimizerConfig::Adam { .. } | OptimizerConfig::AdamW { .. } => (zeros(), zeros()),
            OptimizerConfig::Rmsprop { momentum: 0.0, .. } => (Vec::new(), zeros()),
            OptimizerConfig::Rmsprop { .. } => (zeros(), zeros()),
        };
        Self {
            config,
            m,
            v,
            step: 0,
            elements: lengths.iter().sum(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// One update of every tensor at learning rate `lr`. `tensors` yields, in the order of the
    /// `lengths` given to [`Optimizer::new`], each parameter, its gradient and whether it is
    /// decayed. `norms[i]` receives `[‖Δθ_i‖², ‖g_i‖²]`: the update and the gradient as given,
    /// measured in the same pass so that diagnostics cost no extra sweep over the parameters.
    ///
    /// Each tensor is updated in [`BLOCK`]s, shared with the helpers of the calling thread's
    /// [team](super::parallel) when the tensors have [`PARALLEL_ELEMENTS`] or more.
    pub fn step<'a>(
        &mut self,
        lr: f32,
        tensors: impl Iterator<Item = (&'a mut [f32], &'a [f32], bool)>,
        norms: &mut [[f64; 2]],
    ) {
        self.step += 1;
        let rule = Rule {
            config: self.config,
            lr,
            t: self.step as i32,
        };
        let (mut ms, mut vs) = (self.m.iter_mut(), self.v.iter_mut());
        let blocks = tensors.enumerate().flat_map(|(tensor, (p, g, decays))| {
            let mut m = ms.next().map(|m| m.chunks_mut(BLOCK));
            let mut v = vs.next().map(|v| v.chunks_mut(BLOCK));
            p.chunks_mut(BLOCK)
                .zip(g.chunks(BLOCK))
                .map(move |(p, g)| Block {
                    tensor,
                    decays,
                    p,
                    g,
                    m: m.as_mut().and_then(Iterator::next),
                    v: v.as_mut().and_then(Iterator::next),
                    norms: [0.0; 2],
                })
        });
        norms.fill([0.0; 2]);
        let mut add = |b: &Block<'_>| {
            let n = &mut norms[b.tensor];
            n[0] += b.norms[0];
            n[1] += b.norms[1];
        };
        if self.elements < PARALLEL_ELEMENTS {
            for mut b in blocks {
                b.norms = rule.apply(&mut b);
                add(&b);
            }
        } else {
            let mut blocks: Vec<Block<'_>> = blocks.collect();
            parallel::for_each_mut(&mut blocks, &|b| b.norms = rule.apply(b));
            blocks.iter().for_each(add);
        }
    }
}

/// Elements of a tensor that one call of a kernel updates: every tensor is cut into blocks of
/// this many (the last one shorter), from its length alone, and each block's ‖Δθ‖² and ‖g‖²
/// are summed apart, then added in block order, so that the norms do not depend on which
/// thread updated which block. A tensor of one block is summed as a whole tensor always was.
/// 16,384 elements are 1,024 to each of the kernels' `LANES`: what `linalg::sum_squares`
/// sums in `f32` before folding into `f64`.
pub const BLOCK: usize = 1 << 14;

/// Elements a step updates from which its blocks are shared with the team's helpers: below,
/// handing them out costs more than the helpers win.
pub const PARALLEL_ELEMENTS: usize = 1 << 18;

/// A block of one tensor with its state, and what its update measured.
struct Block<'a> {
    tensor: usize,
    decays: bool,
    p: &'a mut [f32],
    g: &'a [f32],
    /// First moment (Adam), momentum buffer (SGD, RMSprop), if the optimizer keeps one.
    m: Option<&'a mut [f32]>,
    /// Second moment (Adam), square average (RMSprop), if the optimizer keeps one.
    v: Option<&'a mut [f32]>,
    norms: [f64; 2],
}

/// What one step applies to every block.
#[derive(Clone, Copy)]
struct Rule {
    config: OptimizerConfig,
    lr: f32,
    /// The step's number, from 1.
    t: i32,
}

impl Rule {
    /// Updates `b` and returns its `[‖Δθ‖², ‖g‖²]`.
    fn apply(&self, b: &mut Block<'_>) -> [f64; 2] {
        let (lr, t) = (self.lr, self.t);
        let (p, g, decays) = (&mut *b.p, b.g, b.decays);
        match self.config {
            OptimizerConfig::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => {
                let wd = if decays { weight_decay } else { 0.0 };
                sgd_kernel(p, g, b.m.as_deref_mut(), lr, momentum, nesterov, wd, t == 1)
            }
            OptimizerConfig::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                let wd = if decays { weight_decay } else { 0.0 };
                let (bc1, bc2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
                let k = AdamConsts::new(lr, beta1, beta2, eps, bc1, bc2);
                let (m, v) = adam_state(b.m.as_deref_mut(), b.v.as_deref_mut());
                adam_kernel(p, g, m, v, k, wd, 1.0)
            }
            OptimizerConfig::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                let shrink = if decays { 1.0 - lr * weight_decay } else { 1.0 };
                let (bc1, bc2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
                let k = AdamConsts::new(lr, beta1, beta2, eps, bc1, bc2);
                let (m, v) = adam_state(b.m.as_deref_mut(), b.v.as_deref_mut());
                adam_kernel(p, g, m, v, k, 0.0, shrink)
            }
            OptimizerConfig::Rmsprop {
                alpha,
                eps,
                momentum,
                weight_decay,
                ..
            } => {
                let wd = if decays { weight_decay } else { 0.0 };
                let sq_avg = b.v.as_deref_mut().expect("RMSprop keeps a square average");
                rmsprop_kernel(
                    p,
                    g,
                    sq_avg,
                    b.m.as_deref_mut(),
                    lr,
                    alpha,
                    eps,
                    momentum,
                    wd,
                )
            }
        }
    }
}

/// Adam's two moments, which [`Optimizer::new`] always allocates for it.
fn adam_state<'b>(
    m: Option<&'b mut [f32]>,
    v: Option<&'b mut [f32]>,
) -> (&'b mut [f32], &'b mut [f32]) {
    (
        m.expect("Adam keeps a first moment"),
        v.expect("Adam keeps a second moment"),
    )
}

#[derive(Clone, Copy)]
struct AdamConsts {
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32,
    inv_bc2_sqrt: f32,
}

impl AdamConsts {
    fn new(lr: f32, beta1: f32, beta2: f32, eps: f32, bc1: f32, bc2: f32) -> Self {
        Self {
            beta1,
            beta2,
            eps,
            step_size: lr / bc1,
            // PyTorch divides by √bc2; one multiply by its reciprocal saves a vector division
            // per element and differs by at most an ulp.
            inv_bc2_sqrt: 1.0 / bc2.sqrt(),
        }
    }
}

/// Lanes of the ‖Δθ‖² accumulator: a single `f32` accumulator would force the loop to run
/// one element at a time (float addition is not reassociated), sixteen independent ones let
/// each kernel compile to full-width vector code.
const LANES: usize = 16;

fn lanes_total(acc: [f32; LANES], tail: f32) -> f64 {
    acc.iter().map(|&v| v as f64).sum::<f64>() + tail as f64
}

/// PyTorch `_single_tensor_adam` (and AdamW when `shrink = 1 − lr·wd`): returns ‖Δθ‖².
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn adam_kernel(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    k: AdamConsts,
    wd: f32,
    shrink: f32,
) -> [f64; 2] {
    #[inline(always)]
    fn one(
        p: &mut f32,
        g: f32,
        m: &mut f32,
        v: &mut f32,
        k: AdamConsts,
        wd: f32,
        shrink: f32,
    ) -> f32 {
        let old = *p;
        let g = g + wd * old;
        *m += (g - *m) * (1.0 - k.beta1);
        *v = *v * k.beta2 + (1.0 - k.beta2) * g * g;
        let denom = v.sqrt() * k.inv_bc2_sqrt + k.eps;
        *p = old * shrink - k.step_size * *m / denom;
        *p - old
    }
    let (pc, pt) = p.as_chunks_mut::<LANES>();
    let (gc, gt) = g.as_chunks::<LANES>();
    let (mc, mt) = m.as_chunks_mut::<LANES>();
    let (vc, vt) = v.as_chunks_mut::<LANES>();
    let (mut acc, mut gacc) = ([0.0f32; LANES], [0.0f32; LANES]);
    for (((p, g), m), v) in pc.iter_mut().zip(gc).zip(mc.iter_mut()).zip(vc.iter_mut()) {
        for l in 0..LANES {
            let d = one(&mut p[l], g[l], &mut m[l], &mut v[l], k, wd, shrink);
            acc[l] += d * d;
            gacc[l] += g[l] * g[l];
        }
    }
    let (mut tail, mut gtail) = (0.0f32, 0.0f32);
    for (((p, &g), m), v) in pt.iter_mut().zip(gt).zip(mt.iter_mut()).zip(vt.iter_mut()) {
        let d = one(p, g, m, v, k, wd, shrink);
        tail += d * d;
        gtail += g * g;
    }
    [lanes_total(acc, tail), lanes_total(gacc, gtail)]
}

/// PyTorch `_single_tensor_sgd` (dampening 0): returns ‖Δθ‖².
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn sgd_kernel(
    p: &mut [f32],
    g: &[f32],
    buf: Option<&mut [f32]>,
    lr: f32,
    momentum: f32,
    nesterov: bool,
    wd: f32,
    first: bool,
) -> [f64; 2] {
    let (mut acc, mut gacc) = ([0.0f32; LANES], [0.0f32; LANES]);
    let (mut tail, mut gtail) = (0.0f32, 0.0f32);
    match buf {
        None => {
            let (pc, pt) = p.as_chunks_mut::<LANES>();
            let (gc, gt) = g.as_chunks::<LANES>();
            for (p, g) in pc.iter_mut().zip(gc) {
                for l in 0..LANES {
                    let d = -lr * (g[l] + wd * p[l]);
                    p[l] += d;
                    acc[l] += d * d;
                    gacc[l] += g[l] * g[l];
                }
            }
            for (p, &g) in pt.iter_mut().zip(gt) {
                let d = -lr * (g + wd * *p);
                *p += d;
                tail += d * d;
                gtail += g * g;
            }
        }
        Some(buf) => {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn one(
                p: &mut f32,
                g: f32,
                b: &mut f32,
                lr: f32,
                mom: f32,
                nesterov: bool,
                wd: f32,
                first: bool,
            ) -> f32 {
                let g = g + wd * *p;
                // PyTorch starts the buffer at the first gradient, not at momentum·0 + g
                // (the same here, since dampening is 0).
                *b = if first { g } else { mom * *b + g };
                let step = if nesterov { g + mom * *b } else { *b };
                let d = -lr * step;
                *p += d;
                d
            }
            let (pc, pt) = p.as_chunks_mut::<LANES>();
            let (gc, gt) = g.as_chunks::<LANES>();
            let (bc, bt) = buf.as_chunks_mut::<LANES>();
            for ((p, g), b) in pc.iter_mut().zip(gc).zip(bc.iter_mut()) {
                for l in 0..LANES {
                    let d = one(
                        &mut p[l], g[l], &mut b[l], lr, momentum, nesterov, wd, first,
                    );
                    acc[l] += d * d;
                    gacc[l] += g[l] * g[l];
                }
            }
            for ((p, &g), b) in pt.iter_mut().zip(gt).zip(bt.iter_mut()) {
                let d = one(p, g, b, lr, momentum, nesterov, wd, first);
                tail += d * d;
                gtail += g * g;
            }
        }
    }
    [lanes_total(acc, tail), lanes_total(gacc, gtail)]
}

/// PyTorch `_single_tensor_rmsprop` (not centered): returns ‖Δθ‖².
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn rmsprop_kernel(
    p: &mut [f32],
    g: &[f32],
    sq_avg: &mut [f32],
    buf: Option<&mut [f32]>,
    lr: f32,
    alpha: f32,
    eps: f32,
    momentum: f32,
    wd: f32,
) -> [f64; 2] {
    // RMSprop is not on the benchmarked path; a plain loop keeps it readable.
    let (mut sq, mut gsq) = (0.0f64, 0.0f64);
    let mut buf = buf;
    for (i, ((p, &g), s)) in p.iter_mut().zip(g).zip(sq_avg.iter_mut()).enumerate() {
        gsq += (g * g) as f64;
        let g = g + wd * *p;
        *s = *s * alpha + (1.0 - alpha) * g * g;
        let d = match buf.as_deref_mut() {
            Some(b) => {
                b[i] = momentum * b[i] + g / (s.sqrt() + eps);
                -lr * b[i]
            }
            None => -lr * g / (s.sqrt() + eps),
        };
        *p += d;
        sq += (d * d) as f64;
    }
    [sq, gsq]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_parse_with_defaults_and_reject_unknown_fields() {
        let c: OptimizerConfig = serde_json::from_str(r#"{"kind":"adamw"}"#).unwrap();
        assert!(matches!(c, OptimizerConfig::AdamW { weight_decay, .. } if weight_decay == 0.01));
        let c: OptimizerConfig =
            serde_json::from_str(r#"{"kind":"sgd","momentum":0.9,"nesterov":true}"#).unwrap();
        assert!(c.validate().is_ok());
        assert!(serde_json::from_str::<OptimizerConfig>(r#"{"kind":"adam","lr":1}"#).is_err());
        assert!(serde_json::from_str::<OptimizerConfig>(r#"{"kind":"lbfgs"}"#).is_err());
        let bad: OptimizerConfig =
            serde_json::from_str(r#"{"kind":"adam","learning_rate":-1}"#).unwrap();
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("optimizer.learning_rate"), "{err}");
    }

    /// Three steps of `config` over a tensor of several blocks (the last one short) and a
    /// small one, on `helpers` helper threads: the parameters and the norms of each step.
    fn three_steps(config: OptimizerConfig, helpers: usize) -> (Vec<Vec<u32>>, Vec<[u64; 2]>) {
        let lengths = [PARALLEL_ELEMENTS + BLOCK / 2 + 3, 10];
        let mut params: Vec<Vec<f32>> = lengths
            .iter()
            .map(|&n| (0..n).map(|i| ((i % 101) as f32 - 50.0) * 0.01).collect())
            .collect();
        let team = parallel::Team::new(helpers, std::sync::Arc::new(|| {})).unwrap();
        let _entered = team.enter();
        let mut opt = Optimizer::new(config, &lengths);
        let mut norms_seen = Vec::new();
        for step in 0..3 {
            let grads: Vec<Vec<f32>> = lengths
                .iter()
                .map(|&n| {
                    (0..n)
                        .map(|i| ((i * 7 + step) % 13) as f32 * 0.1 - 0.6)
                        .collect()
                })
                .collect();
            let mut norms = [[0.0; 2]; 2];
            let tensors = params
                .iter_mut()
                .zip(&grads)
                .enumerate()
                .map(|(i, (p, g))| (p.as_mut_slice(), g.as_slice(), i == 0));
            opt.step(config.learning_rate(), tensors, &mut norms);
            norms_seen.extend(norms.map(|n| n.map(f64::to_bits)));
        }
        let bits = params
            .iter()
            .map(|p| p.iter().map(|v| v.to_bits()).collect())
            .collect();
        (bits, norms_seen)
    }

    #[test]
    fn updates_and_norms_do_not_depend_on_the_threads() {
        for config in [
            r#"{"kind": "adam", "weight_decay": 0.01}"#,
            r#"{"kind": "adamw"}"#,
            r#"{"kind": "sgd", "momentum": 0.9, "nesterov": true, "weight_decay": 0.01}"#,
            r#"{"kind": "sgd"}"#,
            r#"{"kind": "rmsprop", "momentum": 0.5}"#,
            r#"{"kind": "rmsprop"}"#,
        ] {
            let config: OptimizerConfig = serde_json::from_str(config).unwrap();
            let alone = three_steps(config, 0);
            assert!(alone.1.iter().all(|n| n[0] != 0 && n[1] != 0), "{config:?}");
            for helpers in [1, 3] {
                assert!(
                    three_steps(config, helpers) == alone,
                    "{config:?}, {helpers} helpers"
                );
            }
        }
    }

    #[test]
    fn plain_sgd_steps_against_the_gradient() {
        let mut opt = Optimizer::new(
            OptimizerConfig::Sgd {
                learning_rate: 0.5,
                momentum: 0.0,
                nesterov: false,
                weight_decay: 0.0,
            },
            &[2],
        );
        let mut p = vec![1.0, -1.0];
        let g = vec![0.2, -0.4];
        let mut norms = [[0.0; 2]];
        opt.step(
            0.5,
            std::iter::once((p.as_mut_slice(), g.as_slice(), true)),
            &mut norms,
        );
        assert_eq!(p, vec![0.9, -0.8]);
        assert!((norms[0][0] - (0.01 + 0.04)).abs() < 1e-7);
        assert!((norms[0][1] - (0.04 + 0.16)).abs() < 1e-7);
    }
}
