//! The HTTP endpoints: `POST /call`, `POST /sync`, `POST /token` and `GET /events`.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use futures_util::future::{self, Either};
use tokio::sync::oneshot;

use super::{
    Crudp,
    queue::{Inline, Job},
    reply::{close_after, refuse, unavailable, unix_now},
};
use crate::{
    auth::Claims,
    context::{Context, User},
    outcomes::{Claim, ClientLimit},
    protocol::{
        Batch, CLIENT_KEY_HEADER, ClientId, MAX_TOKEN_CLIENTS, TokenGrant, TokenRequest,
        decode_batch_after, encode_results,
    },
};

/// The largest sequence number: 2^63 - 1, so that every store can keep it as a signed
/// 64-bit integer.
pub const MAX_SEQ: u64 = i64::MAX as u64;

impl Crudp {
    /// The axum router with the CRUDP endpoints; nest it under a prefix of your choice,
    /// e.g. `Router::new().nest("/crudp", api.router())`.
    ///
    /// The `POST` endpoints take `Content-Type: application/octet-stream` only (`415`
    /// otherwise) and, from a browser, requests of the server's own origin or of
    /// [`CrudpBuilder::allowed_origins`](super::CrudpBuilder::allowed_origins) (`403`
    /// otherwise).
    ///
    /// - `POST /call`: a postcard [`Batch`] in, `200 OK` with the postcard
    ///   [`Results`](crate::Results) out.
    /// - `POST /sync`: a [`Batch`] in, `202 Accepted` at once; the results come as an
    ///   `event: results` on the client's event stream.
    /// - `POST /token`: a postcard [`TokenRequest`] (the clients of one user whose events one
    ///   stream carries) in, a [`TokenGrant`] out: a short-lived token for `GET /events`.
    /// - `GET /events?token=…&lastEventId=…`: the event stream (Server-Sent Events).
    /// - `GET /poll?token=…&lastEventId=…`: the same events, for clients behind a proxy that
    ///   buffers event streams: each answer ends after the missed events, the first new one,
    ///   or 25 seconds.
    ///
    /// - `GET /modules`: with [`CrudpBuilder::describe_modules`](super::CrudpBuilder::describe_modules),
    ///   the [`Description`](crate::describe::Description) of the mounted modules in JSON, to
    ///   signed-in users; `404` otherwise.
    ///
    /// With the `files` feature and a file store (see
    /// [`CrudpBuilder::files_dir`](super::CrudpBuilder::files_dir)), also
    /// `PUT`, `GET` and `DELETE /upload/{id}`: see [`crate::files`].
    pub fn router(&self) -> Router {
        let router = Router::new()
            .route("/call", post(call))
            .route("/sync", post(sync))
            .route("/token", post(token))
            .route("/events", get(super::events::events))
            .route("/poll", get(super::events::poll))
            .route("/modules", get(modules));
        #[cfg(feature = "files")]
        let router = router.route(
            "/upload/{id}",
            axum::routing::put(super::upload::put)
                .get(super::upload::status)
                .delete(super::upload::cancel),
        );
        router.with_state(self.clone())
    }

    /// Checks where a request comes from and authenticates it.
    pub(super) async fn authenticate(&self, parts: &Parts) -> Result<User, Response> {
        super::origin::check(parts, &self.shared.allowed_origins)
            .map_err(|(status, message)| refuse(status, message))?;
        match self.shared.authenticator.authenticate(parts).await {
            Ok(user) if user == User::anonymous() => {
                anonymous(parts).map_err(|message| refuse(StatusCode::UNAUTHORIZED, message))
            }
            Ok(user) => Ok(user),
            Err(e) => Err(refuse(StatusCode::UNAUTHORIZED, e.to_string())),
        }
    }

    /// Checks where a request comes from, authenticates it and reads its body (at most
    /// `max_body_bytes`, within `body_timeout`).
    async fn admit(&self, request: Request) -> Result<(Parts, User, bytes::Bytes), Response> {
        let (parts, body) = request.into_parts();
        // Refused before its body is read.
        let user = self.authenticate(&parts).await.map_err(close_after)?;
        let limits = &self.shared.limits;
        let body = read_body(body, limits.max_body_bytes, limits.body_timeout).await?;
        Ok((parts, user, body))
    }

