//! Weights imports judged as their bodies arrive: a body that cannot be a file for the model
//! is refused from its first bytes or its header, while the client is still sending, and what
//! the server keeps is bounded by the file the header describes. Each refusal is checked on a
//! connection that has sent only the start of its body and keeps the rest: a server that
//! buffered whole bodies before looking at them would never answer it.

use std::time::Duration;

use mlp_lab::config::{ByteSize, Config};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{assert_problem, xor_dataset, TestApp};
use crate::weights::{f32_bytes, safetensors};

/// A tensor of a hand-made file: name, dtype, shape, bytes.
type Tensor = (&'static str, &'static str, Vec<usize>, Vec<u8>);

/// The state dict of `nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 2))`, every
/// value `fill`: under 2 KB with its header.
pub(crate) fn relu_2_32_2(fill: f32) -> Vec<Tensor> {
    vec![
        ("0.weight", "F32", vec![32, 2], f32_bytes(&[fill; 64])),
        ("0.bias", "F32", vec![32], f32_bytes(&[fill; 32])),
        ("2.weight", "F32", vec![2, 32], f32_bytes(&[fill; 64])),
        ("2.bias", "F32", vec![2], f32_bytes(&[fill; 2])),
    ]
}

async fn relu_model(app: &TestApp, name: &str) {
    app.model(
        json!({"name": name, "layers": [2, 32, 2], "activation": "relu",
                     "output": "softmax"}),
    )
    .await;
}

/// The length of a file's prefix and JSON header: where its data starts.
fn data_start(file: &[u8]) -> usize {
    let n = u64::from_le_bytes(file[..8].try_into().expect("8 bytes"));
    8 + usize::try_from(n).expect("a length")
}

/// How a raw request frames its body.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// `Content-Length` of this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`; each write is one chunk.
    Chunked,
}

/// A connection that has sent `POST /v1/models/{model}/versions` framed as `framing` and the
/// first `bytes` of its body, and keeps the rest back.
async fn started_import(address: &str, model: &str, framing: Framing, bytes: &[u8]) -> TcpStream {
    let address = address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let framing_header = match framing {
        Framing::Length(n) => format!("content-length: {n}"),
        Framing::Chunked => "transfer-encoding: chunked".to_owned(),
    };
    let head = format!(
        "POST /v1/models/{model}/versions HTTP/1.1\r\nhost: {address}\r\n\
         content-type: application/octet-stream\r\n{framing_header}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    send_piece(&mut stream, framing, bytes).await;
    stream
}

/// Writes `bytes` as the next piece of a body framed as `framing`.
async fn send_piece(stream: &mut TcpStream, framing: Framing, bytes: &[u8]) {
    match framing {
        Framing::Length(_) => stream.write_all(bytes).await.expect("send"),
        Framing::Chunked => {
            let mut chunk = format!("{:x}\r\n", bytes.len()).into_bytes();
            chunk.extend_from_slice(bytes);
            chunk.extend_from_slice(b"\r\n");
            stream.write_all(&chunk).await.expect("send");
        }
    }
}

/// The status and problem document that arrive on `stream` within 5 s, the body unfinished.
async fn answer(stream: &mut TcpStream) -> (u16, Value) {
    let mut answer = Vec::new();
    let read = async {
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await.expect("read the answer");
            answer.extend_from_slice(&buffer[..n]);
            if n == 0 || complete(&answer) {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("an answer within 5 s while the body is unfinished");
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let body = serde_json::from_slice(&answer[end..]).expect("a JSON body");
    (status, body)
}

/// Whether `answer` holds a head and the whole `Content-Length` body after it.
pub(crate) fn complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    answer.len() >= end + 4 + length
}

#[tokio::test]
async fn a_garbage_header_length_is_refused_from_the_first_bytes_naming_the_bound() {
    let app = TestApp::spawn().await;
    relu_model(&app, "garbage").await;
    // A PNG's signature read as a little-endian u64: 7.3 × 10^17 bytes of header.
    let png = b"\x89PNG\r\n\x1a\n";

    for framing in [Framing::Length(200_000_000), Framing::Chunked] {
        let mut stream = started_import(&app.address, "garbage", framing, png).await;
        let (status, problem) = answer(&mut stream).await;

        assert_eq!(
            (status, &problem["code"]),
            (422, &json!("validation_failed"))
        );
        let detail = problem["detail"].as_str().expect("a detail");
        assert!(
            detail.contains("header length says 727905341920923785 bytes")
                && detail.contains("more than the 1052672 a file for this model's spec can need"),
            "{framing:?}: {detail}"
        );
    }
    assert_eq!(
        app.get_ok("/v1/models/garbage").await["versions"],
        json!([])
    );
}

#[tokio::test]
async fn a_header_that_does_not_fit_the_model_is_refused_before_the_data_is_sent() {
    let app = TestApp::spawn().await;
    relu_model(&app, "misfit").await;
    let mut tensors = relu_2_32_2(0.1);
    tensors[0] = ("0.weight", "F32", vec![2, 32], f32_bytes(&[0.1; 64]));
    let file = safetensors(&tensors, None);
    let header = &file[..data_start(&file)];

    for framing in [Framing::Length(file.len() as u64), Framing::Chunked] {
        let mut stream = started_import(&app.address, "misfit", framing, header).await;
        let (status, problem) = answer(&mut stream).await;

        assert_eq!(status, 422, "{framing:?}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "0.weight", "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("expected shape [32, 2], got [2, 32]")),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn a_body_longer_than_its_header_says_is_refused_while_it_is_sent() {
    let app = TestApp::spawn().await;
    relu_model(&app, "long").await;
    let file = safetensors(&relu_2_32_2(0.1), None);

    // Declared: refused once the header is in, before the data.
    let declared = Framing::Length(file.len() as u64 + 200_000_000);
    let mut stream =
        started_import(&app.address, "long", declared, &file[..data_start(&file)]).await;
    let (status, declared_problem) = answer(&mut stream).await;
    assert_eq!(status, 422, "{declared_problem}");
    // Chunked: the whole file, then one byte more, and the body goes on.
    let mut stream = started_import(&app.address, "long", Framing::Chunked, &file).await;
    send_piece(&mut stream, Framing::Chunked, b"x").await;
    let (status, chunked_problem) = answer(&mut stream).await;

    assert_eq!(status, 422, "{chunked_problem}");
    let size = file.len();
    for problem in [declared_problem, chunked_problem] {
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&format!(
                    "the body is longer than the {size} bytes of the file its header describes"
                ))),
            "{problem}"
        );
    }
    assert_eq!(app.get_ok("/v1/models/long").await["versions"], json!([]));
}

#[tokio::test]
async fn a_header_describing_a_file_over_the_body_limit_is_413_before_its_data() {
    let mut config = Config::for_tests();
    config.limits.max_weights_upload_bytes = ByteSize(1024);
    let app = TestApp::spawn_with(config).await;
    relu_model(&app, "f64").await;
    // The same tensors in F64: 8 bytes a value, 1,296 bytes of data.
    let tensors: Vec<Tensor> = relu_2_32_2(0.1)
        .into_iter()
        .map(|(name, _, shape, bytes)| {
            let wide = bytes
                .chunks_exact(4)
                .flat_map(|b| f64::from(f32::from_le_bytes(b.try_into().expect("4"))).to_le_bytes())
                .collect();
            (name, "F64", shape, wide)
        })
        .collect();
    let file = safetensors(&tensors, None);

    let mut stream = started_import(
        &app.address,
        "f64",
        Framing::Chunked,
        &file[..data_start(&file)],
    )
    .await;
    let (status, problem) = answer(&mut stream).await;

    assert_eq!(
        (status, &problem["code"]),
        (413, &json!("payload_too_large"))
    );
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("--max-weights-upload-bytes")),
        "{problem}"
    );
}

