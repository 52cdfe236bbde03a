//! The HTTP layer: the only layer that knows HTTP. This file wires the application (the
//! [`router`] over [`routes`], wrapped in the [`middleware`]) and serves it ([`serve`],
//! [`serve_loading`]); [`state`] builds the parts of the service that handlers reach.
//!
//! Handlers, one file per resource (`datasets`, `models`, `jobs`, `history`, `events`,
//! `experiments`, `plots`, `predict`, `weights`, `health`, `storage`, `dashboard`, and `v2` for
//! the Open Inference Protocol), decode a request with the [`extract`]ors, call the layers
//! below, and encode the answer; every error becomes one JSON shape in [`error`].

pub mod blocking;
pub mod dashboard;
mod datasets;
pub mod error;
mod events;
mod experiments;
pub mod extract;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz;
mod health;
mod history;
mod jobs;
pub mod metrics;
pub mod middleware;
mod models;
mod openapi;
mod plots;
mod predict;
#[cfg(test)]
mod predict_decode_tests;
mod readiness;
pub mod routes;
mod send_timeout;
mod server;
pub mod state;
mod storage;
mod v2;
pub mod views;
mod weights;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
pub use error::{ApiError, FieldError, Problem, V2Error};
pub use extract::{AppJson, AppPath, AppQuery};
pub use metrics::Metrics;
use middleware::auth;
pub use middleware::auth::Auth;
use middleware::body_limit;
pub use middleware::body_limit::{method_with_body_limit, with_body_limit, BodyLimit};
use middleware::gate::GateLayer;
use middleware::problem_json::{self, ProblemJsonOnly};
pub use middleware::request_id::REQUEST_ID_HEADER;
use middleware::request_id::{self, MakeRequestUuidV7};
pub use openapi::OPENAPI_YAML;
pub use routes::{route_table, BodyGroup};
pub use state::{AppState, StartError, JOB_STOP_WAIT, LOADING_RETRY_AFTER_SECS};

/// The whole application: every route with its body limit, wrapped in [`with_service_layers`].
pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    let mut app = Router::new();
    for route in routes::routes() {
        let limit = match route.group {
            BodyGroup::Default => BodyLimit::body(limits),
            BodyGroup::DatasetUpload => BodyLimit::dataset_upload(limits),
            BodyGroup::Predict => BodyLimit::predict(limits),
            BodyGroup::WeightsUpload => BodyLimit::weights_upload(limits),
        };
        let endpoint = method_with_body_limit(route.endpoint, limit);
        app = app.route(route.path, endpoint);
    }
    with_layers(
        app.with_state(state.clone()),
        &state.config,
        Arc::clone(&state.auth),
        state.metrics.clone(),
    )
}

/// Adds what every response passes through to `routes`: the 404 and 405 fallbacks, request
/// ids, tracing, metrics, CORS as configured, problem+json for bare errors, the request
/// timeout and panic catching; every route open and the metrics thrown away.
///
/// Public so that tests can wrap routes of their own in exactly what [`router`] uses. Call it
/// once all routes are added: the 405 fallback applies to the routes that exist when it runs.
pub fn with_service_layers(routes: Router, config: &Config) -> Router {
    with_layers(routes, config, Arc::new(Auth::open()), Metrics::new())
}

/// The layers, from the outside in: a client's `x-request-id` dropped unless it is short and
/// plain, a request id set (a UUIDv7 when none is left), `Authorization` marked sensitive, the
/// tracing span, the id copied to the response, the request metrics ([`metrics`]), the
/// header-size limit ([`limit::LimitHeaderBytes`]), CORS when
/// origins are configured ([`cors`]), the bearer-token check ([`auth`]; after CORS so that
/// preflights need no token), problem+json for bare errors, the framing RFC 9112 requires a
/// server to refuse ([`middleware::framing`]), the timeout, panic catching.
fn with_layers(routes: Router, config: &Config, auth: Arc<Auth>, metrics: Metrics) -> Router {
    // `Router::layer` wraps each route (and the fallbacks) after routing, so every layer here
    // sees the request's `MatchedPath`.
    routes
        .fallback(problem_json::route_not_found)
        .method_not_allowed_fallback(problem_json::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .map_request(request_id::drop_unusable_request_id)
                .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuidV7))
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                ]))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_id::request_span)
                        .on_response(request_id::log_response),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
                .layer(GateLayer(middleware::metrics::Track(metrics)))
                .layer(GateLayer(body_limit::LimitHeaderBytes(
                    config.max_header_bytes,
                )))
                .option_layer(middleware::cors::layer(&config.access.cors_origins))
                .layer(GateLayer(auth::RequireToken(auth)))
                .layer(GateLayer(ProblemJsonOnly))
                .layer(GateLayer(middleware::framing::Framing))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    config.request_timeout(),
                ))
                .layer(CatchPanicLayer::custom(problem_json::panic_response)),
        )
}

