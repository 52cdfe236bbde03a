//! What clients that do not read can make the server hold, measured on the real binary: its
//! peak resident memory (`VmHWM` in /proc, reset once the job has trained), so the bounds
//! below cover everything that was allocated while the requests were answered, however briefly.
//!
//! Each client sends its request and then reads nothing, as a slow or hostile client may; the
//! kernel's socket buffers fill and the server can send it no more. What the server then holds
//! for it must be a page (a few dozen records), not the job's whole history: before pages, an
//! event subscriber of a 5,000-epoch job cost ~4 MB, a `GET …/metrics` of a 100,000-epoch job
//! ~70 MB, and an experiment view a copy of every run's history.
//!
//! Hostile weights imports are the other way round: clients that send far more than the
//! server should read. What the server keeps of each must be bounded by the file its model
//! can have, not by the body: before imports were read as they arrived, four 200 MB bodies of
//! garbage to a model whose file is under 2 KB were all refused, after 860–1,107 MB had been
//! buffered, and 511–583 MB were still resident afterwards.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{parse_sse, xor_dataset};
use crate::imports::{complete, relu_2_32_2};
use crate::process::{temp_dir, ServerProcess};
use crate::weights::safetensors;

const MIB: u64 = 1024;

/// A job of `epochs` quick epochs (a 2-2-1 network on 8 rows, one batch an epoch), trained.
async fn trained_job(server: &ServerProcess, name: &str, epochs: usize) -> String {
    let dataset = dataset(server).await;
    let model = json!({"name": name, "layers": [2, 2, 1], "output": "sigmoid"});
    server.post_ok("/v1/models", &model, 201).await;
    let body = json!({"model": name, "dataset": dataset, "epochs": epochs, "batch_size": 8});
    let job = server.post_ok("/v1/jobs", &body, 202).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    server.wait_for_job(&job, &["succeeded"], 300).await;
    job
}

async fn dataset(server: &ServerProcess) -> String {
    server.post_ok("/v1/datasets", &xor_dataset(2), 201).await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// `n` connections that each send `GET path` and then read nothing, returned once the server
/// has begun to answer each with 200.
async fn silent_clients(server: &ServerProcess, path: &str, n: usize) -> Vec<TcpStream> {
    let addr = server.address.trim_start_matches("http://").to_owned();
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        clients.push(stream);
    }
    for stream in &clients {
        tokio::time::timeout(Duration::from_secs(60), stream.readable())
            .await
            .expect("the server answers within 60 s")
            .expect("readable");
        let mut head = [0u8; 12];
        let seen = stream.peek(&mut head).await.expect("peek");
        assert_eq!(&head[..seen], b"HTTP/1.1 200", "GET {path}");
    }
    clients
}

/// How far the peak resident memory rose above the resident memory at `before`, in KiB.
fn rise(server: &ServerProcess, before: u64) -> u64 {
    server.peak_rss_kib().saturating_sub(before)
}

#[tokio::test]
async fn event_subscribers_that_do_not_read_hold_a_page_each_not_the_history() {
    let dir = temp_dir("sse-memory");
    let server = ServerProcess::start_with_env(
        &dir,
        &["--ephemeral"],
        &[("MLP_LAB_MAX_EVENT_SUBSCRIBERS_PER_JOB", "1000")],
    )
    .await;
    server.wait_ready().await;
    let job = trained_job(&server, "sse", 5_000).await;
    server.reset_peak_rss();
    let before = server.rss_kib();
    let path = format!("/v1/jobs/{job}/events");

    let silent = silent_clients(&server, &path, 128).await;
    let readers = join_all((0..8).map(|_| async {
        let response = server.get(&path).await;
        assert_eq!(response.status(), 200);
        let text = tokio::time::timeout(Duration::from_secs(60), response.text())
            .await
            .expect("the stream ends")
            .expect("a body");
        parse_sse(&text)
    }))
    .await;

    for events in readers {
        let epochs = events.iter().filter(|e| e.name == "epoch").count();
        assert_eq!(epochs, 5_001, "every epoch reaches a client that reads");
        assert_eq!(events.last().map(|e| e.name.as_str()), Some("end"));
    }
    assert_eq!(server.get("/healthz").await.status(), 200);
    let risen = rise(&server, before);
    drop(silent);
    // 128 silent subscribers of 5,001 events (~3.5 MB of them each): a page each is well under
    // 48 MiB, the whole history each over 400 MiB.
    assert!(
        risen <= 48 * MIB,
        "the peak rose by {} MiB over {} MiB",
        risen / MIB,
        before / MIB
    );
}

