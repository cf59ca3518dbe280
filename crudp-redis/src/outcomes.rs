//! The outcome store in Redis: every step of the exactly-once protocol is one Lua script, so
//! that instances sharing the Redis server see one state. Per client, a hash holds its owner,
//! its mark, and the packet reserved now with its lease and the instance holding it; a sorted
//! set holds its recent outcomes, one member per batch (so that recording a batch of a
//! thousand calls is a few commands, not a thousand). A reservation held by an instance that
//! stopped heartbeating is taken over, so a killed instance never leaves a client blocked.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use crudp_runtime::{
    BoxFuture,
    protocol::{ClientId, Outcome},
    server::{Begin, Claim, ClientLimit, Lease, OutcomeLimits, OutcomeStore, StoreError},
};
use redis::{Client, Script, aio::ConnectionManager};
use tokio::task::JoinHandle;

/// How often an instance says it is alive; its reservations outlive it by [`ALIVE_FOR`].
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long an instance that stopped heartbeating keeps its reservations.
const ALIVE_FOR: Duration = Duration::from_secs(10);

/// `KEYS`: the client, the user's clients, the count of new clients this minute (the user's, or
/// an anonymous visitor's address's), the client's outcomes and the leases it finished (left
/// from a time the client was known, whose mark is gone: they go). `ARGV`: client, user, now
/// (ms), ownership (ms),
/// clients per user, new clients per minute, slack (ms). A known
/// client's ownership is renewed only once it has run down by the slack, so that most claims
/// write nothing (and, with `appendfsync always`, wait for no disk).
const CLAIM: &str = r"
local owner = redis.call('HGET', KEYS[1], 'owner')
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
if owner then
  if owner ~= ARGV[2] then return 'foreign' end
  if redis.call('PTTL', KEYS[1]) < ttl - tonumber(ARGV[7]) then
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
  end
  return 'granted'
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 'per_user' end
local minute = KEYS[3]
local made = redis.call('INCR', minute)
if made == 1 then redis.call('PEXPIRE', minute, 60000) end
if made > tonumber(ARGV[6]) then return 'per_minute' end
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('DEL', KEYS[4], KEYS[5])
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'mark', 0)
redis.call('PEXPIRE', KEYS[1], ttl)
return 'granted'
";