/// Serves `state`'s application on `listener` until `shutdown` completes, then stops
/// accepting, finishes the requests in flight and returns.
///
/// Marks the state ready once it is accepting, and not ready as soon as `shutdown` completes,
/// so a load balancer stops sending traffic while in-flight requests finish.
///
/// # Errors
/// The I/O error that stopped the server.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let limits = server::ConnectionLimits::of(&state.config);
    state.set_ready(true);
    let signal = async move {
        shutdown.await;
        stop(&state).await;
    };
    server::serve_router(listener, app, limits, signal).await
}

/// The first half of a graceful shutdown: not ready any more, queued and running jobs
/// interrupted and written through (so their event streams end too); then the server stops
/// accepting and finishes the requests in flight.
async fn stop(state: &AppState) {
    state.set_ready(false);
    tracing::info!("shutting down: interrupting jobs, then finishing the requests in flight");
    state.jobs.shutdown(JOB_STOP_WAIT).await;
}

/// Serves on `listener` at once, while `config`'s data directory loads on a blocking
/// thread: meanwhile `/healthz` and `/v2/health/live` answer 200, and `/readyz` and every
/// other route 503 with `Retry-After` (in the `{"error"}` shape under `/v2`). Once loaded, serves the whole application (as [`serve`] does) until
/// `shutdown` completes.
///
/// # Errors
/// [`StartError`] when the data directory cannot be loaded (the listener is closed then),
/// or the server fails.
pub async fn serve_loading(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let app: Arc<OnceLock<(AppState, Router)>> = Arc::new(OnceLock::new());
    let front = Router::new().fallback({
        let app = Arc::clone(&app);
        move |request: Request| {
            let loaded = app.get().map(|(_, router)| router.clone());
            async move {
                match loaded {
                    Some(router) => match router.oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                    None => while_loading(request.uri().path()),
                }
            }
        }
    });
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let signal = {
        let app = Arc::clone(&app);
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
            if let Some((state, _)) = app.get() {
                stop(state).await;
            }
        }
    };
    let limits = server::ConnectionLimits::of(&config);
    let server = tokio::spawn(server::serve_router(listener, front, limits, signal));
    let stopper = tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        }
    });
    let started = std::time::Instant::now();
    let span = tracing::Span::current();
    let loaded = tokio::task::spawn_blocking(move || span.in_scope(|| AppState::new(config)))
        .await
        .map_err(|_| StartError::LoadPanicked)
        .and_then(|loaded| loaded);
    let result = match loaded {
        Ok(state) => {
            let _ = app.set((state.clone(), router(state.clone())));
            state.set_ready(true);
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                unavailable = state.registry.unavailable().len() + state.jobs.unavailable().len(),
                "loaded the stored data; ready"
            );
            Ok(())
        }
        Err(error) => {
            let _ = stop_tx.send(true);
            Err(error)
        }
    };
    let served = server.await;
    stopper.abort();
    result?;
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(StartError::Serve(error)),
        Err(_) => Err(StartError::LoadPanicked),
    }
}

/// The answer while loading: `/healthz` is alive, everything else is 503 with Retry-After.
fn while_loading(path: &str) -> Response {
    if path == "/healthz" {
        return axum::Json(health::HealthStatus { status: "ok" }).into_response();
    }
    // The Open Inference Protocol's liveness probe, and its error shape on its own paths.
    if path == "/v2/health/live" {
        return axum::Json(v2::Live { live: true }).into_response();
    }
    let error = ApiError::unavailable("the service is loading its stored data; retry shortly");
    let mut response = if error::is_v2_path(path) {
        V2Error::from(error).into_response()
    } else {
        error.into_response()
    };
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(LOADING_RETRY_AFTER_SECS),
    );
    response
}