#[tokio::test]
async fn metric_history_clients_that_do_not_read_hold_a_chunk_each_not_the_history() {
    let dir = temp_dir("metrics-memory");
    let server =
        ServerProcess::start_ready(&dir, &["--ephemeral", "--max-page-size", "100000"]).await;
    let job = trained_job(&server, "long", 100_000).await;
    server.reset_peak_rss();
    let before = server.rss_kib();

    let paged = silent_clients(&server, &format!("/v1/jobs/{job}/metrics"), 16).await;
    assert_eq!(server.get("/healthz").await.status(), 200);
    let risen = rise(&server, before);
    // 16 silent clients of the default page: under 32 MiB however they read; the whole
    // history (~70 MB of JSON) each would be over 1 GiB.
    assert!(
        risen <= 32 * MIB,
        "default pages: the peak rose by {} MiB over {} MiB",
        risen / MIB,
        before / MIB
    );

    let whole = format!("/v1/jobs/{job}/metrics?limit=100000");
    let streamed = silent_clients(&server, &whole, 16).await;
    assert_eq!(server.get("/healthz").await.status(), 200);
    let risen = rise(&server, before);
    drop((paged, streamed));
    // The whole history in one page, 16 times: streamed, each holds a chunk of records.
    assert!(
        risen <= 48 * MIB,
        "whole-history pages: the peak rose by {} MiB over {} MiB",
        risen / MIB,
        before / MIB
    );

    // A chart draws 1,000 of the 100,001 epochs: its SVG is the size of a 1,000-epoch one
    // (drawn whole, ~100 points a curve took ~10 KB), not megabytes.
    let plot = server
        .get(&format!("/v1/jobs/{job}/plot.svg?kind=loss"))
        .await;
    assert_eq!(plot.status(), 200);
    let svg = plot.text().await.expect("svg");
    assert!(svg.len() < 256 * 1024, "{} bytes", svg.len());
    assert!(svg.contains("100000"), "the last epoch is on the axis");
}

#[tokio::test]
async fn experiment_views_read_the_runs_histories_in_place() {
    let dir = temp_dir("experiment-memory");
    let server = ServerProcess::start_ready(&dir, &["--ephemeral"]).await;
    let dataset = dataset(&server).await;
    let body = json!({
        "dataset": dataset,
        "model": {"layers": [2, 2, 1], "output": "sigmoid"},
        "training": {"epochs": 50_000, "batch_size": 8, "validation_split": 0.25},
        "grid": {"activations": ["tanh"]},
        "seeds": [1, 2],
    });
    let id = server.post_ok("/v1/experiments", &body, 201).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while server.get_ok(&format!("/v1/experiments/{id}")).await["state"] == "running" {
        assert!(std::time::Instant::now() < deadline, "not finished in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.reset_peak_rss();
    let before = server.rss_kib();

    let views: Vec<Value> =
        join_all((0..16).map(|_| async { server.get_ok(&format!("/v1/experiments/{id}")).await }))
            .await;

    for view in &views {
        assert_eq!(view["leaderboard"]["rows"][0]["succeeded"], 2, "{view}");
    }
    let risen = rise(&server, before);
    // Two runs of 50,001 epochs (~20 MB in memory each): 16 views that copied them would
    // raise the peak by 40 MB at the least.
    assert!(
        risen <= 16 * MIB,
        "the peak rose by {} MiB over {} MiB",
        risen / MIB,
        before / MIB
    );
}

#[tokio::test]
async fn memory_freed_by_a_refused_upload_goes_back_to_the_system() {
    let dir = temp_dir("upload-memory");
    let server = ServerProcess::start_ready(&dir, &["--ephemeral"]).await;
    let before = server.rss_kib();
    // 16 MiB of rows refused at the last one, after every row before it was parsed: the
    // parse holds tens of MiB in a thread's malloc arena, all of it freed when it fails.
    let row = "0.5,0.25,1\n";
    let mut body = String::from("a,b,y\n");
    body.push_str(&row.repeat((16 << 20) / row.len()));
    body.push_str("0.5,x,1\n");
    let response = server
        .client
        .post(server.url("/v1/datasets"))
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 422);
    let peak = server.peak_rss_kib();

    // The trimming thread looks once a second. glibc alone kept most of it for good: this
    // upload left 107 MiB resident over the 7 MiB before it, with a peak of 197 MiB (release
    // build); with the trimmer, 7 MiB over it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut now = server.rss_kib();
    while now > before + 16 * MIB && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        now = server.rss_kib();
    }
    assert!(
        peak > before + 24 * MIB,
        "the upload should have taken memory: peak {} MiB over {} MiB",
        peak / MIB,
        before / MIB
    );
    assert!(
        now <= before + 16 * MIB,
        "10 s after the upload was refused, {} MiB resident (before it: {} MiB, peak {} MiB)",
        now / MIB,
        before / MIB,
        peak / MIB
    );
    // Whether a trim was needed depends on where malloc put the buffers (large ones are
    // mapped on their own and unmapped when freed); the count is exported either way.
    let metrics = server.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mlp_lab_memory_trims_total ")),
        "{metrics}"
    );
}

/// How much each hostile import sends.
const HOSTILE_BODY: usize = 200_000_000;

/// One hostile import: its framing (chunked, or a `Content-Length` of [`HOSTILE_BODY`]) and
/// the start of its body; the rest, up to [`HOSTILE_BODY`] bytes, is `filler` over and over.
struct Hostile {
    chunked: bool,
    start: Vec<u8>,
    filler: Vec<u8>,
}

