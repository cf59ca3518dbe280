//! The public API: [`Client`], its builder and [`Listener`] handles. Everything here posts
//! inputs to the client's driver or reads what it shares; the state lives in the driver.

use std::{
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crudp_runtime::{Action, ClientId, Outcome, RejectCode, TransportError};
use futures_channel::oneshot;
use serde::{Serialize, de::DeserializeOwned};

pub use crate::core::Mode;
use crate::{
    call::CallFuture,
    core::{Core, Input},
    driver::Driver,
    events::Kick,
    headers::{Headers, InvalidHeader, checked},
    listeners::{ListenerFn, Listeners},
    queue::{
        reply,
        storage::{LEASE_RENEW_MS, Persistence, Saved, Storage, client_key},
    },
    rt,
    shared::Shared,
    status::Status,
    transport::{MaybeSendSync, Transport},
    upload::{Upload, UploadSource},
};

/// Default for [`ClientBuilder::max_batch_packets`]: 1,000.
pub const DEFAULT_MAX_BATCH_PACKETS: usize = 1000;
/// Default for [`ClientBuilder::batch_window`]: 1 ms.
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_millis(1);

/// A connection to one CRUDP server, shared by the generated `{Trait}Client` stubs.
///
/// Every call is queued at once, even offline. Calls made before their task awaits one of
/// them (under `join!`, or a loop that collects the futures first) leave in one request;
/// calls from different tasks join them within [`ClientBuilder::batch_window`]. While the
/// server is unreachable the client retries with exponential back-off and jitter; calls keep
/// their sequence numbers, and the server never runs one twice.
///
/// Cloning is cheap: clones share the queue, the event stream and the listeners.
///
/// ```no_run
/// # async fn doc() -> Result<(), crudp_client::InvalidHeader> {
/// use crudp_client::{Client, Mode};
///
/// // In the browser: `Client::new("/crudp")`.
/// let client = Client::builder("https://example.com/crudp")
///     .bearer_token("a token of the application's")?
///     .mode(Mode::Sync)
///     .build();
/// // The generated stubs queue calls on it: `TodosClient::new(&client).create(..)`.
/// let _status = client.on_status(|status| println!("{:?}", status.connection));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// Shared by the clones the application holds, not by the client's own tasks: when the
    /// last one goes, the driver saves the queue, lets the ID go and stops the event stream.
    handle: Arc<Handle>,
}

struct Handle {
    shared: Weak<Shared>,
    /// Dropped first: a driver never started, dropped with `start`, sees the client gone.
    _stop: oneshot::Sender<()>,
    /// The driver and the event stream, until they are started.
    start: Mutex<Option<Start>>,
    /// Set once they are.
    started: AtomicBool,
    /// The browser events the client listens to (`online`, `pagehide`).
    #[cfg(target_arch = "wasm32")]
    _browser: crate::browser::PageListeners,
    /// Stops the task that holds the client's Web Lock, if it has one.
    #[cfg(target_arch = "wasm32")]
    _lease: Option<oneshot::Sender<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // With storage, the saved queue is left for the next client: if it holds every call
        // made, let the ID go now, so that a client made next takes it over. Otherwise (and
        // without storage, when the driver first sends what is left) the driver lets it go.
        if let Some(shared) = self.shared.upgrade()
            && shared.persistence.is_some()
            && shared.all_saved()
        {
            shared.release();
        }
    }
}

struct Start {
    driver: Driver,
    stream: Option<(oneshot::Receiver<()>, Arc<Kick>)>,
}

/// Configures a [`Client`]; made by [`Client::builder`].
#[must_use]
pub struct ClientBuilder {
    url: String,
    transport: Option<Arc<dyn Transport>>,
    storage: Option<Arc<dyn Storage>>,
    mode: Mode,
    max_batch_packets: usize,
    batch_window: Duration,
    /// The application's headers, checked.
    headers: Vec<(String, String)>,
    /// The ID whose queue, left behind by a closed page, this client sends (its lock held),
    /// and the listeners and headers of the client that adopted it.
    adopting: Option<(ClientId, Arc<Listeners>, Option<crate::headers::Own>)>,
}

