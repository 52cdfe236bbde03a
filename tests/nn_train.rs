//! Training behaviour of the numerical core, without a server.

use mlp_lab::nn::{
    fit, Activation, Control, Dataset, Head, Interrupter, Model, ModelSpec, OptimizerConfig,
    Targets, TrainConfig,
};
use ndarray::array;

fn xor() -> Dataset {
    let x = array![[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    Dataset::new(x, None, Targets::from_labels(&["0", "1", "1", "0"])).unwrap()
}

fn xor_config(seed: u64) -> TrainConfig {
    TrainConfig {
        epochs: 2000,
        batch_size: 4,
        seed,
        optimizer: OptimizerConfig::adam(0.05),
        validation_split: 0.0,
        standardize: false,
        ..TrainConfig::default()
    }
}

fn train_xor(act: Activation, seed: u64) -> Model {
    let spec = ModelSpec::new(&[2, 4, 1], act, Head::Sigmoid);
    let model = Model::new(spec, seed).unwrap();
    let (model, _) = fit(
        model,
        &xor(),
        &xor_config(seed),
        &Interrupter::new(),
        &mut |_| Control::Continue,
    )
    .unwrap();
    model
}

#[test]
fn a_2_4_1_network_learns_xor_with_sigmoid_tanh_and_relu() {
    for act in [Activation::Sigmoid, Activation::Tanh, Activation::Relu] {
        let model = train_xor(act, 42);
        let p = model.predict(xor().features.view()).unwrap();
        let got: Vec<bool> = p.column(0).iter().map(|&v| v > 0.5).collect();
        assert_eq!(
            got,
            vec![false, true, true, false],
            "{} outputs {p:?}",
            act.name()
        );
    }
}

/// Two interleaved noisy classes in `features` dimensions (a tiny stand-in for the generators).
fn two_classes(rows: usize, features: usize, seed: u64) -> Dataset {
    let mut rng = mlp_lab::nn::rng::Rng::new(seed);
    let mut x = ndarray::Array2::zeros((rows, features));
    let mut labels = Vec::new();
    for i in 0..rows {
        let class = i % 2;
        for j in 0..features {
            let centre = if (j % 2 == 0) == (class == 0) {
                1.0
            } else {
                -1.0
            };
            x[[i, j]] = (centre + rng.normal()) as f32;
        }
        labels.push(class.to_string());
    }
    Dataset::new(x, None, Targets::from_labels(&labels)).unwrap()
}

fn run(spec: ModelSpec, data: &Dataset, config: &TrainConfig) -> (Model, mlp_lab::nn::FitReport) {
    let model = Model::new(spec, config.seed).unwrap();
    fit(model, data, config, &Interrupter::new(), &mut |_| {
        Control::Continue
    })
    .unwrap()
}

#[test]
fn the_same_seed_gives_bit_identical_weights_and_another_seed_does_not() {
    let data = two_classes(120, 6, 1);
    let mut spec = ModelSpec::new(&[6, 16, 8, 2], Activation::Relu, Head::Softmax);
    spec.dropout = 0.2;
    spec.batch_norm = true;
    let config = TrainConfig {
        epochs: 5,
        batch_size: 16,
        seed: 7,
        ..TrainConfig::default()
    };
    let (a, ra) = run(spec.clone(), &data, &config);
    let (b, rb) = run(spec.clone(), &data, &config);
    assert_eq!(a, b);
    let losses = |r: &mlp_lab::nn::FitReport| {
        r.history
            .iter()
            .map(|e| e.train_loss.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&ra), losses(&rb));
    let (c, _) = run(spec, &data, &TrainConfig { seed: 8, ..config });
    assert_ne!(a.params, c.params);
}

#[test]
fn history_starts_with_an_epoch_zero_record_before_any_update() {
    let data = two_classes(60, 4, 2);
    let spec = ModelSpec::new(&[4, 8, 2], Activation::Tanh, Head::Softmax);
    let config = TrainConfig {
        epochs: 3,
        ..TrainConfig::default()
    };
    let untrained = Model::new(spec.clone(), 0).unwrap();
    let (_, report) = run(spec, &data, &config);
    assert_eq!(
        report.history.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    let zero = &report.history[0];
    assert!(zero.layers.iter().all(|l| l.grad_norm.is_none()));
    let w0 = untrained.params[0]
        .data
        .iter()
        .map(|v| (*v as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((zero.layers[0].weight_norm - w0).abs() < 1e-6);
    assert!(zero.val_loss.is_some() && zero.generalization_gap.is_some());
    assert!(report.history[1]
        .layers
        .iter()
        .all(|l| l.grad_norm.is_some() && l.update_ratio.is_some()));
}

/// The classic picture: in a deep sigmoid stack with Glorot init, each layer multiplies the
/// backward signal by at most σ' ≤ 1/4, so the first layer's gradient is orders of magnitude
/// below the last one's; ReLU with He init keeps it within an order of magnitude or so.
#[test]
fn deep_sigmoid_networks_show_vanishing_gradients_and_relu_networks_do_not() {
    let data = two_classes(256, 10, 3);
    let config = TrainConfig {
        epochs: 3,
        batch_size: 32,
        ..TrainConfig::default()
    };
    let ratio = |act: Activation| {
        let layers = [10, 32, 32, 32, 32, 32, 32, 32, 32, 2];
        let (_, report) = run(ModelSpec::new(&layers, act, Head::Softmax), &data, &config);
        let early = &report.history[1];
        let first = early.layers[0].grad_norm.unwrap();
        let last = early.layers.last().unwrap().grad_norm.unwrap();
        last / first
    };
    let sigmoid = ratio(Activation::Sigmoid);
    let relu = ratio(Activation::Relu);
    assert!(
        sigmoid >= 100.0,
        "sigmoid last/first gradient ratio {sigmoid}"
    );
    assert!(relu < 10.0, "relu last/first gradient ratio {relu}");
}

#[test]
fn dead_relu_units_and_saturated_sigmoid_units_are_measured() {
    let data = two_classes(64, 4, 4);
    let config = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    // Biases pushed far negative kill every ReLU unit of the first layer.
    let mut dead = Model::new(
        ModelSpec::new(&[4, 8, 2], Activation::Relu, Head::Softmax),
        0,
    )
    .unwrap();
    dead.params[1].data.iter_mut().for_each(|b| *b = -100.0);
    let (_, report) = fit(dead, &data, &config, &Interrupter::new(), &mut |_| {
        Control::Continue
    })
    .unwrap();
    assert_eq!(report.history[1].layers[0].dead_fraction, Some(1.0));
    // Huge weights pin every sigmoid unit to 0 or 1.
    let mut sat = Model::new(
        ModelSpec::new(&[4, 8, 2], Activation::Sigmoid, Head::Softmax),
        0,
    )
    .unwrap();
    sat.params[0].data.iter_mut().for_each(|w| *w *= 1000.0);
    let (_, report) = fit(sat, &data, &config, &Interrupter::new(), &mut |_| {
        Control::Continue
    })
    .unwrap();
    assert!(report.history[0].layers[0].saturated_fraction.unwrap() > 0.95);
    assert!(report.history[1].layers[0].saturated_fraction.unwrap() > 0.95);
    assert_eq!(report.history[1].layers[0].dead_fraction, None);
}

#[test]
fn early_stopping_restores_the_best_epoch() {
    let data = two_classes(80, 4, 5);
    let spec = ModelSpec::new(&[4, 64, 64, 2], Activation::Relu, Head::Softmax);
    let config = TrainConfig {
        epochs: 300,
        optimizer: OptimizerConfig::adam(0.01),
        early_stopping: Some(mlp_lab::nn::EarlyStopping {
            monitor: mlp_lab::nn::train::Monitor::ValLoss,
            patience: 5,
            min_delta: 0.0,
            restore_best: true,
        }),
        ..TrainConfig::default()
    };
    let (_, report) = run(spec, &data, &config);
    assert!(report.summary.stopped_early);
    assert_eq!(report.summary.epochs_run, report.summary.best_epoch + 5);
    let best_val = report.history[report.summary.best_epoch].val_loss.unwrap();
    assert!((report.summary.validation.unwrap().loss - best_val).abs() < 1e-9);
}

#[test]
fn divergence_is_an_error_naming_the_epoch() {
    let x = ndarray::Array2::from_shape_fn((32, 2), |(i, j)| (i + j) as f32);
    let y = ndarray::Array2::from_shape_fn((32, 1), |(i, _)| i as f32 * 1e4);
    let data = Dataset::new(
        x,
        None,
        Targets::Values {
            values: y,
            names: vec!["y".into()],
        },
    )
    .unwrap();
    let spec = ModelSpec::new(&[2, 16, 1], Activation::Relu, Head::Identity);
    let config = TrainConfig {
        epochs: 50,
        standardize: false,
        optimizer: OptimizerConfig::Sgd {
            learning_rate: 1.0,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        },
        ..TrainConfig::default()
    };
    let err = fit(
        Model::new(spec, 0).unwrap(),
        &data,
        &config,
        &Interrupter::new(),
        &mut |_| Control::Continue,
    )
    .unwrap_err();
    assert!(
        matches!(err, mlp_lab::nn::NnError::Diverged { epoch, .. } if epoch >= 1),
        "{err}"
    );
}

#[test]
fn an_interrupter_cancels_between_batches_and_the_callback_can_stop() {
    let data = two_classes(64, 4, 6);
    let spec = ModelSpec::new(&[4, 8, 2], Activation::Relu, Head::Softmax);
    let config = TrainConfig {
        epochs: 10,
        ..TrainConfig::default()
    };
    let stop = Interrupter::new();
    let flag = stop.clone();
    let err = fit(
        Model::new(spec.clone(), 0).unwrap(),
        &data,
        &config,
        &stop,
        &mut |r| {
            if r.epoch == 2 {
                flag.stop();
            }
            Control::Continue
        },
    )
    .unwrap_err();
    assert_eq!(err, mlp_lab::nn::NnError::Cancelled { epoch: 3 });
    let (_, report) = fit(
        Model::new(spec, 0).unwrap(),
        &data,
        &config,
        &Interrupter::new(),
        &mut |r| {
            if r.epoch == 4 {
                Control::Stop
            } else {
                Control::Continue
            }
        },
    )
    .unwrap();
    assert_eq!(report.summary.epochs_run, 4);
    assert!(report.summary.stopped_early);
}

#[test]
fn bad_configurations_are_errors_not_panics() {
    use mlp_lab::nn::NnError;
    let data = two_classes(20, 3, 7);
    let field = |e: NnError| match e {
        NnError::Invalid { field, .. } => field,
        other => panic!("expected a field error, got {other}"),
    };
    let zero = ModelSpec::new(&[3, 0, 2], Activation::Relu, Head::Softmax);
    assert_eq!(field(Model::new(zero, 0).unwrap_err()), "layers[1]");
    let wide = Model::new(
        ModelSpec::new(&[5, 4, 2], Activation::Relu, Head::Softmax),
        0,
    )
    .unwrap();
    let go = |m: Model, c: &TrainConfig| {
        fit(m, &data, c, &Interrupter::new(), &mut |_| Control::Continue)
    };
    assert_eq!(
        field(go(wide, &TrainConfig::default()).unwrap_err()),
        "layers[0]"
    );
    let ok = || {
        Model::new(
            ModelSpec::new(&[3, 4, 2], Activation::Relu, Head::Softmax),
            0,
        )
        .unwrap()
    };
    assert_eq!(
        field(
            go(
                ok(),
                &TrainConfig {
                    batch_size: 0,
                    ..TrainConfig::default()
                }
            )
            .unwrap_err()
        ),
        "batch_size"
    );
    assert_eq!(
        field(
            go(
                ok(),
                &TrainConfig {
                    epochs: 0,
                    ..TrainConfig::default()
                }
            )
            .unwrap_err()
        ),
        "epochs"
    );
    let three_out = Model::new(
        ModelSpec::new(&[3, 4, 3], Activation::Relu, Head::Softmax),
        0,
    )
    .unwrap();
    assert_eq!(
        field(go(three_out, &TrainConfig::default()).unwrap_err()),
        "layers[2]"
    );
    let nan = ndarray::array![[1.0f32, f32::NAN]];
    assert!(matches!(
        Dataset::new(nan, None, Targets::from_labels(&["a"])),
        Err(NnError::BadValue {
            row: 0,
            column: 1,
            ..
        })
    ));
}

/// The training loop flushes subnormals (DAZ and FTZ) while it runs, on whatever thread calls
/// it, and gives the thread its IEEE arithmetic back when it returns: a gradient at the bottom
/// of the normal range halves to zero inside `fit`, and to a subnormal outside it.
#[test]
fn fit_flushes_a_tiny_subnormal_gradient_to_zero_while_it_trains() {
    use std::hint::black_box;
    let halve = || black_box(f32::MIN_POSITIVE) * black_box(0.5);
    std::thread::spawn(move || {
        assert!(halve().is_subnormal());
        let mut seen = Vec::new();
        let model = Model::new(
            ModelSpec::new(&[2, 4, 1], Activation::Tanh, Head::Sigmoid),
            1,
        )
        .unwrap();
        let config = TrainConfig {
            epochs: 3,
            ..xor_config(1)
        };
        fit(model, &xor(), &config, &Interrupter::new(), &mut |_| {
            seen.push((halve().to_bits(), mlp_lab::nn::fpenv::flushing()));
            Control::Continue
        })
        .unwrap();
        assert!(seen.len() >= 3);
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            assert!(seen.iter().all(|&s| s == (0, true)), "{seen:?}");
        }
        assert!(
            halve().is_subnormal(),
            "the thread's mode is back after fit"
        );
    })
    .join()
    .expect("the checks pass");
}
