//! One process per data directory: a second `mlp-lab` on the same `--data-dir` (a server, or
//! a copy) refuses to start naming the first, and the lock goes with the process that held
//! it, even by `kill -9`.

use crate::process::{run_to_end, temp_dir, ServerProcess};

#[tokio::test]
async fn a_second_server_on_a_locked_data_directory_exits_naming_the_first_until_it_is_killed() {
    let dir = temp_dir("locked");
    let first = ServerProcess::start_ready(&dir, &[]).await;
    let data_dir = dir.display().to_string();

    let second = run_to_end(vec!["--data-dir".into(), data_dir.clone()]).await;
    let copy = run_to_end(vec![
        "copy".into(),
        "--from".into(),
        data_dir.clone(),
        "--to".into(),
        temp_dir("copy-target").display().to_string(),
    ])
    .await;

    for (what, refused) in [("a second server", second), ("a copy", copy)] {
        let log = String::from_utf8_lossy(&refused.stdout);
        assert!(!refused.status.success(), "{what} started: {log}");
        assert!(
            log.contains("is in use by another mlp-lab process")
                && log.contains(&format!("pid {} on host ", first.pid())),
            "{what}: {log}"
        );
    }
    assert_eq!(
        first.get("/readyz").await.status(),
        200,
        "the first serves on"
    );

    first.kill9();
    let third = ServerProcess::start_ready(&dir, &[]).await;
    assert_eq!(third.get("/readyz").await.status(), 200);
    drop(third);
    let _ = std::fs::remove_dir_all(dir);
}
