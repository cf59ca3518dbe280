//! The client: a queue of calls, a sender that drains it in batches, and (in the default
//! mode) an event stream that brings the results back.

use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crudp_runtime::{Action, ClientId, Outcome, RejectCode, Results, protocol::decode_results};
use futures_channel::{mpsc, oneshot};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    call::CallFuture,
    events::{self, ListenerFn, Listeners},
    queue::storage::{LEASE_RENEW_MS, Persistence, Saved, Storage},
    queue::{Call, Calls},
    rt,
    status::{Connection, Status},
    transport::{MaybeSendSync, Transport, TransportError},
};

/// Default for [`ClientBuilder::max_batch_packets`]: 1,000.
pub const DEFAULT_MAX_BATCH_PACKETS: usize = 1000;
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Consecutive failures after which the client reports [`Connection::Offline`].
const OFFLINE_AFTER: u32 = 3;

/// How results come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Batches go to `POST /sync` (answered `202` at once) and results come over the event
    /// stream, together with broadcasts. The default.
    #[default]
    Sync,
    /// Batches go to `POST /call` and results come in its answer; no event stream, so no
    /// broadcasts. For environments without SSE.
    Call,
}

/// A connection to one CRUDP server, shared by the generated `{Trait}Client` stubs.
///
/// Every call is queued at once, even offline, and the queue leaves as one batch as soon as
/// the current task yields, so calls made together (for instance under `join!`) share one
/// request. While the server is unreachable the client retries with exponential back-off and
/// jitter; calls keep their sequence numbers, and the server never runs one twice.
///
/// Cloning is cheap: clones share the queue, the event stream and the listeners.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// Shared by the clones the application holds, not by the client's own tasks: when the
    /// last one goes, the client saves its queue, lets its ID go and stops its event stream.
    _handle: Arc<Handle>,
}

struct Handle {
    inner: Weak<Inner>,
    _shutdown: oneshot::Sender<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.release();
        }
    }
}

/// Configures a [`Client`]; made by [`Client::builder`].
#[must_use]
pub struct ClientBuilder {
    url: String,
    transport: Option<Box<dyn Transport>>,
    storage: Option<Box<dyn Storage>>,
    mode: Mode,
    max_batch_packets: usize,
}

pub(crate) struct Inner {
    base: String,
    pub(crate) id: ClientId,
    pub(crate) transport: Box<dyn Transport>,
    mode: Mode,
    max_batch_packets: usize,
    /// The server's limit on packets per batch, learnt with each token.
    pub(crate) server_max_packets: std::sync::atomic::AtomicUsize,
    state: Mutex<State>,
    pub(crate) listeners: Listeners,
    watchers: Mutex<Watchers>,
    /// Wakes the event stream from its back-off, for [`Client::sync`].
    kick: mpsc::UnboundedSender<()>,
    /// Handed to the event stream when it starts.
    pending_stream: Mutex<Option<(oneshot::Receiver<()>, mpsc::UnboundedReceiver<()>)>>,
    /// Where the queue is saved until each call's outcome is known, if anywhere.
    persistence: Option<Persistence>,
    save_scheduled: AtomicBool,
    /// Set once the client let its ID go: another client may own the saved queue now.
    released: AtomicBool,
    /// The browser events the client listens to (`online`, `pagehide`).
    #[cfg(target_arch = "wasm32")]
    browser: Mutex<Option<crate::browser::Hooks>>,
}

struct State {
    calls: Calls,
    sending: bool,
    connection: Connection,
    failures: u32,
    /// How long the sender waits before sending calls the server could not run yet.
    hold: Option<Duration>,
    unavailable: Backoff,
}

#[cfg(not(target_arch = "wasm32"))]
type StatusFn = dyn Fn(Status) + Send + Sync;
#[cfg(target_arch = "wasm32")]
type StatusFn = dyn Fn(Status);

#[cfg(not(target_arch = "wasm32"))]
type ResetFn = dyn Fn() + Send + Sync;
#[cfg(target_arch = "wasm32")]
type ResetFn = dyn Fn();

#[derive(Default)]
struct Watchers {
    next_id: u64,
    last: Option<Status>,
    list: Vec<(u64, Arc<StatusFn>)>,
    resets: Vec<(u64, Arc<ResetFn>)>,
}

/// A registered listener, unregistered when this handle is dropped (as a component that
/// unmounts drops its state), or kept for the client's lifetime with [`keep`](Listener::keep).
#[must_use = "dropping the handle unregisters the listener at once; bind it, or call `keep`"]
pub struct Listener {
    client: Weak<Inner>,
    kind: Option<ListenerKind>,
}

