//! The in-process hub: one lock over the connection index and the replay ring, so that a new
//! connection is registered and its replay cut at the same instant.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::{BuildHasherDefault, Hasher},
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::{SystemTime, UNIX_EPOCH},
};

use tokio::sync::mpsc::{self, error::TrySendError};

use super::{
    Channel, Frame, Hub, HubError, Publication, Start, Subscriber, Subscription, event_frame,
};
use crate::{dispatch::BoxFuture, protocol::ClientId};

/// Default for [`MemoryHub::new`]'s replay buffer: the last 4,096 events.
pub const DEFAULT_REPLAY_BUFFER: usize = 4096;
/// Default for [`MemoryHub::with_replay_bytes`]: 16 MiB of events kept for replay.
pub const DEFAULT_REPLAY_BYTES: usize = 16 << 20;
/// Default for the per-connection buffer: 256 events.
pub const DEFAULT_CONNECTION_BUFFER: usize = 256;
/// Default for the open streams one user may hold: 32.
pub const DEFAULT_CONNECTIONS_PER_USER: usize = 32;

/// The in-memory [`Hub`]: for one server process.
///
/// Event IDs start from the current time in microseconds, so the IDs of a restarted server
/// are above any that clients kept from the previous one, and those clients get `reset`.
/// It is the default; the builder's replay settings (`CrudpBuilder::replay_buffer`, ...) set
/// its limits.
///
/// ```
/// use crudp_runtime::server::Crudp;
///
/// // Events kept for reconnecting clients: the last 50,000, at most 64 MiB.
/// let api = Crudp::builder()
///     .replay_buffer(50_000)
///     .replay_bytes(64 << 20)
///     .build();
/// # drop(api);
/// ```
pub struct MemoryHub {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    replay_capacity: usize,
    replay_bytes: usize,
    connection_buffer: usize,
    connections_per_user: usize,
}

struct State {
    next_id: u64,
    ring: VecDeque<Stored>,
    /// The bytes the ring holds.
    ring_bytes: usize,
    next_connection: u64,
    connections: HashMap<u64, Connection, ById>,
    by_channel: HashMap<String, HashSet<u64, ById>>,
    per_user: HashMap<String, usize>,
}

/// Hashes the hub's own connection IDs (a counter, never chosen by a peer) with one multiply
/// instead of SipHash: a publish looks up every connection of its channel.
type ById = BuildHasherDefault<IdHasher>;

#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

struct Stored {
    frame: Frame,
    channel: String,
    except: Option<ClientId>,
}

impl Stored {
    /// The bytes it takes, roughly: its frame, its channel and its bookkeeping.
    fn size(&self) -> usize {
        self.frame.bytes.len() + self.channel.len() + 64
    }
}

struct Connection {
    sender: mpsc::Sender<Frame>,
    channels: Vec<String>,
    clients: Vec<ClientId>,
    user: String,
}

impl Default for MemoryHub {
    fn default() -> Self {
        Self::new(
            DEFAULT_REPLAY_BUFFER,
            DEFAULT_CONNECTION_BUFFER,
            DEFAULT_CONNECTIONS_PER_USER,
        )
    }
}

