//! Damaged files in the data directory: each makes its object unavailable, with the reason,
//! and the server starts, is ready, and serves everything else. Files are never deleted.

use std::path::{Path, PathBuf};

use mlp_lab::config::{ByteSize, Config};
use mlp_lab::store::envelope;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, xor_dataset, TestApp};
use crate::process::temp_dir;

/// What [`seed`] stored.
struct Seeded {
    dir: PathBuf,
    config: Config,
    /// A small and a large dataset.
    small: String,
    large: String,
    /// Model `m` with versions 1 and 2, and model `other` with version 1.
    m: String,
    other: String,
    /// The job that made `m` version 1.
    job: String,
}

impl Drop for Seeded {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Seeded {
    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    fn version_file(&self, v: u32, ext: &str) -> PathBuf {
        self.path(&format!("versions/{}/{v:08}.{ext}", self.m))
    }
}

async fn seed() -> Seeded {
    let dir = temp_dir("corrupt");
    let config = Config {
        ephemeral: false,
        data_dir: dir.clone(),
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(config.clone()).await;
    let small = app.dataset(xor_dataset(2)).await;
    let large = app.dataset(xor_dataset(300)).await;
    let m = app
        .model(json!({"name": "m", "layers": [2, 3, 1], "output": "sigmoid"}))
        .await;
    let other = app
        .model(json!({"name": "other", "layers": [2, 3, 1], "output": "sigmoid"}))
        .await;
    let mut jobs = Vec::new();
    for model in ["m", "m", "other"] {
        let job = app
            .job(json!({"model": model, "dataset": small, "epochs": 3}))
            .await;
        app.wait_for_job(&job, &["succeeded"], 30).await;
        jobs.push(job);
    }
    Seeded {
        dir,
        config,
        small,
        large,
        m,
        other,
        job: jobs.swap_remove(0),
    }
}

/// Starts on the damaged directory and checks that it is ready and still serves what was
/// not damaged.
async fn restart(config: Config) -> TestApp {
    let app = TestApp::spawn_with(config).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    app
}

/// The one unavailable object, asserting its kind and id and that the reason contains
/// `reason`.
async fn the_unavailable(app: &TestApp, kind: &str, id: &str, reason: &str) -> Value {
    let listed = app.get_ok("/v1/storage/unavailable").await;
    assert_eq!(listed["total"], 1, "{listed}");
    let item = listed["items"][0].clone();
    assert_eq!(item["kind"], kind, "{item}");
    assert_eq!(item["id"], id, "{item}");
    let text = item["reason"].as_str().expect("a reason");
    assert!(text.contains(reason), "`{text}` does not say `{reason}`");
    item
}

async fn predicts(app: &TestApp, model: &str, version: Option<u32>) -> reqwest::Response {
    let mut body = json!({"inputs": [[0, 1]]});
    if let Some(v) = version {
        body["version"] = json!(v);
    }
    app.post_json(&format!("/v1/models/{model}/predict"), &body)
        .await
}

fn rewrite(path: &Path, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).expect("read");
    std::fs::write(path, edit(text)).expect("write");
}

#[tokio::test]
async fn a_truncated_dataset_record_is_unavailable_and_can_be_deleted() {
    let seeded = seed().await;
    let file = seeded.path(&format!("datasets/{}.json", seeded.large));
    let bytes = std::fs::read(&file).expect("read");
    std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("truncate");

    let app = restart(seeded.config.clone()).await;

    the_unavailable(&app, "dataset", &seeded.large, "truncated").await;
    let problem = assert_problem(
        app.get(&format!("/v1/datasets/{}", seeded.large)).await,
        409,
        "object_unavailable",
    )
    .await;
    assert!(problem.detail.contains("truncated"), "{}", problem.detail);
    let job = app
        .post_json("/v1/jobs", &json!({"model": "m", "dataset": seeded.large}))
        .await;
    assert_problem(job, 409, "object_unavailable").await;
    app.get_ok(&format!("/v1/datasets/{}", seeded.small)).await;
    assert_eq!(app.get_ok("/v1/datasets").await["total"], 1);
    assert_eq!(predicts(&app, "m", None).await.status(), 200);
    assert_eq!(
        std::fs::read(&file).expect("kept").len(),
        bytes.len() / 2,
        "left in place"
    );

    let deleted = app.delete(&format!("/v1/datasets/{}", seeded.large)).await;

    assert_eq!(deleted.status(), 204);
    assert!(!file.exists());
    assert_eq!(app.get_ok("/v1/storage/unavailable").await["total"], 0);
}

#[tokio::test]
async fn a_flipped_byte_that_keeps_a_model_record_valid_json_fails_its_checksum() {
    let seeded = seed().await;
    let file = seeded.path(&format!("models/{}.json", seeded.other));
    rewrite(&file, |t| {
        t.replace(r#""name":"other""#, r#""name":"othes""#)
    });

    let app = restart(seeded.config.clone()).await;

    the_unavailable(&app, "model", &seeded.other, "checksum mismatch").await;
    let problem = assert_problem(
        app.get(&format!("/v1/models/{}", seeded.other)).await,
        409,
        "object_unavailable",
    )
    .await;
    assert!(
        problem.detail.contains("checksum mismatch"),
        "{}",
        problem.detail
    );
    assert_problem(app.get("/v1/models/othes").await, 404, "not_found").await;
    assert_eq!(app.get_ok("/v1/models").await["total"], 1);
    assert_eq!(predicts(&app, "m", None).await.status(), 200);

    let deleted = app.delete(&format!("/v1/models/{}", seeded.other)).await;

    assert_eq!(deleted.status(), 204);
    assert!(!file.exists());
    assert!(!seeded
        .path(&format!("versions/{}", seeded.other))
        .join("00000001.json")
        .exists());
    assert_eq!(app.get_ok("/v1/storage/unavailable").await["total"], 0);
}

#[tokio::test]
async fn a_flipped_byte_in_weights_makes_that_version_unavailable_and_the_latest_good_one_serves() {
    let seeded = seed().await;
    let file = seeded.version_file(2, "safetensors");
    let mut bytes = std::fs::read(&file).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&file, &bytes).expect("flip");

    let app = restart(seeded.config.clone()).await;

    the_unavailable(
        &app,
        "version",
        &format!("{}/2", seeded.m),
        "weights checksum mismatch",
    )
    .await;
    let versions = app.get_ok("/v1/models/m/versions").await["versions"].clone();
    assert_eq!(versions[0]["status"], "available");
    assert_eq!(versions[1]["status"], "unavailable");
    assert_eq!(versions[1]["version"], 2);
    assert!(versions[1]["reason"]
        .as_str()
        .expect("reason")
        .contains("weights checksum mismatch"));
    assert_eq!(versions[1]["epochs_run"], 3, "its record is still shown");
    let shown = app.get_ok("/v1/models/m/versions/2").await;
    assert_eq!(shown["status"], "unavailable");
    let problem = assert_problem(
        predicts(&app, "m", Some(2)).await,
        409,
        "object_unavailable",
    )
    .await;
    assert!(
        problem.detail.contains("weights checksum mismatch"),
        "{}",
        problem.detail
    );
    let latest: Value = predicts(&app, "m", None).await.json().await.expect("JSON");
    assert_eq!(latest["version"], 1, "the latest version that serves");
    // The Open Inference Protocol says the same: version 2 is not ready, the model is.
    let ready = app
        .client
        .get(app.url("/v2/models/m/versions/2/ready"))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 400);
    let error: Value = ready.json().await.expect("JSON");
    assert!(
        error["error"]
            .as_str()
            .expect("an error")
            .contains("weights checksum mismatch"),
        "{error}"
    );
    let ready = app
        .client
        .get(app.url("/v2/models/m/ready"))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 200);

    let job = app
        .job(json!({"model": "m", "dataset": seeded.small, "epochs": 2}))
        .await;
    let done = app.wait_for_job(&job, &["succeeded"], 30).await;

    assert_eq!(done["result"]["version"], 3, "the number 2 stays taken");
    assert_eq!(std::fs::read(&file).expect("kept"), bytes, "left in place");
}