enum ListenerKind {
    Action {
        handler: u32,
        action: Action,
        id: u64,
    },
    Status {
        id: u64,
    },
    Reset {
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
        let (Some(inner), Some(kind)) = (self.client.upgrade(), self.kind.take()) else {
            return;
        };
        match kind {
            ListenerKind::Action {
                handler,
                action,
                id,
            } => inner.listeners.remove(handler, action, id),
            ListenerKind::Status { id } => inner.watchers().list.retain(|(i, _)| *i != id),
            ListenerKind::Reset { id } => inner.watchers().resets.retain(|(i, _)| *i != id),
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
        self.transport = Some(Box::new(transport));
        self
    }

    /// How results come back. Default: [`Mode::Sync`].
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The most calls one batch carries; keep it at or below the server's `max_packets`.
    /// Default: [`DEFAULT_MAX_BATCH_PACKETS`].
    pub fn max_batch_packets(mut self, packets: usize) -> Self {
        self.max_batch_packets = packets.max(1);
        self
    }

    /// Builds the client. Nothing is sent until the first call.
    ///
    /// # Panics
    ///
    /// On a target without a default transport (none is built in for wasm32 yet) when no
    /// transport was given.
    // On wasm32 nothing is `Send`; the same `Arc`s are shared across threads natively.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn build(self) -> Client {
        let transport = self.transport.unwrap_or_else(default_transport);
        let (shutdown, shutdown_receiver) = oneshot::channel();
        let (kick, kicks) = mpsc::unbounded();
        let base = self.url.trim_end_matches('/').to_owned();
        let fresh = ClientId(rt::random_u64());
        let storage = self.storage.or_else(default_storage);
        let (id, persistence, saved) = match storage {
            Some(storage) => {
                let previous = rt::previous_identity(&base);
                let (persistence, saved) = Persistence::open(
                    storage,
                    &base,
                    previous,
                    rt::random_u64(),
                    fresh,
                    rt::now_ms(),
                );
                rt::remember_identity(&base, persistence.client());
                (persistence.client(), Some(persistence), saved)
            }
            None => (fresh, None, Saved::default()),
        };
        let restored = !saved.packets.is_empty();
        let inner = Arc::new(Inner {
            base,
            id,
            transport,
            mode: self.mode,
            max_batch_packets: self.max_batch_packets,
            server_max_packets: std::sync::atomic::AtomicUsize::new(usize::MAX),
            state: Mutex::new(State {
                calls: Calls::restore(saved),
                sending: false,
                connection: Connection::Reconnecting,
                failures: 0,
                hold: None,
                unavailable: Backoff::new(id.0 ^ 0xba11),
            }),
            listeners: Listeners::default(),
            watchers: Mutex::default(),
            kick,
            pending_stream: Mutex::new(Some((shutdown_receiver, kicks))),
            persistence,
            save_scheduled: AtomicBool::new(false),
            released: AtomicBool::new(false),
            #[cfg(target_arch = "wasm32")]
            browser: Mutex::new(None),
        });
        let handle = Arc::new(Handle {
            inner: Arc::downgrade(&inner),
            _shutdown: shutdown,
        });
        let client = Client {
            inner,
            _handle: handle,
        };
        #[cfg(target_arch = "wasm32")]
        {
            *client
                .inner
                .browser
                .lock()
                .unwrap_or_else(PoisonError::into_inner) =
                crate::browser::Hooks::install(&client.inner);
        }
        if restored && rt::can_spawn() {
            client.inner.start_background();
            Inner::start_sender(&client.inner);
        }
        client
    }

    /// Saves the queue in `storage` until each call's outcome is known, so calls survive a
    /// reload or a restart, and takes over a queue that a closed client left there. Default:
    /// the browser's `localStorage` on wasm32, nothing natively.
    pub fn storage(mut self, storage: impl Storage) -> Self {
        self.storage = Some(Box::new(storage));
        self
    }
}

#[cfg(target_arch = "wasm32")]
fn default_storage() -> Option<Box<dyn Storage>> {
    Some(Box::new(crate::queue::storage::LocalStorage))
}

#[cfg(not(target_arch = "wasm32"))]
fn default_storage() -> Option<Box<dyn Storage>> {
    None
}

#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
fn default_transport() -> Box<dyn Transport> {
    Box::new(crate::transport::ReqwestTransport::new())
}

#[cfg(target_arch = "wasm32")]
fn default_transport() -> Box<dyn Transport> {
    Box::new(crate::transport::FetchTransport::new())
}

