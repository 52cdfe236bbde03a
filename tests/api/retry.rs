//! `POST /v1/jobs/{id}/retry`: an identical new job for one that did not succeed.

use mlp_lab::config::Config;
use serde_json::json;

use crate::helpers::{assert_problem, xor_dataset, TestApp};

async fn setup(app: &TestApp) -> String {
    app.model(
        json!({"name": "xor", "layers": [2, 8, 1], "activation": "tanh", "output": "sigmoid"}),
    )
    .await;
    app.dataset(xor_dataset(25)).await
}

fn long_job(dataset: &str) -> serde_json::Value {
    json!({"model": "xor", "dataset": dataset, "epochs": 100000, "batch_size": 1,
           "seed": 11, "optimizer": {"kind": "sgd", "learning_rate": 0.05, "momentum": 0.9}})
}

#[tokio::test]
async fn a_cancelled_job_is_retried_with_the_same_request_and_says_what_it_retries() {
    let app = TestApp::spawn().await;
    let dataset = setup(&app).await;
    let job = app.job(long_job(&dataset)).await;
    app.wait_for_job(&job, &["running"], 30).await;
    let cancelled = app
        .post_ok(&format!("/v1/jobs/{job}/cancel"), &json!({}), 200)
        .await;

    let response = app
        .post_json(&format!("/v1/jobs/{job}/retry"), &json!({}))
        .await;

    assert_eq!(response.status(), 202);
    let location = response.headers()["location"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let retried: serde_json::Value = response.json().await.expect("JSON");
    let id = retried["id"].as_str().expect("id");
    assert_eq!(location, format!("/v1/jobs/{id}"));
    assert_ne!(id, job);
    assert_eq!(retried["retry_of"], job.as_str());
    assert_eq!(retried["request"], cancelled["request"]);
    assert_eq!(retried["request"]["seed"], 11);
    assert_eq!(retried["model"], cancelled["model"]);
    assert_eq!(retried["dataset"], cancelled["dataset"]);
    assert!(cancelled["retry_of"].is_null());
    let running = app
        .post_json(&format!("/v1/jobs/{id}/retry"), &json!({}))
        .await;
    let problem = assert_problem(running, 409, "job_not_finished").await;
    assert!(problem.detail.contains("still"), "{}", problem.detail);
    app.post_ok(&format!("/v1/jobs/{id}/cancel"), &json!({}), 200)
        .await;
}

#[tokio::test]
async fn a_retried_job_with_a_warm_start_trains_the_same_weights_as_the_original_would() {
    // One job at a time, so that the job to cancel waits behind a long one and is surely
    // cancelled before it could finish.
    let app = TestApp::spawn_with(Config {
        max_running_jobs: 1,
        ..Config::for_tests()
    })
    .await;
    let dataset = setup(&app).await;
    let first = app
        .job(json!({"model": "xor", "dataset": dataset, "epochs": 5, "seed": 2}))
        .await;
    app.wait_for_job(&first, &["succeeded"], 30).await;
    let body = json!({"model": "xor", "dataset": dataset, "epochs": 20, "seed": 5,
                      "warm_start": {"version": 1}});
    let original = app.job(body.clone()).await;
    app.wait_for_job(&original, &["succeeded"], 30).await;
    let blocker = app.job(long_job(&dataset)).await;
    app.wait_for_job(&blocker, &["running"], 30).await;
    let interrupted = app.job(body).await;
    app.post_ok(&format!("/v1/jobs/{interrupted}/cancel"), &json!({}), 200)
        .await;
    app.post_ok(&format!("/v1/jobs/{blocker}/cancel"), &json!({}), 200)
        .await;

    let retried = app
        .post_ok(&format!("/v1/jobs/{interrupted}/retry"), &json!({}), 202)
        .await;
    let id = retried["id"].as_str().expect("id");
    let done = app.wait_for_job(id, &["succeeded"], 30).await;

    assert_eq!(retried["warm_start"], json!({"version": 1}));
    let predict = |v: u64| json!({"inputs": [[0, 1], [1, 1]], "version": v});
    let a = app
        .post_ok("/v1/models/xor/predict", &predict(2), 200)
        .await;
    let b = app
        .post_ok(
            "/v1/models/xor/predict",
            &predict(done["result"]["version"].as_u64().expect("v")),
            200,
        )
        .await;
    assert_eq!(
        a["outputs"], b["outputs"],
        "same request and seed, same weights"
    );
}

#[tokio::test]
async fn a_succeeded_job_is_not_retried_and_an_unknown_one_is_404() {
    let app = TestApp::spawn().await;
    let dataset = setup(&app).await;
    let job = app
        .job(json!({"model": "xor", "dataset": dataset, "epochs": 2}))
        .await;
    app.wait_for_job(&job, &["succeeded"], 30).await;

    let succeeded = app
        .post_json(&format!("/v1/jobs/{job}/retry"), &json!({}))
        .await;
    let unknown = app
        .post_json(
            &format!("/v1/jobs/{}/retry", uuid::Uuid::now_v7()),
            &json!({}),
        )
        .await;
    let not_an_id = app.post_json("/v1/jobs/nope/retry", &json!({})).await;

    let problem = assert_problem(succeeded, 409, "job_succeeded").await;
    assert!(problem.detail.contains("version 1"), "{}", problem.detail);
    assert_problem(unknown, 404, "not_found").await;
    assert_eq!(not_an_id.status(), 404);
}

#[tokio::test]
async fn a_job_whose_model_or_dataset_was_deleted_since_is_409_naming_which() {
    let app = TestApp::spawn().await;
    let dataset = setup(&app).await;
    let other = app.dataset(xor_dataset(3)).await;
    let on_other = app.job(long_job(&other)).await;
    app.post_ok(&format!("/v1/jobs/{on_other}/cancel"), &json!({}), 200)
        .await;
    assert_eq!(
        app.delete(&format!("/v1/datasets/{other}")).await.status(),
        204
    );

    let no_dataset = app
        .post_json(&format!("/v1/jobs/{on_other}/retry"), &json!({}))
        .await;

    let problem = assert_problem(no_dataset, 409, "dataset_deleted").await;
    assert!(problem.detail.contains(&other), "{}", problem.detail);

    let job = app.job(long_job(&dataset)).await;
    app.wait_for_job(&job, &["running"], 30).await;
    let model = app.get_ok("/v1/models/xor").await["id"].clone();
    assert_eq!(app.delete("/v1/models/xor").await.status(), 204);
    app.wait_for_job(&job, &["cancelled"], 5).await;
    // a new model of the same name is another model: the retry does not train it
    setup(&app).await;

    let no_model = app
        .post_json(&format!("/v1/jobs/{job}/retry"), &json!({}))
        .await;

    let problem = assert_problem(no_model, 409, "model_deleted").await;
    let model = model.as_str().expect("id");
    assert!(
        problem.detail.contains(&format!("model '{model}'")),
        "{}",
        problem.detail
    );
}
