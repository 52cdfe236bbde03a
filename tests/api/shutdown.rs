//! `Jobs::shutdown`, as `serve` runs it on SIGTERM or ctrl-c: queued and running jobs become
//! `interrupted` with their history, their event streams end, and no job starts after it.

use std::time::Duration;

use mlp_lab::config::Config;
use serde_json::json;

use crate::helpers::{assert_problem, xor_dataset, TestApp};

#[tokio::test]
async fn shutdown_interrupts_running_and_queued_jobs_ends_their_streams_and_refuses_new_ones() {
    let config = Config {
        max_running_jobs: 1,
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(config).await;
    app.model(json!({"name": "xor", "layers": [2, 8, 1], "output": "sigmoid"}))
        .await;
    let dataset = app.dataset(xor_dataset(25)).await;
    let long = json!({"model": "xor", "dataset": dataset, "epochs": 100000, "batch_size": 1});
    let running = app.job(long.clone()).await;
    app.wait_for_job(&running, &["running"], 30).await;
    // Running, and past its epoch-0 record (training threads run at a lower priority, so on a
    // busy machine the record may come a moment after the state).
    for _ in 0..300 {
        let history = app.get_ok(&format!("/v1/jobs/{running}/metrics")).await;
        if history["epochs"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let queued = app.job(long.clone()).await;
    let events = app.get(&format!("/v1/jobs/{running}/events")).await;
    assert_eq!(events.status(), 200);

    app.state.jobs.shutdown(Duration::from_secs(10)).await;

    let stopped = app.get_ok(&format!("/v1/jobs/{running}")).await;
    assert_eq!(stopped["state"], "interrupted");
    let message = stopped["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("shut down while the job was running"),
        "{message}"
    );
    let history = app.all_epochs(&running).await;
    let last = history.last().expect("an epoch")["epoch"].clone();
    assert_eq!(stopped["error"]["epoch"], last);
    let waiting = app.get_ok(&format!("/v1/jobs/{queued}")).await;
    assert_eq!(waiting["state"], "interrupted");
    assert!(waiting["error"]["message"]
        .as_str()
        .expect("a message")
        .contains("while the job was queued"));
    let stream = tokio::time::timeout(Duration::from_secs(5), events.text())
        .await
        .expect("the stream ends")
        .expect("a body");
    assert!(stream.contains("event: end"), "{stream}");
    assert!(stream.contains("interrupted"), "{stream}");
    let refused = app.post_json("/v1/jobs", &long).await;
    assert_problem(refused, 503, "unavailable").await;
    let retry = app
        .post_json(&format!("/v1/jobs/{running}/retry"), &json!({}))
        .await;
    assert_problem(retry, 503, "unavailable").await;
    assert_eq!(
        app.get_ok("/v1/jobs").await["total"],
        2,
        "the refused job is not kept"
    );
}
