//! The registry's models and versions: reloading, and the order of what one model's files go
//! through (create, delete, versions) when they run at once.

use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::keys::model_key;
use super::{Registry, RegistryError, VersionInfo};
use crate::config::Limits;
use crate::nn::{Activation, Head, Model, ModelSpec};
use crate::store::{MemoryStore, Store, StoreError};

#[test]
fn models_and_versions_survive_a_reload() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let registry = Registry::new(Arc::clone(&store), Limits::default());
    let spec = spec();
    let entry = registry
        .create_model("xor".into(), spec.clone())
        .expect("created");
    assert!(matches!(
        registry.create_model("xor".into(), spec.clone()),
        Err(RegistryError::NameTaken(_))
    ));
    let model = Model::new(spec, 1).expect("model");
    let info = VersionInfo::without_training(entry.record.id, true);
    let v = registry
        .add_version(entry.record.id, model, info)
        .expect("added");
    assert_eq!(v.info.version, 1);

    let reloaded = Registry::load(store, Limits::default()).expect("loads");
    let (_, version) = reloaded.version("xor", None).expect("has a version");
    assert_eq!(version.info.version, 1);
    assert_eq!(*version.model, *v.model);
}

#[test]
fn a_repaired_model_whose_name_was_taken_meanwhile_is_unavailable_and_the_newer_keeps_it() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let registry = Registry::new(Arc::clone(&store), Limits::default());
    let spec = spec();
    let old = registry
        .create_model("a".into(), spec.clone())
        .expect("created");
    let key = model_key(old.record.id);
    let good = store.get(&key).expect("get").expect("stored");
    store.put(&key, b"{\"format\":").expect("damage");
    let reloaded = Registry::load(Arc::clone(&store), Limits::default()).expect("loads");
    let new = reloaded
        .create_model("a".into(), spec)
        .expect("the name is free");
    store.put(&key, &good).expect("repair");

    let again = Registry::load(Arc::clone(&store), Limits::default()).expect("loads");

    assert_eq!(again.model("a").expect("found").record.id, new.record.id);
    let unavailable = again.unavailable();
    assert_eq!(unavailable.len(), 1);
    assert_eq!(unavailable[0].id, old.record.id.to_string());
    assert!(
        unavailable[0].reason.contains("taken by model"),
        "{}",
        unavailable[0].reason
    );
}

/// A store whose writes of the keys `gated` picks wait until the test lets them go.
#[derive(Debug)]
struct GatedStore {
    inner: MemoryStore,
    gated: fn(&str) -> bool,
    entered: SyncSender<()>,
    release: Mutex<Receiver<()>>,
}

impl GatedStore {
    /// The store, the receiver told of each gated write as it starts, and the sender that
    /// lets one go.
    fn new(gated: fn(&str) -> bool) -> (Arc<Self>, Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (entered_tx, entered) = sync_channel(2);
        let (release, release_rx) = channel();
        let store = Arc::new(Self {
            inner: MemoryStore::new(),
            gated,
            entered: entered_tx,
            release: Mutex::new(release_rx),
        });
        (store, entered, release)
    }
}

impl Store for GatedStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if (self.gated)(key) {
            self.entered.send(()).expect("the test waits");
            self.release.lock().expect("lock").recv().expect("released");
        }
        self.inner.put(key, bytes)
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix)
    }
    fn probe(&self) -> Result<(), StoreError> {
        self.inner.probe()
    }
}

fn is_version_record(key: &str) -> bool {
    key.starts_with("versions/") && key.ends_with(".json")
}

fn spec() -> ModelSpec {
    ModelSpec::new(&[2, 3, 1], Activation::Tanh, Head::Sigmoid)
}

#[test]
fn a_version_is_served_only_once_its_files_are_stored_and_numbers_are_not_shared() {
    let (store, entered, release) = GatedStore::new(is_version_record);
    let registry = Arc::new(Registry::new(store, Limits::default()));
    let id = registry
        .create_model("xor".into(), spec())
        .expect("created")
        .record
        .id;
    let info = VersionInfo::without_training(id, true);
    let add = |seed: u64| {
        let registry = Arc::clone(&registry);
        let (model, info) = (Model::new(spec(), seed).expect("model"), info.clone());
        std::thread::spawn(move || registry.add_version(id, model, info))
    };

    let first = add(1);
    entered.recv().expect("the first is writing its record");
    assert!(
        matches!(
            registry.version("xor", None),
            Err(RegistryError::NotTrained(_))
        ),
        "nothing is served while its record is being written"
    );
    let second = add(2);
    release.send(()).expect("one");
    entered
        .recv()
        .expect("the second writes once the first is stored");
    release.send(()).expect("two");
    let numbers = [first, second].map(|t| t.join().expect("no panic").expect("added").info.version);

    assert_eq!(numbers, [1, 2]);
    let entry = registry.model("xor").expect("found");
    let listed: Vec<u32> = entry.versions.iter().map(|v| v.info.version).collect();
    assert_eq!(listed, [1, 2], "in number order");
}

