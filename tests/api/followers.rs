//! Replicas on one PostgreSQL database see one world: what one creates, trains or deletes,
//! the others find, serve and forget, within a second, through the database's notifications
//! (see `mlp_lab::follower`). Three servers in this process, each with its own store, pool
//! and caches, on a fresh database; skipped, saying so, without `MLP_LAB_TEST_DATABASE_URL`.

use std::time::{Duration, Instant};

use mlp_lab::config::{Config, DatabaseUrl};
use mlp_lab::store::postgres::scratch::ScratchDatabase;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, parse_sse, xor_dataset, TestApp};

/// Three servers on `db`.
async fn replicas(db: &ScratchDatabase) -> [TestApp; 3] {
    let config = || {
        let Ok(url) = DatabaseUrl::unchecked(db.url());
        Config {
            ephemeral: false,
            database_url: Some(url),
            ..Config::for_tests()
        }
    };
    [
        TestApp::spawn_with(config()).await,
        TestApp::spawn_with(config()).await,
        TestApp::spawn_with(config()).await,
    ]
}

/// Polls `path` on `app` until it answers `status`; returns the time it took. Panics after
/// `secs`.
async fn until_status(app: &TestApp, path: &str, status: u16, secs: u64) -> Duration {
    let start = Instant::now();
    loop {
        if app.get(path).await.status().as_u16() == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "GET {path} did not answer {status} within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn predict_body() -> Value {
    json!({"inputs": [[0, 0], [0, 1], [1, 0], [1, 1], [0.3, -2.5]]})
}

#[tokio::test]
async fn a_model_made_on_one_replica_is_trained_on_another_and_served_by_the_third_within_a_second()
{
    let Some(db) = ScratchDatabase::from_env("a_model_made_on_one_replica_is_served_by_another")
    else {
        return;
    };
    let [a, b, c] = replicas(&db).await;
    let dataset = a.dataset(xor_dataset(4)).await;
    a.model(
        json!({"name": "shared", "layers": [2, 5, 1], "activation": "tanh", "output": "sigmoid"}),
    )
    .await;
    until_status(&b, "/v1/models/shared", 200, 5).await;
    until_status(&b, &format!("/v1/datasets/{dataset}"), 200, 5).await;

    let job = b
        .job(json!({"model": "shared", "dataset": dataset, "epochs": 30, "seed": 7}))
        .await;
    b.wait_for_job(&job, &["succeeded"], 60).await;
    let waited = until_status(&c, "/v1/models/shared/versions/1", 200, 5).await;

    assert!(waited < Duration::from_secs(1), "served after {waited:?}");
    let on_b = b
        .post_ok("/v1/models/shared/predict", &predict_body(), 200)
        .await;
    let on_c = c
        .post_ok("/v1/models/shared/predict", &predict_body(), 200)
        .await;
    assert_eq!(
        on_b["outputs"], on_c["outputs"],
        "the same weights, bit for bit"
    );
    let seen_on_a = a.wait_for_job(&job, &["succeeded"], 5).await;
    assert_eq!(seen_on_a["result"]["version"], 1, "{seen_on_a}");
    assert_eq!(a.all_epochs(&job).await, b.all_epochs(&job).await);
}

#[tokio::test]
async fn of_twenty_creates_of_one_name_over_three_replicas_exactly_one_succeeds() {
    let Some(db) = ScratchDatabase::from_env("of_twenty_creates_of_one_name") else {
        return;
    };
    let apps = replicas(&db).await;
    let spec = json!({"name": "race", "layers": [2, 3, 1], "output": "sigmoid"});

    let answers =
        futures_util::future::join_all((0..20).map(|i| apps[i % 3].post_json("/v1/models", &spec)))
            .await;

    let mut created = Vec::new();
    for (i, answer) in answers.into_iter().enumerate() {
        match answer.status().as_u16() {
            201 => created.push((i, answer.json::<Value>().await.expect("JSON")["id"].clone())),
            _ => {
                assert_problem(answer, 409, "name_taken").await;
            }
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    let id = &created[0].1;
    for app in &apps {
        until_status(app, "/v1/models/race", 200, 5).await;
        assert_eq!(app.get_ok("/v1/models/race").await["id"], *id);
    }
}

#[tokio::test]
async fn a_job_trained_on_one_replica_streams_every_epoch_on_another() {
    let Some(db) = ScratchDatabase::from_env("a_job_trained_on_one_replica_streams") else {
        return;
    };
    let [a, b, _c] = replicas(&db).await;
    let dataset = a.dataset(xor_dataset(100)).await;
    a.model(json!({"name": "streamed", "layers": [2, 16, 1], "output": "sigmoid"}))
        .await;
    let job = a
        .job(json!({"model": "streamed", "dataset": dataset, "epochs": 3000, "batch_size": 4}))
        .await;
    // Followed while it runs: the worker writes its progress once a second.
    let running = Instant::now();
    loop {
        let seen = b.get(&format!("/v1/jobs/{job}")).await;
        if seen.status() == 200 {
            let seen: Value = seen.json().await.expect("JSON");
            if seen["state"] == "running" && seen["progress"]["epoch"].as_u64() > Some(0) {
                break;
            }
            assert_ne!(
                seen["state"], "succeeded",
                "the job ended before B saw it run"
            );
        }
        assert!(
            running.elapsed() < Duration::from_secs(30),
            "B never saw it run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let response = b
        .client
        .get(b.url(&format!("/v1/jobs/{job}/events")))
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(120), response.text())
        .await
        .expect("the stream ends")
        .expect("a body");
    let events = parse_sse(&text);

    let epochs: Vec<u64> = events
        .iter()
        .filter(|e| e.name == "epoch")
        .map(|e| e.data["epoch"].as_u64().expect("epoch"))
        .collect();
    assert_eq!(epochs, (0..=3000).collect::<Vec<_>>());
    let last = events.last().expect("events");
    assert_eq!(last.name, "end");
    assert_eq!(last.data["state"], "succeeded");
}

#[tokio::test]
async fn two_replicas_training_one_model_at_once_take_two_version_numbers() {
    let Some(db) = ScratchDatabase::from_env("two_replicas_training_one_model_at_once") else {
        return;
    };
    let [a, b, c] = replicas(&db).await;
    let dataset = a.dataset(xor_dataset(4)).await;
    a.model(json!({"name": "twice", "layers": [2, 4, 1], "output": "sigmoid"}))
        .await;
    until_status(&b, "/v1/models/twice", 200, 5).await;
    until_status(&b, &format!("/v1/datasets/{dataset}"), 200, 5).await;
    let body = json!({"model": "twice", "dataset": dataset, "epochs": 20, "seed": 1});

    let (on_a, on_b) = tokio::join!(a.job(body.clone()), b.job(body.clone()));
    let (done_a, done_b) = tokio::join!(
        a.wait_for_job(&on_a, &["succeeded"], 60),
        b.wait_for_job(&on_b, &["succeeded"], 60)
    );

    let mut numbers = [
        done_a["result"]["version"].as_u64(),
        done_b["result"]["version"].as_u64(),
    ];
    numbers.sort_unstable();
    assert_eq!(numbers, [Some(1), Some(2)], "{done_a} {done_b}");
    until_status(&c, "/v1/models/twice/versions/2", 200, 5).await;
    let listed = c.get_ok("/v1/models/twice/versions").await;
    let jobs: Vec<&Value> = listed["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| &v["job"])
        .collect();
    assert_eq!(jobs.len(), 2, "{listed}");
    assert!(
        jobs.contains(&&json!(on_a)) && jobs.contains(&&json!(on_b)),
        "{listed}"
    );
}

#[tokio::test]
async fn a_model_deleted_on_one_replica_is_gone_from_the_others_and_its_name_free() {
    let Some(db) = ScratchDatabase::from_env("a_model_deleted_on_one_replica_is_gone") else {
        return;
    };
    let [a, b, _c] = replicas(&db).await;
    let first = a
        .model(json!({"name": "brief", "layers": [2, 3, 1], "output": "sigmoid"}))
        .await;
    until_status(&b, "/v1/models/brief", 200, 5).await;

    assert_eq!(a.delete("/v1/models/brief").await.status(), 204);
    let waited = until_status(&b, "/v1/models/brief", 404, 5).await;

    assert!(waited < Duration::from_secs(1), "gone after {waited:?}");
    let second = b
        .model(json!({"name": "brief", "layers": [2, 3, 1], "output": "sigmoid"}))
        .await;
    assert_ne!(first, second);
    until_status(&a, &format!("/v1/models/{second}"), 200, 5).await;
    assert_eq!(a.get_ok("/v1/models/brief").await["id"], json!(second));
}
