//! The native transport: reqwest over a keep-alive connection pool, and a streaming SSE parser.

use std::time::Duration;

use futures_util::{Stream, StreamExt, TryStreamExt};
use sse_stream::SseByteStream;

use super::{EventStream, Method, SseEvent, Transport, TransportError, TransportFuture};

/// Sends batches with [`reqwest`]; the default transport of [`Client::new`](crate::Client::new)
/// on native targets.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    http: reqwest::Client,
    /// For event streams. Of [`new`](Self::new), a client that keeps no idle connection, so
    /// that each stream opens a connection of its own: `crudp::server::serve` then answers it
    /// with a fraction of the memory of a stream on a reused connection.
    streams: reqwest::Client,
    /// How long an open event stream may say nothing, not even its heartbeat, before it is
    /// taken for dead: see [`stream_silence`](Self::stream_silence).
    silence: Duration,
    /// How long a batch's request may take, answer included: see
    /// [`request_timeout`](Self::request_timeout).
    timeout: Duration,
    /// The reqwest client is the application's ([`with_client`](Self::with_client)): its
    /// default headers may hold an `Authorization` of the application's.
    shared: bool,
}

/// The default of [`ReqwestTransport::stream_silence`]: three of the server's default
/// heartbeats.
pub const DEFAULT_STREAM_SILENCE: Duration = Duration::from_secs(90);

impl Default for ReqwestTransport {
    fn default() -> Self {
        let streams = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_default();
        Self {
            http: reqwest::Client::new(),
            streams,
            silence: DEFAULT_STREAM_SILENCE,
            timeout: super::DEFAULT_REQUEST_TIMEOUT,
            shared: false,
        }
    }
}

impl ReqwestTransport {
    /// A transport with its own connection pool; each event stream opens a connection of its
    /// own.
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport that shares an existing reqwest client: its pool, default headers (for
    /// the server's authenticator), proxies and TLS set-up. Its event streams go through that
    /// pool too, so they may reuse a connection that served other requests, and carry their
    /// stream token in the query, leaving an `Authorization` header among the defaults to the
    /// application.
    pub fn with_client(http: reqwest::Client) -> Self {
        Self {
            streams: http.clone(),
            http,
            silence: DEFAULT_STREAM_SILENCE,
            timeout: super::DEFAULT_REQUEST_TIMEOUT,
            shared: true,
        }
    }

    /// How long a batch's `POST` (and a token's) may take, its answer included, before the
    /// client gives up on it and sends the batch again on another connection: a connection
    /// that died without a word (a proxy that stopped passing it on, a peer gone without a
    /// reset) would otherwise hold the client's batch for ever. The server answers a batch
    /// sent again from its records, never running a call twice; a `/call` batch whose calls
    /// together run longer than this is answered so once they ran (in [`Mode::Call`], raise
    /// it above the longest batch). It replaces a timeout of a client given to
    /// [`with_client`](Self::with_client). Uploads have no such limit. At least a millisecond.
    /// Default: [`DEFAULT_REQUEST_TIMEOUT`](super::DEFAULT_REQUEST_TIMEOUT), 2 minutes.
    ///
    /// [`Mode::Call`]: crate::Mode::Call
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long an event stream may say nothing, not even the server's `: ping` heartbeat,
    /// before the client takes it for dead and opens another (resuming where it was): a proxy
    /// that stops passing the stream on while it keeps the connection open would otherwise
    /// hold the client for ever. A stream (or a poll) whose answer does not even begin within
    /// that time counts as one that could not open. Keep it above the server's `heartbeat`, and
    /// above 25 s, the longest a poll (`GET /poll`, behind a proxy that buffers streams)
    /// waits in silence. Default: [`DEFAULT_STREAM_SILENCE`], 90 s.
    pub fn stream_silence(mut self, silence: Duration) -> Self {
        self.silence = silence;
        self
    }
}

/// `events` (the stream's bytes), ended with an error once nothing comes for `silence`.
fn ended_by_silence<T>(
    events: impl Stream<Item = Result<T, TransportError>> + Send + 'static,
    silence: Duration,
) -> impl Stream<Item = Result<T, TransportError>> + Send + 'static
where
    T: Send + 'static,
{
    futures_util::stream::unfold(Some(Box::pin(events)), move |events| async move {
        let mut events = events?;
        match tokio::time::timeout(silence, events.next()).await {
            Ok(Some(item)) => Some((item, Some(events))),
            Ok(None) => None,
            Err(_) => Some((
                Err(TransportError::Unreachable(format!(
                    "the event stream said nothing for {silence:?}, not even its heartbeat"
                ))),
                None,
            )),
        }
    })
}

fn unreachable(e: reqwest::Error) -> TransportError {
    TransportError::Unreachable(e.without_url().to_string())
}

async fn check(response: reqwest::Response) -> Result<reqwest::Response, TransportError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.bytes().await.map_err(unreachable)?;
    Err(TransportError::Status {
        status: status.as_u16(),
        message: String::from_utf8_lossy(&body).into_owned(),
    })
}

