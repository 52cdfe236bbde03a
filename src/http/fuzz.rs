//! Entry points for the `cargo fuzz` targets in `fuzz/`: each feeds arbitrary bytes through
//! the decoding and validation a handler or the loader does, without HTTP or a registry.
//! None may panic, whatever the bytes; the results are dropped. Not part of the API.

use row_json::{parse_numbers, parse_predict, PredictStream};
use serde_json::Value;

use super::datasets::{ingest_json, DatasetRequest};
use super::extract::{from_json_slice, from_json_value};
use super::models::CreateModel;
use super::predict::{PredictBody, PredictRequest};
use super::v2::infer::decode;
use crate::config::Limits;
use crate::experiments::ExperimentRequest;
use crate::jobs::{StoredJob, WarmStart};
use crate::nn::{Activation, Head, ModelSpec, NetworkLimits, Task, TrainConfig};
use crate::registry::records::{DatasetFile, StoredVersion};
use crate::registry::{csv, ModelRecord};
use crate::store::envelope::{format_of, open, sha256_hex};

/// The body of `POST /v1/datasets` as JSON: decoded and ingested (not registered).
pub fn dataset_json(bytes: &[u8]) {
    if let Ok(req) = from_json_slice::<DatasetRequest>(bytes) {
        let _ = ingest_json(req, &Limits::default());
    }
}

/// A CSV upload of `POST /v1/datasets`. The first byte picks the query: the target column
/// (none, `y` or the first) and the task (none or each of them).
pub fn dataset_csv(bytes: &[u8]) {
    let Some((&query, body)) = bytes.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    let first = text
        .lines()
        .next()
        .and_then(|l| l.split(',').next())
        .unwrap_or("");
    let target = match query % 3 {
        0 => None,
        1 => Some("y"),
        _ => Some(first),
    };
    let task = match (query / 3) % 4 {
        0 => None,
        1 => Some(Task::Classification),
        2 => Some(Task::Regression),
        _ => Some(Task::MultiLabel),
    };
    let _ = csv::from_csv(text, target, task, &Limits::default());
}

/// The body of `POST /v1/models`: decoded, turned into a spec and validated.
pub fn model_json(bytes: &[u8]) {
    let Ok(req) = from_json_slice::<CreateModel>(bytes) else {
        return;
    };
    if let Ok((_, spec)) = req.into_spec() {
        let _ = spec.validate(&NetworkLimits::default());
    }
}

/// The body of `POST /v1/jobs` as the handler takes it apart: `model`, `dataset` (an id or
/// an inline dataset, ingested), `warm_start`, and the rest a validated `TrainConfig`.
pub fn job_json(bytes: &[u8]) {
    let Ok(Value::Object(mut body)) = from_json_slice::<Value>(bytes) else {
        return;
    };
    let _ = body.remove("model");
    if let Some(warm) = body.remove("warm_start") {
        let _ = from_json_value::<Option<WarmStart>>(warm);
    }
    if let Some(dataset @ Value::Object(_)) = body.remove("dataset") {
        if let Ok(req) = from_json_value::<DatasetRequest>(dataset) {
            let _ = ingest_json(req, &Limits::default());
        }
    }
    if let Ok(config) = from_json_value::<TrainConfig>(Value::Object(body)) {
        let _ = config.validate();
    }
}

/// The body of `POST /v1/experiments` as the handler takes it apart: `dataset` (an id or an
/// inline dataset, ingested), then the request, planned into cells (within the default job
/// limit) whose specs and training configurations are validated.
pub fn experiment_json(bytes: &[u8]) {
    let Ok(Value::Object(mut body)) = from_json_slice::<Value>(bytes) else {
        return;
    };
    if let Some(dataset @ Value::Object(_)) = body.remove("dataset") {
        if let Ok(req) = from_json_value::<DatasetRequest>(dataset) {
            let _ = ingest_json(req, &Limits::default());
        }
    }
    let Ok(request) = from_json_value::<ExperimentRequest>(Value::Object(body)) else {
        return;
    };
    if let Ok(cells) = request.plan(
        Limits::default().max_experiment_jobs,
        Limits::default().max_layers,
    ) {
        for cell in cells {
            let _ = cell.spec.validate(&NetworkLimits::default());
            let _ = cell.config.validate();
        }
    }
}