#[tokio::test]
async fn weights_sent_in_small_chunks_import_and_predict_as_the_exported_version() {
    let app = TestApp::spawn().await;
    let dataset = app.dataset(xor_dataset(4)).await;
    relu_model(&app, "chunks").await;
    let job = app
        .job(json!({"model": "chunks", "dataset": dataset, "epochs": 5}))
        .await;
    app.wait_for_job(&job, &["succeeded"], 30).await;
    let exported = app
        .get("/v1/models/chunks/versions/1/weights")
        .await
        .bytes()
        .await
        .expect("the weights")
        .to_vec();

    // 7-byte chunks: the prefix, the header and the data each arrive cut in pieces.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        exported.chunks(7).map(|c| Ok(c.to_vec())).collect();
    let response = app
        .client
        .post(app.url("/v1/models/chunks/versions"))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);

    let inputs = json!([[0, 0], [0, 1], [1, 0], [1, 1], [3.5, -2.25]]);
    let mut answers = Vec::new();
    for version in [1, 2] {
        let body = json!({"inputs": inputs, "version": version});
        answers.push(app.post_ok("/v1/models/chunks/predict", &body, 200).await);
    }
    let (v1, v2) = (&answers[0], &answers[1]);
    assert_eq!(v1["outputs"], v2["outputs"]);
    assert_eq!(v1["labels"], v2["labels"]);
}

#[tokio::test]
async fn imports_beyond_the_cap_are_429_with_retry_after_until_one_ends() {
    let config = Config {
        max_concurrent_imports: 1,
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(config).await;
    relu_model(&app, "cap").await;
    let file = safetensors(&relu_2_32_2(0.1), None);
    let import = || {
        app.post_raw(
            "/v1/models/cap/versions",
            file.clone(),
            Some("application/octet-stream"),
        )
    };
    // Holds the one slot: its header is in, its data is not.
    let held = started_import(
        &app.address,
        "cap",
        Framing::Length(file.len() as u64),
        &file[..data_start(&file)],
    )
    .await;
    // The server takes the slot when it starts the held import's handler; until then another
    // import may still get it, so wait for the first 429.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let response = import().await;
        if response.status() == 429 {
            break response;
        }
        assert!(std::time::Instant::now() < deadline, "no 429 within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    assert_eq!(refused.headers()["retry-after"], "1");
    let problem = assert_problem(refused, 429, "too_many_imports").await;
    assert!(
        problem.detail.contains("--max-concurrent-imports"),
        "{problem:?}"
    );
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = import().await.status();
        if status == 201 {
            break;
        }
        assert_eq!(status, 429);
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
