//! [`PgError`]: why the database cannot be used at start-up, and [`explain`], the words of a
//! client error with its causes.

use std::io;
use std::time::Duration;

/// Why the database cannot be used at start-up.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL cannot be parsed (it is not repeated: it may hold a password).
    #[error("the database URL cannot be used: {0}")]
    Url(String),
    /// The runtime of the client cannot start.
    #[error("cannot start the database client: {0}")]
    Runtime(#[source] io::Error),
    /// The database cannot be reached or refused the login.
    #[error("cannot connect to the database {target}: {}", explain(.source))]
    Connect {
        /// The database, without the password: `user@host:port/dbname`.
        target: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The password file cannot be read, or is empty.
    #[error("cannot read the database password file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A migration failed (its transaction was rolled back).
    #[error("database migration {version} ({name}) failed: {}", explain(.source))]
    Migration {
        /// Its version.
        version: i32,
        /// Its name.
        name: &'static str,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A migration was applied with SQL that differs from this binary's.
    #[error(
        "database migration {version} ({name}) was applied with other SQL than this binary \
         has (its checksum in schema_migrations differs); the schema is not what this \
         binary expects"
    )]
    ChangedMigration {
        /// Its version.
        version: i32,
        /// Its name.
        name: &'static str,
    },
    /// Another statement failed.
    #[error("database: {}", explain(.0))]
    Sql(#[source] tokio_postgres::Error),
    /// The database gave no answer in time.
    #[error("the database gave no answer within {0:?}")]
    Timeout(Duration),
}

/// What went wrong, with its causes: `tokio_postgres::Error` says only `db error` or
/// `error connecting to server` itself, and keeps the server's message and the I/O error as
/// its sources.
pub(super) fn explain(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
