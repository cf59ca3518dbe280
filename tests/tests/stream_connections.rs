//! Event streams through `crudp::server::serve`: a connection that opens with an event-stream
//! request, whole in its first packet, is answered outside hyper's connection machinery; the
//! same request arriving a byte at a time goes through hyper. Both answers are well-formed
//! HTTP/1.1, and a peer that goes (or sends anything more) ends its stream at once. A peer
//! that stops reading is let go after the write timeout, on either path.

#![cfg(not(target_arch = "wasm32"))]

use std::{net::SocketAddr, time::Duration};

use crudp::{ClientId, Target};
use crudp_tests::{api::TodosServer, *};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Sends an event-stream request for `path`, in one write if `whole`, else a byte at a time.
async fn open(addr: SocketAddr, path: &str, whole: bool) -> TcpStream {
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    if whole {
        stream.write_all(head.as_bytes()).await.unwrap();
    } else {
        for byte in head.bytes() {
            stream.write_all(&[byte]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    stream
}

/// Reads until what was read holds `until`, or the connection ends (then `false`).
async fn read_until(stream: &mut TcpStream, read: &mut Vec<u8>, until: &str) -> bool {
    let within = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buffer = [0; 4096];
        loop {
            if String::from_utf8_lossy(read).contains(until) {
                return true;
            }
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => read.extend_from_slice(&buffer[..n]),
            }
        }
    });
    within.await.expect("read within 20 s")
}

/// The head and the body of an answer read whole; a chunked body is decoded, and its framing
/// checked on the way.
fn split(read: &[u8]) -> (String, String) {
    let text = String::from_utf8(read.to_vec()).unwrap();
    let (head, mut rest) = text.split_once("\r\n\r\n").expect("a whole head");
    let head = head.to_ascii_lowercase();
    if !head.contains("transfer-encoding: chunked") {
        return (head, rest.to_owned());
    }
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size, 16).expect("a chunk's size in hex");
        if size == 0 || after.len() < size + 2 {
            break;
        }
        body.push_str(&after[..size]);
        assert_eq!(&after[size..size + 2], "\r\n", "a chunk ends with CRLF");
        rest = &after[size + 2..];
    }
    (head, body)
}