/// A registered listener, unregistered when this handle is dropped (as a component that
/// unmounts drops its state), or kept for the client's lifetime with [`keep`](Listener::keep).
#[must_use = "dropping the handle unregisters the listener at once; bind it, or call `keep`"]
pub struct Listener {
    client: Weak<Shared>,
    kind: Option<ListenerKind>,
}

enum ListenerKind {
    Action {
        handler: u32,
        action: Action,
        id: u64,
    },
    Watcher {
        id: u64,
    },
}

impl Listener {
    /// Unregisters the listener now; the same as dropping the handle.
    pub fn remove(self) {}

    /// Keeps the listener registered for as long as the client lives.
    pub fn keep(mut self) {
        self.kind = None;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let (Some(shared), Some(kind)) = (self.client.upgrade(), self.kind.take()) else {
            return;
        };
        match kind {
            ListenerKind::Action {
                handler,
                action,
                id,
            } => shared.listeners.remove(handler, action, id),
            ListenerKind::Watcher { id } => shared.watchers.remove(id),
        }
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Sends through `transport` instead of the platform's default.
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// How results come back. Default: [`Mode::Sync`].
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The most calls one batch carries; the client also keeps to the server's `max_packets`,
    /// which it learns with its event-stream token. Default: [`DEFAULT_MAX_BATCH_PACKETS`].
    pub fn max_batch_packets(mut self, packets: usize) -> Self {
        self.max_batch_packets = packets.max(1);
        self
    }

    /// How long calls wait for others to join their batch when their task does not await
    /// them (they were dropped, or other tasks are making calls). Calls made before their task
    /// awaits one of them leave together whatever the window. Default:
    /// [`DEFAULT_BATCH_WINDOW`].
    pub fn batch_window(mut self, window: Duration) -> Self {
        self.batch_window = window;
        self
    }

    /// Sends the header `name: value` with every request: calls, event-stream tokens and
    /// uploads. The event stream itself is opened with a token that such a request got, so a
    /// server that authenticates by header names the stream's user from it too.
    ///
    /// ```no_run
    /// # fn doc() -> Result<(), crudp_client::InvalidHeader> {
    /// let client = crudp_client::Client::builder("https://example.com/crudp")
    ///     .header("x-tenant", "acme")?
    ///     .build();
    /// # let _ = client;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidHeader`] if the name is not an HTTP token, the value holds a line break or a
    /// character beyond ASCII, or the client sets the header itself (`x-crudp-key`,
    /// `content-type`, ...).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, InvalidHeader> {
        let (name, value) = checked(name, value)?;
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        Ok(self)
    }

