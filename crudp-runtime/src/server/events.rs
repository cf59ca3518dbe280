//! `GET /events`: the Server-Sent Events stream of one connection.
//!
//! Frames are written by hand (see `hub::frame`): each event is framed once and its bytes are
//! shared by every connection it reaches.

use std::{collections::VecDeque, net::SocketAddr, time::Duration};

use axum::{
    body::Body,
    extract::{ConnectInfo, Query, Request, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::stream;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{
    Crudp, Peer,
    reply::{after, refuse, unavailable, unix_now},
    slots::{Full, Slot},
};
use crate::{
    auth::{Claims, TokenError},
    context::User,
    hub::{Frame, HubError, PING, Start, Subscriber, event_frame, retry_frame},
    protocol::{EventKind, Position},
};

#[derive(Deserialize)]
pub(super) struct EventsQuery {
    token: Option<String>,
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
    /// With a poll: say `ready` (the client is not sure it is connected).
    #[serde(default)]
    ready: bool,
}

pub(super) async fn events(
    State(crudp): State<Crudp>,
    Query(query): Query<EventsQuery>,
    request: Request,
) -> Response {
    open(crudp, query, request.into_parts().0, false).await
}

/// `GET /poll`: the same events as `GET /events`, for clients whose stream cannot get through
/// (a proxy that buffers `text/event-stream`): the answer ends after the missed events, or
/// after the first new one, or after [`POLL_WAIT`] without any. `ready` comes only with the
/// first poll (no `lastEventId`), after a `reset`, or when asked for (`ready=true`).
pub(super) async fn poll(
    State(crudp): State<Crudp>,
    Query(query): Query<EventsQuery>,
    request: Request,
) -> Response {
    open(crudp, query, request.into_parts().0, true).await
}

/// Checks that the request's own credentials, as the authenticator reads them, are still the
/// token's user's: a user who signed out (the authenticator refuses the request), signed in
/// as someone else or changed role gets `401`, and its client a new token or none. A request
/// the authenticator lets in as anonymous carries no session (an `EventSource` of another
/// origin, say): the token alone vouches for it.
async fn same_user(crudp: &Crudp, parts: &Parts, claims: &Claims) -> Result<(), Response> {
    let refused = |why: String| {
        refuse(
            StatusCode::UNAUTHORIZED,
            format!("{why}; get a new token from `POST /token`"),
        )
    };
    match crudp.shared.authenticator.authenticate(parts).await {
        Err(e) => Err(refused(format!("the request is not signed in ({e})"))),
        Ok(user) if user.id == claims.user && user.role == claims.role => Ok(()),
        Ok(user) if user.is_anonymous() => Ok(()),
        Ok(_) => Err(refused(
            "the token is for another user or role than the request's".into(),
        )),
    }
}

/// How long a poll waits for a new event: below the 30 to 60 s after which proxies commonly
/// give up on a quiet request.
pub(super) const POLL_WAIT: Duration = Duration::from_secs(25);

async fn open(crudp: Crudp, query: EventsQuery, parts: Parts, poll: bool) -> Response {
    let headers = &parts.headers;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme's name is case-insensitive (RFC 9110).
        .and_then(|v| {
            v.get(..7)
                .filter(|s| s.eq_ignore_ascii_case("bearer "))
                .map(|_| &v[7..])
        });
    let Some(token) = query.token.as_deref().or(bearer) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "an event stream needs a token: get one from `POST /token` and pass it as `?token=`"
                .into(),
        );
    };
    let claims = match crudp.shared.tokens.verify(token, unix_now()) {
        Ok(claims) => claims,
        Err(e @ (TokenError::Expired | TokenError::Forged | TokenError::Malformed)) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                format!("{e}; get a new one from `POST /token`"),
            );
        }
    };
    if crudp.shared.limits.authenticate_streams
        && let Err(refusal) = same_user(&crudp, &parts, &claims).await
    {
        return refusal;
    }
    // An ID that is not a number (not even text) is one this server never sent: the client
    // gets `reset`. An empty header says nothing (the query may).
    let last_event_id = match headers.get("last-event-id") {
        Some(header) if !header.is_empty() => Some(header.to_str().unwrap_or("not text")),
        _ => query.last_event_id.as_deref(),
    }
    .filter(|id| !id.is_empty())
    .map(|id| id.trim().parse::<u64>().unwrap_or(u64::MAX));

    let connection = Peer {
        user: User::new(claims.user, claims.role),
        clients: claims.clients,
    };
    let subscriber = Subscriber {
        user: connection.user.clone(),
        clients: connection.clients.clone(),
    };
    let limits = &crudp.shared.limits;
    let address = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let slot =
        match crudp
            .shared
            .streams
            .take(address, limits.max_streams, limits.streams_per_address)
        {
            Ok(slot) => slot,
            Err(Full::Total(most)) => {
                return unavailable(format!(
                    "the server holds {most} event streams, its most; retry shortly"
                ));
            }
            Err(Full::Address(most)) => {
                return refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("this address holds {most} event streams, its most"),
                );
            }
        };
    let subscription = match crudp.shared.hub.subscribe(subscriber, last_event_id).await {
        Ok(subscription) => subscription,
        Err(e @ HubError::TooManyConnections { .. }) => {
            return refuse(StatusCode::TOO_MANY_REQUESTS, e.to_string());
        }
        Err(e) => return unavailable(e.to_string()),
    };

    let position = postcard::to_stdvec(&Position {
        last_event_id: subscription.position,
    })
    .expect("a position always encodes");
    let mut head = VecDeque::new();
    head.push_back(retry_frame(
        crudp.shared.limits.retry_hint.as_millis() as u64
    ));
    let (reset, missed) = match subscription.start {
        Start::Reset => {
            head.push_back(event_frame(
                subscription.position,
                EventKind::Reset,
                &position,
            ));
            (true, false)
        }
        Start::Replay(frames) => {
            let missed = !frames.is_empty();
            head.extend(frames.into_iter().map(|f| f.bytes));
            (false, missed)
        }
    };
    let ready = !poll || reset || last_event_id.is_none() || query.ready;
    if ready {
        head.push_back(event_frame(
            subscription.position,
            EventKind::Ready,
            &position,
        ));
    }
    let mode = if poll {
        Mode::Poll {
            // With something to say already, the answer ends with it.
            delivered: missed || ready,
            until: Box::pin(tokio::time::sleep(POLL_WAIT)),
        }
    } else {
        if let Some(hook) = &crudp.shared.on_connect {
            hook(&connection);
        }
        Mode::Live
    };
    let heartbeat = crudp.shared.limits.heartbeat;
    let expires = after(Duration::from_secs(claims.exp.saturating_sub(unix_now())));
    let state = Stream {
        head,
        mode,
        live: subscription.live,
        ping: tokio::time::interval_at(after(heartbeat), heartbeat),
        // One timer for the stream's whole life, not one per event.
        expires: Box::pin(tokio::time::sleep_until(expires)),

        _registration: subscription.guard,
        _slot: slot,
        _presence: (!poll).then(|| Presence {
            crudp: crudp.clone(),
            connection,
        }),
    };
    let body = stream::unfold(state, |mut state| async move {
        let next = state.next().await?;
        Some((Ok::<_, std::convert::Infallible>(next), state))
    });

    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

