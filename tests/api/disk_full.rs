//! A store that cannot take a write for want of room: 507 `insufficient_storage` naming the
//! cause, nothing acknowledged, no temporary file left behind, and the same write taken once
//! there is room again.
//!
//! A test without root cannot fill a file system, so the kernel is made to refuse writes in
//! two honest ways. The real binary runs with a soft `RLIMIT_FSIZE` (and SIGXFSZ ignored), so
//! a write past it fails with EFBIG through the real data directory, temporary file and error
//! path; that is the test of the cleanup. ENOSPC and EDQUOT, which only a full or
//! over-quota file system gives, come from a store that answers them, behind the server's
//! store seam ([`mlp_lab::store::Store`]): that is the test of what each is answered with.

use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use mlp_lab::config::Config;
use mlp_lab::store::{MemoryStore, Store, StoreError};
use serde_json::json;

use crate::helpers::{assert_problem, xor_dataset, TestApp};
use crate::process::{mlp_lab_command_ignoring_sigxfsz, temp_dir, temporary_files, ServerProcess};

/// Sets the soft file-size limit of process `pid` (`prlimit(1)`, util-linux); `None` lifts it.
fn limit_file_size(pid: u32, bytes: Option<u64>) {
    let soft = bytes.map_or_else(|| "unlimited".to_owned(), |b| b.to_string());
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--fsize={soft}:"))
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success(), "prlimit --pid={pid} --fsize={soft}:");
}

#[tokio::test]
async fn a_write_the_file_system_refuses_is_507_and_leaves_no_temporary_file() {
    let dir = temp_dir("full");
    let mut command = mlp_lab_command_ignoring_sigxfsz(&["--log-format", "json", "--data-dir"]);
    command.arg(&dir);
    let server = ServerProcess::spawn(command).await;
    server.wait_ready().await;
    // About 100 KB as a stored record; the model's record is under 1 KB.
    let large = xor_dataset(2000);
    limit_file_size(server.pid(), Some(16 << 10));

    let refused = server
        .client
        .post(server.url("/v1/datasets"))
        .json(&large)
        .send()
        .await
        .expect("sent");

    let problem = assert_problem(refused, 507, "insufficient_storage").await;
    assert!(problem.detail.contains("EFBIG"), "{}", problem.detail);
    assert!(!problem.detail.contains(&*dir.to_string_lossy()), "no path");
    assert_eq!(temporary_files(&dir), Vec::<std::path::PathBuf>::new());
    assert_eq!(server.get_ok("/v1/datasets").await["total"], 0);
    server
        .post_ok(
            "/v1/models",
            &json!({"name": "small", "layers": [2, 1], "output": "sigmoid"}),
            201,
        )
        .await;

    limit_file_size(server.pid(), None);

    server.post_ok("/v1/datasets", &large, 201).await;
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// A store in memory whose writes fail with the OS error `errno` while it is not 0.
#[derive(Debug, Default)]
struct FillableStore {
    values: MemoryStore,
    errno: AtomicI32,
}

impl Store for FillableStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        match self.errno.load(Ordering::Acquire) {
            0 => self.values.put(key, bytes),
            errno => Err(StoreError::Io {
                key: key.to_owned(),
                source: std::io::Error::from_raw_os_error(errno),
            }),
        }
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.values.get(key)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.values.delete(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.values.list(prefix)
    }
    fn probe(&self) -> Result<(), StoreError> {
        self.values.probe()
    }
}

#[tokio::test]
async fn no_space_and_an_exhausted_quota_are_507_naming_the_cause_and_nothing_is_kept() {
    let store = Arc::new(FillableStore::default());
    let app = TestApp::spawn_with_store(Config::for_tests(), store.clone()).await;
    let dataset = app.dataset(xor_dataset(2)).await;
    app.model(json!({"name": "m", "layers": [2, 1], "output": "sigmoid"}))
        .await;

    for (errno, cause) in [(libc::ENOSPC, "ENOSPC"), (libc::EDQUOT, "EDQUOT")] {
        store.errno.store(errno, Ordering::Release);
        let writes = [
            ("/v1/datasets", xor_dataset(2)),
            (
                "/v1/models",
                json!({"name": "n", "layers": [2, 1], "output": "sigmoid"}),
            ),
            (
                "/v1/jobs",
                json!({"model": "m", "dataset": dataset, "epochs": 1}),
            ),
        ];
        for (path, body) in writes {
            let problem = assert_problem(
                app.post_json(path, &body).await,
                507,
                "insufficient_storage",
            )
            .await;
            assert!(problem.detail.contains(cause), "{path}: {}", problem.detail);
        }
    }
    assert_eq!(app.get_ok("/v1/datasets").await["total"], 1);
    assert_eq!(app.get_ok("/v1/models").await["total"], 1);
    assert_eq!(app.get_ok("/v1/jobs").await["total"], 0);

    store.errno.store(0, Ordering::Release);

    app.model(json!({"name": "n", "layers": [2, 1], "output": "sigmoid"}))
        .await;
}