/// Whether the sequence number `a` is below `b`; both are decimal strings without leading
/// zeros, compared as such, since Lua's numbers are exact only up to 2^53. And a sequence
/// number padded to [`SEQ_DIGITS`], so that batches sort by it as text.
const BELOW: &str = r"
local function below(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function padded(seq)
  return string.rep('0', 20 - #seq) .. seq
end
";

/// `KEYS`: the client, its outcomes, the lease counter, its outcomes as an earlier version
/// kept them. `ARGV`: this instance, the prefix of instance keys, the call the batch runs after
/// (`0`: none), the first packet's seq, how many packets ascend from it, then every packet's
/// seq, comma-separated (read only when the first is at or below the mark: a batch re-sent).
/// Answers a prefix of the packets: `{'done', batch, old}` per packet at or below the mark
/// (`batch`: the first batch recorded whose last seq is at or above the packet's, empty if
/// none, or `#k` for the `k`-th batch this answer already carries, so that each is read and
/// sent once; `old`: the packet's outcome as an earlier version kept it, or empty), then
/// `busy` or `blocked` for the first one past the mark, or `{'run', lease, n}` for the `n`
/// packets after the mark, in ascending order, reserved together (`running` is the first).
const BEGIN: &str = r"
local c = redis.call('HMGET', KEYS[1], 'owner', 'mark', 'running', 'holder')
if not c[1] then return {{'unknown'}} end
local function reserve(seq, n)
  -- Held by this instance (alive: it asks), or by one that says it is alive.
  if c[3] and (c[4] == ARGV[1] or redis.call('EXISTS', ARGV[2] .. c[4]) == 1) then
    return {'busy', c[3], c[4], redis.call('HGET', KEYS[1], 'lease')}
  end
  if below(c[2], ARGV[3]) then return {'blocked', ARGV[3]} end
  local lease = tostring(redis.call('INCR', KEYS[3]))
  redis.call('HSET', KEYS[1], 'running', seq, 'lease', lease, 'holder', ARGV[1])
  return {'run', lease, n}
end
if below(c[2], ARGV[4]) then return {reserve(ARGV[4], ARGV[5])} end
local seqs = {}
for seq in string.gmatch(ARGV[6], '%d+') do seqs[#seqs + 1] = seq end
local answers, old = {}, redis.call('EXISTS', KEYS[4]) == 1
-- By rank among the batches recorded: how this answer refers to the batch.
local carried, count = {}, 0
for i = 1, #seqs do
  local seq = seqs[i]
  if below(c[2], seq) then
    local n, last = 1, seq
    while seqs[i + n] and below(last, seqs[i + n]) do
      last = seqs[i + n]
      n = n + 1
    end
    answers[#answers + 1] = reserve(seq, tostring(n))
    return answers
  end
  -- The batches whose last seq is below this one's; the next is the one that may hold it.
  local rank = redis.call('ZLEXCOUNT', KEYS[2], '-', '(' .. padded(seq))
  local sent = carried[rank]
  if not sent then
    sent = redis.call('ZRANGE', KEYS[2], rank, rank)[1] or ''
    if sent ~= '' then
      count = count + 1
      carried[rank] = '#' .. count
    else
      carried[rank] = ''
    end
  end
  answers[#answers + 1] = {'done', sent, old and redis.call('HGET', KEYS[4], seq) or ''}
end
return answers
";

/// `KEYS`: the client. `ARGV`: a lease. Ends the reservation if it is still this lease's.
const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'lease') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'running', 'lease', 'holder')
end
return 'ok'
";

/// `KEYS`: the client, its outcomes, the leases it finished lately. `ARGV`: lease, idle time
/// (ms), the batch's outcomes (empty when none is final), the last final packet's seq, the
/// padded seq below which every batch recorded goes (empty: none), the most bytes of outcomes
/// kept, and `1` if the outcomes hold every final one the batch brings. The outcomes are one
/// member of a sorted set compared as text: the last seq padded, then the outcomes kept,
/// encoded; so a finish is a few commands and arguments however long the batch. The client's
/// `bytes` count the members' bytes: past the most, the oldest batches go. A finish whose
/// lease is gone is `ok` if that lease finished (the same finish again, its first answer lost:
/// the server retries it, maybe after the client's next batches ran, so that the batch's
/// broadcasts still go out), found among the last [`FINISHED_KEPT`] or, further back, by its
/// batch recorded whole as it brings it.
const FINISH: &str = r"
local c = redis.call('HMGET', KEYS[1], 'owner', 'lease', 'bytes')
if not c[1] then return 'lost' end
if c[2] ~= ARGV[1] then
  if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 'ok' end
  if ARGV[7] == '1' and ARGV[3] ~= '' and redis.call('ZSCORE', KEYS[2], ARGV[3]) then
    return 'ok'
  end
  return 'lost'
end
-- 'stalled': an earlier version's, which no instance of this one clears otherwise.
redis.call('HDEL', KEYS[1], 'running', 'lease', 'holder', 'stalled')
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[8]) + 1))
redis.call('PEXPIRE', KEYS[3], ARGV[2])
if ARGV[3] == '' then return 'ok' end
local bytes = tonumber(c[3] or '0')
if redis.call('ZADD', KEYS[2], 0, ARGV[3]) == 1 then bytes = bytes + #ARGV[3] end
if ARGV[5] ~= '' then
  for _, old in ipairs(redis.call('ZRANGEBYLEX', KEYS[2], '-', '(' .. ARGV[5])) do
    bytes = bytes - #old
  end
  redis.call('ZREMRANGEBYLEX', KEYS[2], '-', '(' .. ARGV[5])
