//! N creates over loopback: CRUDP over `/sync` (results over SSE), CRUDP over `/call`, plain
//! JSON endpoints one request at a time (a) and 16 in flight (b), a hand-rolled postcard batch
//! endpoint (L), the practical limit, and (with the `peers` feature) the typed-RPC peers.

use std::time::Instant;

use crudp::{Client, Mode};
use crudp_tests::Proxy;
use example_api::{Todo, TodosClient};
use futures_util::{StreamExt, stream};

use crate::server::NewTodo;

/// The ways to make N creates.
pub(crate) const VARIANTS: &[&str] = &[
    "crudp /sync",
    "crudp /call",
    "json (a)",
    "json x16 (b)",
    "postcard (L)",
    #[cfg(feature = "peers")]
    JSONRPSEE,
    #[cfg(feature = "peers")]
    TARPC,
];

/// jsonrpsee over HTTP, one JSON-RPC batch of N calls.
pub(crate) const JSONRPSEE: &str = "jsonrpsee batch";
/// tarpc over TCP, N concurrent calls on one connection.
pub(crate) const TARPC: &str = "tarpc";

/// The benchmark's server process: where its endpoints listen.
#[derive(Clone, Copy)]
pub(crate) struct Addresses {
    /// The axum server: CRUDP, JSON, postcard.
    pub(crate) http: std::net::SocketAddr,
    /// Sockets held after a fixed answer, with no HTTP server: the floor under any.
    pub(crate) socket_floor: std::net::SocketAddr,
    /// The same app as `http`, under plain `axum::serve`.
    pub(crate) axum_serve: std::net::SocketAddr,
    /// The jsonrpsee server and the tarpc server, if the process runs them.
    #[cfg_attr(not(feature = "peers"), allow(dead_code))]
    pub(crate) peers: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
}

impl Addresses {
    pub(crate) fn base(&self) -> String {
        format!("http://{}", self.http)
    }
}

fn titles(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("todo number {i}")).collect()
}

/// Something that makes N creates, ready to be timed again and again.
pub(crate) enum Runner {
    Crudp(TodosClient),
    Json(reqwest::Client, String, usize),
    Postcard(reqwest::Client, String),
    #[cfg(feature = "peers")]
    Jsonrpsee(jsonrpsee::http_client::HttpClient),
    #[cfg(feature = "peers")]
    Tarpc(crate::peers::TarpcClient),
}

impl Runner {
    pub(crate) async fn new(variant: &str, at: &Addresses) -> Self {
        let base = &at.base();
        let runner = match variant {
            #[cfg(feature = "peers")]
            JSONRPSEE => Self::Jsonrpsee(crate::peers::jsonrpsee_client(
                at.peers.expect("the peers' servers").0,
            )),
            #[cfg(feature = "peers")]
            TARPC => Self::Tarpc(
                crate::peers::tarpc_client(at.peers.expect("the peers' servers").1).await,
            ),
            "crudp /sync" => Self::Crudp(TodosClient::new(&Client::new(format!("{base}/crudp")))),
            "crudp /call" | "crudp /call, SQLite" | "crudp /call, Redis" => {
                let mount = match variant {
                    "crudp /call" => "crudp",
                    "crudp /call, SQLite" => "durable",
                    _ => "redis",
                };
                let client = Client::builder(format!("{base}/{mount}"))
                    .mode(Mode::Call)
                    .build();
                Self::Crudp(TodosClient::new(&client))
            }
            "json (a)" => Self::Json(reqwest::Client::new(), format!("{base}/json/todos"), 1),
            "json x16 (b)" => Self::Json(reqwest::Client::new(), format!("{base}/json/todos"), 16),
            _ => Self::Postcard(reqwest::Client::new(), format!("{base}/postcard/todos")),
        };
        // Open the connections (and the event stream) before anything is timed.
        runner.run(1).await;
        runner
    }

    /// Makes `n` creates and returns how many came back.
    pub(crate) async fn run(&self, n: usize) -> usize {
        match self {
            Self::Crudp(todos) => {
                let calls: Vec<_> = titles(n).into_iter().map(|t| todos.create(t)).collect();
                answered(calls).await
            }
            Self::Json(http, url, in_flight) => {
                let requests = titles(n).into_iter().map(|title| async move {
                    let response = http.post(url).json(&NewTodo { title }).send().await.ok()?;
                    response.json::<Todo>().await.ok()
                });
                stream::iter(requests)
                    .buffered(*in_flight)
                    .filter_map(|t| async { t })
                    .count()
                    .await
            }
            #[cfg(feature = "peers")]
            Self::Jsonrpsee(client) => crate::peers::jsonrpsee_creates(client, titles(n)).await,
            #[cfg(feature = "peers")]
            Self::Tarpc(client) => crate::peers::tarpc_creates(client, titles(n)).await,
            Self::Postcard(http, url) => {
                let body = postcard::to_stdvec(&titles(n)).expect("titles encode");
                let Ok(response) = http.post(url).body(body).send().await else {
                    return 0;
                };
                let bytes = response.bytes().await.unwrap_or_default();
                postcard::from_bytes::<Vec<Todo>>(&bytes).map_or(0, |t| t.len())
            }
        }
    }
}