    /// Sends `Authorization: Bearer {token}` with every request, as [`header`](Self::header)
    /// does; [`Client::set_bearer_token`] replaces it when the token is refreshed.
    ///
    /// ```no_run
    /// # fn doc(token: &str) -> Result<(), crudp_client::InvalidHeader> {
    /// let client = crudp_client::Client::builder("https://example.com/crudp")
    ///     .bearer_token(token)?
    ///     .build();
    /// # let _ = client;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidHeader`] if the token holds a line break or a character beyond ASCII.
    pub fn bearer_token(self, token: &str) -> Result<Self, InvalidHeader> {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Saves the queue in `storage` until each call's outcome is known, so calls survive a
    /// reload or a restart, and takes over a queue that a closed client left there. Default:
    /// the browser's `localStorage` on wasm32, nothing natively.
    ///
    /// Natively, a client that ended without letting its ID go (its process killed) keeps its
    /// queue for 10 s after it last renewed its hold on it (every 2 s while it ran): a client
    /// built on the same storage within that time takes a new ID, and that queue is taken over
    /// by the next client built after it. In a browser with Web Locks, the lock tells at once.
    pub fn storage(mut self, storage: impl Storage) -> Self {
        self.storage = Some(Arc::new(storage));
        self
    }

    /// Builds the client. Nothing is sent until the first call.
    ///
    /// # Panics
    ///
    /// On a target without a default transport when no transport was given.
    // On wasm32 nothing is `Send`; the same `Arc`s are shared across threads natively.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn build(self) -> Client {
        let transport = self.transport.unwrap_or_else(default_transport);
        let base = self.url.trim_end_matches('/').to_owned();
        let fresh = ClientId(rt::random_u64());
        let storage = self.storage.clone().or_else(default_storage);
        // One key per storage (a browser's tabs share it), else one per client.
        let key = match &storage {
            Some(storage) => client_key(storage.as_ref(), &base, rt::random_key),
            None => rt::random_key(),
        };
        // Where the browser has Web Locks, they decide who holds an ID, and queues left behind
        // are adopted by other clients.
        let web_locks = storage.is_some() && web_locks();
        let (adopting, listeners, adopted_headers) = match self.adopting {
            Some((orphan, listeners, headers)) => (Some(orphan), listeners, headers),
            None => (None, Arc::default(), None),
        };
        let (id, persistence, saved) = match (storage, adopting) {
            (Some(storage), Some(orphan)) => {
                let holder = rt::random_u64();
                let (persistence, saved) =
                    Persistence::open_as(storage, &base, orphan, holder, rt::now_ms(), false);
                (orphan, Some(persistence), saved)
            }
            (Some(storage), None) => {
                let previous = rt::previous_identity(&base);
                let (persistence, saved) = Persistence::open(
                    storage,
                    &base,
                    previous,
                    rt::random_u64(),
                    fresh,
                    rt::now_ms(),
                    !web_locks,
                );
                rt::remember_identity(&base, persistence.client());
                (persistence.client(), Some(persistence), saved)
            }
            (None, _) => (fresh, None, Saved::default()),
        };
        // An adopting client holds its lock already; any other waits for its own.
        let lease = web_locks && adopting.is_none();
        let restored = !saved.packets.is_empty();
        let window = u64::try_from(self.batch_window.as_millis()).unwrap_or(u64::MAX);
        let core = Core::new(id, self.mode, saved, self.max_batch_packets, window);
        let kick = Arc::new(Kick::default());
        let shared = Arc::new(Shared::new(
            base,
            id,
            match adopted_headers {
                Some(own) => Headers::sharing(key, own),
                None => Headers::new(key, self.headers),
            },
            self.mode,
            transport,
            persistence,
            core.status(),
            Arc::clone(&kick),
            !lease,
            listeners,
        ));
        let (stop, stop_receiver) = oneshot::channel();
        let (stream_stop, stream_stop_receiver) = oneshot::channel();
        let driver = Driver {
            core,
            shared: Arc::clone(&shared),
            inputs: Vec::new(),
            woken: Vec::new(),
            stop: stop_receiver,
            stream_stop: Some(stream_stop),
            taken_in: 0,
            unsaved: 0,
        };
        let client = Client {
            handle: Arc::new(Handle {
                shared: Arc::downgrade(&shared),
                start: Mutex::new(Some(Start {
                    driver,
                    stream: Some((stream_stop_receiver, kick)),
                })),
                started: AtomicBool::new(false),
                _stop: stop,
                #[cfg(target_arch = "wasm32")]
                _browser: crate::browser::install(&shared),
                #[cfg(target_arch = "wasm32")]
                _lease: lease.then(|| hold(&shared, self.max_batch_packets, self.batch_window)),
            }),
            shared,
        };
        if restored && rt::can_spawn() {
            let _ = client.start();
        }
        client
    }
}