/// Sends `hostile` to import weights into `model` while reading the answer, and returns the
/// answer's status (`None` if the connection was reset before one arrived).
async fn hostile_import(address: &str, model: &str, hostile: Hostile) -> Option<u16> {
    let address = address.trim_start_matches("http://").to_owned();
    let stream = TcpStream::connect(&address).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let framing = if hostile.chunked {
        "transfer-encoding: chunked".to_owned()
    } else {
        format!("content-length: {HOSTILE_BODY}")
    };
    let head = format!(
        "POST /v1/models/{model}/versions HTTP/1.1\r\nhost: {address}\r\n\
         content-type: application/octet-stream\r\n{framing}\r\n\r\n"
    );
    let send = async {
        writer.write_all(head.as_bytes()).await?;
        let mut sent = 0;
        let mut piece = hostile.start.as_slice();
        while sent < HOSTILE_BODY {
            let n = piece.len().min(HOSTILE_BODY - sent);
            if hostile.chunked {
                writer.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            }
            writer.write_all(&piece[..n]).await?;
            if hostile.chunked {
                writer.write_all(b"\r\n").await?;
            }
            sent += n;
            piece = &hostile.filler;
        }
        if hostile.chunked {
            writer.write_all(b"0\r\n\r\n").await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let receive = async move {
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = reader.read(&mut buffer).await {
            answer.extend_from_slice(&buffer[..n]);
            if complete(&answer) {
                break;
            }
        }
        answer
    };
    // The writer stays open until the answer is in: hyper drops a request whose client shuts
    // down its side of the connection before it is answered.
    let (_, answer) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(send, receive)
    })
    .await
    .expect("the import ends within 120 s");
    drop(writer);
    let head = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
    head.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

/// `n` bytes of noise (xorshift64), the same every run.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test]
async fn hostile_weights_imports_are_refused_holding_a_header_at_most_not_their_bodies() {
    let dir = temp_dir("import-memory");
    let server = ServerProcess::start_ready(&dir, &["--ephemeral"]).await;
    let model = json!({"name": "small", "layers": [2, 32, 2], "activation": "relu",
                       "output": "softmax"});
    server.post_ok("/v1/models", &model, 201).await;
    let file = safetensors(&relu_2_32_2(0.1), None);
    let imported = server
        .client
        .post(server.url("/v1/models/small/versions"))
        .header("content-type", "application/octet-stream")
        .body(file.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(imported.status(), 201);
    let garbage = noise(64 << 10);
    // The longest header a file for this model may have (1 MiB + 512 bytes × 8 inputs, outputs
    // and tensors), made of JSON that parses as far as its first value.
    let mut long_header = 1_052_672u64.to_le_bytes().to_vec();
    long_header.extend_from_slice(b"{\"0.weight\": [");
    let hostile = [
        Hostile {
            chunked: false,
            start: garbage.clone(),
            filler: garbage.clone(),
        },
        Hostile {
            chunked: true,
            start: garbage.clone(),
            filler: garbage.clone(),
        },
        Hostile {
            chunked: false,
            start: long_header,
            filler: b"0,".repeat(32 << 10),
        },
        Hostile {
            chunked: true,
            start: file,
            filler: garbage,
        },
    ];
    server.reset_peak_rss();
    let before = server.rss_kib();

    let attack = join_all(
        hostile
            .into_iter()
            .map(|h| hostile_import(&server.address, "small", h)),
    );
    // A client of the service that expects answers all the while.
    let normal = async {
        let body = json!({"inputs": [[0.5, -1.0]]});
        loop {
            let started = std::time::Instant::now();
            assert_eq!(server.get("/healthz").await.status(), 200);
            server.post_ok("/v1/models/small/predict", &body, 200).await;
            assert!(started.elapsed() < Duration::from_secs(2), "a slow answer");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let statuses = tokio::select! {
        statuses = attack => statuses,
        () = normal => unreachable!("the normal client never stops"),
    };

    let risen = rise(&server, before);
    // Each holds a header of at most 1 MiB (parsed in a few times its size) or a piece of
    // hyper's read buffer: 16 MiB is ample (1.5 MiB was measured); 800 MB of bodies buffered
    // raised it by 860 MB and more.
    assert!(
        risen <= 16 * MIB,
        "the peak rose by {} MiB over {} MiB",
        risen / MIB,
        before / MIB
    );
    // The service's target after such an attack: 100 MB resident (about 11 MiB before it).
    let resident = server.rss_kib();
    assert!(resident <= 100 * MIB, "{} MiB resident", resident / MIB);
    assert_eq!(server.get("/healthz").await.status(), 200);
    // Each is refused as what it is (an answer may be lost to the reset of a connection closed
    // with the rest of its body unread).
    for status in &statuses {
        assert!(matches!(status, Some(422) | None), "{statuses:?}");
    }
    assert!(
        statuses.iter().any(Option::is_some),
        "no answer arrived: {statuses:?}"
    );
}