    /// Checks that `client` is `user`'s: a client ID belongs to the first user that uses it.
    /// New IDs are counted per minute against `rate`, what the request shares limits by (see
    /// [`share`]): an anonymous visitor's address.
    async fn claim(&self, client: ClientId, user: &User, rate: &str) -> Result<(), Response> {
        match self.shared.outcomes.claim_at(client, &user.id, rate).await {
            Ok(Claim::Granted) => Ok(()),
            Ok(Claim::Foreign) => Err(refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "client {client} belongs to another user; each client makes its own random ID"
                ),
            )),
            Ok(Claim::Refused(limit @ ClientLimit::Total(_))) => {
                Err(unavailable(limit.to_string()))
            }
            Ok(Claim::Refused(limit)) => {
                let mut response = refuse(StatusCode::TOO_MANY_REQUESTS, limit.to_string());
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
                Err(response)
            }
            Err(e) => Err(unavailable(e.to_string())),
        }
    }

    /// Admits, decodes and queues a batch; with a `reply`, the client may be handed to the
    /// caller to run (see [`Queue::push`](super::queue::Queue::push)).
    async fn enqueue(
        &self,
        request: Request,
        reply: Option<oneshot::Sender<crate::Results>>,
    ) -> Result<Option<ClientId>, Response> {
        #[cfg_attr(not(feature = "files"), allow(unused_mut))]
        let (mut parts, user, body) = self.admit(request).await?;
        // Handlers open files through the context.
        #[cfg(feature = "files")]
        if let Some(files) = &self.shared.files {
            parts.extensions.insert(files.clone());
        }
        // The packets' arguments are slices of the body, and may wait in the queue: the body
        // hyper hands over can be a slice of the connection's whole read buffer, which they
        // would keep. One copy of exactly the body, for all of them.
        let body = bytes::Bytes::copy_from_slice(&body);
        let (
            Batch {
                client, packets, ..
            },
            after,
        ) = decode_batch_after(&body, self.shared.limits.max_packets)
            .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("invalid batch: {e}")))?;
        if let Some(packet) = packets.iter().find(|p| p.seq > MAX_SEQ) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "invalid batch: sequence number {} is above the largest, {MAX_SEQ}",
                    packet.seq
                ),
            ));
        }
        // Anonymous identities cost nothing: they share the queue per address.
        let share: Arc<str> = share(&parts, &user).into();
        self.claim(client, &user, &share).await?;
        // What the decoded batch holds: its packets and their argument buffers.
        let bytes = body.len() + packets.len() * (size_of::<crate::Packet>() + 16);
        let inline = reply.is_some();
        let job = Job {
            share,
            ctx: Context::new(user, client, parts),
            packets,
            after,
            reply,
            bytes,
        };
        self.shared
            .queue
            .push(&self.shared, job, inline)
            .map_err(|full| unavailable(full.to_string()))
    }

    /// Signs a token for `clients` of `user`.
    fn grant(&self, user: User, clients: Vec<ClientId>) -> TokenGrant {
        let expires_at = unix_now().saturating_add(self.shared.limits.token_ttl.as_secs().max(1));
        let claims = Claims {
            user: user.id,
            role: user.role,
            clients,
            exp: expires_at,
        };
        TokenGrant {
            token: self.shared.tokens.sign(&claims),
            expires_at,
            max_packets: u32::try_from(self.shared.limits.max_packets).unwrap_or(u32::MAX),
            user: claims.user,
        }
    }
}

async fn call(State(crudp): State<Crudp>, request: Request) -> Response {
    let (reply, mut results) = oneshot::channel();
    let results = match crudp.enqueue(request, Some(reply)).await {
        Err(response) => return response,
        Ok(None) => results.await,
        Ok(Some(client)) => {
            // Run here until this batch's results are in.
            let mut running = Inline::new(crudp, client);
            match future::select(&mut running, &mut results).await {
                Either::Left(((), _)) => results.await,
                Either::Right((results, _)) => results,
            }
        }
    };
    match results {
        Ok(results) => octets(encode_results(&results)),
        Err(_) => unavailable("the server stopped before the batch ran".into()),
    }
}

