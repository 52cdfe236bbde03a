//! `ServerProcess`: the real `mlp-lab` binary on a free port and a data directory, for what
//! only a process can show: `kill -9`, SIGTERM, and serving while it loads.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::helpers::client;

/// A running `mlp-lab` process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub address: String,
    pub client: reqwest::Client,
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlp-lab-{what}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// The `mlp-lab` binary on `127.0.0.1:0` with `args`, a clean environment but `RUST_LOG=info`,
/// its log on a pipe (stdout) and nothing on stdin or stderr.
pub fn mlp_lab_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mlp-lab"));
    command.args(["--addr", "127.0.0.1:0"]).args(args);
    quiet(command)
}

/// Runs the binary with `args` (on `127.0.0.1:0`, as [`mlp_lab_command`]) to its end, for
/// the runs expected to stop at once: a refused start, `--migrate-only`, `copy`.
pub async fn run_to_end(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mlp_lab_command(&args)
            .output()
            .expect("run the mlp-lab binary")
    })
    .await
    .expect("join")
}

/// [`mlp_lab_command`] run through `sh` with SIGXFSZ ignored (`trap '' XFSZ`, which `exec`
/// keeps): a write past the process's file-size limit (`RLIMIT_FSIZE`) then fails with EFBIG
/// instead of killing the server.
pub fn mlp_lab_command_ignoring_sigxfsz(args: &[&str]) -> Command {
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", "trap '' XFSZ; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_mlp-lab"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args);
    quiet(command)
}

/// A clean environment but `RUST_LOG=info`, the log on a pipe (stdout), nothing on stdin or
/// stderr.
fn quiet(mut command: Command) -> Command {
    command
        .env_clear()
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command
}

impl ServerProcess {
    /// Starts the binary on `127.0.0.1:0` over `data_dir` and returns once it listens
    /// (it may still be loading: see [`Self::wait_ready`]).
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[]).await
    }

    /// As [`Self::start`], with the environment variables `env` set too.
    pub async fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = mlp_lab_command(&["--log-format", "json", "--data-dir"]);
        command.arg(data_dir).args(extra).envs(env.iter().copied());
        Self::spawn(command).await
    }

    /// Starts `command`, a server that logs JSON (`--log-format json`), and returns once it
    /// listens.
    pub async fn spawn(mut command: Command) -> Self {
        let mut child = command.spawn().expect("start the mlp-lab binary");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        // Reads the log for the address, then keeps draining it so the server never blocks
        // on a full pipe. TEST_LOG=1 echoes it.
        std::thread::spawn(move || {
            let echo = std::env::var_os("TEST_LOG").is_some();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("{line}");
                }
                let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if log["fields"]["message"] == "listening" {
                    if let Some(addr) = log["fields"]["addr"].as_str() {
                        let _ = tx.send(addr.to_owned());
                    }
                }
            }
        });
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(20)))
            .await
            .expect("join")
            .expect("the server logs its address within 20 s");
        Self {
            child,
            address: format!("http://{addr}"),
            client: client(),
        }
    }

    /// Starts the binary and waits until `/readyz` answers 200.
    pub async fn start_ready(data_dir: &Path, extra: &[&str]) -> Self {
        let server = Self::start(data_dir, extra).await;
        server.wait_ready().await;
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// The server's peak resident memory (`VmHWM`) since it started or since
    /// [`Self::reset_peak_rss`], in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM")
    }

    /// Makes the peak resident memory start again from the resident memory now (writing 5 to
    /// `/proc/PID/clear_refs`, Linux 4.0 and later).
    pub fn reset_peak_rss(&self) {
        let path = format!("/proc/{}/clear_refs", self.child.id());
        std::fs::write(&path, "5").unwrap_or_else(|e| panic!("write {path}: {e}"));
    }

    fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }

    /// Polls `/readyz` until it answers 200; panics after 20 s.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "not ready within 20 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// GETs `path`, asserting 200, and returns the JSON answer.
    pub async fn get_ok(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).expect("JSON")
    }

    /// POSTs `body`, asserting `status`, and returns the JSON answer.
    pub async fn post_ok(
        &self,
        path: &str,
        body: &serde_json::Value,
        status: u16,
    ) -> serde_json::Value {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent");
        let actual = response.status().as_u16();
        let text = response.text().await.expect("a body");
        assert_eq!(actual, status, "POST {path}: {text}");
        serde_json::from_str(&text).expect("JSON")
    }

    /// Every epoch record of job `id` so far, the pages of its history followed by `next`.
    pub async fn all_epochs(&self, id: &str) -> Vec<serde_json::Value> {
        let mut epochs = Vec::new();
        let mut page = Some(format!("/v1/jobs/{id}/metrics"));
        while let Some(path) = page {
            let body = self.get_ok(&path).await;
            epochs.extend(body["epochs"].as_array().expect("epochs").iter().cloned());
            page = body["next"].as_str().map(str::to_owned);
        }
        epochs
    }

    /// Polls a job until it is in one of `states`; panics after `secs`.
    pub async fn wait_for_job(&self, id: &str, states: &[&str], secs: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let job = self.get_ok(&format!("/v1/jobs/{id}")).await;
            if states.contains(&job["state"].as_str().unwrap_or_default()) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job not {states:?} within {secs} s: {job}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill9(mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits (at most 30 s) for the process to exit.
    pub async fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir` whose name marks it as the temporary file of a write.
pub fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.file_name().to_string_lossy().contains(".tmp-") {
                found.push(path);
            }
        }
    }
    found
}
