//! `/v1/experiments`: a grid of cells × seeds runs as ordinary jobs on one split per seed, the
//! leaderboard is what the jobs' histories say, cancel stops every job, an experiment survives
//! a restart, and bad grids are refused naming the field and the limit with nothing created.

use std::time::{Duration, Instant};

use mlp_lab::config::Config;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, xor_dataset, TestApp};

/// 60 rows: the XOR corners, 15 times.
fn data() -> Value {
    xor_dataset(15)
}

fn experiment(dataset: &Value, grid: Value, seeds: Value, epochs: usize) -> Value {
    json!({
        "name": "lab",
        "dataset": dataset,
        "model": {"layers": [2, 6, 2], "output": "softmax"},
        "training": {"epochs": epochs, "batch_size": 8, "validation_split": 0.25,
                     "optimizer": {"kind": "adam", "learning_rate": 0.05}},
        "grid": grid,
        "seeds": seeds,
    })
}

async fn wait_finished(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let view = app.get_ok(&format!("/v1/experiments/{id}")).await;
        if view["state"] != "running" {
            return view;
        }
        assert!(Instant::now() < deadline, "not finished in time: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn val_losses(metrics: &Value) -> Vec<u64> {
    metrics["epochs"]
        .as_array()
        .expect("epochs")
        .iter()
        .map(|e| e["val_loss"].as_f64().expect("val_loss").to_bits())
        .collect()
}

fn job_of(view: &Value, cell: usize, run: usize) -> String {
    view["cells"][cell]["jobs"][run]["job"]
        .as_str()
        .expect("a job id")
        .to_owned()
}

#[tokio::test]
async fn a_grid_expands_into_labelled_cells_whose_runs_are_ordinary_jobs() {
    let app = TestApp::spawn().await;
    let dataset = json!(app.dataset(data()).await);
    let body = experiment(
        &dataset,
        json!({"hidden_layers": [[4], [4, 4]], "activations": ["tanh", {"name": "leaky_relu", "alpha": 0.1}]}),
        json!([3, 5]),
        3,
    );
    let response = app.post_json("/v1/experiments", &body).await;
    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let view: Value = response.json().await.expect("JSON");
    let id = view["id"].as_str().expect("id");
    assert_eq!(location, format!("/v1/experiments/{id}"));

    let labels: Vec<&str> = view["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| c["label"].as_str().expect("label"))
        .collect();
    assert_eq!(
        labels,
        [
            "activation=tanh, hidden_layers=[4]",
            "activation=tanh, hidden_layers=[4,4]",
            "activation=leaky_relu(alpha=0.1), hidden_layers=[4]",
            "activation=leaky_relu(alpha=0.1), hidden_layers=[4,4]",
        ],
        "activations vary slowest, whatever the order the axes were written in"
    );
    assert_eq!(
        view["cells"][2]["params"],
        json!({"activation": {"name": "leaky_relu", "alpha": 0.1}, "hidden_layers": [4]})
    );
    assert_eq!(view["progress"]["total"], 8);
    assert_eq!(view["training"]["optimizer"]["learning_rate"], 0.05);
    assert!(
        view["training"].get("seed").is_none(),
        "runs take the seeds"
    );
    let simple = id.replace('-', "");
    let short = &simple[simple.len() - 8..];
    for (i, cell) in view["cells"].as_array().expect("cells").iter().enumerate() {
        let name = format!("lab-{short}-c{i:02}");
        assert_eq!(cell["model_name"], name.as_str());
        let model = app.get_ok(&format!("/v1/models/{name}")).await;
        assert_eq!(model["id"], cell["model"]);
        let jobs = app.get_ok(&format!("/v1/jobs?model={name}")).await;
        let mut seeds: Vec<u64> = jobs["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|j| j["request"]["seed"].as_u64().expect("seed"))
            .collect();
        seeds.sort_unstable();
        assert_eq!(seeds, [3, 5], "one job per seed for {name}");
    }
    let deep = app.get_ok(&format!("/v1/models/lab-{short}-c03")).await;
    assert_eq!(deep["layers"], json!([2, 4, 4, 2]));
    assert_eq!(
        deep["activations"],
        json!([{"name": "leaky_relu", "alpha": 0.1}, {"name": "leaky_relu", "alpha": 0.1}])
    );
    let listed = app.get_ok("/v1/experiments?limit=1").await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["items"][0]["cell_count"], 4);
    let done = wait_finished(&app, id).await;
    assert_eq!(done["state"], "finished");
    assert_eq!(done["progress"]["succeeded"], 8);
    assert_eq!(done["progress"]["fraction"], 1.0);
}

#[tokio::test]
async fn the_same_seed_gives_every_cell_the_same_split_and_batch_order() {
    let app = TestApp::spawn().await;
    let dataset = json!(app.dataset(data()).await);
    // leaky_relu with alpha 0 is ReLU: the same function, derivative and default init. Same
    // seed ⇒ same init, split and batch order ⇒ bit-identical histories; another seed differs.
    let body = experiment(
        &dataset,
        json!({"activations": ["relu", {"name": "leaky_relu", "alpha": 0.0}]}),
        json!([11, 12]),
        6,
    );
    let view = app.post_ok("/v1/experiments", &body, 201).await;
    let id = view["id"].as_str().expect("id");
    let done = wait_finished(&app, id).await;
    assert_eq!(done["progress"]["succeeded"], 4);
    let metrics = |cell, run| {
        let job = job_of(&done, cell, run);
        let app = &app;
        async move { app.get_ok(&format!("/v1/jobs/{job}/metrics")).await }
    };
    let relu_11 = val_losses(&metrics(0, 0).await);
    let leaky_11 = val_losses(&metrics(1, 0).await);
    let relu_12 = val_losses(&metrics(0, 1).await);
    let leaky_12 = val_losses(&metrics(1, 1).await);
    assert_eq!(relu_11.len(), 7);
    assert_eq!(
        relu_11, leaky_11,
        "seed 11: the same split and batches in both cells"
    );
    assert_eq!(
        relu_12, leaky_12,
        "seed 12: the same split and batches in both cells"
    );
    assert_ne!(relu_11, relu_12, "another seed, another split");
}

fn close(a: &Value, b: f64) {
    let a = a.as_f64().unwrap_or_else(|| panic!("a number, got {a}"));
    assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
}

#[tokio::test]
async fn the_leaderboard_is_what_the_jobs_histories_say() {
    let app = TestApp::spawn().await;
    let dataset = json!(app.dataset(data()).await);
    let body = experiment(
        &dataset,
        json!({"activations": ["sigmoid", "relu"]}),
        json!([1, 2, 3]),
        8,
    );
    let view = app.post_ok("/v1/experiments", &body, 201).await;
    let id = view["id"].as_str().expect("id").to_owned();
    let done = wait_finished(&app, &id).await;
    let board = &done["leaderboard"];
    assert_eq!(board["sort"], "best_val_loss");
    assert_eq!(board["order"], "asc");
    let rows = board["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["best_val_loss"]["mean"].as_f64() <= rows[1]["best_val_loss"]["mean"].as_f64());
    for row in rows {
        let cell = row["cell"].as_u64().expect("cell") as usize;
        assert_eq!(row["runs"], 3);
        assert_eq!(row["succeeded"], 3);
        let mut best = Vec::new();
        for run in 0..3 {
            let job = job_of(&done, cell, run);
            let m = app.get_ok(&format!("/v1/jobs/{job}/metrics")).await;
            let epochs = m["epochs"].as_array().expect("epochs");
            let trained = &epochs[1..];
            let at_best = trained
                .iter()
                .min_by(|a, b| {
                    a["val_loss"]
                        .as_f64()
                        .expect("val")
                        .total_cmp(&b["val_loss"].as_f64().expect("val"))
                })
                .expect("epochs");
            let last = epochs.last().expect("last");
            let ratio = |e: &Value| {
                let layers = e["layers"].as_array().expect("layers");
                layers[0]["grad_norm"].as_f64().expect("first")
                    / layers[layers.len() - 1]["grad_norm"]
                        .as_f64()
                        .expect("last")
            };
            close(
                &row["best_val_loss"]["values"][run],
                at_best["val_loss"].as_f64().expect("val"),
            );
            close(
                &row["val_accuracy"]["values"][run],
                at_best["val_accuracy"].as_f64().expect("acc"),
            );
            close(
                &row["epochs_to_best"]["values"][run],
                at_best["epoch"].as_f64().expect("epoch"),
            );
            close(
                &row["final_gap"]["values"][run],
                last["generalization_gap"].as_f64().expect("gap"),
            );
            close(&row["grad_ratio_first"]["values"][run], ratio(&epochs[1]));
            close(&row["grad_ratio_final"]["values"][run], ratio(last));
            // One hidden layer: the network's fraction is that layer's.
            let hidden = &last["layers"][0];
            let (dead, saturated) = if cell == 0 {
                (Value::Null, hidden["saturated_fraction"].clone())
            } else {
                (hidden["dead_fraction"].clone(), Value::Null)
            };
            assert_eq!(row["dead_fraction"]["values"][run], dead, "cell {cell}");
            assert_eq!(
                row["saturated_fraction"]["values"][run], saturated,
                "cell {cell}"
            );
            best.push(at_best["val_loss"].as_f64().expect("val"));
        }
        let mean = best.iter().sum::<f64>() / 3.0;
        let var = best.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0;
        close(&row["best_val_loss"]["mean"], mean);
        close(&row["best_val_loss"]["std"], var.sqrt());
        assert!(row.get("val_r2").is_none(), "classification: no R²");
    }
    let c = &board["comparisons"][0];
    assert_eq!(c["best"], rows[0]["cell"]);
    assert_eq!(c["other"], rows[1]["cell"]);
    assert_eq!((c["n"].clone(), c["df"].clone()), (json!(3), json!(2)));
    assert_eq!(c["test"], "paired t-test (two-sided)");
    assert_eq!(
        c["wilcoxon"]["test"],
        "Wilcoxon signed-rank (exact, two-sided)"
    );
    let p = c["p_value"].as_f64().expect("a p-value");
    assert!((0.0..=1.0).contains(&p));

    let by_accuracy = app
        .get_ok(&format!("/v1/experiments/{id}?sort=val_accuracy"))
        .await;
    assert_eq!(by_accuracy["leaderboard"]["order"], "desc");
    let unknown = app.get(&format!("/v1/experiments/{id}?sort=vibes")).await;
    let problem = assert_problem(unknown, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "sort");
    assert!(problem.errors[0].message.contains("best_val_loss"));
}

#[tokio::test]
async fn cancel_stops_every_job_and_a_second_cancel_is_a_conflict() {
    let config = Config {
        max_running_jobs: 1,
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(config).await;
    let dataset = json!(app.dataset(data()).await);
    let body = experiment(
        &dataset,
        json!({"dropout": [0.0, 0.1]}),
        json!([1, 2]),
        50_000,
    );
    let view = app.post_ok("/v1/experiments", &body, 201).await;
    let id = view["id"].as_str().expect("id");

    let cancelled = app
        .post_ok(&format!("/v1/experiments/{id}/cancel"), &json!({}), 200)
        .await;

    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["progress"]["cancelled"], 4);
    for cell in 0..2 {
        for run in 0..2 {
            let job = app
                .get_ok(&format!("/v1/jobs/{}", job_of(&cancelled, cell, run)))
                .await;
            assert_eq!(job["state"], "cancelled");
        }
    }
    let again = app
        .post_json(&format!("/v1/experiments/{id}/cancel"), &json!({}))
        .await;
    assert_problem(again, 409, "experiment_finished").await;
    let missing = app
        .post_json(
            "/v1/experiments/0190b5a2-7c4e-7000-8000-000000000000/cancel",
            &json!({}),
        )
        .await;
    assert_problem(missing, 404, "not_found").await;
}

#[tokio::test]
async fn an_experiment_and_its_leaderboard_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("mlp-lab-exp-{}", uuid::Uuid::now_v7()));
    let config = Config {
        ephemeral: false,
        data_dir: dir.clone(),
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(config.clone()).await;
    let dataset = json!(app.dataset(data()).await);
    let body = experiment(
        &dataset,
        json!({"activations": ["tanh", "relu"]}),
        json!([4, 9]),
        4,
    );
    let view = app.post_ok("/v1/experiments", &body, 201).await;
    let id = view["id"].as_str().expect("id").to_owned();
    let before = wait_finished(&app, &id).await;
    drop(app);

    let app = TestApp::spawn_with(config).await;

    let after = app.get_ok(&format!("/v1/experiments/{id}")).await;
    assert_eq!(after, before, "the same record, jobs and leaderboard");
    assert_eq!(app.get_ok("/v1/experiments").await["total"], 1);
    let _ = std::fs::remove_dir_all(dir);
}

async fn refused(app: &TestApp, body: &Value, status: u16, code: &str) -> mlp_lab::http::Problem {
    let response = app.post_json("/v1/experiments", body).await;
    assert_problem(response, status, code).await
}

async fn nothing_created(app: &TestApp) {
    assert_eq!(app.get_ok("/v1/experiments").await["total"], 0);
    assert_eq!(app.get_ok("/v1/models").await["total"], 0);
    assert_eq!(app.get_ok("/v1/jobs").await["total"], 0);
}

#[tokio::test]
async fn bad_grids_are_refused_naming_the_field_and_nothing_is_created() {
    let app = TestApp::spawn().await;
    let dataset = json!(app.dataset(data()).await);
    let seeds = json!([1, 2, 3, 4, 5]);
    let cases = [
        (json!({}), "grid", "at least one axis"),
        (
            json!({"activations": []}),
            "grid.activations",
            "at least one value",
        ),
        (
            json!({"activations": ["relu", "swoosh"]}),
            "grid.activations[1]",
            "leaky_relu",
        ),
    ];
    for (grid, field, says) in cases {
        let body = experiment(&dataset, grid.clone(), seeds.clone(), 3);
        let problem = refused(&app, &body, 422, "validation_failed").await;
        assert_eq!(problem.errors[0].field, field, "{grid}");
        assert!(problem.errors[0].message.contains(says), "{problem:?}");
    }
    // 11 activations × 5 dropouts × 5 seeds = 275 jobs > 200.
    let eleven = json!([
        "identity",
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "prelu",
        "elu",
        "selu",
        "gelu",
        "silu",
        "softplus"
    ]);
    let body = experiment(
        &dataset,
        json!({"activations": eleven, "dropout": [0.0, 0.1, 0.2, 0.3, 0.4]}),
        seeds.clone(),
        3,
    );
    let problem = refused(&app, &body, 422, "limit_exceeded").await;
    assert!(
        problem.detail.contains("--max-experiment-jobs"),
        "{problem:?}"
    );
    assert!(problem.detail.contains("275"), "{problem:?}");

    let mut body = experiment(&dataset, json!({"inits": ["he_normal"]}), seeds.clone(), 3);
    body["training"]["validation_split"] = json!(0.0);
    let problem = refused(&app, &body, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "training.validation_split");

    let mut body = experiment(&dataset, json!({"inits": ["he_normal"]}), seeds.clone(), 3);
    body["training"]["seed"] = json!(7);
    let problem = refused(&app, &body, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "training.seed");

    let body = experiment(&dataset, json!({"inits": ["he_normal"]}), json!([1, 1]), 3);
    let problem = refused(&app, &body, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "seeds[1]");

    let body = experiment(
        &json!("0190b5a2-7c4e-7000-8000-000000000000"),
        json!({"inits": ["he_normal"]}),
        seeds.clone(),
        3,
    );
    refused(&app, &body, 404, "not_found").await;

    // A 3-input model on 2-feature data: found by the first job's checks, after the models
    // were made; they are removed again.
    let mut body = experiment(
        &dataset,
        json!({"inits": ["he_normal", "xavier_uniform"]}),
        seeds,
        3,
    );
    body["model"]["layers"] = json!([3, 4, 2]);
    let problem = refused(&app, &body, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "dataset");
    nothing_created(&app).await;
}

#[tokio::test]
async fn a_queue_without_room_for_every_job_is_429_and_nothing_is_created() {
    let config = Config {
        max_queued_jobs: 4,
        max_running_jobs: 1,
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(config).await;
    let dataset = json!(app.dataset(data()).await);
    // One long job runs and one waits: the queue of 4 has room for 3.
    app.model(json!({"name": "busy", "layers": [2, 4, 2], "output": "softmax"}))
        .await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        busy.push(
            app.job(
                json!({"model": "busy", "dataset": dataset, "epochs": 100_000, "batch_size": 1}),
            )
            .await,
        );
    }
    let body = experiment(
        &dataset,
        json!({"batch_norm": [false, true]}),
        json!([1, 2]),
        3,
    );

    let response = app.post_json("/v1/experiments", &body).await;

    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 429, "queue_full").await;
    assert_eq!(app.get_ok("/v1/experiments").await["total"], 0);
    assert_eq!(app.get_ok("/v1/models").await["total"], 1, "only `busy`");

    // 5 jobs can never fit a queue of 4, however long the client waits: 422, not 429.
    let body = experiment(
        &dataset,
        json!({"inits": ["he_normal"]}),
        json!([1, 2, 3, 4, 5]),
        3,
    );
    let problem = refused(&app, &body, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "seeds");
    assert!(
        problem.detail.contains("--max-queued-jobs 4"),
        "{problem:?}"
    );
    for job in busy {
        app.post_ok(&format!("/v1/jobs/{job}/cancel"), &json!({}), 200)
            .await;
    }
}

#[tokio::test]
async fn oversized_layer_lists_are_refused_before_any_cell_is_built() {
    let app = TestApp::spawn().await;
    let dataset = json!(app.dataset(data()).await);
    let seeds = json!([1]);
    // 100,000 layers in the base model, to be copied into every one of 200 cells.
    let mut body = experiment(
        &dataset,
        json!({"dropout": vec![0.0; 200]}),
        seeds.clone(),
        3,
    );
    body["model"]["layers"] = json!(vec![2; 100_000]);
    let problem = refused(&app, &body, 422, "limit_exceeded").await;
    assert_eq!(problem.errors[0].field, "model.layers", "{problem:?}");
    assert!(problem.detail.contains("--max-layers"), "{problem:?}");
    let body = experiment(
        &dataset,
        json!({"hidden_layers": [[4], vec![4; 100_000]]}),
        seeds,
        3,
    );
    let problem = refused(&app, &body, 422, "limit_exceeded").await;
    assert_eq!(
        problem.errors[0].field, "grid.hidden_layers[1]",
        "{problem:?}"
    );
    nothing_created(&app).await;
}

#[tokio::test]
async fn a_refused_experiment_leaves_no_inline_dataset_and_names_do_not_collide() {
    let app = TestApp::spawn().await;
    // A 3-input model on an inline 2-feature dataset: refused after the dataset was read.
    let mut body = experiment(&data(), json!({"inits": ["he_normal"]}), json!([1]), 3);
    body["model"]["layers"] = json!([3, 4, 2]);
    let problem = refused(&app, &body, 422, "validation_failed").await;
    assert_eq!(problem.errors[0].field, "dataset");
    assert_eq!(app.get_ok("/v1/datasets").await["total"], 0);
    nothing_created(&app).await;

    // Two experiments of the same name within a second: distinct model names.
    let dataset = json!(app.dataset(data()).await);
    let body = experiment(&dataset, json!({"inits": ["he_normal"]}), json!([1]), 2);
    let first = app.post_ok("/v1/experiments", &body, 201).await;
    let second = app.post_ok("/v1/experiments", &body, 201).await;
    assert_ne!(
        first["cells"][0]["model_name"],
        second["cells"][0]["model_name"]
    );
    wait_finished(&app, first["id"].as_str().expect("id")).await;
    wait_finished(&app, second["id"].as_str().expect("id")).await;
}

/// The text nodes of a 200 `image/svg+xml` answer, which must be well-formed XML.
async fn svg_text(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let body = response.text().await.expect("body");
    let doc = roxmltree::Document::parse(&body).unwrap_or_else(|e| panic!("not XML: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn experiment_plots_draw_a_curve_or_bar_per_cell_and_refuse_what_they_cannot_draw() {
    let app = TestApp::spawn().await;
    let dataset = json!(app.dataset(data()).await);
    let body = experiment(
        &dataset,
        json!({"activations": ["tanh", "relu"], "hidden_layers": [[4], [4, 4]]}),
        json!([1, 2]),
        4,
    );
    let view = app.post_ok("/v1/experiments", &body, 201).await;
    let id = view["id"].as_str().expect("id").to_owned();
    let view = wait_finished(&app, &id).await;
    assert_eq!(view["progress"]["succeeded"], 8, "{view}");
    let labels: Vec<String> = view["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| c["label"].as_str().expect("label").to_owned())
        .collect();

    for query in [
        "kind=curves",
        "kind=curves&metric=train_loss",
        "kind=curves&metric=grad_ratio",
        "kind=leaderboard",
        "kind=leaderboard&metric=dead_fraction",
    ] {
        let text = svg_text(
            app.get(&format!("/v1/experiments/{id}/plot.svg?{query}"))
                .await,
        )
        .await;
        assert!(text.contains("lab"), "{query}: no title in {text}");
        for label in &labels {
            // Legend labels may wrap; the first word of each cell's label is on one line.
            let head = label.split(',').next().expect("a label");
            assert!(text.contains(head), "{query}: no {head:?} in {text}");
        }
    }
    let curves = svg_text(
        app.get(&format!("/v1/experiments/{id}/plot.svg?kind=curves"))
            .await,
    )
    .await;
    assert!(curves.contains("(n=2)"), "both seeds count: {curves}");
    let bars = svg_text(
        app.get(&format!("/v1/experiments/{id}/plot.svg?kind=leaderboard"))
            .await,
    )
    .await;
    assert!(bars.contains("best_val_loss"), "{bars}");

    for (query, field) in [
        ("kind=curves&metric=best_val_loss", "metric"),
        ("kind=leaderboard&metric=val_loss", "metric"),
        ("kind=histogram", "kind"),
        ("", "kind"),
    ] {
        let problem = assert_problem(
            app.get(&format!("/v1/experiments/{id}/plot.svg?{query}"))
                .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem.errors[0].field, field, "{query}");
    }
    assert_problem(
        app.get("/v1/experiments/0190b5a2-7c4e-7000-8000-000000000000/plot.svg?kind=curves")
            .await,
        404,
        "not_found",
    )
    .await;
}
