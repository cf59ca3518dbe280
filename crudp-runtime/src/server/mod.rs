//! The axum server: the [`Crudp`] builder, the batch queue and executor, and the endpoints.

mod events;
mod execute;
mod held;
mod layer;
pub(crate) mod metrics;
mod origin;
mod panics;
mod queue;
mod reply;
mod router;
mod serve;
mod slots;
#[cfg(feature = "files")]
mod upload;

pub use layer::{Call, CallLayer, Next, Rejected};
pub use origin::AllowedOrigins;
pub use router::MAX_SEQ;
pub use serve::{
    DEFAULT_CONNECTIONS_PER_ADDRESS, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_WRITE_TIMEOUT, Serve, serve,
};
use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use serde::Serialize;

pub use crate::{
    auth::{Anonymous, AuthError, Authenticator, Claims, TokenError, TokenKey},
    hub::{
        Channel, Frame, Hub, HubError, MemoryHub, Opened, Publication, Start, Subscriber,
        Subscription,
        memory::{
            DEFAULT_CONNECTION_BUFFER, DEFAULT_CONNECTIONS_PER_USER, DEFAULT_REPLAY_BUFFER,
            DEFAULT_REPLAY_BYTES,
        },
    },
    outcomes::{
        Begin, Claim, ClientLimit, Lease, MemoryOutcomes, OutcomeLimits, OutcomeStore, StoreError,
    },
};
use crate::{
    context::{Target, User},
    dispatch::Dispatch,
    module::ModuleDescriptor,
    protocol::{Action, Broadcast, ClientId, EventKind},
};
#[cfg(feature = "files")]
pub use {
    crate::files::{
        DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FILES_PER_USER, DEFAULT_UPLOAD_EXPIRY,
        DEFAULT_UPLOAD_QUOTA, DEFAULT_UPLOADS_AT_ONCE, DEFAULT_UPLOADS_PER_USER, FileError,
        FileReader, Files,
    },
    object_store,
};
#[cfg(feature = "sqlite")]
pub use {
    crate::outcomes::{SqliteEffects, SqliteOutcomes},
    rusqlite,
};

/// Default for [`CrudpBuilder::max_body_bytes`]: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;
/// Default for [`CrudpBuilder::max_packets`]: 4,096 packets per batch.
pub const DEFAULT_MAX_PACKETS: usize = 4096;
/// Default for [`CrudpBuilder::queue_depth`]: 1,024 batches.
pub const DEFAULT_QUEUE_DEPTH: usize = 1024;
/// Default for [`CrudpBuilder::queue_bytes`]: 64 MiB of batches waiting.
pub const DEFAULT_QUEUE_BYTES: usize = 64 << 20;
/// Default for [`CrudpBuilder::queue_per_client`]: 16 batches of one client.
pub const DEFAULT_QUEUE_PER_CLIENT: usize = 16;
/// Default for [`CrudpBuilder::workers`]: 16 batches at once.
pub const DEFAULT_WORKERS: usize = 16;
/// Default for [`CrudpBuilder::queue_per_user`]: 256 batches of one user, a quarter of the
/// default queue.
pub const DEFAULT_QUEUE_PER_USER: usize = 256;
/// Default for [`CrudpBuilder::workers_per_user`]: 4 batches of one user at once, a quarter of
/// the default workers.
pub const DEFAULT_WORKERS_PER_USER: usize = 4;
/// Default for [`CrudpBuilder::max_streams`]: 10,000 event streams and polls open at once.
pub const DEFAULT_MAX_STREAMS: usize = 10_000;
/// Default for [`CrudpBuilder::streams_per_address`]: 256 of one IP address.
pub const DEFAULT_STREAMS_PER_ADDRESS: usize = 256;
/// Default for [`CrudpBuilder::body_timeout`]: 30 seconds.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The least an upload's body must bring, in bytes a second on average, once it has been
/// arriving for longer than [`CrudpBuilder::body_timeout`]: a slower one gets `408` (what
/// arrived is kept, and the upload goes on from there when sent again).
pub const MIN_UPLOAD_RATE: u64 = 1024;
/// Default for [`CrudpBuilder::handler_timeout`]: 30 seconds.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`CrudpBuilder::token_ttl`]: 10 minutes.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(600);
/// Default for [`CrudpBuilder::heartbeat`]: a `: ping` comment every 30 seconds.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// Default for [`CrudpBuilder::retry_hint`]: browsers reconnect after 2 seconds.
pub const DEFAULT_RETRY_HINT: Duration = Duration::from_secs(2);
/// Default for [`CrudpBuilder::results_event_bytes`]: 1 MiB.
pub const DEFAULT_RESULTS_EVENT_BYTES: usize = 1 << 20;