/// The body of `POST /v1/models/{model}/predict`: the fast path, then serde; the matrix for
/// a model of 1 to 8 inputs. When the fast path takes a body, serde must read the same
/// numbers from it.
pub fn predict_json(bytes: &[u8]) {
    let whole = parse_predict(bytes);
    // Read as it arrives, in pieces of a size taken from the body, it reads the same (or, for
    // a body whose members around the rows are longer than the stream keeps, 4 KB after the
    // rows, not at all).
    for size in [1, 3, 1 + bytes.first().map_or(0, |&b| usize::from(b)), 64] {
        let mut stream = PredictStream::new(Some(bytes.len()));
        for piece in bytes.chunks(size) {
            stream.feed(piece);
        }
        match stream.finish() {
            Ok(streamed) => {
                let whole = whole
                    .as_ref()
                    .expect("the stream took a body the parser refuses");
                assert_eq!(
                    (streamed.rows, streamed.width, streamed.version),
                    (whole.rows, whole.width, whole.version)
                );
                assert!(
                    streamed
                        .values
                        .iter()
                        .zip(&whole.values)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "streamed values differ"
                );
            }
            Err(fallback) => {
                assert!(
                    whole.is_none() || bytes.len() > 4096,
                    "the stream refused a short body the parser takes"
                );
                // What the general path makes of the fallback is what it makes of the body.
                assert_eq!(
                    PredictBody::outcome(PredictBody::from_fallback(fallback)),
                    PredictBody::outcome(PredictBody::decode(bytes)),
                    "the fallback reads otherwise than the body"
                );
            }
        }
    }
    if let Some(fast) = whole {
        let slow = from_json_slice::<PredictRequest>(bytes)
            .unwrap_or_else(|e| panic!("the fast path took a body serde refuses: {e:?}"));
        assert_eq!(slow.version, fast.version, "version");
        let flat: Vec<f32> = slow.inputs.iter().flatten().map(|&v| v as f32).collect();
        assert_eq!(slow.inputs.len(), fast.rows, "rows");
        assert!(
            flat.iter()
                .zip(&fast.values)
                .all(|(a, b)| a.to_bits() == b.to_bits())
                && flat.len() == fast.values.len(),
            "values differ"
        );
    }
    let _ = parse_numbers(bytes);
    if let Ok(body) = PredictBody::decode(bytes) {
        let width = bytes.len() % 8 + 1;
        let _ = body.into_matrix(width);
    }
}

/// A `/v2/.../infer` body. The first three bytes are the call's arguments: the model's width
/// (1 + b0 % 16) and `Inference-Header-Content-Length` (absent when b1 and b2 are 0xff, else
/// the u16 they make, little-endian); the rest is the body.
pub fn infer(bytes: &[u8]) {
    let [b0, b1, b2, body @ ..] = bytes else {
        return;
    };
    let width = 1 + usize::from(b0 % 16);
    let length = match u16::from_le_bytes([*b1, *b2]) {
        u16::MAX => None,
        n => Some(usize::from(n)),
    };
    let _ = decode(body, length, width, 1024);
}

/// The spec the loader targets check files against: 2 inputs, 3 and 4 hidden (tanh, relu)
/// with batch norm, 3 softmax outputs.
#[must_use]
pub fn small_spec() -> ModelSpec {
    ModelSpec {
        layers: vec![2, 3, 4, 3],
        activations: vec![Activation::Tanh, Activation::Relu],
        output: Head::Softmax,
        init: None,
        dropout: 0.0,
        batch_norm: true,
    }
}

/// A model file: read as it stands, as one of [`small_spec`], and imported as its weights.
pub fn model_file(bytes: &[u8]) {
    let _ = crate::nn::serialize::from_safetensors(bytes);
    let spec = small_spec();
    let _ = crate::nn::serialize::from_safetensors_of(bytes, &spec);
    let _ = crate::nn::import::import_safetensors(&spec, bytes);
}

/// A stored record: opened as each kind. With the first byte odd, the rest is taken as the
/// body of an envelope of each kind with a correct checksum, so that the body's decoding is
/// reached too; otherwise the rest is the whole file.
pub fn record(bytes: &[u8]) {
    let Some((&mode, rest)) = bytes.split_first() else {
        return;
    };
    for kind in ["model", "version", "dataset", "job"] {
        let sealed;
        let file = if mode % 2 == 1 {
            let mut out = format!(
                r#"{{"format":"{}","sha256":"{}","body":"#,
                format_of(kind),
                sha256_hex(rest)
            )
            .into_bytes();
            out.extend_from_slice(rest);
            out.push(b'}');
            sealed = out;
            &sealed[..]
        } else {
            rest
        };
        match kind {
            "model" => {
                let _ = open::<ModelRecord>(kind, file);
            }
            "version" => {
                let _ = open::<StoredVersion>(kind, file);
            }
            "dataset" => {
                if let Ok(f) = open::<DatasetFile>(kind, file) {
                    let _ = f.into_dataset();
                }
            }
            _ => {
                let _ = open::<StoredJob>(kind, file);
            }
        }
    }
}

