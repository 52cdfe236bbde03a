//! `/v1/datasets`: inline rows, generators, built-ins and CSV; summaries; and bad data.

use mlp_lab::config::Config;
use serde_json::json;

use crate::helpers::{assert_problem, xor_dataset, TestApp};

#[tokio::test]
async fn an_inline_dataset_is_created_with_location_and_summary() {
    let app = TestApp::spawn().await;

    let response = app.post_json("/v1/datasets", &xor_dataset(2)).await;

    assert_eq!(response.status(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(
        location,
        format!("/v1/datasets/{}", body["id"].as_str().expect("id"))
    );
    let shown = app.get_ok(&location).await;
    assert_eq!(shown["rows"], 8);
    assert_eq!(shown["features"], 2);
    assert_eq!(shown["task"], "classification");
    assert_eq!(
        shown["classes"],
        json!([{"name": "0", "count": 4}, {"name": "1", "count": 4}])
    );
    assert_eq!(shown["feature_stats"][0]["mean"], 0.5);
}

#[tokio::test]
async fn generators_and_builtins_make_datasets() {
    let app = TestApp::spawn().await;

    let spirals = app
        .dataset(json!({"generator": {"kind": "spirals", "samples": 90, "classes": 3}}))
        .await;
    let iris = app.dataset(json!({"builtin": "iris"})).await;

    assert_eq!(
        app.get_ok(&format!("/v1/datasets/{spirals}")).await["classes"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let iris = app.get_ok(&format!("/v1/datasets/{iris}")).await;
    assert_eq!(iris["rows"], 150);
    let listed = app.get_ok("/v1/datasets?limit=1").await;
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["next_offset"], 1);
}

#[tokio::test]
async fn an_unknown_builtin_lists_the_valid_ones() {
    let app = TestApp::spawn().await;

    let problem = assert_problem(
        app.post_json("/v1/datasets", &json!({"builtin": "mnist"}))
            .await,
        422,
        "validation_failed",
    )
    .await;

    assert!(problem.errors[0].message.contains("iris"), "{problem:?}");
}

#[tokio::test]
async fn a_csv_upload_keeps_string_labels_and_names_the_target() {
    let app = TestApp::spawn().await;
    let csv = "species,petal,sepal\nsetosa,1.4,5.1\nvirginica,5.9,6.8\nsetosa,1.3,4.9\n";

    let response = app
        .post_raw("/v1/datasets?target=species", csv, Some("text/csv"))
        .await;

    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["feature_names"], json!(["petal", "sepal"]));
    assert_eq!(body["classes"][1], json!({"name": "virginica", "count": 1}));
}

#[tokio::test]
async fn a_quoted_csv_field_may_hold_a_line_break() {
    let app = TestApp::spawn().await;
    // RFC 4180: a quoted header and a quoted label each span two lines.
    let csv =
        "\"petal\nlength\",species\n1.4,\"setosa\nnorth\"\n5.9,virginica\n1.3,\"setosa\nnorth\"\n";

    let response = app.post_raw("/v1/datasets", csv, Some("text/csv")).await;

    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["rows"], 3);
    assert_eq!(body["feature_names"], json!(["petal\nlength"]));
    assert_eq!(
        body["classes"][0],
        json!({"name": "setosa\nnorth", "count": 2})
    );
}

#[tokio::test]
async fn nan_in_csv_is_422_naming_the_row_and_column() {
    let app = TestApp::spawn().await;
    let csv = "a,b,y\n1,2,0\n3,NaN,1\n";

    let problem = assert_problem(
        app.post_raw("/v1/datasets", csv, Some("text/csv")).await,
        422,
        "validation_failed",
    )
    .await;

    assert_eq!(problem.errors[0].field, "rows[1].b");
    assert!(
        problem.errors[0].message.contains("data row 2"),
        "{problem:?}"
    );
}

#[tokio::test]
async fn an_empty_csv_cell_is_422_naming_the_row_and_column() {
    let app = TestApp::spawn().await;

    let problem = assert_problem(
        app.post_raw("/v1/datasets", "a,b,y\n1,,0\n", Some("text/csv"))
            .await,
        422,
        "validation_failed",
    )
    .await;

    assert!(
        problem.errors[0].message.contains("`b`") && problem.errors[0].message.contains("empty"),
        "{problem:?}"
    );
}

#[tokio::test]
async fn empty_and_ragged_data_are_422() {
    let app = TestApp::spawn().await;

    let empty = app
        .post_json("/v1/datasets", &json!({"features": [], "targets": []}))
        .await;
    let ragged = app
        .post_json(
            "/v1/datasets",
            &json!({"features": [[1, 2], [3]], "targets": [0, 1]}),
        )
        .await;

    assert_eq!(
        assert_problem(empty, 422, "validation_failed").await.errors[0].field,
        "features"
    );
    assert_eq!(
        assert_problem(ragged, 422, "validation_failed")
            .await
            .errors[0]
            .field,
        "features[1]"
    );
}

#[tokio::test]
async fn labels_not_matching_rows_are_422() {
    let app = TestApp::spawn().await;

    let response = app
        .post_json(
            "/v1/datasets",
            &json!({"features": [[1], [2], [3]], "targets": [0, 1]}),
        )
        .await;

    let problem = assert_problem(response, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "targets");
    assert!(
        problem.errors[0].message.contains("2 targets for 3 rows"),
        "{problem:?}"
    );
}

#[tokio::test]
async fn a_dataset_in_plain_text_is_415() {
    let app = TestApp::spawn().await;

    let problem = assert_problem(
        app.post_raw("/v1/datasets", "1,2", Some("text/plain"))
            .await,
        415,
        "unsupported_media_type",
    )
    .await;

    assert!(problem.detail.contains("text/csv"), "{}", problem.detail);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;

    assert_problem(
        app.post_raw("/v1/datasets", "{\"features\": [", Some("application/json"))
            .await,
        400,
        "malformed_json",
    )
    .await;
}

#[tokio::test]
async fn the_cell_limit_is_enforced_just_inside_and_just_outside() {
    let mut config = Config::for_tests();
    config.limits.max_dataset_cells = 9; // 3 rows × (2 features + 1 target)
    let app = TestApp::spawn_with(config).await;
    let rows = |n: usize| json!({"features": vec![[1.0, 2.0]; n], "targets": vec![1; n]});

    assert_eq!(app.post_json("/v1/datasets", &rows(3)).await.status(), 201);
    let problem = assert_problem(
        app.post_json("/v1/datasets", &rows(4)).await,
        422,
        "limit_exceeded",
    )
    .await;

    assert!(
        problem.detail.contains("--max-dataset-cells"),
        "{}",
        problem.detail
    );
}

#[tokio::test]
async fn a_value_over_the_magnitude_limit_names_its_cell_and_the_setting() {
    let app = TestApp::spawn().await;

    let response = app
        .post_json(
            "/v1/datasets",
            &json!({"features": [[1.0], [2e6]], "targets": [0, 1]}),
        )
        .await;

    let problem = assert_problem(response, 422, "limit_exceeded").await;
    assert_eq!(problem.errors[0].field, "features[1][0]");
    assert!(
        problem.detail.contains("--max-abs-value"),
        "{}",
        problem.detail
    );
}

#[tokio::test]
async fn a_deleted_dataset_is_gone() {
    let app = TestApp::spawn().await;
    let id = app.dataset(xor_dataset(1)).await;

    assert_eq!(
        app.delete(&format!("/v1/datasets/{id}")).await.status(),
        204
    );

    assert_problem(
        app.get(&format!("/v1/datasets/{id}")).await,
        404,
        "not_found",
    )
    .await;
}
