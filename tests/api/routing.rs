//! What every route shares: fallbacks, request ids, panics, timeouts, and the rewrite of bare
//! error responses into problem+json.

use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use mlp_lab::config::Config;
use mlp_lab::http::with_service_layers;

use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn an_unknown_route_is_404_problem_json() {
    let app = TestApp::spawn().await;

    let response = app.get("/v1/no-such-thing").await;

    let problem = assert_problem(response, 404, "route_not_found").await;
    assert!(
        problem.detail.contains("GET /v1/no-such-thing"),
        "{}",
        problem.detail
    );
}

#[tokio::test]
async fn a_wrong_method_is_405_problem_json_with_allow() {
    let app = TestApp::spawn().await;

    let response = app.post_json("/healthz", &serde_json::json!({})).await;

    assert_eq!(response.headers()[reqwest::header::ALLOW], "GET,HEAD");
    let problem = assert_problem(response, 405, "method_not_allowed").await;
    assert!(problem.detail.starts_with("POST"), "{}", problem.detail);
}

#[tokio::test]
async fn a_request_id_is_made_when_missing() {
    let app = TestApp::spawn().await;

    let response = app.get("/healthz").await;

    let id = response.headers()["x-request-id"].to_str().expect("ASCII");
    let id = uuid::Uuid::parse_str(id).expect("a UUID");
    assert_eq!(id.get_version_num(), 7);
}

#[tokio::test]
async fn a_request_id_sent_by_the_client_is_echoed_even_on_errors() {
    let app = TestApp::spawn().await;

    for path in ["/healthz", "/nowhere"] {
        let response = app
            .client
            .get(app.url(path))
            .header("x-request-id", "client-chosen-42")
            .send()
            .await
            .expect("request sent");

        assert_eq!(
            response.headers()["x-request-id"],
            "client-chosen-42",
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_panicking_handler_is_500_problem_json_and_the_server_keeps_serving() {
    let routes = Router::new()
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("secret detail /etc/shadow");
                }
                "unreachable"
            }),
        )
        .route("/fine", get(|| async { "fine" }));
    let app = TestApp::spawn_router(with_service_layers(routes, &Config::for_tests())).await;

    let response = app.get("/panic").await;

    assert!(response.headers().contains_key("x-request-id"));
    let problem = assert_problem(response, 500, "internal").await;
    assert!(!problem.detail.contains("secret"), "{}", problem.detail);
    assert_eq!(app.get("/fine").await.status(), 200);
}

#[tokio::test]
async fn a_handler_slower_than_the_request_timeout_is_408_problem_json() {
    let config = Config {
        request_timeout_secs: 1,
        ..Config::for_tests()
    };
    let routes = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "too late"
        }),
    );
    let app = TestApp::spawn_router(with_service_layers(routes, &config)).await;

    let response = app.get("/slow").await;

    assert_problem(response, 408, "timeout").await;
}

#[tokio::test]
async fn a_bare_text_rejection_from_axum_becomes_problem_json_keeping_its_message() {
    // A handler that (wrongly) uses axum's own Json: its text/plain 415 must not leave.
    let routes = Router::new().route(
        "/raw",
        post(|axum::Json(v): axum::Json<serde_json::Value>| async move { axum::Json(v) }),
    );
    let app = TestApp::spawn_router(with_service_layers(routes, &Config::for_tests())).await;

    let response = app.post_raw("/raw", "{}", Some("text/plain")).await;

    let problem = assert_problem(response, 415, "unsupported_media_type").await;
    assert!(
        problem.detail.contains("Content-Type"),
        "{}",
        problem.detail
    );
}

#[tokio::test]
async fn the_server_stops_when_told_to() {
    let app = TestApp::spawn().await;
    let url = app.url("/healthz");
    let client = app.client.clone();
    let state = app.state.clone();

    drop(app);

    crate::helpers::wait_until(|| !state.is_ready()).await;
    let mut refused = false;
    for _ in 0..100 {
        if client.get(&url).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the server still answers after shutdown");
}
