//! Bearer tokens: which token opens which route, the 401/403 answers and their challenge, and
//! that a token never reaches the log.

use std::io::Write;
use std::sync::{Arc, Mutex};

use mlp_lab::config::{Config, Token};
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

const MANAGEMENT: &str = "mgmt-Secret-7f3a9c";
const INFERENCE: &str = "infer-Secret-41b2d8";

fn config_with_tokens(management: Option<&str>, inference: Option<&str>) -> Config {
    let mut config = Config::for_tests();
    config.access.management_token = management.map(|t| Token::parse(t).expect("a token"));
    config.access.inference_token = inference.map(|t| Token::parse(t).expect("a token"));
    config
}

async fn guarded_app() -> TestApp {
    TestApp::spawn_with(config_with_tokens(Some(MANAGEMENT), Some(INFERENCE))).await
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.request(method.clone(), app.url(path));
    if method == Method::POST {
        request = request.json(&json!({"inputs": [[0, 0]]}));
    }
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    request.send().await.expect("request sent")
}

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn without_tokens_configured_every_route_is_open() {
    let app = TestApp::spawn().await;

    let response = send(&app, Method::GET, "/v1/models", Some("Bearer anything")).await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_missing_token_is_401_with_a_bearer_challenge_and_no_error_code() {
    let app = guarded_app().await;

    let response = send(&app, Method::GET, "/v1/models", None).await;

    assert_eq!(challenge(&response), r#"Bearer realm="mlp-lab""#);
    assert!(response.headers().contains_key("x-request-id"));
    let problem = assert_problem(response, 401, "unauthorized").await;
    assert!(
        problem.detail.contains("Authorization"),
        "{}",
        problem.detail
    );
}

#[tokio::test]
async fn a_wrong_or_case_changed_token_is_401_invalid_token() {
    let app = guarded_app().await;
    let upper = format!("Bearer {}", MANAGEMENT.to_uppercase());
    let lower = format!("Bearer {}", MANAGEMENT.to_lowercase());
    let truncated = format!("Bearer {}", &MANAGEMENT[..MANAGEMENT.len() - 1]);
    let longer = format!("Bearer {MANAGEMENT}x");

    for authorization in [
        "Bearer wrong",
        upper.as_str(),
        lower.as_str(),
        truncated.as_str(),
        longer.as_str(),
        "Bearer",
    ] {
        let response = send(&app, Method::GET, "/v1/models", Some(authorization)).await;

        assert_eq!(
            challenge(&response),
            r#"Bearer realm="mlp-lab", error="invalid_token""#,
            "{authorization}"
        );
        assert_problem(response, 401, "unauthorized").await;
    }
}

#[tokio::test]
async fn another_scheme_is_401_without_an_error_code() {
    let app = guarded_app().await;
    let basic = format!("Basic {MANAGEMENT}");

    let response = send(&app, Method::GET, "/v1/models", Some(&basic)).await;

    assert_eq!(challenge(&response), r#"Bearer realm="mlp-lab""#);
    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn the_scheme_is_case_insensitive_but_the_token_is_not() {
    let app = guarded_app().await;

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = send(
            &app,
            Method::GET,
            "/v1/models",
            Some(&format!("{scheme} {MANAGEMENT}")),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn the_management_token_opens_management_and_inference_routes() {
    let app = guarded_app().await;
    let bearer = format!("Bearer {MANAGEMENT}");

    let models = send(&app, Method::GET, "/v1/models", Some(&bearer)).await;
    let jobs = send(&app, Method::GET, "/v1/jobs", Some(&bearer)).await;
    let predict = send(
        &app,
        Method::POST,
        "/v1/models/ghost/predict",
        Some(&bearer),
    )
    .await;

    assert_eq!(models.status(), StatusCode::OK);
    assert_eq!(jobs.status(), StatusCode::OK);
    // Past the token check: the model does not exist.
    assert_problem(predict, 404, "not_found").await;
}

#[tokio::test]
async fn the_inference_token_opens_predict_and_is_403_on_management_routes() {
    let app = guarded_app().await;
    let bearer = format!("Bearer {INFERENCE}");

    let predict = send(
        &app,
        Method::POST,
        "/v1/models/ghost/predict",
        Some(&bearer),
    )
    .await;
    assert_problem(predict, 404, "not_found").await;

    for (method, path) in [
        (Method::GET, "/v1/models"),
        (Method::GET, "/v1/datasets"),
        (Method::GET, "/v1/jobs"),
        (Method::DELETE, "/v1/models/ghost"),
    ] {
        let response = send(&app, method, path, Some(&bearer)).await;
        assert_eq!(
            challenge(&response),
            r#"Bearer realm="mlp-lab", error="insufficient_scope", scope="management""#,
            "{path}"
        );
        assert_problem(response, 403, "forbidden").await;
    }
}

#[tokio::test]
async fn predict_without_a_token_is_401() {
    let app = guarded_app().await;

    let response = send(&app, Method::POST, "/v1/models/ghost/predict", None).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_token_in_the_query_string_is_not_accepted() {
    let app = guarded_app().await;

    for query in ["access_token", "token"] {
        let path = format!("/v1/models?{query}={MANAGEMENT}");
        let response = send(&app, Method::GET, &path, None).await;
        assert_problem(response, 401, "unauthorized").await;
    }
}

#[tokio::test]
async fn health_readiness_description_and_metrics_stay_public() {
    let app = guarded_app().await;

    for path in [
        "/healthz",
        "/readyz",
        "/v2/health/live",
        "/v2/health/ready",
        "/openapi.yaml",
        "/metrics",
    ] {
        let response = send(&app, Method::GET, path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn unknown_routes_need_the_management_token_before_they_are_404() {
    let app = guarded_app().await;

    let without = send(&app, Method::GET, "/v1/nothing-here", None).await;
    let with = send(
        &app,
        Method::GET,
        "/v1/nothing-here",
        Some(&format!("Bearer {MANAGEMENT}")),
    )
    .await;

    assert_problem(without, 401, "unauthorized").await;
    assert_problem(with, 404, "route_not_found").await;
}

#[tokio::test]
async fn inference_protocol_paths_answer_auth_errors_in_its_own_shape() {
    let app = guarded_app().await;

    for (authorization, status) in [(None, 401), (Some("Bearer wrong"), 401)] {
        let response = send(&app, Method::POST, "/v2/models/ghost/infer", authorization).await;

        assert_eq!(response.status().as_u16(), status);
        assert!(challenge(&response).starts_with("Bearer realm=\"mlp-lab\""));
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert!(body["error"].is_string(), "{body}");
        assert_eq!(
            body.as_object().map(serde_json::Map::len),
            Some(1),
            "{body}"
        );
    }
}

#[tokio::test]
async fn with_only_a_management_token_predict_is_open() {
    let app = TestApp::spawn_with(config_with_tokens(Some(MANAGEMENT), None)).await;

    let predict = send(&app, Method::POST, "/v1/models/ghost/predict", None).await;
    let models = send(&app, Method::GET, "/v1/models", None).await;

    assert_problem(predict, 404, "not_found").await;
    assert_problem(models, 401, "unauthorized").await;
}

/// A `MakeWriter` into a shared buffer, to read what was logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("the log buffer")
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn tokens_never_reach_the_log_even_at_trace_level() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .finish();
    // tracing caches whether a callsite is wanted, once, for all threads. While a single
    // dispatcher is registered it asks the registering thread's default, so a callsite first
    // reached by another test's thread (which has none) would be cached as unwanted; with a
    // second live dispatcher it asks every dispatcher, this test's subscriber included.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    // This test's runtime has one thread, so the server's tasks log to this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = guarded_app().await;

    let good = send(
        &app,
        Method::GET,
        "/v1/models",
        Some(&format!("Bearer {MANAGEMENT}")),
    )
    .await;
    let inference = send(
        &app,
        Method::GET,
        "/v1/jobs",
        Some(&format!("Bearer {INFERENCE}")),
    )
    .await;
    let wrong = send(
        &app,
        Method::GET,
        "/v1/models",
        Some("Bearer not-the-Secret-99"),
    )
    .await;
    let query = send(
        &app,
        Method::GET,
        &format!("/v1/models?access_token={MANAGEMENT}"),
        None,
    )
    .await;
    drop(app);

    let log = String::from_utf8(captured.0.lock().expect("the log buffer").clone()).expect("UTF-8");
    for response in [&good, &inference, &wrong, &query] {
        let id = response.headers()["x-request-id"].to_str().expect("ASCII");
        assert!(log.contains(id), "the request {id} was not logged:\n{log}");
    }
    for secret in [MANAGEMENT, INFERENCE, "not-the-Secret-99"] {
        assert!(!log.contains(secret), "{secret} was logged:\n{log}");
    }
}

/// The contract, written out apart from the code that implements it.
fn is_public(path: &str) -> bool {
    [
        "/healthz",
        "/readyz",
        "/v2/health/live",
        "/v2/health/ready",
        "/openapi.yaml",
        "/metrics",
        "/",
        "/dashboard/app.js",
    ]
    .contains(&path)
}

fn is_inference(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/") || path.ends_with("/predict")
}

/// Every route of the router, with its path parameters filled in.
fn every_route() -> Vec<(Method, String)> {
    mlp_lab::http::route_table()
        .into_iter()
        .map(|(method, template)| {
            let path = template
                .split('/')
                .map(|segment| {
                    if segment == "{file}" {
                        // A file of the dashboard: public, and 200 only when it exists.
                        "app.js"
                    } else if segment.starts_with('{') {
                        "0190b0d6-0000-7000-8000-000000000000"
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            (method, path)
        })
        .collect()
}

#[tokio::test]
async fn every_route_but_the_public_ones_needs_a_token() {
    let app = guarded_app().await;

    for (method, path) in every_route() {
        let response = send(&app, method.clone(), &path, None).await;

        let status = response.status();
        if is_public(&path) {
            assert_eq!(status, StatusCode::OK, "{method} {path}");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert!(!challenge(&response).is_empty(), "{method} {path}");
        }
    }
}

#[tokio::test]
async fn the_inference_token_opens_exactly_the_inference_routes() {
    let app = guarded_app().await;
    let bearer = format!("Bearer {INFERENCE}");

    for (method, path) in every_route() {
        let response = send(&app, method.clone(), &path, Some(&bearer)).await;

        let status = response.status();
        if is_public(&path) || is_inference(&path) {
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{method} {path}: {status}"
            );
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
        }
    }
}
