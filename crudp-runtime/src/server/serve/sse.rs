//! Event-stream connections answered without hyper. An open event stream is idle nearly all
//! its life, and hyper keeps a read buffer and a write buffer of 8 KiB each for every
//! connection it serves, more than the stream itself needs. So when a connection's first
//! request arrives whole in its first read and is a plain `GET` that accepts
//! `text/event-stream` (no body, no upgrade), it is answered here: the app runs as usual, and
//! its answer is written straight to the socket (chunked, with `connection: close`).
//! Everything else is hyper's, untouched: this only looks at the bytes before deciding.

use std::{
    io::{self, Write},
    net::SocketAddr,
    time::Duration,
};

use axum::{
    Router,
    body::{Body, HttpBody},
    extract::{ConnectInfo, Request},
};
use bytes::Buf;
use http::{HeaderName, HeaderValue, Method, StatusCode, Version, header, response::Parts};
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tower::ServiceExt;

use super::deadline::WriteDeadline;

/// The largest request head answered here; a larger one is hyper's.
const MAX_HEAD: usize = 8 * 1024;
/// The most headers a request answered here may have; one with more is hyper's.
const MAX_HEADERS: usize = 64;

/// What a connection opens with.
pub(super) enum Opening {
    /// An event-stream request, taken off the socket: [`answer`] it.
    EventStream(Box<Request>),
    /// Anything else, left on the socket for hyper.
    Other,
    /// Nothing came within the time limit, or the peer went: close the connection.
    Gone,
}

/// Looks at the first request without taking it off the socket, and takes it if it is an
/// event-stream request. Waits `within` at most for the first bytes.
pub(super) async fn opening(stream: &mut TcpStream, peer: SocketAddr, within: Duration) -> Opening {
    let first = async {
        // The buffer only once there is something to read: a connection that sends nothing
        // holds none of it while it waits.
        stream.readable().await?;
        let mut head = vec![0; MAX_HEAD];
        let read = stream.peek(&mut head).await?;
        Ok::<_, io::Error>((head, read))
    };
    let (mut head, read) = match tokio::time::timeout(within, first).await {
        Ok(Ok((head, read))) if read > 0 => (head, read),
        _ => return Opening::Gone,
    };
    let Some((mut request, length)) = event_stream_request(&head[..read]) else {
        return Opening::Other;
    };
    // Already received: this does not wait.
    if stream.read_exact(&mut head[..length]).await.is_err() {
        return Opening::Gone;
    }
    request.extensions_mut().insert(ConnectInfo(peer));
    Opening::EventStream(Box::new(request))
}

/// The request in `bytes` and the length of its head, if they hold a whole head of a request
/// answered here.
fn event_stream_request(bytes: &[u8]) -> Option<(Request, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(length) = head.parse(bytes).ok()? else {
        return None;
    };
    if head.method != Some("GET") || head.version != Some(1) {
        return None;
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(head.path?)
        .version(Version::HTTP_11);
    let mut accepts_events = false;
    for field in head.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        let has = |token: &str| {
            value
                .to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains(token))
        };
        match name {
            // A body, an upgrade or an expectation: hyper's.
            header::CONTENT_LENGTH
            | header::TRANSFER_ENCODING
            | header::UPGRADE
            | header::EXPECT => {
                return None;
            }
            header::CONNECTION if has("upgrade") => return None,
            header::ACCEPT if has("text/event-stream") => accepts_events = true,
            _ => {}
        }
        request = request.header(name, value);
    }
    if !accepts_events {
        return None;
    }
    Some((request.body(Body::empty()).ok()?, length))
}

/// Runs `request` through `app` and writes its answer to `stream`, then closes it: when the
/// answer ends, or as soon as the peer goes.
pub(super) async fn answer(
    mut stream: WriteDeadline<TcpStream>,
    request: Box<Request>,
    app: Router,
) {
    let response = app.oneshot(*request).await.unwrap_or_else(|e| match e {});
    let (parts, body) = response.into_parts();
    let bodiless = parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let length = if bodiless {
        None
    } else {
        Some(HttpBody::size_hint(&body).exact())
    };
    if stream.write_all(&head(&parts, length)).await.is_err() {
        return;
    }
    if let Some(length) = length
        && let Err(e) = send(&mut stream, body, length.is_none()).await
    {
        tracing::debug!("event stream ended: {e}");
        return;
    }
    let _ = stream.shutdown().await;
}

