//! The event stream: results of this client's batches, broadcasts for its listeners, and the
//! reconnection that keeps it open.

mod kick;

use std::sync::Weak;

use crudp_runtime::{
    ClientId, EventKind,
    protocol::{MAX_TOKEN_CLIENTS, TokenGrant, TokenRequest},
};
use futures_channel::oneshot;
use futures_util::{
    StreamExt,
    future::{Either, select},
};
use serde::{Deserialize, Serialize};

use crate::{
    backoff::Backoff,
    core::Input,
    rt,
    shared::Shared,
    transport::{
        DecodedEvent, EventStream, MaybeSendSync, SseEvent, TransportError, TransportFuture,
    },
};

pub(crate) use kick::Kick;

/// Seconds before expiry at which a token is renewed rather than used.
const TOKEN_MARGIN: u64 = 5;
/// How long a new stream may take to say `ready`, or its next event before `ready`, before the
/// client takes it for one that a proxy holds back, and polls instead.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a stream must have been open for its loss to be reconnected at once.
const STABLE_MS: u64 = 5_000;
/// How long a client polls before it tries the event stream again.
const STREAM_RETRY_MS: u64 = 5 * 60 * 1000;

/// The other clients a stream serves: those of the browser's other tabs, while this tab's
/// stream is the one they share.
pub(crate) trait Fanout: MaybeSendSync {
    /// The other clients the stream carries.
    fn peers(&self) -> Vec<ClientId>;
    /// The last event any tab saw, to resume from.
    fn last_event_id(&self) -> Option<u64>;
    /// Passes an event on; `clients` are those the stream carries.
    fn event(&mut self, event: &SseEvent, clients: &[ClientId]);
    /// Passes a change of the link on.
    fn link(&mut self, link: Link);
    /// The server refuses `client` to this user (a tab left from before a sign-out) with
    /// `error`: the stream goes on without it, and its tab is told.
    fn refused(&mut self, client: ClientId, error: &TransportError);
    /// Resolves with the next [`Change`].
    fn change(&mut self) -> TransportFuture<'_, Change>;
}

/// What makes a shared stream reconnect or stop.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Another client joined: the stream must carry it too.
    Joined,
    /// The page is hidden or frozen: another tab must take the stream over.
    Hidden,
}

/// A change of the link, for the driver of every client the stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Link {
    /// The stream was open and broke; it is reconnecting.
    Lost,
    /// The stream could not open.
    Failed,
    /// Events come by polling (`true`), or by the stream again (`false`).
    Polling(bool),
    /// The most packets the server takes in a batch.
    Limit(u32),
}

impl Link {
    pub(crate) fn input(self) -> Input {
        match self {
            Link::Lost => Input::StreamLost,
            Link::Failed => Input::StreamFailed,
            Link::Polling(polling) => Input::Polling(polling),
            Link::Limit(packets) => {
                Input::ServerLimit(usize::try_from(packets).unwrap_or(usize::MAX))
            }
        }
    }
}

/// Why [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The client was dropped.
    Shutdown,
    /// The page is hidden: the stream is another tab's to open.
    Hidden,
}

/// Tells this client's driver, and the other tabs' clients, of a change of the link.
fn tell(inner: &Shared, fanout: &mut Option<&mut dyn Fanout>, link: Link) {
    inner.post(link.input());
    if let Some(fanout) = fanout {
        fanout.link(link);
    }
}

