//! The browser's hold on a client's ID, on Web Locks: a lock named after the ID, held while
//! the page lives, let go when the page is hidden into the back/forward cache (once every call
//! is saved) and taken back when it is shown again; and the adoption of the queues that closed
//! tabs left behind, each by the one client that gets its lock.

use std::{
    cell::RefCell,
    future::poll_fn,
    rc::Rc,
    sync::{Arc, Weak},
    task::{Poll, Waker},
    time::Duration,
};

use crudp_runtime::ClientId;
use futures_channel::oneshot;
use futures_util::future::{Either, select};
use wasm_bindgen::JsValue;

use crate::{
    browser::{PageListeners, persisted},
    queue::storage::Storage,
    rt,
    shared::Shared,
    tabs::locks::{self, Held},
};

/// How often an adopted queue is checked for being drained.
const DRAIN_CHECK: Duration = Duration::from_millis(250);

/// A client that sends an adopted queue; dropped once it is drained.
pub(crate) trait Adopted {
    /// Calls without an outcome yet.
    fn pending(&self) -> usize;
}

/// Makes the client that sends the queue of a given ID, whose lock is held.
pub(crate) type Adopt = Box<dyn Fn(ClientId, Arc<dyn Storage>) -> Box<dyn Adopted>>;

/// How often a client looks for its user to be named before it adopts queues, at first.
const NAMED_CHECK: Duration = Duration::from_millis(100);
/// The longest wait between two tries to have the user named by a token of its own.
const NAMED_RETRY_MAX: Duration = Duration::from_secs(5);

/// Waits until the server named the client's user, by its event stream or, when there are
/// queues to adopt and no stream names it, by a token of its own (retried while the server
/// is out of reach). Meanwhile the client's status counts the calls of the queues left behind
/// that no client holds. `false`: the client went, or was stopped, or `stop` resolved.
async fn named(client: &Weak<Shared>, base: &str, stop: &mut oneshot::Receiver<()>) -> bool {
    let mut wait = NAMED_CHECK;
    loop {
        let Some(shared) = client.upgrade() else {
            return false;
        };
        if shared.stopped().is_some() {
            return false;
        }
        if shared.is_named() {
            return true;
        }
        let orphans = shared
            .persistence
            .as_ref()
            .map(|p| p.orphans())
            .unwrap_or_default();
        count_left_behind(&shared, base, &orphans).await;
        if !orphans.is_empty() {
            if crate::events::name(&shared).await.is_ok() {
                return true;
            }
            wait = (wait * 2).min(NAMED_RETRY_MAX);
        }
        drop(shared);
        if let Either::Right(_) = select(Box::pin(rt::sleep(wait)), &mut *stop).await {
            return false;
        }
    }
}

/// Counts in the client's status the calls of the queues left behind (`orphans`) whose locks
/// no client holds: those it is to send once the user is named. Every client of the browser
/// waiting so counts them, until one takes them.
async fn count_left_behind(shared: &Shared, base: &str, orphans: &[ClientId]) {
    let Some(persistence) = &shared.persistence else {
        return;
    };
    let held = if orphans.is_empty() {
        Vec::new()
    } else {
        locks::held().await
    };
    let waiting = orphans
        .iter()
        .filter(|orphan| !held.contains(&lock_name(base, **orphan)))
        .map(|orphan| (*orphan, persistence.saved_calls(*orphan)))
        .collect();
    shared.left_behind(waiting);
}

/// Whether this browser decides leases with Web Locks.
pub(crate) fn available() -> bool {
    locks::available()
}

fn lock_name(base: &str, client: ClientId) -> String {
    format!("crudp:{base}:client:{client}")
}

/// What the page's handlers and the task share.
#[derive(Default)]
struct Page {
    /// The lock, while held.
    held: Option<Held>,
    /// The page came back from the back/forward cache with its ID let go.
    back: bool,
    waker: Option<Waker>,
}

/// Holds the client's lock until it is dropped (`stop` resolves), letting it go and taking
/// it back with the page; after the first time it is held, adopts the queues left behind.
pub(crate) async fn run(client: Weak<Shared>, mut stop: oneshot::Receiver<()>, adopt: Adopt) {
    let Some(shared) = client.upgrade() else {
        return;
    };
    let base = shared.base().to_owned();
    let name = lock_name(&base, shared.id);
    drop(shared);
    let page = Rc::new(RefCell::new(Page::default()));
    let _listeners = watch(&client, &page);
    let mut first = true;
    loop {
        let lock = Box::pin(locks::acquire(&name, false));
        let Either::Left((Some(held), _)) = select(lock, &mut stop).await else {
            return;
        };
        let Some(shared) = client.upgrade() else {
            return;
        };
        page.borrow_mut().held = Some(held);
        shared.take_back();
        drop(shared);
        // Queues left behind are sent only once the server named the user: they may be
        // another user's, from before someone else signed in. Meanwhile those no client holds
        // count in this one's status (offline, say).
        let adopt_now = std::mem::take(&mut first);
        let adopt_now = adopt_now && named(&client, &base, &mut stop).await;
        let Some(shared) = client.upgrade() else {
            return;
        };
        if adopt_now && let Some(persistence) = &shared.persistence {
            for orphan in persistence.orphans() {
                // Whichever client gets the lock adopts the queue; the others leave it.
                let Some(lock) = locks::acquire(&lock_name(&base, orphan), true).await else {
                    continue;
                };
                tracing::info!(%orphan, "adopting the queue of a closed page");
                let adopted = adopt(orphan, persistence.storage());
                let _ = rt::spawn(async move {
                    while adopted.pending() > 0 {
                        rt::sleep(DRAIN_CHECK).await;
                    }
                    // Its queue is empty: the client goes, then the lock.
                    drop(adopted);
                    drop(lock);
                });
            }
        }
        // The queues it did not adopt are not this client's to count.
        shared.left_behind(Vec::new());
        drop(shared);
        // Until the page comes back from the back/forward cache without its ID.
        let back = poll_fn(|cx| {
            let mut page = page.borrow_mut();
            if std::mem::take(&mut page.back) {
                Poll::Ready(())
            } else {
                page.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        });
        if let Either::Right(_) = select(Box::pin(back), &mut stop).await {
            return;
        }
    }
}

/// Lets the lock go when the page is hidden with every call saved (`pagehide` already asked
/// the client to let its ID go), and asks for it back when the page is shown again.
fn watch(client: &Weak<Shared>, page: &Rc<RefCell<Page>>) -> PageListeners {
    let mut listeners = PageListeners::default();
    let (weak, state) = (client.clone(), Rc::clone(page));
    listeners.on_window("pagehide", move |_: JsValue| {
        if weak.upgrade().is_some_and(|shared| shared.is_released())
            && let Some(mut held) = state.borrow_mut().held.take()
        {
            held.release();
        }
    });
    let (weak, state) = (client.clone(), Rc::clone(page));
    listeners.on_window("pageshow", move |event: JsValue| {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        if !persisted(&event) {
            return;
        }
        let mut page = state.borrow_mut();
        if page.held.is_some() {
            // It never let go (calls were still unsaved): carry on.
            shared.take_back();
        } else {
            page.back = true;
            if let Some(waker) = page.waker.take() {
                waker.wake();
            }
        }
    });
    listeners
}