/// The answer's status line and headers. `length` is `None` for an answer without a body,
/// `Some(None)` for a body of unknown length (sent chunked).
fn head(parts: &Parts, length: Option<Option<u64>>) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if matches!(
            *name,
            header::CONNECTION | header::CONTENT_LENGTH | header::TRANSFER_ENCODING
        ) {
            continue;
        }
        field(&mut head, name.as_str(), value.as_bytes());
    }
    match length {
        Some(Some(length)) => field(&mut head, "content-length", length.to_string().as_bytes()),
        Some(None) => field(&mut head, "transfer-encoding", b"chunked"),
        None => {}
    }
    if !parts.headers.contains_key(header::DATE) {
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        field(&mut head, "date", now.as_bytes());
    }
    field(&mut head, "connection", b"close");
    head.extend_from_slice(b"\r\n");
    head
}

fn field(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Writes `body` to `stream` as it comes (in chunks if `chunked`), until it ends or the peer
/// goes.
async fn send(
    stream: &mut WriteDeadline<TcpStream>,
    mut body: Body,
    chunked: bool,
) -> io::Result<()> {
    let mut ignored = 0;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            gone = peer_gone(stream.get_ref(), &mut ignored) => {
                gone?;
                return Err(io::ErrorKind::ConnectionAborted.into());
            }
        };
        let Some(frame) = frame else { break };
        // Trailers have no place in this answer.
        let Ok(data) = frame.map_err(io::Error::other)?.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            // The chunk's size line, its data (shared, not copied) and its end, in one
            // vectored write.
            let mut size = [0; 18];
            let mut line = &mut size[..];
            write!(line, "{:x}\r\n", data.len())?;
            let written = 18 - line.len();
            let mut chunk = Buf::chain(&size[..written], data).chain(&b"\r\n"[..]);
            stream.write_all_buf(&mut chunk).await?;
        } else {
            stream.write_all(&data).await?;
        }
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// The most bytes a peer may send after its event-stream request before it counts as gone.
const MAX_IGNORED: usize = 64 << 10;

/// Resolves once the peer closes the connection, or has sent more than [`MAX_IGNORED`] bytes
/// after its request (counted in `ignored`). What it sends is read and ignored: the answer to
/// an event-stream request ends its connection, so no further request (a pipelined one, a
/// stray line break) can be answered on it, but neither may it cut the stream.
async fn peer_gone(stream: &TcpStream, ignored: &mut usize) -> io::Result<()> {
    loop {
        stream.readable().await?;
        // Not kept across the wait: an idle stream holds no buffer.
        let mut buffer = [0; 512];
        match stream.try_read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => {
                *ignored += read;
                if *ignored > MAX_IGNORED {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(head: &str) -> bool {
        event_stream_request(head.as_bytes()).is_some()
    }

    #[test]
    fn only_whole_plain_event_stream_requests_are_taken() {
        let events =
            "GET /crudp/events?token=t HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n";
        let (request, length) = event_stream_request(events.as_bytes()).unwrap();
        assert_eq!(length, events.len());
        assert_eq!(request.uri().path(), "/crudp/events");
        assert_eq!(request.uri().query(), Some("token=t"));
        assert_eq!(request.headers()["host"], "a");
        assert!(taken(
            &events.replace("text/event-stream", "Text/Event-Stream, */*")
        ));

        assert!(!taken(&events[..events.len() - 2]), "a head not yet whole");
        assert!(!taken(&events.replace("GET", "POST")));
        assert!(!taken(&events.replace("HTTP/1.1", "HTTP/1.0")));
        assert!(!taken(&events.replace("text/event-stream", "text/html")));
        assert!(!taken(&events.replace("Host: a", "Content-Length: 0")));
        assert!(!taken(
            &events.replace("Host: a", "Transfer-Encoding: chunked")
        ));
        assert!(!taken(&events.replace(
            "Host: a",
            "Connection: Upgrade\r\nUpgrade: websocket"
        )));
        assert!(!taken(&events.replace("Host: a", "Expect: 100-continue")));
        assert!(!taken(&events.replace("Host: a", "Bad Name: x")));
    }

    #[test]
    fn an_answer_says_how_its_body_ends_and_that_the_connection_closes() {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        let chunked = String::from_utf8(head(&parts, Some(None))).unwrap();
        assert!(chunked.starts_with("HTTP/1.1 200 OK\r\n"), "{chunked}");
        assert!(
            chunked.contains("content-type: text/event-stream\r\n"),
            "{chunked}"
        );
        assert!(
            chunked.contains("transfer-encoding: chunked\r\n"),
            "{chunked}"
        );
        assert!(chunked.contains("\r\ndate: "), "{chunked}");
        assert!(chunked.ends_with("connection: close\r\n\r\n"), "{chunked}");
        assert!(!chunked.contains("keep-alive"), "{chunked}");

        parts.status = StatusCode::UNAUTHORIZED;
        let sized = String::from_utf8(head(&parts, Some(Some(12)))).unwrap();
        assert!(
            sized.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{sized}"
        );
        assert!(sized.contains("content-length: 12\r\n"), "{sized}");
        assert!(!sized.contains("transfer-encoding"), "{sized}");
    }
}
