//! CRUDP for Yew (client-side rendering): hooks for the client's status, listeners removed
//! when their component unmounts, calls with their pending inputs and result, and reads kept
//! current by the module's broadcasts.
//!
//! Provide the client with Yew's `ContextProvider`, then use the hooks below it:
//!
//! ```no_run
//! use crudp::Client;
//! use crudp_yew::{use_call, use_client, use_live_read, use_status};
//! use yew::prelude::*;
//! # #[crudp::module]
//! # pub trait TodoList { async fn create(&self, ctx: &crudp::Context, title: String) -> Result<u64, String>; }
//! # #[crudp::module]
//! # pub trait Board { async fn read(&self, ctx: &crudp::Context) -> Result<Vec<u64>, String>; }
//!
//! #[function_component]
//! fn App() -> Html {
//!     let client = use_memo((), |_| Client::new("/crudp"));
//!     html! {
//!         <ContextProvider<Client> context={(*client).clone()}>
//!             <Todos />
//!         </ContextProvider<Client>>
//!     }
//! }
//!
//! #[function_component]
//! fn Todos() -> Html {
//!     let client = use_client();
//!     let (todos, board) = (TodoListClient::new(&client), BoardClient::new(&client));
//!     let status = use_status();
//!     // The board, kept current by everyone's creates.
//!     let all = use_live_read(move || board.read(), move |live| {
//!         live.follow(|hear| todos.on_create(hear), |all, id| all.push(id));
//!     });
//!     let todos = TodoListClient::new(&client);
//!     let create = use_call(move |title: String| todos.create(title));
//!     let add = move |_| create.dispatch("milk".into());
//!     html! {
//!         <>
//!             <p>{ format!("{} queued", status.queued) }</p>
//!             <button onclick={add}>{ "add" }</button>
//!             <p>{ format!("{:?}", all.value()) }</p>
//!         </>
//!     }
//! }
//! ```

use std::{cell::RefCell, rc::Rc};

pub use crudp::{CallError, Client, Hear, Listener, LiveRead, Read, Status};
use crudp::{CallFuture, MaybeSendSync};
use send_wrapper::SendWrapper;
use serde::de::DeserializeOwned;
use yew::{platform::spawn_local, prelude::*};

/// The client that a `ContextProvider<Client>` above this component provides.
///
/// # Panics
///
/// If no component above provides one.
#[hook]
pub fn use_client() -> Client {
    use_context::<Client>()
        .expect("no CRUDP client: wrap the component in a `ContextProvider<crudp::Client>`")
}

/// Registers the listener that `subscribe` makes when the component mounts, and removes it
/// when it unmounts: `use_listener(move |_| todos.on_create(move |todo| ...))`.
#[hook]
pub fn use_listener<F>(subscribe: F)
where
    F: FnOnce(&Client) -> Listener + 'static,
{
    let client = use_client();
    use_effect_with((), move |_| {
        let listener = subscribe(&client);
        move || drop(listener)
    });
}

/// The client's [`Status`] (online, reconnecting or offline; calls queued and in flight);
/// the component renders again when it changes.
#[hook]
pub fn use_status() -> Status {
    let client = use_client();
    let status = use_state(|| client.status());
    let set = status.setter();
    // The watcher runs on this thread (the browser's only one): the wrapper only satisfies
    // the client's `Send` bounds when the page is type-checked natively.
    let set = SendWrapper::new(set);
    use_listener(move |client| client.on_status(move |now| set.set(now)));
    *status
}

/// A call made from the component, made by [`use_call`]: the inputs sent and not yet
/// answered (to show them at once, optimistically) and the last result.
pub struct UseCallHandle<I, T, E> {
    call: Rc<dyn Fn(I) -> CallFuture<T, E>>,
    state: Rc<RefCell<Calls<I, T, E>>>,
    render: UseForceUpdateHandle,
}

struct Calls<I, T, E> {
    next: u64,
    pending: Vec<(u64, I)>,
    value: Option<Result<T, CallError<E>>>,
}

