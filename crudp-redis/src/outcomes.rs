//! The outcome store in Redis: every step of the exactly-once protocol is one Lua script, so
//! that instances sharing the Redis server see one state. Per client, a hash holds its owner,
//! its mark, the packet it is stalled at, and the packet reserved now with its lease and the
//! instance holding it; a second hash holds its recent outcomes. A reservation held by an
//! instance that stopped heartbeating is taken over, so a killed instance never leaves a
//! client blocked.

use std::time::Duration;

use crudp_runtime::{
    BoxFuture, User,
    protocol::{ClientId, Outcome},
    server::{Begin, Claim, ClientLimit, Lease, OutcomeLimits, OutcomeStore, StoreError},
};
use redis::{Client, Script, aio::ConnectionManager};
use tokio::task::JoinHandle;

/// How often an instance says it is alive; its reservations outlive it by [`ALIVE_FOR`].
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long an instance that stopped heartbeating keeps its reservations.
const ALIVE_FOR: Duration = Duration::from_secs(10);

/// `KEYS`: the client, the user's clients. `ARGV`: client, user, now (ms), ownership (ms),
/// clients per user, new clients per minute, whether the user is anonymous.
const CLAIM: &str = r"
local owner = redis.call('HGET', KEYS[1], 'owner')
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
if owner then
  redis.call('PEXPIRE', KEYS[1], ttl)
  if owner ~= ARGV[2] then return 'foreign' end
  if ARGV[7] == '0' then redis.call('ZADD', KEYS[2], now + ttl, ARGV[1]) end
  return 'granted'
end
if ARGV[7] == '0' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 'per_user' end
  local minute = KEYS[2] .. ':minute'
  local made = redis.call('INCR', minute)
  if made == 1 then redis.call('PEXPIRE', minute, 60000) end
  if made > tonumber(ARGV[6]) then return 'per_minute' end
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'mark', 0)
redis.call('PEXPIRE', KEYS[1], ttl)
return 'granted'
";

/// `KEYS`: the client, its outcomes, the lease counter. `ARGV`: seq, ownership (ms), this
/// instance, the prefix of instance keys.
const BEGIN: &str = r"
local c = redis.call('HMGET', KEYS[1], 'owner', 'mark', 'stalled', 'running', 'holder')
if not c[1] then return {'unknown'} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local seq = tonumber(ARGV[1])
if seq <= tonumber(c[2]) then
  local outcome = redis.call('HGET', KEYS[2], ARGV[1])
  if outcome then return {'done', outcome} end
  return {'expired'}
end
if c[4] and redis.call('EXISTS', ARGV[4] .. c[5]) == 1 then
  return {'busy', c[4], c[5], redis.call('HGET', KEYS[1], 'lease')}
end
if c[3] and seq > tonumber(c[3]) then return {'blocked', c[3]} end
local lease = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'running', ARGV[1], 'lease', lease, 'holder', ARGV[3])
return {'run', tostring(lease)}
";

/// `KEYS`: the client, the lease counter. `ARGV`: seq, the lease to replace, this instance.
const TAKE_OVER: &str = r"
local c = redis.call('HMGET', KEYS[1], 'running', 'lease')
if c[1] ~= ARGV[1] or c[2] ~= ARGV[2] then return {'busy', c[1] or ARGV[1]} end
local lease = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'lease', lease, 'holder', ARGV[3])
return {'run', tostring(lease)}
";

/// `KEYS`: the client, its outcomes. `ARGV`: seq, lease, the encoded outcome, whether it is
/// `Unavailable`, outcomes kept per client, idle time (ms).
const FINISH: &str = r"
local c = redis.call('HMGET', KEYS[1], 'owner', 'mark', 'stalled', 'running', 'lease')
if not c[1] or c[4] ~= ARGV[1] or c[5] ~= ARGV[2] then return 'lost' end
redis.call('HDEL', KEYS[1], 'running', 'lease', 'holder')
local seq = tonumber(ARGV[1])
if seq <= tonumber(c[2]) then return 'already' end
if ARGV[4] == '1' then
  if not c[3] or seq < tonumber(c[3]) then redis.call('HSET', KEYS[1], 'stalled', ARGV[1]) end
  return 'stalled'
end
redis.call('HSET', KEYS[1], 'mark', ARGV[1])
if c[3] and tonumber(c[3]) <= seq then redis.call('HDEL', KEYS[1], 'stalled') end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[2], string.format('%d', seq - tonumber(ARGV[5])))
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 'final'
";

/// The [`OutcomeStore`] of instances that share a Redis server; see the module documentation.
///
/// Its guarantees hold as far as Redis keeps what it acknowledged: run Redis with the
/// append-only file on and `appendfsync always` (with `everysec`, a Redis crash may lose the
/// last second of outcomes, and calls re-sent after it may run again).
pub struct RedisOutcomes {
    redis: ConnectionManager,
    prefix: String,
    instance: String,
    limits: OutcomeLimits,
    scripts: Scripts,
    /// The leases this instance was given and has not finished: a reservation under its name
    /// and another lease was made by a `begin` whose answer never arrived (Redis went away
    /// first), and nobody runs it.
    leases: std::sync::Mutex<std::collections::HashSet<u64>>,
    heartbeat: JoinHandle<()>,
}

struct Scripts {
    claim: Script,
    begin: Script,
    take_over: Script,
    finish: Script,
}

