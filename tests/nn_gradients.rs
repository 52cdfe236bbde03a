//! Finite-difference checks of every gradient the training loop uses: each activation, each
//! head and loss, PReLU slopes, batch norm in training mode, dropout with a fixed mask, and the
//! L1/L2 penalties.
//!
//! The network runs in `f32`, so the checks use central differences with h = 1e-3 on a loss
//! summed in `f64`: rounding noise in the loss is about 1e-7, i.e. ~5e-5 after dividing by 2h,
//! and the truncation error is O(h²) ≈ 1e-6. Each gradient must match within
//! 2e-3 + 2e-2·|g| elementwise, and the whole gradient vector within 1e-2 relative error
//! (‖num − ana‖ / ‖num + ana‖). Where a difference straddles a kink (ReLU family at 0), the
//! element is checked again with h = 1e-4.

use mlp_lab::nn::backprop::batch_gradient;
use mlp_lab::nn::rng::Rng;
use mlp_lab::nn::train::{add_penalty_gradients, penalty};
use mlp_lab::nn::{Activation, Dataset, Head, Model, ModelSpec, Targets};
use ndarray::Array2;

fn inputs(rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * 5 + j * 3) as f32 * 0.37).sin() * 1.5
    })
}

fn data_for(head: Head, rows: usize, ins: usize, outs: usize) -> Dataset {
    let x = inputs(rows, ins);
    let targets = match head {
        Head::Softmax => {
            let labels: Vec<String> = (0..rows).map(|i| (i % outs).to_string()).collect();
            Targets::from_labels(&labels)
        }
        Head::Sigmoid if outs == 1 => {
            Targets::from_labels(&(0..rows).map(|i| (i % 2).to_string()).collect::<Vec<_>>())
        }
        Head::Sigmoid => Targets::MultiLabel {
            values: Array2::from_shape_fn((rows, outs), |(i, j)| ((i + j) % 2) as f32),
            names: (0..outs).map(|j| format!("l{j}")).collect(),
        },
        Head::Identity => Targets::Values {
            values: Array2::from_shape_fn((rows, outs), |(i, j)| (i as f32 * 0.3 - j as f32).cos()),
            names: (0..outs).map(|j| format!("y{j}")).collect(),
        },
    };
    Dataset::new(x, None, targets).unwrap()
}

/// Compares backprop against central differences for every parameter of `model`.
#[allow(clippy::needless_range_loop)] // indices name the tensor and element in messages
fn check(label: &str, mut model: Model, data: &Dataset, l1: f32, l2: f32) {
    let rng = Rng::new(99);
    let total = |m: &mut Model| batch_gradient(m, data, &rng).0 + penalty(m, l1, l2);
    let (_, mut grads) = batch_gradient(&mut model, data, &rng);
    add_penalty_gradients(&model, l1, l2, &mut grads);
    let (mut diff_sq, mut sum_sq) = (0.0f64, 0.0f64);
    for t in 0..model.params.len() {
        for i in 0..model.params[t].data.len() {
            let ana = grads[t][i] as f64;
            let mut numeric = |h: f32| {
                let orig = model.params[t].data[i];
                model.params[t].data[i] = orig + h;
                let plus = total(&mut model);
                model.params[t].data[i] = orig - h;
                let minus = total(&mut model);
                model.params[t].data[i] = orig;
                (plus - minus) / (2.0 * h as f64)
            };
            let mut num = numeric(1e-3);
            if (num - ana).abs() > 2e-3 + 2e-2 * ana.abs() {
                // A pre-activation within 1e-3 of a kink (ReLU family at 0) makes the wide
                // difference straddle it; a ten times narrower one must then agree, with the
                // tolerance widened for its tenfold rounding noise.
                num = numeric(1e-4);
                assert!(
                    (num - ana).abs() <= 4e-3 + 2e-2 * ana.abs(),
                    "{label}: tensor {t} ({:?}) element {i}: backprop {ana} vs numeric {num}",
                    model.params[t].kind
                );
            }
            diff_sq += (num - ana).powi(2);
            sum_sq += (num + ana).powi(2);
        }
    }
    let rel = diff_sq.sqrt() / sum_sq.sqrt().max(1e-12);
    assert!(rel < 1e-2, "{label}: relative gradient error {rel}");
}

