//! [`PgStore`]: the store in PostgreSQL (`--database-url`). Every key is a row of the table
//! `objects` (key, kind, value as `bytea`, updated_at; see `migrations/`), so that nothing
//! above the store changes: the registry, the jobs and the experiments write the same keys
//! and bytes as under a data directory.
//!
//! The client: `tokio-postgres` with a `deadpool-postgres` pool, driven by a small runtime of
//! the store's own (one thread, `mlp-lab-pg`). The [`Store`] methods are synchronous and their
//! callers are blocking threads: handlers' `spawn_blocking` (`http::blocking`), the training
//! threads (`jobs::pool`, a runtime of their own), the loading at start-up — and a test may
//! call them from a `#[tokio::test]`. A method hands its query to the store's runtime and
//! waits on a plain channel, so it works from any thread and never enters a runtime: no
//! "Cannot start a runtime from within a runtime", whoever calls. The alternatives: the sync
//! `postgres` crate (with `r2d2`) runs `block_on` on a runtime of its own per connection,
//! which panics when called, or when a pooled connection is dropped, on a thread inside
//! another runtime; `sqlx` is async only (the same bridge would be needed) and brings a much
//! larger dependency tree for query macros we do not use.
//!
//! Failures: a database that cannot be reached (connection refused or lost, the server
//! shutting down, no answer within [`OP_TIMEOUT`]) is [`StoreError::Unavailable`], which
//! clients get as 503 `store_unavailable` with `Retry-After`; a full disk is the same
//! [`StoreError::no_room`] as under a data directory (507). Every operation is idempotent (put
//! is an upsert), so one on a pooled connection that the database had closed (a restart) is
//! tried once more on a new one.
//!
//! Values are `bytea`, so one is at most 1 GB (PostgreSQL's limit for a field): more than the
//! weights of the largest network the default limits allow (50 million `f32`s, 200 MB).

mod error;
mod follow;
mod migrate;
mod queue;
pub mod scratch;

use std::future::Future;
use std::io;
use std::path::Path;
use std::str::FromStr;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use error::explain;
pub use error::PgError;
pub use migrate::{Migrated, Migration, MIGRATIONS};

use super::{check_key, Changes, Store, StoreError};
pub use follow::{CHANNEL, OVERLAP, POLL_EVERY};

/// Connections the pool keeps at most. Writes are few (a record, a version, a job's progress
/// every few seconds); reads happen at start-up.
pub const POOL_SIZE: usize = 8;

/// How long one operation may take in all (waiting for a connection included) before it is
/// [`StoreError::Unavailable`].
pub const OP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a model name stays claimed ([`Store::claim_name`]) by an id that has no model
/// record: longer than creating a model takes between its claim and its record's write. A
/// claim left behind by a replica that died between the two, or that could not release it
/// after a delete, is taken over after this.
pub const STALE_NAME_CLAIM: Duration = Duration::from_secs(300);

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Objects in PostgreSQL; see the module's comment.
pub struct PgStore {
    pool: Pool,
    /// `Some` until dropped: the runtime that runs the pool's connections and the queries.
    runtime: Option<tokio::runtime::Runtime>,
    target: String,
    max_value_bytes: Option<u64>,
    /// For the connection that follows other replicas' writes ([`Store::follow`]).
    config: tokio_postgres::Config,
    /// This store's name in the database's `mlp_lab.writer` setting ([`follow`]).
    writer: String,
    /// Made by the first [`Store::follow`].
    changes: OnceLock<Arc<Changes>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

/// The database `config` names, without its password: `user@host:port/dbname`.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = config
        .get_ports()
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "{}@{}:{}/{}",
        config.get_user().unwrap_or("?"),
        if host.is_empty() { "localhost" } else { &host },
        if port.is_empty() { "5432" } else { &port },
        config.get_dbname().unwrap_or("?")
    )
}

/// Parses `url` (`postgres://user@host:port/dbname`, or PostgreSQL's `key=value` form), with
/// `password` when given (it wins over one in the URL).
///
/// # Errors
/// [`PgError::Url`], without the URL itself.
pub fn parse_url(url: &str, password: Option<&str>) -> Result<tokio_postgres::Config, PgError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(|error| {
        PgError::Url(format!(
            "{error}; expected postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME"
        ))
    })?;
    if let Some(password) = password {
        config.password(password);
    }
    if config.get_application_name().is_none() {
        config.application_name("mlp-lab");
    }
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    Ok(config)
}