struct Stream {
    head: VecDeque<Bytes>,
    mode: Mode,
    live: mpsc::Receiver<Frame>,
    ping: tokio::time::Interval,
    expires: std::pin::Pin<Box<tokio::time::Sleep>>,
    _registration: Box<dyn Send + Sync>,
    _slot: Slot,
    /// Streams, not polls, are presence.
    _presence: Option<Presence>,
}

enum Mode {
    /// `GET /events`: open until the client goes, the hub closes it or the token expires.
    Live,
    /// `GET /poll`: ends once it has delivered something, or at `until`.
    Poll {
        delivered: bool,
        until: std::pin::Pin<Box<tokio::time::Sleep>>,
    },
}

impl Stream {
    /// The next bytes to send, or `None` to end the stream: when the hub closed the
    /// connection (it fell behind) or its token expired. The client then reconnects with
    /// `Last-Event-ID` and misses nothing.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(bytes) = self.head.pop_front() {
            return Some(bytes);
        }
        if let Mode::Poll { delivered, until } = &mut self.mode {
            if *delivered {
                // What is already there goes too; then the answer ends (at its time, or its
                // token's, however fast events come).
                let now = tokio::time::Instant::now();
                if until.deadline() <= now || self.expires.deadline() <= now {
                    return None;
                }
                return self.live.try_recv().ok().map(|f| f.bytes);
            }
            return tokio::select! {
                biased;
                () = &mut self.expires => None,
                frame = self.live.recv() => {
                    *delivered = true;
                    frame.map(|f| f.bytes)
                }
                () = until.as_mut() => None,
            };
        }
        tokio::select! {
            biased;
            // First: a stream whose events never stop coming still ends with its token.
            () = &mut self.expires => None,
            frame = self.live.recv() => frame.map(|f| f.bytes),
            _ = self.ping.tick() => Some(Bytes::from_static(PING)),
        }
    }
}

/// Calls the disconnect hook when the stream is dropped.
struct Presence {
    crudp: Crudp,
    connection: Peer,
}

impl Drop for Presence {
    fn drop(&mut self) {
        if let Some(hook) = &self.crudp.shared.on_disconnect {
            hook(&self.connection);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::server::slots::Slots;

    /// A connection's queue with `n` events waiting.
    fn queued(n: u64) -> mpsc::Receiver<Frame> {
        let (sender, live) = mpsc::channel(8);
        for id in 0..n {
            sender
                .try_send(Frame {
                    id,
                    bytes: Bytes::from_static(b"data: x\n\n"),
                })
                .unwrap();
        }
        live
    }

    #[tokio::test]
    async fn a_stream_whose_events_never_stop_coming_still_ends_with_its_token() {
        let live = queued(8);
        let slots = Arc::new(Slots::default());
        let mut stream = Stream {
            head: VecDeque::new(),
            mode: Mode::Live,
            live,
            ping: tokio::time::interval(Duration::from_secs(3600)),
            expires: Box::pin(tokio::time::sleep(Duration::ZERO)),
            _registration: Box::new(()),
            _slot: slots.take(None, 1, 1).unwrap(),
            _presence: None,
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(stream.next().await, None, "a frame went out past the token");

        // A poll's answer too, once it has delivered something.
        let live = queued(8);
        stream.live = live;
        stream.mode = Mode::Poll {
            delivered: true,
            until: Box::pin(tokio::time::sleep(Duration::from_secs(25))),
        };
        assert_eq!(stream.next().await, None, "a poll answered past the token");
    }
}
