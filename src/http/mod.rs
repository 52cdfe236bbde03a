//! The HTTP layer: the router, handlers per resource, extractors and the one error mapping.
//! It is the only layer that knows HTTP; handlers parse, call the layers below, and map.
//!
//! Every response passes through, from the outside in: a request id (`x-request-id`, kept
//! from the client or made up as a UUIDv7, and echoed), a tracing span carrying that id, the
//! rewrite of bare error responses into problem+json (into `{"error": …}` on the Open Inference
//! Protocol's `/v2` paths, see `v2`), the request timeout, and the catching of panics. Each
//! route group has its own body limit (see [`limit`]).

pub mod auth;
mod batching;
mod capacity;
mod cors;
pub mod dashboard;
mod datasets;
pub mod error;
mod error_map;
mod events;
mod experiments;
pub mod extract;
mod fallback;
#[doc(hidden)]
pub mod fuzz;
mod gate;
mod health;
mod jobs;
pub mod limit;
pub mod metrics;
mod models;
mod openapi;
mod plots;
mod predict;
#[cfg(test)]
mod predict_decode_tests;
pub mod routes;
mod server;
mod storage;
mod v2;
pub mod views;
mod weights;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use uuid::Uuid;

use crate::config::{AccessError, Config};
use crate::experiments::Experiments;
use crate::jobs::Jobs;
use crate::registry::{FileStore, NullStore, Registry, RegistryError, Store};
pub use auth::Auth;
pub use capacity::PredictionSlots;
pub use error::{ApiError, FieldError, Problem};
pub use extract::{AppJson, AppPath, AppQuery};
use fallback::ProblemJsonOnly;
use gate::GateLayer;
pub use limit::{method_with_body_limit, with_body_limit, BodyLimit};
pub use metrics::Metrics;
pub use openapi::OPENAPI_YAML;
pub use routes::{route_table, BodyGroup};

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler may reach, taken with `State<AppState>`: a handle to [`Shared`], whose
/// fields it dereferences to.
///
/// axum clones the state for every request, several times (the handler's extractor and each
/// middleware that takes it), so a clone is one reference count: with the fields cloned one
/// by one (a dozen handles, each an atomic count that both cores write), clones and drops
/// of the state took about 6 % of the server's time under a one-row prediction load.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state shared by every [`AppState`] handle.
#[derive(Debug)]
pub struct Shared {
    /// The configuration the service was started with.
    pub config: Arc<Config>,
    /// Datasets, models and versions.
    pub registry: Arc<Registry>,
    /// The training queue and its jobs.
    pub jobs: Jobs,
    /// Grids of jobs and their leaderboards.
    pub experiments: Experiments,
    /// This server's Prometheus metrics.
    pub metrics: Metrics,
    /// The slots of `--max-concurrent-predictions`.
    pub prediction_slots: PredictionSlots,
    /// Small predictions waiting to be computed together (`--batch-predictions`).
    pub batcher: batching::Batcher,
    auth: Arc<Auth>,
    ready: Arc<AtomicBool>,
    /// `None` with `--ephemeral`: nothing is written.
    write_probe: Option<Arc<health::WriteProbe>>,
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be opened.
    #[error("cannot open the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// What is stored cannot be loaded.
    #[error("cannot load the stored data: {0}")]
    Load(#[from] RegistryError),
    /// The configured tokens cannot be used.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Loading stopped on an internal error (a panic, logged).
    #[error("loading the stored data stopped on an internal error")]
    LoadPanicked,
    /// The server failed.
    #[error("the server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// How long a shutdown waits for running jobs to reach their next batch and be written.
pub const JOB_STOP_WAIT: Duration = Duration::from_secs(30);

/// What a client is told to wait while the service loads.
pub const LOADING_RETRY_AFTER_SECS: u64 = 1;

impl AppState {
    /// State for `config` with everything stored loaded back (nothing with `--ephemeral`),
    /// not yet ready; [`serve`] marks it ready when it starts accepting. Call it inside a
    /// tokio runtime; it blocks while it reads the data directory.
    ///
    /// Leftover temporary files are swept first; an object whose files cannot be loaded is
    /// unavailable (logged and listed), and does not stop the start.
    ///
    /// # Errors
    /// [`StartError`] when the data directory cannot be opened or listed, or a token is
    /// unusable.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let auth = Arc::new(Auth::from_config(&config)?);
        let store: Arc<dyn Store> = if config.ephemeral {
            // Nothing is read back from the store after start-up, so nothing need be kept.
            Arc::new(NullStore)
        } else {
            let opened =
                FileStore::open(&config.data_dir).map_err(|source| StartError::DataDir {
                    path: config.data_dir.clone(),
                    source,
                })?;
            tracing::info!(
                swept_temporary_files = opened.swept(),
                data_dir = %config.data_dir.display(),
                "opened the data directory"
            );
            Arc::new(opened.with_max_file_bytes(config.max_stored_file_bytes.0))
        };
        let registry = Arc::new(Registry::load(store, config.limits.clone())?);
        let jobs = Jobs::load(&config, Arc::clone(&registry))?;
        let experiments = Experiments::load(
            Arc::clone(&registry),
            jobs.clone(),
            config.limits.max_experiment_jobs,
        )?;
        let prediction_slots = PredictionSlots::new(config.max_concurrent_predictions);
        let write_probe =
            (!config.ephemeral).then(|| Arc::new(health::WriteProbe::new(config.data_dir.clone())));
        Ok(Self(Arc::new(Shared {
            config: Arc::new(config),
            registry,
            jobs,
            experiments,
            metrics: Metrics::new(),
            prediction_slots,
            batcher: batching::Batcher::default(),
            auth,
            ready: Arc::new(AtomicBool::new(false)),
            write_probe,
        })))
    }

    /// Whether `/readyz` says the service should be sent traffic.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// What `/readyz` answers: `Err` (503) while starting or shutting down, or while the data
    /// directory cannot be written (probed at most once a second).
    ///
    /// # Errors
    /// [`ApiError::Unavailable`] with the reason.
    pub async fn readiness(&self) -> Result<(), ApiError> {
        if !self.is_ready() {
            return Err(ApiError::unavailable(
                "the service is starting or shutting down; send no traffic to it now",
            ));
        }
        if let Some(probe) = &self.write_probe {
            probe.check().await.map_err(|reason| {
                ApiError::unavailable(format!(
                    "the data directory cannot be written ({reason}); send no traffic to this \
                     server until it can"
                ))
            })?;
        }
        Ok(())
    }

    /// Sets what `/readyz` answers.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

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
        let endpoint = if route.group == BodyGroup::Predict {
            // Outside the body limit, so that a slot is held while the body is read. One
            // `layer` call: each wraps (and so boxes) the route's service once more.
            let slots = GateLayer(capacity::LimitPredictions {
                slots: state.prediction_slots.clone(),
                metrics: state.metrics.clone(),
            });
            route
                .endpoint
                .layer((slots, limit::body_limit_layers(limit)))
        } else {
            method_with_body_limit(route.endpoint, limit)
        };
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
/// preflights need no token), problem+json for bare errors, the timeout, panic catching.
fn with_layers(routes: Router, config: &Config, auth: Arc<Auth>, metrics: Metrics) -> Router {
    // `Router::layer` wraps each route (and the fallbacks) after routing, so every layer here
    // sees the request's `MatchedPath`.
    routes
        .fallback(fallback::route_not_found)
        .method_not_allowed_fallback(fallback::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .map_request(drop_unusable_request_id)
                .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuidV7))
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                ]))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(log_response),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
                .layer(GateLayer(metrics::Track(metrics)))
                .layer(GateLayer(limit::LimitHeaderBytes(config.max_header_bytes)))
                .option_layer(cors::layer(&config.access.cors_origins))
                .layer(GateLayer(auth::RequireToken(auth)))
                .layer(GateLayer(ProblemJsonOnly))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    config.request_timeout(),
                ))
                .layer(CatchPanicLayer::custom(fallback::panic_response)),
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
    let mut response = if v2::is_v2_path(path) {
        v2::V2Error::from(error).into_response()
    } else {
        error.into_response()
    };
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(LOADING_RETRY_AFTER_SECS),
    );
    response
}

