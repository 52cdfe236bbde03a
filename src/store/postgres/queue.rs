//! [`JobQueue`] in PostgreSQL: the table `job_queue` of migration 3 beside `objects`, on the
//! store's pool and runtime (each method hands its transaction over and waits, as the
//! [`Store`](super::Store) methods do).
//!
//! Fencing takes a row lock on the job's queue row in the writing transaction (`FOR SHARE` for
//! a progress write, `FOR UPDATE` for the final one) and checks the token under it. A plain
//! `WHERE EXISTS (… lease_token = $t)` in the upsert would not do: under READ COMMITTED its
//! subquery reads the snapshot of the statement's start, so a write racing the reaper's
//! commit could pass the check and then overwrite the record the reaper had just written. The
//! lock orders the two: the reaper's `UPDATE` of the row waits for a write in flight, and a
//! write that starts after it waits for the reaper's commit and then reads the new token.
//!
//! Ids are passed as text (`$1::uuid`), so the client needs no UUID feature.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::PgStore;
use crate::store::queue::{Cancel, JobQueue, Lease, Reaped, Renewal, Rewrite};
use crate::store::{check_key, StoreError};

/// The advisory lock that submits take (per transaction) to count the queued jobs and add
/// one atomically over all replicas: "mlp-lab" and 3 in ASCII.
const SUBMIT_LOCK: i64 = 0x6d6c_702d_6c61_6203;

/// Jobs one round of the reaper takes at most (the rest at its next round).
const REAP_BATCH: i64 = 32;

const UPSERT: &str = "INSERT INTO objects (key, value) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()";

fn seconds(term: Duration) -> f64 {
    term.as_secs_f64()
}

fn fenced(lease: Lease) -> StoreError {
    StoreError::Fenced {
        job: lease.job,
        token: lease.token,
    }
}

fn parse_id(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text).ok()
}

