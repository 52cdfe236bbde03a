//! Versioned migrations of the PostgreSQL schema: SQL files in `migrations/`, embedded in the
//! binary, applied in order, each in its own transaction with its row in `schema_migrations`
//! (version, name, the SHA-256 of its SQL, when).
//!
//! Every replica migrates at start-up, so several may start at once on a fresh database: they
//! take one session-level advisory lock (`pg_advisory_lock`) around the whole of it, so one
//! applies what is missing while the others wait, then find nothing left to do. The lock goes
//! with the connection, so a migrator that dies mid-way leaves the lock free and its
//! transaction rolled back.
//!
//! A migration that was applied with other SQL than this binary embeds (an edited file) stops
//! the start: the schema would not be what the code expects. A database migrated by a newer
//! binary (versions this one does not know) is used as it is, with a warning: migrations only
//! add, so an older replica keeps working during a rolling upgrade.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::error::PgError;

/// One migration: its version (the file's number), its name and its SQL.
#[derive(Debug)]
pub struct Migration {
    /// The version, from 1, in the order they apply.
    pub version: i32,
    /// What it does, in a word or two (the file's name after the number).
    pub name: &'static str,
    /// The SQL, run as one batch inside the migration's transaction.
    pub sql: &'static str,
}

/// Every migration this binary knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "objects",
        sql: include_str!("migrations/0001_objects.sql"),
    },
    Migration {
        version: 2,
        name: "changes",
        sql: include_str!("migrations/0002_changes.sql"),
    },
    Migration {
        version: 3,
        name: "job_queue",
        sql: include_str!("migrations/0003_job_queue.sql"),
    },
];

/// The advisory lock's key, the same for every replica: "mlp-lab" and 1 in ASCII.
const LOCK_KEY: i64 = 0x6d6c_702d_6c61_6201;

/// What a migration run found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    /// The versions this run applied, in order.
    pub applied: Vec<i32>,
    /// The newest version the database has now.
    pub version: i32,
    /// Versions in the database that this binary does not know (from a newer one).
    pub unknown: Vec<i32>,
}

fn sha256_hex(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Applies the missing migrations over `client`, under the advisory lock.
pub(super) async fn migrate(client: &mut Client) -> Result<Migrated, PgError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(PgError::Sql)?;
    let result = migrate_locked(client).await;
    // Also released when the connection closes, as it does if this fails.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn migrate_locked(client: &mut Client) -> Result<Migrated, PgError> {
    client
        .batch_execute(
            // Without the notice "already exists, skipping" at every start.
            "SET client_min_messages TO warning;
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 sha256     text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(PgError::Sql)?;
    let rows = client
        .query(
            "SELECT version, sha256 FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(PgError::Sql)?;
    let mut done = Migrated::default();
    let mut applied = std::collections::BTreeMap::new();
    for row in rows {
        let (version, sha256): (i32, String) = (row.get(0), row.get(1));
        applied.insert(version, sha256);
    }
    for (&version, stored) in &applied {
        match MIGRATIONS.iter().find(|m| m.version == version) {
            Some(known) if *stored != sha256_hex(known.sql) => {
                return Err(PgError::ChangedMigration {
                    version,
                    name: known.name,
                });
            }
            Some(_) => {}
            None => done.unknown.push(version),
        }
        done.version = done.version.max(version);
    }
    for migration in MIGRATIONS {
        if applied.contains_key(&migration.version) {
            continue;
        }
        let failed = |source| PgError::Migration {
            version: migration.version,
            name: migration.name,
            source,
        };
        let transaction = client.transaction().await.map_err(failed)?;
        transaction
            .batch_execute(migration.sql)
            .await
            .map_err(failed)?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
                &[
                    &migration.version,
                    &migration.name,
                    &sha256_hex(migration.sql),
                ],
            )
            .await
            .map_err(failed)?;
        transaction.commit().await.map_err(failed)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied a database migration"
        );
        done.applied.push(migration.version);
        done.version = done.version.max(migration.version);
    }
    if !done.unknown.is_empty() {
        tracing::warn!(
            versions = ?done.unknown,
            "the database has migrations this binary does not know (a newer mlp-lab applied them); using it as it is"
        );
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn migrations_are_numbered_from_one_in_order_as_their_files_are() {
        assert_eq!(MIGRATIONS.first().map(|m| m.version), Some(1));
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version, "{}", pair[1].name);
        }
        for migration in MIGRATIONS {
            assert!(!migration.sql.trim().is_empty(), "{}", migration.name);
        }
        let files = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/store/postgres/migrations"
        ))
        .expect("the migrations folder")
        .count();
        assert_eq!(files, MIGRATIONS.len(), "a file not listed in MIGRATIONS");
    }
}
