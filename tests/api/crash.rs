//! The real binary killed with `kill -9` while jobs train and versions are written, over and
//! over on one data directory: whatever was acknowledged survives and loads.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::xor_dataset;
use crate::process::{temp_dir, temporary_files, ServerProcess};

/// What the server answered with 2xx before it was killed.
#[derive(Debug, Default)]
struct Acknowledged {
    datasets: Vec<String>,
    models: Vec<String>,
    jobs: Vec<String>,
    /// Jobs seen `succeeded`, with the version they reported.
    succeeded: BTreeMap<String, u64>,
}

/// xorshift64*: the kill schedule is seeded, so a failing run can be repeated.
struct Schedule(u64);

impl Schedule {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Submits tiny jobs and polls them until the server goes away, recording each 2xx answer;
/// worker 0 also creates models and datasets now and then, so their writes are in flight
/// at the kill as well.
async fn worker(
    base: String,
    n: usize,
    seed: u64,
    dataset: String,
    acked: Arc<Mutex<Acknowledged>>,
) {
    let client = crate::helpers::client();
    let mut rng = Schedule(seed | 1);
    for round in 0usize.. {
        if n == 0 && round % 4 == 3 {
            let name = format!("m-{seed}-{round}");
            let body = json!({"name": name, "layers": [2, 3, 1], "output": "sigmoid"});
            let Ok(r) = client
                .post(format!("{base}/v1/models"))
                .json(&body)
                .send()
                .await
            else {
                return;
            };
            assert!(r.status() == 201, "create model: {}", r.status());
            if r.json::<Value>().await.is_ok() {
                acked.lock().expect("lock").models.push(name);
            }
            let Ok(r) = client
                .post(format!("{base}/v1/datasets"))
                .json(&xor_dataset(2))
                .send()
                .await
            else {
                return;
            };
            assert!(r.status() == 201, "create dataset: {}", r.status());
            if let Ok(created) = r.json::<Value>().await {
                let id = created["id"].as_str().expect("id").to_owned();
                acked.lock().expect("lock").datasets.push(id);
            }
        }
        let model = if rng.below(2) == 0 { "a" } else { "b" };
        let body = json!({"model": model, "dataset": dataset, "epochs": 2 + rng.below(40),
                          "batch_size": 4, "seed": rng.below(1000)});
        let Ok(r) = client
            .post(format!("{base}/v1/jobs"))
            .json(&body)
            .send()
            .await
        else {
            return;
        };
        assert!(r.status() == 202, "create job: {}", r.status());
        let Ok(job) = r.json::<Value>().await else {
            return;
        };
        let id = job["id"].as_str().expect("id").to_owned();
        acked.lock().expect("lock").jobs.push(id.clone());
        loop {
            let Ok(r) = client.get(format!("{base}/v1/jobs/{id}")).send().await else {
                return;
            };
            assert!(r.status() == 200, "get job: {}", r.status());
            let Ok(job) = r.json::<Value>().await else {
                return;
            };
            match job["state"].as_str() {
                Some("succeeded") => {
                    let v = job["result"]["version"].as_u64().expect("a version");
                    acked.lock().expect("lock").succeeded.insert(id, v);
                    break;
                }
                Some("queued" | "running") => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                other => panic!("job {id} ended {other:?}: {job}"),
            }
        }
    }
}

/// Everything acknowledged is there and loads; no job is left queued or running; no
/// temporary file is left; versions and job results agree.
async fn check(server: &ServerProcess, acked: &Acknowledged, dir: &Path) {
    assert_eq!(temporary_files(dir), Vec::<std::path::PathBuf>::new());
    let unavailable = server.get_ok("/v1/storage/unavailable").await;
    assert_eq!(unavailable["total"], 0, "{unavailable}");
    for d in &acked.datasets {
        server.get_ok(&format!("/v1/datasets/{d}")).await;
    }
    let jobs = server.get_ok("/v1/jobs?limit=1000").await;
    let jobs: BTreeMap<String, Value> = jobs["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|j| (j["id"].as_str().expect("id").to_owned(), j.clone()))
        .collect();
    for job in jobs.values() {
        let state = job["state"].as_str().expect("state");
        assert!(!["queued", "running"].contains(&state), "stuck: {job}");
    }
    for id in &acked.jobs {
        assert!(jobs.contains_key(id), "acknowledged job {id} is lost");
    }
    for (id, version) in &acked.succeeded {
        assert_eq!(jobs[id]["state"], "succeeded", "{}", jobs[id]);
        assert_eq!(jobs[id]["result"]["version"], *version);
    }
    for m in &acked.models {
        let model = server.get_ok(&format!("/v1/models/{m}")).await;
        for v in model["versions"].as_array().expect("versions") {
            assert_eq!(v["status"], "available", "{v}");
            let job = &jobs[v["job"].as_str().expect("a job made it")];
            assert_eq!(
                job["state"], "succeeded",
                "a version of a job that says {job}"
            );
            assert_eq!(job["result"]["version"], v["version"]);
        }
    }
    for job in jobs.values().filter(|j| j["state"] == "succeeded") {
        let (model, v) = (&job["model_name"], &job["result"]["version"]);
        let version = server
            .get_ok(&format!(
                "/v1/models/{}/versions/{v}",
                model.as_str().expect("name")
            ))
            .await;
        assert_eq!(version["job"], job["id"]);
        assert_eq!(version["status"], "available");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_while_jobs_run_and_versions_are_written_loses_nothing_acknowledged() {
    let dir = temp_dir("crash");
    let mut schedule = Schedule(0x5eed_0fc0_ffee);
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let mut dataset = String::new();
    const CYCLES: usize = 24;
    for cycle in 0..=CYCLES {
        let server = ServerProcess::start_ready(&dir, &["--max-running-jobs", "2"]).await;
        {
            let snapshot = std::mem::take(&mut *acked.lock().expect("lock"));
            check(&server, &snapshot, &dir).await;
            *acked.lock().expect("lock") = snapshot;
        }
        if cycle == CYCLES {
            break;
        }
        if cycle == 0 {
            let created = server.post_ok("/v1/datasets", &xor_dataset(2), 201).await;
            dataset = created["id"].as_str().expect("id").to_owned();
            for name in ["a", "b"] {
                let spec = json!({"name": name, "layers": [2, 3, 1], "output": "sigmoid"});
                server.post_ok("/v1/models", &spec, 201).await;
            }
            let mut a = acked.lock().expect("lock");
            a.datasets.push(dataset.clone());
            a.models.extend(["a".to_owned(), "b".to_owned()]);
        }
        let workers: Vec<_> = (0..2)
            .map(|n| {
                tokio::spawn(worker(
                    server.address.clone(),
                    n,
                    schedule.next(),
                    dataset.clone(),
                    Arc::clone(&acked),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20 + schedule.below(80))).await;
        server.kill9();
        for w in workers {
            w.await.expect("a worker saw a wrong answer");
        }
    }
    let acked = acked.lock().expect("lock");
    assert!(
        acked.succeeded.len() >= CYCLES / 2,
        "the kills should fall among finished jobs: only {} succeeded",
        acked.succeeded.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}
