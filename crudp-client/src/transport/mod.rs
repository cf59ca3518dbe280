//! How batches reach the server: the [`Transport`] seam and its implementations.

#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
mod native;

use std::{future::Future, pin::Pin};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use crudp_runtime::{
    ClientId,
    protocol::{Broadcast, EventKind, Results, decode_client_results},
};
use futures_util::Stream;

#[cfg(target_arch = "wasm32")]
mod wasm;

#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
pub use native::{DEFAULT_STREAM_SILENCE, ReqwestTransport};
#[cfg(target_arch = "wasm32")]
pub use wasm::FetchTransport;

/// The default of `request_timeout` ([`ReqwestTransport`]'s, and `FetchTransport`'s in the
/// browser): two minutes. A `POST /call` batch whose calls together run longer is sent again
/// and answered from the server's records once they ran: raise it for such batches.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A boxed future; `Send` on native targets, where transports run on a thread pool.
#[cfg(not(target_arch = "wasm32"))]
pub type TransportFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A boxed future; `Send` on native targets, where transports run on a thread pool.
#[cfg(target_arch = "wasm32")]
pub type TransportFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// `Send + Sync` on native targets, nothing on wasm32 where everything runs on one thread.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSendSync: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync + ?Sized> MaybeSendSync for T {}
/// `Send + Sync` on native targets, nothing on wasm32 where everything runs on one thread.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSendSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSendSync for T {}

/// A stream of server-sent events; `Send` on native targets.
#[cfg(not(target_arch = "wasm32"))]
pub type EventStream = Pin<Box<dyn Stream<Item = Result<SseEvent, TransportError>> + Send>>;
/// A stream of server-sent events; `Send` on native targets.
#[cfg(target_arch = "wasm32")]
pub type EventStream = Pin<Box<dyn Stream<Item = Result<SseEvent, TransportError>>>>;

/// One event of an SSE stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id:` field.
    pub id: Option<String>,
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` field.
    pub data: String,
}

/// An event of the CRUDP stream, decoded: [`SseEvent::decode`].
#[derive(Debug, Clone, PartialEq)]
pub enum DecodedEvent {
    /// The results of a batch of `client`.
    Results(ClientId, Results),
    /// Another call's result, published to this stream's user, role or everyone.
    Broadcast(Broadcast),
    /// Events may have been missed: the stream restarts from now.
    Reset,
    /// The stream is open and caught up.
    Ready,
}

impl SseEvent {
    /// Decodes the event as the client does: its kind from `event:`, its payload from `data:`
    /// (base64url of postcard). `None` for an event of a kind CRUDP does not send (the client
    /// ignores it); an error says why a CRUDP event does not decode.
    pub fn decode(&self) -> Option<Result<DecodedEvent, String>> {
        let kind = EventKind::from_name(self.event.as_deref()?)?;
        let data = match URL_SAFE_NO_PAD.decode(self.data.trim()) {
            Ok(data) => data,
            Err(e) => return Some(Err(format!("the event's data is not base64url: {e}"))),
        };
        Some(match kind {
            EventKind::Results => decode_client_results(&data.into(), usize::MAX)
                .map(|(client, results)| DecodedEvent::Results(client, results))
                .map_err(|e| format!("undecodable results event: {e}")),
            EventKind::Broadcast => postcard::from_bytes::<Broadcast>(&data)
                .map(DecodedEvent::Broadcast)
                .map_err(|e| format!("undecodable broadcast event: {e}")),
            EventKind::Reset => Ok(DecodedEvent::Reset),
            EventKind::Ready => Ok(DecodedEvent::Ready),
        })
    }
}

/// The method of a [`Transport::request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Method {
    /// `GET`, without a body.
    Get,
    /// `PUT`, with a body.
    Put,
    /// `DELETE`, without a body.
    Delete,
}

impl Method {
    /// The method's name, as HTTP spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// Carries postcard bodies to the server's endpoints and opens its event stream.
pub trait Transport: MaybeSendSync + 'static {
    /// POSTs `body` (`application/octet-stream`) to `url` with `headers` besides the
    /// transport's own (the client's key, in
    /// [`CLIENT_KEY_HEADER`](crudp_runtime::protocol::CLIENT_KEY_HEADER)), and returns the
    /// body of a `2xx` answer.
    fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> TransportFuture<'_, Result<Vec<u8>, TransportError>>;

    /// Sends one request of an upload (see [`crudp_runtime::files`]): `method` to `url` with
    /// `headers` besides the transport's own, and `body` (`application/octet-stream`) for a
    /// `PUT`; returns the body of a `2xx` answer. A transport that does not implement it
    /// cannot upload files: its uploads fail with status `501`.
    fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> TransportFuture<'_, Result<Vec<u8>, TransportError>> {
        let _ = (method, url, headers, body);
        Box::pin(async {
            Err(TransportError::Status {
                status: 501,
                message: "this transport does not implement `Transport::request`".into(),
            })
        })
    }

    /// Opens the SSE stream at `url` with the stream token `token` (as `Authorization: Bearer`
    /// where the platform can send headers, else as the `token` query parameter), resuming
    /// after `last_event_id` if given. The stream ends or fails when the connection does; the
    /// client then reconnects.
    fn events(
        &self,
        url: &str,
        token: &str,
        last_event_id: Option<u64>,
    ) -> TransportFuture<'_, Result<EventStream, TransportError>>;

    /// [`events`](Self::events), also sending `headers` (the application's, from
    /// [`ClientBuilder::header`](crate::ClientBuilder::header)) where the platform can, so
    /// that a server that authenticates streams sees the request's own credentials. If they
    /// hold an `Authorization` header, the stream token goes in the `token` query parameter
    /// instead. The default ignores `headers`: a browser's `EventSource` cannot send any.
    fn events_with_headers(
        &self,
        url: &str,
        token: &str,
        last_event_id: Option<u64>,
        headers: &[(&str, &str)],
    ) -> TransportFuture<'_, Result<EventStream, TransportError>> {
        let _ = headers;
        self.events(url, token, last_event_id)
    }
}

pub use crudp_runtime::TransportError;
