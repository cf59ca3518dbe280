//! A real axum server on 127.0.0.1 for the tests, with a count of the batches it received, an
//! authenticator that trusts an `x-user: <id>:<role>` header, raw SSE readers, and a proxy
//! that can take the server off the network and bring it back.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{extract::Request, middleware::Next, response::Response};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use crudp::{
    ClientId, Context, Target, User,
    protocol::TokenGrant,
    server::{AllowedOrigins, AuthError, Crudp, CrudpBuilder},
};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::api::*;

/// The todo store. Titles steer it:
/// - `…shout…`: the created todo is broadcast to everyone;
/// - `gated…`: creating waits for a permit of [`Store::gate`];
/// - `busy…`: the first attempt asks to be retried later.
///
/// Updates are broadcast to the `admin` role, deletes to everyone.
pub struct Store {
    next_id: AtomicU64,
    pub todos: Mutex<BTreeMap<u64, Todo>>,
    /// Handler executions, counted where they take effect.
    pub executions: AtomicUsize,
    pub gate: Semaphore,
    /// Creates waiting at the gate.
    pub at_gate: AtomicUsize,
    busy_once: Mutex<Vec<String>>,
}

impl Store {
    /// The titles of the todos stored, by ID.
    pub fn titles(&self) -> Vec<String> {
        self.todos
            .lock()
            .unwrap()
            .values()
            .map(|t| t.title.clone())
            .collect()
    }
}

impl Default for Store {
    fn default() -> Self {
        Self {
            next_id: AtomicU64::new(0),
            todos: Mutex::default(),
            executions: AtomicUsize::new(0),
            gate: Semaphore::new(0),
            at_gate: AtomicUsize::new(0),
            busy_once: Mutex::default(),
        }
    }
}

impl Todos for Arc<Store> {
    async fn create(&self, ctx: &Context, title: String) -> Result<Todo, TodoError> {
        if title.starts_with("gated") {
            self.at_gate.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.unwrap().forget();
            self.at_gate.fetch_sub(1, Ordering::SeqCst);
        }
        if title.starts_with("busy") {
            let mut busy = self.busy_once.lock().unwrap();
            if !busy.contains(&title) {
                busy.push(title);
                ctx.retry_later("the store is busy");
                return Err(TodoError::Invalid("discarded".into()));
            }
        }
        self.executions.fetch_add(1, Ordering::SeqCst);
        if title.is_empty() {
            return Err(TodoError::Invalid("empty title".into()));
        }
        if title.contains("shout") {
            ctx.broadcast(Target::All);
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        let todo = Todo {
            id,
            title,
            done: false,
        };
        self.todos.lock().unwrap().insert(id, todo.clone());
        Ok(todo)
    }

    async fn read(&self, _: &Context, id: u64) -> Result<Todo, TodoError> {
        self.executions.fetch_add(1, Ordering::SeqCst);
        self.todos
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or(TodoError::NotFound)
    }

    async fn update(&self, ctx: &Context, todo: Todo) -> Result<Todo, TodoError> {
        self.executions.fetch_add(1, Ordering::SeqCst);
        let mut todos = self.todos.lock().unwrap();
        let stored = todos.get_mut(&todo.id).ok_or(TodoError::NotFound)?;
        *stored = todo.clone();
        ctx.broadcast(Target::Role("admin".into()));
        Ok(todo)
    }

    async fn delete(&self, ctx: &Context, id: u64) -> Result<(), TodoError> {
        self.executions.fetch_add(1, Ordering::SeqCst);
        ctx.broadcast(Target::All);
        self.todos
            .lock()
            .unwrap()
            .remove(&id)
            .map(drop)
            .ok_or(TodoError::NotFound)
    }
}

pub struct Prices;

/// Measures filters.
pub struct Depth;

impl Search for Depth {
    async fn read(&self, _: &Context, mut filter: Filter) -> Result<u32, ()> {
        let mut depth = 0;
        while let Filter::Not(inner) = filter {
            filter = *inner;
            depth += 1;
        }
        Ok(depth)
    }
}

impl Catalog for Prices {
    async fn read(&self, _: &Context, sku: String) -> Result<u32, String> {
        match sku.as_str() {
            "apple" => Ok(120),
            other => Err(format!("no price for {other}")),
        }
    }
}

/// Reads each file it is given through the context, a chunk at a time, and hashes it.
pub struct Reader;

// ANCHOR: reader
impl Attachments for Reader {
    async fn create(&self, ctx: &Context, file: crudp::files::FileRef) -> Result<Received, String> {
        use sha2::Digest;
        let mut chunks = ctx.open(&file).await?.into_stream();
        let (mut hasher, mut size) = (sha2::Sha256::new(), 0);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(Received {
            name: file.name,
            size,
            sha256: hasher.finalize().into(),
        })
    }
}
// ANCHOR_END: reader

pub struct Glass;

impl Fragile for Glass {
    async fn create(&self, _: &Context) -> Result<u8, ()> {
        Ok(1)
    }