#[tokio::test]
async fn event_streams_are_served_whole_or_in_pieces_and_end_when_their_peer_goes() {
    let (server, log) = Server::start_logging_presence(1).await;
    let token = server.token("ann", "admin", ClientId(1)).await;
    let path = format!("/crudp/events?token={token}");

    // Whole in one packet: answered outside hyper, and closed when it ends.
    let mut first = open(server.addr, &path, true).await;
    let mut read = Vec::new();
    assert!(read_until(&mut first, &mut read, "event: ready").await);
    let (head, body) = split(&read);
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    // What keeps proxies and caches from holding events back.
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(head.contains("x-accel-buffering: no"), "{head}");
    assert!(body.contains("event: ready"), "{body:?}");
    assert_eq!(*log.lock().unwrap(), ["+ann"]);

    // Refused (one stream per user here): a sized answer, then the connection closes.
    let mut second = open(server.addr, &path, true).await;
    let mut refused = Vec::new();
    assert!(!read_until(&mut second, &mut refused, "never sent").await);
    let (head, body) = split(&refused);
    assert!(head.starts_with("http/1.1 429 "), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    assert!(body.contains("ann"), "{body}");

    // The peer goes: its stream ends, and so does its presence.
    drop(first);
    eventually("the disconnect", || log.lock().unwrap().len() == 2).await;
    assert_eq!(*log.lock().unwrap(), ["+ann", "-ann"]);

    // A byte at a time: hyper's, kept alive, and just as good.
    let mut third = open(server.addr, &path, false).await;
    let mut read = Vec::new();
    assert!(read_until(&mut third, &mut read, "event: ready").await);
    let (head, body) = split(&read);
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert!(body.contains("event: ready"), "{body:?}");
    assert_eq!(*log.lock().unwrap(), ["+ann", "-ann", "+ann"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_arrives_chunked_and_a_peer_that_leaves_ends_the_stream() {
    let (server, log) = Server::start_logging_presence(1).await;
    let token = server.token("ann", "admin", ClientId(1)).await;
    let mut stream = open(server.addr, &format!("/crudp/events?token={token}"), true).await;
    let mut read = Vec::new();
    assert!(read_until(&mut stream, &mut read, "event: ready").await);

    TodosServer::broadcast_delete(&server.api, &7, Target::All)
        .await
        .unwrap();
    assert!(read_until(&mut stream, &mut read, "event: broadcast").await);
    assert!(read_until(&mut stream, &mut read, "\n\n\r\n").await);
    let (head, body) = split(&read);
    assert!(head.contains("connection: close"), "{head}");
    let broadcast = body
        .split("\n\n")
        .find(|event| event.contains("event: broadcast"))
        .expect("the broadcast, whole in its chunks");
    assert!(broadcast.contains("\ndata: "), "{broadcast:?}");

    // The peer is done sending: the server ends the stream and closes.
    stream.shutdown().await.unwrap();
    assert!(!read_until(&mut stream, &mut read, "never sent").await);
    eventually("the disconnect", || log.lock().unwrap().len() == 2).await;
    assert_eq!(*log.lock().unwrap(), ["+ann", "-ann"]);
}

/// `serve` with a write timeout of 300 ms, answering `GET path` with `body()`; its address.
async fn serving_with_a_short_write_timeout(
    path: &str,
    body: fn() -> axum::body::Body,
) -> SocketAddr {
    let app = axum::Router::new().route(path, axum::routing::get(move || async move { body() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = crudp::server::serve(listener, app).write_timeout(Duration::from_millis(300));
    tokio::spawn(server.into_future());
    addr
}

/// Reads `stream` until it ends (or fails), for `within` at most: whether it ended, and the
/// bytes read.
async fn read_to_end_within(stream: &mut TcpStream, within: Duration) -> (bool, usize) {
    let mut read = 0;
    let mut buffer = vec![0; 1 << 16];
    let ended = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    })
    .await
    .is_ok();
    (ended, read)
}

/// An endless answer: 64 KiB chunks for as long as the peer takes them.
fn endless() -> axum::body::Body {
    static CHUNK: [u8; 65536] = [b'x'; 65536];
    let chunks = std::iter::repeat_with(|| {
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(&CHUNK))
    });
    axum::body::Body::from_stream(futures_util::stream::iter(chunks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_let_go_after_the_write_timeout() {
    let addr = serving_with_a_short_write_timeout("/endless", endless).await;

    // Opening with an event-stream request (answered outside hyper), and any other (hyper's).
    for accept in ["text/event-stream", "*/*"] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /endless HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        // Nothing read for a while: the server's writes wait on this peer, then give up.
        tokio::time::sleep(Duration::from_secs(2)).await;
        // What was written before is there to read, then the connection ends, where an
        // endless answer to a peer that reads would go on for ever.
        let (ended, read) = read_to_end_within(&mut stream, Duration::from_secs(60)).await;
        assert!(ended, "{accept}: still answered after {read} bytes");
        assert!(read > 65536, "{accept}: only {read} bytes before the end");
    }
}

/// A trickle: 64 bytes every 200 ms, for as long as the connection lasts.
fn trickle() -> axum::body::Body {
    static CHUNK: [u8; 64] = [b'x'; 64];
    let chunks = futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Some((
            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(&CHUNK)),
            (),
        ))
    });
    axum::body::Body::from_stream(chunks)
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_takes_nothing_of_a_trickle_is_let_go_after_the_write_timeout() {
    let addr = serving_with_a_short_write_timeout("/trickle", trickle).await;

    // A peer with a small window that reads nothing: what the server sends it (as little as
    // a heartbeat) would take a minute to fill the server's own buffers, so its writes never
    // wait; the kernel is told to give up on a peer that takes nothing for the write timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET /trickle HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (ended, read) = read_to_end_within(&mut stream, Duration::from_secs(5)).await;
    assert!(ended, "still answered after {read} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_native_transport_opens_each_event_stream_on_a_connection_of_its_own() {
    let server = Server::start().await;
    // Between the client and the server, a relay that notes what each connection opens with.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = listener.local_addr().unwrap();
    let openings = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (noted, target) = (std::sync::Arc::clone(&openings), server.addr);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let noted = std::sync::Arc::clone(&noted);
            tokio::spawn(async move {
                let mut outbound = TcpStream::connect(target).await.unwrap();
                let mut first = vec![0; 8192];
                let read = inbound.read(&mut first).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&first[..read]);
                noted
                    .lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or_default().to_owned());
                if outbound.write_all(&first[..read]).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });

    let client = crudp::Client::builder(format!("http://{relay}/crudp"))
        .header("x-user", "ann:member")
        .unwrap()
        .build();
    // Its result comes over the event stream, after the token request that opens it.
    let todo = TodosClient::new(&client)
        .create("over the stream".into())
        .await
        .unwrap();
    assert_eq!(todo.title, "over the stream");
    let openings = openings.lock().unwrap().clone();
    assert!(
        openings.iter().any(|o| o.starts_with("POST /crudp/token ")),
        "{openings:?}"
    );
    assert!(
        openings.iter().any(|o| o.starts_with("GET /crudp/events")),
        "the stream reused a connection: {openings:?}"
    );
}

#[tokio::test]
async fn event_streams_past_the_cap_per_address_or_in_all_are_refused_until_one_ends() {
    for (cap, code) in [("per address", 429), ("in all", 503)] {
        let server = match code {
            429 => Server::start_with(|b| b.streams_per_address(2)).await,
            _ => Server::start_with(|b| b.max_streams(2)).await,
        };
        let path = |token: String| format!("/crudp/events?token={token}");
        let mut streams = Vec::new();
        for (user, client) in [("ann", 1), ("bob", 2)] {
            let token = server.token(user, "user", ClientId(client)).await;
            let mut stream = open(server.addr, &path(token), true).await;
            assert!(read_until(&mut stream, &mut Vec::new(), "event: ready").await);
            streams.push(stream);
        }
        let carol = path(server.token("carol", "user", ClientId(3)).await);
        let mut refused = open(server.addr, &carol, true).await;
        let mut read = Vec::new();
        assert!(!read_until(&mut refused, &mut read, "never sent").await);
        let (head, body) = split(&read);
        assert!(
            head.starts_with(&format!("http/1.1 {code} ")),
            "{cap}: {head}"
        );
        assert!(!body.is_empty(), "{cap}: the answer says why");
        // One ends: its place goes to the next.
        drop(streams.pop());
        let mut served = false;
        for _ in 0..100 {
            let mut stream = open(server.addr, &carol, true).await;
            if read_until(&mut stream, &mut Vec::new(), "event: ready").await {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(served, "{cap}: a stream is served once another ended");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_head_is_due_within_the_header_timeout_of_the_connection() {
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = crudp::server::serve(listener, app).header_timeout(Duration::from_secs(2));
    tokio::spawn(server.into_future());

    // First bytes late, the rest a byte at a time: closed when the head is due, not a whole
    // limit after the first bytes (3.8 s).
    let connected = tokio::time::Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Trickle: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_after = None;
    for byte in head {
        if slow.write_all(&[*byte]).await.is_err() {
            closed_after = Some(connected.elapsed());
            break;
        }
        let mut buffer = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buffer)).await
        {
            closed_after = Some(connected.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the trickling connection is closed");
    assert!(
        closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}"
    );

    // A connection whose first head came in time is served past that time (and its next
    // head is due a limit after the answer before it).
    let mut kept = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    kept.write_all(request).await.unwrap();
    let mut read = Vec::new();
    assert!(read_until(&mut kept, &mut read, "hello").await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kept.write_all(request).await.unwrap();
    let mut again = Vec::new();
    assert!(read_until(&mut kept, &mut again, "hello").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_refused_by_hyper_near_the_header_timeout_still_lingers() {
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = crudp::server::serve(listener, app).header_timeout(Duration::from_secs(1));
    tokio::spawn(server.into_future());

    // A head hyper refuses (`400`) shortly before the first head is due, and the peer goes
    // on sending past that time: the connection lingers, reading what comes, rather than
    // being dropped with bytes unread (a reset, which may cost the peer the answer).
    let mut stream = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stream.write_all(b"NOT A REQUEST\r\n\r\n").await.unwrap();
    for n in 0..30 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Err(e) = stream.write_all(&[b'x'; 1024]).await {
            panic!("cut {} ms after the refusal: {e}", n * 50);
        }
    }
    let mut read = Vec::new();
    read_until(&mut stream, &mut read, "\r\n\r\n").await;
    let head = String::from_utf8_lossy(&read);
    assert!(head.starts_with("HTTP/1.1 400"), "{head:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_after_an_event_stream_request_neither_cut_nor_hold_the_stream() {
    let server = Server::start_with(|b| b.heartbeat(Duration::from_millis(200))).await;
    let token = server.token("ann", "admin", ClientId(3)).await;
    let path = format!("/crudp/events?token={token}");
    let addr = server.addr;
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    // A stray line break, then a request pipelined after it, in the same packet.
    let extra = format!("\r\nGET /crudp/modules HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{head}{extra}").as_bytes())
        .await
        .unwrap();
    let mut read = Vec::new();
    assert!(read_until(&mut stream, &mut read, "event: ready").await);
    // The stream goes on: its heartbeats come.
    let mut more = Vec::new();
    assert!(read_until(&mut stream, &mut more, ": ping").await);
    // A peer that goes on sending is let go once it sent too much.
    let flood = vec![b'x'; 128 << 10];
    let _ = stream.write_all(&flood).await;
    let mut rest = Vec::new();
    assert!(!read_until(&mut stream, &mut rest, "never sent").await);
}
