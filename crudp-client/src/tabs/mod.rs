//! One event stream per browser. The clients of one server in all the tabs of an origin elect
//! a leader with the Web Locks API; the leader's stream carries every client's events, and it
//! passes each on over a `BroadcastChannel`: a client's results to that client, the rest to
//! all. When the leader's page goes away or is frozen, its lock is let go and another tab
//! takes over, resuming after the last event any tab saw, so that nothing is lost or delivered
//! twice. Where either API is missing, each client keeps its own stream.

pub(crate) mod locks;

use std::{
    cell::RefCell,
    collections::BTreeSet,
    future::poll_fn,
    rc::Rc,
    sync::{Arc, Weak},
    task::{Poll, Waker},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use crudp_runtime::{ClientId, EventKind, protocol::client_of_results};
use futures_channel::oneshot;
use futures_util::future::{Either, select};
use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue, closure::Closure};
use web_sys::{BroadcastChannel, MessageEvent};

use crate::{
    browser::PageListeners,
    events::{self, Change, Ended, Fanout, Kick, Link},
    shared::Shared,
    transport::{SseEvent, TransportError, TransportFuture},
};

/// What the tabs tell each other.
#[derive(Serialize, Deserialize)]
enum Message {
    /// A client that wants its events (from a new tab, or to a new leader).
    Hello(ClientId),
    /// A client whose page went away.
    Bye(ClientId),
    /// A tab took the stream over: every other tab says hello.
    Leader,
    /// Skip the stream's back-off: a follower's network came back, or it was asked to sync.
    Kick,
    /// An event of the shared stream, for one client or, without `to`, for all; `clients` are
    /// those the stream carries (for `ready`; empty otherwise).
    Event {
        to: Option<ClientId>,
        id: Option<String>,
        kind: Option<String>,
        data: String,
        clients: Vec<ClientId>,
    },
    /// A change of the shared stream's link.
    Link(Link),
    /// The server refused `client` to the user signed in now (the leader's): that client's
    /// tab stops, as a tab with a stream of its own would.
    Refused { client: ClientId, message: String },
}

/// What this client knows of the tabs, shared with the channel's and the page's handlers.
struct State {
    me: ClientId,
    leading: bool,
    hidden: bool,
    /// The clients of the other tabs.
    peers: BTreeSet<ClientId>,
    /// The peers the stream carries now.
    carried: BTreeSet<ClientId>,
    /// Clients the server refused to this tab's user, while it leads.
    refused: BTreeSet<ClientId>,
    last_event_id: Option<u64>,
    /// The page was hidden or frozen while another tab led: the broadcasts of that time
    /// passed it by, which its reset watchers hear once it is carried again.
    missed: bool,
    /// The stream's lock, while this tab leads.
    lock: Option<locks::Held>,
    /// The task waiting for a change.
    waker: Option<Waker>,
}