/// Starts the task that holds the client's Web Lock and adopts the queues left behind, with
/// clients of these batch settings; the sender stops it.
#[cfg(target_arch = "wasm32")]
fn hold(
    shared: &Arc<Shared>,
    max_batch_packets: usize,
    batch_window: Duration,
) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel();
    let template = ClientBuilder {
        url: shared.base().to_owned(),
        transport: Some(Arc::clone(&shared.transport)),
        storage: None,
        // Nobody waits for the results of an adopted queue: they come in the answer.
        mode: Mode::Call,
        max_batch_packets,
        batch_window,
        headers: Vec::new(),
        adopting: None,
    };
    let (listeners, parent) = (Arc::clone(&shared.listeners), Arc::downgrade(shared));
    let adopt: crate::leases::Adopt = Box::new(move |orphan, storage| {
        // The adopted queue's calls carry the headers the page sends, now and later.
        let headers = parent.upgrade().map(|parent| {
            parent.adopt(orphan);
            parent.headers.shared()
        });
        let builder = ClientBuilder {
            url: template.url.clone(),
            transport: template.transport.clone(),
            storage: Some(storage),
            headers: Vec::new(),
            adopting: Some((orphan, Arc::clone(&listeners), headers)),
            ..template
        };
        let adopted = builder.build();
        // Its calls count in the page's status.
        if let Some(parent) = parent.upgrade() {
            adopted.shared.sends_for(&parent);
        }
        Box::new(adopted)
    });
    let _ = rt::spawn(crate::leases::run(Arc::downgrade(shared), stopped, adopt));
    stop
}

#[cfg(target_arch = "wasm32")]
impl crate::leases::Adopted for Client {
    fn pending(&self) -> usize {
        self.status().pending()
    }
}

#[cfg(target_arch = "wasm32")]
fn web_locks() -> bool {
    crate::leases::available()
}

#[cfg(not(target_arch = "wasm32"))]
fn web_locks() -> bool {
    false
}

#[cfg(target_arch = "wasm32")]
fn default_storage() -> Option<Arc<dyn Storage>> {
    Some(Arc::new(crate::queue::storage::LocalStorage))
}

#[cfg(not(target_arch = "wasm32"))]
fn default_storage() -> Option<Arc<dyn Storage>> {
    None
}

#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
fn default_transport() -> Arc<dyn Transport> {
    Arc::new(crate::transport::ReqwestTransport::new())
}

#[cfg(target_arch = "wasm32")]
fn default_transport() -> Arc<dyn Transport> {
    Arc::new(crate::transport::FetchTransport::new())
}

#[cfg(not(any(feature = "native", target_arch = "wasm32")))]
fn default_transport() -> Arc<dyn Transport> {
    panic!(
        "no default transport on this target: pass one with `Client::builder(url).transport(..)`"
    )
}

impl Client {
    /// A client for the CRUDP server mounted at `url`, e.g. `http://127.0.0.1:3000/crudp`,
    /// with the default transport and [`Mode::Sync`].
    #[cfg(any(feature = "native", target_arch = "wasm32"))]
    pub fn new(url: impl Into<String>) -> Self {
        Self::builder(url).build()
    }