    async fn delete(&self, _: &Context, why: String) -> Result<(), ()> {
        panic!("{why}")
    }
}

/// Trusts `x-user: <id>:<role>`; without it the user is anonymous, with `x-user: nobody` 401.
pub fn header_user(parts: &http::request::Parts) -> Result<User, AuthError> {
    match parts.headers.get("x-user").and_then(|v| v.to_str().ok()) {
        None => Ok(User::anonymous()),
        Some(value) => match value.split_once(':') {
            Some((id, role)) => Ok(User::new(id, role)),
            None => Err(AuthError::new("sign in first")),
        },
    }
}

/// A running test server.
pub struct Server {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    pub api: Crudp,
    /// Batches that reached the CRUDP router (`POST /sync` and `POST /call`).
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serves `Todos`, `Catalog` and `Fragile` (not `Unmounted`) under `/crudp`.
    pub async fn start() -> Self {
        Self::start_with(|builder| builder).await
    }

    pub async fn start_with(configure: impl FnOnce(CrudpBuilder) -> CrudpBuilder) -> Self {
        Self::start_sharing(Arc::new(Store::default()), configure).await
    }

    /// A server of `store`, which other servers may share.
    pub async fn start_sharing(
        store: Arc<Store>,
        configure: impl FnOnce(CrudpBuilder) -> CrudpBuilder,
    ) -> Self {
        let api = configure(
            Crudp::builder()
                .allowed_origins(AllowedOrigins::matching(is_loopback))
                .authenticator(header_user)
                .handler(TodosServer::new(Arc::clone(&store)))
                .handler(CatalogServer::new(Prices))
                .handler(FragileServer::new(Glass))
                .handler(AttachmentsServer::new(Reader))
                .handler(SearchServer::new(Depth)),
        )
        .build();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let count_batches = move |request: Request, next: Next| {
            let path = request.uri().path();
            if path.ends_with("/sync") || path.ends_with("/call") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                let response: Response = next.run(request).await;
                response
            }
        };
        let app = axum::Router::new()
            .nest("/crudp", api.router())
            .layer(axum::middleware::from_fn(count_batches))
            .layer(loopback_cors());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            crudp::server::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            store,
            api,
            requests,
            task,
        }
    }

    /// A server that lets each user hold `per_user` event streams, and logs `+user` when one
    /// opens and `-user` when it closes (its presence hooks).
    pub async fn start_logging_presence(per_user: usize) -> (Self, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (on, off) = (Arc::clone(&log), Arc::clone(&log));
        let server = Self::start_with(move |b| {
            b.connections_per_user(per_user)
                .on_connect(move |peer| on.lock().unwrap().push(format!("+{}", peer.user.id)))
                .on_disconnect(move |peer| off.lock().unwrap().push(format!("-{}", peer.user.id)))
        })
        .await;
        (server, log)
    }

    pub fn url(&self) -> String {
        format!("http://{}/crudp", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn executions(&self) -> usize {
        self.store.executions.load(Ordering::SeqCst)
    }

    /// A client signed in as `user` with `role`, in the default (SSE) mode.
    pub fn client_as(&self, user: &str, role: &str) -> crudp::Client {
        crudp::Client::builder(self.url())
            .transport(transport_as(user, role))
            .build()
    }

    /// A token for `client` of `user`, from `POST /token`.
    pub async fn token(&self, user: &str, role: &str, client: ClientId) -> String {
        let response = http_as(user, role)
            .post(format!("{}/token", self.url()))
            .body(token_request(&[client]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        let grant: TokenGrant = postcard::from_bytes(&response.bytes().await.unwrap()).unwrap();
        grant.token
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The client key the raw HTTP clients of the tests send: they are all one anonymous visitor.
pub const TEST_KEY: &str = "dGVzdC1jbGllbnQta2V5LTAx";

/// A raw HTTP client that sends [`TEST_KEY`] as its client key, as CRUDP clients do.
pub fn http() -> reqwest::Client {
    http_keyed(TEST_KEY)
}

/// A raw HTTP client that sends `key` as its client key.
pub fn http_keyed(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(crudp::protocol::CLIENT_KEY_HEADER, key.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// An HTTP client signed in as `user` with `role`, sending `application/octet-stream` bodies.
pub fn http_as(user: &str, role: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-user", format!("{user}:{role}").parse().unwrap());
    headers.insert(
        crudp::protocol::CLIENT_KEY_HEADER,
        TEST_KEY.parse().unwrap(),
    );
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        "application/octet-stream".parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

pub fn transport_as(user: &str, role: &str) -> crudp::transport::ReqwestTransport {
    crudp::transport::ReqwestTransport::with_client(http_as(user, role))
}

/// The logs of this test process, from the `tracing` subscriber [`LogCapture::install`] sets.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs a subscriber that writes every event passing `filter` (an `EnvFilter`
    /// directive) here, without colours; once per process.
    pub fn install(filter: &str) -> Self {
        let capture = Self::default();
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        capture
    }

    /// As [`install`](Self::install), and a line for each span that closes, with its fields
    /// and timings.
    pub fn install_with_spans(filter: &str) -> Self {
        let capture = Self::default();
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_writer(move || writer.clone())
            .init();
        capture
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One event as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub id: u64,
    pub event: String,
    /// The base64url-decoded data.
    pub data: Vec<u8>,
}

/// A raw SSE connection that records every byte it receives.
pub struct Spy {
    pub bytes: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Spy {
    /// Connects to `url` (with its query) and records until dropped.
    pub async fn connect(url: String, last_event_id_header: Option<u64>) -> Self {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id_header {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&bytes);
        let task = tokio::spawn(async move {
            let mut body = response.bytes_stream();
            while let Some(Ok(chunk)) = body.next().await {
                sink.lock().unwrap().extend_from_slice(&chunk);
            }
        });
        Self { bytes, task }
    }

    pub fn raw(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    /// The events received so far (comments and `retry:` left out).
    pub fn events(&self) -> Vec<RawEvent> {
        parse_events(&self.raw())
    }

    /// Waits until `done` holds for the events received, or panics after 20 s.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[RawEvent]) -> bool) -> Vec<RawEvent> {
        for _ in 0..2000 {
            let events = self.events();
            if done(&events) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}; got {:?}", self.events());
    }

    /// Whether the server closed the stream.
    pub fn closed(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for Spy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn parse_events(raw: &[u8]) -> Vec<RawEvent> {
    let text = String::from_utf8(raw.to_vec()).expect("an SSE stream is UTF-8");
    text.split("\n\n")
        .filter_map(|block| {
            let (mut id, mut event, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse().unwrap());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(URL_SAFE_NO_PAD.decode(v).unwrap());
                }
            }
            Some(RawEvent {
                id: id?,
                event: event?,
                data: data?,
            })
        })
        .collect()
}

/// Waits until `done()` holds, or panics after 20 s.
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Whether `origin` is a page served from any port of 127.0.0.1, as the browser tests are.
pub fn is_loopback(origin: &str) -> bool {
    origin.starts_with("http://127.0.0.1:")
}

/// CORS for pages served from any port of 127.0.0.1.
pub fn loopback_cors() -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(|origin, _| {
            origin.to_str().is_ok_and(is_loopback)
        }))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static(crudp::protocol::CLIENT_KEY_HEADER),
        ])
}

/// A TCP proxy in front of a server that can take it off the network (refusing connections
/// and cutting the open ones) and bring it back on the same address.
pub struct Proxy {
    pub addr: SocketAddr,
    target: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    acceptor: Option<tokio::task::JoinHandle<()>>,
    connections: Vec<tokio::task::JoinHandle<()>>,
    /// Bytes carried by closed connections: to the server, and back.
    carried: (u64, u64),
}

impl Proxy {
    /// A proxy to `target` on a free port of 127.0.0.1.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            target,
            state: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    /// The CRUDP mount point through the proxy.
    pub fn url(&self) -> String {
        format!("http://{}/crudp", self.addr)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (state, target) = (Arc::clone(&self.state), self.target);
        let acceptor = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let counted = Arc::downgrade(&state);
                let connection = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let copied =
                            tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        if let (Ok((up, down)), Some(state)) = (copied, counted.upgrade()) {
                            let mut state = state.lock().unwrap();
                            state.carried.0 += up;
                            state.carried.1 += down;
                        }
                    }
                });
                let mut state = state.lock().unwrap();
                state.connections.retain(|c| !c.is_finished());
                state.connections.push(connection);
            }
        });
        self.state.lock().unwrap().acceptor = Some(acceptor);
    }

    /// The bytes carried by the connections closed so far: to the server, and back.
    pub fn carried(&self) -> (u64, u64) {
        self.state.lock().unwrap().carried
    }

    /// Waits until every connection through the proxy has closed.
    pub async fn drained(&self) {
        for _ in 0..500 {
            let open = {
                let mut state = self.state.lock().unwrap();
                state.connections.retain(|c| !c.is_finished());
                state.connections.len()
            };
            if open == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Refuses new connections and cuts the open ones.
    pub async fn down(&self) {
        let (acceptor, connections) = {
            let mut state = self.state.lock().unwrap();
            (
                state.acceptor.take(),
                std::mem::take(&mut state.connections),
            )
        };
        for task in acceptor.into_iter().chain(connections) {
            task.abort();
            let _ = task.await;
        }
    }

    /// Points the proxy at another server (one started after a restart, say), from its next
    /// [`up`](Self::up) on.
    pub fn retarget(&mut self, target: SocketAddr) {
        self.target = target;
    }

    /// Accepts connections again, on the same address; nothing if it already does.
    pub async fn up(&self) {
        if self.state.lock().unwrap().acceptor.is_some() {
            return;
        }
        for _ in 0..100 {
            if let Ok(listener) = tokio::net::TcpListener::bind(self.addr).await {
                self.serve(listener);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} could not be bound again", self.addr);
    }
}

/// A batch of `client` whose packets are `(seq, module, action, args)`, encoded for the wire.
pub fn batch_of(client: ClientId, packets: Vec<(u64, u32, crudp::Action, Vec<u8>)>) -> Vec<u8> {
    batch_after(client, 0, packets)
}

/// [`batch_of`], sent after the client's call `after` (`0`: none).
pub fn batch_after(
    client: ClientId,
    after: u64,
    packets: Vec<(u64, u32, crudp::Action, Vec<u8>)>,
) -> Vec<u8> {
    let packets: Vec<_> = packets
        .into_iter()
        .map(|(seq, handler, action, args)| crudp::protocol::Packet {
            seq,
            handler,
            action,
            args: args.into(),
        })
        .collect();
    crudp::protocol::encode_packets_after(client, after, packets.iter())
}

/// `Todos::create` packets with sequence numbers `seqs`, titled `"{prefix} {seq}"`.
pub fn creates(
    prefix: &str,
    seqs: impl IntoIterator<Item = u64>,
) -> Vec<(u64, u32, crudp::Action, Vec<u8>)> {
    use crudp::Module;
    seqs.into_iter()
        .map(|seq| {
            (
                seq,
                TodosClient::DESCRIPTOR.id,
                crudp::Action::Create,
                postcard::to_stdvec(&(format!("{prefix} {seq}"),)).unwrap(),
            )
        })
        .collect()
}

/// Posts `body` to `POST {url}/sync` as `user`; the status.
pub async fn sync_raw(url: &str, user: &str, body: Vec<u8>) -> u16 {
    http_as(user, "member")
        .post(format!("{url}/sync"))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Posts `body` to `POST {url}/call` as `user`; the status and, for `200`, the results.
pub async fn call_raw(
    url: &str,
    user: &str,
    body: Vec<u8>,
) -> (u16, Option<crudp::protocol::Results>) {
    let response = http_as(user, "member")
        .post(format!("{url}/call"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let results =
        (status == 200).then(|| crudp::protocol::decode_results(&bytes, usize::MAX).unwrap());
    (status, results)
}

/// The status of `POST {url}/token` for `client` as `user`.
pub async fn token_status(url: &str, user: &str, client: ClientId) -> u16 {
    http_as(user, "member")
        .post(format!("{url}/token"))
        .body(token_request(&[client]))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The body of `POST /token` for a stream of `clients`.
pub fn token_request(clients: &[ClientId]) -> Vec<u8> {
    postcard::to_stdvec(&crudp::protocol::TokenRequest {
        clients: clients.to_vec(),
    })
    .unwrap()
}

/// An HTTP/1.1 proxy that, like a proxy with response buffering on, passes each response on
/// only once it is complete: an event stream never gets through, a poll does.
pub struct BufferingProxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl BufferingProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = buffer_responses(inbound, outbound).await;
                    }
                });
            }
        });
        Self { addr, task }
    }

    /// The CRUDP mount point through the proxy.
    pub fn url(&self) -> String {
        format!("http://{}/crudp", self.addr)
    }
}