fn model(layers: &[usize], act: Activation, head: Head, seed: u64) -> Model {
    Model::new(ModelSpec::new(layers, act, head), seed).unwrap()
}

#[test]
fn every_activation_backpropagates_correctly() {
    let data = data_for(Head::Softmax, 6, 3, 3);
    for name in mlp_lab::nn::activation::ACTIVATION_NAMES {
        let act = Activation::from_name(name).unwrap();
        check(
            name,
            model(&[3, 5, 4, 3], act, Head::Softmax, 1),
            &data,
            0.0,
            0.0,
        );
    }
    for act in [
        Activation::LeakyRelu { alpha: 0.2 },
        Activation::Elu { alpha: 0.5 },
    ] {
        check(
            act.name(),
            model(&[3, 5, 3], act, Head::Softmax, 2),
            &data,
            0.0,
            0.0,
        );
    }
}

#[test]
fn every_head_and_loss_backpropagates_correctly() {
    for (head, outs) in [
        (Head::Softmax, 4),
        (Head::Sigmoid, 1),
        (Head::Sigmoid, 3),
        (Head::Identity, 2),
    ] {
        let data = data_for(head, 7, 3, outs);
        check(
            &format!("{head:?}/{outs}"),
            model(&[3, 6, outs], Activation::Tanh, head, 3),
            &data,
            0.0,
            0.0,
        );
    }
}

#[test]
fn prelu_slopes_are_trained_with_correct_gradients() {
    let data = data_for(Head::Softmax, 6, 3, 2);
    let mut m = model(
        &[3, 5, 4, 2],
        Activation::Prelu { init: 0.25 },
        Head::Softmax,
        4,
    );
    // Distinct slopes per unit so a mix-up between units would show.
    for (k, p) in m.params.iter_mut().enumerate() {
        if p.kind == mlp_lab::nn::model::ParamKind::PreluSlope {
            p.data
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = 0.1 * (i + k) as f32 - 0.2);
        }
    }
    check("prelu", m, &data, 0.0, 0.0);
}

#[test]
fn batch_norm_in_training_mode_backpropagates_correctly() {
    let data = data_for(Head::Softmax, 8, 3, 3);
    for act in [Activation::Relu, Activation::Sigmoid] {
        let mut spec = ModelSpec::new(&[3, 6, 5, 3], act, Head::Softmax);
        spec.batch_norm = true;
        let mut m = Model::new(spec, 5).unwrap();
        // Non-trivial scale and shift.
        for p in &mut m.params {
            if p.kind == mlp_lab::nn::model::ParamKind::BnScale {
                p.data
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v = 0.5 + 0.2 * i as f32);
            }
        }
        check(&format!("batch norm {}", act.name()), m, &data, 0.0, 0.0);
    }
}

#[test]
fn dropout_with_a_fixed_mask_backpropagates_correctly() {
    let data = data_for(Head::Identity, 6, 3, 2);
    let mut spec = ModelSpec::new(&[3, 8, 6, 2], Activation::Tanh, Head::Identity);
    spec.dropout = 0.4;
    check("dropout", Model::new(spec, 6).unwrap(), &data, 0.0, 0.0);
}

#[test]
fn l1_and_l2_penalties_backpropagate_correctly() {
    let data = data_for(Head::Softmax, 6, 3, 3);
    check(
        "l1+l2",
        model(&[3, 5, 3], Activation::Tanh, Head::Softmax, 7),
        &data,
        0.01,
        0.1,
    );
}
