//! Files whose owner is gone: the versions and jobs of a model whose record was deleted by
//! hand (or by a delete that a crash interrupted) are listed as unavailable with the reason,
//! the model's id answers so, and deleting that id removes the leftovers.

use serde_json::json;

use crate::helpers::{assert_problem, xor_dataset, TestApp};
use crate::process::temp_dir;
use mlp_lab::config::Config;

#[tokio::test]
async fn the_versions_and_jobs_of_a_model_whose_record_was_deleted_by_hand_are_listed_and_can_be_removed(
) {
    let dir = temp_dir("orphans");
    let config = Config {
        ephemeral: false,
        data_dir: dir.clone(),
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(config.clone()).await;
    let dataset = app.dataset(xor_dataset(2)).await;
    let lost = app
        .model(json!({"name": "lost", "layers": [2, 3, 1], "output": "sigmoid"}))
        .await;
    app.model(json!({"name": "kept", "layers": [2, 3, 1], "output": "sigmoid"}))
        .await;
    let mut jobs = Vec::new();
    for model in ["lost", "lost", "kept"] {
        let job = app
            .job(json!({"model": model, "dataset": dataset, "epochs": 2}))
            .await;
        app.wait_for_job(&job, &["succeeded"], 30).await;
        jobs.push(job);
    }
    drop(app);
    std::fs::remove_file(dir.join(format!("models/{lost}.json"))).expect("delete by hand");

    let app = TestApp::spawn_with(config.clone()).await;

    let listed = app.get_ok("/v1/storage/unavailable").await;
    let items = listed["items"].as_array().expect("items");
    let kinds: Vec<(&str, &str)> = items
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap_or(""),
                i["id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let (v1, v2) = (format!("{lost}/1"), format!("{lost}/2"));
    let mut expected = vec![
        ("version", v1.as_str()),
        ("version", v2.as_str()),
        ("job", jobs[0].as_str()),
        ("job", jobs[1].as_str()),
    ];
    expected.sort_unstable();
    let mut got = kinds.clone();
    got.sort_unstable();
    assert_eq!(got, expected, "{listed}");
    for item in items {
        let reason = item["reason"].as_str().expect("a reason");
        assert!(
            reason.contains(&format!("model {lost}")) && reason.contains("no record"),
            "{reason}"
        );
    }
    assert_eq!(listed["total"], 4);
    let problem = assert_problem(
        app.get(&format!("/v1/models/{lost}")).await,
        409,
        "object_unavailable",
    )
    .await;
    assert!(problem.detail.contains("no record"), "{}", problem.detail);
    assert_eq!(
        app.get_ok(&format!("/v1/jobs/{}", jobs[0])).await["state"],
        "succeeded"
    );
    let kept = app
        .post_ok("/v1/models/kept/predict", &json!({"inputs": [[0, 1]]}), 200)
        .await;
    assert_eq!(kept["version"], 1);

    let deleted = app.delete(&format!("/v1/models/{lost}")).await;

    assert_eq!(deleted.status(), 204);
    assert_eq!(app.get_ok("/v1/storage/unavailable").await["total"], 0);
    let left: Vec<_> = std::fs::read_dir(dir.join(format!("versions/{lost}")))
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert_problem(
        app.get(&format!("/v1/models/{lost}")).await,
        404,
        "not_found",
    )
    .await;
    drop(app);
    let app = TestApp::spawn_with(config).await;
    assert_eq!(app.get_ok("/v1/storage/unavailable").await["total"], 0);
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}