impl MemoryHub {
    /// A hub that keeps the last `replay_buffer` events for replay, buffers up to
    /// `connection_buffer` events per connection before closing it, and lets each user hold
    /// `connections_per_user` streams.
    pub fn new(
        replay_buffer: usize,
        connection_buffer: usize,
        connections_per_user: usize,
    ) -> Self {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    next_id: start.max(1),
                    ring: VecDeque::with_capacity(replay_buffer.min(1024)),
                    ring_bytes: 0,
                    next_connection: 1,
                    connections: HashMap::default(),
                    by_channel: HashMap::new(),
                    per_user: HashMap::new(),
                }),
                replay_capacity: replay_buffer.max(1),
                replay_bytes: DEFAULT_REPLAY_BYTES,
                connection_buffer: connection_buffer.max(1),
                connections_per_user,
            }),
        }
    }

    /// Keeps at most `bytes` of events for replay besides the count (default:
    /// [`DEFAULT_REPLAY_BYTES`]); the oldest go first. An event larger than that is sent live
    /// but not kept, so a connection that missed it gets `reset`.
    #[must_use]
    pub fn with_replay_bytes(self, bytes: usize) -> Self {
        let shared = Arc::into_inner(self.shared).expect("a new hub is not shared yet");
        Self {
            shared: Arc::new(Shared {
                replay_bytes: bytes,
                ..shared
            }),
        }
    }

    /// The bytes of events kept for replay now.
    pub fn replay_bytes(&self) -> usize {
        self.shared.state().ring_bytes
    }

    /// The number of open connections.
    pub fn connections(&self) -> usize {
        self.shared.state().connections.len()
    }

    /// Opens a connection as [`Hub::subscribe`] does, except when this hub no longer holds
    /// the events after `last_event_id` (evicted, or from before it started relaying): then
    /// the replay is left empty and [`Opened::missing`] says which events to read from the
    /// shared backend instead of answering `reset`.
    pub fn open(
        &self,
        subscriber: Subscriber,
        last_event_id: Option<u64>,
    ) -> Result<Opened, HubError> {
        let mut state = self.shared.state();
        let user = subscriber.user.id.clone();
        let open = state.per_user.get(&user).copied().unwrap_or(0);
        if open >= self.shared.connections_per_user {
            return Err(HubError::TooManyConnections {
                user,
                max: self.shared.connections_per_user,
            });
        }
        let channels: Vec<String> = subscriber.channels().iter().map(Channel::key).collect();
        let mut missing = None;
        let start = match last_event_id {
            None => Start::Replay(Vec::new()),
            Some(last) if last > state.last_id() => Start::Reset,
            Some(last) => match state.since(last) {
                None => {
                    missing = Some((last, state.last_id()));
                    Start::Replay(Vec::new())
                }
                Some(missed) => Start::Replay(
                    missed
                        .filter(|e| {
                            !Subscriber::skips(&subscriber.clients, e.except)
                                && channels.contains(&e.channel)
                        })
                        .map(|e| e.frame.clone())
                        .collect(),
                ),
            },
        };
        let id = state.next_connection;
        state.next_connection += 1;
        let (sender, live) = mpsc::channel(self.shared.connection_buffer);
        for channel in &channels {
            state
                .by_channel
                .entry(channel.clone())
                .or_default()
                .insert(id);
        }
        *state.per_user.entry(user.clone()).or_default() += 1;
        state.connections.insert(
            id,
            Connection {
                sender,
                channels,
                clients: subscriber.clients,
                user,
            },
        );
        Ok(Opened {
            subscription: Subscription {
                start,
                position: state.last_id(),
                live,
                guard: Box::new(Registration {
                    hub: Arc::downgrade(&self.shared),
                    id,
                }),
            },
            missing,
        })
    }

    /// Routes an event whose ID a shared backend gave it, and keeps it for replay: how a
    /// distributed hub hands each instance's connections what it reads from the backend. IDs
    /// only increase; one at or below the last is ignored. After a gap (events this hub never
    /// saw, for instance trimmed from the backend while it could not read) the events before
    /// it are no longer replayed from here, and the open connections, which missed the gap,
    /// are closed: their clients reconnect and catch up from the backend, or get `reset`. A
    /// hub [relaying](Self::relaying) from 0 takes the first event it is given as the first.
    pub fn deliver(&self, id: u64, publication: Publication) {
        let mut state = self.shared.state();
        if id < state.next_id {
            return;
        }
        // A hub relaying from 0 had no event before: the first it is given is the first.
        if id > state.next_id && state.next_id > 1 {
            tracing::warn!(
                missed = id - state.next_id,
                "events missing before the one delivered: closing the event streams"
            );
            state.ring.clear();
            state.ring_bytes = 0;
            state.remove_all();
        }
        self.shared.route(&mut state, id, publication);
    }

    /// The ID of the last event this hub published or was delivered.
    pub fn last_id(&self) -> u64 {
        self.shared.state().last_id()
    }

    /// Takes `last_id` as the last event published, for a hub that relays a shared backend's
    /// events: [`deliver`](Self::deliver) goes on from there.
    #[must_use]
    pub fn relaying(self, last_id: u64) -> Self {
        {
            let mut state = self.shared.state();
            state.next_id = last_id + 1;
            state.ring.clear();
            state.ring_bytes = 0;
        }
        self
    }

    /// Closes every open connection: their clients reconnect and catch up by replay, for
    /// instance once a lost backend is back.
    pub fn disconnect_all(&self) {
        self.shared.state().remove_all();
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends event `id` to the connections of its channel and keeps it for replay.
    fn route(&self, state: &mut State, id: u64, publication: Publication) {
        let Publication {
            channel,
            kind,
            data,
            except,
        } = publication;
        let channel = channel.key();
        state.next_id = id + 1;
        let frame = Frame {
            id,
            bytes: event_frame(id, kind, &data),
        };

        let mut overrun = Vec::new();
        if let Some(ids) = state.by_channel.get(&channel) {
            for connection_id in ids {
                let Some(connection) = state.connections.get(connection_id) else {
                    continue;
                };
                if Subscriber::skips(&connection.clients, except) {
                    continue;
                }
                match connection.sender.try_send(frame.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => {
                        overrun.push(*connection_id)
                    }
                }
            }
        }
        for connection_id in overrun {
            // Dropping the sender ends the stream; the client reconnects and catches up by replay.
            tracing::debug!(
                connection = connection_id,
                "closing an event stream that fell behind"
            );
            state.remove(connection_id);
        }

        let stored = Stored {
            frame,
            channel,
            except,
        };
        let size = stored.size();
        state.ring_bytes += size;
        state.ring.push_back(stored);
        while state.ring.len() > self.replay_capacity || state.ring_bytes > self.replay_bytes {
            let Some(old) = state.ring.pop_front() else {
                break;
            };
            state.ring_bytes -= old.size();
        }
        crate::server::metrics::replay_bytes(state.ring_bytes);
    }
}

