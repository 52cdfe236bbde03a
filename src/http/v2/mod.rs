//! The Open Inference Protocol (KServe v2, as Triton serves it over HTTP), so that Triton and
//! KServe clients (`tritonclient.http`, say) can use mlp-lab's trained models.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v2` | `{"name", "version", "extensions": ["binary_tensor_data"]}` |
//! | `GET /v2/health/live`, `/v2/health/ready` | 200 `{"live": true}`, `{"ready": true}`; ready is 503 while starting or shutting down |
//! | `GET /v2/models/{model}[/versions/{version}]` | model metadata: `name`, `versions`, `platform`, `inputs`, `outputs` |
//! | `GET /v2/models/{model}[/versions/{version}]/ready` | 200 `{"name", "ready": true}` when there is a trained version to serve |
//! | `POST /v2/models/{model}[/versions/{version}]/infer` | inference, JSON or binary both ways ([`infer`]) |
//!
//! `{model}` is a model's name or id; `{version}` is a version number (`"1"`); without it the
//! latest version answers. Every model has one input, `input` (FP32, `[-1, d]`, raw features,
//! standardized with the version's statistics like `/v1` inputs) and the output `output`
//! (FP32, `[-1, k]`): exactly the `outputs` of `/v1/models/{model}/predict` (probabilities of
//! softmax and sigmoid heads, values of identity heads). Versions trained for classification
//! have a second output, `label` (BYTES, `[-1]`): the predicted class per row as the dataset
//! named it, as `/v1` `labels`.
//!
//! Errors are `{"error": "…"}` ([`V2Error`]): 404 for an unknown model or version, 400 for a
//! request that cannot be served, including a model that has no trained version yet (Triton's
//! answer to a model that is not ready), 413 for a body over `--max-predict-body-bytes`.

mod data;
pub(super) mod infer;
mod response;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde::Serialize;

use super::extract::{read_body, AppJson, AppPath};
use super::state::AppState;
use crate::http::error::{ApiError, V2Error};
use crate::nn::Task;
use crate::registry::{ModelEntry, Version};
use crate::serving::Selector;
use response::{OutputKind, Plan};

/// A body whose JSON part is at most this size, and whose binary part (the binary tensor
/// extension) is at most [`INLINE_BINARY_BYTES`], is decoded on the async worker; others on the
/// blocking pool. Parsing JSON numbers is what costs; the binary part is a copy.
const INLINE_BYTES: usize = 16 * 1024;

/// The binary part decoded on the async worker: 64 rows of 784 FP32 values (200 KB) and more,
/// a copy of a few tens of microseconds. Decoded on the blocking pool instead, such bodies took
/// one thread per request in flight, each with a malloc arena of its own that kept its freed
/// buffers, and the server's memory grew with the load.
const INLINE_BINARY_BYTES: usize = 256 * 1024;

/// The `platform` of every model's metadata.
pub const PLATFORM: &str = "mlp-lab";

/// `GET /v2`
#[derive(Debug, Serialize)]
pub struct ServerMetadata {
    /// `mlp-lab`.
    pub name: &'static str,
    /// The server's version.
    pub version: &'static str,
    /// The protocol extensions supported.
    pub extensions: Vec<&'static str>,
}

/// `GET /v2/health/live`
#[derive(Debug, Serialize)]
pub struct Live {
    /// Always `true`: the answer is the proof.
    pub live: bool,
}

/// `GET /v2/health/ready`
#[derive(Debug, Serialize)]
pub struct Ready {
    /// Always `true` in a 200.
    pub ready: bool,
}

/// `GET /v2/models/{model}[/versions/{version}]/ready`
#[derive(Debug, Serialize)]
pub struct ModelReady {
    /// The model's name.
    pub name: String,
    /// Always `true` in a 200.
    pub ready: bool,
}

