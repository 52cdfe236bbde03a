//! Following the other replicas' writes ([`Store::follow`](crate::store::Store::follow)):
//! what tells this replica's caches that a model, a version, a dataset, a job or an
//! experiment changed in the database.
//!
//! Two paths feed one [`Changes`]. The fast one: a connection of its own LISTENs on
//! `mlp_lab_changes`, where a trigger sends every write's revision and key at commit
//! (migration 2), so a version trained on one replica reaches the others' caches within
//! milliseconds. The safe one: every [`POLL_EVERY`], and at once after (re)connecting, a
//! query for the keys written or deleted since the last poll, less [`OVERLAP`]: a notification
//! lost with its connection (a database restart, a network cut) is caught there. `updated_at`
//! is a writing transaction's start, so a poll could miss a write that commits after it but
//! started before it; the overlap, longer than any write takes, covers that.
//!
//! Each key's last revision seen ([`Seen`]) keeps a change from being passed on twice. This
//! replica's own writes are not passed on at all: each of its connections names it in the
//! setting `mlp_lab.writer` ([`WRITER_SETTING`]), which the trigger records beside each
//! change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

use super::error::explain;
use crate::store::Changes;

/// The channel the trigger of migration 2 notifies.
pub const CHANNEL: &str = "mlp_lab_changes";

/// The setting in which a connection names the replica that writes through it.
pub const WRITER_SETTING: &str = "mlp_lab.writer";

/// The `application_name` of the connection that follows.
pub const APPLICATION_NAME: &str = "mlp-lab-follow";

/// How often the database is asked for changes whatever the notifications say.
pub const POLL_EVERY: Duration = Duration::from_secs(5);

/// How far back each poll looks past the previous one: longer than a write can take (the
/// store gives an operation at most [`OP_TIMEOUT`](super::OP_TIMEOUT)).
pub const OVERLAP: Duration = Duration::from_secs(120);

/// How long to wait before connecting again after the connection failed.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// The revision of each key last passed on or written here, and when; forgotten once older
/// than a poll could bring back.
#[derive(Debug, Default)]
pub struct Seen {
    keys: Mutex<HashMap<String, (i64, Instant)>>,
}

impl Seen {
    /// Notes that `key` is at `revision`; whether that is newer than what was known (a change
    /// to pass on).
    pub fn note(&self, key: &str, revision: i64) -> bool {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match keys.get_mut(key) {
            Some((known, _)) if *known >= revision => false,
            Some(known) => {
                *known = (revision, Instant::now());
                true
            }
            None => {
                keys.insert(key.to_owned(), (revision, Instant::now()));
                true
            }
        }
    }

    /// Forgets keys noted longer ago than any poll looks back.
    fn prune(&self) {
        let horizon = OVERLAP + POLL_EVERY * 2;
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, (_, at)| at.elapsed() < horizon);
    }
}

/// Follows the database until `changes` is closed: listens, polls, and connects again
/// whenever the connection fails. Runs on the store's runtime.
pub async fn run(
    config: tokio_postgres::Config,
    writer: String,
    seen: Arc<Seen>,
    changes: Arc<Changes>,
) {
    let me = Me {
        writer,
        seen,
        changes,
    };
    // The database's clock, not ours: the replicas' clocks may differ.
    let mut since: Option<SystemTime> = None;
    let mut failing = false;
    loop {
        match follow(&config, &me, &mut since, &mut failing).await {
            Ok(()) => return,
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(error = %explain(&error), "lost the database connection that follows other replicas' writes; connecting again");
            }
            Err(_) => {}
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
        if me.changes.is_closed() {
            return;
        }
    }
}

/// This replica, as the follower knows it.
struct Me {
    /// Its name in [`WRITER_SETTING`].
    writer: String,
    seen: Arc<Seen>,
    changes: Arc<Changes>,
}

impl Me {
    /// Passes on the change of `key` to `revision` by `writer`, if it is new and another's.
    fn changed(&self, key: &str, revision: i64, writer: &str) {
        if self.seen.note(key, revision) && writer != self.writer {
            self.changes.push(key);
        }
    }
}

/// One connection's worth of following: `Ok` when `changes` was closed.
async fn follow(
    config: &tokio_postgres::Config,
    me: &Me,
    since: &mut Option<SystemTime>,
    failing: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (notes, mut notified) = tokio::sync::mpsc::unbounded_channel();
    // The connection is driven here, and its notifications passed on; it ends with an error
    // when the connection fails.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if notes.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    });
    let done = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        if std::mem::take(failing) {
            tracing::info!("following other replicas' writes again");
        }
        // Listening from here on: what was written before is polled.
        poll(&client, me, since).await?;
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            if me.changes.is_closed() {
                return Ok(());
            }
            tokio::select! {
                note = notified.recv() => match note {
                    Some(payload) => passed_on(&payload, me),
                    // The driver ended: the connection is gone; the query says why.
                    None => {
                        client.simple_query("SELECT 1").await?;
                    }
                },
                _ = tick.tick() => {
                    poll(&client, me, since).await?;
                    me.seen.prune();
                }
            }
        }
    };
    let result = done.await;
    driver.abort();
    result
}

/// Passes on the change a notification's payload (`<revision> <writer> <key>`) names.
fn passed_on(payload: &str, me: &Me) {
    let mut parts = payload.splitn(3, ' ');
    let (Some(revision), Some(writer), Some(key)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    if let Ok(revision) = revision.parse::<i64>() {
        me.changed(key, revision, writer);
    }
}

/// Passes on every key written or deleted since `since` less [`OVERLAP`] that is new, and
/// moves `since` to the database's time before the query.
async fn poll(
    client: &tokio_postgres::Client,
    me: &Me,
    since: &mut Option<SystemTime>,
) -> Result<(), tokio_postgres::Error> {
    let now: SystemTime = client.query_one("SELECT now()", &[]).await?.try_get(0)?;
    let from = since.unwrap_or(now).checked_sub(OVERLAP).unwrap_or(now);
    let rows = client
        .query(
            "SELECT key, revision, coalesce(writer, '-') FROM objects WHERE updated_at > $1 \
             UNION ALL \
             SELECT key, revision, coalesce(writer, '-') FROM object_deletions \
             WHERE deleted_at > $1",
            &[&from],
        )
        .await?;
    for row in rows {
        let (key, revision, writer): (String, i64, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        me.changed(&key, revision, &writer);
    }
    *since = Some(now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Seen;

    #[test]
    fn a_revision_is_passed_on_once_and_an_older_one_never() {
        let seen = Seen::default();
        assert!(seen.note("jobs/a.json", 5));
        assert!(!seen.note("jobs/a.json", 5));
        assert!(!seen.note("jobs/a.json", 4));
        assert!(seen.note("jobs/a.json", 6));
        assert!(seen.note("jobs/b.json", 1));
    }
}
