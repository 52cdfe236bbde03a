//! The PostgreSQL backend from the outside: the binary on `--database-url`, `--migrate-only`,
//! `mlp-lab copy` between a data directory and a database, and a database that goes away and
//! comes back. Each test makes its own database on `MLP_LAB_TEST_DATABASE_URL`'s server and
//! skips, saying so, when the variable is unset.

use mlp_lab::config::{Config, DatabaseUrl};
use mlp_lab::store::postgres::scratch::{run_sql, ScratchDatabase, TEST_DATABASE_URL};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, xor_dataset, TestApp};
use crate::process::{run_to_end, temp_dir, ServerProcess};

fn copy_args(from: &str, to: &str) -> Vec<String> {
    ["copy", "--from", from, "--to", to]
        .map(str::to_owned)
        .to_vec()
}

/// Trains `kept` on `server` and returns its predictions for a few inputs and its job's id.
async fn train(server: &ServerProcess) -> (Value, String) {
    let dataset = server.post_ok("/v1/datasets", &xor_dataset(4), 201).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let spec =
        json!({"name": "kept", "layers": [2, 5, 1], "activation": "tanh", "output": "sigmoid"});
    server.post_ok("/v1/models", &spec, 201).await;
    let body = json!({"model": "kept", "dataset": dataset, "epochs": 30, "seed": 7});
    let job = server.post_ok("/v1/jobs", &body, 202).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    server.wait_for_job(&job, &["succeeded"], 30).await;
    (predict(server).await, job)
}

async fn predict(server: &ServerProcess) -> Value {
    let inputs = json!({"inputs": [[0, 0], [0, 1], [1, 0], [1, 1], [0.3, -2.5]]});
    server
        .post_ok("/v1/models/kept/predict", &inputs, 200)
        .await["outputs"]
        .clone()
}

#[tokio::test]
async fn a_data_directory_copied_into_a_database_and_back_serves_the_same_predictions() {
    let Some(db) = ScratchDatabase::from_env("a_data_directory_copied_into_a_database") else {
        return;
    };
    let dir = temp_dir("copy-from");
    let server = ServerProcess::start_ready(&dir, &[]).await;
    let (before, job) = train(&server).await;
    let history = server.all_epochs(&job).await;
    assert!(server.terminate().await.success());

    let copied = run_to_end(copy_args(&dir.display().to_string(), db.url())).await;
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stdout)
    );
    let again = run_to_end(copy_args(&dir.display().to_string(), db.url())).await;
    assert!(!again.status.success(), "a copy into a full database");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("objects already; copy into an empty"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    let on_postgres =
        ServerProcess::start_ready(&temp_dir("unused"), &["--database-url", db.url()]).await;
    assert_eq!(
        predict(&on_postgres).await,
        before,
        "the same weights, bit for bit"
    );
    assert_eq!(
        on_postgres.get_ok(&format!("/v1/jobs/{job}")).await["state"],
        "succeeded"
    );
    assert_eq!(on_postgres.all_epochs(&job).await, history);
    assert!(on_postgres.terminate().await.success());

    let back = temp_dir("copy-back");
    let copied = run_to_end(copy_args(db.url(), &back.display().to_string())).await;
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stdout)
    );
    let on_disk = ServerProcess::start_ready(&back, &[]).await;
    assert_eq!(predict(&on_disk).await, before, "and back again");
    drop(on_disk);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(back);
}

