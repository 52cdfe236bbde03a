//! Hidden-layer activation functions: forward, derivative, and what they tell about training.
//!
//! Every derivative is taken with respect to the pre-activation `u`. Where the function allows
//! it, the derivative is computed from the output `a` (sigmoid `a(1-a)`, tanh `1-a²`, ELU/SELU
//! `a + α` on the negative side), which is cheaper; each formula is written against the tensor
//! it is valid for, never `a(1-a)` on `u` (the classic bug). GELU is the exact form,
//! `u·Φ(u)` with the Gaussian CDF (PyTorch's default `nn.GELU()`), not the tanh approximation.
//!
//! A serialized activation is either a bare name (`"relu"`) or an object with its parameters
//! (`{"name": "leaky_relu", "alpha": 0.1}`).

use std::fmt;

use multiversion::multiversion;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::linalg::{PARALLEL_PASS, PASS_BLOCK};
use super::{parallel, vmath};

/// SELU's fixed scale λ (Klambauer et al. 2017), written as published.
#[allow(clippy::excessive_precision)]
pub const SELU_LAMBDA: f32 = 1.050_700_987_355_480_5;
/// SELU's fixed α, written as published.
#[allow(clippy::excessive_precision)]
pub const SELU_ALPHA: f32 = 1.673_263_242_354_377_3;

/// A hidden-layer activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `u`.
    Identity,
    /// `1 / (1 + e^-u)`.
    Sigmoid,
    /// `tanh u`.
    Tanh,
    /// `max(u, 0)`.
    Relu,
    /// `u` for `u > 0`, else `alpha·u`.
    LeakyRelu {
        /// Slope on the negative side.
        alpha: f32,
    },
    /// Like leaky ReLU with a slope per unit learned with the weights.
    Prelu {
        /// The slopes' initial value.
        init: f32,
    },
    /// `u` for `u > 0`, else `alpha·(e^u − 1)`.
    Elu {
        /// Saturation value on the negative side.
        alpha: f32,
    },
    /// `λ·elu_α(u)` with the self-normalizing constants.
    Selu,
    /// `u·Φ(u)` (exact, erf-based).
    Gelu,
    /// `u·σ(u)`, also called swish.
    Silu,
    /// `ln(1 + e^u)`, computed stably.
    Softplus,
}

/// The names accepted for [`Activation`], for error messages.
pub const ACTIVATION_NAMES: &[&str] = &[
    "identity",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "prelu",
    "elu",
    "selu",
    "gelu",
    "silu",
    "softplus",
];