impl Transport for ReqwestTransport {
    fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> TransportFuture<'_, Result<Vec<u8>, TransportError>> {
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .timeout(self.timeout)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Box::pin(async move {
            let response = check(request.send().await.map_err(unreachable)?).await?;
            Ok(response.bytes().await.map_err(unreachable)?.into())
        })
    }

    fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> TransportFuture<'_, Result<Vec<u8>, TransportError>> {
        let mut request = match method {
            Method::Get => self.http.get(url),
            Method::Delete => self.http.delete(url),
            Method::Put => self
                .http
                .put(url)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Box::pin(async move {
            let response = check(request.send().await.map_err(unreachable)?).await?;
            Ok(response.bytes().await.map_err(unreachable)?.into())
        })
    }

    fn events(
        &self,
        url: &str,
        token: &str,
        last_event_id: Option<u64>,
    ) -> TransportFuture<'_, Result<EventStream, TransportError>> {
        self.events_with_headers(url, token, last_event_id, &[])
    }

    fn events_with_headers(
        &self,
        url: &str,
        token: &str,
        last_event_id: Option<u64>,
        headers: &[(&str, &str)],
    ) -> TransportFuture<'_, Result<EventStream, TransportError>> {
        // The application's `Authorization` header names the user (one of its own, or maybe
        // one among its reqwest client's defaults); the token (URL-safe) then goes in the query.
        let request = if self.shared || headers.iter().any(|(name, _)| *name == "authorization") {
            let join = if url.contains('?') { '&' } else { '?' };
            self.streams.get(format!("{url}{join}token={token}"))
        } else {
            self.streams.get(url).bearer_auth(token)
        };
        let mut request = request.header(reqwest::header::ACCEPT, "text/event-stream");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let silence = self.silence;
        Box::pin(async move {
            // Its head (and an error's body) within the silence allowed, too.
            let opened = async { check(request.send().await.map_err(unreachable)?).await };
            let Ok(response) = tokio::time::timeout(silence, opened).await else {
                return Err(TransportError::Unreachable(format!(
                    "the event stream's answer did not begin within {silence:?}"
                )));
            };
            let response = response?;
            // Silence is timed on the bytes: the parser yields nothing for a comment, so the
            // heartbeat would not count on the events.
            let bytes = ended_by_silence(response.bytes_stream().map_err(unreachable), silence);
            let events = SseByteStream::new(bytes).map_err(|e| match e {
                sse_stream::Error::Body(e) => match e.downcast::<TransportError>() {
                    Ok(e) => *e,
                    Err(e) => TransportError::Unreachable(e.to_string()),
                },
                e => TransportError::Unreachable(e.to_string()),
            });
            let events = events.filter_map(|event| async move {
                match event {
                    // `retry:` hints, and events without data, carry nothing.
                    Ok(sse) if sse.data.is_none() => None,
                    Ok(sse) => Some(Ok(SseEvent {
                        id: sse.id,
                        event: sse.event,
                        data: sse.data.unwrap_or_default(),
                    })),
                    Err(e) => Some(Err(e)),
                }
            });
            Ok(Box::pin(events) as EventStream)
        })
    }
}