/// A CRUDP server: its modules, authentication, limits, queue, hub and outcome store.
///
/// ```no_run
/// # async fn doc(todos: impl crudp_runtime::Dispatch) -> std::io::Result<()> {
/// use crudp_runtime::server::Crudp;
///
/// let api = Crudp::builder().handler(todos).build();
/// let app = axum::Router::new().nest("/crudp", api.router());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// crudp_runtime::server::serve(listener, app).await
/// # }
/// ```
///
/// Cloning is cheap: clones share everything.
#[derive(Clone)]
pub struct Crudp {
    shared: Arc<Shared>,
}

/// The peer of an event stream, for [`CrudpBuilder::on_connect`] and [`CrudpBuilder::on_disconnect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The connection's user.
    pub user: User,
    /// The connection's clients: one, or every tab's of a browser that shares one stream.
    pub clients: Vec<ClientId>,
}

type Hook = Box<dyn Fn(&Peer) + Send + Sync>;

struct Shared {
    modules: HashMap<u32, Box<dyn Dispatch>>,
    authenticator: Box<dyn Authenticator>,
    hub: Box<dyn Hub>,
    outcomes: Box<dyn OutcomeStore>,
    tokens: TokenKey,
    limits: Limits,
    on_connect: Option<Hook>,
    on_disconnect: Option<Hook>,
    /// The per-call middleware, outermost first.
    layers: Vec<Arc<dyn CallLayer>>,
    queue: queue::Queue,
    allowed_origins: AllowedOrigins,
    /// The event streams and polls open.
    streams: Arc<slots::Slots>,
    /// Broadcasts waiting for their calls' outcomes to be durable, and those queued behind.
    held: held::Held,
    #[cfg(feature = "files")]
    files: Option<Files>,
    /// The answer of `GET /modules` (its JSON, or why there is none), made at its first
    /// request: the modules never change after `build`.
    description: std::sync::OnceLock<Result<Vec<u8>, String>>,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_body_bytes: usize,
    max_packets: usize,
    queue_depth: usize,
    queue_bytes: usize,
    queue_per_client: usize,
    queue_per_user: usize,
    workers: usize,
    workers_per_user: usize,
    handler_timeout: Duration,
    body_timeout: Duration,
    max_streams: usize,
    streams_per_address: usize,
    authenticate_streams: bool,
    describe_modules: bool,
    token_ttl: Duration,
    heartbeat: Duration,
    retry_hint: Duration,
    results_event_bytes: usize,
}

