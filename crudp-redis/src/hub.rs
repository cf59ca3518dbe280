//! The event hub on a Redis stream. Every event is appended once, by a Lua script that gives
//! it the next number of a shared counter as its ID, so that `Last-Event-ID` means the same on
//! every instance. Each instance reads the stream with one blocking `XREAD` and hands what it
//! reads to a local [`MemoryHub`], which routes it to that instance's connections and keeps
//! the recent events for replay; older missed events are read back with `XRANGE`.

use std::{sync::Arc, time::Duration};

use crudp_runtime::{
    BoxFuture,
    hub::{Channel, Hub, HubError, MemoryHub, Publication, Start, Subscriber, Subscription},
    protocol::{ClientId, EventKind},
};
use redis::{
    AsyncCommands, Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
    streams::{StreamId, StreamRangeReply, StreamReadReply},
};
use tokio::task::JoinHandle;

/// Default for [`RedisHub::replay_len`]: the stream keeps about the last 10,000 events.
pub const DEFAULT_REPLAY_LEN: usize = 10_000;

/// How long one blocking read waits before it is asked again.
const BLOCK: Duration = Duration::from_secs(2);
/// How long a connection resuming after an event this instance has not read yet waits for
/// its reader.
const CATCH_UP: Duration = BLOCK;

/// Appends one event: `KEYS` the stream and the counter; `ARGV` the channel key, the kind,
/// the data, the client it skips (or empty), the stream's approximate length bound, and the
/// counter's first value if it does not exist yet.
const APPEND: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], ARGV[6]) end
local id = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], string.format('%d-0', id),
    'c', ARGV[1], 'k', ARGV[2], 'd', ARGV[3], 'x', ARGV[4])
return id
";

/// The event hub of instances that share a Redis server; see the module documentation.
/// [`RedisBackend::connect`](crate::RedisBackend::connect) makes one with a
/// [`RedisOutcomes`](crate::RedisOutcomes); by hand, the prefix and the local limits are
/// yours:
///
/// ```no_run
/// # async fn doc() -> redis::RedisResult<()> {
/// use crudp_redis::{RedisBackend, RedisHub, RedisOutcomes, redis::Client};
/// use crudp_runtime::server::{Crudp, MemoryHub, OutcomeLimits};
///
/// let redis = Client::open("redis://127.0.0.1:6379/")?;
/// let local = MemoryHub::new(10_000, 256, 32);
/// let hub = RedisHub::new(&redis, "shop:", local).await?;
/// let outcomes = RedisOutcomes::new(&redis, "shop:", OutcomeLimits::default()).await?;
/// let api = Crudp::builder()
///     .backend(RedisBackend::new(hub, outcomes))
///     .token_secret(b"the same 32 or more bytes on every instance")
///     .build();
/// # drop(api);
/// # Ok(()) }
/// ```
pub struct RedisHub {
    redis: ConnectionManager,
    keys: Keys,
    local: Arc<MemoryHub>,
    append: Script,
    replay_len: usize,
    reader: JoinHandle<()>,
}

#[derive(Clone)]
struct Keys {
    stream: String,
    counter: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            stream: format!("{prefix}events"),
            counter: format!("{prefix}events:id"),
        }
    }
}

impl RedisHub {
    /// A hub on the Redis server of `client`, under keys that start with `prefix` (for
    /// example `crudp:`), routing to at most `local`'s connections: a [`MemoryHub`] whose
    /// replay buffer and limits apply to this instance.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached.
    pub async fn new(client: &Client, prefix: &str, local: MemoryHub) -> redis::RedisResult<Self> {
        let keys = Keys::new(prefix);
        let mut redis = client.get_connection_manager().await?;
        let last: Option<u64> = redis.get(&keys.counter).await?;
        let local = Arc::new(local.relaying(last.unwrap_or(0)));
        // The reader's blocking reads need a connection of their own, without a response
        // timeout shorter than they block.
        let config = ConnectionManagerConfig::new().set_response_timeout(Some(BLOCK * 2));
        let reading = client.get_connection_manager_with_config(config).await?;
        let reader = tokio::spawn(read(reading, keys.clone(), Arc::clone(&local), last));
        Ok(Self {
            redis,
            keys,
            local,
            append: Script::new(APPEND),
            replay_len: DEFAULT_REPLAY_LEN,
            reader,
        })
    }

    /// Keeps about `events` events in the Redis stream for replay (`XADD … MAXLEN ~`); a
    /// client that resumes from further back than `events` is told to `reset`, whatever the
    /// stream still holds, so give every instance the same value. Default:
    /// [`DEFAULT_REPLAY_LEN`].
    #[must_use]
    pub fn replay_len(mut self, events: usize) -> Self {
        self.replay_len = events.max(1);
        self
    }

    /// The connections open on this instance.
    pub fn connections(&self) -> usize {
        self.local.connections()
    }

