//! CORS: no headers unless origins are configured; then exactly those origins, preflights
//! included, and before the token check.

use mlp_lab::config::{Config, Token};
use reqwest::{Method, StatusCode};

use crate::helpers::TestApp;

const ALLOWED: &str = "https://app.example.com";
const OTHER: &str = "https://evil.example.net";

fn with_origins() -> Config {
    let mut config = Config::for_tests();
    config.access.cors_origins = vec![ALLOWED.to_owned(), "http://localhost:3000".to_owned()];
    config
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url("/v1/models"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .expect("request sent")
}

async fn simple(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/models"))
        .header("origin", origin)
        .send()
        .await
        .expect("request sent")
}

fn has_cors_headers(response: &reqwest::Response) -> bool {
    response
        .headers()
        .keys()
        .any(|name| name.as_str().starts_with("access-control-"))
}

#[tokio::test]
async fn without_configured_origins_there_are_no_cors_headers() {
    let app = TestApp::spawn().await;

    let preflight = preflight(&app, ALLOWED).await;
    let simple = simple(&app, ALLOWED).await;

    assert!(!has_cors_headers(&preflight), "{:?}", preflight.headers());
    assert!(!has_cors_headers(&simple), "{:?}", simple.headers());
    assert_eq!(simple.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_allowed_origin_gets_its_preflight_and_its_response_marked() {
    let app = TestApp::spawn_with(with_origins()).await;

    let preflight = preflight(&app, ALLOWED).await;
    let simple = simple(&app, ALLOWED).await;

    assert_eq!(preflight.status(), StatusCode::OK);
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], ALLOWED);
    let allowed_headers = headers["access-control-allow-headers"]
        .to_str()
        .expect("ASCII")
        .to_ascii_lowercase();
    assert!(allowed_headers.contains("authorization") && allowed_headers.contains("content-type"));
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .expect("ASCII")
        .contains("POST"));
    assert!(!headers.contains_key("access-control-allow-credentials"));
    assert_eq!(simple.status(), StatusCode::OK);
    assert_eq!(simple.headers()["access-control-allow-origin"], ALLOWED);
    let exposed = simple.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ASCII");
    assert!(exposed.contains("x-request-id"), "{exposed}");
}

#[tokio::test]
async fn another_origin_gets_no_allow_origin_and_never_a_wildcard() {
    let app = TestApp::spawn_with(with_origins()).await;

    let preflight = preflight(&app, OTHER).await;
    let simple = simple(&app, OTHER).await;

    assert!(!preflight
        .headers()
        .contains_key("access-control-allow-origin"));
    assert!(!simple.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn preflights_need_no_token_but_the_request_itself_does() {
    let mut config = with_origins();
    config.access.management_token = Some(Token::parse("cors-mgmt-token").expect("a token"));
    let app = TestApp::spawn_with(config).await;

    let preflight = preflight(&app, ALLOWED).await;
    let simple = simple(&app, ALLOWED).await;

    assert_eq!(preflight.status(), StatusCode::OK);
    assert_eq!(simple.status(), StatusCode::UNAUTHORIZED);
    // A page can read the 401 and its challenge.
    assert_eq!(simple.headers()["access-control-allow-origin"], ALLOWED);
    let exposed = simple.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ASCII");
    assert!(exposed.contains("www-authenticate"), "{exposed}");
}
