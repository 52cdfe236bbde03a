//! Hostile input, table-driven: every row is one request meant to break the server (deep
//! nesting, huge numbers, overflowing sizes, traversal in ids, oversized and trickled bodies,
//! a gzip bomb, abused query strings and headers, auth edge cases), its expected status and
//! error shape — and after every row the server must still be healthy (`/healthz` 200 and a
//! real prediction).
//!
//! What is covered elsewhere is not repeated: the extractor rejections one by one in
//! `extractors.rs`, numbers out of range per field in `conformance.rs`, 404/405 shapes in
//! `routing.rs`, token rules in `auth.rs`. Here they are thrown together at the real server.

use std::time::Instant;

use bytes::Bytes;
use mlp_lab::config::{ByteSize, Config, Token};
use reqwest::header::{HeaderName, HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{Read, Write};

use crate::helpers::{xor_dataset, TestApp};

const JSON: &str = "application/json";
const BODY_LIMIT: u64 = 256 << 10;
const PREDICT_LIMIT: u64 = 512 << 10;
const UPLOAD_LIMIT: u64 = 1 << 20;
const MANAGEMENT: &str = "mgmt-Hostile-9c1e";
const INFERENCE: &str = "infer-Hostile-5d7a";

/// How a row's body is sent.
enum Payload {
    None,
    /// In one piece, with `Content-Length`.
    Bytes(Vec<u8>),
    /// As a stream of chunks of this size, chunked, without `Content-Length`.
    Chunks(Vec<u8>, usize),
    /// Written byte for byte on a raw TCP connection (method, path and headers as given,
    /// unnormalized): for paths a URL parser would resolve (`..`).
    Raw(Vec<u8>),
}

/// What the answer must look like.
enum Shape {
    /// problem+json with this `code`.
    Problem(&'static str),
    /// `/v2`: `application/json` `{"error": "…"}` and nothing else.
    V2,
    /// A success; the body is checked by the function.
    Ok(fn(&Value)),
    /// A status without a body we own (a protocol error answered by hyper itself).
    Bare,
}

struct Row {
    name: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Payload,
    status: u16,
    shape: Shape,
    /// A header the answer must carry, with a part of its value.
    must_have: Option<(HeaderName, &'static str)>,
}

fn row(
    name: &'static str,
    method: Method,
    path: &str,
    body: Payload,
    status: u16,
    shape: Shape,
) -> Row {
    Row {
        name,
        method,
        path: path.to_owned(),
        headers: Vec::new(),
        body,
        status,
        shape,
        must_have: None,
    }
}

fn post(
    name: &'static str,
    path: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    shape: Shape,
) -> Row {
    let mut r = row(
        name,
        Method::POST,
        path,
        Payload::Bytes(body.into()),
        status,
        shape,
    );
    r.headers.push(("content-type", JSON.to_owned()));
    r
}

fn get(name: &'static str, path: &str, status: u16, shape: Shape) -> Row {
    row(name, Method::GET, path, Payload::None, status, shape)
}

impl Row {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn without_content_type(mut self) -> Self {
        self.headers.retain(|(n, _)| *n != "content-type");
        self
    }

    fn chunked(mut self, chunk: usize) -> Self {
        if let Payload::Bytes(bytes) = std::mem::replace(&mut self.body, Payload::None) {
            self.body = Payload::Chunks(bytes, chunk);
        }
        self
    }

    fn must_have(mut self, name: HeaderName, part: &'static str) -> Self {
        self.must_have = Some((name, part));
        self
    }
}

/// `depth` opening brackets, and nothing else: the parser must give up long before the end.
fn nested(prefix: &str, depth: usize) -> Vec<u8> {
    let mut body = prefix.as_bytes().to_vec();
    body.resize(prefix.len() + depth, b'[');
    body
}

fn big_integer(digits: usize) -> String {
    let mut s = "9".repeat(digits);
    s.replace_range(0..1, "1");
    s
}

/// A valid `/v1/models` body padded with spaces to `len` bytes.
fn padded_model(len: u64) -> Vec<u8> {
    let mut body = br#"{"name": "padded", "layers": [2, 1]}"#.to_vec();
    body.resize(usize::try_from(len).expect("fits"), b' ');
    body
}

fn padded(body: &str, len: usize) -> Vec<u8> {
    let mut bytes = body.as_bytes().to_vec();
    bytes.resize(len, b' ');
    bytes
}

fn infer(data: &str) -> String {
    format!(
        r#"{{"inputs": [{{"name": "input", "datatype": "FP32", "shape": [1, 2], "data": {data}}}]}}"#
    )
}

/// A gzip member whose deflate stream inflates to `size` zero bytes in fixed-Huffman blocks of
/// length-258 matches (13 bits each): about 160 to 1. Valid, CRC and size included.
fn gzip_bomb(size: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u32,
        n: u32,
    }
    impl Bits {
        /// `count` bits of `value`, least significant first.
        fn lsb(&mut self, value: u32, count: u32) {
            for i in 0..count {
                self.acc |= ((value >> i) & 1) << self.n;
                self.n += 1;
                if self.n == 8 {
                    self.out.push(self.acc as u8);
                    self.acc = 0;
                    self.n = 0;
                }
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u32, len: u32) {
            for i in (0..len).rev() {
                self.lsb((code >> i) & 1, 1);
            }
        }
    }
    assert!(
        size >= 1 && (size - 1).is_multiple_of(258),
        "1 literal and whole matches"
    );
    let mut bits = Bits {
        out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255],
        acc: 0,
        n: 0,
    };
    bits.lsb(1, 1); // BFINAL
    bits.lsb(1, 2); // BTYPE = fixed Huffman
    bits.code(0x30, 8); // literal 0
    for _ in 0..(size - 1) / 258 {
        bits.code(0b1100_0101, 8); // length code 285: 258
        bits.code(0, 5); // distance code 0: 1
    }
    bits.code(0, 7); // end of block
    if bits.n > 0 {
        bits.out.push(bits.acc as u8);
    }
    let mut crc = !0u32;
    for _ in 0..size {
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let mut out = bits.out;
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(size as u32).to_le_bytes());
    out
}

fn empty_page(page: &Value) {
    assert_eq!(page["items"], json!([]), "{page}");
}

fn a_page(page: &Value) {
    assert!(page["items"].is_array(), "{page}");
}

fn a_prediction(answer: &Value) {
    assert!(
        answer["outputs"].is_array() || answer["predictions"].is_array(),
        "{answer}"
    );
}

fn config() -> Config {
    let mut config = Config::for_tests();
    config.limits.max_body_bytes = ByteSize(BODY_LIMIT);
    config.limits.max_predict_body_bytes = ByteSize(PREDICT_LIMIT);
    config.limits.max_dataset_upload_bytes = ByteSize(UPLOAD_LIMIT);
    config.limits.max_weights_upload_bytes = ByteSize(UPLOAD_LIMIT);
    config
}

/// The server with a trained model `m` (2 inputs, 1 output).
async fn app_with_model(config: Config, auth: Option<&str>) -> TestApp {
    let app = TestApp::spawn_with(config).await;
    let send = |path: &'static str, body: Value| {
        let mut request = app.client.post(app.url(path)).json(&body);
        if let Some(token) = auth {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        request.send()
    };
    let dataset = send("/v1/datasets", xor_dataset(1)).await.expect("sent");
    assert_eq!(dataset.status(), 201);
    let dataset: Value = dataset.json().await.expect("JSON");
    let model = send(
        "/v1/models",
        json!({"name": "m", "layers": [2, 3, 1], "output": "sigmoid"}),
    )
    .await
    .expect("sent");
    assert_eq!(model.status(), 201);
    let job = send(
        "/v1/jobs",
        json!({"model": "m", "dataset": dataset["id"], "epochs": 1}),
    )
    .await
    .expect("sent");
    assert_eq!(job.status(), 202);
    let job: Value = job.json().await.expect("JSON");
    let id = job["id"].as_str().expect("an id").to_owned();
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut request = app.client.get(app.url(&format!("/v1/jobs/{id}")));
        if let Some(token) = auth {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let job: Value = request
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("JSON");
        if job["state"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline && job["state"] != "failed",
            "{job}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    app
}

/// Status, headers and body of `row` sent to `app`.
async fn send(app: &TestApp, row: &Row) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    if let Payload::Raw(body) = &row.body {
        return send_raw(app, row, body).await;
    }
    let mut request = app.client.request(row.method.clone(), app.url(&row.path));
    for (name, value) in &row.headers {
        request = request.header(*name, value.as_str());
    }
    request = match &row.body {
        Payload::None | Payload::Raw(_) => request,
        Payload::Bytes(bytes) => request.body(bytes.clone()),
        Payload::Chunks(bytes, size) => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
                .chunks(*size)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            request.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
        }
    };
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
            (status, headers, body)
        }
        Err(error) => panic!("{}: no answer: {error:?}", row.name),
    }
}