impl PgStore {
    /// [`Self::connect`] to `url` (`--database-url`), with the password in `password_file`
    /// (`--database-password-file`) when given.
    ///
    /// # Errors
    /// [`PgError`], also for a password file that cannot be read or is empty.
    pub fn open(url: &str, password_file: Option<&Path>) -> Result<(Self, Migrated), PgError> {
        let password = match password_file {
            None => None,
            Some(path) => {
                let failed = |source| PgError::PasswordFile {
                    path: path.to_owned(),
                    source,
                };
                let text = std::fs::read_to_string(path).map_err(failed)?;
                let password = text.trim();
                if password.is_empty() {
                    return Err(failed(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the file is empty",
                    )));
                }
                Some(password.to_owned())
            }
        };
        Self::connect(parse_url(url, password.as_deref())?)
    }

    /// Connects to the database `config` names, applies the missing migrations (under the
    /// advisory lock, see `migrate`), and returns the store with what migrating did.
    ///
    /// # Errors
    /// [`PgError`] when the database cannot be reached, refuses the login, or a migration
    /// fails.
    pub fn connect(mut config: tokio_postgres::Config) -> Result<(Self, Migrated), PgError> {
        // Every connection names this store, so that the changes it makes are told from the
        // other replicas' (see `follow`).
        let writer = uuid::Uuid::now_v7().simple().to_string();
        let options = format!(
            "{} -c {}={writer}",
            config.get_options().unwrap_or_default(),
            follow::WRITER_SETTING
        );
        config.options(options.trim_start());
        // One thread: the queries wait on the network, not on a CPU.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mlp-lab-pg")
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        let target = describe(&config);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            // The pool's timers need the runtime: built inside it.
            let _entered = runtime.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(OP_TIMEOUT))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .recycle_timeout(Some(CONNECT_TIMEOUT))
                .build()
                .map_err(|error| PgError::Url(error.to_string()))?
        };
        let store = Self {
            pool,
            runtime: Some(runtime),
            target: target.clone(),
            max_value_bytes: None,
            config: config.clone(),
            writer,
            changes: OnceLock::new(),
        };
        // Its own connection: the advisory lock belongs to a session, and must not stay with
        // a pooled one.
        let migrated = store.wait(async move {
            let (mut client, connection) =
                config
                    .connect(NoTls)
                    .await
                    .map_err(|source| PgError::Connect {
                        target: target.clone(),
                        source,
                    })?;
            let driver = tokio::spawn(connection);
            let migrated = migrate::migrate(&mut client).await;
            drop(client);
            let _ = driver.await;
            migrated
        });
        let migrated = migrated.unwrap_or(Err(PgError::Timeout(OP_TIMEOUT)))?;
        Ok((store, migrated))
    }

    /// The same store, refusing to read values larger than `max` bytes (as
    /// `--max-stored-file-bytes` does for files).
    #[must_use]
    pub fn with_max_value_bytes(mut self, max: u64) -> Self {
        self.max_value_bytes = Some(max);
        self
    }

    /// The database, without its password: `user@host:port/dbname`.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `work` on the store's runtime and waits for it on this thread (whatever thread
    /// it is), at most [`OP_TIMEOUT`]; `None` when it did not finish in time or the runtime
    /// is gone.
    fn wait<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> Option<T> {
        let runtime = self.runtime.as_ref()?;
        let (tx, rx) = mpsc::sync_channel(1);
        runtime.spawn(async move {
            if let Ok(done) = tokio::time::timeout(OP_TIMEOUT, work).await {
                let _ = tx.send(done);
            }
        });
        // A plain channel, not a runtime's `block_on`: callable from any thread.
        rx.recv().ok()
    }

    /// Runs `op` on a pooled connection; once more on a new connection when the database had
    /// closed the first (every operation here is idempotent).
    fn run<T, F, Fut>(&self, key: &str, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        let pool = self.pool.clone();
        let owned_key = key.to_owned();
        let done = self.wait(async move {
            let mut retried = false;
            loop {
                let client = pool.get().await.map_err(|error| {
                    let reason = match &error {
                        deadpool_postgres::PoolError::Backend(error) => explain(error),
                        other => other.to_string(),
                    };
                    StoreError::Unavailable(format!("no connection to the database: {reason}"))
                })?;
                match op(client).await {
                    Err(error) if error.is_closed() && !retried => {
                        retried = true;
                        tracing::debug!(%error, "a pooled database connection was closed; once more on a new one");
                    }
                    done => return done.map_err(|error| classify(&owned_key, &error)),
                }
            }
        });
        done.unwrap_or_else(|| {
            Err(StoreError::Unavailable(format!(
                "the database gave no answer within {OP_TIMEOUT:?}"
            )))
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(changes) = self.changes.get() {
            changes.close();
        }
        // Without waiting, so that dropping the last handle is fine on any thread, a
        // runtime's own included; the connections are closed with their tasks.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A database error as the store's: unreachable → [`StoreError::Unavailable`], no room →
/// an I/O error whose kind [`StoreError::no_room`] reads, anything else → [`StoreError::Io`].
fn classify(key: &str, error: &tokio_postgres::Error) -> StoreError {
    let io = |kind: io::ErrorKind, message: String| StoreError::Io {
        key: key.to_owned(),
        source: io::Error::new(kind, message),
    };
    let Some(db) = error.as_db_error() else {
        // No answer at all: the connection failed or closed, or a message was cut.
        return StoreError::Unavailable(explain(error));
    };
    let code = db.code().code();
    match code {
        // disk_full
        "53100" => io(io::ErrorKind::StorageFull, db.message().to_owned()),
        // program_limit_exceeded: a value over what a field holds
        "54000" => io(io::ErrorKind::FileTooLarge, db.message().to_owned()),
        // connection exceptions; admin or crash shutdown, cannot connect now; too many
        // connections; a read-only (standby) server; a serialization failure or deadlock
        _ if code.starts_with("08")
            || matches!(
                code,
                "57P01" | "57P02" | "57P03" | "53300" | "25006" | "40001" | "40P01"
            ) =>
        {
            StoreError::Unavailable(format!("{} ({code})", db.message()))
        }
        _ => io(io::ErrorKind::Other, format!("{} ({code})", db.message())),
    }
}

/// `prefix` as a `LIKE` pattern that matches exactly the keys starting with it.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store for PgStore {
    fn job_queue(
        self: std::sync::Arc<Self>,
    ) -> Option<std::sync::Arc<dyn crate::store::queue::JobQueue>> {
        Some(self)
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        // One copy of the value, shared by the attempts: the query runs on another thread,
        // for longer than this borrow is known to live.
        let (owned, value) = (key.to_owned(), std::sync::Arc::<[u8]>::from(bytes));
        self.run(key, move |client| {
            let (key, value) = (owned.clone(), std::sync::Arc::clone(&value));
            async move {
                let statement = client
                    .prepare_cached(
                        "INSERT INTO objects (key, value) VALUES ($1, $2) \
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    )
                    .await?;
                client.execute(&statement, &[&key, &&*value]).await?;
                Ok(())
            }
        })
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        check_key(key)?;
        let (owned, value) = (key.to_owned(), std::sync::Arc::<[u8]>::from(bytes));
        // A token of this write, so that an attempt made again after its answer was lost
        // knows its own row from another writer's.
        let token = uuid::Uuid::now_v7().to_string();
        let written = self.run(key, move |client| {
            let (key, value, token) = (owned.clone(), std::sync::Arc::clone(&value), token.clone());
            async move {
                let statement = client
                    .prepare_cached(
                        "INSERT INTO objects (key, value, put_token) VALUES ($1, $2, $3) \
                         ON CONFLICT (key) DO NOTHING RETURNING revision",
                    )
                    .await?;
                if let Some(row) = client
                    .query_opt(&statement, &[&key, &&*value, &token])
                    .await?
                {
                    return Ok(Some(row.try_get::<_, i64>(0)?));
                }
                let mine = client
                    .query_opt(
                        "SELECT revision FROM objects WHERE key = $1 AND put_token = $2",
                        &[&key, &token],
                    )
                    .await?;
                mine.map(|row| row.try_get::<_, i64>(0)).transpose()
            }
        })?;
        Ok(written.is_some())
    }

    fn claim_name(&self, name: &str, owner: &str) -> Result<Option<String>, StoreError> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.run("model_names", move |client| {
            let (name, owner) = (name.clone(), owner.clone());
            async move {
                let claim = client
                    .prepare_cached(
                        "INSERT INTO model_names (name, owner) VALUES ($1, $2) \
                         ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, claimed_at = now() \
                         WHERE model_names.owner = EXCLUDED.owner \
                         OR (model_names.claimed_at < now() - $3::int8 * interval '1 second' \
                             AND NOT EXISTS (SELECT 1 FROM objects \
                                             WHERE key = 'models/' || model_names.owner || '.json')) \
                         RETURNING owner",
                    )
                    .await?;
                let holder = client
                    .prepare_cached("SELECT owner FROM model_names WHERE name = $1")
                    .await?;
                let stale = i64::try_from(STALE_NAME_CLAIM.as_secs()).unwrap_or(i64::MAX);
                loop {
                    if client.query_opt(&claim, &[&name, &owner, &stale]).await?.is_some() {
                        return Ok(None);
                    }
                    // Held by another: which, read in a new snapshot. Released meanwhile
                    // (none), the claim is made again.
                    if let Some(row) = client.query_opt(&holder, &[&name]).await? {
                        return Ok(Some(row.try_get(0)?));
                    }
                }
            }
        })
    }

    fn release_name(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.run("model_names", move |client| {
            let (name, owner) = (name.clone(), owner.clone());
            async move {
                let statement = client
                    .prepare_cached("DELETE FROM model_names WHERE name = $1 AND owner = $2")
                    .await?;
                client.execute(&statement, &[&name, &owner]).await?;
                Ok(())
            }
        })
    }

    fn follow(&self) -> Option<Arc<Changes>> {
        let changes = self.changes.get_or_init(|| {
            let changes = Arc::new(Changes::default());
            if let Some(runtime) = &self.runtime {
                // Named, so that an operator can tell it in `pg_stat_activity`.
                let mut config = self.config.clone();
                config.application_name(follow::APPLICATION_NAME);
                runtime.spawn(follow::run(
                    config,
                    self.writer.clone(),
                    Arc::new(follow::Seen::default()),
                    Arc::clone(&changes),
                ));
            }
            changes
        });
        Some(Arc::clone(changes))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let max = self
            .max_value_bytes
            .map(|max| i64::try_from(max).unwrap_or(i64::MAX));
        let owned = key.to_owned();
        // The size first, and the value only when it is under the cap: an oversized value is
        // never sent.
        let row = self.run(key, move |client| {
            let key = owned.clone();
            async move {
                let statement = client
                    .prepare_cached(
                        "SELECT octet_length(value)::int8, \
                         CASE WHEN $2::int8 IS NULL OR octet_length(value) <= $2 THEN value END \
                         FROM objects WHERE key = $1",
                    )
                    .await?;
                let row = client.query_opt(&statement, &[&key, &max]).await?;
                row.map(|row| {
                    let size: i64 = row.try_get(0)?;
                    let value: Option<Vec<u8>> = row.try_get(1)?;
                    Ok((size, value))
                })
                .transpose()
            }
        })?;
        match row {
            None => Ok(None),
            Some((_, Some(value))) => Ok(Some(value)),
            Some((size, None)) => Err(StoreError::TooLarge {
                key: key.to_owned(),
                size: u64::try_from(size).unwrap_or(0),
                max: self.max_value_bytes.unwrap_or(0),
            }),
        }
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let owned = key.to_owned();
        self.run(key, move |client| {
            let key = owned.clone();
            async move {
                let statement = client
                    .prepare_cached("DELETE FROM objects WHERE key = $1")
                    .await?;
                client.execute(&statement, &[&key]).await?;
                Ok(())
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let pattern = like_prefix(prefix);
        self.run(prefix, move |client| {
            let pattern = pattern.clone();
            async move {
                let statement = client
                    .prepare_cached("SELECT key FROM objects WHERE key LIKE $1 ORDER BY key")
                    .await?;
                let rows = client.query(&statement, &[&pattern]).await?;
                rows.iter().map(|row| row.try_get(0)).collect()
            }
        })
    }

    fn probe(&self) -> Result<(), StoreError> {
        let probed = self.run("store_probe", |client| async move {
            client
                .execute("UPDATE store_probe SET probed_at = now()", &[])
                .await
        });
        match probed {
            Ok(1) => Ok(()),
            Ok(rows) => Err(StoreError::Unwritable(io::Error::other(format!(
                "the probe row of the database is missing ({rows} rows updated)"
            )))),
            Err(error) => {
                tracing::warn!(%error, database = %self.target, "the database cannot be written");
                // What `/readyz` shows, publicly: no names of hosts or databases.
                Err(StoreError::Unavailable(
                    "no connection, or the write failed".to_owned(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests;
