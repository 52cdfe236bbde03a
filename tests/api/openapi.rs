use crate::helpers::TestApp;

#[tokio::test]
async fn openapi_yaml_is_served_and_describes_the_routes() {
    let app = TestApp::spawn().await;

    let response = app.get("/openapi.yaml").await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "application/yaml"
    );
    let text = response.text().await.expect("text");
    let doc: serde_norway::Value = serde_norway::from_str(&text).expect("valid YAML");
    assert_eq!(doc["openapi"].as_str(), Some("3.1.0"));
    for path in ["/healthz", "/readyz", "/openapi.yaml"] {
        assert!(
            doc["paths"][path]["get"].is_mapping(),
            "{path} is not described"
        );
    }
    let problem = &doc["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail", "code", "errors"] {
        assert!(
            problem[field].is_mapping(),
            "Problem.{field} is not described"
        );
    }
}
