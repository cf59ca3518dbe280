//! The server side of every benchmark, in its own process: the same todo logic behind CRUDP,
//! plain JSON endpoints and a hand-rolled postcard endpoint, plus a naive SSE broadcaster.
//! With a Redis URL in `CRUDP_BENCH_REDIS`, also two CRUDP instances on that Redis server
//! (`/redis` and `/redis-b`), as two processes would be.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    response::sse::{Event, KeepAlive, Sse},
    routing::{get, post},
};
use crudp::{
    Action, Context, Module, Target,
    server::{
        Crudp, CrudpBuilder, DEFAULT_CONNECTION_BUFFER, DEFAULT_REPLAY_BUFFER, MemoryHub,
        OutcomeLimits, SqliteOutcomes,
    },
};
use crudp_redis::{DEFAULT_PREFIX, RedisBackend, RedisHub, RedisOutcomes};
use example_api::{Todo, TodoError, Todos, TodosClient, TodosServer};
use futures_util::{Stream, stream};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// The one piece of logic every variant runs: store a todo.
#[derive(Clone, Default)]
pub(crate) struct Board {
    todos: Arc<Mutex<Vec<Todo>>>,
}

impl Board {
    pub(crate) fn create(&self, title: String) -> Todo {
        let mut todos = self
            .todos
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let todo = Todo {
            id: todos.len() as u64 + 1,
            title,
            done: false,
            by: String::new(),
        };
        todos.push(todo.clone());
        todo
    }
}

impl Todos for Board {
    async fn create(&self, _: &Context, title: String) -> Result<Todo, TodoError> {
        Ok(Board::create(self, title))
    }

    async fn read(&self, _: &Context, _: u64) -> Result<Todo, TodoError> {
        Err(TodoError::NotFound)
    }

    async fn update(&self, _: &Context, todo: Todo) -> Result<Todo, TodoError> {
        Ok(todo)
    }

    async fn delete(&self, _: &Context, _: u64) -> Result<(), TodoError> {
        Ok(())
    }
}

#[derive(Clone)]
struct Shared {
    board: Board,
    api: Crudp,
    /// The first instance on Redis, if any.
    on_redis: Option<Crudp>,
    naive: broadcast::Sender<String>,
    /// The floor under publishing: sockets no task holds, each written to in turn.
    written: Written,
}

/// Sockets that opened `/writes` on the socket floor's listener, held by no task.
type Written = Arc<Mutex<Vec<std::net::TcpStream>>>;

#[derive(Serialize, Deserialize)]
pub(crate) struct NewTodo {
    pub(crate) title: String,
}

async fn json_create(State(shared): State<Shared>, Json(new): Json<NewTodo>) -> Json<Todo> {
    Json(shared.board.create(new.title))
}

async fn postcard_create(State(shared): State<Shared>, body: Bytes) -> Vec<u8> {
    let titles: Vec<String> = postcard::from_bytes(&body).unwrap_or_default();
    let todos: Vec<Todo> = titles.into_iter().map(|t| shared.board.create(t)).collect();
    postcard::to_stdvec(&todos).unwrap_or_default()
}

/// The naive reference: axum's `Sse` fed by a `tokio::sync::broadcast`.
async fn naive_events(
    State(shared): State<Shared>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = shared.naive.subscribe();
    let hello = stream::once(async { Ok(Event::default().comment("ok")) });
    let events = stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(data) => return Some((Ok(Event::default().data(data)), receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(futures_util::StreamExt::chain(hello, events))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(30)))
}

/// The floor under every event stream: a response that says `: ok` and then holds the
/// connection open forever, with nothing of its own (no channel, no timer). Its memory per
/// connection is what the kernel's socket, tokio and the HTTP server take (`serve`'s event
/// streams, or hyper's connection under `axum::serve`).
async fn floor_events() -> axum::response::Response {
    let hello = stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b": ok\n\n")) });
    let body = futures_util::StreamExt::chain(hello, stream::pending());
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(body))
        .expect("a response")
}

