//! Weights in and out: `.safetensors` download and import, and the ONNX export.

use mlp_lab::config::Config;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, xor_dataset, TestApp};

/// A safetensors file of `(name, dtype, shape, bytes)` and optional metadata, written by hand
/// (the layout of the format: u64 LE header length, JSON header, data) so that tests can make
/// every kind of wrong file.
pub(crate) fn safetensors(
    tensors: &[(&str, &str, Vec<usize>, Vec<u8>)],
    meta: Option<Value>,
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if let Some(meta) = meta {
        header.insert("__metadata__".into(), meta);
    }
    let mut offset = 0;
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            (*name).into(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes.len()]}),
        );
        offset += bytes.len();
    }
    let text = Value::Object(header).to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    for t in tensors {
        out.extend_from_slice(&t.3);
    }
    out
}

pub(crate) fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The state dict of PyTorch's `nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))`,
/// every value `fill`.
fn tanh_2_3_1(fill: f32) -> Vec<(&'static str, &'static str, Vec<usize>, Vec<u8>)> {
    vec![
        ("0.weight", "F32", vec![3, 2], f32_bytes(&[fill; 6])),
        ("0.bias", "F32", vec![3], f32_bytes(&[fill; 3])),
        ("2.weight", "F32", vec![1, 3], f32_bytes(&[fill; 3])),
        ("2.bias", "F32", vec![1], f32_bytes(&[fill; 1])),
    ]
}

async fn tanh_model(app: &TestApp, name: &str) {
    app.model(
        json!({"name": name, "layers": [2, 3, 1], "activation": "tanh", "output": "sigmoid"}),
    )
    .await;
}

async fn import(app: &TestApp, model: &str, body: Vec<u8>) -> reqwest::Response {
    app.post_raw(
        &format!("/v1/models/{model}/versions"),
        body,
        Some("application/octet-stream"),
    )
    .await
}

async fn trained(app: &TestApp, spec: Value) -> String {
    let dataset = app.dataset(xor_dataset(4)).await;
    let name = spec["name"].as_str().expect("a name").to_owned();
    app.model(spec).await;
    let job = app
        .job(json!({"model": name, "dataset": dataset, "epochs": 5}))
        .await;
    app.wait_for_job(&job, &["succeeded"], 30).await;
    name
}

async fn bytes_of(app: &TestApp, path: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    let headers = response.headers().clone();
    (headers, response.bytes().await.expect("a body").to_vec())
}

#[tokio::test]
async fn downloaded_weights_import_back_to_identical_predictions_and_bytes() {
    let app = TestApp::spawn().await;
    let name = trained(
        &app,
        json!({"name": "rt", "layers": [2, 5, 2], "activation": "prelu", "output": "softmax",
               "batch_norm": true, "dropout": 0.1}),
    )
    .await;

    let (headers, weights) = bytes_of(&app, &format!("/v1/models/{name}/versions/1/weights")).await;
    let response = import(&app, &name, weights.clone()).await;

    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"rt-v1.safetensors\""
    );
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let version: Value = response.json().await.expect("JSON");
    assert!(location.ends_with("/versions/2"), "{location}");
    assert_eq!(version["source"], "import");
    assert_eq!(version["job"], Value::Null);
    assert_eq!(version["dataset"], Value::Null);
    assert_eq!(version["metrics"], Value::Null);
    assert_eq!(app.get_ok(&location).await["version"], 2);
    let inputs = json!([[0, 0], [0, 1], [1, 0], [1, 1], [3.5, -2.25]]);
    let v1 = app
        .post_ok(
            &format!("/v1/models/{name}/predict"),
            &json!({"inputs": inputs, "version": 1}),
            200,
        )
        .await;
    let v2 = app
        .post_ok(
            &format!("/v1/models/{name}/predict"),
            &json!({"inputs": inputs, "version": 2}),
            200,
        )
        .await;
    assert_eq!(v1["outputs"], v2["outputs"]);
    assert_eq!(v1["labels"], v2["labels"]);
    let (_, again) = bytes_of(&app, &format!("/v1/models/{name}/versions/2/weights")).await;
    assert_eq!(again, weights, "the imported version writes the same file");
}

