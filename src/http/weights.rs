//! A version's weights in and out: `.safetensors` download and import, ONNX export.
//!
//! Both downloads are `application/octet-stream` (neither format has a registered media
//! type) with `Content-Disposition: attachment; filename="<model>-v<version>.<ext>"`. The
//! import takes the file as the raw body, with `Content-Type: application/octet-stream` or
//! none (what `curl --data-binary` and `requests.post(data=…)` send); its limit is
//! `--max-weights-upload-bytes`, and it is read no further than its header allows
//! ([`super::extract::weights`]), at most `--max-concurrent-imports` at once. The formats are
//! in `nn::serialize`, `nn::header`, `nn::import` and `nn::onnx`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::blocking::blocking;
use super::error::{ApiError, IMPORT_RETRY_AFTER};
use super::extract::media_type::media_type;
use super::extract::weights::read_weights;
use super::extract::AppPath;
use super::state::AppState;
use super::views::{created, VersionView};
use crate::nn::onnx::to_onnx;
use crate::nn::serialize::to_safetensors;
use crate::registry::{ModelEntry, Version};

/// The media type of both downloads and of the import's body.
pub const OCTET_STREAM: &str = "application/octet-stream";

fn attachment(bytes: Vec<u8>, entry: &ModelEntry, version: &Version, ext: &str) -> Response {
    // Model names are [A-Za-z0-9._-], so the file name needs no quoting.
    let disposition = format!(
        "attachment; filename=\"{}-v{}.{ext}\"",
        entry.record.name, version.info.version
    );
    match HeaderValue::from_str(&disposition) {
        Ok(disposition) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM)),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

/// `GET /v1/models/{model}/versions/{version}/weights`
pub(crate) async fn download(
    State(state): State<AppState>,
    AppPath((model, version)): AppPath<(String, u32)>,
) -> Result<Response, ApiError> {
    let (entry, found) = state.registry.version(&model, Some(version))?;
    let net = Arc::clone(&found.model);
    let bytes = blocking(move || Ok(to_safetensors(&net)?)).await?;
    Ok(attachment(bytes, &entry, &found, "safetensors"))
}

/// `GET /v1/models/{model}/versions/{version}/onnx`
pub(crate) async fn onnx(
    State(state): State<AppState>,
    AppPath((model, version)): AppPath<(String, u32)>,
) -> Result<Response, ApiError> {
    let (entry, found) = state.registry.version(&model, Some(version))?;
    let (net, name, v) = (
        Arc::clone(&found.model),
        entry.record.name.clone(),
        found.info.version,
    );
    let bytes = blocking(move || {
        let metadata = [
            (
                "mlp-lab.labels",
                serde_json::to_string(&net.labels).map_err(ApiError::internal)?,
            ),
            (
                "mlp-lab.task",
                serde_json::to_string(&net.task).map_err(ApiError::internal)?,
            ),
            (
                "mlp-lab.spec",
                serde_json::to_string(&net.spec).map_err(ApiError::internal)?,
            ),
        ];
        Ok(to_onnx(&net, &name, v, &metadata))
    })
    .await?;
    Ok(attachment(bytes, &entry, &found, "onnx"))
}

/// 415 unless the body is `application/octet-stream` or has no `Content-Type`.
fn require_octet_stream(headers: &HeaderMap) -> Result<(), ApiError> {
    match media_type(headers) {
        None => Ok(()),
        Some(m) if m == OCTET_STREAM => Ok(()),
        Some(_) => Err(ApiError::UnsupportedMediaType {
            expected: OCTET_STREAM,
            given: headers
                .get(header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        }),
    }
}

/// `POST /v1/models/{model}/versions`: 201 with `Location` and the new version.
pub(crate) async fn import(
    State(state): State<AppState>,
    AppPath(model): AppPath<String>,
    request: Request,
) -> Result<Response, ApiError> {
    require_octet_stream(request.headers())?;
    // 404 before reading a large body for a model that does not exist.
    let spec = state.registry.model(&model)?.record.spec.clone();
    // Held until the version is stored: the file is in memory until then.
    let _slot = state
        .imports
        .try_acquire()
        .map_err(|_| ApiError::TooManyImports {
            max: state.config.max_concurrent_imports,
            retry_after: IMPORT_RETRY_AFTER,
        })?;
    let bytes = read_weights(request, spec).await?;
    let registry = Arc::clone(&state.registry);
    let (entry, version) = blocking(move || Ok(registry.import_version(&model, &bytes)?)).await?;
    Ok(created(
        format!(
            "/v1/models/{}/versions/{}",
            entry.record.id, version.info.version
        ),
        VersionView::new(&version),
    ))
}