impl RedisOutcomes {
    /// A store on the Redis server of `client`, under keys that start with `prefix`.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached.
    pub async fn new(
        client: &Client,
        prefix: &str,
        limits: OutcomeLimits,
    ) -> redis::RedisResult<Self> {
        let redis = client.get_connection_manager().await?;
        let instance = format!("{:016x}", rand_id());
        let alive = format!("{prefix}instance:{instance}");
        // Alive from the start, then every couple of seconds for as long as the store lives.
        let mut beating = redis.clone();
        redis::cmd("SET")
            .arg(&alive)
            .arg(1)
            .arg("PX")
            .arg(ALIVE_FOR.as_millis() as u64)
            .query_async::<()>(&mut beating)
            .await?;
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                let beat: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(&alive)
                    .arg(1)
                    .arg("PX")
                    .arg(ALIVE_FOR.as_millis() as u64)
                    .query_async(&mut beating)
                    .await;
                if let Err(e) = beat {
                    tracing::warn!(error = %e, "cannot tell Redis this instance is alive");
                }
            }
        });
        Ok(Self {
            redis,
            prefix: prefix.to_owned(),
            instance,
            limits,
            scripts: Scripts {
                claim: Script::new(CLAIM),
                begin: Script::new(BEGIN),
                take_over: Script::new(TAKE_OVER),
                finish: Script::new(FINISH),
            },
            leases: std::sync::Mutex::default(),
            heartbeat,
        })
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u64>> {
        self.leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn client_key(&self, client: ClientId) -> String {
        format!("{}client:{client}", self.prefix)
    }

    fn outcomes_key(&self, client: ClientId) -> String {
        format!("{}outcomes:{client}", self.prefix)
    }
}

impl Drop for RedisOutcomes {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// 64 random bits, for an instance's name.
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, millis)
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl OutcomeStore for RedisOutcomes {
    fn claim<'a>(
        &'a self,
        client: ClientId,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            let answer: String = self
                .scripts
                .claim
                .key(self.client_key(client))
                .key(format!("{}user:{user}", self.prefix))
                .arg(client.to_string())
                .arg(user)
                .arg(now_ms())
                .arg(millis(self.limits.ownership_time()))
                .arg(self.limits.max_clients_per_user())
                .arg(self.limits.max_new_clients_per_minute())
                .arg(u8::from(user == User::anonymous().id))
                .invoke_async(&mut self.redis.clone())
                .await
                .map_err(unavailable)?;
            Ok(match answer.as_str() {
                "granted" => Claim::Granted,
                "foreign" => Claim::Foreign,
                "per_user" => {
                    Claim::Refused(ClientLimit::PerUser(self.limits.max_clients_per_user()))
                }
                _ => Claim::Refused(ClientLimit::PerMinute(
                    self.limits.max_new_clients_per_minute(),
                )),
            })
        })
    }

    fn begin(&self, client: ClientId, seq: u64) -> BoxFuture<'_, Result<Begin, StoreError>> {
        Box::pin(async move {
            let answer: Vec<Vec<u8>> = self
                .scripts
                .begin
                .key(self.client_key(client))
                .key(self.outcomes_key(client))
                .key(format!("{}leases", self.prefix))
                .arg(seq)
                .arg(millis(self.limits.ownership_time()))
                .arg(&self.instance)
                .arg(format!("{}instance:", self.prefix))
                .invoke_async(&mut self.redis.clone())
                .await
                .map_err(unavailable)?;
            let number = |bytes: Option<&Vec<u8>>| {
                bytes
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| StoreError::Unavailable("a malformed answer from Redis".into()))
            };
            let answer = match answer.first().map(Vec::as_slice) {
                Some(b"busy")
                    if answer.get(2).map(Vec::as_slice) == Some(self.instance.as_bytes())
                        && !self.leases().contains(&number(answer.get(3))?) =>
                {
                    // Reserved under this instance's name by a `begin` whose answer was
                    // lost: nobody runs it, so it is taken over.
                    self.scripts
                        .take_over
                        .key(self.client_key(client))
                        .key(format!("{}leases", self.prefix))
                        .arg(seq)
                        .arg(number(answer.get(3))?)
                        .arg(&self.instance)
                        .invoke_async::<Vec<Vec<u8>>>(&mut self.redis.clone())
                        .await
                        .map_err(unavailable)?
                }
                _ => answer,
            };
            Ok(match answer.first().map(Vec::as_slice) {
                Some(b"run") => {
                    let lease = number(answer.get(1))?;
                    self.leases().insert(lease);
                    Begin::Run(Lease::new(lease))
                }
                Some(b"done") => {
                    let outcome = answer.get(1).and_then(|b| postcard::from_bytes(b).ok());
                    outcome.map_or(Begin::Expired, Begin::Done)
                }
                Some(b"expired") => Begin::Expired,
                Some(b"busy") => Begin::Busy(number(answer.get(1))?),
                Some(b"blocked") => Begin::Blocked(number(answer.get(1))?),
                _ => return Err(StoreError::UnknownClient(client)),
            })
        })
    }

    fn finish<'a>(
        &'a self,
        client: ClientId,
        seq: u64,
        lease: Lease,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let encoded = postcard::to_stdvec(outcome).expect("an outcome always encodes");
            let answer: String = self
                .scripts
                .finish
                .key(self.client_key(client))
                .key(self.outcomes_key(client))
                .arg(seq)
                .arg(lease.id())
                .arg(encoded)
                .arg(u8::from(matches!(outcome, Outcome::Unavailable { .. })))
                .arg(self.limits.kept_per_client())
                .arg(millis(self.limits.idle_time()))
                .invoke_async(&mut self.redis.clone())
                .await
                .map_err(unavailable)?;
            self.leases().remove(&lease.id());
            match answer.as_str() {
                "lost" => Err(StoreError::LeaseLost { client, seq }),
                _ => Ok(()),
            }
        })
    }

    fn limits(&self) -> &OutcomeLimits {
        &self.limits
    }
}
