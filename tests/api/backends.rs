//! `Backend`: where a test's server stores what it is given — a data directory, or a fresh
//! PostgreSQL database — so that one test body runs against both. PostgreSQL's turn needs
//! `MLP_LAB_TEST_DATABASE_URL` (see `scripts/postgres.sh`); without it the test says so and
//! runs on the data directory only.

use std::path::{Path, PathBuf};

use mlp_lab::config::{Config, DatabaseUrl};
use mlp_lab::store::postgres::scratch::ScratchDatabase;
use mlp_lab::store::{PgStore, Store};

use crate::process::{temp_dir, ServerProcess};

/// One place to store a test server's objects, removed when dropped.
pub enum Backend {
    /// A fresh data directory.
    DataDir(PathBuf),
    /// A fresh database, dropped with this.
    Postgres(ScratchDatabase),
}

impl Backend {
    /// A data directory, and a database when the test server is configured.
    pub fn all(test: &str) -> Vec<Backend> {
        let mut backends = vec![Backend::DataDir(temp_dir(test))];
        if let Some(db) = ScratchDatabase::from_env(&format!("{test} on PostgreSQL")) {
            backends.push(Backend::Postgres(db));
        }
        backends
    }

    /// For assertion messages.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::DataDir(_) => "data directory",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }

    /// [`Config::for_tests`], storing here.
    pub fn config(&self) -> Config {
        let mut config = Config {
            ephemeral: false,
            ..Config::for_tests()
        };
        match self {
            Backend::DataDir(dir) => config.data_dir = dir.clone(),
            Backend::Postgres(db) => {
                let Ok(url) = DatabaseUrl::unchecked(db.url());
                config.database_url = Some(url);
            }
        }
        config
    }

    /// The binary on `127.0.0.1:0` storing here, once `/readyz` says 200.
    pub async fn start_server(&self) -> ServerProcess {
        let server = match self {
            Backend::DataDir(dir) => ServerProcess::start(dir, &[]).await,
            Backend::Postgres(db) => {
                // Never created: with --database-url the data directory is not used.
                let unused = std::env::temp_dir().join("mlp-lab-unused-data-dir");
                ServerProcess::start(&unused, &["--database-url", db.url()]).await
            }
        };
        server.wait_ready().await;
        server
    }

    /// What is stored under `prefix` (a folder: `models/`): under a data directory every file,
    /// the temporary files of writes included; in a database every key.
    pub fn stored(&self, prefix: &str) -> Vec<String> {
        match self {
            Backend::DataDir(dir) => files_under(&dir.join(prefix)),
            Backend::Postgres(db) => PgStore::open(db.url(), None)
                .expect("connect to the test database")
                .0
                .list(prefix)
                .expect("list the database"),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Backend::DataDir(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Every file under `dir` (temporary files of writes included), relative to it.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                found.push(rel.display().to_string());
            }
        }
    }
    found.sort();
    found
}