impl Crudp {
    /// Starts building a server: mount the generated `{Trait}Server`s with
    /// [`handler`](CrudpBuilder::handler), say how requests are authenticated, where
    /// outcomes and events are kept; every limit has a safe default.
    ///
    /// ```no_run
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    ///
    /// use crudp_runtime::{User, server::{AuthError, Crudp}};
    ///
    /// let api = Crudp::builder()
    ///     // .handler(TodosServer::new(store)) for each module
    ///     .authenticator(|parts: &axum::http::request::Parts| {
    ///         match parts.headers.get("x-user").and_then(|v| v.to_str().ok()) {
    ///             Some(name) => Ok(User::new(name, "user")),
    ///             None => Err(AuthError::new("sign in first")),
    ///         }
    ///     })
    ///     .handler_timeout(Duration::from_secs(10))
    ///     .build();
    /// let app = axum::Router::new().nest("/crudp", api.router());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// crudp_runtime::server::serve(listener, app).await?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> CrudpBuilder {
        CrudpBuilder {
            modules: Vec::new(),
            authenticator: Box::new(Anonymous),
            hub: None,
            outcomes: None,
            secret: None,
            previous_secret: None,
            shared_backend: false,
            limits: Limits {
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                max_packets: DEFAULT_MAX_PACKETS,
                queue_depth: DEFAULT_QUEUE_DEPTH,
                queue_bytes: DEFAULT_QUEUE_BYTES,
                queue_per_client: DEFAULT_QUEUE_PER_CLIENT,
                queue_per_user: DEFAULT_QUEUE_PER_USER,
                workers: DEFAULT_WORKERS,
                workers_per_user: DEFAULT_WORKERS_PER_USER,
                handler_timeout: DEFAULT_HANDLER_TIMEOUT,
                body_timeout: DEFAULT_BODY_TIMEOUT,
                max_streams: DEFAULT_MAX_STREAMS,
                streams_per_address: DEFAULT_STREAMS_PER_ADDRESS,
                authenticate_streams: true,
                describe_modules: false,
                token_ttl: DEFAULT_TOKEN_TTL,
                heartbeat: DEFAULT_HEARTBEAT,
                retry_hint: DEFAULT_RETRY_HINT,
                results_event_bytes: DEFAULT_RESULTS_EVENT_BYTES,
            },
            replay_buffer: DEFAULT_REPLAY_BUFFER,
            replay_bytes: DEFAULT_REPLAY_BYTES,
            connection_buffer: DEFAULT_CONNECTION_BUFFER,
            connections_per_user: DEFAULT_CONNECTIONS_PER_USER,
            hub_settings: Vec::new(),
            on_connect: None,
            on_disconnect: None,
            layers: Vec::new(),
            allowed_origins: AllowedOrigins::none(),
            #[cfg(feature = "files")]
            files: FileSettings {
                store: None,
                limits: crate::files::store::FileLimits {
                    max_file_bytes: DEFAULT_MAX_FILE_BYTES,
                    quota: DEFAULT_UPLOAD_QUOTA,
                    expiry: DEFAULT_UPLOAD_EXPIRY,
                    at_once: DEFAULT_UPLOADS_AT_ONCE,
                    per_user: DEFAULT_UPLOADS_PER_USER,
                    files: DEFAULT_MAX_FILES_PER_USER,
                },
            },
        }
    }

    /// The server's uploaded files, if it keeps any (see
    /// [`CrudpBuilder::files_dir`]): to open one for a download route of the application's
    /// own, or to delete one no record refers to any more.
    #[cfg(feature = "files")]
    pub fn files(&self) -> Option<&Files> {
        self.shared.files.as_ref()
    }

    /// The shapes of the mounted modules' actions and of the types they use, traced from
    /// serde: what `GET /modules` answers (see [`CrudpBuilder::describe_modules`]) and what
    /// an API lock file holds.
    ///
    /// # Errors
    ///
    /// [`DescribeError`](crate::describe::DescribeError) if a type cannot be traced (a custom
    /// `Deserialize` that refuses the tracer's samples), naming it.
    pub fn describe(&self) -> Result<crate::describe::Description, crate::describe::DescribeError> {
        crate::describe::Description::of(|describer| {
            for module in self.shared.modules.values() {
                describer.descriptor(module.descriptor(), |shapes| module.describe(shapes));
            }
        })
    }

    /// The descriptors of the mounted modules, in no particular order.
    pub fn modules(&self) -> impl Iterator<Item = &'static ModuleDescriptor> + '_ {
        self.shared.modules.values().map(|m| m.descriptor())
    }

    /// Publishes `value` as the result of `action` of `module` to `target`, from server code
    /// outside handlers: the clients' `on_<action>` listeners receive it. For an action that
    /// returns `()`, publish its arguments, as its listeners expect them.
    ///
    /// This untyped form is for generic code: the generated `{Trait}Server::broadcast_<action>`
    /// functions check the value's type against the action.
    ///
    /// ```no_run
    /// # async fn doc(
    /// #     api: crudp_runtime::server::Crudp,
    /// #     todos: &crudp_runtime::ModuleDescriptor,
    /// #     todo: String,
    /// # ) -> Result<(), crudp_runtime::server::HubError> {
    /// use crudp_runtime::{Action, Target};
    ///
    /// api.broadcast(todos, Action::Update, &todo, Target::All).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        module: &ModuleDescriptor,
        action: Action,
        value: &T,
        target: Target,
    ) -> Result<(), HubError> {
        let value = crate::encode(value)
            .map_err(|e| HubError::Unavailable(format!("the value does not encode: {e}")))?;
        self.publish_broadcast(
            Broadcast {
                handler: module.id,
                action,
                value: value.into(),
                origin: None,
            },
            target.into(),
            None,
        )
        .await
    }

    async fn publish_broadcast(
        &self,
        broadcast: Broadcast,
        channel: Channel,
        except: Option<ClientId>,
    ) -> Result<(), HubError> {
        let data = postcard::to_stdvec(&broadcast).expect("a broadcast always encodes");
        let publication = Publication {
            channel,
            kind: EventKind::Broadcast,
            data,
            except,
        };
        self.shared.hub.publish(publication).await.map(drop)
    }
}

impl crate::Broadcaster for Crudp {
    type Error = HubError;

