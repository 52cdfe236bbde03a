//! The Open Inference Protocol (`/v2`): the shapes of metadata, health and readiness, inference
//! in JSON and with the binary tensor extension (bytes built by hand here), equality with
//! `/v1/models/{model}/predict`, and every error as `{"error": …}`.

use mlp_lab::config::{ByteSize, Config};
use serde_json::{json, Value};

use crate::helpers::{xor_dataset, TestApp};

/// Trains `name` (2 inputs; a sigmoid classifier, standardized inputs) for a few epochs.
async fn trained(app: &TestApp, name: &str) -> String {
    let dataset = app.dataset(xor_dataset(4)).await;
    let id = app
        .model(
            json!({"name": name, "layers": [2, 5, 1], "activation": "tanh", "output": "sigmoid"}),
        )
        .await;
    let job = app
        .job(json!({"model": name, "dataset": dataset, "epochs": 3, "standardize": true}))
        .await;
    app.wait_for_job(&job, &["succeeded"], 30).await;
    id
}

/// Rows whose values exercise rounding: many digits, tiny and large magnitudes.
fn rows() -> Vec<[f64; 2]> {
    vec![
        [0.1, 0.2],
        [1.000_000_119_209_289_6, -3.3e-2],
        [123.456_789_012_345_67, 9.999_999e-8],
        [-0.5, 1.5],
    ]
}

fn flat(rows: &[[f64; 2]]) -> Vec<f64> {
    rows.iter().flatten().copied().collect()
}

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.post_json(path, body).await
}

async fn ok_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.expect("a body");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("JSON")
}

/// Asserts the protocol's error shape, `{"error": "…"}` as `application/json`, with `status`;
/// returns the message.
async fn assert_v2_error(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "application/json"
    );
    let body: Value = response.json().await.expect("JSON");
    let object = body.as_object().expect("an object");
    assert_eq!(object.len(), 1, "{body}");
    object["error"].as_str().expect("a string").to_owned()
}

fn infer_body(data: Value, shape: Value) -> Value {
    json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": shape, "data": data}]})
}

/// `/v1` outputs, flattened row-major.
async fn v1_outputs(app: &TestApp, model: &str, rows: &[[f64; 2]]) -> (Vec<Value>, Vec<Value>) {
    let answer = app
        .post_ok(
            &format!("/v1/models/{model}/predict"),
            &json!({ "inputs": rows }),
            200,
        )
        .await;
    let outputs = answer["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .flat_map(|r| r.as_array().expect("a row").clone())
        .collect();
    let labels = answer["labels"].as_array().expect("labels").clone();
    (outputs, labels)
}

fn f32s(values: &[Value]) -> Vec<u32> {
    values
        .iter()
        .map(|v| (v.as_f64().expect("a number") as f32).to_bits())
        .collect()
}

#[tokio::test]
async fn server_metadata_health_and_readiness_have_the_protocol_shapes() {
    let app = TestApp::spawn().await;

    let server = ok_json(app.get("/v2").await).await;
    let live = ok_json(app.get("/v2/health/live").await).await;
    let ready = ok_json(app.get("/v2/health/ready").await).await;

    assert_eq!(server["name"], "mlp-lab");
    assert!(server["version"].is_string());
    assert!(server["extensions"]
        .as_array()
        .expect("a list")
        .contains(&json!("binary_tensor_data")));
    assert_eq!(live, json!({"live": true}));
    assert_eq!(ready, json!({"ready": true}));
}

#[tokio::test]
async fn model_metadata_names_the_input_and_outputs_by_name_or_id() {
    let app = TestApp::spawn().await;
    let untrained = app
        .model(json!({"name": "fresh", "layers": [3, 2], "output": "identity"}))
        .await;
    let id = trained(&app, "m").await;

    let fresh = ok_json(app.get(&format!("/v2/models/{untrained}")).await).await;
    let by_id = ok_json(app.get(&format!("/v2/models/{id}")).await).await;
    let v1 = ok_json(app.get("/v2/models/m/versions/1").await).await;

    assert_eq!(
        fresh,
        json!({"name": "fresh", "versions": [], "platform": "mlp-lab",
               "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3]}],
               "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 2]}]})
    );
    let want = json!({"name": "m", "versions": ["1"], "platform": "mlp-lab",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 1]},
                    {"name": "label", "datatype": "BYTES", "shape": [-1]}]});
    assert_eq!(by_id, want);
    assert_eq!(v1, want);
}

