//! Three replicas (real `mlp-lab` processes) on one database share one job queue: jobs
//! submitted on one are claimed by whichever has a free slot, a replica killed or paused
//! past its lease loses its job to the others' reaper, and a paused one that resumes writes
//! nothing more for it. Each test makes its own database on `MLP_LAB_TEST_DATABASE_URL`'s
//! server and skips, saying so, when the variable is unset.
//!
//! Until replicas apply each other's writes to their caches, what a job became is read where
//! it is true: in the database (its stored record and its queue row).

use std::process::Command;
use std::time::{Duration, Instant};

use mlp_lab::store::postgres::scratch::{run_sql, ScratchDatabase, TEST_DATABASE_URL};
use serde_json::{json, Value};

use crate::helpers::xor_dataset;
use crate::process::{temp_dir, ServerProcess};

/// The lease the replicas of these tests hold jobs under, in seconds.
const LEASE: u64 = 2;

async fn replica(db: &ScratchDatabase, name: &str) -> ServerProcess {
    let lease = LEASE.to_string();
    let args = [
        "--database-url",
        db.url(),
        "--replica-name",
        name,
        "--max-running-jobs",
        "1",
        "--job-lease-secs",
        &lease,
    ];
    ServerProcess::start_ready(&temp_dir("replica"), &args).await
}

async fn three_replicas(db: &ScratchDatabase) -> Vec<ServerProcess> {
    vec![
        replica(db, "a").await,
        replica(db, "b").await,
        replica(db, "c").await,
    ]
}

/// A dataset and a model named `name` created on `server` (after every replica started, so
/// the others know neither until they claim a job of it), returned as the dataset's id.
async fn model_and_dataset(
    server: &ServerProcess,
    name: &str,
    layers: Value,
    rows: usize,
) -> String {
    let dataset = server
        .post_ok("/v1/datasets", &xor_dataset(rows), 201)
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let spec = json!({"name": name, "layers": layers, "activation": "tanh", "output": "sigmoid"});
    server.post_ok("/v1/models", &spec, 201).await;
    dataset
}

async fn submit(server: &ServerProcess, model: &str, dataset: &str, epochs: u32) -> String {
    let body = json!({"model": model, "dataset": dataset, "epochs": epochs, "seed": 1});
    server.post_ok("/v1/jobs", &body, 202).await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

async fn database(db: &ScratchDatabase) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client
}

/// Job `id` as stored: `{"record": …, "history": […]}`.
async fn stored(client: &tokio_postgres::Client, id: &str) -> Value {
    let row = client
        .query_one(
            "SELECT value FROM objects WHERE key = $1",
            &[&format!("jobs/{id}.json")],
        )
        .await
        .expect("the job's record");
    let bytes: Vec<u8> = row.get(0);
    mlp_lab::store::envelope::open::<Value>("job", &bytes).expect("a job record")
}

