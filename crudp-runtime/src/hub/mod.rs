//! The SSE hub: connections indexed by channel, and the replay buffer behind `Last-Event-ID`.
//!
//! [`Hub`] is the seam for scaling out; [`MemoryHub`] is the in-process default.

mod frame;
pub(crate) mod memory;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use frame::{PING, event_frame, retry_frame};
pub use memory::{MemoryHub, Opened};

use crate::{
    context::{Target, User},
    dispatch::BoxFuture,
    protocol::{ClientId, EventKind},
};

/// Where an event is routed. Channels are never sent to clients: a connection only sees the
/// events of its own channels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Every connection.
    All,
    /// The connections of users with this role.
    Role(String),
    /// The connections of this user.
    User(String),
    /// The connections (tabs) of this client of this user. The owner is part of the channel,
    /// so that a connection of another user never receives (or replays) the client's events,
    /// whatever became of the client ID.
    Client {
        /// The client.
        client: ClientId,
        /// The user it belongs to.
        owner: String,
    },
}

impl Channel {
    /// The channel's key: `all`, `role:<role>`, `user:<id>` or `client:<id>:<owner>`.
    pub fn key(&self) -> String {
        match self {
            Channel::All => "all".to_owned(),
            Channel::Role(role) => format!("role:{role}"),
            Channel::User(user) => format!("user:{user}"),
            Channel::Client { client, owner } => format!("client:{client}:{owner}"),
        }
    }
}

impl Channel {
    /// The channel with this [`key`](Self::key), if it is one.
    pub fn from_key(key: &str) -> Option<Self> {
        if key == "all" {
            return Some(Channel::All);
        }
        if let Some(role) = key.strip_prefix("role:") {
            return Some(Channel::Role(role.to_owned()));
        }
        if let Some(user) = key.strip_prefix("user:") {
            return Some(Channel::User(user.to_owned()));
        }
        let (client, owner) = key.strip_prefix("client:")?.split_once(':')?;
        Some(Channel::Client {
            client: ClientId(u64::from_str_radix(client, 16).ok()?),
            owner: owner.to_owned(),
        })
    }

    /// Whether a connection of `subscriber` receives an event of this channel that skips the
    /// connections of `except` alone.
    pub fn reaches(&self, subscriber: &Subscriber, except: Option<ClientId>) -> bool {
        !Subscriber::skips(&subscriber.clients, except) && subscriber.channels().contains(self)
    }
}

impl From<Target> for Channel {
    fn from(target: Target) -> Self {
        match target {
            Target::All => Channel::All,
            Target::Role(role) => Channel::Role(role),
            Target::User(user) => Channel::User(user),
        }
    }
}

/// Who opens a connection: its user and clients, which give its channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// The connection's user.
    pub user: User,
    /// The connection's clients: one, or every tab's of a browser that shares one stream.
    pub clients: Vec<ClientId>,
}

impl Subscriber {
    /// The channels the connection listens to: `all`, `role:<r>`, `user:<u>`, and
    /// `client:<c>:<u>` for each of its clients.
    pub fn channels(&self) -> Vec<Channel> {
        let mut channels = vec![
            Channel::All,
            Channel::Role(self.user.role.clone()),
            Channel::User(self.user.id.clone()),
        ];
        channels.extend(self.clients.iter().map(|client| Channel::Client {
            client: *client,
            owner: self.user.id.clone(),
        }));
        channels
    }

    /// Whether an event published for everyone but `except` skips this connection: only
    /// when that client is the connection's only one (a shared stream still carries it to the
    /// other tabs).
    pub fn skips(clients: &[ClientId], except: Option<ClientId>) -> bool {
        except.is_some_and(|except| clients == [except])
    }
}

/// One event, framed for SSE once and shared by every connection it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The event's ID.
    pub id: u64,
    /// `id: …\nevent: …\ndata: …\n\n`.
    pub bytes: Bytes,
}

/// An event to publish.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Who receives it.
    pub channel: Channel,
    /// Its `event:` kind.
    pub kind: EventKind,
    /// Its postcard payload; the hub encodes it as base64url.
    pub data: Vec<u8>,
    /// A client whose connections do not receive it (the one that made the call).
    pub except: Option<ClientId>,
}

/// How a new connection starts.
#[derive(Debug)]
pub enum Start {
    /// Replay these missed events, then go live.
    Replay(Vec<Frame>),
    /// The requested event is unknown or no longer buffered: tell the client to resynchronise.
    Reset,
}

/// An open connection: what to send first, then the live events.
pub struct Subscription {
    /// What to send before the live events.
    pub start: Start,
    /// The ID of the last event published before the connection opened.
    pub position: u64,
    /// The live events. It ends when the hub closes the connection, for instance because the
    /// connection fell too far behind; the client then reconnects and catches up by replay.
    pub live: mpsc::Receiver<Frame>,
    /// Unregisters the connection when dropped.
    pub guard: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("start", &self.start)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

/// Why the hub refused a publication or a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The user already has the most connections allowed.
    #[error("user `{user}` already has {max} open event streams")]
    TooManyConnections {
        /// The user.
        user: String,
        /// The limit.
        max: usize,
    },
    /// The hub's backend cannot be reached.
    #[error("the event hub is unavailable: {0}")]
    Unavailable(String),
}

/// Routes events to connections and replays what a reconnecting connection missed.
///
/// Publishing must not block on slow connections, and its cost must grow with the connections
/// an event reaches, not with all connections. A connection registered by
/// [`subscribe`](Hub::subscribe) receives every event published after it, and its replay
/// holds exactly the events of its channels after `last_event_id`: no gap and no duplicate
/// between the two.
pub trait Hub: Send + Sync + 'static {
    /// Publishes an event; returns its ID.
    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<u64, HubError>>;

    /// Opens a connection for `subscriber`, resuming after `last_event_id` if given.
    fn subscribe(
        &self,
        subscriber: Subscriber,
        last_event_id: Option<u64>,
    ) -> BoxFuture<'_, Result<Subscription, HubError>>;
}

/// A shared hub: the server holds one handle, the application another (for
/// [`MemoryHub::connections`], say).
impl<H: Hub + ?Sized> Hub for std::sync::Arc<H> {
    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<u64, HubError>> {
        (**self).publish(publication)
    }

    fn subscribe(
        &self,
        subscriber: Subscriber,
        last_event_id: Option<u64>,
    ) -> BoxFuture<'_, Result<Subscription, HubError>> {
        (**self).subscribe(subscriber, last_event_id)
    }
}