end
-- The newest batch sorts last, and alone fits.
while bytes > tonumber(ARGV[6]) and redis.call('ZCARD', KEYS[2]) > 1 do
  bytes = bytes - #redis.call('ZPOPMIN', KEYS[2])[1]
end
-- Counted afresh when the outcomes expired without their client.
if redis.call('ZCARD', KEYS[2]) == 1 then bytes = #ARGV[3] end
redis.call('HSET', KEYS[1], 'mark', ARGV[4], 'bytes', bytes)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 'ok'
";

/// How many of the leases it finished last are kept per client, to take a finish again.
const FINISHED_KEPT: usize = 128;

/// The digits of the highest sequence number, `u64::MAX`: each batch recorded sorts by its
/// last seq padded to as many.
const SEQ_DIGITS: usize = 20;

/// The [`OutcomeStore`] of instances that share a Redis server; see the module documentation.
///
/// Its guarantees hold as far as Redis keeps what it acknowledged: run Redis with the
/// append-only file on and `appendfsync always` (with `everysec`, a Redis crash may lose the
/// last second of outcomes, and calls re-sent after it may run again).
///
/// ```no_run
/// # async fn doc() -> redis::RedisResult<()> {
/// use crudp_redis::{RedisOutcomes, redis::Client};
/// use crudp_runtime::server::{Crudp, OutcomeLimits};
///
/// // One instance whose exactly-once state outlives it in Redis; several instances need
/// // the whole `RedisBackend`, which shares their events too.
/// let redis = Client::open("redis://127.0.0.1:6379/")?;
/// let outcomes = RedisOutcomes::new(&redis, "crudp:", OutcomeLimits::default()).await?;
/// let api = Crudp::builder().outcome_store(outcomes).build();
/// # drop(api);
/// # Ok(()) }
/// ```
pub struct RedisOutcomes {
    redis: ConnectionManager,
    prefix: String,
    instance: String,
    limits: OutcomeLimits,
    scripts: Scripts,
    /// The leases this instance was given and has not finished: a reservation under its name
    /// and another lease was made by a `begin` whose answer never arrived (Redis went away
    /// first), and nobody runs it.
    leases: Mutex<std::collections::HashSet<u64>>,
    /// Claims Redis granted lately, answered again without asking it until the time given: an
    /// owner never changes, and Redis keeps it far longer than that.
    granted: Mutex<HashMap<ClientId, (String, Instant)>>,
    heartbeat: JoinHandle<()>,
}

/// The most claims [`RedisOutcomes`] remembers; past it, it forgets them all.
const GRANTS_REMEMBERED: usize = 65_536;

