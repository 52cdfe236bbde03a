//! `…/plot.svg`: a tiny model trained on moons through the API, plotted.

use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

/// A moons dataset, a 2-8-2 softmax model trained on it for a few epochs: (model, job).
async fn trained_on_moons(app: &TestApp, name: &str) -> String {
    let dataset = app
        .dataset(json!({"name": "moons", "generator": {"kind": "moons", "samples": 200, "noise": 0.1, "seed": 2}}))
        .await;
    app.model(
        json!({"name": name, "layers": [2, 8, 8, 2], "activation": "tanh", "output": "softmax"}),
    )
    .await;
    let job = app
        .job(json!({
            "model": name, "dataset": dataset, "epochs": 15, "batch_size": 16, "seed": 4,
            "validation_split": 0.25, "optimizer": {"kind": "adam", "learning_rate": 0.02}
        }))
        .await;
    let done = app.wait_for_job(&job, &["succeeded", "failed"], 60).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    job
}

/// The body of a 200 `image/svg+xml` answer, parsed, and its text nodes.
async fn svg_text(response: reqwest::Response) -> (String, String) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let body = response.text().await.expect("body");
    let doc = roxmltree::Document::parse(&body).unwrap_or_else(|e| panic!("not XML: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let text = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n");
    (body, text)
}

#[tokio::test]
async fn every_job_plot_kind_is_an_svg_naming_its_series() {
    let app = TestApp::spawn().await;
    let job = trained_on_moons(&app, "moons-jobplot").await;
    let cases: [(&str, &[&str]); 5] = [
        ("loss", &["train loss", "validation loss"]),
        ("accuracy", &["train accuracy", "validation accuracy"]),
        ("gap", &["generalization gap"]),
        (
            "grad_norms",
            &["layer 0 (tanh)", "layer 1 (tanh)", "output layer"],
        ),
        (
            "units",
            &["layer 0 (tanh) saturated", "layer 1 (tanh) saturated"],
        ),
    ];
    for (kind, labels) in cases {
        let (_, text) = svg_text(
            app.get(&format!("/v1/jobs/{job}/plot.svg?kind={kind}"))
                .await,
        )
        .await;
        assert!(text.contains("moons-jobplot"), "{kind}: no title in {text}");
        for label in labels {
            assert!(text.contains(label), "{kind}: no {label:?} in {text}");
        }
    }
}

#[tokio::test]
async fn a_decision_boundary_shows_regions_and_the_jobs_split() {
    let app = TestApp::spawn().await;
    trained_on_moons(&app, "moons-boundary").await;
    let (body, text) = svg_text(
        app.get("/v1/models/moons-boundary/versions/1/plot.svg?kind=decision_boundary")
            .await,
    )
    .await;
    for label in [
        "decision boundary",
        "predicted 0",
        "predicted 1",
        "0 (train)",
        "1 (validation)",
    ] {
        assert!(text.contains(label), "no {label:?} in {text}");
    }
    let doc = roxmltree::Document::parse(&body).expect("XML");
    let circles = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .count();
    // 150 training rows (200 − 25 %), each drawn twice (fill, rim), and two legend circles.
    assert_eq!(circles, 150 * 2 + 2);
}

#[tokio::test]
async fn a_boundary_without_its_dataset_draws_regions_and_says_why() {
    let app = TestApp::spawn().await;
    trained_on_moons(&app, "moons-orphan").await;
    let dataset = app.get_ok("/v1/models/moons-orphan/versions/1").await["dataset"]
        .as_str()
        .expect("dataset id")
        .to_owned();
    assert_eq!(
        app.delete(&format!("/v1/datasets/{dataset}"))
            .await
            .status(),
        204
    );
    let (_, text) = svg_text(
        app.get("/v1/models/moons-orphan/versions/1/plot.svg?kind=decision_boundary")
            .await,
    )
    .await;
    assert!(
        text.contains("no data points: its dataset was deleted"),
        "{text}"
    );
    assert!(!text.contains("(train)"), "{text}");
}

#[tokio::test]
async fn plot_errors_name_the_kind_or_the_missing_object() {
    let app = TestApp::spawn().await;
    let job = trained_on_moons(&app, "moons-errors").await;

    for query in ["?kind=weights", "", "?kind="] {
        let problem = assert_problem(
            app.get(&format!("/v1/jobs/{job}/plot.svg{query}")).await,
            422,
            "validation_failed",
        )
        .await;
        let e = &problem.errors[0];
        assert_eq!(e.field, "kind", "{query}");
        assert!(
            e.message.contains("loss, accuracy, gap, grad_norms, units"),
            "{query}: {}",
            e.message
        );
    }
    let problem = assert_problem(
        app.get(&format!("/v1/jobs/{job}/plot.svg?kind=loss&color=red"))
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem.errors[0].field, "color");
    assert_problem(
        app.get("/v1/jobs/0190f5a0-0000-7000-8000-000000000000/plot.svg?kind=loss")
            .await,
        404,
        "not_found",
    )
    .await;
    let problem = assert_problem(
        app.get("/v1/models/moons-errors/versions/1/plot.svg?kind=loss")
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert!(problem.errors[0].message.contains("decision_boundary"));
    assert_problem(
        app.get("/v1/models/moons-errors/versions/9/plot.svg?kind=decision_boundary")
            .await,
        404,
        "not_found",
    )
    .await;

    // Three inputs: no plane to draw.
    let wide = app
        .dataset(json!({"name": "wide", "features": [[0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 1]], "targets": ["a", "b", "a", "b"]}))
        .await;
    app.model(json!({"name": "wide", "layers": [3, 4, 2], "output": "softmax"}))
        .await;
    let job = app
        .job(json!({"model": "wide", "dataset": wide, "epochs": 2, "validation_split": 0.0}))
        .await;
    app.wait_for_job(&job, &["succeeded"], 60).await;
    let problem = assert_problem(
        app.get("/v1/models/wide/versions/1/plot.svg?kind=decision_boundary")
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem.errors[0].field, "kind");
    assert!(
        problem.errors[0].message.contains("2 inputs"),
        "{}",
        problem.errors[0].message
    );
}