/// Job `id`'s queue row: its state, worker and lease token.
async fn queue_row(client: &tokio_postgres::Client, id: &str) -> (String, Option<String>, i64) {
    let row = client
        .query_one(
            "SELECT state, worker, lease_token FROM job_queue WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .expect("the job's queue row");
    (row.get(0), row.get(1), row.get(2))
}

/// Polls the stored record of `id` until `done` holds of it; panics after `secs`.
async fn wait_stored(
    client: &tokio_postgres::Client,
    id: &str,
    secs: u64,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let job = stored(client, id).await;
        if done(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} not {what} within {secs} s: {}",
            job["record"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn signal(server: &ServerProcess, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{name}");
}

/// The value of the counter `name` in `server`'s `/metrics`.
async fn counter(server: &ServerProcess, name: &str) -> u64 {
    let text = server.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Submits a job that trains for minutes on `server` and waits until a replica runs it and
/// has stored some of its epochs; returns the job and the replica that runs it.
async fn a_long_job_running(
    replicas: &[ServerProcess],
    client: &tokio_postgres::Client,
) -> (String, usize) {
    let dataset = model_and_dataset(&replicas[0], "long", json!([2, 64, 64, 1]), 250).await;
    let id = submit(&replicas[0], "long", &dataset, 100_000).await;
    let job = wait_stored(client, &id, 30, "running with stored epochs", |job| {
        job["record"]["state"] == "running" && !job["history"].as_array().is_none_or(Vec::is_empty)
    })
    .await;
    let worker = job["record"]["worker"]
        .as_str()
        .expect("a worker")
        .to_owned();
    let index = ["a", "b", "c"]
        .iter()
        .position(|n| *n == worker)
        .expect("one of the replicas");
    (id, index)
}

#[tokio::test]
async fn jobs_submitted_on_one_replica_are_claimed_by_the_replicas_with_a_free_slot() {
    let Some(db) = ScratchDatabase::from_env("jobs_submitted_on_one_replica_are_claimed") else {
        return;
    };
    let replicas = three_replicas(&db).await;
    let client = database(&db).await;
    let dataset = model_and_dataset(&replicas[0], "shared", json!([2, 32, 1]), 64).await;

    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(submit(&replicas[0], "shared", &dataset, 1500).await);
    }

    let mut workers = std::collections::BTreeSet::new();
    for id in &ids {
        let job = wait_stored(&client, id, 180, "succeeded", |job| {
            job["record"]["state"] == "succeeded"
        })
        .await;
        let worker = job["record"]["worker"]
            .as_str()
            .expect("a worker")
            .to_owned();
        assert_eq!(queue_row(&client, id).await.0, "done");
        let on_worker = ["a", "b", "c"]
            .iter()
            .position(|n| *n == worker)
            .expect("one of the replicas");
        let view = replicas[on_worker].get_ok(&format!("/v1/jobs/{id}")).await;
        assert_eq!(view["worker"], worker.as_str());
        assert_eq!(view["state"], "succeeded");
        assert_eq!(view["result"], job["record"]["result"]);
        workers.insert(worker);
    }
    eprintln!("six jobs ran on {workers:?}");
    assert!(
        workers.len() >= 2,
        "six jobs of over a second, one slot a replica, ran on {workers:?} only"
    );
}

#[tokio::test]
async fn a_replica_killed_while_it_trains_loses_its_job_to_the_others_within_its_lease() {
    let Some(db) = ScratchDatabase::from_env("a_replica_killed_while_it_trains") else {
        return;
    };
    let mut replicas = three_replicas(&db).await;
    let client = database(&db).await;
    let (id, worker) = a_long_job_running(&replicas, &client).await;
    let before = stored(&client, &id).await;
    let worker_name = before["record"]["worker"]
        .as_str()
        .expect("worker")
        .to_owned();

    replicas.remove(worker).kill9();
    let killed = Instant::now();
    let after = wait_stored(&client, &id, LEASE + 10, "interrupted", |job| {
        job["record"]["state"] == "interrupted"
    })
    .await;

    let took = killed.elapsed();
    eprintln!("interrupted {took:?} after the kill (lease {LEASE} s)");
    assert!(
        took < Duration::from_secs(LEASE + 5),
        "interrupted {took:?} after the kill"
    );
    let message = after["record"]["error"]["message"].as_str().expect("why");
    assert!(
        message.contains(&format!("replica {worker_name} lost its lease")),
        "{message}"
    );
    let kept = after["history"].as_array().expect("history");
    assert!(kept.len() >= before["history"].as_array().expect("history").len());
    assert_eq!(after["record"]["worker"], worker_name.as_str());
    assert_eq!(queue_row(&client, &id).await.0, "done");
    // The others go on: new jobs are claimed and trained.
    let dataset = model_and_dataset(&replicas[0], "after", json!([2, 3, 1]), 4).await;
    for _ in 0..3 {
        let next = submit(&replicas[0], "after", &dataset, 20).await;
        wait_stored(&client, &next, 30, "succeeded", |job| {
            job["record"]["state"] == "succeeded"
        })
        .await;
    }
    for server in &replicas {
        server.wait_ready().await;
    }
}

#[tokio::test]
async fn a_replica_paused_past_its_lease_writes_nothing_more_for_its_job_once_resumed() {
    let Some(db) = ScratchDatabase::from_env("a_replica_paused_past_its_lease") else {
        return;
    };
    let replicas = three_replicas(&db).await;
    let client = database(&db).await;
    let (id, worker) = a_long_job_running(&replicas, &client).await;
    let paused = &replicas[worker];
    let (_, _, token) = queue_row(&client, &id).await;

    signal(paused, "STOP");
    let reaped = wait_stored(&client, &id, LEASE + 10, "interrupted", |job| {
        job["record"]["state"] == "interrupted"
    })
    .await;
    let (state, _, new_token) = queue_row(&client, &id).await;
    assert_eq!(state, "done");
    assert_ne!(new_token, token, "the reaper drew a new token");
    signal(paused, "CONT");

    // It finds out (its heartbeat's renewal is refused, or its next write is), stops, and
    // says so in its own view of the job.
    let seen = paused.wait_for_job(&id, &["interrupted"], 20).await;
    assert!(
        seen["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("lost its lease")),
        "{seen}"
    );
    let fenced = counter(paused, "mlp_lab_job_writes_fenced_total").await;
    let lost = counter(paused, "mlp_lab_job_leases_lost_total").await;
    assert_eq!(lost, 1, "fenced writes: {fenced}");
    // Longer than its progress writes are apart (a second), and past a renewal.
    let settle = Instant::now() + Duration::from_secs(LEASE + 1);
    while Instant::now() < settle {
        assert_eq!(
            stored(&client, &id).await,
            reaped,
            "the stored job changed after it resumed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(queue_row(&client, &id).await.2, new_token);
    eprintln!("fenced writes on the resumed replica: {fenced}");
}

#[tokio::test]
async fn a_job_running_on_another_replica_is_cancelled_from_the_one_it_was_submitted_on() {
    let Some(db) = ScratchDatabase::from_env("a_job_running_on_another_replica_is_cancelled")
    else {
        return;
    };
    let replicas = three_replicas(&db).await;
    let client = database(&db).await;
    let dataset = model_and_dataset(&replicas[0], "far", json!([2, 64, 64, 1]), 250).await;
    // One slot a replica: of two long jobs, at least one runs on another replica than `a`.
    let ids = [
        submit(&replicas[0], "far", &dataset, 100_000).await,
        submit(&replicas[0], "far", &dataset, 100_000).await,
    ];
    let mut elsewhere = None;
    for id in &ids {
        let job = wait_stored(&client, id, 30, "running", |job| {
            job["record"]["state"] == "running"
        })
        .await;
        let worker = job["record"]["worker"].as_str().expect("worker").to_owned();
        if worker != "a" {
            elsewhere = Some((id.clone(), worker));
        }
    }
    let (id, worker) = elsewhere.expect("a job on b or c");

    let cancelled = replicas[0]
        .post_ok(&format!("/v1/jobs/{id}/cancel"), &json!({}), 200)
        .await;

    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["worker"], worker.as_str());
    let stored_job = stored(&client, &id).await;
    assert_eq!(stored_job["record"]["state"], "cancelled");
    assert_eq!(queue_row(&client, &id).await.0, "done");
    let on_worker = ["a", "b", "c"]
        .iter()
        .position(|n| *n == worker)
        .expect("one of the replicas");
    let view = replicas[on_worker].get_ok(&format!("/v1/jobs/{id}")).await;
    assert_eq!(view["state"], "cancelled");
    let model = replicas[on_worker].get_ok("/v1/models/far").await;
    assert_eq!(
        model["versions"],
        json!([]),
        "a cancelled job stores no version"
    );
    // Cancelling again is a 409: the job is finished.
    let again = replicas[0]
        .client
        .post(replicas[0].url(&format!("/v1/jobs/{id}/cancel")))
        .json(&json!({}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn a_replica_shut_down_interrupts_its_running_job_and_leaves_the_queued_one_to_the_next() {
    let Some(db) = ScratchDatabase::from_env("a_replica_shut_down_interrupts_its_running_job")
    else {
        return;
    };
    let first = replica(&db, "a").await;
    let client = database(&db).await;
    let dataset = model_and_dataset(&first, "kept", json!([2, 64, 64, 1]), 250).await;
    let running = submit(&first, "kept", &dataset, 100_000).await;
    wait_stored(&client, &running, 30, "running", |job| {
        job["record"]["state"] == "running"
    })
    .await;
    let queued = submit(&first, "kept", &dataset, 30).await;

    assert!(first.terminate().await.success());

    let stopped = stored(&client, &running).await;
    assert_eq!(stopped["record"]["state"], "interrupted");
    assert_eq!(queue_row(&client, &running).await.0, "done");
    assert_eq!(stored(&client, &queued).await["record"]["state"], "queued");
    assert_eq!(queue_row(&client, &queued).await.0, "queued");
    // The next replica leaves the queued job queued at its start, and then runs it.
    let next = replica(&db, "b").await;
    let done = wait_stored(&client, &queued, 60, "succeeded", |job| {
        job["record"]["state"] == "succeeded"
    })
    .await;
    assert_eq!(done["record"]["worker"], "b");
    assert_eq!(stored(&client, &running).await, stopped, "left as it was");
    next.get_ok("/v1/models/kept").await;
}

#[tokio::test]
async fn a_worker_that_cannot_reach_the_database_stops_its_job_when_its_lease_runs_out() {
    let Some(db) = ScratchDatabase::from_env("a_worker_that_cannot_reach_the_database") else {
        return;
    };
    let server = std::env::var(TEST_DATABASE_URL).expect("set");
    let name = db.name().to_owned();
    let worker = replica(&db, "a").await;
    let client = database(&db).await;
    let (id, _) = a_long_job_running(std::slice::from_ref(&worker), &client).await;
    drop(client);

    run_sql(
        &server,
        format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ),
    )
    .expect("cut the database off");
    let cut = Instant::now();
    let seen = worker.wait_for_job(&id, &["interrupted"], LEASE + 10).await;
    let took = cut.elapsed();
    eprintln!("interrupted here {took:?} after the database went away (lease {LEASE} s)");
    assert!(
        seen["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not reach the database")),
        "{seen}"
    );
    run_sql(
        &server,
        format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    )
    .expect("reconnect");

    // Back, its own reaper finds the lease expired and stores the job as interrupted.
    let client = database(&db).await;
    let stored_job = wait_stored(&client, &id, 20, "interrupted", |job| {
        job["record"]["state"] == "interrupted"
    })
    .await;
    assert!(!stored_job["history"].as_array().is_none_or(Vec::is_empty));
    assert_eq!(queue_row(&client, &id).await.0, "done");
    let dataset = model_and_dataset(&worker, "again", json!([2, 3, 1]), 4).await;
    let next = submit(&worker, "again", &dataset, 20).await;
    worker.wait_for_job(&next, &["succeeded"], 30).await;
}