/// A few valid inputs per target, `(target, file name, bytes)`: the fuzzer's seed corpora
/// (`fuzz/seeds/<target>/`, written by the test `fuzz_seeds_are_accepted` when
/// `MLP_LAB_WRITE_FUZZ_SEEDS` names a directory).
///
/// # Panics
/// Never with this crate's own records (they always serialize).
#[must_use]
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use std::sync::Arc;

    use crate::registry::{DatasetSource, Registry};
    use crate::store::{MemoryStore, Store};

    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_owned(), bytes));
    };
    let xor = r#"{"features": [[0,0],[0,1],[1,0],[1,1]], "targets": [0,1,1,0]}"#;
    add("dataset_json", "rows", xor.into());
    add(
        "dataset_json",
        "labels",
        br#"{"name":"l","features":[[1.5,2],[3,-4e2]],"targets":["a","b"],"task":"classification","feature_names":["p","q"]}"#.to_vec(),
    );
    add(
        "dataset_json",
        "generator",
        br#"{"name": "spirals", "generator": {"kind": "spirals", "samples": 60, "classes": 3, "noise": 0.1, "seed": 1}}"#.to_vec(),
    );
    add("dataset_json", "builtin", br#"{"builtin":"iris"}"#.to_vec());
    add(
        "dataset_csv",
        "last",
        b"\0x1,x2,y\n0,0,a\n1,1,b\n0.5,-2,a\n".to_vec(),
    );
    add(
        "dataset_csv",
        "named_regression",
        b"\x04y,x\n1.5,2\n\"3\",4e1\n".to_vec(),
    );
    add(
        "model_json",
        "xor",
        br#"{"name": "xor-sigmoid", "layers": [2, 4, 1], "activation": "sigmoid", "output": "sigmoid"}"#.to_vec(),
    );
    add(
        "model_json",
        "full",
        br#"{"name":"m","layers":[3,8,8,2],"activations":["tanh","relu"],"output":"softmax","init":"he","dropout":0.25,"batch_norm":true}"#.to_vec(),
    );
    add(
        "job_json",
        "readme",
        format!(
            r#"{{"model": "xor-sigmoid", "dataset": {xor}, "epochs": 1500, "batch_size": 4, "validation_split": 0, "standardize": false, "optimizer": {{"kind": "adam", "learning_rate": 0.05}}, "warm_start": {{"version": 1}}}}"#
        )
        .into_bytes(),
    );
    add(
        "experiment_json",
        "readme",
        format!(
            r#"{{"name": "lab", "dataset": {xor}, "model": {{"layers": [2, 8, 2], "output": "softmax"}}, "training": {{"epochs": 20, "batch_size": 4, "validation_split": 0.25, "optimizer": {{"kind": "sgd", "learning_rate": 0.1, "momentum": 0.9}}}}, "grid": {{"activations": ["sigmoid", "relu", {{"name": "leaky_relu", "alpha": 0.01}}], "hidden_layers": [[8], [8, 8]], "inits": ["he_normal"], "dropout": [0, 0.2], "batch_norm": [false, true], "learning_rates": [0.1, 0.01]}}, "seeds": [1, 2]}}"#
        )
        .into_bytes(),
    );
    add(
        "predict_json",
        "rows",
        br#"{"inputs": [[0,0],[0,1],[1,0],[1,1]], "version": 2}"#.to_vec(),
    );
    add(
        "predict_json",
        "numbers",
        br#"{"inputs":[[1e-3,-2.5E+2,3]]}"#.to_vec(),
    );
    let json = br#"{"id":"7","inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}],"outputs":[{"name":"output","parameters":{"binary_data":true}}]}"#;
    let mut plain = vec![1, 0xff, 0xff];
    plain.extend_from_slice(json);
    add("infer", "json", plain);
    let head = br#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","parameters":{"binary_data_size":16}}],"parameters":{"binary_data_output":true}}"#;
    let length = u16::try_from(head.len()).unwrap_or(u16::MAX - 1);
    let mut binary = vec![1];
    binary.extend_from_slice(&length.to_le_bytes());
    binary.extend_from_slice(head);
    binary.extend_from_slice(&1.5f64.to_le_bytes());
    binary.extend_from_slice(&(-2.0f64).to_le_bytes());
    add("infer", "binary", binary);
    for (seed, spec) in [
        (1, small_spec()),
        (
            2,
            ModelSpec {
                batch_norm: false,
                ..small_spec()
            },
        ),
    ] {
        let model = crate::nn::Model::new(spec, seed).expect("a valid spec");
        let file = crate::nn::serialize::to_safetensors(&model).expect("serializes");
        add("model_file", &format!("model{seed}"), file);
    }
    // Records as the registry stores them: a dataset's and a model's.
    let store = Arc::new(MemoryStore::default());
    let registry = Registry::new(Arc::clone(&store) as Arc<dyn Store>, Limits::default());
    let rows: Vec<Vec<f64>> = vec![vec![0., 0.], vec![1., 1.]];
    let targets = vec![Value::from("a"), Value::from("b")];
    let ingested =
        crate::registry::ingest::from_rows(&rows, &targets, None, None, &Limits::default())
            .expect("ingests");
    let _ = registry.add_dataset(Some("d".into()), DatasetSource::Inline, ingested);
    let _ = registry.create_model("m".into(), small_spec());
    for prefix in ["datasets/", "models/"] {
        for key in store.list(prefix).unwrap_or_default() {
            if let Ok(Some(bytes)) = store.get(&key) {
                let kind = prefix.trim_end_matches("s/");
                let mut file = vec![0];
                file.extend_from_slice(&bytes);
                add("record", &format!("{kind}-file"), file);
                // The body alone, for the sealing mode.
                if let Some(at) = bytes.windows(8).position(|w| w == b"\"body\":{") {
                    let mut body = vec![1];
                    body.extend_from_slice(&bytes[at + 7..bytes.len() - 1]);
                    add("record", &format!("{kind}-body"), body);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &str, bytes: &[u8]) {
        match target {
            "dataset_json" => dataset_json(bytes),
            "dataset_csv" => dataset_csv(bytes),
            "model_json" => model_json(bytes),
            "job_json" => job_json(bytes),
            "experiment_json" => experiment_json(bytes),
            "predict_json" => predict_json(bytes),
            "infer" => infer(bytes),
            "model_file" => model_file(bytes),
            "record" => record(bytes),
            other => panic!("no target {other}"),
        }
    }

    /// Crashes the fuzzers found, each fixed: `(target, input)`.
    const FOUND: &[(&str, &[u8])] = &[
        (
            "dataset_json",
            br#"{"name": "spirals", "generator": {"kind": "spirals", "samples": 62, "classes": 0, "noise": 0.1, "seed": 0}}"#,
        ),
        (
            "predict_json",
            br#"{"inputs": [[-0]], "version": 2        , "version": 2       }"#,
        ),
        ("predict_json", br#"{"inputs":[[-0]] ,"version": 36.00  }"#),
    ];

    #[test]
    fn inputs_that_crashed_a_fuzz_target_do_not() {
        for (target, bytes) in FOUND {
            run(target, bytes);
        }
    }

    /// Every seed is taken by its target; `MLP_LAB_WRITE_FUZZ_SEEDS=fuzz/seeds` writes them.
    #[test]
    fn fuzz_seeds_are_accepted() {
        let seeds = seeds();
        for target in [
            "dataset_json",
            "dataset_csv",
            "model_json",
            "job_json",
            "experiment_json",
            "predict_json",
            "infer",
            "model_file",
            "record",
        ] {
            assert!(seeds.iter().any(|s| s.0 == target), "no seed for {target}");
        }
        for (target, _, bytes) in &seeds {
            run(target, bytes);
        }
        let model = seeds.iter().find(|s| s.0 == "model_file").expect("a file");
        crate::nn::serialize::from_safetensors_of(&model.2, &small_spec()).expect("loads");
        let job = seeds.iter().find(|s| s.0 == "job_json").expect("a job");
        assert!(from_json_slice::<Value>(&job.2).is_ok());
        // The experiment seed reaches the end of its target: every axis, 3×2×1×2×2×2 cells.
        let experiment = seeds
            .iter()
            .find(|s| s.0 == "experiment_json")
            .expect("one");
        let Ok(Value::Object(mut body)) = from_json_slice::<Value>(&experiment.2) else {
            panic!("not an object");
        };
        body.remove("dataset");
        let request: ExperimentRequest = from_json_value(Value::Object(body)).expect("decodes");
        assert_eq!(request.plan(200, 64).expect("plans").len(), 48);
        if let Some(dir) = std::env::var_os("MLP_LAB_WRITE_FUZZ_SEEDS") {
            for (target, name, bytes) in &seeds {
                let dir = std::path::Path::new(&dir).join(target);
                std::fs::create_dir_all(&dir).expect("mkdir");
                std::fs::write(dir.join(name), bytes).expect("write");
            }
        }
    }
}