#[cfg(not(any(feature = "native", target_arch = "wasm32")))]
fn default_transport() -> Box<dyn Transport> {
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
        }
    }

    /// This client's random ID.
    pub fn id(&self) -> ClientId {
        self.inner.id
    }

    /// The link to the server and the calls waiting for it.
    pub fn status(&self) -> Status {
        self.inner.status()
    }

    /// Calls `watcher` with the new [`Status`] whenever it changes, e.g. to drive a Leptos
    /// signal or a Yew state.
    pub fn on_status(&self, watcher: impl Fn(Status) + MaybeSendSync + 'static) -> Listener {
        let mut watchers = self.inner.watchers();
        watchers.next_id += 1;
        let id = watchers.next_id;
        watchers.list.push((id, Arc::new(watcher)));
        Listener {
            client: Arc::downgrade(&self.inner),
            kind: Some(ListenerKind::Status { id }),
        }
    }

    /// Calls `resync` when the event stream may have missed events (the server no longer had
    /// them for replay, or it restarted): results of this client's own calls are asked for
    /// again automatically, but broadcasts are lost, so reload what the page shows.
    pub fn on_reset(&self, resync: impl Fn() + MaybeSendSync + 'static) -> Listener {
        let mut watchers = self.inner.watchers();
        watchers.next_id += 1;
        let id = watchers.next_id;
        watchers.resets.push((id, Arc::new(resync)));
        Listener {
            client: Arc::downgrade(&self.inner),
            kind: Some(ListenerKind::Reset { id }),
        }
    }

    /// Sends what is queued now, and retries at once if the server was unreachable.
    pub fn sync(&self) {
        self.inner.network_back();
    }

    /// Queues a call of `action` on the module with wire ID `handler`, with the argument
    /// tuple `args`; the generated stubs call this.
    pub fn call<A, T, E>(&self, handler: u32, action: Action, args: &A) -> CallFuture<T, E>
    where
        A: Serialize + ?Sized,
    {
        let (reply, receiver) = oneshot::channel();
        let args = match postcard::to_stdvec(args) {
            Ok(args) => args,
            Err(e) => {
                let _ = reply.send(Ok(Outcome::Rejected {
                    code: RejectCode::BadArguments,
                    message: format!("the arguments of `{action}` do not encode: {e}"),
                }));
                return CallFuture::new(receiver);
            }
        };
        {
            let mut state = self.inner.state();
            let seq = state.calls.next_seq();
            let packet = crudp_runtime::Packet {
                seq,
                handler,
                action,
                args,
            };
            state.calls.push(Call {
                packet,
                reply: Some(reply),
            });
        }
        self.inner.notify_status();
        self.inner.schedule_save();
        self.inner.start_background();
        Inner::start_sender(&self.inner);
        CallFuture::new(receiver)
    }

    /// Calls `listener` with every successful result of `action` on the module with wire ID
    /// `handler`: this client's own calls and the broadcasts of others. The generated
    /// `on_<action>` methods call this.
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
        let id = self.inner.listeners.add(handler, action, listener);
        self.inner.start_background();
        Listener {
            client: Arc::downgrade(&self.inner),
            kind: Some(ListenerKind::Action {
                handler,
                action,
                id,
            }),
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.base)
            .field("id", &self.inner.id)
            .field("mode", &self.inner.mode)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn watchers(&self) -> MutexGuard<'_, Watchers> {
        self.watchers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn url(&self, endpoint: &str) -> String {
        format!("{}/{endpoint}", self.base)
    }

    fn status(&self) -> Status {
        let state = self.state();
        Status {
            connection: state.connection,
            queued: state.calls.queued(),
            in_flight: state.calls.in_flight(),
        }
    }

    /// Tells the status watchers, if the status changed.
    fn notify_status(&self) {
        let status = self.status();
        let watchers: Vec<_> = {
            let mut watchers = self.watchers();
            if watchers.last == Some(status) {
                return;
            }
            watchers.last = Some(status);
            watchers.list.iter().map(|(_, w)| Arc::clone(w)).collect()
        };
        for watcher in watchers {
            watcher(status);
        }
    }

    /// Skips the current back-off: reconnect and send now.
    pub(crate) fn network_back(self: &Arc<Self>) {
        let _ = self.kick.unbounded_send(());
        self.start_background();
        Inner::start_sender(self);
    }

    /// Saves the queue once the current task yields, so a burst of calls is saved once.
    fn schedule_save(self: &Arc<Self>) {
        if self.persistence.is_none() || self.save_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::downgrade(self);
        let scheduled = rt::spawn(async move {
            rt::yield_now().await;
            if let Some(inner) = inner.upgrade() {
                inner.save_now();
            }
        });
        if scheduled.is_err() {
            self.save_now();
        }
    }

    /// Saves the queue now.
    pub(crate) fn save_now(&self) {
        self.save_scheduled.store(false, Ordering::Release);
        if self.released.load(Ordering::Acquire) {
            return;
        }
        if let Some(persistence) = &self.persistence {
            let saved = self.state().calls.snapshot();
            persistence.save(&saved);
        }
    }

    /// Saves the queue and lets the client's ID go, for the next load of this tab or another.
    pub(crate) fn release(&self) {
        self.save_now();
        if let Some(persistence) = &self.persistence
            && !self.released.swap(true, Ordering::AcqRel)
        {
            persistence.release(rt::now_ms());
        }
    }

    /// Starts, on first use, the event stream ([`Mode::Sync`] only) and the renewal of the
    /// storage lease.
    fn start_background(self: &Arc<Self>) {
        if !rt::can_spawn() {
            return;
        }
        let Some((shutdown, kicks)) = self
            .pending_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        if self.persistence.is_some() {
            let inner = Arc::downgrade(self);
            let _ = rt::spawn(async move {
                loop {
                    rt::sleep(Duration::from_millis(LEASE_RENEW_MS)).await;
                    let Some(inner) = inner.upgrade() else { return };
                    if inner.released.load(Ordering::Acquire) {
                        return;
                    }
                    if let Some(persistence) = &inner.persistence {
                        persistence.renew(rt::now_ms());
                    }
                }
            });
        }
        if self.mode != Mode::Sync {
            return;
        }
        let stream = events::run(Arc::downgrade(self), shutdown, kicks, self.id.0);
        if let Err(message) = rt::spawn(stream) {
            self.fail_all(&message);
        }
    }

    /// Starts the sender if there is something to send, it may send, and it is not running.
    fn start_sender(self: &Arc<Self>) {
        let start = {
            let mut state = self.state();
            let may_send = self.mode == Mode::Call || state.connection == Connection::Online;
            let start = may_send && !state.sending && state.calls.queued() > 0;
            state.sending |= start;
            start
        };
        if start {
            let inner = Arc::clone(self);
            if let Err(message) = rt::spawn(async move { inner.send_all().await }) {
                self.state().sending = false;
                self.fail_all(&message);
            }
        }
    }

    /// Sends the queue, batch after batch, until it is empty or the server unreachable. Only
    /// one runs at a time, so a client's batches reach the server in order.
    async fn send_all(self: Arc<Self>) {
        rt::yield_now().await;
        let mut guard = SendingGuard(Some(Arc::clone(&self)));
        let mut backoff = Backoff::new(self.id.0 ^ 0x5eed);
        loop {
            let hold = self.state().hold.take();
            if let Some(delay) = hold {
                tracing::debug!(
                    ?delay,
                    "waiting before sending calls the server could not run"
                );
                rt::sleep(delay).await;
            }
            let packets = {
                let mut state = self.state();
                let may_send = self.mode == Mode::Call || state.connection == Connection::Online;
                if !may_send || state.calls.queued() == 0 {
                    state.sending = false;
                    guard.0 = None;
                    return;
                }
                let server_max = self.server_max_packets.load(Ordering::Relaxed);
                state
                    .calls
                    .take_encoded(self.max_batch_packets.min(server_max), self.id)
            };
            let (seqs, body) = packets;
            self.notify_status();
            let sent = match self.mode {
                Mode::Sync => self
                    .transport
                    .post(&self.url("sync"), body)
                    .await
                    .map(|_| None),
                Mode::Call => {
                    self.transport
                        .post(&self.url("call"), body)
                        .await
                        .and_then(|bytes| {
                            decode_results(&bytes, usize::MAX)
                                .map(Some)
                                .map_err(|e| TransportError::Malformed(e.to_string()))
                        })
                }
            };
            match sent {
                Ok(results) => {
                    backoff.reset();
                    if self.mode == Mode::Call {
                        self.connection_ready_quietly();
                    }
                    if let Some(results) = results {
                        self.deliver(results);
                    }
                }
                Err(e) if e.is_retryable() => {
                    tracing::debug!(error = %e, "batch not delivered; it will be sent again");
                    self.state().calls.requeue(Some(&seqs));
                    // In `Sync` mode the sender then waits for the event stream to be ready.
                    self.connection_failed();
                    rt::sleep(backoff.next()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "batch refused");
                    let refused = self.state().calls.remove_in_flight(&seqs);
                    self.notify_status();
                    self.schedule_save();
                    for call in refused {
                        call.resolve(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Hands results to their calls and listeners; `Unavailable` ones are sent again later.
    pub(crate) fn deliver(self: &Arc<Self>, results: Results) {
        let mut answered = Vec::with_capacity(results.results.len());
        let mut retry = Vec::new();
        {
            let mut state = self.state();
            for result in results.results {
                if Calls::is_final(&result.outcome) {
                    if let Some(call) = state.calls.answer(result.seq) {
                        answered.push((call, result.outcome));
                    }
                } else {
                    retry.push(result.seq);
                }
            }
            state.calls.requeue(Some(&retry));
            if retry.is_empty() {
                state.unavailable.reset();
            } else {
                state.hold = Some(state.unavailable.next());
            }
        }
        self.notify_status();
        self.schedule_save();
        for (call, outcome) in answered {
            if let Outcome::Ok(value) = &outcome {
                self.listeners
                    .notify(call.packet.handler, call.packet.action, value);
            }
            call.resolve(Ok(outcome));
        }
        if !retry.is_empty() {
            Inner::start_sender(self);
        }
    }

    /// The event stream is open and caught up: calls still in flight lost their results, so
    /// they are sent again (the server answers them without running them twice).
    pub(crate) fn connection_ready(self: &Arc<Self>) {
        self.state().calls.requeue(None);
        self.connection_ready_quietly();
        Inner::start_sender(self);
    }

    fn connection_ready_quietly(&self) {
        {
            let mut state = self.state();
            state.connection = Connection::Online;
            state.failures = 0;
        }
        self.notify_status();
    }

    /// The stream said events may have been missed: tell the `on_reset` listeners.
    pub(crate) fn reset(&self) {
        let resets: Vec<_> = self
            .watchers()
            .resets
            .iter()
            .map(|(_, r)| Arc::clone(r))
            .collect();
        for resync in resets {
            resync();
        }
    }

    /// The platform says the network is gone.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn went_offline(&self) {
        {
            let mut state = self.state();
            state.failures = state.failures.max(OFFLINE_AFTER);
            state.connection = Connection::Offline;
        }
        self.notify_status();
    }

    pub(crate) fn connection_lost(&self) {
        self.state().connection = Connection::Reconnecting;
        self.notify_status();
    }

    pub(crate) fn connection_failed(&self) {
        {
            let mut state = self.state();
            state.failures += 1;
            state.connection = if state.failures >= OFFLINE_AFTER {
                Connection::Offline
            } else {
                Connection::Reconnecting
            };
        }
        self.notify_status();
    }

    fn fail_all(&self, message: &str) {
        let error = TransportError::Unreachable(message.to_owned());
        let calls: Vec<Call> = {
            let mut state = self.state();
            state.calls.requeue(None);
            let n = state.calls.queued();
            let packets = state.calls.take_batch(n);
            let seqs: Vec<u64> = packets.iter().map(|p| p.seq).collect();
            let calls = state.calls.remove_in_flight(&seqs);
            // Calls restored from storage have nobody waiting: they stay queued for later.
            let (waiting, restored): (Vec<Call>, Vec<Call>) =
                calls.into_iter().partition(|c| c.reply.is_some());
            for call in restored {
                state.calls.push(call);
            }
            waiting
        };
        self.notify_status();
        self.save_now();
        for call in calls {
            call.resolve(Err(error.clone()));
        }
    }
}

/// Clears the `sending` flag if the sender is cancelled or panics, so later calls start a new one.
struct SendingGuard(Option<Arc<Inner>>);

impl Drop for SendingGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            inner.state().sending = false;
        }
    }
}

/// Exponential back-off with "equal jitter": half the ceiling fixed, half random.
pub(crate) struct Backoff {
    attempt: u32,
    seed: u64,
}

impl Backoff {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            attempt: 0,
            seed: seed | 1,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    pub(crate) fn next(&mut self) -> Duration {
        let ceiling = BACKOFF_MIN
            .saturating_mul(1 << self.attempt.min(16))
            .min(BACKOFF_MAX);
        self.attempt += 1;
        // xorshift64: cheap jitter that needs no shared generator.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let fraction = (self.seed >> 11) as f64 / (1u64 << 53) as f64;
        ceiling / 2 + ceiling.mul_f64(fraction) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        let mut backoff = Backoff::new(42);
        let delays: Vec<_> = (0..20).map(|_| backoff.next()).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= BACKOFF_MIN / 2 && *d <= BACKOFF_MAX)
        );
        assert!(delays[15..].iter().any(|d| *d > Duration::from_secs(5)));
        assert!(delays.windows(2).any(|w| w[0] != w[1]));
        backoff.reset();
        assert!(backoff.next() <= BACKOFF_MIN);
    }
}
