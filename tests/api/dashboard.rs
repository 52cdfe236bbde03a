//! The dashboard's files: served at `/` and `/dashboard/{file}` with their content types and
//! cache validators, public when tokens are set, and an unknown file is our 404. (The page
//! itself is driven in a browser by tests/python/test_dashboard.py.)

use mlp_lab::config::{Config, Token};
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};

use crate::helpers::{assert_problem, TestApp};

/// The files the page loads: its `<script>` and `<link>`, and every module's imports.
fn referenced_files(html: &str, scripts: &[String]) -> Vec<String> {
    let mut files: Vec<String> = html
        .split("\"/dashboard/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect();
    for script in scripts {
        for rest in script.split("from \"./").skip(1) {
            if let Some(name) = rest.split('"').next() {
                files.push(name.to_owned());
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

fn expected_type(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        _ => "text/html; charset=utf-8",
    }
}

#[tokio::test]
async fn the_page_is_served_at_the_root_as_html_with_a_validator() {
    let app = TestApp::spawn().await;

    let response = app.get("/").await;

    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[CACHE_CONTROL], "no-cache");
    assert!(headers[ETAG].to_str().expect("ascii").starts_with('"'));
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = response.text().await.expect("text");
    assert!(html.contains(r#"<script type="module" src="/dashboard/app.js">"#));
    assert_eq!(
        app.get("/dashboard/index.html")
            .await
            .text()
            .await
            .expect("text"),
        html
    );
}

#[tokio::test]
async fn every_file_the_page_loads_is_served_with_its_content_type() {
    let app = TestApp::spawn().await;
    let html = app.get("/").await.text().await.expect("text");
    let mut scripts = Vec::new();
    for name in mlp_lab::http::dashboard::asset_names() {
        if name.ends_with(".js") {
            let response = app.get(&format!("/dashboard/{name}")).await;
            scripts.push(response.text().await.expect("text"));
        }
    }

    let files = referenced_files(&html, &scripts);

    for needed in [
        "app.js",
        "api.js",
        "charts.js",
        "job.js",
        "experiment.js",
        "style.css",
    ] {
        assert!(files.iter().any(|f| f == needed), "{needed} in {files:?}");
    }
    for file in &files {
        let response = app.get(&format!("/dashboard/{file}")).await;
        assert_eq!(response.status(), 200, "{file}");
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            expected_type(file),
            "{file}"
        );
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert!(response.headers().contains_key(ETAG), "{file}");
        assert!(!response.text().await.expect("text").is_empty(), "{file}");
    }
}

#[tokio::test]
async fn an_unknown_file_is_a_404_problem() {
    let app = TestApp::spawn().await;

    for path in [
        "/dashboard/nope.js",
        "/dashboard/..%2Fopenapi.yaml",
        "/dashboard/APP.JS",
    ] {
        let problem = assert_problem(app.get(path).await, 404, "not_found").await;
        assert!(
            problem.detail.contains("dashboard file"),
            "{path}: {}",
            problem.detail
        );
    }
    assert_problem(app.get("/dashboard").await, 404, "route_not_found").await;
}

#[tokio::test]
async fn a_matching_if_none_match_is_a_bodiless_304() {
    let app = TestApp::spawn().await;
    let first = app.get("/dashboard/charts.js").await;
    let etag = first.headers()[ETAG].clone();

    let again = app
        .client
        .get(app.url("/dashboard/charts.js"))
        .header(IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .expect("sent");
    let other = app
        .client
        .get(app.url("/dashboard/charts.js"))
        .header(IF_NONE_MATCH, "\"something-else\"")
        .send()
        .await
        .expect("sent");

    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()[ETAG], etag);
    assert!(again.bytes().await.expect("body").is_empty());
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn the_dashboard_is_public_when_tokens_are_set() {
    let mut config = Config::for_tests();
    config.access.management_token = Some(Token::parse("mgmt-token-1").expect("a token"));
    config.access.inference_token = Some(Token::parse("infer-token-1").expect("a token"));
    let app = TestApp::spawn_with(config).await;

    assert_eq!(app.get("/").await.status(), 200);
    assert_eq!(app.get("/dashboard/app.js").await.status(), 200);
    assert_problem(app.get("/dashboard/nope.js").await, 404, "not_found").await;
    assert_problem(app.get("/v1/models").await, 401, "unauthorized").await;
}
