//! `GET /v1/jobs/{id}/events`: Server-Sent Events of a job's epochs and states.

use serde_json::json;

use crate::helpers::{xor_dataset, TestApp};

/// The (event, data) pairs of a whole SSE stream.
async fn read_events(app: &TestApp, job: &str) -> Vec<(String, serde_json::Value)> {
    let response = app.get(&format!("/v1/jobs/{job}/events")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(std::time::Duration::from_secs(60), response.text())
        .await
        .expect("the stream ends")
        .expect("a body");
    text.split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((
                name.to_owned(),
                serde_json::from_str(data).expect("JSON data"),
            ))
        })
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
        let epochs: Vec<u64> = events
            .iter()
            .filter(|(name, _)| name == "epoch")
            .map(|(_, data)| data["epoch"].as_u64().expect("epoch"))
            .collect();
        assert_eq!(epochs, (0..=60).collect::<Vec<_>>());
        let (name, last) = events.last().expect("events");
        assert_eq!(name, "end");
        assert_eq!(last["state"], "succeeded");
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

    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["epoch", "epoch", "epoch", "end"]);
}
