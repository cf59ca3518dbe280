//! What the public API, the driver, the event stream and the browser hooks share: the
//! client's identity and transport, its listeners, the last status the driver reported, and
//! the way in to the driver. The state machine itself is the driver's alone.

use std::sync::{
    Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use crudp_runtime::{ClientId, TransportError};

use crate::{
    core::{Input, Mode},
    events::Kick,
    headers::{Headers, RequestHeaders},
    inbox::Inbox,
    listeners::{Listeners, Watchers},
    queue::storage::{Persistence, Renewal, Stale},
    rt,
    status::Status,
    transport::Transport,
};

pub(crate) struct Shared {
    base: String,
    pub(crate) id: ClientId,
    /// The client key and the application's headers, sent with every request.
    pub(crate) headers: Headers,
    pub(crate) mode: Mode,
    pub(crate) transport: Arc<dyn Transport>,
    /// Shared with the clients that send queues this one adopted, so that their results reach
    /// the same listeners.
    pub(crate) listeners: Arc<Listeners>,
    /// The queues left behind that this client takes over (in the browser).
    adoptions: Mutex<Adoptions>,
    /// The client whose page adopted this one's queue: its status counts this one's calls.
    adopter: OnceLock<Weak<Shared>>,
    pub(crate) watchers: Watchers,
    /// The status the driver reported last, and the calls made since that it had not taken
    /// in yet (counted in [`status`](Self::status) at once).
    reported: Mutex<(Status, usize)>,
    /// The status the watchers were told last: they are told only of a change.
    told: Mutex<Option<Status>>,
    /// Calls made but not yet saved by the driver: while there are none, the saved queue is
    /// complete and the ID can be let go at once.
    unsaved: AtomicUsize,
    /// The way in to the driver.
    pub(crate) inbox: Inbox,
    /// Wakes the event stream from its back-off.
    kick: Arc<Kick>,
    /// Where the queue is saved until each call's outcome is known, if anywhere.
    pub(crate) persistence: Option<Persistence>,
    /// Set while the client does not hold its ID: it let it go (another client may own the
    /// saved queue now), or waits for it (in the browser, for its Web Lock).
    released: AtomicBool,
    /// The page is going away: let the ID go as soon as every call made is saved.
    release_requested: AtomicBool,
    /// Whether the server named the user and it is the one whose saved state the client
    /// opened; until then no saved queue is adopted. Always so without storage.
    named: AtomicBool,
    /// Why the client stopped for good (it signed out, or the server names another user),
    /// if it did: every call fails with this.
    stopped: OnceLock<TransportError>,
}

/// The queues left behind that a client takes over: in the browser, those of closed pages.
#[derive(Default)]
struct Adoptions {
    /// Their IDs: broadcasts of their calls are this client's own.
    ids: Vec<ClientId>,
    /// Queues left behind that no client holds, which this client waits to adopt (once the
    /// server named the user), with how many calls each holds.
    waiting: Vec<(ClientId, usize)>,
    /// The clients that send the queues adopted, until they are drained and dropped.
    senders: Vec<Weak<Shared>>,
}

impl Shared {
    // Made once, by the builder, from what it has gathered.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        base: String,
        id: ClientId,
        headers: Headers,
        mode: Mode,
        transport: Arc<dyn Transport>,
        persistence: Option<Persistence>,
        status: Status,
        kick: Arc<Kick>,
        held: bool,
        listeners: Arc<Listeners>,
    ) -> Self {
        let inbox = Inbox::default();
        if !held {
            inbox.post(Input::Held(false));
        }
        Self {
            named: AtomicBool::new(persistence.is_none()),
            base,
            id,
            headers,
            mode,
            transport,
            listeners,
            adoptions: Mutex::default(),
            adopter: OnceLock::new(),
            watchers: Watchers::default(),
            reported: Mutex::new((status, 0)),
            told: Mutex::new(None),
            unsaved: AtomicUsize::new(0),
            inbox,
            kick,
            persistence,
            released: AtomicBool::new(!held),
            release_requested: AtomicBool::new(false),
            stopped: OnceLock::new(),
        }
    }

    /// The headers of a request made now: the client key and the application's.
    pub(crate) fn headers(&self) -> RequestHeaders<'_> {
        self.headers.now()
    }

    /// The server names the user (`None`: as the browser's record says, which the client
    /// that got the token wrote). Returns whether the client may go on: a client whose saved
    /// state is another user's stops.
    pub(crate) fn name(&self, user: Option<&str>) -> bool {
        let Some(persistence) = &self.persistence else {
            return true;
        };
        match persistence.name(user) {
            Ok(()) => {
                self.named.store(true, Ordering::Release);
                true
            }
            // Stopped already, with why.
            Err(Stale::SignedOut) => false,
            Err(stale) => {
                tracing::warn!(?stale, "the server names another user than this client's");
                self.stop(TransportError::Status {
                    status: 403,
                    message: "someone else signed in since this client was made: it stops, and \
                              the calls saved for the previous user stay theirs; make a new client"
                        .into(),
                });
                false
            }
        }
    }

    /// Whether the user is named (see [`name`](Self::name)).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn is_named(&self) -> bool {
        self.named.load(Ordering::Acquire)
    }

    /// The server refuses this client's ID to the user signed in now (`403`): the page is used
    /// by someone else than the user last named. The client stops, and the next one made takes
    /// a new ID.
    pub(crate) fn refused(&self, error: TransportError) {
        if self.stopped().is_some() {
            // Signed out, or another user's already: what the browser holds now may be the
            // next user's, and stays.
            return;
        }
        if let Some(persistence) = &self.persistence {
            persistence.forget_user();
        }
        rt::forget_identity(&self.base);
        self.stop(error);
    }

    /// Stops the client for good: nothing more is saved or sent, and every call fails with
    /// `error`.
    pub(crate) fn stop(&self, error: TransportError) {
        if self.stopped.set(error.clone()).is_err() {
            return;
        }
        // Let go without a word: the lease stays as it was, or goes with a sign-out.
        self.released.store(true, Ordering::Release);
        self.post(Input::Stop(error));
        self.kick_stream();
    }

    /// Why the client stopped, if it did.
    pub(crate) fn stopped(&self) -> Option<TransportError> {
        self.stopped.get().cloned()
    }

    pub(crate) fn url(&self, endpoint: &str) -> String {
        format!("{}/{endpoint}", self.base)
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The name the clients of this server with this key share one event stream under (the
    /// tabs of a browser share a key; a token covers only the clients of its key).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn stream_group(&self) -> String {
        format!(
            "crudp:{}:stream:{:016x}",
            self.base,
            rt::digest(self.headers.key())
        )
    }

    /// Hands an input to the driver.
    pub(crate) fn post(&self, input: Input) {
        let call = matches!(input, Input::Call { .. });
        if call {
            self.reported().1 += 1;
            self.unsaved.fetch_add(1, Ordering::AcqRel);
        }
        if !self.inbox.post(input) && call {
            // Failed at once (the client stopped): it waits for nothing.
            let mut reported = self.reported();
            reported.1 = reported.1.saturating_sub(1);
            self.unsaved.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Adds a status watcher; it hears of the next change, whatever the watchers were told
    /// before (it may have read a status they never were).
    pub(crate) fn watch_status(&self, watcher: Arc<crate::listeners::StatusFn>) -> u64 {
        let id = self.watchers.add_status(watcher);
        *self.told.lock().unwrap_or_else(PoisonError::into_inner) = None;
        id
    }

    /// The link to the server and the calls waiting for it, the calls just made included, and
    /// those of the queues left behind that this client takes over.
    pub(crate) fn status(&self) -> Status {
        let (mut status, unprocessed) = *self.reported();
        status.queued += unprocessed;
        let mut adoptions = self.adoptions();
        status.queued += adoptions
            .waiting
            .iter()
            .map(|(_, calls)| calls)
            .sum::<usize>();
        adoptions.senders.retain(|sender| sender.strong_count() > 0);
        for sender in adoptions.senders.iter().filter_map(Weak::upgrade) {
            let theirs = sender.status();
            status.queued += theirs.queued;
            status.in_flight += theirs.in_flight;
        }
        status
    }

    /// Records the status the driver reports, which counts `taken_in` calls it took in since
    /// it last reported, and tells the watchers, and those of the client that adopted this
    /// one's queue.
    pub(crate) fn report(&self, status: Status, taken_in: usize) {
        {
            let mut reported = self.reported();
            reported.0 = status;
            reported.1 = reported.1.saturating_sub(taken_in);
        }
        self.tell_watchers();
        if let Some(adopter) = self.adopter.get().and_then(Weak::upgrade) {
            adopter.tell_watchers();
        }
    }

    fn tell_watchers(&self) {
        let status = self.status();
        {
            let mut told = self.told.lock().unwrap_or_else(PoisonError::into_inner);
            if *told == Some(status) {
                return;
            }
            *told = Some(status);
        }
        self.watchers.status(status);
    }

    fn reported(&self) -> MutexGuard<'_, (Status, usize)> {
        self.reported.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn adoptions(&self) -> MutexGuard<'_, Adoptions> {
        self.adoptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the calls of the queues left behind that this client waits to adopt, each with
    /// its ID, as its own queued calls (see [`adopt`](Self::adopt)).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn left_behind(&self, waiting: Vec<(ClientId, usize)>) {
        let changed = {
            let mut adoptions = self.adoptions();
            let changed = adoptions.waiting != waiting;
            adoptions.waiting = waiting;
            changed
        };
        if changed {
            self.tell_watchers();
        }
    }

    /// Records that this client adopted the queue of `client`, before the client that sends it
    /// is made (see [`sends_for`](Self::sends_for)).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn adopt(&self, client: ClientId) {
        self.adoptions().ids.push(client);
    }

    /// This client sends the queue that `adopter` adopted: its calls count in `adopter`'s
    /// status from now on, until it is dropped.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn sends_for(self: &Arc<Self>, adopter: &Arc<Shared>) {
        let _ = self.adopter.set(Arc::downgrade(adopter));
        {
            let mut adoptions = adopter.adoptions();
            adoptions.waiting.retain(|(c, _)| *c != self.id);
            adoptions.senders.push(Arc::downgrade(self));
        }
        adopter.tell_watchers();
    }

    /// Whether a call of `client` is this client's own: its listeners hear of it with the
    /// result, not by broadcast.
    pub(crate) fn is_own(&self, client: ClientId) -> bool {
        client == self.id || self.adoptions().ids.contains(&client)
    }

    /// Skips the event stream's back-off.
    pub(crate) fn kick_stream(&self) {
        self.kick.kick();
    }

    /// Saves what `saved` makes (only with storage: it copies every call without an
    /// outcome), which holds `calls` calls made since the last save, unless the client let its
    /// ID go.
    pub(crate) fn save(&self, saved: impl FnOnce() -> crate::queue::storage::Saved, calls: usize) {
        if !self.released.load(Ordering::Acquire)
            && let Some(persistence) = &self.persistence
        {
            let found = persistence.save(&saved(), rt::now_ms());
            self.found(found);
        }
        self.unsaved.fetch_sub(calls, Ordering::AcqRel);
        if self.all_saved() && self.release_requested.load(Ordering::Acquire) {
            self.release();
        }
    }

    /// Lets the ID go now if every call made is saved, else as soon as the driver saved them.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn release_when_saved(&self) {
        self.release_requested.store(true, Ordering::Release);
        if self.all_saved() {
            self.release();
        }
    }

    /// Whether every call made is in the saved queue.
    pub(crate) fn all_saved(&self) -> bool {
        self.unsaved.load(Ordering::Acquire) == 0
    }

    /// Lets the client's ID go, for the next load of this tab or another: nothing is sent or
    /// saved until it is [taken back](Self::take_back).
    pub(crate) fn release(&self) {
        if let Some(persistence) = &self.persistence
            && !self.released.swap(true, Ordering::AcqRel)
        {
            persistence.release(rt::now_ms());
            self.post(Input::Held(false));
        }
    }

    /// Holds the client's ID again (or at last): its calls are saved and may leave. Where the
    /// lease in storage decides and another page took the ID over meanwhile, the client stops
    /// ([`TransportError::TakenOver`]).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn take_back(&self) {
        self.release_requested.store(false, Ordering::Release);
        if self.stopped().is_some() || !self.renew() {
            return;
        }
        if self.released.swap(false, Ordering::AcqRel) {
            self.post(Input::Held(true));
        }
    }

    /// Renews the client's lease in storage; `false` if another page took the ID over, and
    /// the client stopped.
    pub(crate) fn renew(&self) -> bool {
        match &self.persistence {
            Some(persistence) => self.found(persistence.renew(rt::now_ms())),
            None => true,
        }
    }

    /// Acts on what the lease in storage said; `false` if the client stopped.
    fn found(&self, found: Renewal) -> bool {
        match found {
            Renewal::Held => true,
            Renewal::Cleared(floor) => {
                self.post(Input::SkipTo(floor));
                true
            }
            Renewal::Taken => {
                tracing::warn!(client = %self.id, "another page took this client over");
                self.stop(TransportError::TakenOver);
                false
            }
        }
    }

    /// Whether the client let its ID go.
    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }
}
