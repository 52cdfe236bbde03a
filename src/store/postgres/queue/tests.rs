//! The job queue against a real PostgreSQL server (`MLP_LAB_TEST_DATABASE_URL`; each test
//! makes its own database). Without the variable each test prints why it skips and passes.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use uuid::Uuid;

use super::super::scratch::{run_sql, ScratchDatabase};
use super::super::{parse_url, PgStore};
use crate::store::queue::{Cancel, JobQueue, Lease, Renewal};
use crate::store::{Store, StoreError};

const LEASE: Duration = Duration::from_secs(10);

fn connect(db: &ScratchDatabase) -> Arc<PgStore> {
    let (store, _) = PgStore::connect(parse_url(db.url(), None).expect("URL")).expect("connect");
    Arc::new(store)
}

fn key(id: Uuid) -> String {
    format!("jobs/{id}.json")
}

/// Submits `n` jobs, one after the other, and returns their ids in that order.
fn submit(store: &PgStore, n: usize) -> Vec<Uuid> {
    (0..n)
        .map(|_| {
            let id = Uuid::now_v7();
            assert!(store.submit(id, &key(id), b"queued", 1000).expect("submit"));
            id
        })
        .collect()
}

/// Makes every running lease expire now, as if its holder had gone quiet for its whole term.
fn expire_leases(db: &ScratchDatabase) {
    run_sql(
        db.url(),
        "UPDATE job_queue SET lease_until = now() - interval '1 second' WHERE state = 'running'"
            .to_owned(),
    )
    .expect("expire");
}

#[test]
fn claims_take_the_oldest_queued_job_first_and_none_when_the_queue_is_empty() {
    let Some(db) = ScratchDatabase::from_env("claims_take_the_oldest_queued_job_first") else {
        return;
    };
    let store = connect(&db);
    let ids = submit(&store, 3);

    let claimed: Vec<Uuid> = (0..3)
        .map(|_| store.claim("a", LEASE).expect("claim").expect("a job").job)
        .collect();

    assert_eq!(claimed, ids);
    assert_eq!(store.claim("a", LEASE).expect("claim"), None);
    assert_eq!(
        store.get(&key(ids[0])).expect("get"),
        Some(b"queued".to_vec())
    );
}

#[test]
fn concurrent_claimers_never_get_the_same_job() {
    let Some(db) = ScratchDatabase::from_env("concurrent_claimers_never_get_the_same_job") else {
        return;
    };
    let store = connect(&db);
    let ids = submit(&store, 40);
    let claimers = 8;
    let barrier = Arc::new(Barrier::new(claimers));

    let threads: Vec<_> = (0..claimers)
        .map(|i| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut mine = Vec::new();
                while let Some(lease) = store.claim(&format!("w{i}"), LEASE).expect("claim") {
                    mine.push(lease);
                }
                mine
            })
        })
        .collect();
    let all: Vec<Lease> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("join"))
        .collect();

    let distinct: HashSet<Uuid> = all.iter().map(|l| l.job).collect();
    assert_eq!(all.len(), ids.len(), "every job claimed once: {all:?}");
    assert_eq!(distinct, ids.into_iter().collect());
    let tokens: HashSet<i64> = all.iter().map(|l| l.token).collect();
    assert_eq!(tokens.len(), all.len(), "every claim has its own token");
}

