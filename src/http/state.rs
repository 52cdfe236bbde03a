//! The application's state: every part of the service, built once at start-up and shared by
//! every handler as [`AppState`] (`State<AppState>`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::error::ApiError;
use super::metrics::Metrics;
use super::middleware::auth::Auth;
use super::readiness::WriteProbe;
use crate::config::{AccessError, Config};
use crate::experiments::Experiments;
use crate::follower::{Caches, Follower};
use crate::jobs::Jobs;
use crate::registry::{Registry, RegistryError};
use crate::serving::Predictor;
use crate::store::postgres::PgError;
use crate::store::{FileStore, NullStore, PgStore, Store};

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
    /// The prediction engine: version lookup, admission, batching, dispatch.
    pub predictor: Predictor,
    pub(crate) auth: Arc<Auth>,
    /// One permit for each weights import that may be read at once
    /// (`--max-concurrent-imports`): an import holds the file its header describes.
    pub(crate) imports: Semaphore,
    ready: Arc<AtomicBool>,
    /// Whether the registry's store takes writes (always with `--ephemeral`).
    write_probe: WriteProbe,
    /// Applies other replicas' writes to the caches, where replicas share the store; stops
    /// when the state is dropped.
    _follower: Option<Follower>,
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
    /// The database (`--database-url`) cannot be used.
    #[error(transparent)]
    Database(#[from] PgError),
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
    /// The thread that follows other replicas' writes cannot be started.
    #[error("cannot start following other replicas' writes: {0}")]
    Follower(#[source] std::io::Error),
}

/// How long a shutdown waits for running jobs to reach their next batch and be written.
pub const JOB_STOP_WAIT: Duration = Duration::from_secs(30);

/// What a client is told to wait while the service loads.
pub const LOADING_RETRY_AFTER_SECS: u64 = 1;

impl AppState {
    /// State for `config` with everything stored loaded back (nothing with `--ephemeral`),
    /// not yet ready; [`super::serve`] marks it ready when it starts accepting. Call it inside a
    /// tokio runtime; it blocks while it reads the data directory or the database.
    ///
    /// Leftover temporary files are swept first; an object whose files cannot be loaded is
    /// unavailable (logged and listed), and does not stop the start. With `--database-url`
    /// the database's schema is migrated first. The data directory is not locked here: the
    /// binary locks it before it listens (`store::DataDirLock`).
    ///
    /// # Errors
    /// [`StartError`] when the data directory cannot be opened or listed, the database cannot
    /// be reached or migrated, or a token is unusable.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let auth = Auth::from_config(&config)?;
        let store: Arc<dyn Store> = if let Some(url) = &config.database_url {
            let (store, migrated) =
                PgStore::open(url.expose(), config.database_password_file.as_deref())?;
            tracing::info!(
                database = store.target(),
                schema_version = migrated.version,
                applied_migrations = ?migrated.applied,
                "opened the database"
            );
            Arc::new(store.with_max_value_bytes(config.max_stored_file_bytes.0))
        } else if config.ephemeral {
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
        Self::build(config, store, auth)
    }

    /// State for `config` over `store` instead of the one `config` names (`--data-dir`,
    /// `--ephemeral`): another backend behind the store seam, or a test's.
    ///
    /// # Errors
    /// As [`Self::new`], but for the data directory.
    pub fn with_store(config: Config, store: Arc<dyn Store>) -> Result<Self, StartError> {
        let auth = Auth::from_config(&config)?;
        Self::build(config, store, auth)
    }

    fn build(config: Config, store: Arc<dyn Store>, auth: Auth) -> Result<Self, StartError> {
        // Followed from before the load on, so that no change made meanwhile is missed.
        let changes = store.follow();
        let registry = Arc::new(Registry::load(store, config.limits.clone())?);
        let jobs = Jobs::load(&config, Arc::clone(&registry))?;
        let experiments = Experiments::load(
            Arc::clone(&registry),
            jobs.clone(),
            config.limits.max_experiment_jobs,
        )?;
        let follower = changes
            .map(|changes| {
                let caches = Caches {
                    registry: Arc::clone(&registry),
                    jobs: jobs.clone(),
                    experiments: experiments.clone(),
                };
                Follower::start(changes, caches).map_err(StartError::Follower)
            })
            .transpose()?;
        let predictor = Predictor::new(Arc::clone(&registry), &config);
        let write_probe = WriteProbe::new(registry.store());
        let imports = Semaphore::new(config.max_concurrent_imports);
        Ok(Self(Arc::new(Shared {
            config: Arc::new(config),
            registry,
            jobs,
            experiments,
            metrics: Metrics::new(),
            predictor,
            auth: Arc::new(auth),
            imports,
            ready: Arc::new(AtomicBool::new(false)),
            write_probe,
            _follower: follower,
        })))
    }

    /// Whether `/readyz` says the service should be sent traffic.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// What `/readyz` answers: `Err` (503) while starting or shutting down, or while the data
    /// directory or the database cannot be written (probed at most once a second).
    ///
    /// # Errors
    /// [`ApiError::Unavailable`] with the reason.
    pub async fn readiness(&self) -> Result<(), ApiError> {
        if !self.is_ready() {
            return Err(ApiError::unavailable(
                "the service is starting or shutting down; send no traffic to it now",
            ));
        }
        self.write_probe.check().await.map_err(|reason| {
            let what = if self.config.database_url.is_some() {
                "the database"
            } else {
                "the data directory"
            };
            ApiError::unavailable(format!(
                "{what} cannot be written ({reason}); send no traffic to this server until it can"
            ))
        })
    }

    /// Sets what `/readyz` answers.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}
