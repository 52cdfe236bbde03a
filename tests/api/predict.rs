//! `POST /v1/models/{model}/predict`: the errors and limits around a trained model.

use mlp_lab::config::{Batching, Config};
use serde_json::json;

use crate::helpers::{assert_problem, metric, xor_dataset, TestApp};

async fn trained(app: &TestApp) {
    let dataset = app.dataset(xor_dataset(2)).await;
    app.model(json!({"name": "m", "layers": [2, 4, 1], "output": "sigmoid"}))
        .await;
    let job = app
        .job(json!({"model": "m", "dataset": dataset, "epochs": 1}))
        .await;
    app.wait_for_job(&job, &["succeeded"], 30).await;
}

#[tokio::test]
async fn predicting_before_training_is_409() {
    let app = TestApp::spawn().await;
    app.model(json!({"name": "untrained", "layers": [2, 1], "output": "sigmoid"}))
        .await;

    let response = app
        .post_json("/v1/models/untrained/predict", &json!({"inputs": [[0, 0]]}))
        .await;

    assert_problem(response, 409, "model_not_trained").await;
}

#[tokio::test]
async fn predicting_from_a_missing_model_is_404() {
    let app = TestApp::spawn().await;

    assert_problem(
        app.post_json("/v1/models/ghost/predict", &json!({"inputs": [[0]]}))
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn rows_of_the_wrong_width_name_the_expected_and_given_shapes() {
    let app = TestApp::spawn().await;
    trained(&app).await;

    let response = app
        .post_json(
            "/v1/models/m/predict",
            &json!({"inputs": [[0, 0], [1, 2, 3]]}),
        )
        .await;

    let problem = assert_problem(response, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "inputs[1]");
    assert!(
        problem.errors[0].message.contains("[2, 2]")
            && problem.errors[0].message.contains("3 values"),
        "{problem:?}"
    );
}

#[tokio::test]
async fn a_value_that_is_not_a_finite_f32_names_its_row_and_column() {
    let app = TestApp::spawn().await;
    trained(&app).await;

    let response = app
        .post_raw(
            "/v1/models/m/predict",
            r#"{"inputs": [[0, 0], [1, 1e39]]}"#,
            Some("application/json"),
        )
        .await;

    let problem = assert_problem(response, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "inputs[1][1]");

    // openapi.yaml's bound: below 2^128 − 2^103 (the midpoint above f32::MAX) a number rounds
    // to a finite f32 and is taken; from it on it rounds to infinity.
    let bound = 2f64.powi(128) - 2f64.powi(103);
    let below = f64::from_bits(bound.to_bits() - 1);
    for (value, status) in [(-below, 200), (below, 200), (bound, 422), (-bound, 422)] {
        let response = app
            .post_json("/v1/models/m/predict", &json!({"inputs": [[0, value]]}))
            .await;
        assert_eq!(response.status().as_u16(), status, "{value:e}");
    }
}

#[tokio::test]
async fn an_unknown_version_is_404_and_an_unknown_field_422() {
    let app = TestApp::spawn().await;
    trained(&app).await;

    let missing = app
        .post_json(
            "/v1/models/m/predict",
            &json!({"inputs": [[0, 0]], "version": 7}),
        )
        .await;
    let unknown = app
        .post_json(
            "/v1/models/m/predict",
            &json!({"inputs": [[0, 0]], "threshold": 0.3}),
        )
        .await;

    assert_problem(missing, 404, "not_found").await;
    assert_eq!(
        assert_problem(unknown, 422, "validation_failed")
            .await
            .errors[0]
            .field,
        "threshold"
    );
}

#[tokio::test]
async fn max_predict_rows_is_enforced_just_inside_and_just_outside() {
    let mut config = Config::for_tests();
    config.limits.max_predict_rows = 2;
    let app = TestApp::spawn_with(config).await;
    trained(&app).await;

    let inside = app
        .post_json(
            "/v1/models/m/predict",
            &json!({"inputs": [[0, 0], [1, 1]], "version": 1}),
        )
        .await;
    let outside = app
        .post_json(
            "/v1/models/m/predict",
            &json!({"inputs": [[0, 0], [1, 1], [0, 1]]}),
        )
        .await;

    assert_eq!(inside.status(), 200);
    let problem = assert_problem(outside, 422, "limit_exceeded").await;
    assert!(
        problem.detail.contains("--max-predict-rows"),
        "{}",
        problem.detail
    );
}

#[tokio::test]
async fn a_large_request_is_answered_row_for_row() {
    let app = TestApp::spawn().await;
    trained(&app).await;
    let inputs = vec![[0.5, 0.5]; 500];

    let answer = app
        .post_ok("/v1/models/m/predict", &json!({"inputs": inputs}), 200)
        .await;

    assert_eq!(answer["outputs"].as_array().map(Vec::len), Some(500));
    assert_eq!(answer["labels"].as_array().map(Vec::len), Some(500));
}

#[tokio::test]
async fn requests_sent_at_once_get_the_answers_they_get_alone_batched_or_not() {
    // Thirty small requests (1 to 3 rows) to a 2-16-16-2 network, first one at a time, then
    // all at once: with `--batch-predictions` the ones that arrive together are computed as
    // one product, and every row must still come out with the bits it has alone (and the
    // same as without batching, for the same trained weights).
    let bodies: Vec<_> = (0..30)
        .map(|i| {
            let rows: Vec<_> = (0..i % 3 + 1)
                .map(|r| {
                    [
                        ((i * 7 + r) as f64 * 0.37).sin(),
                        ((i + r) as f64 * 1.3).cos(),
                    ]
                })
                .collect();
            json!({ "inputs": rows })
        })
        .collect();
    let mut answers = Vec::new();
    for batching in [Batching::Always, Batching::Auto] {
        let app = TestApp::spawn_with(Config {
            batch_predictions: batching,
            max_concurrent_predictions: 64,
            ..Config::for_tests()
        })
        .await;
        let dataset = app.dataset(xor_dataset(4)).await;
        app.model(json!({"name": "m", "layers": [2, 16, 16, 2], "output": "softmax"}))
            .await;
        let job = app
            .job(json!({"model": "m", "dataset": dataset, "epochs": 3, "seed": 5}))
            .await;
        app.wait_for_job(&job, &["succeeded"], 30).await;

        let mut alone = Vec::new();
        for body in &bodies {
            alone.push(app.post_ok("/v1/models/m/predict", body, 200).await["outputs"].clone());
        }
        let at_once = futures_util::future::join_all(
            bodies
                .iter()
                .map(|body| app.post_ok("/v1/models/m/predict", body, 200)),
        )
        .await;
        let at_once: Vec<_> = at_once.iter().map(|a| a["outputs"].clone()).collect();
        assert_eq!(alone, at_once, "batching {batching:?}");

        let batched = metric(&app, "mlp_lab_batched_predictions_total").await;
        let batches = metric(&app, "mlp_lab_prediction_batches_total").await;
        // `auto` leaves a network this small alone.
        if batching == Batching::Always {
            assert_eq!(batched, 60.0);
            assert!((1.0..=60.0).contains(&batches), "{batches}");
        } else {
            assert_eq!((batched, batches), (0.0, 0.0));
        }
        answers.push(alone);
    }
    assert_eq!(answers[0], answers[1]);
}

/// `body` as a chunked stream of `size`-byte pieces: hyper hands the server each piece as it
/// comes, and the server parses them as they come.
fn in_pieces(body: &str, size: usize) -> reqwest::Body {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = body
        .as_bytes()
        .chunks(size)
        .map(|piece| Ok(piece.to_vec()))
        .collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
}

#[tokio::test]
async fn a_body_sent_in_pieces_is_answered_as_it_is_in_one() {
    let app = TestApp::spawn().await;
    trained(&app).await;
    let rows: Vec<String> = (0..300)
        .map(|i| {
            let i = f64::from(i);
            format!("[{:.7}, {:.7}]", (i * 0.37).sin(), (i * 1.3).cos())
        })
        .collect();
    let bodies = [
        format!(r#"{{"inputs": [{}]}}"#, rows.join(", ")),
        format!(r#"{{ "version": 1, "inputs": [{}] }}"#, rows.join(",\n")),
        format!(r#"{{"inputs": [{}], "version": null}}"#, rows.join(",")),
    ];
    let json = Some("application/json");
    for body in &bodies {
        let whole = app
            .post_raw("/v1/models/m/predict", body.clone(), json)
            .await;
        assert_eq!(whole.status(), 200);
        let whole: serde_json::Value = whole.json().await.expect("JSON");
        assert_eq!(whole["outputs"].as_array().map(Vec::len), Some(300));
        for size in [1, 7, 100, 4096] {
            let response = app
                .post_raw("/v1/models/m/predict", in_pieces(body, size), json)
                .await;
            assert_eq!(response.status(), 200, "pieces of {size}");
            let answer: serde_json::Value = response.json().await.expect("JSON");
            assert_eq!(answer, whole, "pieces of {size}");
        }
    }

    // A bad body gets the error it gets in one piece, naming the row.
    let ragged = r#"{"inputs": [[0, 0], [0.5, 0.25], [1]]}"#;
    for size in [ragged.len(), 5, 1] {
        let response = app
            .post_raw("/v1/models/m/predict", in_pieces(ragged, size), json)
            .await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(problem.errors[0].field, "inputs[2]", "pieces of {size}");
    }
    // Errors after many rows the server read as they came (and did not keep): the same row,
    // value, line and column as in one piece, on one line or over many.
    let late = [
        (
            format!(r#"{{"inputs": [{}, [1, 2x]]}}"#, rows.join(", ")),
            400,
            "at line 1 column 7500",
        ),
        (
            format!("{{\"inputs\": [{},\n [1, 2x]]}}", rows.join(",\n")),
            400,
            "line 301 column 7",
        ),
        (
            format!(r#"{{"inputs": [{}, [1, "2"]]}}"#, rows.join(", ")),
            422,
            "`inputs[300][1]`",
        ),
        (
            format!(
                r#"{{"inputs": [{}], "version": 1, "extra": 2}}"#,
                rows.join(", ")
            ),
            422,
            "`extra`",
        ),
    ];
    for (body, status, names) in &late {
        let whole = app
            .post_raw("/v1/models/m/predict", body.clone(), json)
            .await;
        let code = if *status == 400 {
            "malformed_json"
        } else {
            "validation_failed"
        };
        let whole = assert_problem(whole, *status, code).await;
        assert!(whole.detail.contains(names), "{}", whole.detail);
        for size in [7, 4096] {
            let response = app
                .post_raw("/v1/models/m/predict", in_pieces(body, size), json)
                .await;
            let problem = assert_problem(response, *status, code).await;
            assert_eq!(problem.detail, whole.detail, "pieces of {size}");
        }
    }
}