/// Keeps the event stream open until the client is dropped (`shutdown` resolves) or, when it
/// serves other tabs' clients too (`fanout`), until the page is hidden.
pub(crate) async fn run(
    client: Weak<Shared>,
    shutdown: &mut oneshot::Receiver<()>,
    kick: &Kick,
    mut fanout: Option<&mut dyn Fanout>,
) -> Ended {
    let mut token: Option<(TokenGrant, Vec<ClientId>)> = None;
    let mut last_event_id: Option<u64> = fanout.as_ref().and_then(|f| f.last_event_id());
    let Some(seed) = client.upgrade().map(|c| c.id.0) else {
        return Ended::Shutdown;
    };
    let mut backoff = Backoff::new(seed);
    // A stream that never says `ready` (and does not fail either) is taken for one that a
    // buffering proxy holds back: from then on the client polls.
    let mut polling = false;
    // Since when it polls, and whether its status says so.
    let (mut polling_since, mut says_polling) = (0, false);
    // Whether the next poll must say `ready`: after the switch and after any failure, the
    // client is not known to be connected.
    let mut need_ready = true;
    loop {
        let Some(inner) = client.upgrade() else {
            return Ended::Shutdown;
        };
        if polling && rt::monotonic_ms().saturating_sub(polling_since) >= STREAM_RETRY_MS {
            // Perhaps the stream gets through now (another network, another proxy).
            polling = false;
        }
        let had_token = token.is_some();
        let endpoint = match (polling, need_ready) {
            (false, _) => "events",
            (true, false) => "poll",
            (true, true) => "poll?ready=true",
        };
        let asked = rt::monotonic_ms();
        let mut delivered = 0usize;
        let clients = match &token {
            Some((_, clients)) => clients.clone(),
            None => stream_clients(inner.id, fanout.as_deref()),
        };
        let (opened, mut held_back) = connect(
            &inner,
            &mut token,
            &clients,
            last_event_id,
            endpoint,
            polling,
            &mut fanout,
        )
        .await;
        // The stream carries those its token names.
        let clients = token.as_ref().map_or(clients, |(_, named)| named.clone());
        let mut ready = false;
        // When it said `ready`.
        let mut ready_at = 0;
        // When the wait for `ready` last started again (a replay coming through).
        let mut waits_since = rt::monotonic_ms();
        // The answer came to its end as a poll's does, or the client just switched to polling,
        // or another client joined: ask again at once.
        let mut again = false;
        let Some(opened) = opened else {
            tracing::info!("the event stream does not get through; polling");
            (polling, polling_since, need_ready) = (true, rt::monotonic_ms(), true);
            if !says_polling {
                says_polling = true;
                tell(&inner, &mut fanout, Link::Polling(true));
            }
            continue;
        };
        match opened {
            Err(e) if e.status() == Some(401) && had_token => {
                // The token expired or the server restarted with a new key: get a new one now.
                tracing::debug!("event stream refused its token; renewing it");
                token = None;
                continue;
            }
            Err(e) => tracing::debug!(error = %e, "event stream not connected"),
            Ok(mut stream) => {
                drop(inner);
                loop {
                    let next = match next_event(&mut stream, shutdown, &mut held_back, &mut fanout)
                        .await
                    {
                        Next::Event(event) => event,
                        Next::Shutdown => return Ended::Shutdown,
                        Next::Change(Change::Hidden) => return Ended::Hidden,
                        Next::Change(Change::Joined) => {
                            // Carry it too: a new token, and the stream resumes where it was.
                            // (No pause to gather others first: a leader in a background tab
                            // may have its timers held back for a minute.)
                            token = None;
                            again = true;
                            break;
                        }
                        Next::HeldBack if !ready => {
                            // Nothing came through in time: a proxy holds the stream back.
                            tracing::info!("the event stream does not get through; polling");
                            (polling, polling_since, need_ready) = (true, rt::monotonic_ms(), true);
                            again = true;
                            if let Some(inner) = client.upgrade()
                                && !says_polling
                            {
                                says_polling = true;
                                tell(&inner, &mut fanout, Link::Polling(true));
                            }
                            break;
                        }
                        Next::HeldBack => {
                            held_back = held_back_after(true);
                            continue;
                        }
                    };
                    let Some(inner) = client.upgrade() else {
                        return Ended::Shutdown;
                    };
                    match next {
                        Some(Ok(event)) => {
                            if let Some(id) = event.id.as_deref().and_then(|id| id.parse().ok()) {
                                last_event_id = Some(id);
                            }
                            delivered += 1;
                            // Kicks made before are done with: events come through (a poll
                            // says `ready` only at first).
                            kick.clear();
                            if let Some(fanout) = &mut fanout {
                                fanout.event(&event, &clients);
                            }
                            if handle(&inner, event, &clients) == Some(EventKind::Ready) {
                                ready = true;
                                ready_at = rt::monotonic_ms();
                                need_ready = false;
                                if !polling && says_polling {
                                    // The stream gets through again.
                                    says_polling = false;
                                    tell(&inner, &mut fanout, Link::Polling(false));
                                }
                            } else if !ready && rt::monotonic_ms() - waits_since >= 1000 {
                                // A replay coming through: the stream is not held back, it
                                // only has much to say before `ready` (a long one on a slow
                                // link). The wait starts again, at most once a second rather
                                // than with each event.
                                waits_since = rt::monotonic_ms();
                                held_back = held_back_after(polling);
                            }
                        }
                        Some(Err(TransportError::Reconnecting)) => {
                            // The stream fails rather than being held back: the wait for
                            // `ready` starts again with the next attempt.
                            if !ready {
                                held_back = held_back_after(polling);
                            }
                            tell(&inner, &mut fanout, Link::Failed)
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "event stream broke");
                            break;
                        }
                        None => {
                            again = polling;
                            break;
                        }
                    }
                }
            }
        }
        let Some(inner) = client.upgrade() else {
            return Ended::Shutdown;
        };
        if again {
            // An answer that ends empty long before a poll's wait is over (a proxy that cuts
            // quiet requests short): do not ask again in a tight loop.
            if delivered == 0 && rt::monotonic_ms().saturating_sub(asked) < 1000 && polling {
                drop(inner);
                if pause(backoff.next(), kick, shutdown).await {
                    return Ended::Shutdown;
                }
            }
            continue;
        }
        need_ready = true;
        if ready {
            // Kicks made while it was open are done with too: only those made from now on
            // skip a pause.
            kick.clear();
            tell(&inner, &mut fanout, Link::Lost);
            if rt::monotonic_ms().saturating_sub(ready_at) >= STABLE_MS {
                // It was open a while: reconnect at once.
                backoff.reset();
                continue;
            }
            // Cut soon after it opened (a proxy that cuts every stream): not again in a tight
            // loop, but after a pause that grows while it goes on.
            drop(inner);
            if pause(backoff.next(), kick, shutdown).await {
                return Ended::Shutdown;
            }
            continue;
        }
        // It never opened (the browser's `EventSource` reports a refused token this way too):
        // try a new token, after a pause.
        token = None;
        tell(&inner, &mut fanout, Link::Failed);
        drop(inner);
        let delay = select(Box::pin(rt::sleep(backoff.next())), Box::pin(kick.kicked()));
        let change = match &mut fanout {
            Some(fanout) => Either::Left(fanout.change()),
            None => Either::Right(std::future::pending()),
        };
        match select(select(delay, change), &mut *shutdown).await {
            Either::Right(_) => return Ended::Shutdown,
            Either::Left((Either::Right((Change::Hidden, _)), _)) => return Ended::Hidden,
            Either::Left(_) => {}
        }
    }
}