async fn sync(State(crudp): State<Crudp>, request: Request) -> Response {
    match crudp.enqueue(request, None).await {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(response) => response,
    }
}

async fn token(State(crudp): State<Crudp>, request: Request) -> Response {
    let (parts, user, body) = match crudp.admit(request).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let mut clients = match decode_token_request(&body) {
        Ok(request) => request.clients,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    clients.sort_unstable();
    clients.dedup();
    let rate = share(&parts, &user);
    for client in &clients {
        if let Err(response) = crudp.claim(*client, &user, &rate).await {
            return response;
        }
    }
    octets(postcard::to_stdvec(&crudp.grant(user, clients)).expect("a grant always encodes"))
}

/// What `user`'s requests share limits by: their user, or for anonymous visitors (whose
/// identities cost nothing) their IP address (an IPv6 one by its /64), when the server knows
/// it.
pub(super) fn share(parts: &Parts, user: &User) -> String {
    match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(peer) if user.is_anonymous() => {
            format!("address {}", super::slots::network(peer.0.ip()))
        }
        _ => user.id.clone(),
    }
}

/// The anonymous visitor of a request's client key (see
/// [`CrudpBuilder::authenticator`](super::CrudpBuilder::authenticator)).
fn anonymous(parts: &Parts) -> Result<User, String> {
    let missing = || {
        format!(
            "a request that is not signed in must carry its client's random key in the \
             `{CLIENT_KEY_HEADER}` header (base64url of 16 to 64 bytes); CRUDP clients send it"
        )
    };
    let key = parts
        .headers
        .get(CLIENT_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    match URL_SAFE_NO_PAD.decode(key) {
        Ok(key) if (16..=64).contains(&key.len()) => Ok(User::anonymous_key(&key)),
        _ => Err(missing()),
    }
}

/// A token request of one to [`MAX_TOKEN_CLIENTS`] clients, with nothing after it.
fn decode_token_request(body: &[u8]) -> Result<TokenRequest, String> {
    let invalid = |reason: String| {
        format!("the body must be a postcard `TokenRequest` (the stream's client IDs): {reason}")
    };
    // The count comes first: refuse a large one before decoding (and allocating) anything.
    let (count, _) = postcard::take_from_bytes::<u64>(body).map_err(|e| invalid(e.to_string()))?;
    if count == 0 || count > MAX_TOKEN_CLIENTS as u64 {
        return Err(invalid(format!(
            "it names {count} clients; a stream carries 1 to {MAX_TOKEN_CLIENTS}"
        )));
    }
    match postcard::take_from_bytes::<TokenRequest>(body) {
        Ok((request, [])) => Ok(request),
        Ok((_, rest)) => Err(invalid(format!("{} unexpected trailing bytes", rest.len()))),
        Err(e) => Err(invalid(e.to_string())),
    }
}

fn octets(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response()
}

async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, Response> {
    let Ok(read) = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await else {
        return Err(close_after(refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {timeout:?}"),
        )));
    };
    match read {
        Ok(bytes) => Ok(bytes),
        Err(e) if is_length_limit(&e) => Err(close_after(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds the limit of {limit} bytes"),
        ))),
        Err(e) => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("the request body could not be read: {e}"),
        )),
    }
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// `GET /modules`: the mounted modules' description, in JSON, to signed-in users.
async fn modules(State(crudp): State<Crudp>, request: Request) -> Response {
    if !crudp.shared.limits.describe_modules {
        return refuse(
            StatusCode::NOT_FOUND,
            "this server does not describe its modules".into(),
        );
    }
    let (parts, _) = request.into_parts();
    match crudp.authenticate(&parts).await {
        Ok(user) if !user.is_anonymous() => {}
        Ok(_) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "sign in to read the module description".into(),
            );
        }
        Err(refused) => return refused,
    }
    let description = crudp.shared.description.get_or_init(|| {
        let description = crudp.describe().map_err(|e| e.to_string())?;
        serde_json::to_vec_pretty(&description).map_err(|e| e.to_string())
    });
    match description {
        Ok(json) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json.clone(),
        )
            .into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.clone()),
    }
}
