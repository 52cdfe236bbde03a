//! What was acknowledged is there after a restart, on a data directory and on PostgreSQL.

use serde_json::json;

use crate::backends::Backend;
use crate::helpers::{xor_dataset, TestApp};

#[tokio::test]
async fn datasets_models_versions_and_jobs_survive_a_restart() {
    for backend in Backend::all("survive-a-restart") {
        let on = backend.name();
        let app = TestApp::spawn_with(backend.config()).await;
        let dataset = app.dataset(xor_dataset(2)).await;
        app.model(json!({"name": "kept", "layers": [2, 4, 1], "output": "sigmoid"}))
            .await;
        let job = app
            .job(json!({"model": "kept", "dataset": dataset, "epochs": 3}))
            .await;
        app.wait_for_job(&job, &["succeeded"], 30).await;
        let before = app
            .post_ok("/v1/models/kept/predict", &json!({"inputs": [[0, 1]]}), 200)
            .await;
        drop(app);

        let app = TestApp::spawn_with(backend.config()).await;

        assert_eq!(
            app.get_ok(&format!("/v1/datasets/{dataset}")).await["rows"],
            8,
            "{on}"
        );
        let after = app
            .post_ok("/v1/models/kept/predict", &json!({"inputs": [[0, 1]]}), 200)
            .await;
        assert_eq!(
            after["outputs"], before["outputs"],
            "{on}: the same weights, bit for bit"
        );
        let restored = app.get_ok(&format!("/v1/jobs/{job}")).await;
        assert_eq!(restored["state"], "succeeded", "{on}");
        let metrics = app.get_ok(&format!("/v1/jobs/{job}/metrics")).await;
        assert_eq!(metrics["epochs"].as_array().map(Vec::len), Some(4), "{on}");
        assert_eq!(
            app.get_ok("/v1/storage/unavailable").await["total"],
            0,
            "{on}"
        );
    }
}
