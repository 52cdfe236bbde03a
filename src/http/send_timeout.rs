//! [`SendTimeout`]: a connection whose client takes no bytes for `--send-timeout-secs` is
//! closed, as nginx's `send_timeout` closes it.
//!
//! hyper has no such timeout, and TCP keeps a connection whose peer leaves its receive window
//! shut open for as long as the peer answers probes. A client that stops reading an event
//! stream or a long body would then hold its connection, its task and whatever slot it took
//! (an event subscriber's, say) for good, at the cost of a page each but never giving them
//! back. The clock runs only while a write waits: a client that reads slowly but steadily
//! never meets it, and neither does one that is simply idle between requests (the header-read
//! timeout closes those).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner`, whose writes fail with [`io::ErrorKind::TimedOut`] once one has waited `limit`
/// without the peer taking a byte.
#[derive(Debug)]
pub(crate) struct SendTimeout<S> {
    inner: S,
    limit: Duration,
    /// Set when a write first waits; cleared when one goes through.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<S> SendTimeout<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            waiting: None,
        }
    }

    /// What a write that returned `polled` becomes: a waiting one starts (or keeps) the
    /// clock, and fails once it has run out.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let limit = self.limit;
        let clock = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if clock.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no bytes for the send timeout",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn a_write_that_waits_past_the_limit_fails_and_one_that_goes_through_resets_it() {
        // A pipe of 8 bytes that nobody reads: the second write waits.
        let (mut reader, writer) = tokio::io::duplex(8);
        let mut sending = SendTimeout::new(writer, Duration::from_millis(100));
        sending.write_all(b"12345678").await.expect("fits");

        let stalled = sending.write_all(b"9").await;

        assert_eq!(
            stalled.expect_err("times out").kind(),
            io::ErrorKind::TimedOut
        );
        let mut taken = [0u8; 8];
        tokio::io::AsyncReadExt::read_exact(&mut reader, &mut taken)
            .await
            .expect("read");
        sending.write_all(b"9").await.expect("room again");
    }
}