    /// Configures a client for the CRUDP server mounted at `url`.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            transport: None,
            storage: None,
            mode: Mode::default(),
            max_batch_packets: DEFAULT_MAX_BATCH_PACKETS,
            batch_window: DEFAULT_BATCH_WINDOW,
            headers: Vec::new(),
            adopting: None,
        }
    }

    /// This client's random ID.
    pub fn id(&self) -> ClientId {
        self.shared.id
    }

    /// The link to the server and the calls waiting for it.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Calls `watcher` with the new [`Status`] whenever it changes, e.g. to drive a Leptos
    /// signal or a Yew state.
    pub fn on_status(&self, watcher: impl Fn(Status) + MaybeSendSync + 'static) -> Listener {
        let id = self.shared.watch_status(Arc::new(watcher));
        self.listener(ListenerKind::Watcher { id })
    }

    /// How many [`Listener`]s of this client are registered: its action listeners and its
    /// status and reset watchers. A page whose components remove theirs when they unmount
    /// keeps it steady however often they do.
    pub fn listeners(&self) -> usize {
        self.shared.listeners.count() + self.shared.watchers.count()
    }

    /// Calls `resync` when the event stream may have missed events (the server no longer had
    /// them for replay, or it restarted): results of this client's own calls are asked for
    /// again automatically, but broadcasts are lost, so reload what the page shows.
    pub fn on_reset(&self, resync: impl Fn() + MaybeSendSync + 'static) -> Listener {
        let id = self.shared.watchers.add_reset(Arc::new(resync));
        self.listener(ListenerKind::Watcher { id })
    }

    /// Sends the header `name: value` with every request from now on, in place of any
    /// earlier value of it (see [`ClientBuilder::header`]); the event stream reconnects with
    /// a token that carries it, if it was failing.
    ///
    /// # Errors
    ///
    /// [`InvalidHeader`], as [`ClientBuilder::header`] says; the header is left as it was.
    pub fn set_header(&self, name: &str, value: &str) -> Result<(), InvalidHeader> {
        let (name, value) = checked(name, value)?;
        self.shared.headers.set(name, Some(value));
        self.shared.kick_stream();
        Ok(())
    }

    /// Stops sending the header `name` (set by [`ClientBuilder::header`] or
    /// [`set_header`](Self::set_header)).
    pub fn remove_header(&self, name: &str) {
        self.shared.headers.set(name.to_ascii_lowercase(), None);
    }

    /// Sends `Authorization: Bearer {token}` from now on: call it when the token is refreshed,
    /// before the old one expires (a call refused with `401` fails, and is not sent again).
    ///
    /// ```no_run
    /// # fn doc(client: crudp_client::Client, fresh: &str) -> Result<(), crudp_client::InvalidHeader> {
    /// client.set_bearer_token(fresh)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidHeader`] if the token holds a line break or a character beyond ASCII.
    pub fn set_bearer_token(&self, token: &str) -> Result<(), InvalidHeader> {
        self.set_header("authorization", &format!("Bearer {token}"))
    }

    /// Forgets everything this user left in the browser: the calls not yet answered (their
    /// futures fail with [`TransportError::SignedOut`]), the saved queues of all the user's
    /// clients in this storage, the client key (an anonymous visitor becomes a new one) and
    /// the tab's client ID. Call it when the user signs out, then make a new client for
    /// whoever signs in next: nothing of this user is sent for them or kept.
    ///
    /// This client stops: its event stream closes, and every later call fails with
    /// [`TransportError::SignedOut`].
    pub fn sign_out(&self) {
        self.shared.stop(TransportError::SignedOut);
        if let Some(persistence) = &self.shared.persistence {
            persistence.sign_out();
        }
        rt::forget_identity(self.shared.base());
    }

    /// Uploads a large file for a call to refer to: reads it once for its SHA-256, then sends
    /// it in pieces to the server's `PUT /upload/{id}`, going on where it stopped after a
    /// dropped connection, an offline period or a server restart. Await the [`Upload`] for
    /// the [`FileRef`](crudp_runtime::files::FileRef) to pass in a call; a handler opens it
    /// with `Context::open`.
    ///
    /// ```no_run
    /// # async fn doc(client: crudp_client::Client) -> Result<(), crudp_client::UploadError> {
    /// use crudp_client::UploadSource;
    ///
    /// let source = UploadSource::bytes("notes.txt", b"milk, eggs".to_vec());
    /// let file = client
    ///     .upload(source)
    ///     .on_progress(|p| println!("{} of {} bytes", p.sent, p.total))
    ///     .await?;
    /// # let _ = file;
    /// # Ok(())
    /// # }
    /// ```
    pub fn upload(&self, source: impl Into<UploadSource>) -> Upload {
        crate::upload::start(&self.shared, source.into())
    }

    /// Sends what is queued now, and retries at once if the server was unreachable.
    pub fn sync(&self) {
        let _ = self.start();
        self.shared.kick_stream();
        self.shared.post(Input::Sync);
    }

    /// Queues a call of `action` on the module with wire ID `handler`, with the argument
    /// tuple `args`; the generated stubs call this.
    pub fn call<A, T, E>(&self, handler: u32, action: Action, args: &A) -> CallFuture<T, E>
    where
        A: Serialize + ?Sized,
    {
        if let Some(stopped) = self.shared.stopped() {
            return CallFuture::answered(Err(stopped));
        }
        let args = match crudp_runtime::encode(args) {
            Ok(args) => args,
            Err(e) => {
                return CallFuture::answered(Ok(Outcome::Rejected {
                    code: RejectCode::BadArguments,
                    message: format!("the arguments of `{action}` do not encode: {e}"),
                }));
            }
        };
        if let Err(message) = self.start() {
            return CallFuture::answered(Err(TransportError::Unreachable(message)));
        }
        let (reply, receiver) = reply::slot();
        self.shared.post(Input::Call {
            handler,
            action,
            args,
            reply,
        });
        CallFuture::new(receiver, Some(Arc::downgrade(&self.shared)))
    }

    /// Calls `listener` with every successful result of `action` on the module with wire ID
    /// `handler`: this client's own calls and the broadcasts of others. A result that encodes
    /// to nothing (an action that returns `()`) is replaced by the call's arguments, so `T` is
    /// then the argument tuple. The generated `on_<action>` methods call this.
    pub fn listen<T, F>(&self, handler: u32, action: Action, listener: F) -> Listener
    where
        T: DeserializeOwned,
        F: Fn(T) + MaybeSendSync + 'static,
    {
        let decode = move |bytes: &[u8]| match postcard::from_bytes::<T>(bytes) {
            Ok(value) => listener(value),
            Err(e) => {
                tracing::warn!(handler, %action, "a result does not decode for its listener: {e}")
            }
        };
        let listener: Arc<ListenerFn> = Arc::new(decode);
        let id = self.shared.listeners.add(handler, action, listener);
        // Broadcasts come over the event stream: open it.
        let _ = self.start();
        self.listener(ListenerKind::Action {
            handler,
            action,
            id,
        })
    }

    fn listener(&self, kind: ListenerKind) -> Listener {
        Listener {
            client: Arc::downgrade(&self.shared),
            kind: Some(kind),
        }
    }

    /// Starts, on first use, the driver, the event stream ([`Mode::Sync`] only) and the
    /// renewal of the storage lease.
    fn start(&self) -> Result<(), String> {
        if self.handle.started.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut start = self
            .handle
            .start
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(Start { mut driver, stream }) = start.take() else {
            return Ok(());
        };
        if !rt::can_spawn() {
            let message = rt::spawn(async {}).err().unwrap_or_default();
            *start = Some(Start { driver, stream });
            return Err(message);
        }
        if let (Mode::Sync, Some((stop, kick))) = (self.shared.mode, stream) {
            let client = Arc::downgrade(&self.shared);
            // In the browser, the tabs share one stream.
            #[cfg(target_arch = "wasm32")]
            let _ = rt::spawn(crate::tabs::run(client, stop, kick));
            #[cfg(not(target_arch = "wasm32"))]
            let _ = rt::spawn(async move {
                let mut stop = stop;
                crate::events::run(client, &mut stop, &kick, None).await;
            });
        } else {
            driver.stream_stop = None;
        }
        if self.shared.persistence.is_some() {
            let shared = Arc::downgrade(&self.shared);
            let _ = rt::spawn(async move {
                loop {
                    rt::sleep(Duration::from_millis(LEASE_RENEW_MS)).await;
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    if shared.stopped().is_some() {
                        return;
                    }
                    // While let go (or not yet held), it waits to be taken back.
                    if !shared.is_released() && !shared.renew() {
                        return;
                    }
                }
            });
        }
        self.handle.started.store(true, Ordering::Release);
        rt::spawn(driver.run())
    }
}

/// Clones of one client are equal; two clients are not, even of one server.
impl PartialEq for Client {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for Client {}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.shared.base())
            .field("id", &self.shared.id)
            .field("mode", &self.shared.mode)
            .finish_non_exhaustive()
    }
}
