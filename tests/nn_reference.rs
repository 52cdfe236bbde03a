//! The optimizers against PyTorch: two steps on a fixed 2-3-2 tanh network give the weights
//! `torch.optim` gives.
//!
//! Reference values from PyTorch 2.15.0 (CPU, float32), with this script:
//!
//! ```python
//! import torch, torch.nn as nn, torch.nn.functional as F
//! W1 = torch.tensor([[0.5, -0.3], [0.2, 0.8], [-0.6, 0.1]])   # [out=3, in=2]
//! b1 = torch.tensor([0.1, -0.2, 0.05])
//! W2 = torch.tensor([[0.3, -0.7, 0.4], [-0.2, 0.6, 0.9]])     # [out=2, in=3]
//! b2 = torch.tensor([0.0, 0.1])
//! X = torch.tensor([[0.0, 1.0], [1.0, 0.5], [-1.0, 2.0], [0.3, -0.4]])
//! Y = torch.tensor([1, 0, 1, 0])
//! def run(make):
//!     net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))
//!     with torch.no_grad():
//!         net[0].weight.copy_(W1); net[0].bias.copy_(b1)
//!         net[2].weight.copy_(W2); net[2].bias.copy_(b2)
//!     # weight decay on weight matrices only, as mlp-lab applies it
//!     opt = make([{"params": [net[0].weight, net[2].weight]},
//!                 {"params": [net[0].bias, net[2].bias], "weight_decay": 0.0}])
//!     for _ in range(2):
//!         opt.zero_grad(); F.cross_entropy(net(X), Y).backward(); opt.step()
//!     return [p.detach().flatten().tolist() for p in net.parameters()]
//! run(lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01))
//! run(lambda g: torch.optim.Adam(g, lr=0.01, weight_decay=0.01))
//! run(lambda g: torch.optim.AdamW(g, lr=0.01, weight_decay=0.1))
//! run(lambda g: torch.optim.RMSprop(g, lr=0.01, momentum=0.5, weight_decay=0.01))
//! ```

// The reference values are PyTorch's printed float32s, kept digit for digit.
#![allow(clippy::excessive_precision)]

use mlp_lab::nn::{
    fit, Activation, Control, Dataset, Head, Interrupter, Model, ModelSpec, OptimizerConfig,
    Targets, TrainConfig,
};
use ndarray::array;

/// PyTorch's `[out, in]` weights, biases, in `net.parameters()` order.
type TorchParams = [&'static [f32]; 4];

fn two_steps(optimizer: OptimizerConfig) -> Model {
    let spec = ModelSpec::new(&[2, 3, 2], Activation::Tanh, Head::Softmax);
    let mut model = Model::new(spec, 0).unwrap();
    let start: TorchParams = [
        &[0.5, -0.3, 0.2, 0.8, -0.6, 0.1],
        &[0.1, -0.2, 0.05],
        &[0.3, -0.7, 0.4, -0.2, 0.6, 0.9],
        &[0.0, 0.1],
    ];
    set_from_torch(&mut model, start);
    let x = array![[0.0f32, 1.0], [1.0, 0.5], [-1.0, 2.0], [0.3, -0.4]];
    let data = Dataset::new(x, None, Targets::from_labels(&["1", "0", "1", "0"])).unwrap();
    let config = TrainConfig {
        epochs: 2,
        batch_size: 4,
        shuffle: false,
        optimizer,
        validation_split: 0.0,
        standardize: false,
        ..TrainConfig::default()
    };
    fit(model, &data, &config, &Interrupter::new(), &mut |_| {
        Control::Continue
    })
    .unwrap()
    .0
}

/// Our weights are `[in, out]`: transpose PyTorch's `[out, in]`.
fn set_from_torch(model: &mut Model, p: TorchParams) {
    for (t, values) in p.iter().enumerate() {
        let param = &mut model.params[t];
        let (rows, cols) = param.shape;
        for r in 0..rows {
            for c in 0..cols {
                param.data[r * cols + c] = if rows > 1 {
                    values[c * rows + r]
                } else {
                    values[c]
                };
            }
        }
    }
}

fn assert_matches_torch(model: &Model, want: TorchParams) {
    let mut expected = Model::new(model.spec.clone(), 0).unwrap();
    set_from_torch(&mut expected, want);
    for (t, (got, want)) in model.params.iter().zip(&expected.params).enumerate() {
        for (g, w) in got.data.iter().zip(&want.data) {
            assert!(
                (g - w).abs() < 2e-6,
                "tensor {t}: {:?} vs torch {:?}",
                got.data,
                want.data
            );
        }
    }
}

#[test]
fn sgd_with_nesterov_momentum_and_weight_decay_matches_pytorch() {
    let m = two_steps(OptimizerConfig::Sgd {
        learning_rate: 0.1,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.01,
    });
    assert_matches_torch(
        &m,
        [
            &[
                0.53112924,
                -0.31478935,
                0.11368038,
                0.81898767,
                -0.63073844,
                0.11871528,
            ],
            &[0.12260067, -0.27051756, 0.027774768],
            &[
                0.35478219,
                -0.72059309,
                0.34886798,
                -0.25524285,
                0.62105376,
                0.9451437,
            ],
            &[0.049683835, 0.050316162],
        ],
    );
}

#[test]
fn adam_with_l2_weight_decay_matches_pytorch() {
    let m = two_steps(OptimizerConfig::Adam {
        learning_rate: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    });
    assert_matches_torch(
        &m,
        [
            &[
                0.51999748,
                -0.32000467,
                0.18000332,
                0.81998408,
                -0.61999732,
                0.12000409,
            ],
            &[0.11998703, -0.21999089, 0.030012466],
            &[
                0.31999785,
                -0.72000813,
                0.38000038,
                -0.21999787,
                0.62000805,
                0.91999954,
            ],
            &[0.019980256, 0.08001975],
        ],
    );
}

#[test]
fn adamw_with_decoupled_weight_decay_matches_pytorch() {
    let m = two_steps(OptimizerConfig::AdamW {
        learning_rate: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
    });
    assert_matches_torch(
        &m,
        [
            &[
                0.51898849,
                -0.31939572,
                0.17961349,
                0.81838042,
                -0.61878848,
                0.11979501,
            ],
            &[0.11998645, -0.21999042, 0.030012947],
            &[
                0.31938845,
                -0.71859878,
                0.37921059,
                -0.21958835,
                0.61879873,
                0.91819072,
            ],
            &[0.01997982, 0.080020182],
        ],
    );
}

#[test]
fn rmsprop_with_momentum_matches_pytorch() {
    let m = two_steps(OptimizerConfig::Rmsprop {
        learning_rate: 0.01,
        alpha: 0.99,
        eps: 1e-8,
        momentum: 0.5,
        weight_decay: 0.01,
    });
    assert_matches_torch(
        &m,
        [
            &[
                0.71146625,
                -0.52873355,
                -0.013171531,
                1.0117635,
                -0.81106597,
                0.32702845,
            ],
            &[0.28507459, -0.40223065, -0.13495857],
            &[
                0.51413101,
                -0.92810434,
                0.18382537,
                -0.41419366,
                0.82796085,
                1.1154922,
            ],
            &[0.18832009, -0.088320076],
        ],
    );
}
