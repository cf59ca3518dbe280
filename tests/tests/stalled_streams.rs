//! A proxy that keeps a connection open but stops passing on what the server says: the native
//! client takes a silent event stream (no event, no heartbeat) for dead and opens another,
//! which resumes where the first left off, and gives up on a batch's request after its
//! timeout and sends the batch again on another connection. A stream that passes on its
//! replay slowly is not taken for one held back.

#![cfg(not(target_arch = "wasm32"))]

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crudp::{Client, Mode, transport::ReqwestTransport};
use crudp_tests::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A relay to a server that counts the connections it carries whose first request starts with
/// `what`, and stops passing on what the server sends over the first `stalled` of them.
struct Relay {
    addr: SocketAddr,
    streams: Arc<AtomicUsize>,
    stalled: Arc<AtomicUsize>,
    /// Connections counted after this many pass on what the server sends slowly.
    slow_after: Arc<AtomicUsize>,
}

impl Relay {
    async fn start(upstream: SocketAddr, what: &'static [u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let streams = Arc::new(AtomicUsize::new(0));
        let stalled = Arc::new(AtomicUsize::new(0));
        let slow_after = Arc::new(AtomicUsize::new(usize::MAX));
        let (counted, stall, slow) = (
            Arc::clone(&streams),
            Arc::clone(&stalled),
            Arc::clone(&slow_after),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(upstream).await.unwrap();
                let ways = Ways {
                    streams: Arc::clone(&counted),
                    stalled: Arc::clone(&stall),
                    slow_after: Arc::clone(&slow),
                };
                tokio::spawn(carry(client, server, what, ways));
            }
        });
        Self {
            addr,
            streams,
            stalled,
            slow_after,
        }
    }

    /// The connections counted from now on pass on what the server sends at 320 bytes a
    /// second (a slow link).
    fn slow_from_now(&self) {
        self.slow_after.store(self.streams(), Ordering::SeqCst);
    }

    fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    /// The connections counted so far pass nothing on any more; those opened later do.
    fn stall(&self) {
        self.stall_up_to(self.streams());
    }

    /// The first `n` connections counted pass nothing on, whenever they open.
    fn stall_up_to(&self, n: usize) {
        self.stalled.store(n, Ordering::SeqCst);
    }
}

/// What the relay does with the connections it counts.
struct Ways {
    streams: Arc<AtomicUsize>,
    stalled: Arc<AtomicUsize>,
    slow_after: Arc<AtomicUsize>,
}