/// One HTTP/1.1 request written by hand, `Connection: close`; the answer read to the end.
async fn send_raw(
    app: &TestApp,
    row: &Row,
    body: &[u8],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut request = format!(
        "{} {} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n",
        row.method, row.path
    );
    for (name, value) in &row.headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&address).expect("connect");
        stream.write_all(&bytes).expect("write");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read");
        answer
    })
    .await
    .expect("the raw client");
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut headers = reqwest::header::HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').expect("a header");
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).expect("a name"),
            HeaderValue::from_str(value.trim()).expect("a value"),
        );
    }
    assert!(
        !headers.contains_key("transfer-encoding"),
        "{}: the raw client reads only Content-Length bodies",
        row.name
    );
    (status, headers, answer[end..].to_vec())
}

fn check(row: &Row, status: u16, headers: &reqwest::header::HeaderMap, body: &[u8]) {
    let name = row.name;
    let text = String::from_utf8_lossy(body);
    assert_eq!(status, row.status, "{name}: {text}");
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match &row.shape {
        Shape::Problem(code) => {
            assert_eq!(content_type, "application/problem+json", "{name}: {text}");
            let problem: Value = serde_json::from_slice(body).expect("a problem document");
            assert_eq!(problem["status"], status, "{name}: {text}");
            assert_eq!(problem["code"], *code, "{name}: {text}");
        }
        Shape::V2 => {
            assert_eq!(content_type, JSON, "{name}: {text}");
            let error: Value = serde_json::from_slice(body).expect("a /v2 error");
            let object = error.as_object().expect("an object");
            assert!(
                object.len() == 1 && object["error"].is_string(),
                "{name}: {text}"
            );
        }
        Shape::Ok(check) => {
            let value: Value = serde_json::from_slice(body).expect("JSON");
            check(&value);
        }
        Shape::Bare => {}
    }
    if let Some((header, part)) = &row.must_have {
        let value = headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(value.contains(part), "{name}: {header}: {value:?}");
    }
}