#[tokio::test]
async fn a_model_is_ready_once_it_has_a_trained_version() {
    let app = TestApp::spawn().await;
    app.model(json!({"name": "fresh", "layers": [2, 1], "output": "sigmoid"}))
        .await;
    trained(&app, "m").await;

    let ready = ok_json(app.get("/v2/models/m/ready").await).await;
    let version = ok_json(app.get("/v2/models/m/versions/1/ready").await).await;
    let untrained = app.get("/v2/models/fresh/ready").await;
    let unknown_version = app.get("/v2/models/m/versions/2/ready").await;
    let not_a_version = app.get("/v2/models/m/versions/latest/ready").await;
    let unknown_model = app.get("/v2/models/ghost/ready").await;

    assert_eq!(ready, json!({"name": "m", "ready": true}));
    assert_eq!(version, json!({"name": "m", "ready": true}));
    assert!(assert_v2_error(untrained, 400)
        .await
        .contains("no trained version"));
    assert!(assert_v2_error(unknown_version, 404).await.contains("'2'"));
    assert_v2_error(not_a_version, 404).await;
    assert!(assert_v2_error(unknown_model, 404).await.contains("ghost"));
}

#[tokio::test]
async fn json_inference_equals_v1_predict_bit_for_bit() {
    let app = TestApp::spawn().await;
    trained(&app, "m").await;
    let rows = rows();
    let (v1, v1_labels) = v1_outputs(&app, "m", &rows).await;

    let mut body = infer_body(json!(flat(&rows)), json!([4, 2]));
    body["id"] = json!("req-7");
    body["parameters"] = json!({"priority": 0, "custom": "ignored"});
    let answer = ok_json(post(&app, "/v2/models/m/infer", &body).await).await;

    assert_eq!(answer["model_name"], "m");
    assert_eq!(answer["model_version"], "1");
    assert_eq!(answer["id"], "req-7");
    let outputs = answer["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 2, "{answer}");
    assert_eq!(outputs[0]["name"], "output");
    assert_eq!(outputs[0]["datatype"], "FP32");
    assert_eq!(outputs[0]["shape"], json!([4, 1]));
    let data = outputs[0]["data"].as_array().expect("data");
    assert_eq!(f32s(data), f32s(&v1));
    assert_eq!(outputs[1]["name"], "label");
    assert_eq!(outputs[1]["datatype"], "BYTES");
    assert_eq!(outputs[1]["shape"], json!([4]));
    let labels: Vec<String> = v1_labels.iter().map(Value::to_string).collect();
    assert_eq!(outputs[1]["data"], json!(labels));
}

#[tokio::test]
async fn nested_data_fp64_and_a_body_without_content_type_give_the_same_numbers() {
    let app = TestApp::spawn().await;
    trained(&app, "m").await;
    let rows = rows();
    let (v1, _) = v1_outputs(&app, "m", &rows).await;
    let only_output = json!([{"name": "output"}]);

    let mut nested = infer_body(json!(rows), json!([4, 2]));
    nested["outputs"] = only_output.clone();
    let mut fp64 = infer_body(json!(flat(&rows)), json!([4, 2]));
    fp64["inputs"][0]["datatype"] = json!("FP64");
    fp64["outputs"] = only_output.clone();
    let mut versioned = infer_body(json!(flat(&rows)), json!([4, 2]));
    versioned["outputs"] = only_output;
    let bodies = [
        ("/v2/models/m/infer", nested),
        ("/v2/models/m/infer", fp64),
        ("/v2/models/m/versions/1/infer", versioned),
    ];

    for (path, body) in bodies {
        let response = app
            .post_raw(path, serde_json::to_vec(&body).expect("JSON"), None)
            .await;
        let answer = ok_json(response).await;
        let outputs = answer["outputs"].as_array().expect("outputs");
        assert_eq!(outputs.len(), 1, "{answer}");
        assert_eq!(
            f32s(outputs[0]["data"].as_array().expect("data")),
            f32s(&v1),
            "{body}"
        );
        assert!(answer.get("id").is_none());
    }
}

/// A body of the binary tensor extension: `json` then `binary`; the header's value.
fn binary_body(json: &Value, binary: &[u8]) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(json).expect("JSON");
    let length = body.len();
    body.extend_from_slice(binary);
    (body, length)
}

async fn post_binary(app: &TestApp, path: &str, body: Vec<u8>, length: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("Inference-Header-Content-Length", length)
        .body(body)
        .send()
        .await
        .expect("request sent")
}

fn fp32_bytes(values: &[f64]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| (v as f32).to_le_bytes())
        .collect()
}