/// Sets the header length of a safetensors file and re-seals its version record with the
/// new hash, so that the parser (not the checksum) meets the absurd length.
fn set_header_length(seeded: &Seeded, v: u32, length: impl FnOnce(u64) -> u64) {
    let weights = seeded.version_file(v, "safetensors");
    let mut bytes = std::fs::read(&weights).expect("read");
    let new = length(bytes.len() as u64);
    bytes[..8].copy_from_slice(&new.to_le_bytes());
    std::fs::write(&weights, &bytes).expect("write");
    let record = seeded.version_file(v, "json");
    let text = std::fs::read(&record).expect("read");
    let mut body: Value = envelope::open("version", &text).expect("a good record");
    body["weights_sha256"] = json!(envelope::sha256_hex(&bytes));
    std::fs::write(&record, envelope::seal("version", &body).expect("seal")).expect("write");
}

#[tokio::test]
async fn safetensors_with_an_absurd_header_length_are_unavailable_not_a_crash() {
    let seeded = seed().await;
    set_header_length(&seeded, 1, |_| u64::MAX);
    set_header_length(&seeded, 2, |len| len + 100);

    let app = restart(seeded.config.clone()).await;

    let listed = app.get_ok("/v1/storage/unavailable").await;
    assert_eq!(listed["total"], 2, "{listed}");
    for item in listed["items"].as_array().expect("items") {
        assert_eq!(item["kind"], "version");
        let reason = item["reason"].as_str().expect("reason");
        assert!(
            reason.contains("weights unreadable") && reason.contains("header"),
            "{reason}"
        );
    }
    assert_problem(predicts(&app, "m", None).await, 409, "object_unavailable").await;
    assert_eq!(predicts(&app, "other", None).await.status(), 200);
}

