//! The real binary stopped and started again on its data directory: SIGTERM keeps everything
//! bit for bit and interrupts running jobs with their history; while loading, it is alive
//! but not ready.

use std::time::Duration;

use serde_json::{json, Value};

use crate::backends::Backend;
use crate::helpers::xor_dataset;
use crate::process::{temp_dir, ServerProcess};

fn bits(outputs: &Value) -> Vec<u64> {
    outputs
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|row| row.as_array().expect("a row").iter())
        .map(|x| x.as_f64().expect("a number").to_bits())
        .collect()
}

#[tokio::test]
async fn a_restart_serves_bitwise_identical_predictions_and_intact_versions_and_jobs() {
    for backend in Backend::all("restart") {
        restart_keeps_everything(&backend).await;
    }
}

async fn restart_keeps_everything(backend: &Backend) {
    let on = backend.name();
    let server = backend.start_server().await;
    let dataset = server.post_ok("/v1/datasets", &xor_dataset(4), 201).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let spec =
        json!({"name": "kept", "layers": [2, 5, 1], "activation": "tanh", "output": "sigmoid"});
    server.post_ok("/v1/models", &spec, 201).await;
    let mut jobs = Vec::new();
    for (epochs, warm) in [(40, None), (25, Some(1))] {
        let mut body = json!({"model": "kept", "dataset": dataset, "epochs": epochs, "seed": 7});
        if let Some(v) = warm {
            body["warm_start"] = json!({"version": v});
        }
        let id = server.post_ok("/v1/jobs", &body, 202).await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        server.wait_for_job(&id, &["succeeded"], 30).await;
        jobs.push(id);
    }
    let inputs = json!({"inputs": [[0, 0], [0, 1], [1, 0], [1, 1], [0.3, -2.5], [1e3, 7]]});
    let mut before = Vec::new();
    for v in [1, 2] {
        let mut body = inputs.clone();
        body["version"] = json!(v);
        before.push(server.post_ok("/v1/models/kept/predict", &body, 200).await);
    }
    let model_before = server.get_ok("/v1/models/kept").await;
    let mut jobs_before = Vec::new();
    for id in &jobs {
        jobs_before.push(server.get_ok(&format!("/v1/jobs/{id}")).await);
        jobs_before.push(server.get_ok(&format!("/v1/jobs/{id}/metrics")).await);
    }

    let status = server.terminate().await;
    assert!(status.success(), "{on}: a clean exit on SIGTERM: {status}");
    let server = backend.start_server().await;

    for (v, earlier) in [1, 2].into_iter().zip(&before) {
        let mut body = inputs.clone();
        body["version"] = json!(v);
        let after = server.post_ok("/v1/models/kept/predict", &body, 200).await;
        assert_eq!(
            bits(&after["outputs"]),
            bits(&earlier["outputs"]),
            "{on}: version {v}"
        );
        assert_eq!(after["labels"], earlier["labels"]);
    }
    assert_eq!(server.get_ok("/v1/models/kept").await, model_before);
    let mut jobs_after = Vec::new();
    for id in &jobs {
        jobs_after.push(server.get_ok(&format!("/v1/jobs/{id}")).await);
        jobs_after.push(server.get_ok(&format!("/v1/jobs/{id}/metrics")).await);
    }
    assert_eq!(jobs_after, jobs_before, "{on}");
    assert_eq!(
        jobs_after[1]["epochs"].as_array().map(Vec::len),
        Some(41),
        "{on}: epoch 0 and 40 more"
    );
}

#[tokio::test]
async fn sigterm_interrupts_a_running_job_with_its_history_and_it_can_be_retried() {
    for backend in Backend::all("sigterm") {
        sigterm_interrupts(&backend).await;
    }
}

async fn sigterm_interrupts(backend: &Backend) {
    let on = backend.name();
    let server = backend.start_server().await;
    let dataset = server.post_ok("/v1/datasets", &xor_dataset(25), 201).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let spec = json!({"name": "long", "layers": [2, 8, 1], "output": "sigmoid"});
    server.post_ok("/v1/models", &spec, 201).await;
    let body =
        json!({"model": "long", "dataset": dataset, "epochs": 100000, "batch_size": 1, "seed": 3});
    let job = server.post_ok("/v1/jobs", &body, 202).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut seen = 0;
    for _ in 0..2000 {
        seen = server.get_ok(&format!("/v1/jobs/{job}/metrics")).await["epochs"]
            .as_array()
            .map_or(0, Vec::len);
        if seen >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(seen >= 5, "the job trains");

    let status = server.terminate().await;

    assert!(status.success(), "{on}: a clean exit on SIGTERM: {status}");
    let server = backend.start_server().await;
    let stopped = server.get_ok(&format!("/v1/jobs/{job}")).await;
    assert_eq!(stopped["state"], "interrupted", "{on}: {stopped}");
    let error = &stopped["error"];
    assert!(
        error["message"]
            .as_str()
            .expect("a message")
            .contains("shut down while the job was running"),
        "{error}"
    );
    let history = server.all_epochs(&job).await;
    assert!(
        history.len() >= seen,
        "{} < {seen}: epochs were lost",
        history.len()
    );
    let last = history.last().expect("an epoch")["epoch"].clone();
    assert_eq!(error["epoch"], last, "the error names the last epoch kept");
    assert_eq!(stopped["latest"]["epoch"], last);
    assert!(stopped["result"].is_null());
    assert_eq!(
        server.get_ok("/v1/models/long").await["versions"],
        json!([])
    );

    let retried = server
        .post_ok(&format!("/v1/jobs/{job}/retry"), &json!({}), 202)
        .await;

    assert_eq!(retried["retry_of"], job.as_str());
    assert_eq!(retried["request"], stopped["request"]);
    let id = retried["id"].as_str().expect("id");
    server.wait_for_job(id, &["running"], 30).await;
    server
        .post_ok(&format!("/v1/jobs/{id}/cancel"), &json!({}), 200)
        .await;
}

#[tokio::test]
async fn while_loading_healthz_is_200_and_readyz_and_the_api_are_503_with_retry_after() {
    let dir = temp_dir("loading");
    std::fs::create_dir_all(dir.join("datasets")).expect("mkdir");
    // A FIFO holds the loader on its read until the test writes, so "loading" lasts exactly
    // as long as the test needs it to.
    let fifo = dir.join(format!("datasets/{}.json", uuid::Uuid::now_v7()));
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let server = ServerProcess::start(&dir, &[]).await;

    let live = server.get("/healthz").await;
    let ready = server.get("/readyz").await;
    let api = server.get("/v1/models").await;

    assert_eq!(live.status(), 200);
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["content-type"], "application/problem+json");
    assert_eq!(api.status(), 503);
    assert_eq!(api.headers()["retry-after"], "1");
    let problem: Value = api.json().await.expect("JSON");
    assert_eq!(problem["code"], "unavailable");
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("loading"));

    let writer = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut pipe = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .expect("open the FIFO");
        pipe.write_all(br#"{"format":"mlp-lab.dataset.v1","sha2"#)
            .expect("write");
    });
    writer.await.expect("written");
    server.wait_ready().await;

    let listed = server.get_ok("/v1/storage/unavailable").await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["items"][0]["kind"], "dataset");
    assert!(listed["items"][0]["reason"]
        .as_str()
        .expect("reason")
        .starts_with("truncated"));
    assert_eq!(server.get_ok("/v1/models").await["total"], 0);
    let _ = std::fs::remove_dir_all(dir);
}