#[tokio::test]
async fn binary_inputs_and_binary_outputs_carry_the_same_numbers_as_v1() {
    let app = TestApp::spawn().await;
    trained(&app, "m").await;
    let rows = rows();
    let (v1, v1_labels) = v1_outputs(&app, "m", &rows).await;
    // The f32 of each value: what v1 makes of the JSON number, sent as raw bytes.
    let header = json!({
        "id": "bin",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 2],
                    "parameters": {"binary_data_size": 32}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}},
                    {"name": "output"}],
        "parameters": {"binary_data_output": true}
    });
    let (body, length) = binary_body(&header, &fp32_bytes(&flat(&rows)));

    let response = post_binary(&app, "/v2/models/m/infer", body, &length.to_string()).await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "application/octet-stream"
    );
    let json_length: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("a length");
    let bytes = response.bytes().await.expect("a body");
    let (json_part, binary) = bytes.split_at(json_length);
    let answer: Value = serde_json::from_slice(json_part).expect("a JSON header");
    assert_eq!(answer["id"], "bin");
    let outputs = answer["outputs"].as_array().expect("outputs");
    assert_eq!(outputs[0]["name"], "label");
    assert_eq!(outputs[1]["name"], "output");
    assert!(outputs.iter().all(|o| o.get("data").is_none()), "{answer}");
    let label_size = outputs[0]["parameters"]["binary_data_size"]
        .as_u64()
        .expect("a size") as usize;
    assert_eq!(outputs[1]["parameters"]["binary_data_size"], 16);
    assert_eq!(binary.len(), label_size + 16);
    // BYTES: a 4-byte little-endian length before each element.
    let (mut labels, mut rest) = (Vec::new(), &binary[..label_size]);
    while !rest.is_empty() {
        let n = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        labels.push(String::from_utf8(rest[4..4 + n].to_vec()).expect("UTF-8"));
        rest = &rest[4 + n..];
    }
    let want: Vec<String> = v1_labels.iter().map(Value::to_string).collect();
    assert_eq!(labels, want);
    let values: Vec<u32> = binary[label_size..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")).to_bits())
        .collect();
    assert_eq!(values, f32s(&v1));
}

#[tokio::test]
async fn fp64_binary_input_with_a_json_answer() {
    let app = TestApp::spawn().await;
    trained(&app, "m").await;
    let rows = rows();
    let (v1, _) = v1_outputs(&app, "m", &rows).await;
    let header = json!({
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [4, 2],
                    "parameters": {"binary_data_size": 64}}],
        "outputs": [{"name": "output", "parameters": {"binary_data": false}}]
    });
    let raw: Vec<u8> = flat(&rows).iter().flat_map(|v| v.to_le_bytes()).collect();
    let (body, length) = binary_body(&header, &raw);

    let response = post_binary(&app, "/v2/models/m/infer", body, &length.to_string()).await;

    assert!(response
        .headers()
        .get("inference-header-content-length")
        .is_none());
    let answer = ok_json(response).await;
    let data = answer["outputs"][0]["data"].as_array().expect("data");
    assert_eq!(f32s(data), f32s(&v1));
}

#[tokio::test]
async fn unknown_models_versions_and_untrained_models_are_errors_of_the_protocol() {
    let app = TestApp::spawn().await;
    app.model(json!({"name": "fresh", "layers": [2, 1], "output": "sigmoid"}))
        .await;
    trained(&app, "m").await;
    let body = infer_body(json!([0, 0]), json!([1, 2]));

    let unknown_model = post(&app, "/v2/models/ghost/infer", &body).await;
    let unknown_version = post(&app, "/v2/models/m/versions/3/infer", &body).await;
    let untrained = post(&app, "/v2/models/fresh/infer", &body).await;
    let metadata = app.get("/v2/models/ghost").await;
    let version_metadata = app.get("/v2/models/fresh/versions/1").await;

    assert!(assert_v2_error(unknown_model, 404).await.contains("ghost"));
    assert!(assert_v2_error(unknown_version, 404).await.contains("'3'"));
    assert!(assert_v2_error(untrained, 400)
        .await
        .contains("no trained version"));
    assert_v2_error(metadata, 404).await;
    assert_v2_error(version_metadata, 404).await;
}

