//! `/v1/jobs`: cancellation, the queue limit, divergence, and bad requests.

use mlp_lab::config::Config;
use serde_json::json;

use crate::helpers::{assert_problem, xor_dataset, TestApp};

async fn xor_setup(app: &TestApp) -> String {
    app.model(
        json!({"name": "xor", "layers": [2, 8, 1], "activation": "tanh", "output": "sigmoid"}),
    )
    .await;
    app.dataset(xor_dataset(25)).await
}

fn long_job(dataset: &str) -> serde_json::Value {
    json!({"model": "xor", "dataset": dataset, "epochs": 100000, "batch_size": 1})
}

#[tokio::test]
async fn a_running_job_is_cancelled_and_saves_no_version() {
    let app = TestApp::spawn().await;
    let dataset = xor_setup(&app).await;
    let job = app.job(long_job(&dataset)).await;
    app.wait_for_job(&job, &["running"], 30).await;

    let cancelled = app
        .post_ok(&format!("/v1/jobs/{job}/cancel"), &json!({}), 200)
        .await;

    assert_eq!(cancelled["state"], "cancelled");
    let shown = app.wait_for_job(&job, &["cancelled"], 5).await;
    assert!(shown["result"].is_null());
    assert_eq!(app.get_ok("/v1/models/xor").await["versions"], json!([]));
    let again = app
        .post_json(&format!("/v1/jobs/{job}/cancel"), &json!({}))
        .await;
    assert_problem(again, 409, "job_finished").await;
}

#[tokio::test]
async fn a_full_queue_is_429_with_retry_after_and_a_queued_job_cancels_at_once() {
    let config = Config {
        max_running_jobs: 1,
        max_queued_jobs: 1,
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(config).await;
    let dataset = xor_setup(&app).await;
    let running = app.job(long_job(&dataset)).await;
    app.wait_for_job(&running, &["running"], 30).await;
    let queued = app.job(long_job(&dataset)).await;

    let response = app.post_json("/v1/jobs", &long_job(&dataset)).await;

    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 429, "queue_full").await;
    assert_eq!(
        app.get_ok(&format!("/v1/jobs/{queued}")).await["state"],
        "queued"
    );
    let cancelled = app
        .post_ok(&format!("/v1/jobs/{queued}/cancel"), &json!({}), 200)
        .await;
    assert_eq!(cancelled["state"], "cancelled");
    let listed = app.get_ok("/v1/jobs?status=running&model=xor").await;
    assert_eq!(listed["total"], 1);
    app.post_ok(&format!("/v1/jobs/{running}/cancel"), &json!({}), 200)
        .await;
}

#[tokio::test]
async fn a_diverging_job_fails_with_its_epoch_and_saves_no_version() {
    let app = TestApp::spawn().await;
    let features: Vec<[f64; 2]> = (0..32).map(|i| [f64::from(i), f64::from(i + 1)]).collect();
    let targets: Vec<f64> = (0..32).map(|i| f64::from(i) * 1e4).collect();
    let dataset = app
        .dataset(json!({"features": features, "targets": targets, "task": "regression"}))
        .await;
    app.model(
        json!({"name": "boom", "layers": [2, 16, 1], "activation": "relu", "output": "identity"}),
    )
    .await;

    let job = app
        .job(
            json!({"model": "boom", "dataset": dataset, "epochs": 50, "standardize": false,
                    "optimizer": {"kind": "sgd", "learning_rate": 1.0, "momentum": 0.9}}),
        )
        .await;
    let done = app.wait_for_job(&job, &["succeeded", "failed"], 30).await;

    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"]["epoch"].as_u64().is_some_and(|e| e >= 1),
        "{done}"
    );
    assert!(done["error"]["hint"].is_string(), "{done}");
    assert_eq!(app.get_ok("/v1/models/boom").await["versions"], json!([]));
}

#[tokio::test]
async fn zero_epochs_and_batch_size_zero_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let dataset = xor_setup(&app).await;

    for (field, value) in [("epochs", 0), ("batch_size", 0)] {
        let mut body = json!({"model": "xor", "dataset": dataset});
        body[field] = json!(value);
        let problem = assert_problem(
            app.post_json("/v1/jobs", &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem.errors[0].field, field);
    }
}