/// Waits for `delay`, or until a kick skips it; `true` if the client was dropped meanwhile.
async fn pause(
    delay: std::time::Duration,
    kick: &Kick,
    shutdown: &mut oneshot::Receiver<()>,
) -> bool {
    let delay = select(Box::pin(rt::sleep(delay)), Box::pin(kick.kicked()));
    matches!(select(delay, shutdown).await, Either::Right(_))
}

/// This client and the others it serves, as many as a token may name.
fn stream_clients(own: ClientId, fanout: Option<&dyn Fanout>) -> Vec<ClientId> {
    let mut clients = vec![own];
    if let Some(fanout) = fanout {
        clients.extend(fanout.peers().into_iter().filter(|c| *c != own));
    }
    clients.truncate(MAX_TOKEN_CLIENTS);
    clients
}

enum Next {
    Event(Option<Result<SseEvent, TransportError>>),
    Shutdown,
    HeldBack,
    Change(Change),
}

/// Waits for the next event, the client's end, the end of the wait for `ready`, or a change
/// of the tabs the stream serves.
async fn next_event(
    stream: &mut EventStream,
    shutdown: &mut oneshot::Receiver<()>,
    held_back: &mut TransportFuture<'static, ()>,
    fanout: &mut Option<&mut dyn Fanout>,
) -> Next {
    let change = match fanout {
        Some(fanout) => Either::Left(fanout.change()),
        None => Either::Right(std::future::pending()),
    };
    let event = select(stream.next(), shutdown);
    match select(select(event, held_back), change).await {
        Either::Left((Either::Left((Either::Left((event, _)), _)), _)) => Next::Event(event),
        Either::Left((Either::Left((Either::Right(_), _)), _)) => Next::Shutdown,
        Either::Left((Either::Right(_), _)) => Next::HeldBack,
        Either::Right((change, _)) => Next::Change(change),
    }
}

/// Resolves when a stream that has said nothing yet counts as held back; never when polling.
fn held_back_after(polling: bool) -> TransportFuture<'static, ()> {
    if polling {
        Box::pin(std::future::pending())
    } else {
        Box::pin(rt::sleep(READY_TIMEOUT))
    }
}