impl Activation {
    /// The activation of a name with default parameters (leaky_relu α = 0.01, prelu 0.25,
    /// elu α = 1), as PyTorch defaults them.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "identity" | "linear" => Self::Identity,
            "sigmoid" | "logistic" => Self::Sigmoid,
            "tanh" => Self::Tanh,
            "relu" => Self::Relu,
            "leaky_relu" => Self::LeakyRelu { alpha: 0.01 },
            "prelu" => Self::Prelu { init: 0.25 },
            "elu" => Self::Elu { alpha: 1.0 },
            "selu" => Self::Selu,
            "gelu" => Self::Gelu,
            "silu" | "swish" => Self::Silu,
            "softplus" => Self::Softplus,
            _ => return None,
        })
    }

    /// The canonical name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Sigmoid => "sigmoid",
            Self::Tanh => "tanh",
            Self::Relu => "relu",
            Self::LeakyRelu { .. } => "leaky_relu",
            Self::Prelu { .. } => "prelu",
            Self::Elu { .. } => "elu",
            Self::Selu => "selu",
            Self::Gelu => "gelu",
            Self::Silu => "silu",
            Self::Softplus => "softplus",
        }
    }

    /// Whether units can saturate (derivative → 0 at both ends): sigmoid and tanh.
    pub fn saturates(&self) -> bool {
        matches!(self, Self::Sigmoid | Self::Tanh)
    }

    /// Whether units can die (stuck on the flat or near-flat negative side): the ReLU family.
    pub fn can_die(&self) -> bool {
        matches!(
            self,
            Self::Relu
                | Self::LeakyRelu { .. }
                | Self::Prelu { .. }
                | Self::Elu { .. }
                | Self::Selu
        )
    }

    /// The largest value the derivative takes (for the saturation threshold).
    pub fn max_derivative(&self) -> f32 {
        match self {
            Self::Sigmoid => 0.25,
            _ => 1.0,
        }
    }

    /// Checks parameter ranges; `field` names the value in error messages.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |v: f32, lo: f32, hi: f32| v.is_finite() && v >= lo && v <= hi;
        match *self {
            Self::LeakyRelu { alpha } if !ok(alpha, 0.0, 1.0) => {
                Err(format!("leaky_relu alpha must be in [0, 1], got {alpha}"))
            }
            Self::Prelu { init } if !ok(init, -1.0, 1.0) => {
                Err(format!("prelu init must be in [-1, 1], got {init}"))
            }
            Self::Elu { alpha } if !ok(alpha, 0.0, 100.0) => {
                Err(format!("elu alpha must be in [0, 100], got {alpha}"))
            }
            _ => Ok(()),
        }
    }

    /// `a = f(u)` elementwise (not for PReLU, whose slopes live with the weights). A large
    /// pass is shared with the calling thread's [team](super::parallel), in blocks
    /// (`linalg::PARALLEL_PASS`): each element's result depends on that element alone.
    pub fn forward(&self, u: &[f32], a: &mut [f32]) {
        if u.len() < PARALLEL_PASS {
            forward_kernel(*self, u, a);
            return;
        }
        let mut blocks: Vec<_> = u.chunks(PASS_BLOCK).zip(a.chunks_mut(PASS_BLOCK)).collect();
        parallel::for_each_mut(&mut blocks, &|(u, a)| forward_kernel(*self, u, a));
    }

    /// `g *= f'(u)` elementwise, reading `u` or `a = f(u)` as the formula needs. Returns how
    /// many elements had a derivative below 1e-3 of its maximum (saturated), counted only for
    /// activations that saturate. Shared as [`Activation::forward`] is (the counts are
    /// integers, exact in any order).
    pub fn backward(&self, u: &[f32], a: &[f32], g: &mut [f32]) -> usize {
        if g.len() < PARALLEL_PASS {
            return backward_kernel(*self, u, a, g);
        }
        let mut blocks: Vec<_> = u
            .chunks(PASS_BLOCK)
            .zip(a.chunks(PASS_BLOCK))
            .zip(g.chunks_mut(PASS_BLOCK))
            .map(|((u, a), g)| (u, a, g, 0))
            .collect();
        parallel::for_each_mut(&mut blocks, &|(u, a, g, saturated)| {
            *saturated = backward_kernel(*self, u, a, g);
        });
        blocks.iter().map(|b| b.3).sum()
    }

    /// Counts saturated elements of `a = f(u)` without a gradient (evaluation passes).
    pub fn count_saturated(&self, a: &[f32]) -> usize {
        match self {
            Self::Sigmoid => a.iter().filter(|&&y| y * (1.0 - y) < 0.25e-3).count(),
            Self::Tanh => a.iter().filter(|&&y| 1.0 - y * y < 1e-3).count(),
            _ => 0,
        }
    }

    /// Scalar `f(u)` in `f64`, the reference the tests check the kernels against.
    pub fn value_f64(&self, u: f64) -> f64 {
        match *self {
            Self::Identity => u,
            Self::Sigmoid => 1.0 / (1.0 + (-u).exp()),
            Self::Tanh => u.tanh(),
            Self::Relu => u.max(0.0),
            Self::LeakyRelu { alpha } | Self::Prelu { init: alpha } => {
                if u > 0.0 {
                    u
                } else {
                    alpha as f64 * u
                }
            }
            Self::Elu { alpha } => {
                if u > 0.0 {
                    u
                } else {
                    alpha as f64 * u.exp_m1()
                }
            }
            Self::Selu => {
                SELU_LAMBDA as f64
                    * if u > 0.0 {
                        u
                    } else {
                        SELU_ALPHA as f64 * u.exp_m1()
                    }
            }
            Self::Gelu => 0.5 * u * (1.0 + vmath::erf_f64(u / std::f64::consts::SQRT_2)),
            Self::Silu => u / (1.0 + (-u).exp()),
            Self::Softplus => u.max(0.0) + (-u.abs()).exp().ln_1p(),
        }
    }
}