impl State {
    fn last_id(&self) -> u64 {
        self.next_id - 1
    }

    /// Closes every connection.
    fn remove_all(&mut self) {
        let ids: Vec<u64> = self.connections.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: u64) {
        let Some(connection) = self.connections.remove(&id) else {
            return;
        };
        for channel in &connection.channels {
            if let Some(ids) = self.by_channel.get_mut(channel) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_channel.remove(channel);
                }
            }
        }
        if let Some(count) = self.per_user.get_mut(&connection.user) {
            *count -= 1;
            if *count == 0 {
                self.per_user.remove(&connection.user);
            }
        }
    }

    /// The buffered events after `last`, or `None` if `last` is unknown or evicted.
    fn since(&self, last: u64) -> Option<impl Iterator<Item = &Stored>> {
        let first = self.next_id - self.ring.len() as u64;
        if last > self.last_id() || last.saturating_add(1) < first {
            return None;
        }
        Some(self.ring.range((last + 1 - first) as usize..))
    }
}

impl Hub for MemoryHub {
    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<u64, HubError>> {
        let mut state = self.shared.state();
        let id = state.next_id;
        self.shared.route(&mut state, id, publication);
        Box::pin(std::future::ready(Ok(id)))
    }

    fn subscribe(
        &self,
        subscriber: Subscriber,
        last_event_id: Option<u64>,
    ) -> BoxFuture<'_, Result<Subscription, HubError>> {
        let result = self.open(subscriber, last_event_id).map(|opened| {
            let mut subscription = opened.subscription;
            if opened.missing.is_some() {
                subscription.start = Start::Reset;
            }
            subscription
        });
        Box::pin(std::future::ready(result))
    }
}

/// A connection opened by [`MemoryHub::open`].
#[derive(Debug)]
pub struct Opened {
    /// The connection; its replay is empty when events are `missing`.
    pub subscription: Subscription,
    /// The events after the first ID and up to the second that this hub no longer holds, and
    /// that the connection must replay before its live events.
    pub missing: Option<(u64, u64)>,
}