impl Drop for BufferingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn buffer_responses(
    inbound: tokio::net::TcpStream,
    outbound: tokio::net::TcpStream,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let (mut client_in, mut client_out) = inbound.into_split();
    let (server_in, mut server_out) = outbound.into_split();
    tokio::spawn(async move { tokio::io::copy(&mut client_in, &mut server_out).await });
    let mut server = BufReader::new(server_in);
    loop {
        let mut message = Vec::new();
        // The head.
        loop {
            let before = message.len();
            if server.read_until(b'\n', &mut message).await? == 0 {
                return Ok(());
            }
            if &message[before..] == b"\r\n" {
                break;
            }
        }
        let head = String::from_utf8_lossy(&message).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        if head.contains("transfer-encoding: chunked") {
            loop {
                let start = message.len();
                server.read_until(b'\n', &mut message).await?;
                let line = String::from_utf8_lossy(&message[start..]).trim().to_owned();
                let size = usize::from_str_radix(line.split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::other("a bad chunk size"))?;
                if size == 0 {
                    server.read_until(b'\n', &mut message).await?;
                    break;
                }
                let mut chunk = vec![0; size + 2];
                server.read_exact(&mut chunk).await?;
                message.extend_from_slice(&chunk);
            }
        } else if let Some(length) = length {
            let mut body = vec![0; length];
            server.read_exact(&mut body).await?;
            message.extend_from_slice(&body);
        }
        client_out.write_all(&message).await?;
    }
}