#[test]
fn a_write_with_a_stale_token_is_refused_after_the_reaper_took_the_job() {
    let Some(db) = ScratchDatabase::from_env("a_write_with_a_stale_token_is_refused") else {
        return;
    };
    let store = connect(&db);
    let id = submit(&store, 1)[0];
    let lease = store.claim("a", LEASE).expect("claim").expect("the job");
    store
        .put_fenced(lease, &key(id), b"epoch 1")
        .expect("the holder writes");
    store
        .put_fenced(lease, "versions/m/1.json", b"v")
        .expect("and other keys");
    let forged = Lease {
        job: id,
        token: lease.token + 1000,
    };
    assert!(matches!(
        store.put_fenced(forged, &key(id), b"forged"),
        Err(StoreError::Fenced { .. })
    ));

    expire_leases(&db);
    let reaped = store
        .reap(
            key,
            Arc::new(|_, worker: &str, old: Option<&[u8]>| {
                let old = String::from_utf8_lossy(old.unwrap_or_default()).into_owned();
                Some(format!("{old}; interrupted: {worker} lost its lease").into_bytes())
            }),
        )
        .expect("reap");

    assert_eq!(reaped.len(), 1);
    assert_eq!((reaped[0].job, reaped[0].worker.as_str()), (id, "a"));
    let after = Some(b"epoch 1; interrupted: a lost its lease".to_vec());
    assert_eq!(store.get(&key(id)).expect("get"), after);
    assert_eq!(store.renew(lease, LEASE).expect("renew"), Renewal::Lost);
    for refused in [
        store.put_fenced(lease, &key(id), b"epoch 2"),
        store.finish(lease, &key(id), b"succeeded"),
        store.delete_fenced(lease, "versions/m/1.json"),
    ] {
        assert!(
            matches!(refused, Err(StoreError::Fenced { job, token }) if job == id && token == lease.token),
            "{refused:?}"
        );
    }
    assert_eq!(store.get(&key(id)).expect("get"), after, "unchanged");
    assert!(store.get("versions/m/1.json").expect("get").is_some());
    assert!(store
        .reap(key, Arc::new(|_, _, _| None))
        .expect("reap")
        .is_empty());
}

#[test]
fn renewing_extends_the_lease_and_tells_of_a_cancel_and_finishing_takes_the_job_out() {
    let Some(db) = ScratchDatabase::from_env("renewing_extends_the_lease") else {
        return;
    };
    let store = connect(&db);
    let ids = submit(&store, 2);
    let lease = store.claim("a", LEASE).expect("claim").expect("the job");

    assert_eq!(
        store.renew(lease, LEASE).expect("renew"),
        Renewal::Held { cancel: false }
    );
    assert_eq!(
        store.cancel(ids[0], &key(ids[0]), b"x").expect("cancel"),
        Cancel::Requested
    );
    assert_eq!(
        store.renew(lease, LEASE).expect("renew"),
        Renewal::Held { cancel: true }
    );
    assert_eq!(
        store
            .cancel(ids[1], &key(ids[1]), b"cancelled")
            .expect("cancel"),
        Cancel::Dequeued
    );
    assert_eq!(
        store.get(&key(ids[1])).expect("get"),
        Some(b"cancelled".to_vec())
    );
    assert_eq!(
        store.claim("b", LEASE).expect("claim"),
        None,
        "no longer queued"
    );

    store.finish(lease, &key(ids[0]), b"done").expect("finish");

    assert_eq!(store.active(ids[0]).expect("active"), Some(false));
    assert_eq!(store.active(Uuid::now_v7()).expect("active"), None);
    assert_eq!(store.renew(lease, LEASE).expect("renew"), Renewal::Lost);
    assert_eq!(
        store.cancel(ids[0], &key(ids[0]), b"x").expect("cancel"),
        Cancel::NotActive
    );
    expire_leases(&db);
    assert!(store
        .reap(key, Arc::new(|_, _, _| None))
        .expect("reap")
        .is_empty());
    assert_eq!(store.queued_ids().expect("ids").len(), 2);
}

#[test]
fn the_queue_bound_holds_over_every_submitter_at_once() {
    let Some(db) = ScratchDatabase::from_env("the_queue_bound_holds_over_every_submitter") else {
        return;
    };
    let store = connect(&db);
    let max = 5;
    let barrier = Arc::new(Barrier::new(12));

    let accepted: usize = (0..12)
        .map(|_| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let id = Uuid::now_v7();
                usize::from(store.submit(id, &key(id), b"q", max).expect("submit"))
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("join"))
        .sum();

    assert_eq!(accepted, max);
    assert_eq!(
        store.list("jobs/").expect("list").len(),
        max,
        "refused ones wrote nothing"
    );
    store.claim("a", LEASE).expect("claim").expect("a job");
    let id = Uuid::now_v7();
    assert!(
        store.submit(id, &key(id), b"q", max).expect("submit"),
        "a claimed job leaves room"
    );
}
