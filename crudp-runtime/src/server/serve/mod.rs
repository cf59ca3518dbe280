//! [`serve`]: `axum::serve` (HTTP/1.1) with the limits a server open to the internet needs. A connection
//! must send each request's head within a time limit, one address may hold only so many
//! connections, all addresses together only so many more, and running out of file
//! descriptors pauses accepting (logged once) instead of ending or flooding the log. A
//! connection that opens with an event-stream request is answered by [`sse`], with a fraction
//! of the memory hyper keeps per connection. A peer that stops reading is let go after the
//! write timeout ([`deadline`]).

mod deadline;
mod linger;
mod sse;

use std::{
    convert::Infallible,
    future::{Future, IntoFuture},
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request},
};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tower::Service;

use self::{deadline::WriteDeadline, linger::Linger};
use super::slots::{Slot, Slots};

/// Default for [`Serve::header_timeout`]: 10 seconds.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`Serve::write_timeout`]: 30 seconds.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`Serve::max_connections`]: 10,000.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default for [`Serve::connections_per_address`]: 256.
pub const DEFAULT_CONNECTIONS_PER_ADDRESS: usize = 256;

/// Serves `app` on `listener`, as `axum::serve` does, with the limits of [`Serve`]; await it
/// to run the server. Each request carries the peer's address as
/// [`ConnectInfo<SocketAddr>`](ConnectInfo), which the event streams' per-address limit reads.
///
/// A connection whose first request is a plain `GET` accepting `text/event-stream`, its head
/// whole in the first packet, is answered without hyper's per-connection buffers (about 6 KiB
/// of memory per idle CRUDP event stream instead of about 15 KiB): its answer is written
/// straight to the socket, chunked, with `connection: close`. Every other connection, a
/// stream opened on one that served other requests first included, is served by hyper.
///
/// ```no_run
/// # async fn run(app: axum::Router) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// crudp_runtime::server::serve(listener, app).await
/// # }
/// ```
pub fn serve(listener: TcpListener, app: Router) -> Serve {
    Serve {
        listener,
        app,
        header_timeout: DEFAULT_HEADER_TIMEOUT,
        write_timeout: DEFAULT_WRITE_TIMEOUT,
        max_connections: DEFAULT_MAX_CONNECTIONS,
        per_address: DEFAULT_CONNECTIONS_PER_ADDRESS,
        shutdown: Box::pin(std::future::pending()),
    }
}

/// A server being configured by [`serve`]; await it to run it.
#[must_use = "await it to run the server"]
pub struct Serve {
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    write_timeout: Duration,
    max_connections: usize,
    per_address: usize,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Serve {
    /// How long a connection may take to send a request's head (its request line and
    /// headers), counted from when it opens or its previous answer was sent: an idle
    /// connection is closed after it. Default: [`DEFAULT_HEADER_TIMEOUT`].
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// How long a write to a connection may wait for its peer to read: a peer that reads
    /// nothing for this long (it stopped reading, or the network stopped delivering) has its
    /// connection closed, so it holds no task, buffer or connection slot any longer. Counted
    /// afresh whenever the peer takes some bytes, so a slow reader is not cut off. A write
    /// waits only once the connection's buffers are full, so on Linux the kernel is also told
    /// (`TCP_USER_TIMEOUT`) to drop a connection whose peer takes or acknowledges nothing of
    /// what was sent for this long (what is still buffered for it is dropped too): a peer gone
    /// without a word is then let go even while little is sent to it. Default:
    /// [`DEFAULT_WRITE_TIMEOUT`].
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// The most connections open at once; more wait (in the listener's backlog) until one
    /// closes. Keep it below the process's file-descriptor limit. Default:
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// The most connections one IP address may hold open; more are closed as soon as they are
    /// accepted. Default: [`DEFAULT_CONNECTIONS_PER_ADDRESS`].
    pub fn connections_per_address(mut self, connections: usize) -> Self {
        self.per_address = connections.max(1);
        self
    }

    /// Stops accepting connections once `signal` completes (Ctrl-C, say); the server's future
    /// then ends.
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.shutdown = Box::pin(signal);
        self
    }

    async fn run(mut self) -> io::Result<()> {
        let permits = Arc::new(Semaphore::new(self.max_connections));
        let addresses = Arc::new(Slots::default());
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        let mut failing = false;
        loop {
            let accepted = async {
                let permit = Arc::clone(&permits)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                (permit, self.listener.accept().await)
            };
            let (permit, accepted) = tokio::select! {
                accepted = accepted => accepted,
                () = &mut self.shutdown => return Ok(()),
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: pause, and say so once.
                    if !failing {
                        tracing::error!("cannot accept connections ({e}); retrying until it can");
                        failing = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if std::mem::take(&mut failing) {
                tracing::info!("accepting connections again");
            }
            // The semaphore counts them all; here, per address.
            let Ok(held) = addresses.take(Some(peer.ip()), usize::MAX, self.per_address) else {
                // Dropped, so closed at once.
                continue;
            };
            let app = self.app.clone();
            let builder = builder.clone();
            let held = (permit, held);
            let limits = (self.header_timeout, self.write_timeout);
            tokio::spawn(connection(stream, peer, app, builder, limits, held));
        }
    }
}

impl IntoFuture for Serve {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// Serves one connection; `held` is let go when it closes.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: http1::Builder,
    (header_timeout, write_timeout): (Duration, Duration),
    held: (OwnedSemaphorePermit, Slot),
) {
    let _ = stream.set_nodelay(true);
    // A peer gone without a word (its machine off, the network cut) leaves what it is sent
    // unacknowledged: the kernel gives up on it after `write_timeout`, not after its own
    // retries (about 15 minutes), even while its connection only has a heartbeat to send.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    let _ = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(write_timeout));
    // The first request's head is due this long after the connection came, however long
    // its first bytes took: hyper's own limit starts again when it takes the connection over.
    let head_due = tokio::time::Instant::now().checked_add(header_timeout);
    let opening = sse::opening(&mut stream, peer, header_timeout).await;
    let stream = WriteDeadline::new(stream, write_timeout);
    match opening {
        sse::Opening::EventStream(request) => return sse::answer(stream, request, app).await,
        sse::Opening::Gone => return,
        sse::Opening::Other => {}
    }
    // Set once the first head is read: the app got it, or hyper answered it itself (a
    // `400`, say, then lingering).
    let headed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let first_head = Arc::clone(&headed);
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        first_head.store(true, std::sync::atomic::Ordering::Relaxed);
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move {
            Ok::<_, Infallible>(
                app.call(request.map(Body::new))
                    .await
                    .unwrap_or_else(|e| match e {}),
            )
        }
    });
    let mut served = std::pin::pin!(
        builder
            .serve_connection(
                TokioIo::new(Linger::new(stream, Arc::clone(&headed))),
                service
            )
            .with_upgrades()
    );
    let due = async {
        match head_due {
            Some(due) => tokio::time::sleep_until(due).await,
            None => std::future::pending().await,
        }
    };
    let ended = tokio::select! {
        // A head that came in time is read before the time is looked at.
        biased;
        ended = served.as_mut() => ended,
        () = due => {
            if !headed.load(std::sync::atomic::Ordering::Relaxed) {
                tracing::debug!(%peer, "connection closed: no request head in {header_timeout:?}");
                return;
            }
            served.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, "connection ended: {e}");
    }
    drop(held);
}

/// Errors of one connection, not of the listener: the next `accept` may well succeed.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
