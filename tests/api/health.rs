use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn healthz_answers_ok() {
    let app = TestApp::spawn().await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body, serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn readyz_answers_ready_once_serving() {
    let app = TestApp::spawn().await;

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body, serde_json::json!({"status": "ready"}));
}

#[tokio::test]
async fn readyz_is_503_problem_json_when_not_ready() {
    let app = TestApp::spawn().await;
    app.state.set_ready(false);

    let response = app.get("/readyz").await;

    assert_problem(response, 503, "unavailable").await;
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "liveness is unaffected"
    );
}