/// The outcome stores compared for `/call`: in memory, SQLite, and Redis.
pub(crate) const STORES: [&str; 3] = ["crudp /call", "crudp /call, SQLite", "crudp /call, Redis"];

/// The fewest creates a timed run makes.
const MIN_CREATES: usize = 100;

/// Operations per second of `reps` runs of `n` creates for each variant, the variants taking
/// turns run by run so that a slower moment of the machine hits them alike.
pub(crate) async fn interleaved(
    variants: &[&str],
    at: &Addresses,
    n: usize,
    reps: usize,
) -> Vec<Vec<f64>> {
    let mut runners = Vec::new();
    for variant in variants {
        runners.push(Runner::new(variant, at).await);
    }
    // A run is at least `MIN_CREATES` creates, in rounds of `n` one after the other, so that
    // a small `n` is not timed from a single request.
    let rounds = MIN_CREATES.div_ceil(n).max(1);
    let mut rates = vec![Vec::with_capacity(reps); variants.len()];
    for _ in 0..reps {
        for ((variant, runner), rates) in variants.iter().zip(&runners).zip(&mut rates) {
            let started = Instant::now();
            for _ in 0..rounds {
                let done = runner.run(n).await;
                assert_eq!(done, n, "{variant}: {done} of {n} creates came back");
            }
            rates.push((rounds * n) as f64 / started.elapsed().as_secs_f64());
        }
    }
    rates
}

/// Bytes on the wire (up, down), headers included, for one run of `n` creates: counted by a
/// proxy, from the first connection to the last close.
pub(crate) async fn wire_bytes(
    variant: &str,
    server: std::net::SocketAddr,
    n: usize,
) -> (u64, u64) {
    let proxy = Proxy::start(server).await;
    let base = format!("http://{}", proxy.addr);
    let runner = match variant {
        "crudp /sync" | "crudp /call" => {
            let mode = if variant == "crudp /sync" {
                Mode::Sync
            } else {
                Mode::Call
            };
            Runner::Crudp(TodosClient::new(
                &Client::builder(format!("{base}/crudp")).mode(mode).build(),
            ))
        }
        _ => {
            let through = Addresses {
                http: proxy.addr,
                socket_floor: proxy.addr,
                axum_serve: proxy.addr,
                peers: None,
            };
            Runner::new(variant, &through).await
        }
    };
    let done = runner.run(n).await;
    assert_eq!(done, n);
    drop(runner);
    proxy.drained().await;
    proxy.carried()
}

/// Counts the requests a client makes, and times each one (from when the client hands it to
/// the transport until its answer is back).
#[derive(Clone, Default)]
struct Watched {
    inner: crudp::transport::ReqwestTransport,
    posts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    times: std::sync::Arc<std::sync::Mutex<Vec<(Instant, Instant)>>>,
}

impl crudp::Transport for Watched {
    fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> crudp::transport::TransportFuture<'_, Result<Vec<u8>, crudp::TransportError>> {
        self.posts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sent = self.inner.post(url, headers, body);
        Box::pin(async move {
            let started = Instant::now();
            let answer = sent.await;
            let mut times = self.times.lock().unwrap_or_else(|e| e.into_inner());
            times.push((started, Instant::now()));
            answer
        })
    }

    fn events(
        &self,
        url: &str,
        token: &str,
        last_event_id: Option<u64>,
    ) -> crudp::transport::TransportFuture<
        '_,
        Result<crudp::transport::EventStream, crudp::TransportError>,
    > {
        self.inner.events(url, token, last_event_id)
    }
}

/// The batch windows compared.
pub(crate) const WINDOWS_MS: [u64; 4] = [0, 1, 2, 5];

/// `n` creates made in a loop whose futures are dropped at once (nothing awaits them), with
/// each batch window: for each, the median requests per run and the median milliseconds
/// until every call is answered.
pub(crate) async fn unawaited(base: &str, n: usize, reps: usize) -> Vec<(u64, f64, f64)> {
    let mut rows = Vec::new();
    for window in WINDOWS_MS {
        let watched = Watched::default();
        let posts = std::sync::Arc::clone(&watched.posts);
        let client = Client::builder(format!("{base}/crudp"))
            .mode(Mode::Call)
            .batch_window(std::time::Duration::from_millis(window))
            .transport(watched)
            .build();
        let todos = TodosClient::new(&client);
        todos.read(1).await.ok();
        let (mut requests, mut millis) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let before = posts.load(std::sync::atomic::Ordering::Relaxed);
            let started = Instant::now();
            for title in titles(n) {
                drop(todos.create(title));
            }
            while client.status().pending() > 0 {
                tokio::time::sleep(std::time::Duration::from_micros(100)).await;
            }
            millis.push(started.elapsed().as_secs_f64() * 1000.0);
            requests.push((posts.load(std::sync::atomic::Ordering::Relaxed) - before) as f64);
        }
        rows.push((window, crate::median(&requests), crate::median(&millis)));
    }
    rows
}

