//! `GET /metrics` in Prometheus text format, counted by route template, and the request id on
//! every response.

use serde_json::json;

use crate::helpers::{xor_dataset, TestApp};

/// A sample: its metric name, its labels and its value.
type Sample = (String, Vec<(String, String)>, f64);

/// Checks one line of the text exposition format 0.0.4 and returns the sample's name, labels
/// and value (`None` for a comment).
fn parse_line(line: &str) -> Result<Option<Sample>, String> {
    if let Some(comment) = line.strip_prefix('#') {
        let mut words = comment.split_whitespace();
        return match (words.next(), words.next(), words.next()) {
            (Some("HELP"), Some(name), _) if is_metric_name(name) => Ok(None),
            (Some("TYPE"), Some(name), Some(kind))
                if is_metric_name(name)
                    && ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) =>
            {
                Ok(None)
            }
            _ => Err(format!("a bad comment: {line}")),
        };
    }
    let (series, value) = line
        .rsplit_once(' ')
        .ok_or_else(|| format!("no value: {line}"))?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("a bad value: {line}"))?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .ok_or_else(|| format!("unclosed labels: {line}"))?;
            (
                name,
                parse_labels(body).ok_or_else(|| format!("bad labels: {line}"))?,
            )
        }
    };
    if !is_metric_name(name) {
        return Err(format!("a bad metric name: {line}"));
    }
    Ok(Some((name.to_owned(), labels, value)))
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_labels(mut body: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    while !body.is_empty() {
        let (name, rest) = body.split_once("=\"")?;
        if !is_metric_name(name) || name.contains(':') {
            return None;
        }
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    _ => return None,
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        body = &rest[end + 1..];
        body = body.strip_prefix(',').unwrap_or(body);
    }
    Some(labels)
}

async fn scrape(app: &TestApp) -> (String, Vec<Sample>) {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.expect("text");
    let samples = text
        .lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| parse_line(l).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .collect();
    (text, samples)
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.2)
}

