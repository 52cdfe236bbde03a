//! End to end: dataset → model → job → poll until succeeded → predict.

use serde_json::json;

use crate::helpers::{xor_dataset, TestApp};

async fn xor_learns_with(activation: &str) {
    let app = TestApp::spawn().await;
    let dataset = app.dataset(xor_dataset(25)).await;
    let name = format!("xor-{activation}");
    app.model(
        json!({"name": name, "layers": [2, 8, 1], "activation": activation, "output": "sigmoid"}),
    )
    .await;

    let job = app
        .job(json!({
            "model": name, "dataset": dataset, "epochs": 400, "batch_size": 16, "seed": 3,
            "validation_split": 0.0, "optimizer": {"kind": "adam", "learning_rate": 0.05}
        }))
        .await;
    let done = app.wait_for_job(&job, &["succeeded", "failed"], 60).await;

    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["version"], 1);
    let answer = app
        .post_ok(
            &format!("/v1/models/{name}/predict"),
            &json!({"inputs": [[0, 0], [0, 1], [1, 0], [1, 1]]}),
            200,
        )
        .await;
    let p: Vec<f64> = answer["outputs"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r[0].as_f64().expect("p"))
        .collect();
    assert!(
        p[0] < 0.5 && p[1] > 0.5 && p[2] > 0.5 && p[3] < 0.5,
        "{activation}: {p:?}"
    );
    assert_eq!(
        answer["labels"],
        json!([0, 1, 1, 0]),
        "numbers stay numbers"
    );
    assert_eq!(answer["version"], 1);
    assert_eq!(answer["output_names"], json!(["1"]));
}

#[tokio::test]
async fn xor_is_learned_with_sigmoid_hidden_units() {
    xor_learns_with("sigmoid").await;
}

#[tokio::test]
async fn xor_is_learned_with_tanh_hidden_units() {
    xor_learns_with("tanh").await;
}

#[tokio::test]
async fn xor_is_learned_with_relu_hidden_units() {
    xor_learns_with("relu").await;
}

#[tokio::test]
async fn spirals_are_learned_with_a_softmax_head() {
    let app = TestApp::spawn().await;
    let dataset = app
        .dataset(json!({"generator": {"kind": "spirals", "samples": 150, "classes": 3, "seed": 1}}))
        .await;
    app.model(json!({"name": "spirals", "layers": [2, 32, 32, 3], "activation": "relu", "output": "softmax"})).await;

    let job = app
        .job(
            json!({"model": "spirals", "dataset": dataset, "epochs": 300, "batch_size": 32,
                    "optimizer": {"kind": "adam", "learning_rate": 0.02}, "seed": 1}),
        )
        .await;
    let done = app.wait_for_job(&job, &["succeeded", "failed"], 90).await;

    assert_eq!(done["state"], "succeeded", "{done}");
    let accuracy = done["result"]["train"]["accuracy"]
        .as_f64()
        .expect("accuracy");
    assert!(accuracy > 0.9, "train accuracy {accuracy}");
    let model = app.get_ok("/v1/models/spirals").await;
    assert_eq!(
        model["versions"][0]["metrics"]["train"]["accuracy"],
        done["result"]["train"]["accuracy"]
    );
    let answer = app
        .post_ok(
            "/v1/models/spirals/predict",
            &json!({"inputs": [[0.1, 0.2]]}),
            200,
        )
        .await;
    let row = answer["outputs"][0].as_array().expect("a row");
    let sum: f64 = row.iter().map(|v| v.as_f64().expect("p")).sum();
    assert!((sum - 1.0).abs() < 1e-4, "{row:?}");
}

#[tokio::test]
async fn a_regression_set_is_learned_with_an_identity_head() {
    let app = TestApp::spawn().await;
    let dataset = app
        .dataset(json!({"generator": {"kind": "regression_plane", "samples": 200, "seed": 2}}))
        .await;
    app.model(
        json!({"name": "plane", "layers": [2, 16, 1], "activation": "tanh", "output": "identity"}),
    )
    .await;

    let job = app
        .job(json!({"model": "plane", "dataset": dataset, "epochs": 200,
                    "optimizer": {"kind": "adam", "learning_rate": 0.01}}))
        .await;
    let done = app.wait_for_job(&job, &["succeeded", "failed"], 60).await;

    assert_eq!(done["state"], "succeeded", "{done}");
    let r2 = done["result"]["validation"]["r2"].as_f64().expect("r2");
    assert!(r2 > 0.9, "validation R² {r2}");
    let answer = app
        .post_ok(
            "/v1/models/plane/predict",
            &json!({"inputs": [[0.5, -0.5]]}),
            200,
        )
        .await;
    assert!(answer.get("labels").is_none(), "{answer}");
    assert_eq!(answer["output_names"], json!(["y"]));
}

