//! The event stream: results of this client's batches, broadcasts for its listeners, and the
//! reconnection that keeps it open.

use std::sync::Weak;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use crudp_runtime::{
    Broadcast, EventKind,
    protocol::{TokenGrant, TokenRequest, decode_client_results},
};
use futures_channel::{mpsc, oneshot};
use futures_util::{
    StreamExt,
    future::{Either, select},
};

use crate::{
    backoff::Backoff,
    core::Input,
    rt,
    shared::Shared,
    transport::{EventStream, SseEvent, TransportError, TransportFuture},
};

/// Seconds before expiry at which a token is renewed rather than used.
const TOKEN_MARGIN: u64 = 5;
/// How long a new stream may take to say `ready` before the client takes it for one that a
/// proxy holds back, and polls instead.
#[cfg(not(target_arch = "wasm32"))]
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a client polls before it tries the event stream again.
const STREAM_RETRY_MS: u64 = 5 * 60 * 1000;

/// Keeps the event stream open until the client is dropped (`shutdown` resolves).
pub(crate) async fn run(
    client: Weak<Shared>,
    mut shutdown: oneshot::Receiver<()>,
    mut kicks: mpsc::UnboundedReceiver<()>,
) {
    let mut token: Option<TokenGrant> = None;
    let mut last_event_id: Option<u64> = None;
    let Some(seed) = client.upgrade().map(|c| c.id.0) else {
        return;
    };
    let mut backoff = Backoff::new(seed);
    // Natively, a stream that never says `ready` is taken for one that a buffering proxy holds
    // back: from then on the client polls. (The browser's `EventSource` keeps its stream.)
    let mut polling = false;
    // Since when it polls, and whether its status says so.
    let (mut polling_since, mut says_polling) = (0, false);
    // Whether the next poll must say `ready`: after the switch and after any failure, the
    // client is not known to be connected.
    let mut need_ready = true;
    loop {
        let Some(inner) = client.upgrade() else {
            return;
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
        let (opened, mut held_back) =
            connect(&inner, &mut token, last_event_id, endpoint, polling).await;
        let mut ready = false;
        // The answer came to its end as a poll's does, or the client just switched to polling:
        // ask again at once.
        let mut again = false;
        let Some(opened) = opened else {
            tracing::info!("the event stream does not get through; polling");
            (polling, polling_since, need_ready) = (true, rt::monotonic_ms(), true);
            if !says_polling {
                says_polling = true;
                inner.post(Input::Polling(true));
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
                    let next = select(stream.next(), &mut shutdown);
                    let event = match select(next, &mut held_back).await {
                        Either::Left((Either::Left((event, _)), _)) => event,
                        Either::Left((Either::Right(_), _)) => return,
                        Either::Right(_) if !ready => {
                            // Nothing came through in time: a proxy holds the stream back.
                            tracing::info!("the event stream does not get through; polling");
                            (polling, polling_since, need_ready) = (true, rt::monotonic_ms(), true);
                            again = true;
                            if let Some(inner) = client.upgrade()
                                && !says_polling
                            {
                                says_polling = true;
                                inner.post(Input::Polling(true));
                            }
                            break;
                        }
                        Either::Right(_) => {
                            held_back = held_back_after(true);
                            continue;
                        }
                    };
                    let Some(inner) = client.upgrade() else {
                        return;
                    };
                    match event {
                        Some(Ok(event)) => {
                            if let Some(id) = event.id.as_deref().and_then(|id| id.parse().ok()) {
                                last_event_id = Some(id);
                            }
                            delivered += 1;
                            if handle(&inner, event) == Some(EventKind::Ready) {
                                ready = true;
                                need_ready = false;
                                backoff.reset();
                                if !polling && says_polling {
                                    // The stream gets through again.
                                    says_polling = false;
                                    inner.post(Input::Polling(false));
                                }
                            }
                        }
                        Some(Err(TransportError::Reconnecting)) => inner.post(Input::StreamFailed),
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
            return;
        };
        if again {
            // An answer that ends empty long before a poll's wait is over (a proxy that cuts
            // quiet requests short): do not ask again in a tight loop.
            if delivered == 0 && rt::monotonic_ms().saturating_sub(asked) < 1000 && polling {
                drop(inner);
                let delay = rt::sleep(backoff.next());
                if let Either::Right(_) = select(Box::pin(delay), &mut shutdown).await {
                    return;
                }
            }
            continue;
        }
        need_ready = true;
        if ready {
            // It was open: reconnect at once.
            inner.post(Input::StreamLost);
            continue;
        }
        // It never opened (the browser's `EventSource` reports a refused token this way too):
        // try a new token, after a pause.
        token = None;
        inner.post(Input::StreamFailed);
        drop(inner);
        let delay = rt::sleep(backoff.next());
        if let Either::Right(_) = select(select(Box::pin(delay), kicks.next()), &mut shutdown).await
        {
            return;
        }
    }
}

/// Resolves when a stream that has said nothing yet counts as held back; never when polling
/// (or in the browser).
fn held_back_after(polling: bool) -> TransportFuture<'static, ()> {
    #[cfg(not(target_arch = "wasm32"))]
    if !polling {
        return Box::pin(rt::sleep(READY_TIMEOUT));
    }
    let _ = polling;
    Box::pin(std::future::pending())
}

/// Gets a token if the one at hand will not do, then opens `endpoint`. The time a new stream
/// has to say `ready` runs from its request (a proxy that holds the stream back may hold its
/// head back too), not from the token's: the answer is `None` if it runs out first, and the
/// timer goes on for the rest of the wait.
async fn connect(
    inner: &Shared,
    token: &mut Option<TokenGrant>,
    last_event_id: Option<u64>,
    endpoint: &str,
    polling: bool,
) -> (
    Option<Result<EventStream, TransportError>>,
    TransportFuture<'static, ()>,
) {
    let current = match token.take() {
        Some(grant) if grant.expires_at > rt::unix_now() + TOKEN_MARGIN => grant,
        _ => match new_token(inner).await {
            Ok(grant) => grant,
            Err(e) => return (Some(Err(e)), held_back_after(true)),
        },
    };
    inner.post(Input::ServerLimit(
        usize::try_from(current.max_packets).unwrap_or(usize::MAX),
    ));
    // Kept before the stream is awaited, in case the wait is given up.
    let secret = current.token.clone();
    *token = Some(current);
    let mut held_back = held_back_after(polling);
    let opening = inner
        .transport
        .events(&inner.url(endpoint), &secret, last_event_id);
    let opened = match select(opening, &mut held_back).await {
        Either::Left((opened, _)) => Some(opened),
        Either::Right(_) => None,
    };
    (opened, held_back)
}

async fn new_token(inner: &Shared) -> Result<TokenGrant, TransportError> {
    let request = TokenRequest {
        clients: vec![inner.id],
    };
    let body = postcard::to_stdvec(&request).expect("a token request always encodes");
    let answer = inner.transport.post(&inner.url("token"), body).await?;
    postcard::from_bytes(&answer)
        .map_err(|e| TransportError::Malformed(format!("the token grant does not decode: {e}")))
}

/// Acts on one event; returns its kind.
fn handle(inner: &Shared, event: SseEvent) -> Option<EventKind> {
    let kind = EventKind::from_name(event.event.as_deref()?)?;
    let data = match URL_SAFE_NO_PAD.decode(event.data.trim()) {
        Ok(data) => data,
        Err(e) => {
            tracing::warn!("an event's data is not base64url: {e}");
            return Some(kind);
        }
    };
    match kind {
        EventKind::Results => match decode_client_results(&data, usize::MAX) {
            Ok((client, results)) if client == inner.id => inner.post(Input::Results(results)),
            Ok((client, _)) => tracing::warn!(%client, "results of another client on this stream"),
            Err(e) => tracing::warn!("undecodable results event: {e}"),
        },
        EventKind::Broadcast => match postcard::from_bytes::<Broadcast>(&data) {
            // This client's own call: its listeners heard of it with the result.
            Ok(broadcast) if broadcast.origin == Some(inner.id) => {}
            Ok(broadcast) => {
                inner
                    .listeners
                    .notify(broadcast.handler, broadcast.action, &broadcast.value)
            }
            Err(e) => tracing::warn!("undecodable broadcast event: {e}"),
        },
        // Results missed before a reset are asked for again when the stream is ready.
        EventKind::Reset => {
            tracing::debug!("event stream reset: events may have been missed");
            inner.watchers.reset();
        }
        EventKind::Ready => inner.post(Input::StreamReady),
    }
    Some(kind)
}
