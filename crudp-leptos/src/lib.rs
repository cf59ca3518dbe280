//! CRUDP for Leptos (client-side rendering): the client's status as a signal, listeners
//! tied to the reactive owner, calls with their pending inputs and result, and reads kept
//! current by the module's broadcasts.
//!
//! Everything here registers with the current reactive owner and is removed when it is
//! cleaned up (the component unmounts), so a page may mount and unmount components freely.
//!
//! ```no_run
//! use crudp_leptos::{provide_client, use_call, use_live_read, use_status};
//! # use leptos::prelude::*;
//! # #[crudp::module]
//! # pub trait Todos { async fn create(&self, ctx: &crudp::Context, title: String) -> Result<u64, String>; }
//! # #[crudp::module]
//! # pub trait Board { async fn read(&self, ctx: &crudp::Context) -> Result<Vec<u64>, String>; }
//!
//! #[component]
//! fn App() -> impl IntoView {
//!     let client = provide_client(crudp::Client::new("/crudp"));
//!     let (todos, board) = (TodosClient::new(&client), BoardClient::new(&client));
//!     let status = use_status();
//!     // The board, kept current by everyone's creates.
//!     let all = use_live_read(move || board.read(), |live| {
//!         live.follow(|hear| todos.on_create(hear), |all, id| all.push(id));
//!     });
//!     let create = use_call(move |title: String| TodosClient::new(&client).create(title));
//!     view! {
//!         <p>{move || format!("{} queued", status.get().queued)}</p>
//!         <button on:click=move |_| create.dispatch("milk".into())>"add"</button>
//!         <p>{move || format!("{:?}", all.value().get())}</p>
//!     }
//! }
//! ```
//!
//! Server-side rendering and hydration are not supported: the client queues calls and opens
//! its event stream in the browser only. Rendering these pages on a server would need a
//! client made per request (reading with the request's cookies) whose live reads resolve
//! before the HTML is sent, and the hydrated page taking over their values.

use std::{cell::Cell, fmt::Debug};

use crudp::CallFuture;
pub use crudp::{CallError, Client, Hear, Listener, LiveRead, Read, Status};
use leptos::{prelude::*, task::spawn_local};
use send_wrapper::SendWrapper;
use serde::de::DeserializeOwned;

/// Makes `client` the one this component and its children use, and returns it.
pub fn provide_client(client: Client) -> Client {
    provide_context(SendWrapper::new(client.clone()));
    client
}

/// The client provided by [`provide_client`] above this component.
///
/// # Panics
///
/// If no component above provided one.
pub fn use_client() -> Client {
    use_context::<SendWrapper<Client>>()
        .map(SendWrapper::take)
        .expect("no CRUDP client: call `crudp_leptos::provide_client` in a component above")
}

/// Keeps `listener` registered until the current owner is cleaned up (the component
/// unmounts): `use_listener(todos.on_create(move |todo| ...))`.
pub fn use_listener(listener: Listener) {
    without_owner("use_listener");
    let listener = SendWrapper::new(listener);
    on_cleanup(move || drop(listener));
}

/// Says so where a hook is used outside any component: with no owner to clean it up, what it
/// keeps goes at once (a listener) or never (a live read).
fn without_owner(hook: &str) {
    if Owner::current().is_none() {
        leptos::logging::warn!(
            "crudp_leptos::{hook} outside a component: nothing will clean it up; call it inside one"
        );
    }
}

/// The client's [`Status`] (online, reconnecting or offline; calls queued and in flight), as
/// a signal that follows it.
pub fn use_status() -> ReadSignal<Status> {
    let client = use_client();
    let (status, set) = signal(client.status());
    use_listener(client.on_status(move |now| set.set(now)));
    status
}

/// Calls `resync` when the client's event stream may have missed broadcasts (see
/// [`Client::on_reset`]), until the current owner is cleaned up. [`use_live_read`] does this
/// by itself.
pub fn use_reset(resync: impl Fn() + crudp::MaybeSendSync + 'static) {
    use_listener(use_client().on_reset(resync));
}

/// What [`use_call`] wraps: a generated call.
type MakeCall<I, T, E> = dyn Fn(I) -> CallFuture<T, E>;

/// A call made from the page: the inputs sent and not yet answered (to show them at once,
/// optimistically) and the last result. Made by [`use_call`]; `Copy`, for closures.
pub struct CallAction<I: 'static, T: 'static, E: 'static> {
    call: StoredValue<Box<MakeCall<I, T, E>>, LocalStorage>,
    pending: RwSignal<Vec<(u64, I)>>,
    value: RwSignal<Option<Result<T, CallError<E>>>>,
}

impl<I, T, E> Clone for CallAction<I, T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, T, E> Copy for CallAction<I, T, E> {}