    fn broadcast<T: Serialize + ?Sized + Sync>(
        &self,
        module: &ModuleDescriptor,
        action: Action,
        payload: &T,
        target: Target,
    ) -> impl Future<Output = Result<(), HubError>> + Send {
        Crudp::broadcast(self, module, action, payload, target)
    }
}

impl std::fmt::Debug for Crudp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crudp")
            .field("modules", &self.modules().collect::<Vec<_>>())
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Crudp`] server; made by [`Crudp::builder`]. Every limit has a safe default.
#[must_use]
pub struct CrudpBuilder {
    modules: Vec<Box<dyn Dispatch>>,
    authenticator: Box<dyn Authenticator>,
    hub: Option<Box<dyn Hub>>,
    outcomes: Option<Box<dyn OutcomeStore>>,
    secret: Option<Vec<u8>>,
    previous_secret: Option<Vec<u8>>,
    shared_backend: bool,
    limits: Limits,
    replay_buffer: usize,
    replay_bytes: usize,
    connection_buffer: usize,
    connections_per_user: usize,
    /// The settings of the in-memory hub given, which a hub of one's own would not take.
    hub_settings: Vec<&'static str>,
    on_connect: Option<Hook>,
    on_disconnect: Option<Hook>,
    layers: Vec<Arc<dyn CallLayer>>,
    allowed_origins: AllowedOrigins,
    #[cfg(feature = "files")]
    files: FileSettings,
}

/// Where a server keeps uploaded files, and their limits.
#[cfg(feature = "files")]
struct FileSettings {
    store: Option<FileStore>,
    limits: crate::files::store::FileLimits,
}

#[cfg(feature = "files")]
enum FileStore {
    Dir(std::path::PathBuf),
    Store(Arc<dyn object_store::ObjectStore>),
}

#[cfg(feature = "files")]
impl CrudpBuilder {
    /// Keeps uploaded files in the directory `dir` (made if missing), on `object_store`'s
    /// local file system store. Without this or [`file_store`](Self::file_store), the server
    /// takes no uploads (`501`) and handlers can open inline files only.
    pub fn files_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.files.store = Some(FileStore::Dir(dir.into()));
        self
    }

    /// Keeps uploaded files in `store`: any [`object_store::ObjectStore`], such as an
    /// S3-compatible one (enable the matching feature of `object_store`, at the version
    /// `crudp::server::object_store` re-exports). Servers that share a store carry on each
    /// other's uploads; each enforces [`upload_quota`](Self::upload_quota), and one writer per
    /// upload, among the requests it serves.
    pub fn file_store(mut self, store: Arc<dyn object_store::ObjectStore>) -> Self {
        self.files.store = Some(FileStore::Store(store));
        self
    }

    /// The largest file an upload may announce; larger ones get `413`. Default:
    /// [`DEFAULT_MAX_FILE_BYTES`].
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.files.limits.max_file_bytes = bytes;
        self
    }

    /// The most bytes one user's files (complete or not) may take; an upload beyond it gets
    /// `413`. Anonymous visitors share one quota per IP address. Default:
    /// [`DEFAULT_UPLOAD_QUOTA`].
    pub fn upload_quota(mut self, bytes: u64) -> Self {
        self.files.limits.quota = bytes;
        self
    }

    /// The most uploads one user's account keeps, complete or not (each costs a record in the
    /// store and in memory, however small); a new one beyond it gets `413` until some are
    /// removed. Anonymous visitors share one count per IP address. Default:
    /// [`DEFAULT_MAX_FILES_PER_USER`].
    pub fn max_files_per_user(mut self, files: usize) -> Self {
        self.files.limits.files = files;
        self
    }

    /// How many uploads are written at once, of all users; more get `503` with
    /// `Retry-After` (clients try again). Each holds up to 8 MiB while it writes.
    /// Default: [`DEFAULT_UPLOADS_AT_ONCE`].
    pub fn uploads_at_once(mut self, uploads: usize) -> Self {
        self.files.limits.at_once = uploads.max(1);
        self
    }

    /// How many uploads of one user (anonymous visitors: of one IP address) are written at
    /// once; more get `503` with `Retry-After`. Default: [`DEFAULT_UPLOADS_PER_USER`].
    pub fn uploads_per_user(mut self, uploads: usize) -> Self {
        self.files.limits.per_user = uploads.max(1);
        self
    }

    /// How long an upload may go without receiving bytes before it is removed, if it is not
    /// complete. Default: [`DEFAULT_UPLOAD_EXPIRY`].
    pub fn upload_expiry(mut self, expiry: Duration) -> Self {
        self.files.limits.expiry = expiry;
        self
    }
}

impl CrudpBuilder {
    /// Mounts a module: the `{Trait}Server` that `#[crudp::module]` generates.
    pub fn handler(mut self, module: impl Dispatch) -> Self {
        self.modules.push(Box::new(module));
        self
    }

    /// Adds per-call middleware (see [`CallLayer`]): it runs around every call of a mounted
    /// module's action, after the layers added before it, and may refuse the call, time it or
    /// log it. Calls answered from the outcome store (sent again) do not run it again.
    pub fn layer(mut self, layer: impl CallLayer) -> Self {
        self.layers.push(Arc::new(layer));
        self
    }

    /// Sets how requests are authenticated. The default, [`Anonymous`], lets everyone in as
    /// [`User::anonymous`].
    ///
    /// A request the authenticator lets in as [`User::anonymous`] is made by the anonymous
    /// visitor of its client key: the random key every CRUDP client sends in the
    /// [`CLIENT_KEY_HEADER`](crate::protocol::CLIENT_KEY_HEADER) header (one per browser,
    /// shared by its tabs; one per native client, or per storage). Its [`User`] is
    /// `anonymous:<digest of the key>` with role `anonymous`, so a client ID belongs to one key
    /// and nobody who only learns the ID can use it. Without the header such a request gets
    /// `401`. Anonymous identities cost nothing to make, so the per-user shares of the queue
    /// and the workers apply per IP address for them.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Box::new(authenticator);
        self
    }

    /// The origins besides the server's own whose pages may call `POST /call`, `/sync` and
    /// `/token` (a browser's request from any other is refused with `403`). Default: none.
    /// List the origins the server's CORS layer allows.
    pub fn allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.allowed_origins = origins;
        self
    }

    /// Replaces the in-memory hub, e.g. with a shared backend for several server processes.
    pub fn hub(mut self, hub: impl Hub) -> Self {
        self.hub = Some(Box::new(hub));
        self
    }

    /// Sets where exactly-once state lives. Default: a [`MemoryOutcomes`] with default
    /// [`OutcomeLimits`], which a restart forgets; `SqliteOutcomes` (feature `sqlite`)
    /// survives restarts. The store's limits are set on its own constructor.
    pub fn outcome_store(mut self, store: impl OutcomeStore) -> Self {
        self.outcomes = Some(Box::new(store));
        self
    }

    /// Whether `GET {mount}/modules` answers the [`Description`](crate::describe::Description)
    /// of the mounted modules (their IDs, actions and the serde shapes of their arguments,
    /// values and errors) in JSON. Default: no (`404`), as it tells anyone how to call the
    /// API; when on, only signed-in users (whom the authenticator names) get it, anonymous
    /// visitors `401`.
    pub fn describe_modules(mut self, describe: bool) -> Self {
        self.limits.describe_modules = describe;
        self
    }

    /// Whether `GET /events` and `GET /poll` also run the authenticator (default: yes), so that
    /// a stream ends at its next reconnection once its user signed out (the authenticator
    /// refuses the request), signed in as someone else or changed role: `401`. A request the
    /// authenticator lets in as anonymous rides on its token alone. Turn it off only when the
    /// authenticator needs what an `EventSource` cannot send (an `Authorization` header) and
    /// refuses requests without it; streams then end only when their token expires.
    pub fn authenticate_streams(mut self, authenticate: bool) -> Self {
        self.limits.authenticate_streams = authenticate;
        self
    }

    /// The secret that signs event-stream tokens, at least [`MIN_TOKEN_SECRET`] bytes;
    /// servers that share a [`backend`](Self::backend) must share it. Default: a random secret
    /// per process.
    pub fn token_secret(mut self, secret: &[u8]) -> Self {
        self.secret = Some(secret.to_vec());
        self
    }

    /// The secret [`token_secret`](Self::token_secret) replaces, during a rotation: tokens it
    /// signed still verify, new ones are signed with the new secret. Keep it for the tokens'
    /// lifetime ([`token_ttl`](Self::token_ttl)) after every server has the new one. Like the
    /// current one, it needs at least [`MIN_TOKEN_SECRET`] bytes.
    pub fn previous_token_secret(mut self, secret: &[u8]) -> Self {
        self.previous_secret = Some(secret.to_vec());
        self
    }

    /// Puts the event hub and the exactly-once state in a backend that several server
    /// processes share, so that they act as one (`crudp_redis::RedisBackend`, say). Such
    /// servers must also share a [`token_secret`](Self::token_secret): building refuses
    /// without one.
    pub fn backend(mut self, backend: impl Backend) -> Self {
        let parts = backend.into_parts();
        self.hub = Some(parts.hub);
        self.outcomes = Some(parts.outcomes);
        self.shared_backend = true;
        self
    }

    /// How long an event-stream token lives. Default: [`DEFAULT_TOKEN_TTL`].
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.limits.token_ttl = ttl;
        self
    }

    /// The largest request body accepted; larger ones get `413 Payload Too Large`.
    /// Default: [`DEFAULT_MAX_BODY_BYTES`].
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_body_bytes = bytes;
        self
    }

    /// The most packets one batch may hold; larger batches get `400 Bad Request`. Never more
    /// than the outcome store keeps per client ([`OutcomeLimits::outcomes_per_client`]);
    /// clients learn it with their token and split their batches to fit.
    /// Default: [`DEFAULT_MAX_PACKETS`].
    pub fn max_packets(mut self, packets: usize) -> Self {
        self.limits.max_packets = packets;
        self
    }

    /// The most batches waiting to run; beyond it requests get `503` with `Retry-After`.
    /// Default: [`DEFAULT_QUEUE_DEPTH`].
    pub fn queue_depth(mut self, batches: usize) -> Self {
        self.limits.queue_depth = batches;
        self
    }

    /// The most bytes of batches (as received) waiting to run; beyond it requests get `503`
    /// with `Retry-After`. A batch is always accepted into an empty queue. Default:
    /// [`DEFAULT_QUEUE_BYTES`].
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.limits.queue_bytes = bytes;
        self
    }

    /// The most batches of one client waiting to run, so that one client cannot fill the
    /// queue; beyond it that client gets `503`. Default: [`DEFAULT_QUEUE_PER_CLIENT`].
    pub fn queue_per_client(mut self, batches: usize) -> Self {
        self.limits.queue_per_client = batches.max(1);
        self
    }

    /// The most batches of one user (of all its clients) waiting to run, so that one user
    /// cannot fill the queue, however many client IDs it makes; beyond it that user gets
    /// `503`. Anonymous visitors (see [`authenticator`](Self::authenticator)) share per IP
    /// address. Default: [`DEFAULT_QUEUE_PER_USER`].
    pub fn queue_per_user(mut self, batches: usize) -> Self {
        self.limits.queue_per_user = batches.max(1);
        self
    }

    /// How many batches (of different clients) run at once. Default: [`DEFAULT_WORKERS`].
    pub fn workers(mut self, workers: usize) -> Self {
        self.limits.workers = workers.max(1);
        self
    }

    /// How many batches of one user (of different clients) run at once, so that one user's
    /// slow or hanging handlers leave the other workers to other users; anonymous visitors
    /// share per IP address. Default: [`DEFAULT_WORKERS_PER_USER`].
    pub fn workers_per_user(mut self, workers: usize) -> Self {
        self.limits.workers_per_user = workers.max(1);
        self
    }

    /// The most event streams (and polls) open at once, of all users; more get `503`.
    /// Default: [`DEFAULT_MAX_STREAMS`].
    pub fn max_streams(mut self, streams: usize) -> Self {
        self.limits.max_streams = streams;
        self
    }

    /// The most event streams (and polls) one IP address may hold open; more get `429`. The
    /// address is the peer's, as [`serve`] (or axum's `into_make_service_with_connect_info`)
    /// records it; without it, only [`max_streams`](Self::max_streams) applies. Behind a
    /// reverse proxy every client has the proxy's address: raise it there. Default:
    /// [`DEFAULT_STREAMS_PER_ADDRESS`].
    pub fn streams_per_address(mut self, streams: usize) -> Self {
        self.limits.streams_per_address = streams;
        self
    }

    /// How long a request's body may take to arrive; a slower one gets `408` and its
    /// connection is closed. An upload (`PUT /upload/{id}`), which may take far longer, may
    /// instead go this long without a byte, and once it has been arriving for this long it
    /// must average [`MIN_UPLOAD_RATE`]. Default: [`DEFAULT_BODY_TIMEOUT`].
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.limits.body_timeout = timeout;
        self
    }

    /// How long one call's handler may run. A handler still running then is stopped (its
    /// future is dropped) and its call answered `Rejected` with [`RejectCode::Timeout`], for
    /// good: it may have done part of its work, so it is not run again. Default:
    /// [`DEFAULT_HANDLER_TIMEOUT`].
    ///
    /// [`RejectCode::Timeout`]: crate::protocol::RejectCode::Timeout
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.limits.handler_timeout = timeout;
        self
    }

    /// How many events the in-memory hub keeps for `Last-Event-ID` replay.
    /// Default: [`DEFAULT_REPLAY_BUFFER`].
    /// Of the default hub: with [`hub`](Self::hub) or [`backend`](Self::backend), set it on
    /// that hub instead ([`BuildError::HubSetting`]).
    pub fn replay_buffer(mut self, events: usize) -> Self {
        self.replay_buffer = events;
        self.hub_settings.push("replay_buffer");
        self
    }

    /// How many events may wait for one slow connection before it is closed (it recovers by
    /// replay). Default: [`DEFAULT_CONNECTION_BUFFER`].
    /// Of the default hub: with [`hub`](Self::hub) or [`backend`](Self::backend), set it on
    /// that hub instead ([`BuildError::HubSetting`]).
    pub fn connection_buffer(mut self, events: usize) -> Self {
        self.connection_buffer = events;
        self.hub_settings.push("connection_buffer");
        self
    }

    /// How many event streams one user may hold open; more get `429`.
    /// Default: [`DEFAULT_CONNECTIONS_PER_USER`].
    /// Of the default hub: with [`hub`](Self::hub) or [`backend`](Self::backend), set it on
    /// that hub instead ([`BuildError::HubSetting`]).
    pub fn connections_per_user(mut self, connections: usize) -> Self {
        self.connections_per_user = connections;
        self.hub_settings.push("connections_per_user");
        self
    }

    /// The most bytes of events the in-memory hub keeps for replay, besides the count of
    /// [`replay_buffer`](Self::replay_buffer); the oldest go first. Default:
    /// [`DEFAULT_REPLAY_BYTES`].
    /// Of the default hub: with [`hub`](Self::hub) or [`backend`](Self::backend), set it on
    /// that hub instead ([`BuildError::HubSetting`]).
    pub fn replay_bytes(mut self, bytes: usize) -> Self {
        self.replay_bytes = bytes;
        self.hub_settings.push("replay_bytes");
        self
    }

    /// The most bytes of outcomes one `event: results` carries; a batch whose results are
    /// larger is answered in several events. Default: [`DEFAULT_RESULTS_EVENT_BYTES`].
    pub fn results_event_bytes(mut self, bytes: usize) -> Self {
        self.limits.results_event_bytes = bytes.max(1);
        self
    }

    /// The interval of the `: ping` heartbeat comment, at least a millisecond. Default:
    /// [`DEFAULT_HEARTBEAT`].
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.limits.heartbeat = interval.max(Duration::from_millis(1));
        self
    }

    /// The `retry:` hint sent when a stream opens. Default: [`DEFAULT_RETRY_HINT`].
    pub fn retry_hint(mut self, delay: Duration) -> Self {
        self.limits.retry_hint = delay;
        self
    }

    /// Called when an event stream opens, e.g. to track presence.
    pub fn on_connect(mut self, hook: impl Fn(&Peer) + Send + Sync + 'static) -> Self {
        self.on_connect = Some(Box::new(hook));
        self
    }

    /// Called when an event stream closes.
    pub fn on_disconnect(mut self, hook: impl Fn(&Peer) + Send + Sync + 'static) -> Self {
        self.on_disconnect = Some(Box::new(hook));
        self
    }

    /// Builds the server, or says which two modules share a wire ID.
    pub fn try_build(self) -> Result<Crudp, BuildError> {
        let mut modules: HashMap<u32, Box<dyn Dispatch>> = HashMap::new();
        for module in self.modules {
            let descriptor = module.descriptor();
            if let Some(first) = modules.get(&descriptor.id) {
                return Err(BuildError::DuplicateId {
                    first: *first.descriptor(),
                    second: *descriptor,
                });
            }
            modules.insert(descriptor.id, module);
        }
        if let (Some(_), Some(setting)) = (&self.hub, self.hub_settings.first()) {
            return Err(BuildError::HubSetting { setting });
        }
        let hub = self.hub.unwrap_or_else(|| {
            Box::new(
                MemoryHub::new(
                    self.replay_buffer,
                    self.connection_buffer,
                    self.connections_per_user,
                )
                .with_replay_bytes(self.replay_bytes),
            )
        });
        let outcomes = self
            .outcomes
            .unwrap_or_else(|| Box::new(MemoryOutcomes::default()));
        let tokens = match (&self.secret, self.shared_backend) {
            (None, true) => return Err(BuildError::TokenSecret { len: None }),
            (Some(secret), _) if secret.len() < MIN_TOKEN_SECRET => {
                return Err(BuildError::TokenSecret {
                    len: Some(secret.len()),
                });
            }
            (None, false) => TokenKey::random(),
            (Some(secret), _) => TokenKey::new(secret),
        };
        let tokens = match &self.previous_secret {
            Some(previous) if previous.len() < MIN_TOKEN_SECRET => {
                return Err(BuildError::TokenSecret {
                    len: Some(previous.len()),
                });
            }
            Some(previous) => tokens.with_previous(previous),
            None => tokens,
        };
        let mut limits = self.limits;
        // A batch is never larger than the outcomes a client can have kept, so a re-sent
        // batch is answered in full.
        limits.max_packets = limits
            .max_packets
            .min(outcomes.limits().outcomes_per_client);
        #[cfg(feature = "files")]
        let files = match self.files.store {
            None => None,
            Some(store) => {
                let store: Arc<dyn object_store::ObjectStore> = match store {
                    FileStore::Store(store) => store,
                    FileStore::Dir(dir) => {
                        let local = std::fs::create_dir_all(&dir)
                            .map_err(|e| e.to_string())
                            .and_then(|()| {
                                object_store::local::LocalFileSystem::new_with_prefix(&dir)
                                    .map(|local| local.with_automatic_cleanup(true))
                                    .map_err(|e| e.to_string())
                            })
                            .map_err(|reason| BuildError::FilesDir {
                                dir: dir.display().to_string(),
                                reason,
                            })?;
                        Arc::new(local)
                    }
                };
                Some(Files::new(store, self.files.limits))
            }
        };
        panics::install_hook();
        Ok(Crudp {
            shared: Arc::new(Shared {
                modules,
                authenticator: self.authenticator,
                hub,
                outcomes,
                tokens,
                limits,
                on_connect: self.on_connect,
                on_disconnect: self.on_disconnect,
                layers: self.layers,
                queue: queue::Queue::new(limits),
                allowed_origins: self.allowed_origins,
                streams: Arc::new(slots::Slots::gauged(metrics::event_streams)),
                #[cfg(feature = "files")]
                files,
                description: std::sync::OnceLock::new(),
                held: held::Held::default(),
            }),
        })
    }

    /// Builds the server.
    ///
    /// # Panics
    ///
    /// If two mounted modules share a wire ID; the message names both. Use
    /// [`try_build`](Self::try_build) to handle that as an error.
    #[track_caller]
    pub fn build(self) -> Crudp {
        self.try_build().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The fewest bytes a [`CrudpBuilder::token_secret`] may have: 32.
pub const MIN_TOKEN_SECRET: usize = 32;

/// A backend that several server processes share: where their event hub and exactly-once
/// state live. See [`CrudpBuilder::backend`].
pub trait Backend {
    /// The hub and the outcome store.
    fn into_parts(self) -> BackendParts;
}

/// What a [`Backend`] is made of.
pub struct BackendParts {
    /// The event hub.
    pub hub: Box<dyn Hub>,
    /// The exactly-once state.
    pub outcomes: Box<dyn OutcomeStore>,
}

/// Why a [`Crudp`] server could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No token secret with a shared backend (`len: None`), or one (the current or the
    /// previous) too short to be safe.
    #[error("{}", match len {
        None => format!("servers that share a backend must share a token secret: set `token_secret` to the same random {MIN_TOKEN_SECRET} or more bytes on each"),
        Some(len) => format!("the token secret has {len} bytes; it needs at least {MIN_TOKEN_SECRET} random bytes"),
    })]
    TokenSecret {
        /// The secret's length, if one was given.
        len: Option<usize>,
    },
    /// A setting of the default in-memory hub, on a server given a hub of its own.
    #[error(
        "`{setting}` sets the default in-memory hub, but this server has a hub of its own (from `hub` or `backend`): set it on that hub (for `crudp_redis`, on the `MemoryHub` given to `RedisHub::new`)"
    )]
    HubSetting {
        /// The builder method.
        setting: &'static str,
    },
    /// The directory for uploaded files could not be made or opened.
    #[error("the files directory {dir} cannot be used: {reason}")]
    FilesDir {
        /// The directory given to `files_dir`.
        dir: String,
        /// What failed.
        reason: String,
    },
    /// Two modules have the same wire ID.
    #[error(
        "modules {first} and {second} have the same wire ID {id}: pin another ID on one of them with `#[crudp::module(id = N)]`",
        id = first.id
    )]
    DuplicateId {
        /// The module mounted first.
        first: ModuleDescriptor,
        /// The module mounted second.
        second: ModuleDescriptor,
    },
}
