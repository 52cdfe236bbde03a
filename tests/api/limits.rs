//! Limits on clients rather than on what they ask for: admission of predictions (slots, queue,
//! longest wait), the header-read timeout, the header-size limit, and `/readyz` when the data directory
//! cannot be written.

use std::time::{Duration, Instant};

use mlp_lab::config::{ByteSize, Config};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{assert_problem, metric, xor_dataset, TestApp};

async fn trained(app: &TestApp) {
    let dataset = app.dataset(xor_dataset(2)).await;
    app.model(json!({"name": "m", "layers": [2, 4, 1], "output": "sigmoid"}))
        .await;
    let job = app
        .job(json!({"model": "m", "dataset": dataset, "epochs": 1}))
        .await;
    app.wait_for_job(&job, &["succeeded"], 30).await;
}

fn host_of(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// A prediction whose body never finishes (a client trickling it, or gone quiet).
async fn start_an_unfinished_prediction(app: &TestApp) -> TcpStream {
    let mut stream = TcpStream::connect(host_of(app)).await.expect("connect");
    let head =
        "POST /v1/models/m/predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                content-length: 100\r\n\r\n{\"inputs\": [";
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

fn v2_body() -> serde_json::Value {
    json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "data": [0, 1]}]})
}

fn with_admission(slots: usize, queue: usize, wait_ms: u64) -> Config {
    Config {
        max_concurrent_predictions: slots,
        max_queued_predictions: queue,
        max_prediction_wait_ms: wait_ms,
        ..Config::for_tests()
    }
}

#[tokio::test]
async fn bodies_still_being_sent_hold_no_prediction_slot() {
    // One slot and no queue: were a slot taken while a body is read, the trickling clients
    // would take it and every normal prediction would be a 429.
    let app = TestApp::spawn_with(with_admission(1, 0, 1000)).await;
    trained(&app).await;
    let mut trickling = Vec::new();
    for _ in 0..8 {
        trickling.push(start_an_unfinished_prediction(&app).await);
    }
    for stream in &mut trickling {
        stream.write_all(b"[0, ").await.expect("write");
    }
    for _ in 0..5 {
        app.post_ok("/v1/models/m/predict", &json!({"inputs": [[0, 1]]}), 200)
            .await;
        let v2 = app.post_json("/v2/models/m/infer", &v2_body()).await;
        assert_eq!(v2.status(), 200);
    }
    assert_eq!(app.state.predictor.slots().in_flight(), 0);
    assert_eq!(
        metric(&app, "mlp_lab_predictions_rejected_total").await,
        0.0
    );
}

#[tokio::test]
async fn predictions_wait_in_the_queue_for_a_slot_rather_than_being_refused() {
    let app = TestApp::spawn_with(with_admission(1, 16, 30_000)).await;
    trained(&app).await;
    let held = app
        .state
        .predictor
        .slots()
        .take_free()
        .expect("a free slot");
    let requests = (0..6).map(|i| {
        let app = &app;
        async move {
            if i % 2 == 0 {
                app.post_json("/v1/models/m/predict", &json!({"inputs": [[0, 1]]}))
                    .await
            } else {
                app.post_json("/v2/models/m/infer", &v2_body()).await
            }
            .status()
            .as_u16()
        }
    });
    let all = futures_util::future::join_all(requests);
    let release = async {
        crate::helpers::wait_until(|| app.state.predictor.slots().queued() == 6).await;
        assert_eq!(metric(&app, "mlp_lab_predictions_queued").await, 6.0);
        drop(held);
    };
    let (statuses, ()) = tokio::join!(all, release);
    assert_eq!(statuses, [200; 6]);
    assert_eq!(
        metric(&app, "mlp_lab_predictions_rejected_total").await,
        0.0
    );
    assert_eq!(metric(&app, "mlp_lab_predictions_queued").await, 0.0);
}

#[tokio::test]
async fn a_full_queue_or_a_wait_that_runs_out_is_429_with_retry_after_on_v1_and_v2() {
    // No queue: refused at once.
    let app = TestApp::spawn_with(with_admission(1, 0, 30_000)).await;
    trained(&app).await;
    let held = app
        .state
        .predictor
        .slots()
        .take_free()
        .expect("a free slot");
    let started = Instant::now();
    let v1 = app
        .post_json("/v1/models/m/predict", &json!({"inputs": [[0, 1]]}))
        .await;
    assert_eq!(v1.headers()["retry-after"], "1");
    let problem = assert_problem(v1, 429, "too_many_predictions").await;
    for flag in ["--max-concurrent-predictions", "--max-queued-predictions"] {
        assert!(problem.detail.contains(flag), "{}", problem.detail);
    }
    let v2 = app.post_json("/v2/models/m/infer", &v2_body()).await;
    assert_eq!(v2.status(), 429);
    assert_eq!(v2.headers()["retry-after"], "1");
    let body: serde_json::Value = v2.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("saturated")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a full queue must not wait"
    );
    assert_eq!(
        metric(&app, "mlp_lab_predictions_rejected_total").await,
        2.0
    );
    assert_eq!(metric(&app, "mlp_lab_predictions_in_flight").await, 1.0);
    drop(held);
    app.post_ok("/v1/models/m/predict", &json!({"inputs": [[0, 1]]}), 200)
        .await;

    // A queue, and a short wait that runs out.
    let app = TestApp::spawn_with(with_admission(1, 16, 200)).await;
    trained(&app).await;
    let _held = app
        .state
        .predictor
        .slots()
        .take_free()
        .expect("a free slot");
    let started = Instant::now();
    let v1 = app
        .post_json("/v1/models/m/predict", &json!({"inputs": [[0, 1]]}))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_problem(v1, 429, "too_many_predictions").await;
}