/// Wraps a generated call (`move |title| todos.create(title)`) for the page: dispatch it
/// with [`CallAction::dispatch`], show its [`pending`](CallAction::pending) inputs and its
/// [`value`](CallAction::value).
pub fn use_call<I, T, E>(call: impl Fn(I) -> CallFuture<T, E> + 'static) -> CallAction<I, T, E>
where
    I: Clone + Send + Sync + 'static,
    T: DeserializeOwned + Clone + Send + Sync + 'static,
    E: DeserializeOwned + Clone + Send + Sync + 'static,
{
    CallAction {
        call: StoredValue::new_local(Box::new(call)),
        pending: RwSignal::new(Vec::new()),
        value: RwSignal::new(None),
    }
}

thread_local!(static NEXT_CALL: Cell<u64> = const { Cell::new(0) });

impl<I, T, E> CallAction<I, T, E>
where
    I: Clone + Send + Sync + 'static,
    T: DeserializeOwned + Clone + Send + Sync + 'static,
    E: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Makes the call with `input`: queued at once, even offline. `input` is pending until
    /// the result arrives.
    pub fn dispatch(&self, input: I) {
        let key = NEXT_CALL.with(|n| {
            n.set(n.get() + 1);
            n.get()
        });
        let Some(call) = self.call.try_with_value(|call| call(input.clone())) else {
            return;
        };
        self.pending.update(|p| p.push((key, input)));
        let (pending, value) = (self.pending, self.value);
        spawn_local(async move {
            let result = call.await;
            let _ = pending.try_update(|p| p.retain(|(k, _)| *k != key));
            let _ = value.try_set(Some(result));
        });
    }

    /// The inputs of the calls not answered yet, oldest first.
    pub fn pending(&self) -> Signal<Vec<I>> {
        let pending = self.pending;
        Signal::derive(move || pending.with(|p| p.iter().map(|(_, i)| i.clone()).collect()))
    }

    /// Whether a call is not answered yet.
    pub fn is_pending(&self) -> Signal<bool> {
        let pending = self.pending;
        Signal::derive(move || pending.with(|p| !p.is_empty()))
    }

    /// The result of the call answered last, if any was.
    pub fn value(&self) -> ReadSignal<Option<Result<T, CallError<E>>>> {
        self.value.read_only()
    }
}

/// A read kept current by broadcasts (see [`LiveRead`]); made by [`use_live_read`].
/// `Copy`, for closures.
pub struct LiveResource<T: 'static, E: 'static> {
    read: RwSignal<Read<T, E>>,
    live: StoredValue<Option<LiveRead<T, E>>, LocalStorage>,
}

impl<T, E> Clone for LiveResource<T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, E> Copy for LiveResource<T, E> {}

/// Reads with `fetch` (a generated read: `move || board.read()`) and keeps the value
/// current: `follow` says which listeners change it and how, through
/// [`LiveRead::follow`]. Fetched again after a reset; stopped when the owner is cleaned up.
pub fn use_live_read<T, E>(
    fetch: impl Fn() -> CallFuture<T, E> + 'static,
    follow: impl FnOnce(&LiveRead<T, E>),
) -> LiveResource<T, E>
where
    T: DeserializeOwned + Clone + Send + Sync + 'static,
    E: DeserializeOwned + Clone + Send + Sync + 'static,
{
    without_owner("use_live_read");
    let client = use_client();
    let read = RwSignal::new(Read::Loading);
    // The read answers on this thread (the browser's only one): the wrapper only satisfies
    // the client's `Send` bounds when it is type-checked natively.
    let fetch = SendWrapper::new(fetch);
    #[allow(clippy::redundant_closure)] // the closure keeps the wrapper
    let live = LiveRead::new(
        &client,
        move || fetch(),
        move |now| {
            let _ = read.try_set(now);
        },
    );
    follow(&live);
    let stored = StoredValue::new_local(Some(live));
    on_cleanup(move || {
        // Its listeners go with it.
        let _ = stored.try_update_value(|live| live.take());
    });
    LiveResource { read, live: stored }
}

impl<T, E> LiveResource<T, E>
where
    T: DeserializeOwned + Clone + Send + Sync + 'static,
    E: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// What the read holds: loading, the value, or why the fetch failed.
    pub fn read(&self) -> ReadSignal<Read<T, E>> {
        self.read.read_only()
    }

    /// The value, once fetched.
    pub fn value(&self) -> Signal<Option<T>> {
        let read = self.read;
        Signal::derive(move || read.with(|r| r.value().cloned()))
    }

    /// Fetches again now.
    pub fn refetch(&self) {
        // After its component unmounted (the resource is `Copy` and may outlive it), nothing.
        let _ = self.live.try_with_value(|live| {
            if let Some(live) = live {
                live.refetch();
            }
        });
    }
}

impl<T: Debug, E: Debug> Debug for LiveResource<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveResource").finish_non_exhaustive()
    }
}
