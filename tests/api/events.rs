//! `GET /v1/jobs/{id}/events`: Server-Sent Events of a job's epochs and states. A subscriber
//! that falls behind the live events is told so and resumes with `Last-Event-ID`, missing
//! nothing; subscribers are capped per job and in all.

use std::time::{Duration, Instant};

use mlp_lab::config::Config;
use serde_json::json;

use crate::helpers::{assert_problem, metric, parse_sse, xor_dataset, SseEvent, TestApp};

/// The events of `job`'s stream after epoch `last` (from the start when `None`), to its end.
async fn read_from(app: &TestApp, job: &str, last: Option<&str>) -> Vec<SseEvent> {
    let mut request = app.client.get(app.url(&format!("/v1/jobs/{job}/events")));
    if let Some(id) = last {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.expect("request sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(60), response.text())
        .await
        .expect("the stream ends")
        .expect("a body");
    parse_sse(&text)
}

async fn read_events(app: &TestApp, job: &str) -> Vec<SseEvent> {
    read_from(app, job, None).await
}

fn epochs_of(events: &[SseEvent]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.name == "epoch")
        .map(|e| e.data["epoch"].as_u64().expect("epoch"))
        .collect()
}

#[tokio::test]
async fn every_epoch_arrives_in_order_then_the_final_status_to_every_subscriber() {
    let app = TestApp::spawn().await;
    let dataset = app.dataset(xor_dataset(25)).await;
    app.model(json!({"name": "sse", "layers": [2, 8, 1], "output": "sigmoid"}))
        .await;
    let job = app
        .job(json!({"model": "sse", "dataset": dataset, "epochs": 60, "batch_size": 4}))
        .await;

    let (first, second) = tokio::join!(read_events(&app, &job), read_events(&app, &job));

    for events in [first, second] {
        assert_eq!(epochs_of(&events), (0..=60).collect::<Vec<_>>());
        let last = events.last().expect("events");
        assert_eq!(last.name, "end");
        assert_eq!(last.data["state"], "succeeded");
    }
}

#[tokio::test]
async fn a_finished_job_replays_its_history_and_ends() {
    let app = TestApp::spawn().await;
    let dataset = app.dataset(xor_dataset(2)).await;
    app.model(json!({"name": "done", "layers": [2, 1], "output": "sigmoid"}))
        .await;
    let job = app
        .job(json!({"model": "done", "dataset": dataset, "epochs": 2}))
        .await;
    app.wait_for_job(&job, &["succeeded"], 30).await;

    let events = read_events(&app, &job).await;

    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["epoch", "epoch", "epoch", "end"]);
    let ids: Vec<Option<&str>> = events.iter().map(|e| e.id.as_deref()).collect();
    assert_eq!(ids, [Some("0"), Some("1"), Some("2"), None]);
}