struct Scripts {
    claim: Script,
    begin: Script,
    release: Script,
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
                begin: Script::new(&format!("{BELOW}{BEGIN}")),
                release: Script::new(RELEASE),
                finish: Script::new(FINISH),
            },
            leases: Mutex::default(),
            granted: Mutex::default(),
            heartbeat,
        })
    }

    fn leases(&self) -> MutexGuard<'_, std::collections::HashSet<u64>> {
        lock(&self.leases)
    }

    /// How long a claim is answered from memory, and how far an owner's time in Redis runs
    /// down before a claim renews it: a tenth of the ownership time, at most a minute.
    fn slack(&self) -> Duration {
        (self.limits.ownership_time() / 10).min(Duration::from_secs(60))
    }

    fn client_key(&self, client: ClientId) -> String {
        format!("{}client:{client}", self.prefix)
    }

    /// Where an earlier version kept a client's outcomes, one field per packet: still read
    /// for packets re-sent after an upgrade, until it expires.
    fn outcomes_key(&self, client: ClientId) -> String {
        format!("{}outcomes:{client}", self.prefix)
    }

    /// The key of a client's outcomes, one member per batch; see [`FINISH`].
    fn done_key(&self, client: ClientId) -> String {
        format!("{}done:{client}", self.prefix)
    }

    /// The key of the leases a client finished lately; see [`FINISH`].
    fn finished_key(&self, client: ClientId) -> String {
        format!("{}finished:{client}", self.prefix)
    }

    /// Runs the `BEGIN` script for `seqs`: one answer per packet answered, each
    /// `[kind, values…]`.
    async fn reserve(
        &self,
        client: ClientId,
        seqs: &[u64],
        after: u64,
    ) -> Result<Vec<Vec<Vec<u8>>>, StoreError> {
        let mut listed = String::with_capacity(seqs.len() * 8);
        for seq in seqs {
            use std::fmt::Write as _;
            let _ = write!(listed, "{seq},");
        }
        self.scripts
            .begin
            .key(self.client_key(client))
            .key(self.done_key(client))
            .key(format!("{}leases", self.prefix))
            .key(self.outcomes_key(client))
            .arg(&self.instance)
            .arg(format!("{}instance:", self.prefix))
            .arg(after)
            .arg(seqs.first().copied().unwrap_or_default())
            .arg(ascending_len(seqs))
            .arg(listed)
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(unavailable)
    }

    /// The lease of a reservation held under this instance's name that this instance was
    /// never told of, if `answers` ends on one.
    fn lost_lease(&self, answers: &[Vec<Vec<u8>>]) -> Option<u64> {
        let busy = answers.last()?;
        if busy.first().map(Vec::as_slice) != Some(b"busy")
            || busy.get(2).map(Vec::as_slice) != Some(self.instance.as_bytes())
        {
            return None;
        }
        let lease = number(busy.get(3)).ok()?;
        (!self.leases().contains(&lease)).then_some(lease)
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn malformed() -> StoreError {
    StoreError::Unavailable("a malformed answer from Redis".into())
}

/// The fewest packets of a batch asked for in one step, when it has as many.
const ASKED_AT_ONCE: usize = 256;

/// How many of `seqs` ascend from the first.
fn ascending_len(seqs: &[u64]) -> usize {
    usize::from(!seqs.is_empty()) + seqs.windows(2).take_while(|w| w[0] < w[1]).count()
}

/// The outcomes of a batch as [`FINISH`] recorded them, after the batch's padded last seq;
/// none if `member` is empty or does not decode.
fn recorded(member: &[u8]) -> Vec<(u64, Outcome)> {
    member
        .get(SEQ_DIGITS..)
        .and_then(|outcomes| postcard::from_bytes(outcomes).ok())
        .unwrap_or_default()
}

/// The final outcomes of a batch that are kept, as the in-memory store keeps them: those
/// above `floor`, newest first while they fit in `budget` bytes with the batch's own (one
/// larger than the budget alone is skipped), in ascending order.
fn kept_of<'a>(
    outcomes: &[(u64, &'a Outcome)],
    floor: u64,
    budget: usize,
) -> Vec<(u64, &'a Outcome)> {
    // The member's padded seq and the list's length.
    let mut room = budget.saturating_sub(SEQ_DIGITS + 4);
    let mut kept: Vec<(u64, &Outcome)> = Vec::new();
    for &(seq, outcome) in outcomes.iter().rev() {
        if seq <= floor {
            break;
        }
        if matches!(outcome, Outcome::Unavailable { .. }) {
            continue;
        }
        let size = postcard::experimental::serialized_size(&(seq, outcome)).unwrap_or(usize::MAX);
        if size > budget {
            continue;
        }
        if size > room {
            break;
        }
        room -= size;
        kept.push((seq, outcome));
    }
    kept.reverse();
    kept
}

/// A number in an answer from Redis.
fn number(bytes: Option<&Vec<u8>>) -> Result<u64, StoreError> {
    bytes
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(malformed)
}

impl OutcomeStore for RedisOutcomes {
    fn claim<'a>(
        &'a self,
        client: ClientId,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        self.claim_at(client, user, user)
    }

    fn claim_at<'a>(
        &'a self,
        client: ClientId,
        user: &'a str,
        rate: &'a str,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            let now = Instant::now();
            let remembered = lock(&self.granted)
                .get(&client)
                .is_some_and(|(owner, until)| owner == user && now < *until);
            if remembered {
                return Ok(Claim::Granted);
            }
            let answer: String = self
                .scripts
                .claim
                .key(self.client_key(client))
                .key(format!("{}user:{user}", self.prefix))
                // Not under `user:`: a user named `bob:minute` would own bob's counter.
                .key(format!("{}rate:{rate}", self.prefix))
                .key(self.done_key(client))
                .key(self.finished_key(client))
                .arg(client.to_string())
                .arg(user)
                .arg(now_ms())
                .arg(millis(self.limits.ownership_time()))
                .arg(self.limits.max_clients_per_user())
                .arg(self.limits.max_new_clients_per_minute())
                .arg(millis(self.slack()))
                .invoke_async(&mut self.redis.clone())
                .await
                .map_err(unavailable)?;
            Ok(match answer.as_str() {
                "granted" => {
                    let mut granted = lock(&self.granted);
                    if granted.len() >= GRANTS_REMEMBERED {
                        granted.clear();
                    }
                    granted.insert(client, (user.to_owned(), now + self.slack()));
                    Claim::Granted
                }
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
            let answers = self.begin_batch(client, &[seq], 0).await?;
            answers.into_iter().next().ok_or_else(malformed)
        })
    }

    fn finish<'a>(
        &'a self,
        client: ClientId,
        seq: u64,
        lease: Lease,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.finish_batch(client, lease, &[(seq, outcome)]).await })
    }

    fn begin_batch<'a>(
        &'a self,
        client: ClientId,
        seqs: &'a [u64],
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<Begin>, StoreError>> {
        Box::pin(async move {
            if seqs.is_empty() {
                return Ok(Vec::new());
            }
            // Asked for up to the first packet out of order (the script reserves no further
            // past the mark anyway), or the first [`ASKED_AT_ONCE`] if more: the rest are asked
            // for in the next step. A batch out of order then costs Redis neither its length
            // squared in arguments nor a step for each packet that ran before.
            let asked = ascending_len(seqs).max(ASKED_AT_ONCE).min(seqs.len());
            let seqs = &seqs[..asked];
            let mut answers = self.reserve(client, seqs, after).await?;
            if let Some(lost) = self.lost_lease(&answers) {
                // Reserved under this instance's name by a `begin` whose answer was lost
                // (Redis went away first): nobody runs it, so it ends, and the packets are
                // asked for again.
                self.scripts
                    .release
                    .key(self.client_key(client))
                    .arg(lost)
                    .invoke_async::<()>(&mut self.redis.clone())
                    .await
                    .map_err(unavailable)?;
                answers = self.reserve(client, seqs, after).await?;
            }
            let mut begins = Vec::with_capacity(seqs.len());
            // The batches this answer carries, in the order it carries them.
            let mut batches: Vec<Vec<(u64, Outcome)>> = Vec::new();
            for answer in &answers {
                let begin = match answer.first().map(Vec::as_slice) {
                    Some(b"run") => {
                        let lease = number(answer.get(1))?;
                        let n = usize::try_from(number(answer.get(2))?).map_err(|_| malformed())?;
                        self.leases().insert(lease);
                        let room = seqs.len().saturating_sub(begins.len());
                        begins.extend(std::iter::repeat_n(
                            Begin::Run(Lease::new(lease)),
                            n.min(room),
                        ));
                        continue;
                    }
                    Some(b"done") => {
                        let seq = *seqs.get(begins.len()).ok_or_else(malformed)?;
                        let batch = match answer.get(1).map(Vec::as_slice) {
                            Some([]) => None,
                            Some([b'#', k @ ..]) => {
                                let k = std::str::from_utf8(k).ok().and_then(|k| k.parse().ok());
                                let k: usize = k.ok_or_else(malformed)?;
                                Some(batches.get(k.wrapping_sub(1)).ok_or_else(malformed)?)
                            }
                            Some(member) => {
                                batches.push(recorded(member));
                                batches.last()
                            }
                            None => return Err(malformed()),
                        };
                        let kept = batch.and_then(|batch| {
                            let at = batch.binary_search_by_key(&seq, |(seq, _)| *seq).ok()?;
                            Some(batch[at].1.clone())
                        });
                        let old = || answer.get(2).and_then(|b| postcard::from_bytes(b).ok());
                        kept.or_else(old).map_or(Begin::Expired, Begin::Done)
                    }
                    Some(b"busy") => Begin::Busy(number(answer.get(1))?),
                    Some(b"blocked") => Begin::Blocked(number(answer.get(1))?),
                    Some(b"unknown") => return Err(StoreError::UnknownClient(client)),
                    _ => return Err(malformed()),
                };
                begins.push(begin);
            }
            Ok(begins)
        })
    }

    fn finish_batch<'a>(
        &'a self,
        client: ClientId,
        lease: Lease,
        outcomes: &'a [(u64, &'a Outcome)],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // As `finish` would record them one by one: final outcomes move the mark; a packet
            // that could not run changes nothing. Only the latest `kept` of them are kept, and
            // every batch recorded before whose packets are all older goes.
            let last = outcomes
                .iter()
                .rev()
                .find(|(_, outcome)| !matches!(outcome, Outcome::Unavailable { .. }))
                .map(|(seq, _)| *seq);
            let kept = u64::try_from(self.limits.kept_per_client()).unwrap_or(u64::MAX);
            let floor = last.map_or(0, |last| last.saturating_sub(kept));
            let budget = self.limits.kept_bytes_per_client();
            let (member, whole) = last.map_or_else(
                || (Vec::new(), false),
                |last| {
                    let finals = kept_of(outcomes, floor, budget);
                    let whole = finals.len()
                        == outcomes
                            .iter()
                            .filter(|(_, o)| !matches!(o, Outcome::Unavailable { .. }))
                            .count();
                    let member =
                        postcard::to_extend(&finals, format!("{last:0SEQ_DIGITS$}").into_bytes())
                            .expect("an outcome always encodes");
                    (member, whole)
                },
            );
            let bound = if floor > 0 {
                format!("{:0SEQ_DIGITS$}", floor + 1)
            } else {
                String::new()
            };
            let answer: String = self
                .scripts
                .finish
                .key(self.client_key(client))
                .key(self.done_key(client))
                .key(self.finished_key(client))
                .arg(lease.id())
                .arg(millis(self.limits.idle_time()))
                .arg(member)
                .arg(last.unwrap_or_default())
                .arg(bound)
                .arg(budget)
                .arg(u8::from(whole))
                .arg(FINISHED_KEPT)
                .invoke_async(&mut self.redis.clone())
                .await
                .map_err(unavailable)?;
            self.leases().remove(&lease.id());
            match answer.as_str() {
                "lost" => Err(StoreError::LeaseLost {
                    client,
                    seq: outcomes.first().map_or(0, |(seq, _)| *seq),
                }),
                _ => Ok(()),
            }
        })
    }

    /// Forgets the lease: the next batch of the client that reaches this instance finds the
    /// reservation under this instance's name with a lease it does not know, and ends it.
    /// Nothing of the batch is recorded (that needs a round trip): its packets that ran run
    /// again when re-sent, as after the instance's crash.
    fn abandon(&self, _client: ClientId, lease: Lease, _ran: &[(u64, &Outcome)]) {
        self.leases().remove(&lease.id());
    }

    fn limits(&self) -> &OutcomeLimits {
        &self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::ascending_len;

    #[test]
    fn a_batch_is_asked_for_up_to_its_first_packet_out_of_order() {
        assert_eq!(ascending_len(&[1, 2, 3, 4, 2]), 4);
        assert_eq!(ascending_len(&[1, 3, 2, 5, 4]), 2);
        assert_eq!(ascending_len(&[7]), 1);
        assert_eq!(ascending_len(&[4, 4]), 1);
        assert_eq!(ascending_len(&[]), 0);
    }
}
