//! Message framing a server must refuse (RFC 9112), sent byte for byte over a raw socket.

use std::io::{Read, Write};

use crate::helpers::TestApp;

/// Writes `request` as it is and reads the answer to the end (`Connection: close`): the
/// status and the body.
async fn raw(app: &TestApp, request: String) -> (u16, String) {
    let address = app.address.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&address).expect("connect");
        stream.write_all(request.as_bytes()).expect("write");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .expect("the raw client");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn an_http_1_1_request_without_host_is_a_400_naming_the_header() {
    let app = TestApp::spawn().await;
    let (status, body) = raw(
        &app,
        "GET /healthz HTTP/1.1\r\nconnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("missing_host") && body.contains("Host"),
        "{body}"
    );
    // With it, and in HTTP/1.0 (which has no such rule), the same request is answered.
    let (status, _) = raw(
        &app,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = raw(&app, "GET /healthz HTTP/1.0\r\n\r\n".into()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_a_501_naming_it() {
    let app = TestApp::spawn().await;
    let body = r#"{"name":"x","layers":[2,2],"activation":"relu","output":"softmax"}"#;
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let request = |coding: &str| {
        format!(
            "POST /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
             content-type: application/json\r\ntransfer-encoding: {coding}\r\n\r\n{chunked}"
        )
    };
    let (status, answer) = raw(&app, request("gzip, chunked")).await;
    assert_eq!(status, 501, "{answer}");
    assert!(answer.contains("gzip"), "{answer}");
    // chunked alone is a normal body.
    let (status, answer) = raw(&app, request("chunked")).await;
    assert_eq!(status, 201, "{answer}");
}