/// The floor under any HTTP server: each connection's request head read into a small buffer,
/// a fixed answer written, and the socket held until it closes. Its memory per connection is
/// what the kernel's socket and a tokio task take. A connection to `/writes` is handed to
/// `written` instead: the floor under publishing, where one loop writes to every socket.
async fn hold_sockets(listener: tokio::net::TcpListener, written: Written) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
        cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n6\r\n: ok\n\n\r\n";
    while let Ok((mut socket, _)) = listener.accept().await {
        let written = Arc::clone(&written);
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(512);
            while !head.ends_with(b"\r\n\r\n") {
                match socket.read_buf(&mut head).await {
                    Ok(n) if n > 0 && head.len() < 8192 => {}
                    _ => return,
                }
            }
            let writes = head.starts_with(b"GET /writes");
            drop(head);
            if socket.write_all(ANSWER).await.is_err() {
                return;
            }
            if writes {
                if let Ok(socket) = socket.into_std() {
                    written.lock().expect("not poisoned").push(socket);
                }
                return;
            }
            // Held until the peer closes it.
            let _ = socket.read(&mut [0; 1]).await;
        });
    }
}

/// The server's stages of `POST /staged/call`, in µs: the time in the CRUDP router (the whole
/// request, from its head parsed to its answer), and in the handler with its layers.
#[derive(Clone, Default)]
pub(crate) struct Stages(Arc<Mutex<(Vec<f64>, Vec<f64>)>>);

impl Stages {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<f64>, Vec<f64>)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The medians so far (router, handler), then starts again.
    fn take(&self) -> String {
        let (router, handler) = std::mem::take(&mut *self.lock());
        format!("{} {}", crate::median(&router), crate::median(&handler))
    }
}

impl crudp::server::CallLayer for Stages {
    fn call<'a>(
        &'a self,
        _call: crudp::server::Call<'a>,
        next: crudp::server::Next<'a>,
    ) -> crudp::server::BoxFuture<'a, crudp::Outcome> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let outcome = next.run().await;
            self.lock().1.push(started.elapsed().as_secs_f64() * 1e6);
            outcome
        })
    }
}

#[derive(Deserialize)]
struct PublishTo {
    kind: String,
}

pub(crate) fn micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Publishes one event to every connection of `kind` and answers when it did, in µs.
async fn publish(State(shared): State<Shared>, Query(to): Query<PublishTo>) -> String {
    let at = micros();
    let api = match to.kind.as_str() {
        "naive" => {
            let _ = shared.naive.send(at.to_string());
            return at.to_string();
        }
        "writes" => {
            use std::io::Write;
            // As axum's `Sse` frames it, in one chunk, from one thread per core; a socket
            // that cannot take it now misses it.
            let data = format!("data: {at}\n\n");
            let chunk = format!("{:x}\r\n{data}\r\n", data.len());
            let sockets = shared.written.lock().expect("not poisoned");
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            std::thread::scope(|scope| {
                for part in sockets.chunks(sockets.len().div_ceil(threads).max(1)) {
                    let chunk = &chunk;
                    scope.spawn(move || {
                        for mut socket in part {
                            let _ = socket.write(chunk.as_bytes());
                        }
                    });
                }
            });
            return at.to_string();
        }
        "redis" => shared.on_redis.as_ref().expect("a Redis server"),
        _ => &shared.api,
    };
    let _ = api
        .broadcast(&TodosClient::DESCRIPTOR, Action::Read, &at, Target::All)
        .await;
    at.to_string()
}

