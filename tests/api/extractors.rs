//! `AppJson`, `AppQuery` and `AppPath` on a test-only router, through `oneshot`: each way a
//! request can be wrong, and the problem it gets.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use mlp_lab::config::{ByteSize, Config, Limit};
use mlp_lab::http::{
    with_body_limit, with_service_layers, AppJson, AppPath, AppQuery, BodyLimit, Problem,
};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

use crate::helpers::{assert_problem, TestApp};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    name: String,
    layers: Vec<u32>,
    optimizer: Optimizer,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Optimizer {
    kind: String,
    learning_rate: f64,
}

#[derive(Debug, Deserialize, Serialize)]
struct Page {
    limit: Option<u32>,
}

const MAX_BODY: ByteSize = ByteSize(1024);

fn test_app() -> Router {
    let routes = Router::new()
        .route(
            "/spec",
            post(|AppJson(spec): AppJson<Spec>| async { AppJson(spec) }),
        )
        .route(
            "/page",
            get(|AppQuery(page): AppQuery<Page>| async { AppJson(page) }),
        )
        .route(
            "/jobs/{id}",
            get(|AppPath(id): AppPath<uuid::Uuid>| async move { id.to_string() }),
        );
    let routes = with_body_limit(
        routes,
        BodyLimit {
            limit: Limit::BodyBytes,
            max: MAX_BODY,
        },
    );
    with_service_layers(routes, &Config::for_tests())
}

fn valid_spec() -> serde_json::Value {
    serde_json::json!({
        "name": "xor",
        "layers": [2, 4, 1],
        "optimizer": {"kind": "adam", "learning_rate": 0.01}
    })
}

fn post_spec(body: impl Into<Body>, content_type: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/spec");
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    request.body(body.into()).expect("a request")
}

async fn send(mut request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    // As every HTTP/1.1 client sends it (without, the server answers 400 `missing_host`).
    request
        .headers_mut()
        .entry(header::HOST)
        .or_insert(header::HeaderValue::from_static("localhost"));
    let response = test_app().oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().expect("ASCII").to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a body");
    (status, content_type, body.to_vec())
}

async fn problem(request: Request<Body>, status: u16, code: &str) -> Problem {
    let (actual, content_type, body) = send(request).await;
    assert_eq!(
        actual.as_u16(),
        status,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(content_type, "application/problem+json");
    let problem: Problem = serde_json::from_slice(&body).expect("a problem document");
    assert_eq!(problem.status, status);
    assert_eq!(problem.code, code, "{problem:?}");
    problem
}

#[tokio::test]
async fn a_valid_body_is_parsed_and_echoed_as_json() {
    let (status, content_type, body) = send(post_spec(
        valid_spec().to_string(),
        Some("application/json; charset=utf-8"),
    ))
    .await;

    assert_eq!(status, 200);
    assert_eq!(content_type, "application/json");
    let echoed: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(echoed, valid_spec());
}

#[tokio::test]
async fn malformed_json_is_400_with_line_and_column() {
    let problem = problem(
        post_spec(
            "{\n  \"name\": \"xor\",\n  oops\n}",
            Some("application/json"),
        ),
        400,
        "malformed_json",
    )
    .await;

    assert!(
        problem.detail.contains("line 3 column"),
        "{}",
        problem.detail
    );
}

#[tokio::test]
async fn a_body_without_content_type_is_415() {
    let problem = problem(
        post_spec(valid_spec().to_string(), None),
        415,
        "unsupported_media_type",
    )
    .await;

    assert!(
        problem.detail.contains("application/json"),
        "{}",
        problem.detail
    );
}

#[tokio::test]
async fn a_body_of_another_media_type_is_415() {
    problem(
        post_spec(valid_spec().to_string(), Some("text/csv")),
        415,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_field_is_422_naming_its_path() {
    let mut spec = valid_spec();
    spec["optimizer"]["momentum"] = serde_json::json!(0.9);

    let problem = problem(
        post_spec(spec.to_string(), Some("application/json")),
        422,
        "validation_failed",
    )
    .await;

    assert_eq!(problem.errors[0].field, "optimizer.momentum");
    assert!(problem.errors[0].message.contains("unknown field"));
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_422_naming_its_path() {
    let mut spec = valid_spec();
    spec["layers"][1] = serde_json::json!("four");

    let problem = problem(
        post_spec(spec.to_string(), Some("application/json")),
        422,
        "validation_failed",
    )
    .await;

    assert_eq!(problem.errors[0].field, "layers[1]");
}

#[tokio::test]
async fn a_missing_field_is_422_naming_its_path() {
    let mut spec = valid_spec();
    spec["optimizer"]
        .as_object_mut()
        .expect("an object")
        .remove("kind");

    let problem = problem(
        post_spec(spec.to_string(), Some("application/json")),
        422,
        "validation_failed",
    )
    .await;

    assert_eq!(problem.errors[0].field, "optimizer.kind");
}

#[tokio::test]
async fn a_body_declared_over_the_limit_is_413_naming_the_setting() {
    let body = vec![b' '; 2048];
    let request = Request::post("/spec")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .expect("a request");

    let problem = problem(request, 413, "payload_too_large").await;

    assert!(
        problem
            .detail
            .contains("--max-body-bytes / MLP_LAB_MAX_BODY_BYTES"),
        "{}",
        problem.detail
    );
    assert!(problem.detail.contains("1KiB"), "{}", problem.detail);
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_413_naming_the_setting() {
    // No Content-Length: the limit is found while reading.
    let chunks = (0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 512]));
    let request = post_spec(
        Body::from_stream(futures_util::stream::iter(chunks)),
        Some("application/json"),
    );

    let problem = problem(request, 413, "payload_too_large").await;

    assert!(
        problem.detail.contains("--max-body-bytes"),
        "{}",
        problem.detail
    );
}

#[tokio::test]
async fn an_oversized_body_over_the_network_gets_413_not_a_reset() {
    let app = TestApp::spawn_router(test_app()).await;

    let response = app
        .post_raw(
            "/spec",
            vec![b' '; 8 * 1024 * 1024],
            Some("application/json"),
        )
        .await;

    assert_problem(response, 413, "payload_too_large").await;
}

#[tokio::test]
async fn a_query_parameter_of_the_wrong_type_is_422_naming_it() {
    let request = Request::get("/page?limit=lots")
        .body(Body::empty())
        .expect("a request");

    let problem = problem(request, 422, "validation_failed").await;

    assert_eq!(problem.errors[0].field, "limit");
}

#[tokio::test]
async fn a_valid_query_is_parsed() {
    let request = Request::get("/page?limit=5")
        .body(Body::empty())
        .expect("a request");

    let (status, _, body) = send(request).await;

    assert_eq!(status, 200);
    assert_eq!(body, br#"{"limit":5}"#);
}

#[tokio::test]
async fn a_path_parameter_that_cannot_name_anything_is_404() {
    let request = Request::get("/jobs/not-a-uuid")
        .body(Body::empty())
        .expect("a request");

    let problem = problem(request, 404, "not_found").await;

    assert!(problem.detail.contains("not-a-uuid"), "{}", problem.detail);
}