#[tokio::test]
async fn an_inline_dataset_in_the_job_is_registered_and_trained_on() {
    let app = TestApp::spawn().await;
    app.model(json!({"name": "inline", "layers": [2, 4, 1], "output": "sigmoid"}))
        .await;

    let job = app
        .job(json!({"model": "inline", "dataset": xor_dataset(2), "epochs": 3}))
        .await;
    let done = app.wait_for_job(&job, &["succeeded", "failed"], 30).await;

    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(app.get_ok("/v1/datasets").await["total"], 1);
    let metrics = app.get_ok(&format!("/v1/jobs/{job}/metrics")).await;
    let epochs: Vec<u64> = metrics["epochs"]
        .as_array()
        .expect("epochs")
        .iter()
        .map(|r| r["epoch"].as_u64().expect("n"))
        .collect();
    assert_eq!(epochs, [0, 1, 2, 3]);
    let rest = app.get_ok(&format!("/v1/jobs/{job}/metrics?since=2")).await;
    assert_eq!(rest["epochs"].as_array().map(Vec::len), Some(2));
    assert!(
        metrics["epochs"][1]["layers"][0]["grad_norm"].is_number(),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_warm_start_continues_from_a_version() {
    let app = TestApp::spawn().await;
    let dataset = app.dataset(xor_dataset(4)).await;
    app.model(json!({"name": "warm", "layers": [2, 4, 1], "output": "sigmoid"}))
        .await;
    let first = app
        .job(json!({"model": "warm", "dataset": dataset, "epochs": 2}))
        .await;
    app.wait_for_job(&first, &["succeeded"], 30).await;

    let second = app
        .job(
            json!({"model": "warm", "dataset": dataset, "epochs": 2, "warm_start": {"version": 1}}),
        )
        .await;
    let done = app
        .wait_for_job(&second, &["succeeded", "failed"], 30)
        .await;

    assert_eq!(done["result"]["version"], 2, "{done}");
    assert_eq!(done["warm_start"], json!({"version": 1}));
    let versions = app.get_ok("/v1/models/warm/versions").await;
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        app.get_ok("/v1/models/warm/versions/2").await["job"],
        second.as_str()
    );
}

/// Trains one request (products large enough to be split across threads) on a server whose
/// jobs may use `threads` threads; the version's weights.
async fn weights_on(threads: usize) -> Vec<u8> {
    let mut config = mlp_lab::config::Config::for_tests();
    config.serving_cpus = 0;
    config.training_threads = threads;
    let app = TestApp::spawn_with(config).await;
    let dataset = app
        .dataset(json!({"name": "wide", "generator": {
            "kind": "blobs", "samples": 160, "features": 700, "classes": 3, "seed": 5}}))
        .await;
    app.model(
        json!({"name": "wide", "layers": [700, 96, 3], "activation": "gelu", "output": "softmax"}),
    )
    .await;
    let job = app
        .job(json!({"model": "wide", "dataset": dataset, "epochs": 3, "batch_size": 64, "seed": 9}))
        .await;
    let done = app.wait_for_job(&job, &["succeeded", "failed"], 60).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let response = app.get("/v1/models/wide/versions/1/weights").await;
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("the weights").to_vec()
}

/// A 64 × 700 · 700 × 96 product is split into blocks that the job's helper threads take
/// when a core is free: the weights must not depend on that (nor on whether a helper was
/// free, which other tests running beside this one decide).
#[tokio::test]
async fn a_job_gives_the_same_weights_on_one_thread_or_several() {
    let one = weights_on(1).await;
    let several = weights_on(0).await;
    assert!(
        one == several,
        "the weights differ between 1 and several training threads"
    );
}