/// What a user would write to take a file: the body streamed to a file on disk.
async fn plain_upload(body: axum::body::Body) -> axum::http::StatusCode {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let path = std::env::temp_dir().join(format!("crudp-bench-plain-{}", std::process::id()));
    let Ok(mut file) = tokio::fs::File::create(&path).await else {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
    };
    let mut body = body.into_data_stream();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return axum::http::StatusCode::BAD_REQUEST;
        };
        if file.write_all(&chunk).await.is_err() {
            return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let written = file.flush().await;
    drop(file);
    let _ = tokio::fs::remove_file(&path).await;
    match written {
        Ok(()) => axum::http::StatusCode::OK,
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// This process's resident memory, in bytes.
pub(crate) fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The shared token secret of the instances on Redis.
const SECRET: &[u8] = b"the benchmark's instances share this secret";

/// The builder every CRUDP variant starts from.
fn builder(board: &Board) -> CrudpBuilder {
    Crudp::builder()
        .handler(TodosServer::new(board.clone()))
        .queue_depth(1 << 16)
        .queue_per_client(1 << 16)
        // The fan-out opens 19,000 streams from a few addresses, above the default limits.
        .max_streams(usize::MAX)
        .streams_per_address(usize::MAX)
        .token_ttl(Duration::from_secs(24 * 3600))
}

pub(crate) async fn serve() {
    let board = Board::default();
    let files = std::env::temp_dir().join(format!("crudp-bench-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&files);
    let api = builder(&board)
        .connections_per_user(usize::MAX)
        .files_dir(&files)
        .build();
    // The same, with the durable store, in a file of its own.
    let file = std::env::temp_dir().join(format!("crudp-bench-{}.db", std::process::id()));
    for stale in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{stale}", file.display()));
    }
    let durable = builder(&board)
        .outcome_store(SqliteOutcomes::open(&file).expect("a SQLite file"))
        .build();
    // The same as `api`, timed stage by stage: a mount of its own, so that the timing costs
    // the other measurements nothing.
    let stages = Stages::default();
    let staged = builder(&board).layer(stages.clone()).build();
    let mut on_redis = Vec::new();
    if let Ok(url) = std::env::var("CRUDP_BENCH_REDIS") {
        let redis = crudp_redis::redis::Client::open(url).expect("a Redis URL");
        for _ in 0..2 {
            // This instance's connections: as many as the benchmark opens.
            let local =
                MemoryHub::new(DEFAULT_REPLAY_BUFFER, DEFAULT_CONNECTION_BUFFER, usize::MAX);
            let backend = RedisBackend::new(
                RedisHub::new(&redis, DEFAULT_PREFIX, local)
                    .await
                    .expect("Redis answers"),
                RedisOutcomes::new(&redis, DEFAULT_PREFIX, OutcomeLimits::default())
                    .await
                    .expect("Redis answers"),
            );
            on_redis.push(
                builder(&board)
                    .backend(backend)
                    .token_secret(SECRET)
                    .build(),
            );
        }
    }
    let (naive, _) = broadcast::channel(256);
    let written = Written::default();
    #[cfg(feature = "peers")]
    let shared_board = board.clone();
    let shared = Shared {
        board,
        api: api.clone(),
        on_redis: on_redis.first().cloned(),
        naive,
        written: Arc::clone(&written),
    };
    let app = Router::new()
        .route("/json/todos", post(json_create))
        .route("/postcard/todos", post(postcard_create))
        .route("/naive/events", get(naive_events))
        .route("/floor/events", get(floor_events))
        .route("/control/publish", post(publish))
        .route("/control/rss", get(|| async { rss().to_string() }))
        .route(
            "/control/stages",
            get({
                let stages = stages.clone();
                move || async move { stages.take() }
            }),
        )
        .route("/plain/upload", axum::routing::put(plain_upload))
        .with_state(shared)
        .nest("/crudp", api.router())
        .nest(
            "/staged",
            staged.router().layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let stages = stages.clone();
                    async move {
                        let call = request.uri().path().ends_with("/call");
                        let started = std::time::Instant::now();
                        let response = next.run(request).await;
                        if call {
                            stages.lock().0.push(started.elapsed().as_secs_f64() * 1e6);
                        }
                        response
                    }
                },
            )),
        )
        .nest("/durable", durable.router());
    let app = match &on_redis[..] {
        [a, b] => app.nest("/redis", a.router()).nest("/redis-b", b.router()),
        _ => app,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    println!(
        "LISTENING http://{}",
        listener.local_addr().expect("an address")
    );
    let socket_floor = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    println!(
        "SOCKET FLOOR {}",
        socket_floor.local_addr().expect("an address")
    );
    tokio::spawn(hold_sockets(socket_floor, Arc::clone(&written)));
    // The same app under plain `axum::serve`, for the floor under hyper's connections.
    let under_axum = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    println!(
        "AXUM SERVE {}",
        under_axum.local_addr().expect("an address")
    );
    let plain = app.clone();
    tokio::spawn(async move { axum::serve(under_axum, plain).await });
    // The typed-RPC peers, on the same board, each on its own port.
    #[cfg(feature = "peers")]
    {
        let (jsonrpsee, tarpc) = crate::peers::serve(&shared_board).await;
        println!("PEERS {jsonrpsee} {tarpc}");
    }
    #[cfg(not(feature = "peers"))]
    println!("PEERS none");
    // As the README serves it; the fan-out opens thousands of connections from a few
    // addresses.
    crudp::server::serve(listener, app)
        .max_connections(100_000)
        .connections_per_address(100_000)
        .await
        .expect("the server runs");
}