#[test]
fn the_line_parser_refuses_what_is_not_the_format() {
    assert!(parse_line("a_total{route=\"/x\",status=\"200\"} 3").is_ok());
    assert!(parse_line("# TYPE a_total counter").is_ok());
    for bad in [
        "a_total{route=\"/x} 3",
        "a_total 3 x",
        "9a 1",
        "# TYPE a thing",
        "a_total{r=x} 1",
        "a_total",
    ] {
        assert!(parse_line(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn metrics_parse_and_count_requests_by_route_template() {
    let app = TestApp::spawn().await;
    let dataset = app.dataset(xor_dataset(1)).await;
    app.get_ok(&format!("/v1/datasets/{dataset}")).await;
    app.get_ok(&format!("/v1/datasets/{dataset}")).await;
    app.get("/v1/no-such-route").await;

    let (text, samples) = scrape(&app).await;

    let shown = [
        ("route", "/v1/datasets/{id}"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert_eq!(
        value(&samples, "http_requests_total", &shown),
        Some(2.0),
        "{text}"
    );
    let created = [
        ("route", "/v1/datasets"),
        ("method", "POST"),
        ("status", "201"),
    ];
    assert_eq!(
        value(&samples, "http_requests_total", &created),
        Some(1.0),
        "{text}"
    );
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert_eq!(
        value(&samples, "http_requests_total", &unmatched),
        Some(1.0),
        "{text}"
    );
    let timed = [("route", "/v1/datasets/{id}"), ("method", "GET")];
    assert_eq!(
        value(&samples, "http_request_duration_seconds_count", &timed),
        Some(2.0)
    );
    assert!(!text.contains(&dataset), "a raw id became a label:\n{text}");
    assert!(
        !text.contains("no-such-route"),
        "a raw path became a label:\n{text}"
    );
    assert_eq!(value(&samples, "mlp_lab_datasets", &[]), Some(1.0));
}

#[tokio::test]
async fn metrics_of_one_server_do_not_count_another_servers_requests() {
    let busy = TestApp::spawn().await;
    for _ in 0..3 {
        busy.get_ok("/v1/models").await;
    }
    let quiet = TestApp::spawn().await;

    let (text, samples) = scrape(&quiet).await;

    let listed = [("route", "/v1/models"), ("method", "GET")];
    assert_eq!(
        value(&samples, "http_requests_total", &listed),
        None,
        "{text}"
    );
}

#[tokio::test]
async fn metrics_show_jobs_registry_sizes_and_predicted_rows() {
    let app = TestApp::spawn().await;
    let dataset = app.dataset(xor_dataset(2)).await;
    app.model(json!({"name": "m", "layers": [2, 4, 1], "output": "sigmoid"}))
        .await;
    let job = app
        .job(json!({"model": "m", "dataset": dataset, "epochs": 2}))
        .await;
    app.wait_for_job(&job, &["succeeded"], 30).await;
    app.post_ok(
        "/v1/models/m/predict",
        &json!({"inputs": [[0, 0], [0, 1], [1, 1]]}),
        200,
    )
    .await;
    // The Open Inference Protocol's rows count too.
    app.post_ok(
        "/v2/models/m/infer",
        &json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 2], "data": [0, 0, 1, 0]}]}),
        200,
    )
    .await;

    let (text, samples) = scrape(&app).await;

    assert_eq!(
        value(&samples, "mlp_lab_predicted_rows_total", &[]),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, "mlp_lab_jobs", &[("state", "succeeded")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, "mlp_lab_jobs", &[("state", "running")]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, "mlp_lab_job_queue_length", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(value(&samples, "mlp_lab_models", &[]), Some(1.0), "{text}");
    assert_eq!(
        value(&samples, "mlp_lab_model_versions", &[]),
        Some(1.0),
        "{text}"
    );
    assert!(value(&samples, "mlp_lab_training_samples_per_second", &[]).is_some());
}

#[tokio::test]
async fn every_response_has_a_request_id_and_a_sane_one_is_echoed() {
    let app = TestApp::spawn().await;

    let made = app.get("/healthz").await;
    let echoed = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-abc.123:7")
        .send()
        .await
        .expect("request sent");
    let error = app.get("/v1/models/ghost").await;

    let made = made.headers()["x-request-id"].to_str().expect("ASCII");
    assert!(
        uuid::Uuid::parse_str(made).is_ok_and(|u| u.get_version_num() == 7),
        "{made}"
    );
    assert_eq!(echoed.headers()["x-request-id"], "trace-abc.123:7");
    assert!(error.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn an_unusable_request_id_is_replaced() {
    let app = TestApp::spawn().await;
    let long = "a".repeat(200);

    for id in [long.as_str(), "has spaces in it", "quote\"d", ""] {
        let response = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", id)
            .send()
            .await
            .expect("request sent");

        let given = response.headers()["x-request-id"].to_str().expect("ASCII");
        assert_ne!(given, id);
        assert!(uuid::Uuid::parse_str(given).is_ok(), "{given}");
    }
}

#[tokio::test]
async fn metrics_job_counts_follow_submit_cancel_and_finish() {
    let app = TestApp::spawn().await;
    let dataset = app.dataset(xor_dataset(2)).await;
    app.model(json!({"name": "m", "layers": [2, 4, 1], "output": "sigmoid"}))
        .await;
    let jobs = |samples: &_, state: &str| value(samples, "mlp_lab_jobs", &[("state", state)]);

    let (text, samples) = scrape(&app).await;
    for state in ["queued", "running", "succeeded", "cancelled"] {
        assert_eq!(jobs(&samples, state), Some(0.0), "{state}: {text}");
    }

    let done = app
        .job(json!({"model": "m", "dataset": dataset, "epochs": 2}))
        .await;
    app.wait_for_job(&done, &["succeeded"], 30).await;
    let long = app
        .job(json!({"model": "m", "dataset": dataset, "epochs": 100_000, "batch_size": 1}))
        .await;
    let (text, samples) = scrape(&app).await;
    assert_eq!(jobs(&samples, "succeeded"), Some(1.0), "{text}");
    let active = jobs(&samples, "queued").unwrap_or(0.0) + jobs(&samples, "running").unwrap_or(0.0);
    assert_eq!(active, 1.0, "{text}");

    app.post_ok(&format!("/v1/jobs/{long}/cancel"), &json!({}), 200)
        .await;
    app.wait_for_job(&long, &["cancelled"], 30).await;
    let (text, samples) = scrape(&app).await;
    assert_eq!(jobs(&samples, "succeeded"), Some(1.0), "{text}");
    assert_eq!(jobs(&samples, "cancelled"), Some(1.0), "{text}");
    assert_eq!(jobs(&samples, "queued"), Some(0.0), "{text}");
    assert_eq!(jobs(&samples, "running"), Some(0.0), "{text}");
    assert_eq!(
        value(&samples, "mlp_lab_job_queue_length", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, "mlp_lab_training_samples_per_second", &[]),
        Some(0.0),
        "{text}"
    );
}

/// Text logs in a pipe (a file, a container's log) carry no terminal escape codes: the real
/// binary, its stdout a pipe, must write its first lines plain.
#[test]
fn text_logs_written_to_a_pipe_have_no_colour_codes() {
    use std::io::{BufRead, BufReader};

    let mut child = crate::process::mlp_lab_command(&["--ephemeral", "--log-format", "text"])
        .spawn()
        .expect("start the mlp-lab binary");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let ready = line.contains("ready");
        lines.push(line);
        if ready || lines.len() >= 20 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("listening") && l.contains("addr=127.0.0.1:")),
        "no `listening` line with its address: {lines:?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "escape codes in a piped log: {lines:?}"
    );
}
