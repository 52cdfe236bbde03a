//! [`ScratchDatabase`]: a fresh, empty database on a PostgreSQL server, dropped when done — for
//! tests, which each make their own (`MLP_LAB_TEST_DATABASE_URL` names the server; see
//! `scripts/postgres.sh`) so that they never see each other's rows.

use std::time::Duration;

use tokio_postgres::NoTls;

use super::{parse_url, PgError};

/// The variable that names the test server: a URL whose role may create databases.
pub const TEST_DATABASE_URL: &str = "MLP_LAB_TEST_DATABASE_URL";

/// A database made for one test, dropped (with any connection still open to it) when this is
/// dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    server: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// A fresh database on the server `MLP_LAB_TEST_DATABASE_URL` names; `None`, with the
    /// reason printed, when it is unset (the test then skips).
    ///
    /// # Panics
    /// When the variable is set but the database cannot be made: a test that was asked to
    /// run against PostgreSQL must not pass without it.
    #[must_use]
    pub fn from_env(test: &str) -> Option<Self> {
        let Ok(server) = std::env::var(TEST_DATABASE_URL) else {
            eprintln!(
                "skipped {test}: {TEST_DATABASE_URL} is not set (run the PostgreSQL tests with \
                 scripts/postgres.sh test)"
            );
            return None;
        };
        Some(Self::create(&server).unwrap_or_else(|error| {
            panic!("cannot make a scratch database on {TEST_DATABASE_URL}: {error}")
        }))
    }

    /// A fresh database `mlp_lab_test_<uuid>` on the server of `server_url`.
    ///
    /// # Errors
    /// [`PgError`] when the server cannot be reached or the database cannot be made.
    pub fn create(server_url: &str) -> Result<Self, PgError> {
        let name = format!("mlp_lab_test_{}", uuid::Uuid::now_v7().simple());
        run_sql(server_url, format!("CREATE DATABASE {name}"))?;
        let url = with_dbname(server_url, &name)?;
        Ok(Self {
            server: server_url.to_owned(),
            name,
            url,
        })
    }

    /// The URL of the database (password included).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Err(error) = run_sql(
            &self.server,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("could not drop the scratch database {}: {error}", self.name);
        }
    }
}

/// `url` with its database name replaced by `dbname` (URL form: the path; `key=value` form:
/// a `dbname=` appended, which wins).
fn with_dbname(url: &str, dbname: &str) -> Result<String, PgError> {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        let (authority, query) = match rest.find(['/', '?']) {
            Some(at) => {
                let (authority, tail) = rest.split_at(at);
                (authority, tail.find('?').map_or("", |q| &tail[q..]))
            }
            None => (rest, ""),
        };
        return Ok(format!("{scheme}{authority}/{dbname}{query}"));
    }
    parse_url(url, None)?;
    Ok(format!("{url} dbname={dbname}"))
}

/// Runs `sql` (one or more statements) on the database of `url`, on a runtime of its own
/// (on a thread, so that it may be called from inside another runtime).
///
/// # Errors
/// [`PgError`] when the database cannot be reached or a statement fails.
pub fn run_sql(url: &str, sql: String) -> Result<(), PgError> {
    let config = parse_url(url, None)?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        runtime.block_on(async move {
            let (client, connection) =
                config
                    .connect(NoTls)
                    .await
                    .map_err(|source| PgError::Connect {
                        target: super::describe(&config),
                        source,
                    })?;
            let driver = tokio::spawn(connection);
            let done = tokio::time::timeout(Duration::from_secs(30), client.batch_execute(&sql))
                .await
                .map_err(|_| PgError::Timeout(Duration::from_secs(30)))?
                .map_err(PgError::Sql);
            drop(client);
            let _ = driver.await;
            done
        })
    })
    .join()
    .unwrap_or_else(|_| Err(PgError::Url("the admin thread panicked".to_owned())))
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn a_url_gets_another_database_and_keeps_its_parameters() {
        assert_eq!(
            with_dbname("postgres://u:p@127.0.0.1:5432/postgres", "x").ok(),
            Some("postgres://u:p@127.0.0.1:5432/x".to_owned())
        );
        assert_eq!(
            with_dbname("postgresql://u@h/postgres?sslmode=disable", "x").ok(),
            Some("postgresql://u@h/x?sslmode=disable".to_owned())
        );
        assert_eq!(
            with_dbname("postgres://u@h:1", "x").ok(),
            Some("postgres://u@h:1/x".to_owned())
        );
        assert_eq!(
            with_dbname("host=h user=u", "x").ok(),
            Some("host=h user=u dbname=x".to_owned())
        );
    }
}
