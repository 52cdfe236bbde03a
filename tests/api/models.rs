//! `/v1/models`: specs, validation against the limits, names, versions.

use mlp_lab::config::Config;
use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

fn spec(name: &str, layers: serde_json::Value) -> serde_json::Value {
    json!({"name": name, "layers": layers, "activation": "tanh", "output": "sigmoid"})
}

#[tokio::test]
async fn a_model_is_created_and_found_by_id_and_by_name() {
    let app = TestApp::spawn().await;

    let response = app
        .post_json("/v1/models", &spec("xor", json!([2, 4, 1])))
        .await;

    assert_eq!(response.status(), 201);
    let id = response.headers()["location"]
        .to_str()
        .expect("ASCII")
        .rsplit('/')
        .next()
        .expect("id")
        .to_owned();
    let by_name = app.get_ok("/v1/models/xor").await;
    assert_eq!(by_name["id"], id.as_str());
    assert_eq!(by_name["parameter_count"], 2 * 4 + 4 + 4 + 1);
    assert_eq!(by_name["activations"], json!(["tanh"]));
    assert_eq!(by_name["versions"], json!([]));
    assert_eq!(app.get_ok(&format!("/v1/models/{id}")).await["name"], "xor");
    assert_eq!(app.get_ok("/v1/models").await["total"], 1);
}

#[tokio::test]
async fn a_duplicate_name_is_409() {
    let app = TestApp::spawn().await;
    app.model(spec("twice", json!([2, 1]))).await;

    assert_problem(
        app.post_json("/v1/models", &spec("twice", json!([2, 1])))
            .await,
        409,
        "name_taken",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_activation_lists_the_valid_ones() {
    let app = TestApp::spawn().await;
    let mut body = spec("m", json!([2, 3, 1]));
    body["activation"] = json!("relu6");

    let problem = assert_problem(
        app.post_json("/v1/models", &body).await,
        422,
        "validation_failed",
    )
    .await;

    assert_eq!(problem.errors[0].field, "activation");
    assert!(
        problem.errors[0].message.contains("leaky_relu, prelu"),
        "{problem:?}"
    );
}

#[tokio::test]
async fn unknown_fields_such_as_id_are_422() {
    let app = TestApp::spawn().await;
    let mut body = spec("m", json!([2, 1]));
    body["id"] = json!("0190a0a0-0000-7000-8000-000000000000");

    let problem = assert_problem(
        app.post_json("/v1/models", &body).await,
        422,
        "validation_failed",
    )
    .await;

    assert_eq!(problem.errors[0].field, "id");
}

#[tokio::test]
async fn too_large_layers_name_the_limit_and_its_flag() {
    let app = TestApp::spawn().await;

    let response = app
        .post_json("/v1/models", &spec("big", json!([2, 70000, 1])))
        .await;

    let problem = assert_problem(response, 422, "limit_exceeded").await;
    assert_eq!(problem.errors[0].field, "layers[1]");
    assert!(
        problem.detail.contains("--max-units-per-layer"),
        "{}",
        problem.detail
    );
}

#[tokio::test]
async fn max_layers_is_enforced_just_inside_and_just_outside() {
    let mut config = Config::for_tests();
    config.limits.max_layers = 4;
    let app = TestApp::spawn_with(config).await;

    assert_eq!(
        app.post_json("/v1/models", &spec("four", json!([2, 3, 3, 1])))
            .await
            .status(),
        201
    );
    let problem = assert_problem(
        app.post_json("/v1/models", &spec("five", json!([2, 3, 3, 3, 1])))
            .await,
        422,
        "limit_exceeded",
    )
    .await;

    assert!(
        problem.detail.contains("--max-layers / MLP_LAB_MAX_LAYERS"),
        "{}",
        problem.detail
    );
}

#[tokio::test]
async fn a_zero_sized_layer_and_both_activation_forms_are_422() {
    let app = TestApp::spawn().await;
    let mut both = spec("m", json!([2, 3, 1]));
    both["activations"] = json!(["relu"]);

    let zero = assert_problem(
        app.post_json("/v1/models", &spec("z", json!([2, 0, 1])))
            .await,
        422,
        "validation_failed",
    )
    .await;
    let both = assert_problem(
        app.post_json("/v1/models", &both).await,
        422,
        "validation_failed",
    )
    .await;

    assert_eq!(zero.errors[0].field, "layers[1]");
    assert_eq!(both.errors[0].field, "activations");
}

#[tokio::test]
async fn a_missing_model_is_404() {
    let app = TestApp::spawn().await;

    assert_problem(app.get("/v1/models/nobody").await, 404, "not_found").await;
    assert_problem(
        app.get("/v1/models/nobody/versions/1").await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_deleted_model_is_gone() {
    let app = TestApp::spawn().await;
    app.model(spec("gone", json!([2, 1]))).await;

    assert_eq!(app.delete("/v1/models/gone").await.status(), 204);

    assert_problem(app.get("/v1/models/gone").await, 404, "not_found").await;
}

/// Found by schemathesis: a negative subnormal dropout (-1.1e-308) passed the `>= 0` check
/// while the server's threads read subnormals as zero (DAZ). Validation sees IEEE numbers.
#[tokio::test]
async fn a_negative_subnormal_dropout_is_refused_like_any_negative_one() {
    let app = TestApp::spawn().await;
    for dropout in [json!(-1.1125369292536007e-308), json!(-5e-324), json!(-0.5)] {
        let mut body = spec("m", json!([2, 3, 1]));
        body["dropout"] = dropout.clone();
        let problem = assert_problem(
            app.post_json("/v1/models", &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem.errors[0].field, "dropout", "{dropout}: {problem:?}");
    }
}