/// One tensor of a model's metadata.
#[derive(Debug, Serialize)]
pub struct TensorMetadata {
    /// Its name.
    pub name: &'static str,
    /// `FP32` or `BYTES`.
    pub datatype: &'static str,
    /// `-1` for any number of rows.
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{model}[/versions/{version}]`
#[derive(Debug, Serialize)]
pub struct ModelMetadata {
    /// The model's name.
    pub name: String,
    /// The trained versions it describes, oldest first.
    pub versions: Vec<String>,
    /// [`PLATFORM`].
    pub platform: &'static str,
    /// `input`.
    pub inputs: Vec<TensorMetadata>,
    /// `output`, and `label` for classifiers.
    pub outputs: Vec<TensorMetadata>,
}

/// `GET /v2`
pub(crate) async fn server_metadata() -> AppJson<ServerMetadata> {
    AppJson(ServerMetadata {
        name: "mlp-lab",
        version: env!("CARGO_PKG_VERSION"),
        extensions: vec!["binary_tensor_data"],
    })
}

/// `GET /v2/health/live`
pub(crate) async fn live() -> AppJson<Live> {
    AppJson(Live { live: true })
}

/// `GET /v2/health/ready`
pub(crate) async fn ready(State(state): State<AppState>) -> Result<AppJson<Ready>, V2Error> {
    state.readiness().await?;
    Ok(AppJson(Ready { ready: true }))
}

/// `GET /v2/models/{model}`
pub(crate) async fn model_metadata(
    State(state): State<AppState>,
    AppPath(model): AppPath<String>,
) -> Result<AppJson<ModelMetadata>, V2Error> {
    let entry = state.registry.model(&model).map_err(ApiError::from)?;
    let versions = entry
        .versions
        .iter()
        .map(|v| v.info.version.to_string())
        .collect();
    let task = entry.versions.last().and_then(|v| v.model.task);
    Ok(AppJson(metadata(&entry, versions, task)))
}

/// `GET /v2/models/{model}/versions/{version}`
pub(crate) async fn version_metadata(
    State(state): State<AppState>,
    AppPath((model, version)): AppPath<(String, String)>,
) -> Result<AppJson<ModelMetadata>, V2Error> {
    let (entry, version) = find(&state, &model, Some(&version))?;
    let versions = vec![version.info.version.to_string()];
    Ok(AppJson(metadata(&entry, versions, version.model.task)))
}

/// `GET /v2/models/{model}/ready`
pub(crate) async fn model_ready(
    State(state): State<AppState>,
    AppPath(model): AppPath<String>,
) -> Result<AppJson<ModelReady>, V2Error> {
    let (entry, _) = find(&state, &model, None)?;
    Ok(AppJson(ModelReady {
        name: entry.record.name.clone(),
        ready: true,
    }))
}

/// `GET /v2/models/{model}/versions/{version}/ready`
pub(crate) async fn version_ready(
    State(state): State<AppState>,
    AppPath((model, version)): AppPath<(String, String)>,
) -> Result<AppJson<ModelReady>, V2Error> {
    let (entry, _) = find(&state, &model, Some(&version))?;
    Ok(AppJson(ModelReady {
        name: entry.record.name.clone(),
        ready: true,
    }))
}

/// `POST /v2/models/{model}/infer`
pub(crate) async fn infer(
    State(state): State<AppState>,
    AppPath(model): AppPath<String>,
    request: Request,
) -> Result<Response, V2Error> {
    run_infer(state, &model, None, request).await
}

/// `POST /v2/models/{model}/versions/{version}/infer`
pub(crate) async fn infer_version(
    State(state): State<AppState>,
    AppPath((model, version)): AppPath<(String, String)>,
    request: Request,
) -> Result<Response, V2Error> {
    run_infer(state, &model, Some(&version), request).await
}

/// Any `Content-Type` (or none, as `tritonclient` sends) is read as the protocol's body.
async fn run_infer(
    state: AppState,
    model: &str,
    version: Option<&str>,
    request: Request,
) -> Result<Response, V2Error> {
    let (entry, version) = find(&state, model, version)?;
    let json_length = infer::header_length(request.headers())?;
    let body = read_body(request).await?;
    let width = version.model.spec.inputs();
    let max_rows = state.config.limits.max_predict_rows;
    let json_bytes = json_length.unwrap_or(body.len()).min(body.len());
    let request = if json_bytes <= INLINE_BYTES && body.len() - json_bytes <= INLINE_BINARY_BYTES {
        infer::decode(&body, json_length, width, max_rows)?
    } else {
        off_runtime(move || infer::decode(&body, json_length, width, max_rows)).await?
    };
    let plan = Plan::new(
        outputs_of(version.model.task),
        request.outputs,
        request.binary_output,
    )?;
    let id = request.id;
    let answered = Arc::clone(&version);
    state
        .predictor
        .predict_then(&version, request.input, move |outputs| {
            response::encode(&entry, &answered, id.as_deref(), &plan, &outputs)
        })
        .await
}

/// The model `model` and its version `version` (the latest when `None`), or why it cannot
/// answer: a version that cannot serve (none trained yet, or its stored files unreadable) is
/// not ready (400); the latest is the latest that was stored.
fn find(
    state: &AppState,
    model: &str,
    version: Option<&str>,
) -> Result<(Arc<ModelEntry>, Arc<Version>), V2Error> {
    let selector = version.map_or(Selector::Latest, Selector::from_segment);
    Ok(state.predictor.resolve(model, selector)?)
}

/// The outputs a version of this task has.
fn outputs_of(task: Option<Task>) -> Vec<OutputKind> {
    if task == Some(Task::Classification) {
        vec![OutputKind::Output, OutputKind::Label]
    } else {
        vec![OutputKind::Output]
    }
}

fn metadata(entry: &ModelEntry, versions: Vec<String>, task: Option<Task>) -> ModelMetadata {
    let spec = &entry.record.spec;
    let width = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    ModelMetadata {
        name: entry.record.name.clone(),
        versions,
        platform: PLATFORM,
        inputs: vec![TensorMetadata {
            name: infer::INPUT,
            datatype: "FP32",
            shape: vec![-1, width(spec.inputs())],
        }],
        outputs: outputs_of(task)
            .into_iter()
            .map(|kind| TensorMetadata {
                name: kind.name(),
                datatype: kind.datatype(),
                shape: match kind {
                    OutputKind::Output => vec![-1, width(spec.outputs())],
                    OutputKind::Label => vec![-1],
                },
            })
            .collect(),
    }
}

/// Runs `work` on the blocking pool, keeping the request's span.
async fn off_runtime<T, F>(work: F) -> Result<T, V2Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, V2Error> + Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(|e| V2Error::from(ApiError::internal(e)))?
}