async fn carry(client: TcpStream, server: TcpStream, what: &'static [u8], ways: Ways) {
    let Ways {
        streams,
        stalled,
        slow_after,
    } = ways;
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    // This connection's number among the event streams, once it carries one (0: none).
    let number = Arc::new(AtomicUsize::new(0));
    let up = {
        let number = Arc::clone(&number);
        async move {
            let mut buffer = vec![0; 16 * 1024];
            loop {
                let n = match from_client.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let read = &buffer[..n];
                if number.load(Ordering::SeqCst) == 0 && read.starts_with(what) {
                    number.store(streams.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                }
                if to_server.write_all(read).await.is_err() {
                    break;
                }
            }
            let _ = to_server.shutdown().await;
        }
    };
    let down = async move {
        let mut buffer = vec![0; 16 * 1024];
        let stalled = || {
            let stream = number.load(Ordering::SeqCst);
            stream != 0 && stream <= stalled.load(Ordering::SeqCst)
        };
        loop {
            let n = match from_server.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if stalled() {
                // Swallowed: the connection stays open, and says nothing.
                continue;
            }
            let stream = number.load(Ordering::SeqCst);
            if stream != 0 && stream > slow_after.load(Ordering::SeqCst) {
                let mut gone = false;
                for slice in buffer[..n].chunks(32) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    gone = to_client.write_all(slice).await.is_err();
                    if gone {
                        break;
                    }
                }
                if gone {
                    break;
                }
            } else if to_client.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        if stalled() {
            // Not even that the server closed it: the client's side stays open for ever.
            std::future::pending::<()>().await;
        }
        let _ = to_client.shutdown().await;
    };
    tokio::join!(up, down);
}

/// A relay of `server`'s event streams, and a client through it that takes a stream silent
/// for 2 s for dead.
async fn streaming_through_a_relay(server: &Server) -> (Relay, Client) {
    let relay = Relay::start(server.addr, b"GET /crudp/events").await;
    let transport = ReqwestTransport::new().stream_silence(Duration::from_secs(2));
    let client = Client::builder(format!("http://{}/crudp", relay.addr))
        .transport(transport)
        .build();
    (relay, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_a_proxy_stops_passing_on_is_taken_for_dead_and_opened_again() {
    let server = Server::start().await;
    let (relay, client) = streaming_through_a_relay(&server).await;
    let todos = TodosClient::new(&client);
    let within = |what: &'static str| {
        move |answer: Result<_, tokio::time::error::Elapsed>| {
            answer.unwrap_or_else(|_| panic!("{what} never came"))
        }
    };
    let before = tokio::time::timeout(Duration::from_secs(30), todos.create("before".into())).await;
    assert_eq!(within("the first result")(before).unwrap().title, "before");
    assert_eq!(relay.streams(), 1);

    // The stream stays open but says nothing: the next result, sent over it, is lost there.
    relay.stall();
    let after = tokio::time::timeout(Duration::from_secs(30), todos.create("after".into())).await;
    assert_eq!(
        within("the result, over a new stream")(after)
            .unwrap()
            .title,
        "after"
    );
    assert!(relay.streams() >= 2, "another stream opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_answer_a_proxy_holds_back_is_sent_again_after_its_timeout() {
    let server = Server::start().await;
    let relay = Relay::start(server.addr, b"POST /crudp/call").await;
    // The first connection to carry a batch takes it to the server, and brings nothing back.
    relay.stall_up_to(1);
    let transport = ReqwestTransport::new().request_timeout(Duration::from_secs(1));
    let client = Client::builder(format!("http://{}/crudp", relay.addr))
        .mode(Mode::Call)
        .transport(transport)
        .build();
    let call = TodosClient::new(&client).create("held back".into());
    let todo = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the call is answered over another connection");
    assert_eq!(todo.unwrap().title, "held back");
    assert!(relay.streams() >= 2, "sent again on another connection");
    assert_eq!(
        server.executions(),
        1,
        "run once, answered again from the records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_keeps_coming_over_a_slow_link_is_not_taken_for_a_stream_held_back() {
    let server = Server::start().await;
    let (relay, client) = streaming_through_a_relay(&server).await;
    let statuses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&statuses);
    let _status = client.on_status(move |status| seen.lock().unwrap().push(status));
    let heard = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let noted = Arc::clone(&heard);
    let todos = TodosClient::new(&client);
    let _heard = todos.on_create(move |todo| noted.lock().unwrap().push(todo.title.clone()));
    let first = tokio::time::timeout(Duration::from_secs(30), todos.create("first".into()))
        .await
        .expect("the first result");
    assert_eq!(first.unwrap().title, "first");

    // The stream goes silent; meanwhile another client's calls broadcast to it, and the
    // stream it opens next replays them over a slow link: about 8 s before its `ready`.
    relay.stall();
    relay.slow_from_now();
    let other = server.client_as("bob", "member");
    let shouts = TodosClient::new(&other);
    for n in 0..25 {
        let title = format!("shout {n:02} with a title long enough to be read slowly");
        shouts.create(title).await.unwrap();
    }
    let last = |heard: &[String]| heard.iter().any(|title| title.starts_with("shout 24"));
    eventually("every broadcast replayed", || last(&heard.lock().unwrap())).await;
    let heard = heard.lock().unwrap();
    assert_eq!(heard.iter().filter(|t| t.starts_with("shout")).count(), 25);
    assert!(relay.streams() >= 2, "another stream opened");
    let statuses = statuses.lock().unwrap();
    assert!(
        statuses.iter().all(|status| !status.polling),
        "took the replay for a stream held back: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_the_heartbeat_keeps_saying_something_is_kept() {
    let server = Server::start_with(|b| b.heartbeat(Duration::from_millis(300))).await;
    let (relay, client) = streaming_through_a_relay(&server).await;
    let todos = TodosClient::new(&client);
    let made = tokio::time::timeout(Duration::from_secs(30), todos.create("first".into()))
        .await
        .expect("the first result");
    assert_eq!(made.unwrap().title, "first");
    // Nothing but heartbeats for three times the silence the client allows.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(relay.streams(), 1, "the stream was taken for dead");
    let next = tokio::time::timeout(Duration::from_secs(30), todos.create("next".into()))
        .await
        .expect("the next result");
    assert_eq!(next.unwrap().title, "next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_whose_answer_a_proxy_holds_back_is_given_up_and_asked_again() {
    let server = Server::start().await;
    // Every event stream and every poll: the proxy passes nothing of their answers on.
    let relay = Relay::start(server.addr, b"GET /crudp/").await;
    relay.stall_up_to(usize::MAX);
    // Above the 5 s a stream has to say `ready` before the client polls instead.
    let transport = ReqwestTransport::new().stream_silence(Duration::from_secs(6));
    let client = Client::builder(format!("http://{}/crudp", relay.addr))
        .transport(transport)
        .build();
    drop(TodosClient::new(&client).create("waits".into()));
    // The stream is taken for one held back and the client polls; a poll whose answer does
    // not begin within the silence allowed is given up, and another is asked for.
    eventually("a third request for events", || relay.streams() >= 3).await;
    let status = client.status();
    assert!(status.polling, "{status:?}");
}
