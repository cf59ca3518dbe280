//! The wire protocol: batches of packets going up, results coming back.
//!
//! Batches and results are written by [`codec`](encode_packets) (varints, as postcard writes
//! them, with a per-batch table of module IDs and sequence numbers as steps); everything else
//! is [postcard]. The first byte of every message is [`PROTOCOL_VERSION`].

mod codec;

pub use codec::{
    DecodeError, client_of_results, decode_batch, decode_batch_after, decode_client_results,
    decode_results, encode_batch, encode_client_results, encode_packets, encode_packets_after,
    encode_results,
};

/// Shared bytes: a packet's arguments and an outcome's value are slices of the message they
/// arrived in, and cloning one shares it instead of copying it.
pub use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks; the first byte of every batch and result set.
pub const PROTOCOL_VERSION: u8 = 3;

/// One of the four operations a CRUDP module can expose.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Make a new record.
    Create,
    /// Read one or more records.
    Read,
    /// Change a record.
    Update,
    /// Remove a record.
    Delete,
}

impl Action {
    /// All actions, in wire order.
    pub const ALL: [Action; 4] = [Action::Create, Action::Read, Action::Update, Action::Delete];

    /// The action's method name: `create`, `read`, `update` or `delete`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client's random identity. It belongs to one user and is never shared by two tabs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The identity of one call: the client that made it and its sequence number.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId {
    /// The calling client.
    pub client: ClientId,
    /// The call's sequence number; it only grows within a client.
    pub seq: u64,
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.client, self.seq)
    }
}

/// What a client sends: its calls, in order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// [`PROTOCOL_VERSION`].
    pub version: u8,
    /// The sending client.
    pub client: ClientId,
    /// The calls, in the order the client made them.
    pub packets: Vec<Packet>,
}

/// One call inside a [`Batch`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The call's sequence number within its client.
    pub seq: u64,
    /// The module's stable ID (see [`ModuleDescriptor::id`](crate::ModuleDescriptor::id)).
    pub handler: u32,
    /// Which of the module's methods to run.
    pub action: Action,
    /// The postcard encoding of the method's argument tuple.
    pub args: Bytes,
}

/// What a server answers: one result per executed or refused packet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Results {
    /// One entry per packet, in batch order.
    pub results: Vec<PacketResult>,
}

/// The outcome of one packet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PacketResult {
    /// The packet's sequence number.
    pub seq: u64,
    /// What happened to it.
    pub outcome: Outcome,
}

/// What happened to one call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The handler succeeded; the postcard encoding of its value.
    Ok(Bytes),
    /// The handler returned its own typed error; the postcard encoding of that error.
    AppError(Bytes),
    /// The call was refused for good (unknown handler or action, undecodable arguments,
    /// forbidden, or a handler fault). Sending it again gives the same answer.
    Rejected {
        /// Why, for programs.
        code: RejectCode,
        /// Why, for people.
        message: String,
    },
    /// The call was not executed; sending it again later is safe.
    Unavailable {
        /// Why, for people.
        message: String,
    },
    /// The call was executed earlier and its result is no longer kept.
    Expired,
}

/// Why a packet was [rejected](Outcome::Rejected).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// No module with this ID is mounted on the server.
    UnknownHandler,
    /// The module exists but does not have this action.
    UnknownAction,
    /// The arguments do not decode as the action's argument types.
    BadArguments,
    /// The user may not make this call.
    Forbidden,
    /// The handler panicked or its result could not be encoded.
    Internal,
    /// The handler ran longer than the server's handler timeout and was stopped. It may have
    /// done part of its work, so it is not run again.
    Timeout,
}

impl RejectCode {
    /// All codes, in wire order.
    pub const ALL: [RejectCode; 6] = [
        RejectCode::UnknownHandler,
        RejectCode::UnknownAction,
        RejectCode::BadArguments,
        RejectCode::Forbidden,
        RejectCode::Internal,
        RejectCode::Timeout,
    ];
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejectCode::UnknownHandler => "unknown handler",
            RejectCode::UnknownAction => "unknown action",
            RejectCode::BadArguments => "bad arguments",
            RejectCode::Forbidden => "forbidden",
            RejectCode::Internal => "internal error",
            RejectCode::Timeout => "timed out",
        })
    }
}

/// The kinds of event on the SSE stream; each is the `event:` field of its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// [`Results`] of one of this client's batches.
    Results,
    /// A [`Broadcast`]: another call's result, published to this connection's user, role or everyone.
    Broadcast,
    /// The requested `Last-Event-ID` is unknown or older than the replay buffer: events may
    /// have been missed. Data: [`Position`].
    Reset,
    /// The stream is open and every replayed event has been sent. Data: [`Position`].
    Ready,
}

impl EventKind {
    /// The `event:` name: `results`, `broadcast`, `reset` or `ready`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Results => "results",
            EventKind::Broadcast => "broadcast",
            EventKind::Reset => "reset",
            EventKind::Ready => "ready",
        }
    }

    /// The kind with this `event:` name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "results" => EventKind::Results,
            "broadcast" => EventKind::Broadcast,
            "reset" => EventKind::Reset,
            "ready" => EventKind::Ready,
            _ => return None,
        })
    }
}

/// The result of a successful call, published to other connections (`event: broadcast`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// The module's wire ID.
    pub handler: u32,
    /// The action that produced the value.
    pub action: Action,
    /// The postcard encoding of the action's `Ok` value; for a call whose value encodes to
    /// nothing (an action that returns `()`, such as a delete), the encoding of its argument
    /// tuple instead, so that listeners learn what was deleted.
    pub value: Bytes,
    /// The client whose call produced it, which has the value as its result already; `None`
    /// for broadcasts from server code. A stream that carries several clients (a browser's
    /// tabs) still receives it for the others.
    pub origin: Option<ClientId>,
}

/// Where a stream stands (`event: ready` and `event: reset`): the ID of the last event
/// published before it, from which a reconnection resumes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The last event ID.
    pub last_event_id: u64,
}

/// The header in which every CRUDP client sends its client key: base64url (without padding)
/// of 16 to 64 random bytes. A server without an authenticator tells anonymous visitors apart
/// by it (see [`User::anonymous_key`](crate::User::anonymous_key)); it is no credential for a
/// signed-in user.
pub const CLIENT_KEY_HEADER: &str = "x-crudp-key";

/// The most clients one event-stream token may carry.
pub const MAX_TOKEN_CLIENTS: usize = 64;

/// The body of `POST /token`: the clients, all of the same user, whose events one stream
/// carries (one, or every tab's of a browser).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// The clients, at most [`MAX_TOKEN_CLIENTS`].
    pub clients: Vec<ClientId>,
}

/// The answer of `POST /token`: a short-lived token for `GET /events`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TokenGrant {
    /// The token, for the `token` query parameter.
    pub token: String,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// The most packets the server accepts in one batch: the client splits its batches to
    /// fit, so that the server can keep the outcome of every packet of a batch.
    pub max_packets: u32,
    /// The user the server takes the request for (its [`User::id`](crate::User::id)): clients
    /// keep their saved queues apart per user by it.
    pub user: String,
}