impl PgStore {
    /// Runs the fenced write `write` (an upsert or a delete of `key`, with `bytes`) under
    /// `lease`; with `finish`, also marks the job `done`. `Ok(false)`: the token was stale.
    fn fenced_write(
        &self,
        lease: Lease,
        key: &str,
        bytes: Option<Arc<[u8]>>,
        finish: bool,
    ) -> Result<bool, StoreError> {
        check_key(key)?;
        let owned = key.to_owned();
        self.run(key, move |mut client| {
            let (key, bytes) = (owned.clone(), bytes.clone());
            async move {
                let tx = client.transaction().await?;
                let lock = if finish {
                    "SELECT lease_token FROM job_queue \
                     WHERE id = $1::text::uuid AND state = 'running' FOR UPDATE"
                } else {
                    "SELECT lease_token FROM job_queue \
                     WHERE id = $1::text::uuid AND state = 'running' FOR SHARE"
                };
                let row = tx.query_opt(lock, &[&lease.job.to_string()]).await?;
                let holds = match row {
                    Some(row) => row.try_get::<_, i64>(0)? == lease.token,
                    None => false,
                };
                if !holds {
                    tx.rollback().await?;
                    return Ok(false);
                }
                match &bytes {
                    Some(value) => {
                        tx.execute(UPSERT, &[&key, &&**value]).await?;
                    }
                    None => {
                        tx.execute("DELETE FROM objects WHERE key = $1", &[&key])
                            .await?;
                    }
                }
                if finish {
                    tx.execute(
                        "UPDATE job_queue SET state = 'done', lease_until = NULL \
                         WHERE id = $1::text::uuid",
                        &[&lease.job.to_string()],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            }
        })
    }
}

impl PgStore {
    /// [`Store::put_new`](crate::store::Store::put_new) under `lease`: `Ok(Some(written))`,
    /// or `Ok(None)` when the token was stale.
    fn fenced_put_new(
        &self,
        lease: Lease,
        key: &str,
        bytes: Arc<[u8]>,
    ) -> Result<Option<bool>, StoreError> {
        check_key(key)?;
        let owned = key.to_owned();
        // As in `put_new`: a token of this write, so that an attempt made again after its
        // answer was lost knows its own row.
        let token = Uuid::now_v7().to_string();
        self.run(key, move |mut client| {
            let (key, bytes, token) = (owned.clone(), Arc::clone(&bytes), token.clone());
            async move {
                let tx = client.transaction().await?;
                let row = tx
                    .query_opt(
                        "SELECT lease_token FROM job_queue \
                         WHERE id = $1::text::uuid AND state = 'running' FOR SHARE",
                        &[&lease.job.to_string()],
                    )
                    .await?;
                let holds = match row {
                    Some(row) => row.try_get::<_, i64>(0)? == lease.token,
                    None => false,
                };
                if !holds {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let inserted = tx
                    .execute(
                        "INSERT INTO objects (key, value, put_token) VALUES ($1, $2, $3) \
                         ON CONFLICT (key) DO NOTHING",
                        &[&key, &&*bytes, &token],
                    )
                    .await?;
                let written = inserted == 1
                    || tx
                        .query_opt(
                            "SELECT 1 FROM objects WHERE key = $1 AND put_token = $2",
                            &[&key, &token],
                        )
                        .await?
                        .is_some();
                tx.commit().await?;
                Ok(Some(written))
            }
        })
    }
}

impl JobQueue for PgStore {
    fn submit(
        &self,
        id: Uuid,
        key: &str,
        record: &[u8],
        max_queued: usize,
    ) -> Result<bool, StoreError> {
        check_key(key)?;
        let (owned, value) = (key.to_owned(), Arc::<[u8]>::from(record));
        let max = i64::try_from(max_queued).unwrap_or(i64::MAX);
        self.run(key, move |mut client| {
            let (key, value) = (owned.clone(), Arc::clone(&value));
            async move {
                let tx = client.transaction().await?;
                // Counted and added under one lock over all replicas: the bound holds however
                // many submit at once.
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SUBMIT_LOCK])
                    .await?;
                let queued: i64 = tx
                    .query_one("SELECT count(*) FROM job_queue WHERE state = 'queued'", &[])
                    .await?
                    .try_get(0)?;
                if queued >= max {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.execute(UPSERT, &[&key, &&*value]).await?;
                // A resubmit of the same id (a retried call whose commit was not answered)
                // changes nothing.
                tx.execute(
                    "INSERT INTO job_queue (id) VALUES ($1::text::uuid) ON CONFLICT (id) DO NOTHING",
                    &[&id.to_string()],
                )
                .await?;
                tx.commit().await?;
                Ok(true)
            }
        })
    }

    fn claim(&self, worker: &str, lease: Duration) -> Result<Option<Lease>, StoreError> {
        let worker = worker.to_owned();
        let term = seconds(lease);
        let claimed = self.run("job_queue", move |client| {
            let worker = worker.clone();
            async move {
                let statement = client
                    .prepare_cached(
                        "UPDATE job_queue SET state = 'running', worker = $1, \
                         lease_token = nextval('job_lease_tokens'), \
                         lease_until = now() + make_interval(secs => $2) \
                         WHERE state = 'queued' AND id = ( \
                             SELECT id FROM job_queue WHERE state = 'queued' \
                             ORDER BY submitted_at, id FOR UPDATE SKIP LOCKED LIMIT 1) \
                         RETURNING id::text, lease_token",
                    )
                    .await?;
                let row = client.query_opt(&statement, &[&worker, &term]).await?;
                row.map(|row| Ok((row.try_get::<_, String>(0)?, row.try_get::<_, i64>(1)?)))
                    .transpose()
            }
        })?;
        Ok(claimed.and_then(|(id, token)| parse_id(&id).map(|job| Lease { job, token })))
    }

    fn renew(&self, lease: Lease, term: Duration) -> Result<Renewal, StoreError> {
        let term = seconds(term);
        let row = self.run("job_queue", move |client| async move {
            let statement = client
                .prepare_cached(
                    "UPDATE job_queue SET lease_until = now() + make_interval(secs => $3) \
                     WHERE id = $1::text::uuid AND lease_token = $2 AND state = 'running' \
                     RETURNING cancel_requested",
                )
                .await?;
            let row = client
                .query_opt(&statement, &[&lease.job.to_string(), &lease.token, &term])
                .await?;
            row.map(|row| row.try_get::<_, bool>(0)).transpose()
        })?;
        Ok(match row {
            Some(cancel) => Renewal::Held { cancel },
            None => Renewal::Lost,
        })
    }

    fn put_fenced(&self, lease: Lease, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if self.fenced_write(lease, key, Some(Arc::from(bytes)), false)? {
            Ok(())
        } else {
            Err(fenced(lease))
        }
    }

    fn put_new_fenced(&self, lease: Lease, key: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        self.fenced_put_new(lease, key, Arc::from(bytes))?
            .ok_or_else(|| fenced(lease))
    }

    fn delete_fenced(&self, lease: Lease, key: &str) -> Result<(), StoreError> {
        if self.fenced_write(lease, key, None, false)? {
            Ok(())
        } else {
            Err(fenced(lease))
        }
    }

    fn finish(&self, lease: Lease, key: &str, record: &[u8]) -> Result<(), StoreError> {
        if self.fenced_write(lease, key, Some(Arc::from(record)), true)? {
            Ok(())
        } else {
            Err(fenced(lease))
        }
    }

    fn cancel(&self, id: Uuid, key: &str, record: &[u8]) -> Result<Cancel, StoreError> {
        check_key(key)?;
        let (owned, value) = (key.to_owned(), Arc::<[u8]>::from(record));
        self.run(key, move |mut client| {
            let (key, value) = (owned.clone(), Arc::clone(&value));
            async move {
                let tx = client.transaction().await?;
                let state: Option<String> = tx
                    .query_opt(
                        "SELECT state FROM job_queue WHERE id = $1::text::uuid FOR UPDATE",
                        &[&id.to_string()],
                    )
                    .await?
                    .map(|row| row.try_get(0))
                    .transpose()?;
                let done = match state.as_deref() {
                    Some("queued") => {
                        tx.execute(UPSERT, &[&key, &&*value]).await?;
                        tx.execute(
                            "UPDATE job_queue SET state = 'done', \
                             lease_token = nextval('job_lease_tokens') WHERE id = $1::text::uuid",
                            &[&id.to_string()],
                        )
                        .await?;
                        Cancel::Dequeued
                    }
                    Some("running") => {
                        tx.execute(
                            "UPDATE job_queue SET cancel_requested = true WHERE id = $1::text::uuid",
                            &[&id.to_string()],
                        )
                        .await?;
                        Cancel::Requested
                    }
                    _ => Cancel::NotActive,
                };
                tx.commit().await?;
                Ok(done)
            }
        })
    }

    fn active(&self, id: Uuid) -> Result<Option<bool>, StoreError> {
        let state = self.run("job_queue", move |client| async move {
            let row = client
                .query_opt(
                    "SELECT state FROM job_queue WHERE id = $1::text::uuid",
                    &[&id.to_string()],
                )
                .await?;
            row.map(|row| row.try_get::<_, String>(0)).transpose()
        })?;
        Ok(state.map(|s| s != "done"))
    }

    fn queued_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        let ids = self.run("job_queue", |client| async move {
            let rows = client.query("SELECT id::text FROM job_queue", &[]).await?;
            rows.iter()
                .map(|row| row.try_get::<_, String>(0))
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(ids.iter().filter_map(|id| parse_id(id)).collect())
    }

    fn reap(
        &self,
        key: fn(Uuid) -> String,
        rewrite: Arc<Rewrite>,
    ) -> Result<Vec<Reaped>, StoreError> {
        self.run("job_queue", move |mut client| {
            let rewrite = Arc::clone(&rewrite);
            async move {
                let tx = client.transaction().await?;
                // A new token is what fences the worker that lost the lease.
                let rows = tx
                    .query(
                        "UPDATE job_queue SET state = 'done', lease_until = NULL, \
                         lease_token = nextval('job_lease_tokens') \
                         WHERE id IN (SELECT id FROM job_queue \
                             WHERE state = 'running' AND lease_until < now() \
                             ORDER BY lease_until FOR UPDATE SKIP LOCKED LIMIT $1) \
                         RETURNING id::text, coalesce(worker, '')",
                        &[&REAP_BATCH],
                    )
                    .await?;
                let mut reaped = Vec::with_capacity(rows.len());
                for row in rows {
                    let (id, worker): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                    let Some(job) = parse_id(&id) else { continue };
                    let k = key(job);
                    let stored: Option<Vec<u8>> = tx
                        .query_opt("SELECT value FROM objects WHERE key = $1 FOR UPDATE", &[&k])
                        .await?
                        .map(|row| row.try_get(0))
                        .transpose()?;
                    let record = rewrite(job, &worker, stored.as_deref());
                    if let Some(value) = &record {
                        tx.execute(UPSERT, &[&k, &value.as_slice()]).await?;
                    }
                    reaped.push(Reaped {
                        job,
                        worker,
                        record,
                    });
                }
                tx.commit().await?;
                Ok(reaped)
            }
        })
    }
}

#[cfg(test)]
mod tests;