/// Gets a token for `clients` if the one at hand will not do, then opens `endpoint`. The
/// time a new stream has to say `ready` runs from its request (a proxy that holds the stream
/// back may hold its head back too), not from the token's: the answer is `None` if it runs out
/// first, and the timer goes on for the rest of the wait.
async fn connect(
    inner: &Shared,
    token: &mut Option<(TokenGrant, Vec<ClientId>)>,
    clients: &[ClientId],
    last_event_id: Option<u64>,
    endpoint: &str,
    polling: bool,
    fanout: &mut Option<&mut dyn Fanout>,
) -> (
    Option<Result<EventStream, TransportError>>,
    TransportFuture<'static, ()>,
) {
    let mut clients = clients.to_vec();
    let current = match token.take() {
        Some((grant, _)) if grant.expires_at > rt::unix_now() + TOKEN_MARGIN => grant,
        _ => match new_token(inner, &clients).await {
            Ok(grant) => grant,
            Err(e) if e.status() == Some(403) => {
                // A client belongs to another user (a tab left from before someone else
                // signed in): find which, and carry the rest; if it is this one, it stops.
                let mut kept = Vec::new();
                let alone_refused = clients.len() == 1;
                for client in clients {
                    let alone = if alone_refused {
                        Err(e.clone())
                    } else {
                        new_token(inner, &[client]).await.map(|_| ())
                    };
                    match alone {
                        Ok(()) => kept.push(client),
                        Err(refusal) if refusal.status() == Some(403) => {
                            if client == inner.id {
                                inner.refused(refusal.clone());
                                return (Some(Err(refusal)), held_back_after(true));
                            }
                            if let Some(fanout) = fanout {
                                fanout.refused(client, &refusal);
                            }
                        }
                        Err(e) => return (Some(Err(e)), held_back_after(true)),
                    }
                }
                clients = kept;
                match new_token(inner, &clients).await {
                    Ok(grant) => grant,
                    Err(e) => return (Some(Err(e)), held_back_after(true)),
                }
            }
            Err(e) => return (Some(Err(e)), held_back_after(true)),
        },
    };
    if !inner.name(Some(&current.user)) {
        return (Some(Err(TransportError::Closed)), held_back_after(true));
    }
    tell(inner, fanout, Link::Limit(current.max_packets));
    // Kept before the stream is awaited, in case the wait is given up.
    let secret = current.token.clone();
    *token = Some((current, clients));
    let mut held_back = held_back_after(polling);
    let headers = inner.headers();
    let opening = inner.transport.events_with_headers(
        &inner.url(endpoint),
        &secret,
        last_event_id,
        &headers.own(),
    );
    let opened = match select(opening, &mut held_back).await {
        Either::Left((opened, _)) => Some(opened),
        Either::Right(_) => None,
    };
    (opened, held_back)
}

async fn new_token(inner: &Shared, clients: &[ClientId]) -> Result<TokenGrant, TransportError> {
    let request = TokenRequest {
        clients: clients.to_vec(),
    };
    let body = postcard::to_stdvec(&request).expect("a token request always encodes");
    let answer = inner
        .transport
        .post(&inner.url("token"), &inner.headers().pairs(), body)
        .await?;
    postcard::from_bytes(&answer)
        .map_err(|e| TransportError::Malformed(format!("the token grant does not decode: {e}")))
}

/// Has the server name the user of a client without an event stream, by a token for it alone;
/// fails if the client is another user's (and then it stops).
pub(crate) async fn name(inner: &Shared) -> Result<(), TransportError> {
    match new_token(inner, &[inner.id]).await {
        Ok(grant) if inner.name(Some(&grant.user)) => Ok(()),
        Ok(_) => Err(inner.stopped().unwrap_or(TransportError::Closed)),
        Err(e) if e.status() == Some(403) => {
            inner.refused(e.clone());
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Acts on one event of a stream that carries `clients`; returns its kind. Results of the
/// other clients and a `ready` of a stream that does not carry this client are left alone.
pub(crate) fn handle(inner: &Shared, event: SseEvent, clients: &[ClientId]) -> Option<EventKind> {
    let kind = EventKind::from_name(event.event.as_deref()?)?;
    match event.decode()? {
        Ok(DecodedEvent::Results(client, results)) if client == inner.id => {
            inner.post(Input::Results(results));
        }
        Ok(DecodedEvent::Results(..)) => {}
        // This client's own call: its listeners heard of it with the result.
        Ok(DecodedEvent::Broadcast(broadcast))
            if broadcast.origin.is_some_and(|o| inner.is_own(o)) => {}
        Ok(DecodedEvent::Broadcast(broadcast)) => {
            inner
                .listeners
                .notify(broadcast.handler, broadcast.action, &broadcast.value);
        }
        // Results missed before a reset are asked for again when the stream is ready.
        Ok(DecodedEvent::Reset) => {
            tracing::debug!("event stream reset: events may have been missed");
            inner.watchers.reset();
        }
        // The user was named with the token; a tab whose stream another tab opened reads it
        // from the browser's record.
        Ok(DecodedEvent::Ready) if clients.contains(&inner.id) => {
            if inner.name(None) {
                inner.post(Input::StreamReady);
            }
        }
        Ok(DecodedEvent::Ready) => {}
        Err(e) => tracing::warn!("{e}"),
    }
    Some(kind)
}
