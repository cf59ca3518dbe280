//! The browser transport: `fetch` for batches and polls, `EventSource` for the event stream.
//!
//! Network errors on the event stream are retried by the `EventSource` itself, which resumes
//! with `Last-Event-ID`; each retry shows as [`TransportError::Reconnecting`]. Only when it
//! gives up (an error status, such as `401` for an expired token) does the stream end, and the
//! client reconnects with a new token. A poll (`GET /poll`) is one `fetch`, whose answer's
//! events make a stream that ends with it.

use std::{
    convert::Infallible,
    io::Cursor,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures_channel::mpsc;
use futures_util::{
    Stream, StreamExt, TryStreamExt,
    future::{Either, select},
    stream,
};
use gloo_net::http::Request;
use sse_stream::SseByteStream;
use wasm_bindgen::{JsCast, closure::Closure};
use web_sys::{AbortController, AbortSignal, MessageEvent, RequestCredentials};

use super::{EventStream, Method, SseEvent, Transport, TransportError, TransportFuture};

/// The events a CRUDP stream carries.
const KINDS: [&str; 4] = ["results", "broadcast", "reset", "ready"];
/// The least time a poll's answer has to begin: the server holds a quiet poll for 25 s.
const POLL_HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends batches with `fetch` and listens with `EventSource`; the default transport in the
/// browser.
#[derive(Debug, Clone, Copy)]
pub struct FetchTransport {
    credentials: bool,
    timeout: Duration,
}

impl Default for FetchTransport {
    fn default() -> Self {
        Self {
            credentials: false,
            timeout: super::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl FetchTransport {
    /// A transport that sends cookies only to its own origin (the browser's default).
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport that sends cookies to a server on another origin too (`credentials:
    /// include`); the server must then allow that origin with credentials in its CORS set-up.
    pub fn with_credentials() -> Self {
        Self {
            credentials: true,
            ..Self::default()
        }
    }

    /// How long a batch's `fetch` (and a token's) may take, its answer included, before the
    /// client gives up on it and sends the batch again: a connection that died without a word
    /// would otherwise hold the client's batch for ever. Where the browser lacks
    /// `AbortSignal.timeout`, there is no limit. A poll's answer (where the event stream does
    /// not get through) must begin within this time too, or a minute if that is longer.
    /// Default: 2 minutes, as the native transport's.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// A signal that aborts a request after the timeout, where the browser can make one.
    fn deadline(&self) -> Option<AbortSignal> {
        let class = js_sys::Reflect::get(&js_sys::global(), &"AbortSignal".into()).ok()?;
        let timeout = js_sys::Reflect::get(&class, &"timeout".into()).ok()?;
        if !timeout.is_function() {
            return None;
        }
        let millis = u32::try_from(self.timeout.as_millis()).unwrap_or(u32::MAX);
        Some(AbortSignal::timeout_with_u32(millis))
    }

    fn credentials(&self) -> RequestCredentials {
        if self.credentials {
            RequestCredentials::Include
        } else {
            RequestCredentials::SameOrigin
        }
    }
}

fn unreachable(e: gloo_net::Error) -> TransportError {
    TransportError::Unreachable(e.to_string())
}

/// The body of a `2xx` answer, or the error status.
async fn body(request: Result<Request, gloo_net::Error>) -> Result<Vec<u8>, TransportError> {
    let response = request
        .map_err(unreachable)?
        .send()
        .await
        .map_err(unreachable)?;
    read(response).await
}

/// The body of a `2xx` answer, or the error status, once its head came.
async fn read(response: gloo_net::http::Response) -> Result<Vec<u8>, TransportError> {
    if response.ok() {
        return response.binary().await.map_err(unreachable);
    }
    Err(TransportError::Status {
        status: response.status(),
        message: response.text().await.unwrap_or_default(),
    })
}

impl Transport for FetchTransport {
    fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> TransportFuture<'_, Result<Vec<u8>, TransportError>> {
        let mut request = Request::post(url).header("content-type", "application/octet-stream");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .credentials(self.credentials())
            .abort_signal(self.deadline().as_ref())
            .body(js_sys::Uint8Array::from(&body[..]));
        Box::pin(self::body(request))
    }

    fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> TransportFuture<'_, Result<Vec<u8>, TransportError>> {
        let mut request = match method {
            Method::Get => Request::get(url),
            Method::Delete => Request::delete(url),
            Method::Put => Request::put(url).header("content-type", "application/octet-stream"),
        };
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request.credentials(self.credentials());
        let request = match method {
            Method::Put => request.body(js_sys::Uint8Array::from(&body[..])),
            _ => request.build(),
        };
        Box::pin(self::body(request))
    }

    fn events(
        &self,
        url: &str,
        token: &str,
        last_event_id: Option<u64>,
    ) -> TransportFuture<'_, Result<EventStream, TransportError>> {
        // `EventSource` cannot send headers: the token and the first connection's last event ID
        // go in the query; its own reconnections send `Last-Event-ID`, which the server prefers.
        let (path, _) = url.split_once('?').unwrap_or((url, ""));
        let polling = path.ends_with("/poll");
        let join = if url.contains('?') { '&' } else { '?' };
        let url = match last_event_id {
            Some(id) => format!("{url}{join}token={token}&lastEventId={id}"),
            None => format!("{url}{join}token={token}"),
        };
        if polling {
            // A poll's answer may take 25 s to begin (all of it, behind a proxy that buffers
            // it): one that has not begun after the request timeout (a server gone without a
            // word), or after a minute if that is shorter, is given up and its `fetch`
            // aborted. Its body, once it comes, is read to its end, however long a replay
            // takes over a slow link.
            let abort = AbortController::new().ok();
            let request = Request::get(&url)
                .header("accept", "text/event-stream")
                .credentials(self.credentials())
                .abort_signal(abort.as_ref().map(AbortController::signal).as_ref())
                .build();
            let wait = self.timeout.max(POLL_HEAD_TIMEOUT);
            return Box::pin(async move {
                let sent = Box::pin(request.map_err(unreachable)?.send());
                let response = match select(sent, Box::pin(gloo_timers::future::sleep(wait))).await
                {
                    Either::Left((response, _)) => response.map_err(unreachable)?,
                    Either::Right(_) => {
                        if let Some(abort) = abort {
                            abort.abort();
                        }
                        return Err(TransportError::Unreachable(format!(
                            "the poll's answer did not begin within {wait:?}"
                        )));
                    }
                };
                Ok(parse(read(response).await?))
            });
        }
        let opened = Events::open(&url, self.credentials);
        Box::pin(async move { opened })
    }
}

/// The events of a poll's answer.
fn parse(answer: Vec<u8>) -> EventStream {
    let chunks = stream::once(async move { Ok::<_, Infallible>(Cursor::new(answer)) });
    let events = SseByteStream::new(chunks)
        .map_err(|e| TransportError::Malformed(e.to_string()))
        .try_filter_map(|sse| async move {
            // Comments (the heartbeat) and `retry:` hints carry no event.
            Ok(sse.data.map(|data| SseEvent {
                id: sse.id,
                event: sse.event,
                data,
            }))
        });
    Box::pin(events)
}

/// A listener for one kind of event.
type Listener = (&'static str, Closure<dyn FnMut(MessageEvent)>);

/// An `EventSource` and its listeners, removed and closed when this is dropped.
struct Events {
    source: web_sys::EventSource,
    listeners: Vec<Listener>,
    on_error: Closure<dyn FnMut(web_sys::Event)>,
    received: mpsc::UnboundedReceiver<Result<SseEvent, TransportError>>,
}

impl Events {
    fn open(url: &str, credentials: bool) -> Result<EventStream, TransportError> {
        let init = web_sys::EventSourceInit::new();
        init.set_with_credentials(credentials);
        let source = web_sys::EventSource::new_with_event_source_init_dict(url, &init)
            .map_err(|e| TransportError::Unreachable(format!("{e:?}")))?;
        let (sender, received) = mpsc::unbounded();
        let listeners = KINDS
            .into_iter()
            .map(|kind| {
                let sender = sender.clone();
                let listener = Closure::<dyn FnMut(MessageEvent)>::new(move |m: MessageEvent| {
                    let _ = sender.unbounded_send(Ok(SseEvent {
                        id: Some(m.last_event_id()).filter(|id| !id.is_empty()),
                        event: Some(kind.to_owned()),
                        data: m.data().as_string().unwrap_or_default(),
                    }));
                });
                let _ = source
                    .add_event_listener_with_callback(kind, listener.as_ref().unchecked_ref());
                (kind, listener)
            })
            .collect();
        // An `error` event means the connection failed: the `EventSource` retries by itself
        // unless it is closed for good.
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new({
            let source = source.clone();
            move |_: web_sys::Event| {
                let error = if source.ready_state() == web_sys::EventSource::CLOSED {
                    TransportError::Unreachable("the event stream closed".into())
                } else {
                    TransportError::Reconnecting
                };
                let _ = sender.unbounded_send(Err(error));
            }
        });
        let _ = source.add_event_listener_with_callback("error", on_error.as_ref().unchecked_ref());
        Ok(Box::pin(Events {
            source,
            listeners,
            on_error,
            received,
        }))
    }
}

impl Stream for Events {
    type Item = Result<SseEvent, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.received.poll_next_unpin(cx)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.source.close();
        for (kind, listener) in &self.listeners {
            let _ = self
                .source
                .remove_event_listener_with_callback(kind, listener.as_ref().unchecked_ref());
        }
        let _ = self
            .source
            .remove_event_listener_with_callback("error", self.on_error.as_ref().unchecked_ref());
    }
}