#[tokio::test]
async fn a_torch_style_file_without_metadata_predicts_from_raw_inputs_with_numbered_classes() {
    let app = TestApp::spawn().await;
    tanh_model(&app, "torch").await;

    let response = import(&app, "torch", safetensors(&tanh_2_3_1(0.5), None)).await;
    let answer = app
        .post_ok(
            "/v1/models/torch/predict",
            &json!({"inputs": [[1.0, -3.0]]}),
            200,
        )
        .await;

    assert_eq!(response.status(), 201);
    // No standardization: u = 0.5·1 + 0.5·(−3) + 0.5 = −0.5 in each hidden unit, then
    // z = 3·0.5·tanh(−0.5) + 0.5, p = σ(z) (computed here in f64).
    let z = 3.0 * 0.5 * (-0.5f64).tanh() + 0.5;
    let p = 1.0 / (1.0 + (-z).exp());
    let got = answer["outputs"][0][0].as_f64().expect("a number");
    assert!((got - p).abs() < 1e-6, "{got} vs {p}");
    assert_eq!(answer["labels"], json!([0]));
}

#[tokio::test]
async fn a_warm_start_from_imported_weights_trains_from_them() {
    let app = TestApp::spawn().await;
    tanh_model(&app, "warm").await;
    let dataset = app.dataset(xor_dataset(4)).await;
    import(&app, "warm", safetensors(&tanh_2_3_1(0.5), None)).await;

    let job = app
        .job(json!({"model": "warm", "dataset": dataset, "epochs": 3, "validation_split": 0.0,
                    "optimizer": {"kind": "sgd", "learning_rate": 0.5}, "warm_start": {"version": 1}}))
        .await;
    let done = app.wait_for_job(&job, &["succeeded", "failed"], 30).await;
    let metrics = app.get_ok(&format!("/v1/jobs/{job}/metrics")).await;

    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["version"], 2);
    // Epoch 0 is evaluated with the imported weights on raw inputs: every weight and bias 0.5
    // gives z = 1.5·tanh(0.5·(a + b + 1)) + 0.5 for the corner (a, b); the loss is the mean
    // binary cross-entropy over the four XOR corners (computed here in f64).
    let bce = |a: f64, b: f64, y: f64| {
        let z = 1.5 * (0.5 * (a + b + 1.0)).tanh() + 0.5;
        let p = 1.0 / (1.0 + (-z).exp());
        -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
    };
    let want =
        (bce(0.0, 0.0, 0.0) + bce(0.0, 1.0, 1.0) + bce(1.0, 0.0, 1.0) + bce(1.0, 1.0, 0.0)) / 4.0;
    let first = metrics["epochs"][0]["train_loss"].as_f64().expect("a loss");
    let last = metrics["epochs"][3]["train_loss"].as_f64().expect("a loss");
    assert!((first - want).abs() < 1e-5, "{first} vs {want}");
    assert!(last < first, "training moved the loss: {first} → {last}");
    assert_eq!(
        app.get_ok("/v1/models/warm/versions/2").await["source"],
        "training"
    );
    // The imported weights saw raw inputs, so the warm start goes on without standardizing.
    assert_eq!(done["request"]["standardize"], false, "{done}");
    let (_, trained) = bytes_of(&app, "/v1/models/warm/versions/2/weights").await;
    let header_len = usize::try_from(u64::from_le_bytes(
        trained[..8].try_into().expect("8 bytes"),
    ))
    .expect("a length");
    let header: Value = serde_json::from_slice(&trained[8..8 + header_len]).expect("JSON");
    assert_eq!(header["__metadata__"]["standardizer"], "null");
}

fn replaced(
    mut tensors: Vec<(&'static str, &'static str, Vec<usize>, Vec<u8>)>,
    at: usize,
    with: (&'static str, &'static str, Vec<usize>, Vec<u8>),
) -> Vec<(&'static str, &'static str, Vec<usize>, Vec<u8>)> {
    tensors[at] = with;
    tensors
}

#[tokio::test]
async fn each_wrong_tensor_is_a_422_naming_it() {
    let app = TestApp::spawn().await;
    tanh_model(&app, "strict").await;
    let good = tanh_2_3_1(0.1);
    let cases = [
        (good[1..].to_vec(), "0.weight", "missing"),
        (
            [
                good.clone(),
                vec![("1.weight", "F32", vec![3], f32_bytes(&[1.0; 3]))],
            ]
            .concat(),
            "1.weight",
            "unexpected tensor",
        ),
        (
            replaced(
                good.clone(),
                0,
                ("0.weight", "F32", vec![2, 3], f32_bytes(&[0.1; 6])),
            ),
            "0.weight",
            "expected shape [3, 2], got [2, 3]",
        ),
        (
            replaced(good.clone(), 1, ("0.bias", "I32", vec![3], vec![0; 12])),
            "0.bias",
            "dtype I32",
        ),
        (
            replaced(
                good.clone(),
                3,
                ("2.bias", "F32", vec![1], f32_bytes(&[f32::NAN])),
            ),
            "2.bias",
            "not a finite number",
        ),
    ];
    for (tensors, name, says) in cases {
        let response = import(&app, "strict", safetensors(&tensors, None)).await;

        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(problem.errors[0].field, name, "{problem:?}");
        assert!(
            problem.errors[0].message.contains(says),
            "{says}: {problem:?}"
        );
    }
    assert_eq!(app.get_ok("/v1/models/strict").await["versions"], json!([]));
}

