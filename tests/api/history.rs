//! `GET /v1/jobs/{id}/metrics`: a job's epoch history in pages (`since`, `limit`) linked by
//! `next`, and paging parameters out of range refused naming the field and the limit.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, xor_dataset, TestApp};

/// A job of `epochs` quick epochs, trained.
async fn trained_job(app: &TestApp, epochs: usize) -> String {
    let dataset = app.dataset(xor_dataset(2)).await;
    app.model(json!({"name": "paged", "layers": [2, 2, 1], "output": "sigmoid"}))
        .await;
    let job = app
        .job(json!({"model": "paged", "dataset": dataset, "epochs": epochs, "batch_size": 8}))
        .await;
    app.wait_for_job(&job, &["succeeded"], 60).await;
    job
}

fn epochs_of(page: &Value) -> Vec<u64> {
    page["epochs"]
        .as_array()
        .expect("epochs")
        .iter()
        .map(|e| e["epoch"].as_u64().expect("an epoch"))
        .collect()
}

#[tokio::test]
async fn the_history_comes_in_pages_linked_by_next() {
    let app = TestApp::spawn().await;
    let job = trained_job(&app, 2_500).await;

    let response = app.get(&format!("/v1/jobs/{job}/metrics")).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let next = format!("/v1/jobs/{job}/metrics?since=1000&limit=1000");
    assert_eq!(
        response.headers()["link"],
        format!("<{next}>; rel=\"next\"")
    );
    let first: Value = response.json().await.expect("JSON");
    assert_eq!(first["job"], job.as_str());
    assert_eq!(first["state"], "succeeded");
    assert_eq!(first["next"], next.as_str());
    assert!(epochs_of(&first).into_iter().eq(0..1000));
    let mut all = epochs_of(&first);
    let mut link = first["next"].as_str().map(str::to_owned);
    let mut pages = 1;
    while let Some(path) = link {
        let page = app.get_ok(&path).await;
        all.extend(epochs_of(&page));
        link = page["next"].as_str().map(str::to_owned);
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert!(all.into_iter().eq(0..=2_500), "every epoch once, in order");

    let window = app
        .get_ok(&format!("/v1/jobs/{job}/metrics?since=2400&limit=50"))
        .await;
    assert!(epochs_of(&window).into_iter().eq(2400..2450));
    assert_eq!(
        window["next"],
        format!("/v1/jobs/{job}/metrics?since=2450&limit=50")
    );
    let past = app
        .get(&format!("/v1/jobs/{job}/metrics?since=99999"))
        .await;
    assert!(!past.headers().contains_key("link"));
    let past: Value = past.json().await.expect("JSON");
    assert_eq!(past["epochs"], json!([]));
    assert!(past.get("next").is_none(), "{past}");
}

#[tokio::test]
async fn paging_parameters_out_of_range_are_refused_naming_the_field_and_the_limit() {
    let app = TestApp::spawn().await;
    let job = trained_job(&app, 2).await;
    let metrics = |query: &str| format!("/v1/jobs/{job}/metrics?{query}");

    let zero = app.get(&metrics("limit=0")).await;
    let huge = app.get(&metrics("limit=1000000000")).await;
    let negative = app.get(&metrics("since=-1")).await;
    let words = app.get(&metrics("since=later")).await;

    let zero = assert_problem(zero, 422, "validation_failed").await;
    assert_eq!(zero.errors[0].field, "limit");
    assert!(zero.errors[0].message.contains("at least 1"), "{zero:?}");
    let huge = assert_problem(huge, 422, "limit_exceeded").await;
    assert_eq!(huge.errors[0].field, "limit");
    assert!(
        huge.detail.contains("1000") && huge.detail.contains("--max-page-size"),
        "{huge:?}"
    );
    for problem in [
        assert_problem(negative, 422, "validation_failed").await,
        assert_problem(words, 422, "validation_failed").await,
    ] {
        assert_eq!(problem.errors[0].field, "since");
        assert!(
            problem.errors[0].message.contains("whole number"),
            "{problem:?}"
        );
    }
}