impl<I, T, E> Clone for UseCallHandle<I, T, E> {
    fn clone(&self) -> Self {
        Self {
            call: Rc::clone(&self.call),
            state: Rc::clone(&self.state),
            render: self.render.clone(),
        }
    }
}

impl<I, T, E> PartialEq for UseCallHandle<I, T, E> {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.state, &other.state)
    }
}

/// Wraps a generated call (`move |title| todos.create(title)`) for the component: make it
/// with [`UseCallHandle::dispatch`], show its [`pending`](UseCallHandle::pending) inputs and
/// its [`value`](UseCallHandle::value).
#[hook]
pub fn use_call<I, T, E, F>(call: F) -> UseCallHandle<I, T, E>
where
    I: Clone + 'static,
    T: DeserializeOwned + Clone + 'static,
    E: DeserializeOwned + Clone + 'static,
    F: Fn(I) -> CallFuture<T, E> + 'static,
{
    let call = use_memo((), move |_| Rc::new(call));
    let state = use_mut_ref(|| Calls {
        next: 0,
        pending: Vec::new(),
        value: None,
    });
    let render = use_force_update();
    let call = Rc::clone(&*call);
    UseCallHandle {
        call,
        state,
        render,
    }
}

impl<I, T, E> UseCallHandle<I, T, E>
where
    I: Clone + 'static,
    T: DeserializeOwned + Clone + 'static,
    E: DeserializeOwned + Clone + 'static,
{
    /// Makes the call with `input`: queued at once, even offline. `input` is pending until
    /// the result arrives.
    pub fn dispatch(&self, input: I) {
        let answer = (self.call)(input.clone());
        let key = {
            let mut state = self.state.borrow_mut();
            state.next += 1;
            let key = state.next;
            state.pending.push((key, input));
            key
        };
        self.render.force_update();
        let (state, render) = (Rc::clone(&self.state), self.render.clone());
        spawn_local(async move {
            let result = answer.await;
            {
                let mut state = state.borrow_mut();
                state.pending.retain(|(k, _)| *k != key);
                state.value = Some(result);
            }
            render.force_update();
        });
    }

    /// The inputs of the calls not answered yet, oldest first.
    pub fn pending(&self) -> Vec<I> {
        let state = self.state.borrow();
        state.pending.iter().map(|(_, i)| i.clone()).collect()
    }

    /// Whether a call is not answered yet.
    pub fn is_pending(&self) -> bool {
        !self.state.borrow().pending.is_empty()
    }

    /// The result of the call answered last, if any was.
    pub fn value(&self) -> Option<Result<T, CallError<E>>> {
        self.state.borrow().value.clone()
    }
}

/// Reads with `fetch` (a generated read: `move || board.read()`) when the component mounts
/// and keeps the value current: `follow` says which listeners change it and how, through
/// [`LiveRead::follow`]. Fetched again after a reset; stopped when the component unmounts.
/// The component renders again whenever the value changes.
#[hook]
pub fn use_live_read<T, E, F, G>(fetch: F, follow: G) -> Read<T, E>
where
    T: DeserializeOwned + Clone + MaybeSendSync + 'static,
    E: DeserializeOwned + Clone + MaybeSendSync + 'static,
    F: Fn() -> CallFuture<T, E> + 'static,
    G: FnOnce(&LiveRead<T, E>) + 'static,
{
    let client = use_client();
    let read = use_state(|| Read::Loading);
    let set = read.setter();
    use_effect_with((), move |_| {
        // The read answers on this thread (the browser's only one): the wrappers only
        // satisfy the client's `Send` bounds when the page is type-checked natively.
        let (fetch, set) = (SendWrapper::new(fetch), SendWrapper::new(set));
        #[allow(clippy::redundant_closure)] // the closure keeps the wrapper
        let live = LiveRead::new(&client, move || fetch(), move |now| set.set(now));
        follow(&live);
        move || drop(live)
    });
    (*read).clone()
}