const INV_SQRT_2PI: f32 = 0.398_942_3;

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn forward_kernel(act: Activation, u: &[f32], a: &mut [f32]) {
    let pairs = a.iter_mut().zip(u);
    match act {
        Activation::Identity => a.copy_from_slice(u),
        Activation::Sigmoid => pairs.for_each(|(y, &x)| *y = vmath::sigmoid(x)),
        Activation::Tanh => pairs.for_each(|(y, &x)| *y = vmath::tanh(x)),
        Activation::Relu => pairs.for_each(|(y, &x)| *y = x.max(0.0)),
        Activation::LeakyRelu { alpha } | Activation::Prelu { init: alpha } => {
            pairs.for_each(|(y, &x)| *y = x.max(0.0) + alpha * x.min(0.0))
        }
        Activation::Elu { alpha } => pairs.for_each(|(y, &x)| {
            let neg = alpha * (vmath::exp(x.min(0.0)) - 1.0);
            *y = if x > 0.0 { x } else { neg }
        }),
        Activation::Selu => pairs.for_each(|(y, &x)| {
            let neg = SELU_ALPHA * (vmath::exp(x.min(0.0)) - 1.0);
            *y = SELU_LAMBDA * if x > 0.0 { x } else { neg }
        }),
        Activation::Gelu => pairs.for_each(|(y, &x)| *y = x * vmath::normal_cdf(x)),
        Activation::Silu => pairs.for_each(|(y, &x)| *y = x * vmath::sigmoid(x)),
        Activation::Softplus => {
            pairs.for_each(|(y, &x)| *y = x.max(0.0) + vmath::ln_1p(vmath::exp(-x.abs())))
        }
    }
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn backward_kernel(act: Activation, u: &[f32], a: &[f32], g: &mut [f32]) -> usize {
    match act {
        Activation::Identity => 0,
        Activation::Sigmoid => {
            let mut saturated = 0u32;
            for (d, &y) in g.iter_mut().zip(a) {
                let s = y * (1.0 - y);
                saturated += (s < 0.25e-3) as u32;
                *d *= s;
            }
            saturated as usize
        }
        Activation::Tanh => {
            let mut saturated = 0u32;
            for (d, &y) in g.iter_mut().zip(a) {
                let s = 1.0 - y * y;
                saturated += (s < 1e-3) as u32;
                *d *= s;
            }
            saturated as usize
        }
        Activation::Relu => {
            for (d, &x) in g.iter_mut().zip(u) {
                *d *= (x > 0.0) as u32 as f32;
            }
            0
        }
        Activation::LeakyRelu { alpha } | Activation::Prelu { init: alpha } => {
            for (d, &x) in g.iter_mut().zip(u) {
                *d *= if x > 0.0 { 1.0 } else { alpha };
            }
            0
        }
        Activation::Elu { alpha } => {
            for ((d, &x), &y) in g.iter_mut().zip(u).zip(a) {
                *d *= if x > 0.0 { 1.0 } else { y + alpha };
            }
            0
        }
        Activation::Selu => {
            for ((d, &x), &y) in g.iter_mut().zip(u).zip(a) {
                *d *= if x > 0.0 {
                    SELU_LAMBDA
                } else {
                    y + SELU_LAMBDA * SELU_ALPHA
                };
            }
            0
        }
        Activation::Gelu => {
            for (d, &x) in g.iter_mut().zip(u) {
                let cdf = vmath::normal_cdf(x);
                let pdf = INV_SQRT_2PI * vmath::exp(-0.5 * x * x);
                *d *= cdf + x * pdf;
            }
            0
        }
        Activation::Silu => {
            for (d, &x) in g.iter_mut().zip(u) {
                let s = vmath::sigmoid(x);
                *d *= s * (1.0 + x * (1.0 - s));
            }
            0
        }
        Activation::Softplus => {
            for (d, &x) in g.iter_mut().zip(u) {
                *d *= vmath::sigmoid(x);
            }
            0
        }
    }
}

/// PReLU forward with one slope per column: `a = max(u,0) + slope·min(u,0)`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn prelu_forward(u: &[f32], slopes: &[f32], a: &mut [f32]) {
    let n = slopes.len();
    for (ar, ur) in a.chunks_exact_mut(n).zip(u.chunks_exact(n)) {
        for ((y, &x), &s) in ar.iter_mut().zip(ur).zip(slopes) {
            *y = x.max(0.0) + s * x.min(0.0);
        }
    }
}

/// PReLU backward: adds `Σ_rows g·min(u,0)` to `grad_slopes`, then `g *= f'(u)`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn prelu_backward(u: &[f32], slopes: &[f32], g: &mut [f32], grad_slopes: &mut [f32]) {
    let n = slopes.len();
    for (gr, ur) in g.chunks_exact_mut(n).zip(u.chunks_exact(n)) {
        for (((d, &x), &s), gs) in gr
            .iter_mut()
            .zip(ur)
            .zip(slopes)
            .zip(grad_slopes.iter_mut())
        {
            *gs += *d * x.min(0.0);
            *d *= if x > 0.0 { 1.0 } else { s };
        }
    }
}

impl Serialize for Activation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match *self {
            Self::LeakyRelu { alpha } | Self::Elu { alpha } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("name", self.name())?;
                m.serialize_entry("alpha", &alpha)?;
                m.end()
            }
            Self::Prelu { init } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("name", self.name())?;
                m.serialize_entry("init", &init)?;
                m.end()
            }
            _ => s.serialize_str(self.name()),
        }
    }
}