#[tokio::test]
async fn bad_tensors_are_400_naming_what_is_wrong() {
    let app = TestApp::spawn().await;
    trained(&app, "m").await;
    let mut int64 = infer_body(json!([0, 0]), json!([1, 2]));
    int64["inputs"][0]["datatype"] = json!("INT64");
    let mut wrong_name = infer_body(json!([0, 0]), json!([1, 2]));
    wrong_name["inputs"][0]["name"] = json!("x");
    let mut unknown_output = infer_body(json!([0, 0]), json!([1, 2]));
    unknown_output["outputs"] = json!([{"name": "probabilities"}]);
    let mut classification = infer_body(json!([0, 0]), json!([1, 2]));
    classification["outputs"] = json!([{"name": "output", "parameters": {"classification": 1}}]);
    let cases = [
        (int64, "INT64"),
        (infer_body(json!([0, 0, 1]), json!([1, 2])), "data has 3"),
        (
            infer_body(json!([[0, 0], [1]]), json!([2, 2])),
            "data has 3",
        ),
        (infer_body(json!([0, 0, 1]), json!([1, 3])), "[-1, 2]"),
        (infer_body(json!([0, 0]), json!([2])), "[-1, 2]"),
        (infer_body(json!([0, "a"]), json!([1, 2])), "inputs[0].data"),
        (
            infer_body(json!([0, 1e39]), json!([1, 2])),
            "row 0, column 1",
        ),
        (infer_body(json!([]), json!([0, 2])), "no rows"),
        (wrong_name, "unknown input 'x'"),
        (unknown_output, "unknown output 'probabilities'"),
        (classification, "classification"),
        (json!({"inputs": [], "extra": 1}), "extra"),
    ];

    for (body, needle) in cases {
        let response = post(&app, "/v2/models/m/infer", &body).await;
        let message = assert_v2_error(response, 400).await;
        assert!(message.contains(needle), "{body}: {message}");
    }
}

