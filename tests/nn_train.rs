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
        optimizer: OptimizerConfig::Adam {
            learning_rate: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
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
