//! The accept loop: axum's `serve`, with what it leaves out against slow clients.
//!
//! `axum::serve` sets no timer, so hyper's header-read timeout never runs and a client that
//! sends half a request line (or nothing at all) holds its connection, and a task, for as long
//! as it likes. Here every connection is served by hyper-util's `auto` builder (HTTP/1 and
//! HTTP/2 with prior knowledge, as `axum::serve` does) with a Tokio timer and:
//!
//! - a deadline for the first bytes of a new connection (before hyper can tell HTTP/1 from
//!   HTTP/2, nothing times out in hyper);
//! - HTTP/1's header-read timeout for every request head, which also closes a keep-alive
//!   connection that stays idle that long between requests;
//! - a read buffer large enough that heads up to a few times `--max-header-bytes` reach
//!   [`super::middleware::body_limit::LimitHeaderBytes`], which answers 431 in our error shape;
//! - a send timeout ([`SendTimeout`]): a client that takes no bytes for `--send-timeout-secs`
//!   is disconnected, so one that stops reading a stream gives back what it holds.
//!
//! Graceful shutdown is `axum::serve`'s: once the signal completes, no connection is
//! accepted, every connection is told to finish its request in flight and close, and the
//! loop returns when all have closed.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use super::send_timeout::SendTimeout;
use crate::config::Config;

/// Room in hyper's read buffer beyond `--max-header-bytes`: a head up to this much over the
/// limit still reaches our 431 in problem+json.
const HEAD_OVERSHOOT: usize = 16 << 10;
/// The least read buffer: request bodies are read in pieces of at most the buffer's size.
const MIN_READ_BUFFER: usize = 64 << 10;

/// The start of every HTTP/2 connection with prior knowledge.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How connections are served.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    /// `--header-read-timeout-secs`.
    header_read_timeout: Duration,
    /// `--send-timeout-secs`.
    send_timeout: Duration,
    /// hyper's read buffer: the longest head it parses before answering a bare 431, and the
    /// most a connection reads at once.
    ///
    /// It is `--max-header-bytes` + [`HEAD_OVERSHOOT`], at least [`MIN_READ_BUFFER`]: 80 KiB
    /// by default. hyper's default (400 KiB, four times the header limit) grows every
    /// connection that receives large bodies a buffer that size, which costs memory under load
    /// and gains no speed.
    max_buf_size: usize,
}

impl ConnectionLimits {
    /// The limits `config` asks for.
    pub(crate) fn of(config: &Config) -> Self {
        Self {
            header_read_timeout: config.header_read_timeout(),
            send_timeout: config.send_timeout(),
            max_buf_size: config
                .max_header_bytes
                .as_usize()
                .saturating_add(HEAD_OVERSHOOT)
                .max(MIN_READ_BUFFER),
        }
    }
}

/// Serves `app` on `listener` until `signal` completes, then stops accepting, lets every
/// connection finish its request in flight, and returns once all are closed.
pub(crate) async fn serve_router(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Dropping `signal_rx` is the signal; each connection holds a `close_rx` until it ends.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        signal.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            () = signal_tx.closed() => break,
        };
        let app = app.clone();
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, app, limits, &signal_tx).await;
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: ConnectionLimits,
    signal_tx: &watch::Sender<()>,
) {
    let started = tokio::select! {
        started = first_bytes(&stream, limits.header_read_timeout) => started,
        () = signal_tx.closed() => false,
    };
    if !started {
        return;
    }
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_buf_size);
    // As `axum::serve`: the CONNECT protocol, for WebSockets over HTTP/2. hyper has no header
    // or idle timeout for HTTP/2; pings at least drop a peer that stopped answering (one that
    // vanished without closing), the header-read timeout's span apart.
    builder
        .http2()
        .enable_connect_protocol()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_read_timeout))
        .keep_alive_timeout(limits.header_read_timeout);
    let service = TowerToHyperService::new(app);
    let io = TokioIo::new(SendTimeout::new(stream, limits.send_timeout));
    let mut connection = pin!(builder.serve_connection_with_upgrades(io, service));
    let mut signalled = pin!(signal_tx.closed());
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                break;
            }
            () = &mut signalled, if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Waits until the client has sent enough for hyper to choose HTTP/1 or HTTP/2: false when it
/// closes or says too little before `timeout`.
async fn first_bytes(stream: &TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let seen = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return false,
            Ok(Ok(seen)) => seen,
            Err(_) => {
                tracing::debug!("closed a connection that sent no request in time");
                return false;
            }
        };
        if seen == buf.len() || buf[..seen] != H2_PREFACE[..seen] {
            return true;
        }
        // An HTTP/2 preface still arriving (rare and short): look again shortly.
        tokio::time::sleep(Duration::from_millis(10)).await;
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// As `axum::serve`: errors of one connection are the client's; any other (out of file
/// descriptors, say) is logged and waited out, so the loop does not spin.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept error");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