#[tokio::test]
async fn an_unknown_format_version_is_reported_as_such() {
    let seeded = seed().await;
    let file = seeded.path(&format!("jobs/{}.json", seeded.job));
    rewrite(&file, |t| t.replacen("mlp-lab.job.v1", "mlp-lab.job.v2", 1));

    let app = restart(seeded.config.clone()).await;

    the_unavailable(
        &app,
        "job",
        &seeded.job,
        "unknown format version `mlp-lab.job.v2`",
    )
    .await;
    let problem = assert_problem(
        app.get(&format!("/v1/jobs/{}", seeded.job)).await,
        409,
        "object_unavailable",
    )
    .await;
    assert!(
        problem.detail.contains("mlp-lab.job.v2"),
        "{}",
        problem.detail
    );
    let retry = app
        .post_json(&format!("/v1/jobs/{}/retry", seeded.job), &json!({}))
        .await;
    assert_problem(retry, 409, "object_unavailable").await;
    assert_eq!(app.get_ok("/v1/jobs").await["total"], 2);
    assert_eq!(
        predicts(&app, "m", Some(1)).await.status(),
        200,
        "its version serves"
    );
}

#[tokio::test]
async fn a_file_over_the_size_limit_is_unavailable_without_being_read() {
    let seeded = seed().await;
    let large = std::fs::metadata(seeded.path(&format!("datasets/{}.json", seeded.large)))
        .expect("stat")
        .len();
    let config = Config {
        max_stored_file_bytes: ByteSize(large - 1),
        ..seeded.config.clone()
    };

    let app = restart(config).await;

    let item = the_unavailable(&app, "dataset", &seeded.large, "oversized").await;
    let reason = item["reason"].as_str().expect("reason");
    assert!(reason.contains(&format!("{large} bytes")), "{reason}");
    assert!(reason.contains("--max-stored-file-bytes"), "{reason}");
    app.get_ok(&format!("/v1/datasets/{}", seeded.small)).await;
    assert_eq!(predicts(&app, "m", None).await.status(), 200);
}

#[tokio::test]
async fn a_versions_directory_that_cannot_be_listed_makes_only_its_model_unavailable() {
    let seeded = seed().await;
    // A regular file where the directory was: listing it fails (ENOTDIR), even as root.
    let dir = seeded.path(&format!("versions/{}", seeded.m));
    std::fs::remove_dir_all(&dir).expect("remove the versions");
    std::fs::write(&dir, b"not a directory").expect("write");

    let app = restart(seeded.config.clone()).await;

    the_unavailable(&app, "model", &seeded.m, "versions cannot be listed").await;
    assert_problem(
        app.get(&format!("/v1/models/{}", seeded.m)).await,
        409,
        "object_unavailable",
    )
    .await;
    assert_eq!(app.get_ok("/v1/models").await["total"], 1);
    assert_eq!(predicts(&app, "other", None).await.status(), 200);
    assert_eq!(
        app.get_ok(&format!("/v1/datasets/{}", seeded.small)).await["id"],
        seeded.small.as_str()
    );
}

#[tokio::test]
async fn missing_weights_make_a_version_unavailable() {
    let seeded = seed().await;
    std::fs::remove_file(seeded.version_file(1, "safetensors")).expect("remove");

    let app = restart(seeded.config.clone()).await;

    the_unavailable(
        &app,
        "version",
        &format!("{}/1", seeded.m),
        "weights file is missing",
    )
    .await;
    assert_eq!(predicts(&app, "m", Some(2)).await.status(), 200);
}

#[tokio::test]
async fn a_job_written_as_stopped_although_its_version_was_stored_loads_as_succeeded() {
    // What a shutdown or a cancel racing the version's write could leave before a job
    // storing its version was left to finish: the version is stored, the job's record says
    // it stopped. The version is the truth.
    let seeded = seed().await;
    let file = seeded.path(&format!("jobs/{}.json", seeded.job));
    let text = std::fs::read(&file).expect("read");
    let mut body: Value = envelope::open("job", &text).expect("a good record");
    assert_eq!(body["record"]["state"], "succeeded");
    body["record"]["state"] = json!("interrupted");
    body["record"]["result"] = Value::Null;
    body["record"]["error"] = json!({"message": "the server shut down", "epoch": 3, "hint": null});
    std::fs::write(&file, envelope::seal("job", &body).expect("seal")).expect("write");

    let app = restart(seeded.config.clone()).await;

    let job = app.get_ok(&format!("/v1/jobs/{}", seeded.job)).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["version"], 1, "{job}");
    assert!(job["error"].is_null(), "{job}");
    let retry = app
        .post_json(&format!("/v1/jobs/{}/retry", seeded.job), &json!({}))
        .await;
    assert_problem(retry, 409, "job_succeeded").await;
    let stored: Value = envelope::open("job", &std::fs::read(&file).expect("read")).expect("good");
    assert_eq!(stored["record"]["state"], "succeeded", "written back");
}