/// Request ids are UUIDv7, like every other id of the service, so they sort by time.
#[derive(Clone, Copy, Debug, Default)]
struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = request_uuid().hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(id).ok().map(RequestId::new)
    }
}

/// A UUIDv7 for a request id: the time in milliseconds, and 74 bits from a generator per
/// thread that the operating system seeds once. `Uuid::now_v7` asks the kernel for random
/// bytes each time, a system call per request (about 0.7 % of a one-row prediction's time);
/// a request id only has to be unique, not unguessable.
fn request_uuid() -> Uuid {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(Uuid::now_v7().as_u64_pair().1);
    }
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (high, low) = STATE.with(|state| {
        let mut s = state.get();
        let random = (
            crate::nn::rng::splitmix64(&mut s),
            crate::nn::rng::splitmix64(&mut s),
        );
        state.set(s);
        random
    });
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&high.to_le_bytes());
    random[8..].copy_from_slice(&low.to_le_bytes()[..2]);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// One line per answered request: `INFO` for a client or server error (the trace layer also
/// logs a server error as a failure, at `ERROR`), `DEBUG` when it succeeded. Successful requests are not
/// logged at the default level: a line per prediction, at thousands a second, was about 4 %
/// of the server's time and buries what matters; `RUST_LOG=info,mlp_lab::requests=debug`
/// shows them.
fn log_response(response: &Response, latency: Duration, _span: &tracing::Span) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1e3;
    if response.status().is_client_error() || response.status().is_server_error() {
        tracing::info!(target: "mlp_lab::requests", status, latency_ms, "finished processing request");
    } else {
        tracing::debug!(target: "mlp_lab::requests", status, latency_ms, "finished processing request");
    }
}

fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(metrics::UNMATCHED, axum::extract::MatchedPath::as_str);
    // The path only: a query string is the client's to keep out of our logs. No header either:
    // `Authorization` carries a token.
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        route = %route,
        request_id = %request_id,
    )
}

/// The longest request id taken from a client.
const MAX_REQUEST_ID: usize = 128;

/// Removes a client's `x-request-id` unless it is one value of at most [`MAX_REQUEST_ID`]
/// letters, digits and `-_.:/+=@`, so that a log line never carries a client's kilobytes or
/// quoting tricks; [`SetRequestIdLayer`] then makes a new one.
fn drop_unusable_request_id(mut request: Request) -> Request {
    let headers = request.headers_mut();
    let mut values = headers.get_all(&REQUEST_ID_HEADER).iter();
    let usable = match (values.next(), values.next()) {
        (Some(value), None) => {
            let bytes = value.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_REQUEST_ID
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
        }
        (None, _) => true,
        _ => false,
    };
    if !usable {
        headers.remove(&REQUEST_ID_HEADER);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_uuidv7s_of_the_current_millisecond() {
        let before = std::time::SystemTime::now();
        let ids: Vec<Uuid> = (0..10_000).map(|_| request_uuid()).collect();
        let after = std::time::SystemTime::now();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let millis = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_millis()
        };
        for id in &ids {
            assert_eq!(id.get_version_num(), 7, "{id}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
            let (seconds, nanos) = id.get_timestamp().expect("v7 has a time").to_unix();
            let at = u128::from(seconds) * 1000 + u128::from(nanos / 1_000_000);
            assert!((millis(before)..=millis(after)).contains(&at), "{id}");
        }
        // Another thread draws from its own generator.
        let other = std::thread::spawn(request_uuid).join().expect("joins");
        assert!(!distinct.contains(&other));
    }
}
