//! The browser transport: `fetch` and `EventSource`, through gloo-net.
//!
//! Network errors on the event stream are retried by the `EventSource` itself, which resumes
//! with `Last-Event-ID`; only when it gives up (an error status, such as `401` for an expired
//! token) does the stream end, and the client reconnects with a new token.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::{Stream, StreamExt, stream::SelectAll};
use gloo_net::{
    eventsource::{
        State,
        futures::{EventSource, EventSourceSubscription},
    },
    http::Request,
};
use web_sys::RequestCredentials;

use super::{EventStream, SseEvent, Transport, TransportError, TransportFuture};

/// Sends batches with `fetch` and listens with `EventSource`; the default transport in the
/// browser.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchTransport {
    credentials: bool,
}

impl FetchTransport {
    /// A transport that sends cookies only to its own origin (the browser's default).
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport that sends cookies to a server on another origin too (`credentials:
    /// include`); the server must then allow that origin with credentials in its CORS set-up.
    pub fn with_credentials() -> Self {
        Self { credentials: true }
    }
}

impl Transport for FetchTransport {
    fn post(
        &self,
        url: &str,
        body: Vec<u8>,
    ) -> TransportFuture<'_, Result<Vec<u8>, TransportError>> {
        let mut request = Request::post(url).header("content-type", "application/octet-stream");
        if self.credentials {
            request = request.credentials(RequestCredentials::Include);
        }
        let request = request.body(js_sys::Uint8Array::from(&body[..]));
        Box::pin(async move {
            let unreachable = |e: gloo_net::Error| TransportError::Unreachable(e.to_string());
            let response = request
                .map_err(unreachable)?
                .send()
                .await
                .map_err(unreachable)?;
            if response.ok() {
                return response.binary().await.map_err(unreachable);
            }
            Err(TransportError::Status {
                status: response.status(),
                message: response.text().await.unwrap_or_default(),
            })
        })
    }

    fn events(
        &self,
        url: &str,
        token: &str,
        last_event_id: Option<u64>,
    ) -> TransportFuture<'_, Result<EventStream, TransportError>> {
        // `EventSource` cannot send headers: the token and the first connection's last event ID
        // go in the query; its own reconnections send `Last-Event-ID`, which the server prefers.
        let join = if url.contains('?') { '&' } else { '?' };
        let url = match last_event_id {
            Some(id) => format!("{url}{join}token={token}&lastEventId={id}"),
            None => format!("{url}{join}token={token}"),
        };
        let opened = (|| {
            let mut source =
                EventSource::new(&url).map_err(|e| TransportError::Unreachable(e.to_string()))?;
            let mut events = SelectAll::new();
            for kind in ["results", "broadcast", "reset", "ready"] {
                let subscription = source
                    .subscribe(kind)
                    .map_err(|e| TransportError::Unreachable(e.to_string()))?;
                events.push(subscription);
            }
            let ticks = gloo_timers::future::IntervalStream::new(1000);
            Ok(Box::pin(Events {
                source,
                events,
                ticks,
            }) as EventStream)
        })();
        Box::pin(async move { opened })
    }
}

/// The subscriptions of one `EventSource`, which is closed when this is dropped.
struct Events {
    source: EventSource,
    events: SelectAll<EventSourceSubscription>,
    /// Once a second, whether the `EventSource` is reconnecting by itself, which it does not
    /// report otherwise.
    ticks: gloo_timers::future::IntervalStream,
}

impl Stream for Events {
    type Item = Result<SseEvent, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        while let Poll::Ready(Some(())) = self.ticks.poll_next_unpin(cx) {
            if self.source.state() == State::Connecting {
                return Poll::Ready(Some(Err(TransportError::Reconnecting)));
            }
        }
        self.events.poll_next_unpin(cx).map(|item| {
            item.map(|event| match event {
                Ok((kind, message)) => Ok(SseEvent {
                    id: Some(message.last_event_id()).filter(|id| !id.is_empty()),
                    event: Some(kind),
                    data: message.data().as_string().unwrap_or_default(),
                }),
                Err(e) => Err(TransportError::Unreachable(format!(
                    "{e}: the event stream closed"
                ))),
            })
        })
    }
}