/// Issue 24's first race, step by step: a delete that came while the create wrote its record
/// answered 204 and the record landed after it, so the model came back at the next start.
#[test]
fn a_model_being_created_is_not_found_by_a_delete_so_what_is_stored_is_what_is_served() {
    let (store, entered, release) = GatedStore::new(|key| key.starts_with("models/"));
    let registry = Arc::new(Registry::new(
        Arc::clone(&store) as Arc<dyn Store>,
        Limits::default(),
    ));
    let create = std::thread::spawn({
        let registry = Arc::clone(&registry);
        move || registry.create_model("xor".into(), spec())
    });
    entered.recv().expect("the create is writing its record");

    let deleted = registry.delete_model("xor");

    assert!(
        matches!(deleted, Err(RegistryError::NotFound { .. })),
        "{deleted:?}"
    );
    assert!(matches!(
        registry.create_model("xor".into(), spec()),
        Err(RegistryError::NameTaken(_))
    ));
    release.send(()).expect("go");
    let id = create.join().expect("no panic").expect("created").record.id;
    assert_eq!(registry.model("xor").expect("served").record.id, id);
    assert_eq!(store.list("models/").expect("list"), [model_key(id)]);
}

/// Issue 24's second race, step by step: a delete that came while a version was written
/// answered before the version's files were removed (they were, a moment later, unless the
/// process stopped first).
#[test]
fn a_delete_waits_for_the_version_being_written_and_leaves_no_file_of_it() {
    let (store, entered, release) = GatedStore::new(is_version_record);
    let registry = Arc::new(Registry::new(
        Arc::clone(&store) as Arc<dyn Store>,
        Limits::default(),
    ));
    let id = registry
        .create_model("xor".into(), spec())
        .expect("created")
        .record
        .id;
    let add = std::thread::spawn({
        let registry = Arc::clone(&registry);
        let info = VersionInfo::without_training(id, true);
        move || registry.add_version(id, Model::new(spec(), 1).expect("model"), info)
    });
    entered.recv().expect("the version is writing its record");
    let (done, deleted) = channel();
    let delete = std::thread::spawn({
        let (registry, store) = (Arc::clone(&registry), Arc::clone(&store));
        move || {
            let result = registry.delete_model("xor");
            let left = store.list("").expect("list");
            done.send(()).expect("the test waits");
            (result, left)
        }
    });

    // The delete must not answer while the version is being written; 200 ms is ample for it
    // to answer when nothing holds it.
    let early = deleted.recv_timeout(Duration::from_millis(200));
    release.send(()).expect("go");
    let (result, left) = delete.join().expect("no panic");

    assert_eq!(
        early,
        Err(RecvTimeoutError::Timeout),
        "answered early, leaving {left:?}"
    );
    result.expect("deleted");
    assert_eq!(
        left,
        Vec::<String>::new(),
        "nothing left when the delete answered"
    );
    assert!(
        add.join().expect("no panic").is_ok(),
        "stored, then deleted with its model"
    );
    assert_eq!(store.list("").expect("list"), Vec::<String>::new());
    assert!(matches!(
        registry.add_version(
            id,
            Model::new(spec(), 2).expect("model"),
            VersionInfo::without_training(id, true)
        ),
        Err(RegistryError::NotFound { .. })
    ));
    assert_eq!(
        store.list("").expect("list"),
        Vec::<String>::new(),
        "and none lands after it"
    );
}

/// A store whose deletes of version files fail while `failing` is set.
#[derive(Debug, Default)]
struct StuckVersions {
    inner: MemoryStore,
    failing: std::sync::atomic::AtomicBool,
}

impl Store for StuckVersions {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.put(key, bytes)
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        if key.starts_with("versions/") && self.failing.load(std::sync::atomic::Ordering::Acquire) {
            return Err(StoreError::Io {
                key: key.to_owned(),
                source: std::io::Error::other("stuck"),
            });
        }
        self.inner.delete(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix)
    }
    fn probe(&self) -> Result<(), StoreError> {
        self.inner.probe()
    }
}

#[test]
fn versions_left_by_a_delete_that_failed_half_way_are_orphans_until_their_id_is_deleted() {
    let store = Arc::new(StuckVersions::default());
    let registry = Registry::new(Arc::clone(&store) as Arc<dyn Store>, Limits::default());
    let id = registry
        .create_model("xor".into(), spec())
        .expect("created")
        .record
        .id;
    let info = VersionInfo::without_training(id, true);
    registry
        .add_version(id, Model::new(spec(), 1).expect("model"), info)
        .expect("added");
    store
        .failing
        .store(true, std::sync::atomic::Ordering::Release);

    let failed = registry.delete_model("xor");

    assert!(matches!(failed, Err(RegistryError::Store(_))), "{failed:?}");
    assert!(matches!(
        registry.model("xor"),
        Err(RegistryError::NotFound { .. })
    ));
    let listed = registry.unavailable();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, format!("{id}/1"));
    assert!(matches!(
        registry.model(&id.to_string()),
        Err(RegistryError::Unavailable { .. })
    ));
    let reloaded =
        Registry::load(Arc::clone(&store) as Arc<dyn Store>, Limits::default()).expect("loads");
    assert_eq!(reloaded.unavailable(), listed, "found again at start-up");
    store
        .failing
        .store(false, std::sync::atomic::Ordering::Release);
    registry.delete_model(&id.to_string()).expect("deleted");
    assert!(registry.unavailable().is_empty());
    assert_eq!(store.list("").expect("list"), Vec::<String>::new());
}