#[tokio::test]
async fn damaged_or_foreign_bodies_are_a_422_saying_what_is_wrong() {
    let app = TestApp::spawn().await;
    tanh_model(&app, "damaged").await;
    let good = safetensors(&tanh_2_3_1(0.1), None);
    let mut absurd = good.clone();
    absurd[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let cases: [(Vec<u8>, &str); 4] = [
        (good[..good.len() - 5].to_vec(), "truncated"),
        (absurd, "header length says 18446744073709551615 bytes"),
        (b"{\"inputs\": [[0, 1]]}".to_vec(), "not a safetensors file"),
        (b"abc".to_vec(), "8-byte header length"),
    ];
    for (body, says) in cases {
        let response = import(&app, "damaged", body).await;

        let problem = assert_problem(response, 422, "validation_failed").await;
        assert!(problem.detail.contains(says), "{says}: {problem:?}");
    }
    let wrong_spec = safetensors(
        &tanh_2_3_1(0.1),
        Some(json!({"format": "mlp-lab.model.v1",
                    "spec": "{\"layers\":[2,4,1],\"activations\":[\"tanh\"],\"output\":\"sigmoid\"}"})),
    );
    let problem = assert_problem(
        import(&app, "damaged", wrong_spec).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem.errors[0].field, "__metadata__.spec");
}

#[tokio::test]
async fn an_import_of_another_media_type_is_415_and_too_large_413() {
    let mut config = Config::for_tests();
    config.limits.max_weights_upload_bytes = mlp_lab::config::ByteSize(64);
    let app = TestApp::spawn_with(config).await;
    tanh_model(&app, "m").await;

    let json_body = app
        .post_raw("/v1/models/m/versions", "{}", Some("application/json"))
        .await;
    let large = import(&app, "m", safetensors(&tanh_2_3_1(0.1), None)).await;

    assert_problem(json_body, 415, "unsupported_media_type").await;
    let problem = assert_problem(large, 413, "payload_too_large").await;
    assert!(
        problem.detail.contains("--max-weights-upload-bytes"),
        "{problem:?}"
    );
}

#[tokio::test]
async fn weights_and_onnx_of_a_missing_version_are_404_and_of_an_untrained_model_409() {
    let app = TestApp::spawn().await;
    tanh_model(&app, "fresh").await;
    trained(
        &app,
        json!({"name": "done", "layers": [2, 3, 1], "output": "sigmoid"}),
    )
    .await;

    for what in ["weights", "onnx"] {
        assert_problem(
            app.get(&format!("/v1/models/fresh/versions/1/{what}"))
                .await,
            409,
            "model_not_trained",
        )
        .await;
        assert_problem(
            app.get(&format!("/v1/models/done/versions/2/{what}")).await,
            404,
            "not_found",
        )
        .await;
        assert_problem(
            app.get(&format!("/v1/models/ghost/versions/1/{what}"))
                .await,
            404,
            "not_found",
        )
        .await;
    }
    assert_problem(
        import(&app, "ghost", safetensors(&tanh_2_3_1(0.1), None)).await,
        404,
        "not_found",
    )
    .await;
}

/// A protobuf field as read back: (field number, varint or bytes).
#[derive(Debug)]
enum Field<'a> {
    Int(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

/// The top-level fields of a protobuf message (wire types 0, 2 and 5 are all ONNX uses).
fn fields(b: &[u8]) -> Vec<(u64, Field<'_>)> {
    fn varint(b: &[u8], at: &mut usize) -> u64 {
        let mut v = 0;
        for shift in (0..64).step_by(7) {
            let byte = b[*at];
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        v
    }
    let (mut at, mut out) = (0, Vec::new());
    while at < b.len() {
        let key = varint(b, &mut at);
        let field = match key & 7 {
            0 => Field::Int(varint(b, &mut at)),
            2 => {
                let n = usize::try_from(varint(b, &mut at)).expect("a length");
                at += n;
                Field::Bytes(&b[at - n..at])
            }
            5 => {
                at += 4;
                Field::Fixed32
            }
            w => panic!("unexpected wire type {w}"),
        };
        out.push((key >> 3, field));
    }
    assert_eq!(at, b.len(), "the message ends where its last field does");
    out
}

fn all_bytes<'a>(f: &[(u64, Field<'a>)], n: u64) -> Vec<&'a [u8]> {
    f.iter()
        .filter_map(|(k, v)| match v {
            Field::Bytes(b) if *k == n => Some(*b),
            _ => None,
        })
        .collect()
}