#[tokio::test]
async fn malformed_json_and_broken_binary_parts_are_400() {
    let app = TestApp::spawn().await;
    trained(&app, "m").await;
    let header = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2],
                                    "parameters": {"binary_data_size": 8}}]});
    let good = fp32_bytes(&[0.5, 0.25]);
    let (full, length) = binary_body(&header, &good);
    let (truncated, _) = binary_body(&header, &good[..7]);
    let (extra, _) = binary_body(&header, &[good.as_slice(), &[0]].concat());
    let mut wrong_size = header.clone();
    wrong_size["inputs"][0]["parameters"]["binary_data_size"] = json!(4);
    let (mismatched, mismatched_length) = binary_body(&wrong_size, &good[..4]);
    let n = length.to_string();

    let cases = [
        (truncated, Some(n.clone()), "truncated"),
        (extra, Some(n.clone()), "1 bytes after"),
        (
            mismatched,
            Some(mismatched_length.to_string()),
            "take 8 bytes",
        ),
        (
            full.clone(),
            Some("12x".to_owned()),
            "Inference-Header-Content-Length",
        ),
        (
            full.clone(),
            Some("-3".to_owned()),
            "Inference-Header-Content-Length",
        ),
        (full.clone(), Some("100000".to_owned()), "has only"),
        (full.clone(), Some((length - 1).to_string()), "JSON"),
        (full.clone(), None, "JSON"),
        (b"{\"inputs\": [".to_vec(), None, "JSON"),
        (Vec::new(), None, "empty"),
    ];

    for (body, header_length, needle) in cases {
        let mut request = app.client.post(app.url("/v2/models/m/infer")).body(body);
        if let Some(value) = &header_length {
            request = request.header("Inference-Header-Content-Length", value);
        }
        let response = request.send().await.expect("request sent");
        let message = assert_v2_error(response, 400).await;
        assert!(message.contains(needle), "{header_length:?}: {message}");
    }
    assert_eq!(
        post_binary(&app, "/v2/models/m/infer", full, &n)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_row_and_body_limits_hold_with_the_protocol_error_shape() {
    let mut config = Config::for_tests();
    config.limits.max_predict_rows = 2;
    config.limits.max_predict_body_bytes = ByteSize(600);
    let app = TestApp::spawn_with(config).await;
    trained(&app, "m").await;

    let inside = post(
        &app,
        "/v2/models/m/infer",
        &infer_body(json!([0, 0, 1, 1]), json!([2, 2])),
    )
    .await;
    let rows = post(
        &app,
        "/v2/models/m/infer",
        &infer_body(json!([0, 0, 1, 1, 0, 1]), json!([3, 2])),
    )
    .await;
    let large = post(
        &app,
        "/v2/models/m/infer",
        &infer_body(json!(vec![0.125; 400]), json!([200, 2])),
    )
    .await;
    // Without Content-Length the body is cut off while it is read.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b' '; 400]), Ok(vec![b' '; 400])];
    let streamed = app
        .client
        .post(app.url("/v2/models/m/infer"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("request sent");

    assert_eq!(inside.status(), 200);
    assert!(assert_v2_error(rows, 400)
        .await
        .contains("--max-predict-rows"));
    assert!(assert_v2_error(large, 413)
        .await
        .contains("--max-predict-body-bytes"));
    assert!(assert_v2_error(streamed, 413)
        .await
        .contains("--max-predict-body-bytes"));
}

#[tokio::test]
async fn routing_errors_on_v2_paths_are_not_problem_json() {
    let app = TestApp::spawn().await;
    trained(&app, "m").await;

    let wrong_method = app.get("/v2/models/m/infer").await;
    let put = app.client.put(app.url("/v2")).send().await.expect("sent");
    let unknown_route = app.get("/v2/models/m/explain").await;

    assert_eq!(wrong_method.headers()[reqwest::header::ALLOW], "POST");
    assert!(assert_v2_error(wrong_method, 405).await.contains("GET"));
    assert_v2_error(put, 405).await;
    assert!(assert_v2_error(unknown_route, 404)
        .await
        .contains("/v2/models/m/explain"));
}

#[test]
fn openapi_yaml_describes_both_infer_bodies_and_the_error_shape() {
    let doc: serde_norway::Value =
        serde_norway::from_str(mlp_lab::http::OPENAPI_YAML).expect("valid YAML");
    let body = &doc["components"]["requestBodies"]["V2Infer"]["content"];
    let answer = &doc["components"]["responses"]["V2Infer"]["content"];
    let error = &doc["components"]["schemas"]["V2Error"];

    for content in [body, answer] {
        assert!(content["application/json"].is_mapping());
        assert!(content["application/octet-stream"].is_mapping());
    }
    assert_eq!(error["required"][0].as_str(), Some("error"));
    for path in [
        "/v2/models/{model}/infer",
        "/v2/models/{model}/versions/{version}/infer",
    ] {
        let post = &doc["paths"][path]["post"];
        assert_eq!(
            post["requestBody"]["$ref"].as_str(),
            Some("#/components/requestBodies/V2Infer"),
            "{path}"
        );
        assert_eq!(
            post["responses"]["default"]["$ref"].as_str(),
            Some("#/components/responses/V2Error"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_regression_model_has_only_the_output_tensor() {
    let app = TestApp::spawn().await;
    let dataset = app
        .dataset(json!({"generator": {"kind": "regression_plane", "samples": 40, "features": 3}}))
        .await;
    app.model(json!({"name": "plane", "layers": [3, 4, 1], "output": "identity"}))
        .await;
    let job = app
        .job(json!({"model": "plane", "dataset": dataset, "epochs": 2}))
        .await;
    app.wait_for_job(&job, &["succeeded"], 30).await;
    let inputs = json!([[0.5, -1.0, 2.0], [3.25, 0.0, -0.125]]);
    let v1 = app
        .post_ok(
            "/v1/models/plane/predict",
            &json!({ "inputs": inputs }),
            200,
        )
        .await;

    let metadata = ok_json(app.get("/v2/models/plane").await).await;
    let answer = ok_json(
        post(
            &app,
            "/v2/models/plane/infer",
            &infer_body(inputs.clone(), json!([2, 3])),
        )
        .await,
    )
    .await;
    let mut asks_label = infer_body(inputs, json!([2, 3]));
    asks_label["outputs"] = json!([{"name": "label"}]);
    let label = post(&app, "/v2/models/plane/infer", &asks_label).await;

    assert_eq!(
        metadata["outputs"],
        json!([{"name": "output", "datatype": "FP32", "shape": [-1, 1]}])
    );
    let outputs = answer["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 1, "{answer}");
    let want: Vec<Value> = v1["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .flat_map(|r| r.as_array().expect("a row").clone())
        .collect();
    assert_eq!(
        f32s(outputs[0]["data"].as_array().expect("data")),
        f32s(&want)
    );
    assert!(assert_v2_error(label, 400)
        .await
        .contains("unknown output 'label'"));
}

#[tokio::test]
async fn server_readiness_is_503_with_the_protocol_error_while_not_ready() {
    let app = TestApp::spawn().await;
    app.state.set_ready(false);

    let ready = app.get("/v2/health/ready").await;
    let live = app.get("/v2/health/live").await;

    assert_v2_error(ready, 503).await;
    assert_eq!(live.status(), 200);
}
