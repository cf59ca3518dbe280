//! What a handler knows about the call it serves.

use std::sync::Arc;

use crate::protocol::{ClientId, RequestId};

/// The authenticated user a call is made for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    /// The user's ID, as the application's authenticator names it.
    pub id: String,
    /// The user's role, e.g. `admin`.
    pub role: String,
}

impl User {
    /// A user with this ID and role.
    pub fn new(id: impl Into<String>, role: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            role: role.into(),
        }
    }

    /// The user of a server that authenticates nobody: ID and role `anonymous`.
    pub fn anonymous() -> Self {
        Self::new("anonymous", "anonymous")
    }
}

/// The context of one call, handed to every handler method.
///
/// It tells who is calling (the [`User`] from the application's authenticator), which call
/// this is ([`RequestId`]), and gives the raw HTTP request parts and their typed extensions
/// to handlers that need them.
#[derive(Debug, Clone)]
pub struct Context {
    request: Arc<RequestInfo>,
    seq: u64,
}

#[derive(Debug)]
struct RequestInfo {
    user: User,
    client: ClientId,
    parts: http::request::Parts,
}

impl Context {
    /// A context for calls of `client` made by `user` inside the HTTP request `parts`.
    ///
    /// The server makes these; servers, tests and benchmarks that call a module in-process
    /// can make their own, then one per call with [`Context::for_seq`].
    pub fn new(user: User, client: ClientId, parts: http::request::Parts) -> Self {
        Self {
            request: Arc::new(RequestInfo {
                user,
                client,
                parts,
            }),
            seq: 0,
        }
    }

    /// A context for an in-process call, with an empty HTTP request.
    pub fn local(user: User, client: ClientId) -> Self {
        Self::new(user, client, http::Request::new(()).into_parts().0)
    }

    /// The same request's context for the call with sequence number `seq`.
    pub fn for_seq(&self, seq: u64) -> Self {
        Self {
            request: Arc::clone(&self.request),
            seq,
        }
    }

    /// The user making the call.
    pub fn user(&self) -> &User {
        &self.request.user
    }

    /// The client that sent the call.
    pub fn client(&self) -> ClientId {
        self.request.client
    }

    /// The call's ID: its client and sequence number.
    pub fn request_id(&self) -> RequestId {
        RequestId {
            client: self.request.client,
            seq: self.seq,
        }
    }

    /// The raw parts (method, URI, headers, extensions) of the HTTP request that carried the call.
    pub fn parts(&self) -> &http::request::Parts {
        &self.request.parts
    }

    /// The headers of the HTTP request that carried the call.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.request.parts.headers
    }

    /// A typed value that a middleware layer put in the request's extensions.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.request.parts.extensions.get::<T>()
    }
}