    async fn append(&self, publication: Publication) -> redis::RedisResult<u64> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.append
            .key(&self.keys.stream)
            .key(&self.keys.counter)
            .arg(publication.channel.key())
            .arg(publication.kind.as_str())
            .arg(publication.data)
            .arg(
                publication
                    .except
                    .map_or(String::new(), |c| c.0.to_string()),
            )
            .arg(self.replay_len)
            .arg(seed)
            .invoke_async(&mut self.redis.clone())
            .await
    }

    /// The events after `after` and up to `through` of `subscriber`'s channels, or `None` if
    /// the stream no longer holds them all.
    async fn missed(
        &self,
        subscriber: &Subscriber,
        after: u64,
        through: u64,
    ) -> redis::RedisResult<Option<Vec<crudp_runtime::hub::Frame>>> {
        // The stream keeps the last `replay_len` events: one further back is not read for
        // nothing (any visitor may name an old ID, as often as it likes).
        if through.saturating_sub(after) > self.replay_len as u64 {
            return Ok(None);
        }
        let reply: StreamRangeReply = self
            .redis
            .clone()
            .xrange(
                &self.keys.stream,
                format!("({after}-0"),
                format!("{through}-0"),
            )
            .await?;
        let events: Vec<_> = reply.ids.iter().filter_map(decode).collect();
        let complete = events.len() as u64 == through - after
            && events.first().is_none_or(|(id, _)| *id == after + 1);
        if !complete {
            return Ok(None);
        }
        Ok(Some(
            events
                .into_iter()
                .filter(|(_, p)| p.channel.reaches(subscriber, p.except))
                .map(|(id, p)| crudp_runtime::hub::Frame {
                    id,
                    bytes: crudp_runtime::hub::event_frame(id, p.kind, &p.data),
                })
                .collect(),
        ))
    }
}

impl RedisHub {
    /// Waits until this instance's reader has delivered event `last`, when Redis gave that ID
    /// out: a client that saw it through another instance resumes here, where the reader may
    /// be a moment behind, without a false `reset` (and then events it had already). An ID
    /// Redis never gave out is left to the local hub, which answers `reset`.
    async fn caught_up(&self, last: u64) -> Result<(), HubError> {
        if last <= self.local.last_id() {
            return Ok(());
        }
        let given: Option<u64> = self
            .redis
            .clone()
            .get(&self.keys.counter)
            .await
            .map_err(|e| HubError::Unavailable(e.to_string()))?;
        if given.is_none_or(|given| last > given) {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        while self.local.last_id() < last {
            if tokio::time::Instant::now() >= deadline {
                return Err(HubError::Unavailable(format!(
                    "this instance has not read event {last} from Redis yet; retry shortly"
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }
}

impl Drop for RedisHub {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Hub for RedisHub {
    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<u64, HubError>> {
        Box::pin(async move {
            self.append(publication)
                .await
                .map_err(|e| HubError::Unavailable(e.to_string()))
        })
    }

    fn subscribe(
        &self,
        subscriber: Subscriber,
        last_event_id: Option<u64>,
    ) -> BoxFuture<'_, Result<Subscription, HubError>> {
        Box::pin(async move {
            if let Some(last) = last_event_id {
                self.caught_up(last).await?;
            }
            let opened = self.local.open(subscriber.clone(), last_event_id)?;
            let mut subscription = opened.subscription;
            if let Some((after, through)) = opened.missing {
                subscription.start = match self.missed(&subscriber, after, through).await {
                    Ok(Some(frames)) => Start::Replay(frames),
                    Ok(None) => Start::Reset,
                    Err(e) => return Err(HubError::Unavailable(e.to_string())),
                };
            }
            Ok(subscription)
        })
    }
}

/// An entry of the stream, as an event ID and its publication.
fn decode(entry: &StreamId) -> Option<(u64, Publication)> {
    let id = entry.id.strip_suffix("-0")?.parse().ok()?;
    let channel = Channel::from_key(&entry.get::<String>("c")?)?;
    let kind = EventKind::from_name(&entry.get::<String>("k")?)?;
    let data = entry.get::<Vec<u8>>("d")?;
    let except = entry
        .get::<String>("x")
        .and_then(|x| x.parse().ok())
        .map(ClientId);
    Some((
        id,
        Publication {
            channel,
            kind,
            data,
            except,
        },
    ))
}

/// Reads the stream from after `last` for as long as the hub lives, handing each event to the
/// local hub. While Redis cannot be read, the local connections are closed: their clients
/// reconnect, and catch up by replay once Redis is back.
async fn read(mut redis: ConnectionManager, keys: Keys, local: Arc<MemoryHub>, last: Option<u64>) {
    // Where the next read starts: the ID of the last entry read, whether it decoded or not
    // (one that does not must not be read again and again).
    let mut cursor = format!("{}-0", last.unwrap_or(0));
    let mut failing = false;
    loop {
        let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&keys.stream)
            .arg(&cursor)
            .query_async(&mut redis)
            .await;
        match reply {
            Ok(reply) => {
                failing = false;
                for entry in reply.iter().flat_map(|r| &r.keys).flat_map(|k| &k.ids) {
                    cursor.clone_from(&entry.id);
                    match decode(entry) {
                        Some((id, publication)) => local.deliver(id, publication),
                        None => {
                            tracing::warn!(id = %entry.id, "an undecodable event in the stream")
                        }
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read the event stream from Redis");
                    failing = true;
                    local.disconnect_all();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