#[tokio::test]
async fn concurrent_predictions_over_the_cap_without_a_queue_get_only_200_and_429() {
    let app = TestApp::spawn_with(with_admission(2, 0, 1000)).await;
    trained(&app).await;
    // Large enough to leave the async worker, so that requests overlap.
    let rows: Vec<[f64; 2]> = (0..20_000).map(|i| [f64::from(i % 2), 1.0]).collect();
    let body = json!({ "inputs": rows });

    let requests = (0..24).map(|_| {
        let app = &app;
        let body = &body;
        async move {
            let response = app.post_json("/v1/models/m/predict", body).await;
            let status = response.status().as_u16();
            if status == 200 {
                let answer: serde_json::Value = response.json().await.expect("json");
                assert_eq!(answer["outputs"].as_array().map(Vec::len), Some(20_000));
            }
            status
        }
    });
    let statuses = futures_util::future::join_all(requests).await;

    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    let rejected = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        metric(&app, "mlp_lab_predictions_rejected_total").await,
        rejected as f64
    );
}

async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn a_client_that_sends_its_head_too_slowly_is_disconnected_while_others_are_served() {
    let app = TestApp::spawn_with(Config {
        header_read_timeout_secs: 1,
        ..Config::for_tests()
    })
    .await;
    let mut slow = TcpStream::connect(host_of(&app)).await.expect("connect");
    let mut silent = TcpStream::connect(host_of(&app)).await.expect("connect");
    let started = Instant::now();
    slow.write_all(b"GET /healthz HT").await.expect("write");

    // Meanwhile others are served, more than once.
    for _ in 0..3 {
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
    // A byte every 300 ms never completes the head: the deadline is for the whole head.
    for byte in b"TP/1.1\r\nhost: x\r\n" {
        if slow.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }

    let closed = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "the slow client is still connected");
    assert!(started.elapsed() < Duration::from_secs(8));
    let closed = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert_eq!(
        closed,
        Some(Vec::new()),
        "a client that says nothing is closed silently"
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let app = TestApp::spawn_with(Config {
        header_read_timeout_secs: 1,
        ..Config::for_tests()
    })
    .await;
    let mut stream = TcpStream::connect(host_of(&app)).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.expect("read");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let idle_since = Instant::now();

    let closed = read_until_closed(&mut stream, Duration::from_secs(5)).await;

    assert_eq!(closed, Some(Vec::new()), "the idle connection stays open");
    assert!(idle_since.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn headers_over_the_limit_are_431_problem_json_and_huge_ones_a_bare_431() {
    let app = TestApp::spawn_with(Config {
        max_header_bytes: ByteSize(8 << 10),
        ..Config::for_tests()
    })
    .await;

    let just_inside = app
        .client
        .get(app.url("/healthz"))
        .header("x-filler", "a".repeat(7 << 10))
        .send()
        .await
        .expect("send");
    assert_eq!(just_inside.status(), 200);
    let over = app
        .client
        .get(app.url("/v1/models"))
        .header("x-filler", "a".repeat(9 << 10))
        .send()
        .await
        .expect("send");
    let problem = assert_problem(over, 431, "headers_too_large").await;
    assert!(
        problem.detail.contains("--max-header-bytes"),
        "{}",
        problem.detail
    );
    // Beyond hyper's buffer (the limit + 16 KiB, at least 64 KiB) the parser answers on its
    // own.
    let huge = app
        .client
        .get(app.url("/v1/models"))
        .header("x-filler", "a".repeat(1 << 20))
        .send()
        .await
        .expect("send");
    assert_eq!(huge.status(), 431);
    assert_eq!(app.get("/healthz").await.status(), 200);
}

async fn wait_for_readyz(app: &TestApp, status: u16) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.get("/readyz").await;
        if response.status().as_u16() == status {
            return response;
        }
        assert!(Instant::now() < deadline, "/readyz never answered {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_is_503_while_the_data_directory_is_gone_or_a_file_and_recovers() {
    let dir = std::env::temp_dir().join(format!("mlp-lab-api-{}", uuid::Uuid::now_v7()));
    let moved = dir.with_extension("moved");
    let app = TestApp::spawn_with(Config {
        ephemeral: false,
        data_dir: dir.clone(),
        ..Config::for_tests()
    })
    .await;
    wait_for_readyz(&app, 200).await;

    // The volume went away.
    std::fs::rename(&dir, &moved).expect("rename");
    let response = wait_for_readyz(&app, 503).await;
    let problem = assert_problem(response, 503, "unavailable").await;
    assert!(
        problem.detail.contains("data directory"),
        "{}",
        problem.detail
    );
    assert!(
        !problem.detail.contains(dir.to_str().expect("utf-8")),
        "no paths in a 5xx"
    );
    let v2 = app.get("/v2/health/ready").await;
    assert_eq!(v2.status(), 503);

    // It came back.
    std::fs::rename(&moved, &dir).expect("rename back");
    wait_for_readyz(&app, 200).await;
    assert_eq!(app.get("/v2/health/ready").await.status(), 200);

    // Something else took its place.
    std::fs::rename(&dir, &moved).expect("rename");
    std::fs::write(&dir, b"not a directory").expect("a file");
    let response = wait_for_readyz(&app, 503).await;
    assert_problem(response, 503, "unavailable").await;
    std::fs::remove_file(&dir).expect("remove the file");
    std::fs::rename(&moved, &dir).expect("rename back");
    wait_for_readyz(&app, 200).await;

    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ready-probe"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}