impl<'de> Deserialize<'de> for Activation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ActivationVisitor)
    }
}

struct ActivationVisitor;

fn unknown_name<E: de::Error>(name: &str) -> E {
    E::custom(format!(
        "unknown activation `{name}`; valid: {}",
        ACTIVATION_NAMES.join(", ")
    ))
}

impl<'de> Visitor<'de> for ActivationVisitor {
    type Value = Activation;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an activation name or {\"name\": …, \"alpha\": …}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Activation, E> {
        Activation::from_name(v).ok_or_else(|| unknown_name(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Activation, A::Error> {
        let mut name: Option<String> = None;
        // Read as f64 and checked before narrowing: 1.0000000000000002 is over leaky_relu's
        // bound of 1 even though it rounds to 1 as an f32.
        let mut alpha: Option<f64> = None;
        let mut init: Option<f64> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => name = Some(map.next_value()?),
                "alpha" => alpha = Some(map.next_value()?),
                "init" => init = Some(map.next_value()?),
                other => {
                    return Err(de::Error::unknown_field(other, &["name", "alpha", "init"]));
                }
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        let act = Activation::from_name(&name).ok_or_else(|| unknown_name(&name))?;
        let narrow = |v: f64, lo: f64, hi: f64| -> Result<f32, A::Error> {
            if (lo..=hi).contains(&v) {
                Ok(v as f32)
            } else {
                Err(de::Error::custom(format!(
                    "{name} {} must be in [{lo}, {hi}], got {v}",
                    if alpha.is_some() { "alpha" } else { "init" }
                )))
            }
        };
        let act = match (act, alpha, init) {
            (Activation::LeakyRelu { .. }, Some(alpha), None) => Activation::LeakyRelu {
                alpha: narrow(alpha, 0.0, 1.0)?,
            },
            (Activation::Elu { .. }, Some(alpha), None) => Activation::Elu {
                alpha: narrow(alpha, 0.0, 100.0)?,
            },
            (Activation::Prelu { .. }, None, Some(init)) => Activation::Prelu {
                init: narrow(init, -1.0, 1.0)?,
            },
            (act, None, None) => act,
            (act, _, _) => {
                return Err(de::Error::custom(format!(
                    "`{}` takes {}",
                    act.name(),
                    match act {
                        Activation::LeakyRelu { .. } | Activation::Elu { .. } => "only `alpha`",
                        Activation::Prelu { .. } => "only `init`",
                        _ => "no parameters",
                    }
                )))
            }
        };
        act.validate().map_err(de::Error::custom)?;
        Ok(act)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_before_they_are_narrowed_to_f32() {
        let parse = |json: &str| serde_json::from_str::<Activation>(json);
        assert!(parse(r#"{"name": "leaky_relu", "alpha": 1.0000000000000002}"#).is_err());
        assert!(parse(r#"{"name": "elu", "alpha": -1e-300}"#).is_err());
        assert!(parse(r#"{"name": "prelu", "init": 1.0000000000000002}"#).is_err());
        assert_eq!(
            parse(r#"{"name": "leaky_relu", "alpha": 1}"#).ok(),
            Some(Activation::LeakyRelu { alpha: 1.0 })
        );
    }

    pub(crate) fn all() -> Vec<Activation> {
        ACTIVATION_NAMES
            .iter()
            .map(|n| Activation::from_name(n).unwrap())
            .chain([
                Activation::LeakyRelu { alpha: 0.2 },
                Activation::Elu { alpha: 0.5 },
            ])
            .collect()
    }

    /// Derivatives of every activation against central differences of the f64 reference,
    /// away from the kink at 0; the f32 kernels are checked against the f64 values.
    #[test]
    fn derivatives_match_finite_differences() {
        let us: Vec<f32> = (-60..=60)
            .map(|i| i as f32 * 0.1 + 0.013)
            .chain([-30.0, -12.0, 12.0, 30.0])
            .collect();
        for act in all() {
            let mut a = vec![0.0; us.len()];
            act.forward(&us, &mut a);
            let mut g = vec![1.0; us.len()];
            act.backward(&us, &a, &mut g);
            for (i, &u) in us.iter().enumerate() {
                let h = 1e-5;
                let (u64_, want_a) = (u as f64, act.value_f64(u as f64));
                let num = (act.value_f64(u64_ + h) - act.value_f64(u64_ - h)) / (2.0 * h);
                // f32 kernels: 1e-5 relative error plus the erf fit's 1.2e-7.
                assert!(
                    (a[i] as f64 - want_a).abs() <= 1e-5 * (1.0 + want_a.abs()),
                    "{} f({u}) = {} want {want_a}",
                    act.name(),
                    a[i]
                );
                assert!(
                    (g[i] as f64 - num).abs() <= 1e-4 * (1.0 + num.abs()),
                    "{} f'({u}) = {} want {num}",
                    act.name(),
                    g[i]
                );
            }
        }
    }

    #[test]
    fn extreme_inputs_stay_finite() {
        let us = [-1e6f32, -100.0, -89.0, 89.0, 100.0, 1e6];
        for act in all() {
            let mut a = vec![0.0; us.len()];
            act.forward(&us, &mut a);
            let mut g = vec![1.0; us.len()];
            act.backward(&us, &a, &mut g);
            assert!(a.iter().chain(&g).all(|v| v.is_finite()), "{}", act.name());
        }
    }

    #[test]
    fn passes_shared_with_helpers_give_the_bits_and_counts_of_one_pass() {
        // Above `PARALLEL_PASS`, with a last block shorter than the others.
        let n = PARALLEL_PASS + 3 * PASS_BLOCK / 2 + 5;
        let us: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 2001) as f32 - 1000.0) * 0.02)
            .collect();
        let team = parallel::Team::new(2, std::sync::Arc::new(|| {})).unwrap();
        let _entered = team.enter();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for act in all() {
            let (mut a, mut want_a) = (vec![0.0; n], vec![0.0; n]);
            act.forward(&us, &mut a);
            forward_kernel(act, &us, &mut want_a);
            assert_eq!(bits(&a), bits(&want_a), "{} forward", act.name());
            let (mut g, mut want_g) = (vec![1.5; n], vec![1.5; n]);
            let saturated = act.backward(&us, &a, &mut g);
            let want_saturated = backward_kernel(act, &us, &a, &mut want_g);
            assert_eq!(bits(&g), bits(&want_g), "{} backward", act.name());
            assert_eq!(saturated, want_saturated, "{} saturated", act.name());
        }
    }

    #[test]
    fn sigmoid_saturation_is_counted_from_the_output() {
        let us = [-20.0f32, 0.0, 20.0, 1.0];
        let mut a = [0.0; 4];
        Activation::Sigmoid.forward(&us, &mut a);
        let mut g = [1.0; 4];
        assert_eq!(Activation::Sigmoid.backward(&us, &a, &mut g), 2);
        assert_eq!(Activation::Sigmoid.count_saturated(&a), 2);
    }

    #[test]
    fn prelu_slope_gradient_matches_finite_differences() {
        let u = [-2.0f32, 0.5, -0.3, 1.5, -1.0, -0.7];
        let slopes = [0.25f32, -0.1, 0.6];
        let up = [0.3f32, -0.2, 0.5, 0.1, 0.7, -0.4]; // upstream gradient dL/da
        let loss = |s: &[f32]| {
            let mut a = [0.0; 6];
            prelu_forward(&u, s, &mut a);
            a.iter()
                .zip(&up)
                .map(|(x, y)| (*x as f64) * (*y as f64))
                .sum::<f64>()
        };
        let mut g = up;
        let mut gs = [0.0; 3];
        prelu_backward(&u, &slopes, &mut g, &mut gs);
        for j in 0..3 {
            let (mut p, mut m) = (slopes, slopes);
            p[j] += 1e-3;
            m[j] -= 1e-3;
            let num = (loss(&p) - loss(&m)) / 2e-3;
            assert!(
                (gs[j] as f64 - num).abs() < 1e-4,
                "slope {j}: {} vs {num}",
                gs[j]
            );
        }
    }

    #[test]
    fn names_and_objects_deserialize_and_unknown_names_list_the_valid_ones() {
        let a: Activation = serde_json::from_str("\"relu\"").unwrap();
        assert_eq!(a, Activation::Relu);
        let a: Activation = serde_json::from_str(r#"{"name":"leaky_relu","alpha":0.1}"#).unwrap();
        assert_eq!(a, Activation::LeakyRelu { alpha: 0.1 });
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"name":"leaky_relu","alpha":0.1}"#
        );
        let err = serde_json::from_str::<Activation>("\"swishy\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("valid: identity, sigmoid"), "{err}");
        assert!(serde_json::from_str::<Activation>(r#"{"name":"relu","alpha":1}"#).is_err());
        assert!(serde_json::from_str::<Activation>(r#"{"name":"elu","alpha":-1}"#).is_err());
        assert!(serde_json::from_str::<Activation>(r#"{"name":"elu","beta":1}"#).is_err());
    }
}
