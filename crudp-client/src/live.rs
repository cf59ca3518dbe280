//! A read kept current: fetched once, then changed by what listeners hear, and fetched again
//! when broadcasts may have been missed. The Leptos and Yew integrations (`crudp-leptos`,
//! `crudp-yew`) are built on it; it works on its own too.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crudp_runtime::{CallError, TransportError};
use serde::de::DeserializeOwned;

use crate::{Client, Listener, call::CallFuture, rt, transport::MaybeSendSync};

/// What a [`LiveRead`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read<T, E> {
    /// The first fetch has not answered yet.
    Loading,
    /// The value, with every change heard since applied.
    Ready(T),
    /// The last fetch failed (a reset fetches again).
    Failed(CallError<E>),
}

impl<T, E> Read<T, E> {
    /// The value, once fetched.
    pub fn value(&self) -> Option<&T> {
        match self {
            Read::Ready(value) => Some(value),
            _ => None,
        }
    }

    /// Why the last fetch failed, if it did.
    pub fn error(&self) -> Option<&CallError<E>> {
        match self {
            Read::Failed(error) => Some(error),
            _ => None,
        }
    }
}

/// What a follow hands to a listener-making method: call
/// `{Trait}Client::on_<action>(hear)` with it.
#[cfg(not(target_arch = "wasm32"))]
pub type Hear<U> = Box<dyn Fn(U) + Send + Sync>;
/// What a follow hands to a listener-making method: call
/// `{Trait}Client::on_<action>(hear)` with it.
#[cfg(target_arch = "wasm32")]
pub type Hear<U> = Box<dyn Fn(U)>;

#[cfg(not(target_arch = "wasm32"))]
type Fetch<T, E> = dyn Fn() -> CallFuture<T, E> + Send + Sync;
#[cfg(target_arch = "wasm32")]
type Fetch<T, E> = dyn Fn() -> CallFuture<T, E>;

#[cfg(not(target_arch = "wasm32"))]
type Changed<T, E> = dyn Fn(Read<T, E>) + Send + Sync;
#[cfg(target_arch = "wasm32")]
type Changed<T, E> = dyn Fn(Read<T, E>);

#[cfg(not(target_arch = "wasm32"))]
type Change<T> = Box<dyn Fn(&mut T) + Send>;
#[cfg(target_arch = "wasm32")]
type Change<T> = Box<dyn Fn(&mut T)>;

/// A value read from the server and kept current: the result of `fetch` (a generated read
/// such as `BoardClient::read`), to which every change heard by its [`follow`](Self::follow)s
/// is applied as it arrives, fetched again when the client reports a reset (broadcasts may
/// have been missed). Changes heard while a fetch is under way are applied again on top of
/// its result, so none is lost to a read that predates it.
///
/// Dropping every clone stops it: its listeners are removed.
///
/// ```no_run
/// # use crudp_client::{Client, LiveRead, Read, CallFuture};
/// # fn doc(client: &Client, read_all: impl Fn() -> CallFuture<Vec<u64>, String> + Send + Sync + 'static,
/// #        on_create: impl FnOnce(crudp_client::Hear<u64>) -> crudp_client::Listener) {
/// let numbers = LiveRead::new(client, read_all, |read: Read<Vec<u64>, String>| {
///     println!("now {:?}", read.value());
/// });
/// // `on_create` stands for a generated `{Trait}Client::on_create`.
/// numbers.follow(on_create, |all: &mut Vec<u64>, n: u64| all.push(n));
/// # }
/// ```
pub struct LiveRead<T, E> {
    inner: Arc<Inner<T, E>>,
}

impl<T, E> Clone for LiveRead<T, E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T, E> std::fmt::Debug for LiveRead<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRead").finish_non_exhaustive()
    }
}

struct Inner<T, E> {
    fetch: Box<Fetch<T, E>>,
    changed: Box<Changed<T, E>>,
    state: Mutex<State<T, E>>,
    /// The follows' listeners and the reset watcher: removed when the read goes.
    listeners: Mutex<Vec<Listener>>,
}

struct State<T, E> {
    read: Read<T, E>,
    /// The fetch whose answer counts: an earlier one answering late is ignored.
    fetch: u64,
    /// While a fetch is under way, the changes heard meanwhile.
    heard: Option<Vec<Change<T>>>,
}