#[tokio::test]
async fn last_event_id_resumes_after_that_epoch_and_one_that_names_no_epoch_is_refused() {
    let app = TestApp::spawn().await;
    let dataset = app.dataset(xor_dataset(2)).await;
    app.model(json!({"name": "done", "layers": [2, 1], "output": "sigmoid"}))
        .await;
    let job = app
        .job(json!({"model": "done", "dataset": dataset, "epochs": 2}))
        .await;
    app.wait_for_job(&job, &["succeeded"], 30).await;

    let rest = read_from(&app, &job, Some("0")).await;
    let none_left = read_from(&app, &job, Some("2")).await;

    assert_eq!(epochs_of(&rest), [1, 2]);
    assert_eq!(rest.last().map(|e| e.name.as_str()), Some("end"));
    let names: Vec<&str> = none_left.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["end"]);
    for bad in ["soon", "-1", "1.5", ""] {
        let response = app
            .client
            .get(app.url(&format!("/v1/jobs/{job}/events")))
            .header("Last-Event-ID", bad)
            .send()
            .await
            .expect("request sent");
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(problem.errors[0].field, "Last-Event-ID", "{problem:?}");
    }
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_told_so_and_resumes_with_last_event_id() {
    let app = TestApp::spawn().await;
    let dataset = app.dataset(xor_dataset(2)).await;
    app.model(json!({"name": "fast", "layers": [2, 2, 1], "output": "sigmoid"}))
        .await;
    let job = app
        .job(json!({"model": "fast", "dataset": dataset, "epochs": 100000, "batch_size": 8}))
        .await;
    // Subscribed at once, it has next to no history to read and follows the live events; then
    // it reads nothing while the job runs tens of thousands of epochs on: more than the socket
    // buffers and the job's ring of live events hold together.
    let response = app.get(&format!("/v1/jobs/{job}/events")).await;
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let shown = app.get_ok(&format!("/v1/jobs/{job}")).await;
        let epoch = shown["progress"]["epoch"].as_u64().unwrap_or(0);
        if epoch >= 40_000 || shown["state"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job is not past 40,000 epochs: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let text = tokio::time::timeout(Duration::from_secs(60), response.text())
        .await
        .expect("the stream ends")
        .expect("a body");

    let first = parse_sse(&text);
    let lagged = first.last().expect("events");
    assert_eq!(
        lagged.name, "lagged",
        "the stream ends with `lagged`, not {lagged:?}"
    );
    assert!(
        lagged.data["missed"].as_u64() > Some(0),
        "{:?}",
        lagged.data
    );
    let mut epochs = epochs_of(&first);
    let mut last = lagged.data["last_event_id"].as_str().map(str::to_owned);
    assert_eq!(last, first.iter().rev().find_map(|e| e.id.clone()));
    // Resumed where it stopped, it misses nothing (should it fall behind again, it resumes again).
    for _ in 0..1000 {
        let events = read_from(&app, &job, last.as_deref()).await;
        epochs.extend(epochs_of(&events));
        let end = events.last().expect("events");
        if end.name == "end" {
            assert_eq!(end.data["state"], "succeeded");
            break;
        }
        assert_eq!(end.name, "lagged", "{end:?}");
        last = end.data["last_event_id"]
            .as_str()
            .map(str::to_owned)
            .or(last);
    }
    assert_eq!(epochs.len(), 100_001, "every epoch once");
    assert!(epochs.iter().copied().eq(0..=100_000), "in order");
}

#[tokio::test]
async fn subscribers_beyond_the_caps_get_429_naming_the_limit_until_one_leaves() {
    let config = Config {
        max_event_subscribers: 3,
        max_event_subscribers_per_job: 2,
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(config).await;
    let dataset = app.dataset(xor_dataset(25)).await;
    app.model(json!({"name": "xor", "layers": [2, 8, 1], "output": "sigmoid"}))
        .await;
    let long = json!({"model": "xor", "dataset": dataset, "epochs": 100000, "batch_size": 1});
    let (a, b) = (app.job(long.clone()).await, app.job(long).await);
    app.wait_for_job(&a, &["running"], 30).await;
    app.wait_for_job(&b, &["running"], 30).await;
    let events = |job: &str| format!("/v1/jobs/{job}/events");
    let first_of_a = app.get(&events(&a)).await;
    let second_of_a = app.get(&events(&a)).await;
    assert_eq!(
        (first_of_a.status().as_u16(), second_of_a.status().as_u16()),
        (200, 200)
    );

    let third_of_a = app.get(&events(&a)).await;
    let first_of_b = app.get(&events(&b)).await;
    let second_of_b = app.get(&events(&b)).await;

    assert!(third_of_a.headers().contains_key("retry-after"));
    let per_job = assert_problem(third_of_a, 429, "too_many_subscribers").await;
    assert!(
        per_job.detail.contains("--max-event-subscribers-per-job"),
        "{per_job:?}"
    );
    assert_eq!(first_of_b.status(), 200);
    let in_all = assert_problem(second_of_b, 429, "too_many_subscribers").await;
    assert!(
        in_all.detail.contains("--max-event-subscribers /"),
        "{in_all:?}"
    );
    assert_eq!(metric(&app, "mlp_lab_event_subscribers").await, 3.0);
    // A subscriber that leaves frees its slot once the server sees its connection closed.
    drop(first_of_a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&app, "mlp_lab_event_subscribers").await > 2.0 {
        assert!(Instant::now() < deadline, "no slot was freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = app.get(&events(&b)).await;
    assert_eq!(again.status(), 200);
    drop((again, second_of_a, first_of_b));
    for job in [&a, &b] {
        app.post_ok(&format!("/v1/jobs/{job}/cancel"), &json!({}), 200)
            .await;
    }
}

#[tokio::test]
async fn a_subscriber_that_reads_nothing_is_disconnected_after_the_send_timeout() {
    let config = Config {
        send_timeout_secs: 1,
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(config).await;
    let dataset = app.dataset(xor_dataset(25)).await;
    app.model(json!({"name": "xor", "layers": [2, 8, 1], "output": "sigmoid"}))
        .await;
    let job = app
        .job(json!({"model": "xor", "dataset": dataset, "epochs": 100000, "batch_size": 1}))
        .await;
    app.wait_for_job(&job, &["running"], 30).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let address = app.address.trim_start_matches("http://");
    let mut silent = socket
        .connect(address.parse().expect("an address"))
        .await
        .expect("connect");
    let request = format!("GET /v1/jobs/{job}/events HTTP/1.1\r\nhost: {address}\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut silent, request.as_bytes())
        .await
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&app, "mlp_lab_event_subscribers").await < 1.0 {
        assert!(Instant::now() < deadline, "not subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // It reads nothing: once the socket's buffers are full, no write goes through for 1 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&app, "mlp_lab_event_subscribers").await > 0.0 {
        assert!(Instant::now() < deadline, "still subscribed after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(
        app.get_ok(&format!("/v1/jobs/{job}")).await["state"],
        "running"
    );
    drop(silent);
    app.post_ok(&format!("/v1/jobs/{job}/cancel"), &json!({}), 200)
        .await;
}
