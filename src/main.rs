//! The `mlp-lab` server: reads its configuration, sets up logging, and serves until SIGTERM or
//! ctrl-c; or, asked to, migrates the database's schema (`--migrate-only`) or copies a data
//! directory or database into another (`mlp-lab copy`). Everything else lives in the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use mlp_lab::config::{Command, Config, Location, LogFormat};
use mlp_lab::http::{serve_loading, Auth};
use mlp_lab::store::{DataDirLock, PgStore, Place};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let config = Config::parse();
    init_tracing(config.log_format);
    if let Some(Command::Copy { from, to }) = config.command.clone() {
        return blocking(move || copy(&config, &from, &to)).await;
    }
    if config.migrate_only {
        return blocking(move || migrate_only(&config)).await;
    }
    mlp_lab::memory::start_trimmer();
    // Tokens first: an unreadable or empty one stops the server before it listens.
    match Auth::from_config(&config) {
        Ok(auth) => {
            for warning in auth.warnings(config.addr) {
                tracing::warn!("{warning}");
            }
        }
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    }

    // One process per data directory, held until this one ends (however it ends).
    let _lock = if config.ephemeral || config.database_url.is_some() {
        None
    } else {
        match DataDirLock::acquire(&config.data_dir) {
            Ok(lock) => Some(lock),
            Err(error) => {
                tracing::error!(%error, "cannot start");
                return ExitCode::FAILURE;
            }
        }
    };

    let listener = match tokio::net::TcpListener::bind(config.addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(addr = %config.addr, %error, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => {
            tracing::info!(%addr, data_dir = %config.data_dir.display(), ephemeral = config.ephemeral, database = config.database_url.is_some(), "listening")
        }
        Err(error) => tracing::warn!(%error, "listening on an unknown address"),
    }

    // Bound before loading, so /healthz answers and /readyz says 503 while the data loads.
    let served = serve_loading(listener, config, shutdown_signal()).await;
    // A job that did not stop within the shutdown's wait still finishes what it writes.
    let _ = tokio::task::spawn_blocking(mlp_lab::jobs::wait_for_training_threads).await;
    match served {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "cannot serve");
            ExitCode::FAILURE
        }
    }
}

/// Runs `work` on a blocking thread: it waits on files and the database.
async fn blocking(work: impl FnOnce() -> ExitCode + Send + 'static) -> ExitCode {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or(ExitCode::FAILURE)
}

/// `--migrate-only`: applies the database's missing migrations and exits.
fn migrate_only(config: &Config) -> ExitCode {
    let Some(url) = &config.database_url else {
        tracing::error!("--migrate-only needs --database-url");
        return ExitCode::FAILURE;
    };
    match PgStore::open(url.expose(), config.database_password_file.as_deref()) {
        Ok((store, migrated)) => {
            tracing::info!(
                database = store.target(),
                schema_version = migrated.version,
                applied_migrations = ?migrated.applied,
                "the database's schema is up to date"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "cannot migrate");
            ExitCode::FAILURE
        }
    }
}

/// The store's name for one end of `mlp-lab copy`.
fn place(location: &Location) -> Place<'_> {
    match location {
        Location::Dir(dir) => Place::Dir(dir),
        Location::Database(url) => Place::Database(url.expose()),
    }
}

/// `mlp-lab copy --from … --to …`: every stored object into an empty data directory or
/// database.
fn copy(config: &Config, from: &Location, to: &Location) -> ExitCode {
    let copied = mlp_lab::store::copy_between(
        place(from),
        place(to),
        config.database_password_file.as_deref(),
        |done, total| {
            if done % 100 == 0 || done == total {
                tracing::info!(done, total, "copying");
            }
        },
    );
    match copied {
        Ok((objects, bytes)) => {
            tracing::info!(objects, bytes, %from, %to, "copied every stored object");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, %from, %to, "cannot copy");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stdout as text or JSON lines, filtered by `RUST_LOG` (default `info`). Text is
/// coloured only on a terminal, and not under a non-empty `NO_COLOR`: in a file, a pipe or a
/// container's log, escape codes would be noise around every field.
fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let colour = std::io::stdout().is_terminal() && !no_colour;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on ctrl-c or SIGTERM, whichever comes first.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