/// `/healthz` is 200 and a real prediction from `m` still works.
async fn assert_healthy(app: &TestApp, auth: Option<&str>, after: &str) {
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200, "after {after}");
    let mut request = app
        .client
        .post(app.url("/v1/models/m/predict"))
        .json(&json!({"inputs": [[0, 1], [1, 1]]}));
    if let Some(token) = auth {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let predict = request.send().await.expect("sent");
    let status = predict.status();
    let text = predict.text().await.expect("a body");
    assert_eq!(status, 200, "predict after {after}: {text}");
}

async fn run(app: &TestApp, rows: &[Row], auth: Option<&str>) {
    let mut failures = Vec::new();
    for row in rows {
        let started = Instant::now();
        let (status, headers, body) = send(app, row).await;
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check(row, status, &headers, &body);
        })) {
            failures.push(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| row.name.to_owned()),
            );
        }
        assert!(
            started.elapsed().as_secs() < 2,
            "{}: took {:?}",
            row.name,
            started.elapsed()
        );
        assert_healthy(app, auth, row.name).await;
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn rows() -> Vec<Row> {
    use Shape::{Bare, Problem, V2};
    let bad = || Problem("malformed_json");
    let invalid = || Problem("validation_failed");
    let big = big_integer(400);
    let model = |extra: &str| format!(r#"{{"name": "x", "layers": [2, 1]{extra}}}"#);
    let job = |extra: &str| format!(r#"{{"model": "m", "dataset": "none"{extra}}}"#);
    vec![
        // Malformed JSON and empty bodies.
        post(
            "unclosed object",
            "/v1/models",
            r#"{"name": "x","#,
            400,
            bad(),
        ),
        post("mismatched brackets", "/v1/datasets", "{]", 400, bad()),
        post(
            "trailing bytes",
            "/v1/models/m/predict",
            r#"{"inputs": [[0, 0]]} trailing"#,
            400,
            bad(),
        ),
        post(
            "/v2 unclosed array",
            "/v2/models/m/infer",
            r#"{"inputs": ["#,
            400,
            V2,
        ),
        post("empty body", "/v1/models", "", 400, bad()),
        post("whitespace body", "/v1/jobs", " \r\n\t ", 400, bad()),
        // 200,000 levels of nesting.
        post(
            "deep dataset",
            "/v1/datasets",
            nested(r#"{"features": "#, 200_000),
            400,
            bad(),
        ),
        post(
            "deep model",
            "/v1/models",
            nested(r#"{"name": "x", "layers": "#, 200_000),
            400,
            bad(),
        ),
        post(
            "deep predict",
            "/v1/models/m/predict",
            nested(r#"{"inputs": "#, 200_000),
            400,
            bad(),
        ),
        post(
            "deep infer",
            "/v2/models/m/infer",
            nested(r#"{"inputs": "#, 200_000),
            400,
            V2,
        ),
        post("deep bare", "/v1/jobs", nested("", 200_000), 400, bad()),
        // Huge numbers.
        post(
            "layer 1e400",
            "/v1/models",
            r#"{"name": "x", "layers": [2, 1e400, 1]}"#,
            422,
            invalid(),
        ),
        post(
            "layer of 400 digits",
            "/v1/models",
            format!(r#"{{"name": "x", "layers": [2, {big}, 1]}}"#),
            422,
            invalid(),
        ),
        post(
            "epochs 1e400",
            "/v1/jobs",
            job(r#", "epochs": 1e400"#),
            422,
            invalid(),
        ),
        post(
            "epochs of 400 digits",
            "/v1/jobs",
            job(&format!(r#", "epochs": {big}"#)),
            422,
            invalid(),
        ),
        post(
            "input 1e400",
            "/v1/models/m/predict",
            r#"{"inputs": [[1e400, 0]]}"#,
            422,
            invalid(),
        ),
        post(
            "input of 400 digits",
            "/v1/models/m/predict",
            format!(r#"{{"inputs": [[{big}, 0]]}}"#),
            422,
            invalid(),
        ),
        post(
            "/v2 data 1e400",
            "/v2/models/m/infer",
            infer("[1e400, 0]"),
            400,
            V2,
        ),
        // NaN and Infinity are not JSON.
        post(
            "NaN input",
            "/v1/models/m/predict",
            r#"{"inputs": [[NaN, 0]]}"#,
            400,
            bad(),
        ),
        post(
            "Infinity feature",
            "/v1/datasets",
            r#"{"features": [[Infinity, 0]], "targets": [0]}"#,
            400,
            bad(),
        ),
        post(
            "/v2 -Infinity",
            "/v2/models/m/infer",
            infer("[-Infinity, 0]"),
            400,
            V2,
        ),
        // Wrong types.
        post(
            "layers as a string",
            "/v1/models",
            r#"{"name": "x", "layers": "2,4,1"}"#,
            422,
            invalid(),
        ),
        post(
            "epochs as a string",
            "/v1/jobs",
            job(r#", "epochs": "10""#),
            422,
            invalid(),
        ),
        post(
            "inputs as an object",
            "/v1/models/m/predict",
            r#"{"inputs": {"a": 1}}"#,
            422,
            invalid(),
        ),
        post(
            "/v2 inputs as a string",
            "/v2/models/m/infer",
            r#"{"inputs": "x"}"#,
            400,
            V2,
        ),
        post("body as an array", "/v1/models", "[1, 2]", 422, invalid()),
        // Negative and overflowing sizes.
        post(
            "negative layer",
            "/v1/models",
            r#"{"name": "x", "layers": [2, -4, 1]}"#,
            422,
            invalid(),
        ),
        post(
            "parameter count over 2^64",
            "/v1/models",
            r#"{"name": "x", "layers": [4294967296, 4294967296, 4294967296], "output": "sigmoid"}"#,
            422,
            Problem("limit_exceeded"),
        ),
        post(
            "epochs 2^64",
            "/v1/jobs",
            job(r#", "epochs": 18446744073709551616"#),
            422,
            invalid(),
        ),
        post(
            "batch_size -1",
            "/v1/jobs",
            job(r#", "batch_size": -1"#),
            422,
            invalid(),
        ),
        // Fields the server owns: refused, so they cannot take effect.
        post(
            "model id",
            "/v1/models",
            model(r#", "id": "evil""#),
            422,
            invalid(),
        ),
        post(
            "model version",
            "/v1/models",
            model(r#", "version": 99"#),
            422,
            invalid(),
        ),
        post(
            "model created_at",
            "/v1/models",
            model(r#", "created_at": "1970-01-01T00:00:00Z""#),
            422,
            invalid(),
        ),
        post(
            "model status",
            "/v1/models",
            model(r#", "status": "trained""#),
            422,
            invalid(),
        ),
        post(
            "job state",
            "/v1/jobs",
            job(r#", "state": "succeeded""#),
            422,
            invalid(),
        ),
        post(
            "job id",
            "/v1/jobs",
            job(r#", "id": "00000000-0000-0000-0000-000000000000""#),
            422,
            invalid(),
        ),
        post(
            "dataset id",
            "/v1/datasets",
            r#"{"id": "../x", "features": [[0, 0]], "targets": [0]}"#,
            422,
            invalid(),
        ),
        // Traversal in ids.
        get(
            "encoded traversal",
            "/v1/datasets/..%2F..%2Fetc%2Fpasswd",
            404,
            Problem("not_found"),
        ),
        row(
            "raw .. is an id like any other",
            Method::GET,
            "/v1/models/..",
            Payload::Raw(Vec::new()),
            404,
            Problem("not_found"),
        ),
        row(
            "raw ../..",
            Method::GET,
            "/v1/models/m/../../../etc/passwd",
            Payload::Raw(Vec::new()),
            404,
            Problem("route_not_found"),
        ),
        get("NUL in an id", "/v1/models/m%00", 404, Problem("not_found")),
        row(
            "delete traversal",
            Method::DELETE,
            "/v1/datasets/..%2F..%2Fetc%2Fpasswd",
            Payload::None,
            404,
            Problem("not_found"),
        ),
        get(
            "job id traversal",
            "/v1/jobs/..%2F..",
            404,
            Problem("not_found"),
        ),
        get("/v2 traversal", "/v2/models/..%2Fm", 404, V2),
        // Oversized bodies, per route group, declared and chunked.
        post(
            "declared over the default limit",
            "/v1/models",
            padded_model(BODY_LIMIT + 1),
            413,
            Problem("payload_too_large"),
        ),
        post(
            "chunked over the default limit",
            "/v1/models",
            padded_model(BODY_LIMIT + 1),
            413,
            Problem("payload_too_large"),
        )
        .chunked(16 << 10),
        post(
            "chunked over the predict limit",
            "/v1/models/m/predict",
            padded_model(PREDICT_LIMIT + 1),
            413,
            Problem("payload_too_large"),
        )
        .chunked(16 << 10),
        post(
            "chunked over the /v2 limit",
            "/v2/models/m/infer",
            padded_model(PREDICT_LIMIT + 1),
            413,
            V2,
        )
        .chunked(16 << 10),
        post(
            "chunked over the upload limit",
            "/v1/datasets",
            padded_model(UPLOAD_LIMIT + 1),
            413,
            Problem("payload_too_large"),
        )
        .chunked(64 << 10),
        // A gzip bomb: the server does not decompress, and says so.
        post(
            "gzip bomb",
            "/v1/models",
            gzip_bomb(4 * 258 * 4096 + 1),
            415,
            Problem("unsupported_media_type"),
        )
        .header("content-encoding", "gzip"),
        post(
            "gzip bomb /v2",
            "/v2/models/m/infer",
            gzip_bomb(258 * 4096 + 1),
            415,
            V2,
        )
        .header("content-encoding", "gzip"),
        // A valid body trickled in 200,000 one-byte chunks.
        post(
            "200,000 one-byte chunks",
            "/v1/models/m/predict",
            padded(r#"{"inputs": [[0, 1]]}"#, 200_000),
            200,
            Shape::Ok(a_prediction),
        )
        .chunked(1),
        // Wrong methods.
        row(
            "PUT a collection",
            Method::PUT,
            "/v1/models",
            Payload::None,
            405,
            Problem("method_not_allowed"),
        )
        .must_have(ALLOW, "POST"),
        row(
            "PATCH predict",
            Method::PATCH,
            "/v1/models/m/predict",
            Payload::None,
            405,
            Problem("method_not_allowed"),
        )
        .must_have(ALLOW, "POST"),
        row(
            "DELETE /v2 infer",
            Method::DELETE,
            "/v2/models/m/infer",
            Payload::None,
            405,
            V2,
        )
        .must_have(ALLOW, "POST"),
        // Wrong or missing Content-Type.
        post(
            "text/plain",
            "/v1/models",
            model(""),
            415,
            Problem("unsupported_media_type"),
        )
        .without_content_type()
        .header("content-type", "text/plain"),
        // `/v2` infer accepts any Content-Type, as openapi.yaml documents (KServe clients vary).
        post(
            "/v2 form is accepted",
            "/v2/models/m/infer",
            infer("[0, 1]"),
            200,
            Shape::Ok(a_prediction),
        )
        .without_content_type()
        .header("content-type", "application/x-www-form-urlencoded"),
        post(
            "no Content-Type",
            "/v1/jobs",
            job(""),
            415,
            Problem("unsupported_media_type"),
        )
        .without_content_type(),
        // Invalid UTF-8.
        post(
            "invalid UTF-8 in a name",
            "/v1/models",
            b"{\"name\": \"\xff\xfe\", \"layers\": [2, 1]}".to_vec(),
            400,
            bad(),
        ),
        post(
            "invalid UTF-8 in a key",
            "/v1/models/m/predict",
            b"{\"in\xc3\x28puts\": [[0, 0]]}".to_vec(),
            400,
            bad(),
        ),
        post(
            "lone surrogate",
            "/v1/models",
            r#"{"name": "\ud800", "layers": [2, 1]}"#,
            400,
            bad(),
        ),
        // Huge headers.
        get("a 16 KiB header", "/v1/models", 200, Shape::Ok(a_page))
            .header("x-filler", "a".repeat(16 << 10)),
        get("a 1 MiB header", "/v1/models", 431, Bare).header("x-filler", "a".repeat(1 << 20)),
        // Query-string abuse.
        get(
            "limit beyond u64",
            "/v1/models?limit=99999999999999999999",
            422,
            invalid(),
        ),
        get("negative offset", "/v1/models?offset=-1", 422, invalid()),
        get(
            "repeated limit",
            "/v1/datasets?limit=1&limit=2",
            422,
            invalid(),
        ),
        get("limit 0", "/v1/jobs?limit=0", 422, invalid()),
        get(
            "offset u64::MAX",
            "/v1/models?offset=18446744073709551615&limit=100",
            200,
            Shape::Ok(empty_page),
        ),
    ]
}

/// Auth edge cases beyond `auth.rs`. Two spaces after `Bearer` are accepted (RFC 7235:
/// `auth-scheme 1*SP token68`) and so is a trailing space (optional whitespace is not part of
/// a field value, RFC 9110 §5.5, and hyper strips it); two `Authorization` headers are refused
/// even when both are right.
fn auth_rows() -> Vec<Row> {
    use Shape::Problem;
    let unauthorized = || Problem("unauthorized");
    vec![
        get("case-changed token", "/v1/models", 401, unauthorized()).header(
            "authorization",
            format!("Bearer {}", MANAGEMENT.to_uppercase()),
        ),
        get(
            "token in the query",
            &format!("/v1/models?access_token={MANAGEMENT}"),
            401,
            unauthorized(),
        ),
        get(
            "Bearer with two spaces",
            "/v1/models",
            200,
            Shape::Ok(a_page),
        )
        .header("authorization", format!("Bearer  {MANAGEMENT}")),
        get(
            "two Authorization headers",
            "/v1/models",
            401,
            unauthorized(),
        )
        .header("authorization", format!("Bearer {MANAGEMENT}"))
        .header("authorization", "Bearer wrong"),
        get(
            "two Authorization headers, both right",
            "/v1/models",
            401,
            unauthorized(),
        )
        .header("authorization", format!("Bearer {MANAGEMENT}"))
        .header("authorization", format!("Bearer {MANAGEMENT}")),
        get(
            "inference token on management",
            "/v1/models",
            403,
            Problem("forbidden"),
        )
        .header("authorization", format!("Bearer {INFERENCE}")),
        get(
            "token with a trailing space",
            "/v1/models",
            200,
            Shape::Ok(a_page),
        )
        .header("authorization", format!("Bearer {MANAGEMENT} ")),
    ]
}

#[tokio::test]
async fn hostile_requests_get_documented_errors_and_the_server_stays_healthy() {
    let started = Instant::now();
    let app = app_with_model(config(), None).await;
    let rows = rows();
    run(&app, &rows, None).await;

    let mut guarded = config();
    guarded.access.management_token = Some(Token::parse(MANAGEMENT).expect("a token"));
    guarded.access.inference_token = Some(Token::parse(INFERENCE).expect("a token"));
    let guarded = app_with_model(guarded, Some(MANAGEMENT)).await;
    let auth_rows = auth_rows();
    run(&guarded, &auth_rows, Some(MANAGEMENT)).await;

    assert!(rows.len() + auth_rows.len() >= 40);
    let models: Value = app.get_ok("/v1/models").await;
    assert_eq!(
        models["items"].as_array().map(Vec::len),
        Some(1),
        "no hostile row made a model: {models}"
    );
    eprintln!(
        "{} hostile rows in {:?}",
        rows.len() + auth_rows.len(),
        started.elapsed()
    );
}
