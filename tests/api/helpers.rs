//! `TestApp`: the real server on a free port, with a client to talk to it.

use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use mlp_lab::config::Config;
use mlp_lab::http::{serve, AppState, Problem};
use mlp_lab::store::Store;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

static TRACING: Once = Once::new();

/// Logs go to the test output only when `TEST_LOG` is set (filter with `RUST_LOG`), so a
/// passing run stays quiet: `TEST_LOG=1 cargo test --test api name_of_test`.
fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}

/// A running server, shut down when dropped.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestApp {
    /// The server with [`Config::for_tests`].
    pub async fn spawn() -> Self {
        Self::spawn_with(Config::for_tests()).await
    }

    /// The server with `config`, on a free port of 127.0.0.1 whatever `config.addr` says.
    pub async fn spawn_with(config: Config) -> Self {
        init_tracing();
        Self::serve_state(AppState::new(config).expect("state")).await
    }

    /// The server with `config` over `store` (`config.data_dir` and `ephemeral` unused).
    pub async fn spawn_with_store(config: Config, store: Arc<dyn Store>) -> Self {
        init_tracing();
        Self::serve_state(AppState::with_store(config, store).expect("state")).await
    }

    async fn serve_state(state: AppState) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let address = format!("http://{}", listener.local_addr().expect("local address"));
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, state.clone(), async {
            let _ = stop.await;
        }));
        wait_until(|| state.is_ready()).await;
        Self {
            address,
            client: client(),
            state,
            shutdown: Some(shutdown),
        }
    }

    /// Serves `router` instead of the application: for test-only routes (a handler that
    /// panics, one that sleeps) wrapped in `mlp_lab::http::with_service_layers`.
    pub async fn spawn_router(router: axum::Router) -> Self {
        init_tracing();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let address = format!("http://{}", listener.local_addr().expect("local address"));
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await
        });
        Self {
            address,
            client: client(),
            state: AppState::new(Config::for_tests()).expect("state"),
            shutdown: Some(shutdown),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &impl Serialize) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// A POST with exactly this body and, if given, this `Content-Type`.
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        content_type: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        request.send().await.expect("request sent")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A client that talks to 127.0.0.1 directly, whatever proxy the environment names.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("build a client")
}

/// Polls `condition` until it holds; panics after 5 s.
pub async fn wait_until(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "condition not met within 5 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts that `response` is problem+json with `status` and `code`, and returns it.
pub async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> Problem {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "application/problem+json"
    );
    let problem: Problem = response.json().await.expect("a problem document");
    assert_eq!(problem.status, status);
    assert_eq!(problem.code, code, "{problem:?}");
    assert_eq!(problem.type_, format!("urn:mlp-lab:problem:{code}"));
    problem
}

impl TestApp {
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs `body` and returns the JSON answer, asserting the status.
    pub async fn post_ok(
        &self,
        path: &str,
        body: &serde_json::Value,
        status: u16,
    ) -> serde_json::Value {
        let response = self.post_json(path, body).await;
        let actual = response.status().as_u16();
        let text = response.text().await.expect("a body");
        assert_eq!(actual, status, "POST {path}: {text}");
        serde_json::from_str(&text).expect("JSON")
    }

    /// GETs `path`, asserting 200, and returns the JSON answer.
    pub async fn get_ok(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).expect("JSON")
    }

    /// Creates a dataset and returns its id.
    pub async fn dataset(&self, body: serde_json::Value) -> String {
        let created = self.post_ok("/v1/datasets", &body, 201).await;
        created["id"].as_str().expect("an id").to_owned()
    }

    /// Creates a model and returns its id.
    pub async fn model(&self, body: serde_json::Value) -> String {
        let created = self.post_ok("/v1/models", &body, 201).await;
        created["id"].as_str().expect("an id").to_owned()
    }

    /// Starts a job and returns its id.
    pub async fn job(&self, body: serde_json::Value) -> String {
        let created = self.post_ok("/v1/jobs", &body, 202).await;
        created["id"].as_str().expect("an id").to_owned()
    }

    /// Every epoch record of job `id` so far, the pages of its history followed by `next`.
    pub async fn all_epochs(&self, id: &str) -> Vec<serde_json::Value> {
        let mut epochs = Vec::new();
        let mut page = Some(format!("/v1/jobs/{id}/metrics"));
        while let Some(path) = page {
            let body = self.get_ok(&path).await;
            epochs.extend(body["epochs"].as_array().expect("epochs").iter().cloned());
            page = body["next"].as_str().map(str::to_owned);
        }
        epochs
    }

    /// Polls the job until it is in one of `states`; panics after `secs`.
    pub async fn wait_for_job(&self, id: &str, states: &[&str], secs: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let job = self.get_ok(&format!("/v1/jobs/{id}")).await;
            if states.contains(&job["state"].as_str().unwrap_or_default()) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job not {states:?} within {secs} s: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The four XOR corners, repeated `n` times.
/// The value of the unlabelled metric `name` in `GET /metrics`.
pub async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

pub fn xor_dataset(n: usize) -> serde_json::Value {
    let corners = [
        ([0.0, 0.0], 0),
        ([0.0, 1.0], 1),
        ([1.0, 0.0], 1),
        ([1.0, 1.0], 0),
    ];
    let features: Vec<_> = (0..n).flat_map(|_| corners.iter().map(|c| c.0)).collect();
    let targets: Vec<_> = (0..n).flat_map(|_| corners.iter().map(|c| c.1)).collect();
    serde_json::json!({"name": "xor", "features": features, "targets": targets})
}

/// One Server-Sent Event: its `event:` name, its `id:` if any, and its `data:` as JSON.
#[derive(Debug)]
pub struct SseEvent {
    pub name: String,
    pub id: Option<String>,
    pub data: serde_json::Value,
}

/// The events of an event stream's text (comments, such as keep-alives, left out).
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    text.split("\n\n")
        .filter_map(|block| {
            let field = |f: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(f)?.strip_prefix(": "))
            };
            Some(SseEvent {
                name: field("event")?.to_owned(),
                id: field("id").map(str::to_owned),
                data: serde_json::from_str(field("data")?).expect("JSON data"),
            })
        })
        .collect()
}
