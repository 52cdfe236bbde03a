//! What openapi.yaml promises and schemathesis checks: a number out of range for its field is
//! a 422 naming the field, an integer may be written `2.0`, every query parameter is checked
//! whatever the body, and fields that do not belong together are refused.

use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn a_number_out_of_range_for_its_field_is_a_validation_error_naming_it() {
    let app = TestApp::spawn().await;
    let huge_alpha = r#"{"name": "m", "layers": [2, 3, 1], "output": "sigmoid",
                   "activations": [{"name": "elu", "alpha": -7.89852114878228e+279}]}"#;
    let huge_dropout = r#"{"name": "m", "layers": [2, 1], "output": "sigmoid", "dropout": 1e400}"#;

    let alpha = app
        .post_raw("/v1/models", huge_alpha, Some("application/json"))
        .await;
    let dropout = app
        .post_raw("/v1/models", huge_dropout, Some("application/json"))
        .await;

    let problem = assert_problem(alpha, 422, "validation_failed").await;
    assert!(
        problem.errors[0].field.starts_with("activations[0]"),
        "{problem:?}"
    );
    assert!(problem.errors[0].message.contains("alpha"), "{problem:?}");
    let problem = assert_problem(dropout, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "dropout", "{problem:?}");
    assert!(
        problem.errors[0].message.contains("out of range"),
        "{problem:?}"
    );
}

#[tokio::test]
async fn a_number_beyond_64_bit_floats_is_a_validation_error_naming_it() {
    let app = TestApp::spawn().await;
    let body = r#"{"inputs": [[1e400, 0]]}"#;
    app.model(json!({"name": "m", "layers": [2, 1], "output": "sigmoid"}))
        .await;

    let response = app
        .post_raw("/v1/models/m/predict", body, Some("application/json"))
        .await;

    let problem = assert_problem(response, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "inputs[0][0]", "{problem:?}");
}

#[tokio::test]
async fn a_syntax_error_after_an_out_of_range_number_is_still_malformed_json() {
    let app = TestApp::spawn().await;
    let body = r#"{"inputs": [[1e400, 0]], "#;

    let response = app
        .post_raw("/v1/models/m/predict", body, Some("application/json"))
        .await;

    assert_problem(response, 400, "malformed_json").await;
}

#[tokio::test]
async fn integers_written_with_a_zero_fraction_are_integers() {
    let app = TestApp::spawn().await;
    let body = r#"{"name": "whole", "layers": [2.0, 4.0, 1e0], "output": "sigmoid"}"#;

    let response = app
        .post_raw("/v1/models", body, Some("application/json"))
        .await;

    assert_eq!(response.status(), 201);
    let model: serde_json::Value = response.json().await.expect("json");
    assert_eq!(model["layers"], json!([2, 4, 1]));
    let response = app
        .post_raw(
            "/v1/datasets",
            r#"{"generator": {"kind": "xor", "samples": 20.0, "seed": 3.0}}"#,
            Some("application/json"),
        )
        .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn an_integer_field_refuses_a_fraction() {
    let app = TestApp::spawn().await;
    let body = r#"{"name": "frac", "layers": [2.5, 1], "output": "sigmoid"}"#;

    let response = app
        .post_raw("/v1/models", body, Some("application/json"))
        .await;

    let problem = assert_problem(response, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "layers[0]", "{problem:?}");
}

#[tokio::test]
async fn the_name_query_parameter_is_checked_with_a_json_body_too() {
    let app = TestApp::spawn().await;
    let long = "x".repeat(201);

    let response = app
        .post_raw(
            &format!("/v1/datasets?name={long}"),
            r#"{"builtin": "iris"}"#,
            Some("application/json"),
        )
        .await;

    let problem = assert_problem(response, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "name");
}

#[tokio::test]
async fn task_and_feature_names_belong_to_rows_not_to_generated_or_built_in_sets() {
    let app = TestApp::spawn().await;

    for body in [
        json!({"builtin": "iris", "task": "regression"}),
        json!({"generator": {"kind": "xor"}, "feature_names": ["a", "b"]}),
    ] {
        let response = app.post_json("/v1/datasets", &body).await;

        let problem = assert_problem(response, 422, "validation_failed").await;
        assert!(
            ["task", "feature_names"].contains(&problem.errors[0].field.as_str()),
            "{problem:?}"
        );
    }
}

#[tokio::test]
async fn null_is_the_same_as_an_absent_field() {
    let app = TestApp::spawn().await;

    let dataset = app
        .post_json(
            "/v1/datasets",
            &json!({"builtin": "iris", "name": null, "features": null, "task": null}),
        )
        .await;
    let model = app
        .post_json(
            "/v1/models",
            &json!({"name": "n", "layers": [2, 1], "output": "sigmoid", "activation": null}),
        )
        .await;

    assert_eq!(dataset.status(), 201);
    assert_eq!(model.status(), 201);
}

#[tokio::test]
async fn values_just_outside_a_bound_are_refused_even_where_an_f32_would_round_them_in() {
    let app = TestApp::spawn().await;

    for (body, field) in [
        (
            r#"{"name": "a", "layers": [2, 3, 1], "output": "sigmoid",
                "activation": {"name": "leaky_relu", "alpha": 1.0000000000000002}}"#,
            "activation",
        ),
        (
            r#"{"name": "d", "layers": [2, 1], "output": "sigmoid", "dropout": -1e-300}"#,
            "dropout",
        ),
    ] {
        let response = app
            .post_raw("/v1/models", body, Some("application/json"))
            .await;

        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(problem.errors[0].field, field, "{problem:?}");
    }
}