/// Unregisters a connection when its stream is dropped.
struct Registration {
    hub: Weak<Shared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.state().remove(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{context::User, protocol::EventKind};

    fn subscriber(user: &str, role: &str, client: u64) -> Subscriber {
        Subscriber {
            user: User::new(user, role),
            clients: vec![ClientId(client)],
        }
    }

    fn publish(hub: &MemoryHub, channel: Channel, data: u8) -> u64 {
        let publication = Publication {
            channel,
            kind: EventKind::Broadcast,
            data: vec![data],
            except: None,
        };
        futures_util::FutureExt::now_or_never(hub.publish(publication))
            .unwrap()
            .unwrap()
    }

    fn subscribe(hub: &MemoryHub, who: Subscriber, last: Option<u64>) -> Subscription {
        futures_util::FutureExt::now_or_never(hub.subscribe(who, last))
            .unwrap()
            .unwrap()
    }

    fn ids(start: &Start) -> Vec<u64> {
        match start {
            Start::Replay(frames) => frames.iter().map(|f| f.id).collect(),
            Start::Reset => panic!("expected a replay"),
        }
    }

    fn delivered(hub: &MemoryHub, id: u64, channel: Channel) {
        hub.deliver(
            id,
            Publication {
                channel,
                kind: EventKind::Broadcast,
                data: vec![1],
                except: None,
            },
        );
    }

    #[test]
    fn a_relaying_hub_routes_given_ids_and_names_what_it_cannot_replay() {
        let hub = MemoryHub::default().relaying(100);
        let ann = subscriber("ann", "guest", 1);
        let early = hub.open(ann.clone(), None).unwrap();
        assert_eq!((early.subscription.position, early.missing), (100, None));
        let mut live = early.subscription.live;
        for id in 101..=103 {
            delivered(&hub, id, Channel::All);
        }
        // Old or repeated IDs are ignored.
        delivered(&hub, 102, Channel::All);
        let got: Vec<u64> = std::iter::from_fn(|| live.try_recv().ok().map(|f| f.id)).collect();
        assert_eq!(got, [101, 102, 103]);

        // From the ring; from before the relay started: missing; from the future: reset.
        let opened = hub.open(ann.clone(), Some(101)).unwrap();
        assert_eq!(
            (ids(&opened.subscription.start), opened.missing),
            (vec![102, 103], None)
        );
        let opened = hub.open(ann.clone(), Some(50)).unwrap();
        assert_eq!(
            (ids(&opened.subscription.start), opened.missing),
            (vec![], Some((50, 103)))
        );
        let future = subscribe(&hub, ann.clone(), Some(500));
        assert!(matches!(future.start, Start::Reset));
        // The plain subscription answers what it cannot replay with `reset`.
        assert!(matches!(
            subscribe(&hub, ann.clone(), Some(50)).start,
            Start::Reset
        ));

        assert_eq!(
            hub.connections(),
            4,
            "the early one, two replays and the reset"
        );
        // After a gap, the events before it are not replayed from here, and the connections
        // that missed it are closed, so that their clients catch up or reset.
        delivered(&hub, 110, Channel::All);
        assert_eq!(hub.connections(), 0);
        assert_eq!(
            live.try_recv().map(|f| f.id),
            Err(mpsc::error::TryRecvError::Disconnected)
        );
        let after = hub.open(ann.clone(), Some(103)).unwrap();
        assert_eq!(after.missing, Some((103, 110)));
        assert_eq!(hub.last_id(), 110);
        let mut live = after.subscription.live;
        delivered(&hub, 111, Channel::All);
        assert_eq!(live.try_recv().map(|f| f.id).ok(), Some(111));
        hub.disconnect_all();
        assert_eq!(hub.connections(), 0);
        assert_eq!(
            live.try_recv().map(|f| f.id),
            Err(mpsc::error::TryRecvError::Disconnected)
        );
    }

    #[test]
    fn channel_keys_read_back() {
        for channel in [
            Channel::All,
            Channel::Role("admin".into()),
            Channel::User("a:b".into()),
            Channel::Client {
                client: ClientId(0xabc),
                owner: "x:y".into(),
            },
        ] {
            assert_eq!(Channel::from_key(&channel.key()), Some(channel));
        }
        assert_eq!(Channel::from_key("nothing"), None);
    }

    #[test]
    fn replay_holds_exactly_the_missed_events_of_the_connections_channels() {
        let hub = MemoryHub::new(16, 16, 4);
        let before = publish(&hub, Channel::All, 0);
        let mine = publish(&hub, Channel::User("ann".into()), 1);
        publish(&hub, Channel::User("bob".into()), 2);
        let admins = publish(&hub, Channel::Role("admin".into()), 3);
        publish(&hub, Channel::Role("guest".into()), 4);
        let all = publish(&hub, Channel::All, 5);

        let sub = subscribe(&hub, subscriber("ann", "admin", 1), Some(before));
        assert_eq!(ids(&sub.start), vec![mine, admins, all]);
        assert_eq!(sub.position, all);
    }

    #[test]
    fn a_clients_events_reach_only_its_owners_connections() {
        let hub = MemoryHub::new(16, 16, 4);
        let before = publish(&hub, Channel::All, 0);
        let annes = Channel::Client {
            client: ClientId(1),
            owner: "ann".into(),
        };
        let result = publish(&hub, annes.clone(), 1);
        let thief = subscribe(&hub, subscriber("mallory", "r", 1), Some(before));
        assert_eq!(ids(&thief.start), Vec::<u64>::new());
        let owner = subscribe(&hub, subscriber("ann", "r", 1), Some(before));
        assert_eq!(ids(&owner.start), vec![result]);
        let mut thief = thief;
        publish(&hub, annes, 2);
        assert!(thief.live.try_recv().is_err(), "nor live");
    }

    #[test]
    fn the_replay_buffer_keeps_within_its_bytes() {
        let hub = MemoryHub::new(1000, 16, 4).with_replay_bytes(2_000);
        for n in 0..100 {
            publish(&hub, Channel::All, n);
            assert!(hub.replay_bytes() <= 2_000);
        }
        let last = publish(&hub, Channel::All, 100);
        let sub = subscribe(&hub, subscriber("a", "r", 1), Some(last - 5));
        assert_eq!(ids(&sub.start).len(), 5, "the newest are kept");
        assert!(matches!(
            subscribe(&hub, subscriber("a", "r", 2), Some(last - 90)).start,
            Start::Reset
        ));
    }

    #[test]
    fn an_unknown_or_evicted_id_gets_a_reset() {
        let hub = MemoryHub::new(2, 16, 4);
        let first = publish(&hub, Channel::All, 0);
        publish(&hub, Channel::All, 1);
        let last = publish(&hub, Channel::All, 2);
        assert!(matches!(
            subscribe(&hub, subscriber("a", "r", 1), Some(first - 1)).start,
            Start::Reset
        ));
        assert!(matches!(
            subscribe(&hub, subscriber("a", "r", 1), Some(last + 1)).start,
            Start::Reset
        ));
        assert_eq!(
            ids(&subscribe(&hub, subscriber("a", "r", 1), Some(first)).start),
            vec![first + 1, last]
        );
        assert_eq!(
            ids(&subscribe(&hub, subscriber("a", "r", 1), Some(last)).start),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn a_connection_that_falls_behind_is_closed_without_blocking_the_publisher() {
        let hub = MemoryHub::new(64, 2, 4);
        let mut slow = subscribe(&hub, subscriber("a", "r", 1), None);
        let mut fast = subscribe(&hub, subscriber("b", "r", 2), None);
        for i in 0..3 {
            publish(&hub, Channel::All, i);
            assert!(fast.live.try_recv().is_ok());
        }
        assert!(slow.live.try_recv().is_ok());
        assert!(slow.live.try_recv().is_ok());
        assert!(matches!(
            slow.live.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(hub.connections(), 1);
    }

    #[test]
    fn the_sender_is_left_out_and_connections_are_limited_per_user() {
        let hub = MemoryHub::new(64, 8, 2);
        let mut own = subscribe(&hub, subscriber("a", "r", 1), None);
        let mut other_tab = subscribe(&hub, subscriber("a", "r", 2), None);
        let publication = Publication {
            channel: Channel::User("a".into()),
            kind: EventKind::Broadcast,
            data: vec![],
            except: Some(ClientId(1)),
        };
        futures_util::FutureExt::now_or_never(hub.publish(publication))
            .unwrap()
            .unwrap();
        assert!(own.live.try_recv().is_err());
        assert!(other_tab.live.try_recv().is_ok());
        let third =
            futures_util::FutureExt::now_or_never(hub.subscribe(subscriber("a", "r", 3), None))
                .unwrap();
        assert!(matches!(
            third,
            Err(HubError::TooManyConnections { max: 2, .. })
        ));
        drop(own);
        assert_eq!(hub.connections(), 1);
    }
}