impl State {
    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// This client's membership of the browser's tabs; leaves when dropped.
struct Tabs {
    channel: BroadcastChannel,
    lock_name: String,
    state: Rc<RefCell<State>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    page: PageListeners,
}

/// Keeps this client's events coming until it is dropped: through the stream of whichever tab
/// leads, this one's when it does.
pub(crate) async fn run(
    client: Weak<Shared>,
    mut shutdown: oneshot::Receiver<()>,
    kick: Arc<Kick>,
) {
    let Some(mut tabs) = client.upgrade().and_then(|inner| Tabs::join(&inner)) else {
        events::run(client, &mut shutdown, &kick, None).await;
        return;
    };
    loop {
        // While the page is hidden or frozen, it does not ask to lead.
        if let Either::Right(_) = select(Box::pin(tabs.shown()), &mut shutdown).await {
            return;
        }
        // A follower until this tab holds the stream's lock: its kicks go to the leader.
        let mut lock = Box::pin(locks::acquire(&tabs.lock_name, false));
        let held = loop {
            let kicked = Box::pin(kick.kicked());
            match select(select(lock.as_mut(), kicked), &mut shutdown).await {
                Either::Right(_) => return,
                Either::Left((Either::Left((held, _)), _)) => break held,
                Either::Left((Either::Right(((), _)), _)) => tabs.post(&Message::Kick),
            }
        };
        drop(lock);
        let Some(held) = held else {
            // Web Locks failed after all: this client keeps its own stream.
            drop(tabs);
            events::run(client, &mut shutdown, &kick, None).await;
            return;
        };
        if tabs.state.borrow().hidden {
            // Hidden while it waited: let another tab lead.
            continue;
        }
        tabs.lead(held);
        let ended = events::run(client.clone(), &mut shutdown, &kick, Some(&mut tabs)).await;
        tabs.follow();
        if ended == Ended::Shutdown {
            return;
        }
    }
}

impl Tabs {
    /// Joins the tabs of this client's server, if the browser has what it takes.
    fn join(inner: &Arc<Shared>) -> Option<Self> {
        if !locks::available() {
            return None;
        }
        let name = inner.stream_group();
        let channel = BroadcastChannel::new(&name).ok()?;
        let state = Rc::new(RefCell::new(State {
            me: inner.id,
            leading: false,
            hidden: false,
            peers: BTreeSet::new(),
            carried: BTreeSet::new(),
            refused: BTreeSet::new(),
            last_event_id: None,
            missed: false,
            lock: None,
            waker: None,
        }));
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
            let (state, channel, inner) =
                (Rc::clone(&state), channel.clone(), Arc::downgrade(inner));
            move |event: MessageEvent| {
                let Some(message) = decode(&event.data()) else {
                    tracing::warn!("an undecodable message from another tab");
                    return;
                };
                if let Some(inner) = inner.upgrade() {
                    receive(&state, &channel, &inner, message);
                }
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let mut tabs = Self {
            channel,
            lock_name: name,
            state,
            _on_message: on_message,
            page: PageListeners::default(),
        };
        tabs.watch_page();
        tabs.post(&Message::Hello(inner.id));
        Some(tabs)
    }

    /// Follows the page's life: a page hidden (perhaps into the back/forward cache) or frozen
    /// lets the stream go at once, and says hello again when it comes back.
    fn watch_page(&mut self) {
        for (event, hide, window) in [
            ("pagehide", true, true),
            ("pageshow", false, true),
            ("freeze", true, false),
            ("resume", false, false),
        ] {
            let (state, channel) = (Rc::clone(&self.state), self.channel.clone());
            let handler = move |_: JsValue| {
                let mut state = state.borrow_mut();
                if state.hidden == hide {
                    return;
                }
                state.hidden = hide;
                let me = state.me;
                if hide {
                    state.missed = true;
                    // Let go now: a frozen or cached page runs nothing more.
                    if let Some(mut lock) = state.lock.take() {
                        lock.release();
                    }
                    post(&channel, &Message::Bye(me));
                } else {
                    post(&channel, &Message::Hello(me));
                }
                state.wake();
            };
            if window {
                self.page.on_window(event, handler);
            } else {
                self.page.on_document(event, handler);
            }
        }
    }

    fn post(&self, message: &Message) {
        post(&self.channel, message);
    }

    /// Takes the stream over, for the clients this tab heard of; the other tabs say who they
    /// are again, and any it had not heard of join the stream.
    fn lead(&mut self, held: locks::Held) {
        let mut state = self.state.borrow_mut();
        state.leading = true;
        state.lock = Some(held);
        // Whoever is signed in now may own them.
        state.refused.clear();
        // Its stream resumes from the last event this tab saw.
        state.missed = false;
        drop(state);
        self.post(&Message::Leader);
    }

    /// Lets the stream go.
    fn follow(&mut self) {
        let mut state = self.state.borrow_mut();
        state.leading = false;
        state.lock = None;
    }

    /// Resolves when the page is not hidden.
    async fn shown(&self) {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.hidden {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }
}

impl Drop for Tabs {
    fn drop(&mut self) {
        let me = self.state.borrow().me;
        self.post(&Message::Bye(me));
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

impl Fanout for Tabs {
    fn peers(&self) -> Vec<ClientId> {
        let mut state = self.state.borrow_mut();
        state.carried = state.peers.clone();
        state.carried.iter().copied().collect()
    }

    fn last_event_id(&self) -> Option<u64> {
        self.state.borrow().last_event_id
    }

    fn event(&mut self, event: &SseEvent, clients: &[ClientId]) {
        let id = event.id.clone();
        let me = {
            let mut state = self.state.borrow_mut();
            if let Some(id) = id.as_deref().and_then(|id| id.parse().ok()) {
                state.last_event_id = Some(id);
            }
            state.me
        };
        let kind = event.event.as_deref().and_then(EventKind::from_name);
        let to = match kind {
            Some(EventKind::Results) => {
                let Some(client) = results_client(&event.data) else {
                    return;
                };
                if client == me {
                    return;
                }
                Some(client)
            }
            _ => None,
        };
        self.post(&Message::Event {
            to,
            id,
            kind: event.event.clone(),
            data: event.data.clone(),
            // Only `ready` needs them: it says whom the stream carries.
            clients: if kind == Some(EventKind::Ready) {
                clients.to_vec()
            } else {
                Vec::new()
            },
        });
    }

    fn link(&mut self, link: Link) {
        self.post(&Message::Link(link));
    }

    fn refused(&mut self, client: ClientId, error: &TransportError) {
        tracing::warn!(%client, "another user's client: the shared stream goes on without it");
        let mut state = self.state.borrow_mut();
        state.peers.remove(&client);
        state.refused.insert(client);
        drop(state);
        let message = match error {
            TransportError::Status { message, .. } => message.clone(),
            other => other.to_string(),
        };
        self.post(&Message::Refused { client, message });
    }

    fn change(&mut self) -> TransportFuture<'_, Change> {
        Box::pin(poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.hidden || state.lock.is_none() {
                return Poll::Ready(Change::Hidden);
            }
            if !state.peers.is_subset(&state.carried) {
                return Poll::Ready(Change::Joined);
            }
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        }))
    }
}

/// The client a results event is for.
fn results_client(data: &str) -> Option<ClientId> {
    let bytes = URL_SAFE_NO_PAD.decode(data.trim()).ok()?;
    client_of_results(&bytes).ok()
}

/// Acts on a message from another tab.
fn receive(state: &RefCell<State>, channel: &BroadcastChannel, inner: &Shared, message: Message) {
    let mut s = state.borrow_mut();
    match message {
        Message::Hello(client) if !s.refused.contains(&client) => {
            s.peers.insert(client);
            s.wake();
        }
        Message::Bye(client) => {
            s.peers.remove(&client);
        }
        Message::Leader if !s.leading && !s.hidden => post(channel, &Message::Hello(s.me)),
        Message::Kick if s.leading => inner.kick_stream(),
        Message::Event {
            to,
            id,
            kind,
            data,
            clients,
        } if !s.leading => {
            if let Some(id) = id.as_deref().and_then(|id| id.parse().ok()) {
                s.last_event_id = Some(id);
            }
            if to.is_some_and(|to| to != s.me) {
                return;
            }
            let carried = clients.contains(&s.me);
            let ready = kind.as_deref().and_then(EventKind::from_name) == Some(EventKind::Ready);
            let caught_up = carried && ready && s.missed;
            if caught_up {
                s.missed = false;
            }
            drop(s);
            let event = SseEvent {
                id,
                event: kind,
                data,
            };
            events::handle(inner, event, &clients);
            if caught_up {
                inner.watchers.reset();
            }
        }
        Message::Link(link) if !s.leading => {
            drop(s);
            inner.post(link.input());
        }
        Message::Refused { client, message } if client == s.me && !s.leading => {
            drop(s);
            inner.refused(TransportError::Status {
                status: 403,
                message,
            });
        }
        _ => {}
    }
}

fn post(channel: &BroadcastChannel, message: &Message) {
    let bytes = postcard::to_stdvec(message).expect("a message between tabs always encodes");
    if let Err(e) = channel.post_message(&js_sys::Uint8Array::from(&bytes[..])) {
        tracing::warn!("a message to the other tabs was not sent: {e:?}");
    }
}

fn decode(data: &JsValue) -> Option<Message> {
    let bytes = data.dyn_ref::<js_sys::Uint8Array>()?.to_vec();
    postcard::from_bytes(&bytes).ok()
}
