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

/// The keys `changes` reports within `secs`, until `want` are all among them.
fn changes_within(changes: &crate::store::Changes, want: &[&str], secs: u64) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut got: Vec<String> = Vec::new();
    while !want.iter().all(|w| got.iter().any(|g| g == w)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(
            !left.is_zero(),
            "within {secs} s: {got:?}, not all of {want:?}"
        );
        got.extend(changes.wait(left).expect("not closed"));
    }
    got
}

#[test]
fn another_stores_writes_and_deletes_are_followed_and_its_own_are_not() {
    let Some(db) = ScratchDatabase::from_env("another_stores_writes_and_deletes_are_followed")
    else {
        return;
    };
    let (here, there) = (connect(&db), connect(&db));
    let changes = here.follow().expect("a database is shared");
    assert!(Arc::ptr_eq(
        &changes,
        &here.follow().expect("the same feed")
    ));
    // The feed listens once its connection is up: a write it then sees proves it is.
    there.put("warm/1.json", b"up").expect("put");
    changes_within(&changes, &["warm/1.json"], 10);

    here.put("models/mine.json", b"mine").expect("put");
    there.put("models/theirs.json", b"theirs").expect("put");
    there.put("models/theirs.json", b"again").expect("put");
    there.delete("warm/1.json").expect("delete");
    let got = changes_within(&changes, &["models/theirs.json", "warm/1.json"], 10);

    assert!(!got.iter().any(|k| k == "models/mine.json"), "{got:?}");
}

#[test]
fn a_change_whose_notification_is_lost_is_found_by_the_poll() {
    let Some(db) = ScratchDatabase::from_env("a_change_whose_notification_is_lost") else {
        return;
    };
    let (here, there) = (connect(&db), connect(&db));
    let changes = here.follow().expect("a database is shared");
    there.put("warm/1.json", b"up").expect("put");
    changes_within(&changes, &["warm/1.json"], 10);
    // No notification at all: the trigger that sends them is off.
    super::scratch::run_sql(
        db.url(),
        "ALTER TABLE objects DISABLE TRIGGER objects_changed".to_owned(),
    )
    .expect("disable the trigger");

    there.put("models/quiet.json", b"quiet").expect("put");

    let secs = super::POLL_EVERY.as_secs() * 2 + 5;
    changes_within(&changes, &["models/quiet.json"], secs);
}

#[test]
fn the_feed_connects_again_when_its_connection_is_cut_and_misses_nothing() {
    let Some(db) = ScratchDatabase::from_env("the_feed_connects_again_when_its_connection_is_cut")
    else {
        return;
    };
    let (here, there) = (connect(&db), connect(&db));
    let changes = here.follow().expect("a database is shared");
    there.put("warm/1.json", b"up").expect("put");
    changes_within(&changes, &["warm/1.json"], 10);

    // Every connection that listens is cut; the write comes while the feed reconnects.
    super::scratch::run_sql(
        db.url(),
        format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = '{}'",
            super::follow::APPLICATION_NAME
        ),
    )
    .expect("cut the feed's connection");
    there.put("models/meanwhile.json", b"x").expect("put");

    changes_within(&changes, &["models/meanwhile.json"], 15);
}

#[test]
fn a_number_is_taken_once_by_one_of_many_writers() {
    let Some(db) = ScratchDatabase::from_env("a_number_is_taken_once_by_one_of_many_writers")
    else {
        return;
    };
    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let writers: Vec<_> = (0..n)
        .map(|i| {
            let (store, barrier) = (connect(&db), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let won = store
                    .put_new("versions/m/00000001.safetensors", format!("{i}").as_bytes())
                    .expect("put_new");
                (i, won)
            })
        })
        .collect();
    let won: Vec<usize> = writers
        .into_iter()
        .map(|w| w.join().expect("no panic"))
        .filter_map(|(i, won)| won.then_some(i))
        .collect();

    assert_eq!(won.len(), 1, "{won:?}");
    let stored = connect(&db)
        .get("versions/m/00000001.safetensors")
        .expect("get");
    assert_eq!(
        stored,
        Some(format!("{}", won[0]).into_bytes()),
        "the winner's value"
    );
}

#[test]
fn a_model_name_is_claimed_by_one_owner_until_released() {
    let Some(db) = ScratchDatabase::from_env("a_model_name_is_claimed_by_one_owner") else {
        return;
    };
    let (a, b) = (connect(&db), connect(&db));

    assert_eq!(a.claim_name("xor", "id-1").expect("claim"), None);
    assert_eq!(
        a.claim_name("xor", "id-1").expect("again"),
        None,
        "its owner's again"
    );
    assert_eq!(
        b.claim_name("xor", "id-2").expect("claim"),
        Some("id-1".to_owned())
    );
    b.release_name("xor", "id-2")
        .expect("not its claim: nothing happens");
    assert_eq!(
        b.claim_name("xor", "id-2").expect("claim"),
        Some("id-1".to_owned())
    );
    a.release_name("xor", "id-1").expect("release");
    assert_eq!(b.claim_name("xor", "id-2").expect("claim"), None);
}

#[test]
fn a_stale_claim_without_a_model_record_is_taken_over_and_one_with_a_record_is_not() {
    let Some(db) = ScratchDatabase::from_env("a_stale_claim_without_a_model_record") else {
        return;
    };
    let store = connect(&db);
    store.claim_name("ghost", "id-dead").expect("claim");
    store.claim_name("kept", "id-live").expect("claim");
    store.put("models/id-live.json", b"{}").expect("its record");
    super::scratch::run_sql(
        db.url(),
        "UPDATE model_names SET claimed_at = now() - interval '1 hour'".to_owned(),
    )
    .expect("age the claims");

    assert_eq!(store.claim_name("ghost", "id-new").expect("claim"), None);
    assert_eq!(
        store.claim_name("kept", "id-new").expect("claim"),
        Some("id-live".to_owned())
    );
}