impl<T, E> LiveRead<T, E>
where
    T: Clone + DeserializeOwned + MaybeSendSync + 'static,
    E: Clone + DeserializeOwned + MaybeSendSync + 'static,
{
    /// Fetches with `fetch` now and after every reset of `client`, and calls `changed` with
    /// what the read holds whenever that changes.
    pub fn new(
        client: &Client,
        fetch: impl Fn() -> CallFuture<T, E> + MaybeSendSync + 'static,
        changed: impl Fn(Read<T, E>) + MaybeSendSync + 'static,
    ) -> Self {
        let inner = Arc::new(Inner {
            fetch: Box::new(fetch),
            changed: Box::new(changed),
            state: Mutex::new(State {
                read: Read::Loading,
                fetch: 0,
                heard: None,
            }),
            listeners: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&inner);
        let reset = client.on_reset(move || {
            if let Some(inner) = weak.upgrade() {
                Inner::refetch(&inner);
            }
        });
        inner.listeners().push(reset);
        Inner::refetch(&inner);
        Self { inner }
    }

    /// Applies `apply` to the value with everything the listener that `subscribe` makes
    /// hears: pass a generated `on_<action>` method, e.g.
    /// `live.follow(|hear| todos.on_create(hear), |list, todo| list.push(todo))`. Applied
    /// twice when a fetch is under way (now, and on its result), so make it idempotent: an
    /// upsert, a removal.
    pub fn follow<U: Clone + MaybeSendSync + 'static>(
        &self,
        subscribe: impl FnOnce(Hear<U>) -> Listener,
        apply: impl Fn(&mut T, U) + MaybeSendSync + 'static,
    ) -> &Self {
        let weak = Arc::downgrade(&self.inner);
        let apply = Arc::new(apply);
        let listener = subscribe(Box::new(move |heard: U| {
            if let Some(inner) = weak.upgrade() {
                let apply = Arc::clone(&apply);
                inner.hear(Box::new(move |value: &mut T| apply(value, heard.clone())));
            }
        }));
        self.inner.listeners().push(listener);
        self
    }

    /// Fetches again now; changes heard meanwhile are kept.
    pub fn refetch(&self) {
        Inner::refetch(&self.inner);
    }

    /// What the read holds now.
    pub fn get(&self) -> Read<T, E> {
        self.inner.state().read.clone()
    }
}

impl<T, E> Inner<T, E>
where
    T: Clone + DeserializeOwned + MaybeSendSync + 'static,
    E: Clone + DeserializeOwned + MaybeSendSync + 'static,
{
    fn state(&self) -> MutexGuard<'_, State<T, E>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn listeners(&self) -> MutexGuard<'_, Vec<Listener>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a change heard now, and again on the result of a fetch under way.
    fn hear(&self, change: Change<T>) {
        let now = {
            let mut state = self.state();
            let changed = match &mut state.read {
                Read::Ready(value) => {
                    change(value);
                    Some(state.read.clone())
                }
                _ => None,
            };
            if let Some(heard) = &mut state.heard {
                heard.push(change);
            }
            changed
        };
        if let Some(read) = now {
            (self.changed)(read);
        }
    }

    fn refetch(inner: &Arc<Self>) {
        let (fetch, call) = {
            let mut state = inner.state();
            state.fetch += 1;
            state.heard.get_or_insert_with(Vec::new);
            (state.fetch, (inner.fetch)())
        };
        let weak: Weak<Self> = Arc::downgrade(inner);
        let answered = async move {
            let answer = call.await;
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let read = {
                let mut state = inner.state();
                if state.fetch != fetch {
                    return;
                }
                let heard = state.heard.take().unwrap_or_default();
                state.read = match answer {
                    Ok(mut value) => {
                        heard.iter().for_each(|change| change(&mut value));
                        Read::Ready(value)
                    }
                    Err(error) => Read::Failed(error),
                };
                state.read.clone()
            };
            (inner.changed)(read);
        };
        if let Err(message) = rt::spawn(answered) {
            // Nothing would ever answer: the read says why instead of loading for ever.
            tracing::warn!("a live read cannot fetch: {message}");
            let read = {
                let mut state = inner.state();
                if state.fetch != fetch {
                    return;
                }
                state.heard = None;
                state.read =
                    Read::Failed(CallError::Transport(TransportError::Unreachable(message)));
                state.read.clone()
            };
            (inner.changed)(read);
        }
    }
}
