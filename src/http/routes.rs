//! The route table: every (method, path) the API serves, with its handler and body-limit
//! group. [`super::router`] is built from it, and a test compares it with `openapi.yaml`, so
//! the router and the description cannot disagree on the set of routes.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};

use super::state::AppState;
use super::{
    dashboard, datasets, events, experiments, health, history, jobs, models, openapi, plots,
    predict, storage, v2, weights,
};

/// Which body limit a route takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyGroup {
    /// `--max-body-bytes`.
    Default,
    /// `--max-dataset-upload-bytes`.
    DatasetUpload,
    /// `--max-predict-body-bytes`.
    Predict,
    /// `--max-weights-upload-bytes`.
    WeightsUpload,
}

/// One route.
#[derive(Debug)]
pub struct Route {
    /// Its method.
    pub method: Method,
    /// Its path, with `{parameters}` as in axum and OpenAPI.
    pub path: &'static str,
    /// Its body limit.
    pub group: BodyGroup,
    /// Its handler.
    pub endpoint: MethodRouter<AppState>,
}

fn route<H, T>(method: Method, path: &'static str, group: BodyGroup, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = match method {
        Method::POST => MethodFilter::POST,
        Method::DELETE => MethodFilter::DELETE,
        Method::PUT => MethodFilter::PUT,
        _ => MethodFilter::GET,
    };
    Route {
        method,
        path,
        group,
        endpoint: on(filter, handler),
    }
}

/// Every route of the API.
#[must_use]
pub fn routes() -> Vec<Route> {
    use BodyGroup::{DatasetUpload, Default, Predict, WeightsUpload};
    use Method as M;
    vec![
        route(M::GET, "/healthz", Default, health::healthz),
        route(M::GET, "/readyz", Default, health::readyz),
        route(M::GET, "/metrics", Default, health::metrics),
        route(M::GET, "/openapi.yaml", Default, openapi::openapi_yaml),
        // The browser dashboard: static files compiled in, public (they hold no data).
        route(M::GET, "/", Default, dashboard::index),
        route(M::GET, "/dashboard/{file}", Default, dashboard::asset),
        // The Open Inference Protocol (KServe v2); errors are `{"error": …}`.
        route(M::GET, "/v2", Default, v2::server_metadata),
        route(M::GET, "/v2/health/live", Default, v2::live),
        route(M::GET, "/v2/health/ready", Default, v2::ready),
        route(M::GET, "/v2/models/{model}", Default, v2::model_metadata),
        route(M::GET, "/v2/models/{model}/ready", Default, v2::model_ready),
        route(M::POST, "/v2/models/{model}/infer", Predict, v2::infer),
        route(
            M::GET,
            "/v2/models/{model}/versions/{version}",
            Default,
            v2::version_metadata,
        ),
        route(
            M::GET,
            "/v2/models/{model}/versions/{version}/ready",
            Default,
            v2::version_ready,
        ),
        route(
            M::POST,
            "/v2/models/{model}/versions/{version}/infer",
            Predict,
            v2::infer_version,
        ),
        route(M::POST, "/v1/datasets", DatasetUpload, datasets::create),
        route(M::GET, "/v1/datasets", Default, datasets::list),
        route(M::GET, "/v1/datasets/{id}", Default, datasets::show),
        route(M::DELETE, "/v1/datasets/{id}", Default, datasets::delete),
        route(M::POST, "/v1/models", Default, models::create),
        route(M::GET, "/v1/models", Default, models::list),
        route(M::GET, "/v1/models/{model}", Default, models::show),
        route(M::DELETE, "/v1/models/{model}", Default, models::delete),
        route(
            M::GET,
            "/v1/models/{model}/versions",
            Default,
            models::versions,
        ),
        route(
            M::GET,
            "/v1/models/{model}/versions/{version}",
            Default,
            models::version,
        ),
        route(
            M::POST,
            "/v1/models/{model}/versions",
            WeightsUpload,
            weights::import,
        ),
        route(
            M::GET,
            "/v1/models/{model}/versions/{version}/weights",
            Default,
            weights::download,
        ),
        route(
            M::GET,
            "/v1/models/{model}/versions/{version}/onnx",
            Default,
            weights::onnx,
        ),
        route(
            M::GET,
            "/v1/models/{model}/versions/{version}/plot.svg",
            Default,
            plots::version,
        ),
        route(
            M::POST,
            "/v1/models/{model}/predict",
            Predict,
            predict::predict,
        ),
        route(M::POST, "/v1/jobs", Default, jobs::create),
        route(M::GET, "/v1/jobs", Default, jobs::list),
        route(M::GET, "/v1/jobs/{id}", Default, jobs::show),
        route(M::GET, "/v1/jobs/{id}/metrics", Default, history::metrics),
        route(M::GET, "/v1/jobs/{id}/events", Default, events::events),
        route(M::GET, "/v1/jobs/{id}/plot.svg", Default, plots::job),
        route(
            M::GET,
            "/v1/experiments/{id}/plot.svg",
            Default,
            plots::experiment,
        ),
        route(M::POST, "/v1/jobs/{id}/cancel", Default, jobs::cancel),
        route(M::POST, "/v1/jobs/{id}/retry", Default, jobs::retry),
        route(M::POST, "/v1/experiments", Default, experiments::create),
        route(M::GET, "/v1/experiments", Default, experiments::list),
        route(M::GET, "/v1/experiments/{id}", Default, experiments::show),
        route(
            M::POST,
            "/v1/experiments/{id}/cancel",
            Default,
            experiments::cancel,
        ),
        route(
            M::GET,
            "/v1/storage/unavailable",
            Default,
            storage::unavailable,
        ),
    ]
}

/// The (method, path) of every route, for comparing with the API description.
#[must_use]
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().into_iter().map(|r| (r.method, r.path)).collect()
}
