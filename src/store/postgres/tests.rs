//! [`PgStore`] against a real PostgreSQL server (`MLP_LAB_TEST_DATABASE_URL`; each test makes
//! its own database). Without the variable each test prints why it skips and passes.

use std::sync::{Arc, Barrier};

use super::scratch::ScratchDatabase;
use super::{like_prefix, parse_url, PgStore, MIGRATIONS};
use crate::store::{Store, StoreError};

fn connect(db: &ScratchDatabase) -> PgStore {
    let (store, _) = PgStore::connect(parse_url(db.url(), None).expect("URL")).expect("connect");
    store
}

#[test]
fn the_postgres_store_keeps_what_it_is_given_across_reconnecting() {
    let Some(db) = ScratchDatabase::from_env("the_postgres_store_keeps_what_it_is_given") else {
        return;
    };
    let store = connect(&db);
    crate::store::exercise(&store);
    store.probe().expect("the probe writes");
    drop(store);

    let reopened = connect(&db);
    assert_eq!(
        reopened.get("b/1.json").expect("get"),
        Some(b"other".to_vec())
    );
    assert_eq!(reopened.list("").expect("list"), ["a/2.json", "b/1.json"]);
}

#[test]
fn listing_a_prefix_takes_its_characters_literally_and_sorts_bytewise() {
    let Some(db) = ScratchDatabase::from_env("listing_a_prefix_takes_its_characters_literally")
    else {
        return;
    };
    let store = connect(&db);
    for key in [
        "a_b/1", "axb/1", "a%/1", "a\\/1", "B/1", "b/1", "é/1", "z/1",
    ] {
        store.put(key, key.as_bytes()).expect("put");
    }

    assert_eq!(store.list("a_").expect("list"), ["a_b/1"]);
    assert_eq!(store.list("a%").expect("list"), ["a%/1"]);
    assert_eq!(store.list("a\\").expect("list"), ["a\\/1"]);
    let mut rust_order = store.list("").expect("list");
    rust_order.sort();
    assert_eq!(
        store.list("").expect("list"),
        rust_order,
        "bytewise, as a BTreeMap"
    );
    assert_eq!(like_prefix("a_%\\"), "a\\_\\%\\\\%");
}

#[test]
fn a_value_over_the_cap_is_refused_unread_with_its_size() {
    let Some(db) = ScratchDatabase::from_env("a_value_over_the_cap_is_refused_unread") else {
        return;
    };
    let store = connect(&db).with_max_value_bytes(9);
    store.put("a/1.json", b"0123456789").expect("put");
    store.put("a/2.json", b"012345678").expect("put");

    assert!(matches!(
        store.get("a/1.json"),
        Err(StoreError::TooLarge {
            size: 10,
            max: 9,
            ..
        })
    ));
    assert_eq!(
        store.get("a/2.json").expect("get").map(|v| v.len()),
        Some(9)
    );
}

#[test]
fn concurrent_migrators_on_a_fresh_database_apply_each_migration_once() {
    let Some(db) = ScratchDatabase::from_env("concurrent_migrators_on_a_fresh_database") else {
        return;
    };
    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let migrators: Vec<_> = (0..n)
        .map(|_| {
            let (url, barrier) = (db.url().to_owned(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let config = parse_url(&url, None).expect("URL");
                barrier.wait();
                PgStore::connect(config).map(|(_, migrated)| migrated)
            })
        })
        .collect();
    let results: Vec<_> = migrators
        .into_iter()
        .map(|m| m.join().expect("no panic"))
        .collect();

    let mut applied = Vec::new();
    for result in results {
        let migrated = result.expect("every migrator succeeds");
        assert_eq!(Some(migrated.version), MIGRATIONS.last().map(|m| m.version));
        applied.extend(migrated.applied);
    }
    applied.sort_unstable();
    let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(
        applied, all,
        "each migration applied by exactly one migrator"
    );
    let store = connect(&db);
    crate::store::exercise(&store);
}

#[test]
fn a_migration_changed_after_it_was_applied_stops_the_start() {
    let Some(db) = ScratchDatabase::from_env("a_migration_changed_after_it_was_applied") else {
        return;
    };
    drop(connect(&db));
    super::scratch::run_sql(
        db.url(),
        "UPDATE schema_migrations SET sha256 = 'edited' WHERE version = 1".to_owned(),
    )
    .expect("tamper");

    let refused = PgStore::connect(parse_url(db.url(), None).expect("URL"));

    assert!(
        matches!(
            refused,
            Err(super::PgError::ChangedMigration { version: 1, .. })
        ),
        "{refused:?}"
    );
}

#[test]
fn a_database_that_is_gone_is_unavailable_not_an_internal_error() {
    let Some(db) = ScratchDatabase::from_env("a_database_that_is_gone_is_unavailable") else {
        return;
    };
    let store = connect(&db);
    store.put("a/1.json", b"one").expect("put");

    drop(db); // DROP DATABASE … WITH (FORCE): the pool's connections are cut

    for error in [
        store.put("a/2.json", b"two").expect_err("put"),
        store.get("a/1.json").expect_err("get"),
        store.probe().expect_err("probe"),
    ] {
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    }
}

#[test]
fn a_server_that_does_not_answer_is_a_connect_error_naming_the_database_without_the_password() {
    // A port nothing listens on (bound, then closed), in the URL form with a password.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("postgres://someone:s3cret@127.0.0.1:{port}/somedb");

    let refused = PgStore::connect(parse_url(&url, None).expect("URL"));

    let message = refused.expect_err("nothing listens").to_string();
    assert!(
        message.contains(&format!("someone@127.0.0.1:{port}/somedb")),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
}

#[test]
fn a_store_dropped_inside_a_runtime_does_not_panic() {
    let Some(db) = ScratchDatabase::from_env("a_store_dropped_inside_a_runtime") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Called on a runtime's own thread, as a #[tokio::test] may: no nested runtime.
        let store = connect(&db);
        store.put("a/1.json", b"one").expect("put");
        assert_eq!(store.get("a/1.json").expect("get"), Some(b"one".to_vec()));
        drop(store);
    });
}