/// A `redis-server` of the test's own, on a free port with its files in a directory of its
/// own; stopped, and its files removed, when dropped.
pub struct RedisServer {
    process: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    /// Starts one (with the append-only file on, as the scale-out guarantees assume) and
    /// waits until it answers.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("crudp-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            process: Self::spawn(port, &dir),
            port,
            dir,
        };
        server.wait().await;
        server
    }

    fn spawn(port: u16, dir: &std::path::Path) -> std::process::Child {
        std::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (`cargo xtask test` installs it)")
    }

    async fn wait(&mut self) {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A client for it.
    pub fn client(&self) -> crudp_redis::redis::Client {
        crudp_redis::redis::Client::open(self.url()).unwrap()
    }

    /// Kills it (`-9`), keeping its files.
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    /// Starts it again on the same port and files, after [`kill`](Self::kill).
    pub async fn restart(&mut self) {
        self.process = Self::spawn(self.port, &self.dir);
        self.wait().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy that sends each new connection to the next of its targets in turn, as a
/// round-robin load balancer does: one client's requests and its event stream land on
/// different servers.
pub struct RoundRobinProxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl RoundRobinProxy {
    pub async fn start(targets: Vec<SocketAddr>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut next = 0;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = targets[next % targets.len()];
                next += 1;
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, task }
    }

    /// The CRUDP mount point through the proxy.
    pub fn url(&self) -> String {
        format!("http://{}/crudp", self.addr)
    }
}

impl Drop for RoundRobinProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The token secret of a [`Cluster`]'s instances.
pub const CLUSTER_SECRET: &[u8] = b"the instances' shared secret, 32 bytes or more";

/// Several [`Server`]s acting as one: one store, a `redis-server` of their own as the backend,
/// behind a [`RoundRobinProxy`].
pub struct Cluster {
    pub servers: Vec<Server>,
    pub proxy: RoundRobinProxy,
    pub redis: RedisServer,
}

impl Cluster {
    /// `instances` servers, each built by `configure` after the backend and the secret are set.
    pub async fn start(instances: usize, configure: impl Fn(CrudpBuilder) -> CrudpBuilder) -> Self {
        let redis = RedisServer::start().await;
        let store = Arc::new(Store::default());
        let mut servers = Vec::new();
        for _ in 0..instances {
            let backend = crudp_redis::RedisBackend::connect(&redis.url())
                .await
                .unwrap();
            let configure =
                |b: CrudpBuilder| configure(b.backend(backend).token_secret(CLUSTER_SECRET));
            servers.push(Server::start_sharing(Arc::clone(&store), configure).await);
        }
        let proxy = RoundRobinProxy::start(servers.iter().map(|s| s.addr).collect()).await;
        Self {
            servers,
            proxy,
            redis,
        }
    }

    /// The CRUDP mount point through the proxy.
    pub fn url(&self) -> String {
        self.proxy.url()
    }

    /// Batches that reached the instances.
    pub fn requests(&self) -> usize {
        self.servers.iter().map(Server::requests).sum()
    }

    /// Executions in the shared store.
    pub fn executions(&self) -> usize {
        self.servers[0].executions()
    }
}