#[tokio::test]
async fn migrate_only_applies_the_schema_and_exits_and_a_bad_database_stops_the_start() {
    let Some(db) = ScratchDatabase::from_env("migrate_only_applies_the_schema_and_exits") else {
        return;
    };

    let migrated = run_to_end(vec![
        "--migrate-only".into(),
        "--database-url".into(),
        db.url().into(),
    ])
    .await;
    let again = run_to_end(vec![
        "--migrate-only".into(),
        "--database-url".into(),
        db.url().into(),
    ])
    .await;

    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stdout)
    );
    assert!(String::from_utf8_lossy(&migrated.stdout).contains("applied a database migration"));
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stdout).contains("applied a database migration"));

    // The right server, a wrong password: refused at once, naming the database, not the password.
    let server = std::env::var(TEST_DATABASE_URL).expect("set");
    let wrong = format!(
        "postgres://mlp_lab:not-the-password@{}",
        server.rsplit_once('@').expect("a URL with a user").1
    );
    let refused = run_to_end(vec!["--database-url".into(), wrong]).await;
    let log = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "{log}");
    assert!(
        log.contains("cannot connect to the database mlp_lab@"),
        "{log}"
    );
    assert!(!log.contains("not-the-password"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_unreachable_writes_are_503_predictions_go_on_and_it_recovers() {
    let Some(db) = ScratchDatabase::from_env("while_the_database_is_unreachable") else {
        return;
    };
    let Ok(url) = DatabaseUrl::unchecked(db.url());
    let config = Config {
        ephemeral: false,
        database_url: Some(url),
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(config).await;
    let dataset = app.dataset(xor_dataset(2)).await;
    app.model(json!({"name": "served", "layers": [2, 3, 1], "output": "sigmoid"}))
        .await;
    let job = app
        .job(json!({"model": "served", "dataset": dataset, "epochs": 3}))
        .await;
    app.wait_for_job(&job, &["succeeded"], 30).await;
    let server = std::env::var(TEST_DATABASE_URL).expect("set");
    let name = db.name();

    run_sql(
        &server,
        format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ),
    )
    .expect("cut the database off");

    let refused = app
        .post_json(
            "/v1/models",
            &json!({"name": "later", "layers": [2, 1], "output": "sigmoid"}),
        )
        .await;
    let retry_after = refused.headers().get("retry-after").cloned();
    assert_problem(refused, 503, "store_unavailable").await;
    assert_eq!(
        retry_after.as_ref().and_then(|v| v.to_str().ok()),
        Some("5")
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // the probe's cache
    assert_eq!(app.get("/readyz").await.status(), 503);
    app.post_ok(
        "/v1/models/served/predict",
        &json!({"inputs": [[0, 1]]}),
        200,
    )
    .await;

    run_sql(
        &server,
        format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    )
    .expect("reconnect");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    assert_eq!(
        app.get("/readyz").await.status(),
        200,
        "ready again, without a restart"
    );
    app.post_ok(
        "/v1/models",
        &json!({"name": "later", "layers": [2, 1], "output": "sigmoid"}),
        201,
    )
    .await;
    drop(app);
}

/// A PostgreSQL server of this test's own (`scripts/postgres.sh start`), so that it can be
/// stopped and started without touching the other tests' server; stopped and removed when
/// dropped.
struct OwnServer {
    url: String,
    dir: String,
}

impl OwnServer {
    fn script(args: &[&str]) -> std::process::Output {
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh"))
            .args(args)
            .output()
            .expect("run scripts/postgres.sh")
    }

    fn start() -> Self {
        let out = Self::script(&["start"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("no {name} in {text}"))
                .to_owned()
        };
        Self {
            url: var("MLP_LAB_TEST_DATABASE_URL"),
            dir: var("MLP_LAB_TEST_PG_DIR"),
        }
    }

    fn down(&self) {
        assert!(Self::script(&["down", &self.dir]).status.success(), "stop");
    }

    fn up(&self) {
        assert!(
            Self::script(&["up", &self.dir]).status.success(),
            "start again"
        );
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        Self::script(&["stop", &self.dir]);
    }
}

/// Polls `GET path` on `server` until it answers `status`; panics after `secs`.
async fn until_status(server: &ServerProcess, path: &str, status: u16, secs: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while server.get(path).await.status().as_u16() != status {
        assert!(
            std::time::Instant::now() < deadline,
            "GET {path} did not answer {status} within {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restarted_mid_training_loses_nothing_and_two_replicas_recover_by_themselves() {
    // Needs PostgreSQL's binaries, which the variable promises.
    if ScratchDatabase::from_env("a_database_restarted_mid_training").is_none() {
        return;
    }
    let own = OwnServer::start();
    let db = ScratchDatabase::create(&own.url).expect("a database on the own server");
    let args = ["--database-url", db.url()];
    let (a, b) = (
        ServerProcess::start_ready(&temp_dir("restart-a"), &args).await,
        ServerProcess::start_ready(&temp_dir("restart-b"), &args).await,
    );
    let (before, _) = train(&a).await;
    let dataset = a.post_ok("/v1/datasets", &xor_dataset(100), 201).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let body = json!({"model": "kept", "dataset": dataset, "epochs": 20000, "batch_size": 4});
    let job = a.post_ok("/v1/jobs", &body, 202).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    a.wait_for_job(&job, &["running"], 30).await;

    own.down();

    let write = b
        .client
        .post(b.url("/v1/models"))
        .json(&json!({"name": "during", "layers": [2, 1], "output": "sigmoid"}))
        .send()
        .await
        .expect("request sent");
    assert_problem(write, 503, "store_unavailable").await;
    until_status(&a, "/readyz", 503, 5).await;
    until_status(&b, "/readyz", 503, 5).await;
    assert_eq!(predict(&b).await, before, "served from memory meanwhile");
    assert_eq!(
        a.get_ok(&format!("/v1/jobs/{job}")).await["state"],
        "running",
        "the outage came while the job trained"
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    own.up();

    until_status(&a, "/readyz", 200, 20).await;
    until_status(&b, "/readyz", 200, 20).await;
    let done = a.wait_for_job(&job, &["succeeded"], 300).await;
    assert_eq!(done["result"]["version"], 2, "{done}");
    // B follows again: the job's end and its version, and B's own writes are taken.
    let seen = b.wait_for_job(&job, &["succeeded"], 15).await;
    assert_eq!(seen["result"], done["result"]);
    assert_eq!(b.all_epochs(&job).await.len(), 20001, "the whole history");
    until_status(&b, "/v1/models/kept/versions/2", 200, 15).await;
    b.post_ok(
        "/v1/models",
        &json!({"name": "after", "layers": [2, 1], "output": "sigmoid"}),
        201,
    )
    .await;
    until_status(&a, "/v1/models/after", 200, 5).await;
    assert_eq!(predict(&a).await, predict(&b).await);
    assert!(a.terminate().await.success());
    assert!(b.terminate().await.success());
}