fn int(f: &[(u64, Field<'_>)], n: u64) -> Option<u64> {
    f.iter().find_map(|(k, v)| match v {
        Field::Int(i) if *k == n => Some(*i),
        _ => None,
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("UTF-8")
}

#[tokio::test]
async fn the_onnx_export_is_a_model_proto_of_opset_17_with_the_expected_graph() {
    let app = TestApp::spawn().await;
    let name = trained(
        &app,
        json!({"name": "ox", "layers": [2, 5, 2], "activation": "prelu", "output": "softmax",
               "batch_norm": true}),
    )
    .await;

    let (headers, bytes) = bytes_of(&app, &format!("/v1/models/{name}/versions/1/onnx")).await;

    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"ox-v1.onnx\""
    );
    // ModelProto: ir_version = 1, graph = 7, opset_import = 8 (domain 1, version 2).
    let model = fields(&bytes);
    assert_eq!(int(&model, 1), Some(8));
    let opset = fields(all_bytes(&model, 8)[0]);
    assert_eq!(int(&opset, 2), Some(17));
    // GraphProto: node = 1 (op_type 4), initializer = 5 (dims 1, name 8), input 11, output 12.
    let graph = fields(all_bytes(&model, 7)[0]);
    let ops: Vec<String> = all_bytes(&graph, 1)
        .into_iter()
        .map(|n| text(all_bytes(&fields(n), 4)[0]))
        .collect();
    assert_eq!(
        ops,
        [
            "Sub",
            "Mul",
            "Gemm",
            "BatchNormalization",
            "PRelu",
            "Gemm",
            "Softmax"
        ]
    );
    let inits: Vec<(String, Vec<u64>)> = all_bytes(&graph, 5)
        .into_iter()
        .map(|t| {
            let f = fields(t);
            let dims = f.iter().filter_map(|(k, v)| match v {
                Field::Int(d) if *k == 1 => Some(*d),
                _ => None,
            });
            (text(all_bytes(&f, 8)[0]), dims.collect())
        })
        .collect();
    assert!(
        inits.contains(&("0.weight".into(), vec![5, 2])),
        "{inits:?}"
    );
    assert!(
        inits.contains(&("1.running_var".into(), vec![5])),
        "{inits:?}"
    );
    assert!(inits.contains(&("2.weight".into(), vec![5])), "{inits:?}");
    assert!(
        inits.contains(&("3.weight".into(), vec![2, 5])),
        "{inits:?}"
    );
    let input = fields(all_bytes(&graph, 11)[0]);
    let output = fields(all_bytes(&graph, 12)[0]);
    assert_eq!(text(all_bytes(&input, 1)[0]), "input");
    assert_eq!(text(all_bytes(&output, 1)[0]), "output");
}

#[tokio::test]
async fn an_imported_version_survives_a_restart_as_an_import() {
    let dir = std::env::temp_dir().join(format!("mlp-lab-api-{}", uuid::Uuid::now_v7()));
    let config = Config {
        ephemeral: false,
        data_dir: dir.clone(),
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(config.clone()).await;
    tanh_model(&app, "kept").await;
    import(&app, "kept", safetensors(&tanh_2_3_1(0.25), None)).await;
    let before = app
        .post_ok(
            "/v1/models/kept/predict",
            &json!({"inputs": [[0.5, -1.5]]}),
            200,
        )
        .await;
    drop(app);

    let app = TestApp::spawn_with(config).await;

    let after = app
        .post_ok(
            "/v1/models/kept/predict",
            &json!({"inputs": [[0.5, -1.5]]}),
            200,
        )
        .await;
    assert_eq!(after["outputs"], before["outputs"]);
    // u = 0.25·(0.5 − 1.5) + 0.25 = 0, so z = 0.25 and p = σ(0.25) > 0.5: class 1.
    assert_eq!(after["labels"], json!([1]));
    let version = app.get_ok("/v1/models/kept/versions/1").await;
    assert_eq!(version["source"], "import");
    assert_eq!(version["metrics"], Value::Null);
    let _ = std::fs::remove_dir_all(dir);
}