/// One call alone through `/call`, stage by stage: medians in µs of `calls` calls, each
/// awaited before the next. The client's stages are timed here (the call made, handed to the
/// transport, its answer back, the call's future done); the server's (its router, the
/// handler) by the server process, read from `GET /control/stages`.
pub(crate) async fn stages(at: &Addresses, calls: usize) -> Vec<(&'static str, f64)> {
    let base = at.base();
    let watched = Watched::default();
    let times = std::sync::Arc::clone(&watched.times);
    let client = Client::builder(format!("{base}/staged"))
        .mode(Mode::Call)
        .transport(watched)
        .build();
    let todos = TodosClient::new(&client);
    // The connection and the client's name, before anything is timed.
    todos.create("warm".into()).await.expect("a create");
    let http = reqwest::Client::new();
    let stages_url = format!("{base}/control/stages");
    http.get(&stages_url).send().await.expect("reset");
    times.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let (mut before, mut round_trip, mut after, mut whole) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for title in titles(calls) {
        let made = Instant::now();
        todos.create(title).await.expect("a create");
        let done = Instant::now();
        let Some((sent, answered)) = times.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
            continue;
        };
        let micros = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1e6;
        before.push(micros(made, sent));
        round_trip.push(micros(sent, answered));
        after.push(micros(answered, done));
        whole.push(micros(made, done));
    }
    let server = http
        .get(&stages_url)
        .send()
        .await
        .expect("the server's stages")
        .text()
        .await
        .expect("a body");
    let mut server = server
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
    let (router, handler) = (
        server.next().unwrap_or(f64::NAN),
        server.next().unwrap_or(f64::NAN),
    );
    let round_trip = crate::median(&round_trip);
    vec![
        (
            "client: the call made → its batch handed to the transport",
            crate::median(&before),
        ),
        (
            "HTTP both ways: reqwest, loopback, hyper (the round trip less the server's router)",
            round_trip - router,
        ),
        (
            "server: admit, decode, claim, queue, store, encode (the router less the handler)",
            router - handler,
        ),
        (
            "server: the handler (its layers and the in-memory board)",
            handler,
        ),
        (
            "client: the answer back → the call's future done",
            crate::median(&after),
        ),
        ("the whole call", crate::median(&whole)),
    ]
}

/// A transport that answers in process, as the server would with an instant handler: each
/// create comes back as its todo. Times the client alone, with no network and no server.
#[derive(Clone, Default)]
struct InProcess;

impl crudp::Transport for InProcess {
    fn post(
        &self,
        _url: &str,
        _headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> crudp::transport::TransportFuture<'_, Result<Vec<u8>, crudp::TransportError>> {
        use crudp::protocol::{PacketResult, Results, decode_batch, encode_results};
        let batch = decode_batch(&body.into(), usize::MAX).expect("a batch");
        let results = batch
            .packets
            .iter()
            .map(|packet| {
                let (title,): (String,) = postcard::from_bytes(&packet.args).expect("a title");
                let todo = Todo {
                    id: packet.seq,
                    title,
                    done: false,
                    by: String::new(),
                };
                PacketResult {
                    seq: packet.seq,
                    // As the server encodes it.
                    outcome: crudp::__private::encode_result(Ok::<_, ()>(todo)),
                }
            })
            .collect();
        let answer = encode_results(&Results { results });
        Box::pin(std::future::ready(Ok(answer)))
    }

    fn events(
        &self,
        _url: &str,
        _token: &str,
        _last_event_id: Option<u64>,
    ) -> crudp::transport::TransportFuture<
        '_,
        Result<crudp::transport::EventStream, crudp::TransportError>,
    > {
        Box::pin(std::future::ready(Err(crudp::TransportError::Unreachable(
            "no event stream in process".into(),
        ))))
    }
}

/// How many of `calls` are answered `Ok`, awaited in turn: a CRUDP call is queued when it is
/// made, not when it is polled, so awaiting them one after the other sends them together all
/// the same, without the task per future that `join_all` adds.
async fn answered<T: serde::de::DeserializeOwned, E: serde::de::DeserializeOwned>(
    calls: Vec<crudp::CallFuture<T, E>>,
) -> usize {
    let mut ok = 0;
    for call in calls {
        ok += usize::from(call.await.is_ok());
    }
    ok
}

/// Creates per second through `/call` with the client alone: `reps` runs of rounds of `n`
/// calls, each answered in process (see [`InProcess`]).
pub(crate) async fn client_alone(n: usize, reps: usize) -> Vec<f64> {
    let client = Client::builder("http://in-process/crudp")
        .mode(Mode::Call)
        .transport(InProcess)
        .build();
    let todos = TodosClient::new(&client);
    let rounds = MIN_CREATES.div_ceil(n).max(1);
    let mut rates = Vec::with_capacity(reps);
    for _ in 0..reps {
        let started = Instant::now();
        for _ in 0..rounds {
            let calls: Vec<_> = titles(n).into_iter().map(|t| todos.create(t)).collect();
            let done = answered(calls).await;
            assert_eq!(done, n, "in process: {done} of {n} creates came back");
        }
        rates.push((rounds * n) as f64 / started.elapsed().as_secs_f64());
    }
    rates
}
