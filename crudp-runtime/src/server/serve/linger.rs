//! A lingering close: a connection closed while the peer is still sending (an answer given
//! before the request's body was read: `413`, `408`) is not simply dropped, which would make
//! the kernel reset it and the peer lose the answer, likely before it read it. Its sending
//! side is shut first, and what the peer still sends is read and thrown away until it closes
//! too, for [`LINGER`] and [`LINGER_BYTES`] at most.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};

/// The longest a closed connection waits for its peer to close.
pub(super) const LINGER: Duration = Duration::from_secs(5);
/// The most bytes a closed connection reads and throws away.
pub(super) const LINGER_BYTES: usize = 64 << 20;

/// `io`, whose shutdown lingers.
pub(super) struct Linger<S> {
    io: S,
    /// Set once the sending side is shut: until when, and how many bytes more, to read.
    draining: Option<(Pin<Box<Sleep>>, usize)>,
    /// Set at the first write or shutdown: the connection has answered, or is closing.
    spoke: Arc<AtomicBool>,
}

impl<S> Linger<S> {
    /// `io`, which sets `spoke` when it first writes or shuts down.
    pub(super) fn new(io: S, spoke: Arc<AtomicBool>) -> Self {
        Self {
            io,
            draining: None,
            spoke,
        }
    }

    fn speaks(&self) {
        if !self.spoke.load(Ordering::Relaxed) {
            self.spoke.store(true, Ordering::Relaxed);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Linger<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.speaks();
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.speaks();
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.speaks();
        let this = &mut *self;
        if this.draining.is_none() {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.draining = Some((Box::pin(tokio::time::sleep(LINGER)), LINGER_BYTES));
        }
        let Some((until, left)) = &mut this.draining else {
            unreachable!("set above");
        };
        let mut scratch = [0; 8192];
        loop {
            if *left == 0 || until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut this.io).poll_read(cx, &mut read)) {
                // The peer closed (or reset): nothing more to wait for.
                Ok(()) if read.filled().is_empty() => return Poll::Ready(Ok(())),
                Err(_) => return Poll::Ready(Ok(())),
                Ok(()) => *left = left.saturating_sub(read.filled().len()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_shutdown_reads_what_the_peer_still_sends_until_it_closes() {
        let (server, mut peer) = tokio::io::duplex(1024);
        let spoke = Arc::new(AtomicBool::new(false));
        let mut server = Linger::new(server, Arc::clone(&spoke));
        let sending = tokio::spawn(async move {
            // More than the pipe holds: without the lingering read, this write would wait.
            peer.write_all(&[7; 100_000]).await.unwrap();
            let mut answer = Vec::new();
            peer.read_to_end(&mut answer).await.unwrap();
            answer
        });
        assert!(!spoke.load(Ordering::Relaxed));
        server.write_all(b"413").await.unwrap();
        assert!(spoke.load(Ordering::Relaxed), "the write is told");
        tokio::time::timeout(Duration::from_secs(5), server.shutdown())
            .await
            .expect("done once the peer closed")
            .unwrap();
        drop(server);
        assert_eq!(sending.await.unwrap(), b"413");
    }
}
