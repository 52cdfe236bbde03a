//! Weight initializers, seeded, and the default each activation calls for.
//!
//! With `fan_in`/`fan_out` the layer's input and output widths:
//!
//! | init | distribution |
//! |---|---|
//! | `xavier_uniform` | U(±√(6/(fan_in+fan_out))) (Glorot & Bengio 2010) |
//! | `xavier_normal` | N(0, 2/(fan_in+fan_out)) |
//! | `he_uniform` | U(±√(6/fan_in)) (He et al. 2015) |
//! | `he_normal` | N(0, 2/fan_in) |
//! | `lecun_normal` | N(0, 1/fan_in) (LeCun 1998; what SELU assumes) |
//!
//! Biases start at zero. The defaults: He for the ReLU family (and GELU, SiLU), Xavier for
//! sigmoid, tanh, identity and softplus, LeCun for SELU.

use serde::{Deserialize, Serialize};

use super::activation::Activation;
use super::rng::Rng;

/// A weight initialization scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Glorot uniform.
    XavierUniform,
    /// Glorot normal.
    XavierNormal,
    /// He (Kaiming) uniform.
    HeUniform,
    /// He (Kaiming) normal.
    HeNormal,
    /// LeCun normal.
    LecunNormal,
}

/// The names accepted for [`Init`].
pub const INIT_NAMES: &[&str] = &[
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
    "lecun_normal",
];

impl Init {
    /// The recommended init for a layer followed by `act`.
    pub fn default_for(act: &Activation) -> Self {
        match act {
            Activation::Relu
            | Activation::LeakyRelu { .. }
            | Activation::Prelu { .. }
            | Activation::Elu { .. }
            | Activation::Gelu
            | Activation::Silu => Init::HeUniform,
            Activation::Selu => Init::LecunNormal,
            Activation::Identity
            | Activation::Sigmoid
            | Activation::Tanh
            | Activation::Softplus => Init::XavierUniform,
        }
    }

    /// Fills `w` (a `[fan_in, fan_out]` matrix) from `rng`.
    pub fn fill(&self, w: &mut [f32], fan_in: usize, fan_out: usize, rng: &mut Rng) {
        let (fi, fo) = (fan_in as f64, fan_out as f64);
        match self {
            Init::XavierUniform => uniform(w, (6.0 / (fi + fo)).sqrt(), rng),
            Init::HeUniform => uniform(w, (6.0 / fi).sqrt(), rng),
            Init::XavierNormal => normal(w, (2.0 / (fi + fo)).sqrt(), rng),
            Init::HeNormal => normal(w, (2.0 / fi).sqrt(), rng),
            Init::LecunNormal => normal(w, (1.0 / fi).sqrt(), rng),
        }
    }
}

fn uniform(w: &mut [f32], limit: f64, rng: &mut Rng) {
    w.iter_mut()
        .for_each(|v| *v = rng.uniform_range(-limit, limit) as f32);
}

fn normal(w: &mut [f32], std: f64, rng: &mut Rng) {
    w.iter_mut().for_each(|v| *v = (rng.normal() * std) as f32);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_of(init: Init, fi: usize, fo: usize) -> f64 {
        let mut w = vec![0.0; fi * fo];
        init.fill(&mut w, fi, fo, &mut Rng::new(5));
        let n = w.len() as f64;
        let mean = w.iter().map(|&v| v as f64).sum::<f64>() / n;
        (w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
    }

    #[test]
    fn each_init_has_its_textbook_variance() {
        let (fi, fo) = (300, 200);
        let cases = [
            (Init::XavierUniform, (2.0 / 500.0f64).sqrt()),
            (Init::XavierNormal, (2.0 / 500.0f64).sqrt()),
            (Init::HeUniform, (2.0 / 300.0f64).sqrt()),
            (Init::HeNormal, (2.0 / 300.0f64).sqrt()),
            (Init::LecunNormal, (1.0 / 300.0f64).sqrt()),
        ];
        for (init, want) in cases {
            let got = std_of(init, fi, fo);
            assert!(
                (got / want - 1.0).abs() < 0.02,
                "{init:?}: std {got} want {want}"
            );
        }
    }

    #[test]
    fn defaults_follow_the_activation() {
        assert_eq!(Init::default_for(&Activation::Relu), Init::HeUniform);
        assert_eq!(Init::default_for(&Activation::Sigmoid), Init::XavierUniform);
        assert_eq!(Init::default_for(&Activation::Selu), Init::LecunNormal);
    }
}