#[tokio::test]
async fn penalties_and_clip_norms_are_taken_up_to_the_largest_f32_and_echoed_within_the_spec() {
    // openapi.yaml's F32: 0 ≤ value < 2^128 − 2^103, the midpoint above f32::MAX from where a
    // number rounds to infinity. f32::MAX comes back as its shortest decimal, 3.4028235e38:
    // above its exact value (which was the spec's maximum, and what schemathesis flagged),
    // below the bound.
    let app = TestApp::spawn().await;
    let dataset = xor_setup(&app).await;
    let bound = 2f64.powi(128) - 2f64.powi(103);
    for field in ["l1", "l2", "gradient_clip_norm"] {
        let mut body = json!({"model": "xor", "dataset": dataset, "epochs": 1});
        body[field] = json!(f64::from(f32::MAX));
        let job = app.post_ok("/v1/jobs", &body, 202).await;
        let echoed = job["request"][field].as_f64().unwrap();
        assert!(echoed < bound && echoed as f32 == f32::MAX, "{echoed}");
        body[field] = json!(bound);
        let problem = assert_problem(
            app.post_json("/v1/jobs", &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem.errors[0].field, field);
    }
}

#[tokio::test]
async fn a_client_cannot_set_status_or_id() {
    let app = TestApp::spawn().await;
    let dataset = xor_setup(&app).await;

    for field in ["status", "id"] {
        let mut body = json!({"model": "xor", "dataset": dataset});
        body[field] = json!("succeeded");
        let problem = assert_problem(
            app.post_json("/v1/jobs", &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem.errors[0].field, field);
    }
}

#[tokio::test]
async fn epochs_over_the_limit_name_the_setting_and_the_limit_itself_is_allowed() {
    let mut config = Config::for_tests();
    config.limits.max_epochs = 3;
    let app = TestApp::spawn_with(config).await;
    let dataset = xor_setup(&app).await;

    app.job(json!({"model": "xor", "dataset": dataset, "epochs": 3}))
        .await;
    let response = app
        .post_json(
            "/v1/jobs",
            &json!({"model": "xor", "dataset": dataset, "epochs": 4}),
        )
        .await;

    let problem = assert_problem(response, 422, "limit_exceeded").await;
    assert!(
        problem.detail.contains("--max-epochs"),
        "{}",
        problem.detail
    );
}

#[tokio::test]
async fn a_job_for_a_missing_model_or_dataset_is_404() {
    let app = TestApp::spawn().await;
    let dataset = xor_setup(&app).await;

    let no_model = app
        .post_json("/v1/jobs", &json!({"model": "ghost", "dataset": dataset}))
        .await;
    let no_data = app
        .post_json(
            "/v1/jobs",
            &json!({"model": "xor", "dataset": uuid::Uuid::now_v7()}),
        )
        .await;

    assert_problem(no_model, 404, "not_found").await;
    assert_problem(no_data, 404, "not_found").await;
    assert_problem(
        app.get(&format!("/v1/jobs/{}", uuid::Uuid::now_v7())).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_model_that_does_not_fit_the_data_is_422() {
    let app = TestApp::spawn().await;
    let dataset = xor_setup(&app).await;
    app.model(json!({"name": "wide", "layers": [3, 1], "output": "sigmoid"}))
        .await;

    let problem = assert_problem(
        app.post_json("/v1/jobs", &json!({"model": "wide", "dataset": dataset}))
            .await,
        422,
        "validation_failed",
    )
    .await;

    assert!(
        problem.errors[0].message.contains("3 inputs"),
        "{problem:?}"
    );
}

#[tokio::test]
async fn splits_that_leave_no_training_rows_are_422() {
    let app = TestApp::spawn().await;
    let dataset = xor_setup(&app).await;

    let body =
        json!({"model": "xor", "dataset": dataset, "validation_split": 0.6, "test_split": 0.5});
    let problem = assert_problem(
        app.post_json("/v1/jobs", &body).await,
        422,
        "validation_failed",
    )
    .await;

    assert_eq!(problem.errors[0].field, "validation_split");
}
