//! Exactly-once execution: per client, its owner, the highest executed sequence number, the
//! call running now, and the outcomes of the most recent calls.
//!
//! [`OutcomeStore`] is the seam; [`MemoryOutcomes`] keeps everything in the process (a restart
//! forgets), `SqliteOutcomes` (feature `sqlite`) keeps it in a SQLite file that survives
//! restarts.

#[cfg(feature = "sqlite")]
mod effects;
mod ledger;
mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::time::Duration;

#[cfg(feature = "sqlite")]
pub use effects::SqliteEffects;
pub use memory::MemoryOutcomes;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteOutcomes;

use crate::{
    dispatch::BoxFuture,
    protocol::{ClientId, Outcome},
};

/// What the store answers when a packet asks to run: [`OutcomeStore::begin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Not executed yet, and now reserved for this caller: run it, then
    /// [`finish`](OutcomeStore::finish) with this lease. Nobody else gets `Run` for it while
    /// the reservation stands.
    Run(Lease),
    /// Executed before; send this outcome again.
    Done(Outcome),
    /// Executed before; its outcome is no longer kept.
    Expired,
    /// The batch was sent after this earlier call of its client, which has not run yet (it
    /// could not, or it is still on its way): nothing sent after it runs first, so that order
    /// holds.
    Blocked(u64),
    /// Packet `0` of the client is running now (in another worker, or its outcome is still
    /// being recorded): try again later.
    Busy(u64),
}

/// A reservation to run one packet, handed out by [`OutcomeStore::begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease(u64);

impl Lease {
    /// A lease with this store-chosen number; for [`OutcomeStore`] implementations.
    pub const fn new(id: u64) -> Self {
        Self(id)
    }

    /// The lease's number.
    pub const fn id(self) -> u64 {
        self.0
    }
}

/// Whether a client ID may be used by a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The client is this user's (now, if it was new).
    Granted,
    /// The client belongs to another user. It always will: a client ID never changes owner.
    Foreign,
    /// The client is new and the user may not make another one now.
    Refused(ClientLimit),
}

/// Why a new client ID was refused; the server answers `429` (or `503` for
/// [`ClientLimit::Total`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientLimit {
    /// The user already owns this many client IDs.
    #[error("this user already owns {0} client IDs; reuse one (a tab keeps its ID across reloads)")]
    PerUser(usize),
    /// The user made this many new client IDs in the last minute.
    #[error("this user made {0} new client IDs in the last minute; retry in a minute")]
    PerMinute(u32),
    /// The store holds this many clients.
    #[error("the server remembers {0} clients, its most; retry later")]
    Total(usize),
}

/// Why the store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached or failed; retrying later may succeed. A packet that
    /// could not begin is answered `Unavailable` and sent again by its client.
    #[error("the outcome store is unavailable: {0}")]
    Unavailable(String),
    /// The lease does not hold that packet's reservation (any more): someone else finished
    /// it. Retrying cannot help.
    #[error("call {seq} of client {client} is not reserved by this lease")]
    LeaseLost {
        /// The client.
        client: ClientId,
        /// The packet.
        seq: u64,
    },
    /// The client was never claimed, or was forgotten since.
    #[error("client {0} is unknown to the outcome store")]
    UnknownClient(ClientId),
}

/// Remembers, per client, who owns it, which packets ran and what they gave.
///
/// - [`claim`](Self::claim) binds a client ID to a user on first use; it never binds it to
///   another user.
/// - [`begin`](Self::begin) is one atomic step: it answers from what is known, or reserves the
///   packet for the caller. A packet at or below the client's mark never runs again; while a
///   packet is reserved, no other begins for that client run.
/// - [`finish`](Self::finish) records the outcome and ends the reservation. Final outcomes
///   (`Ok`, `AppError`, `Rejected`, `Expired`) advance the mark; `Unavailable` does not. When
///   `finish` fails the reservation stays, so the packet cannot run again; the server keeps
///   retrying `finish` until it succeeds.
/// - [`flush`](Self::flush) makes the finished outcomes durable; the server calls it before
///   it answers a batch. Stores that write through need not implement it.
/// - [`begin_batch`](Self::begin_batch) and [`finish_batch`](Self::finish_batch) do the same
///   for several packets at once; by default one packet at a time. A store where each step is
///   a round trip (Redis) implements them to reserve a batch's packets together.
pub trait OutcomeStore: Send + Sync + 'static {
    /// Binds `client` to `user` on first use; a client of another user is [`Claim::Foreign`].
    fn claim<'a>(
        &'a self,
        client: ClientId,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// [`claim`](Self::claim), with the new client IDs counted for the per-minute limit
    /// ([`OutcomeLimits::new_clients_per_minute`]) against `rate` instead of `user`: the server
    /// passes an anonymous visitor's IP address there, since a visitor's identities (its
    /// client keys) cost nothing to make. The default ignores `rate`.
    fn claim_at<'a>(
        &'a self,
        client: ClientId,
        user: &'a str,
        rate: &'a str,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        let _ = rate;
        self.claim(client, user)
    }

    /// What to do with packet `seq` of `client`; [`Begin::Run`] reserves it.
    fn begin(&self, client: ClientId, seq: u64) -> BoxFuture<'_, Result<Begin, StoreError>>;

    /// Records the outcome of packet `seq` of `client`, reserved under `lease`, and ends the
    /// reservation.
    fn finish<'a>(
        &'a self,
        client: ClientId,
        seq: u64,
        lease: Lease,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Packet `seq` of `client`, reserved by [`begin_batch`](Self::begin_batch) with others,
    /// ran to its final `outcome`; [`finish_batch`](Self::finish_batch) records it with theirs
    /// once the batch is done. A store whose handlers commit outcomes of their own (the SQLite
    /// store's `transaction`) keeps it, to commit it with the next such outcome, so that the
    /// mark never passes a packet whose outcome the store does not hold. The default does
    /// nothing.
    fn ran(&self, client: ClientId, seq: u64, outcome: &Outcome) {
        let _ = (client, seq, outcome);
    }

    /// What to do with the packets `seqs` of `client` (in the order sent), which its batch
    /// sent after call `after` (`0`: none; see
    /// [`decode_batch_after`](crate::protocol::decode_batch_after)): the server asks this, not
    /// [`begin`](Self::begin).
    ///
    /// It answers a non-empty prefix of `seqs`, in order; the server asks again for the rest
    /// once it finished those. The [`Begin::Run`] answers, if any, come last and share one
    /// lease: the packets they reserve run in order, and
    /// [`finish_batch`](Self::finish_batch) records those that ran and ends the whole
    /// reservation. While `after` is above the mark, the first packet past the mark is
    /// [`Begin::Blocked`] instead: that call has not run, and the batch's calls run after it.
    ///
    /// The default answers the first packet alone, with [`begin`](Self::begin), and does not
    /// look at `after`; it is enough for a store of one process that does not outlive it (the
    /// server runs one client's batches in the order they came). A store that instances
    /// share, or that outlives its process, implements it.
    fn begin_batch<'a>(
        &'a self,
        client: ClientId,
        seqs: &'a [u64],
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<Begin>, StoreError>> {
        let _ = after;
        Box::pin(async move {
            match seqs.first() {
                Some(&seq) => Ok(vec![self.begin(client, seq).await?]),
                None => Ok(Vec::new()),
            }
        })
    }

    /// Records the outcomes of the packets that ran under `lease` (from
    /// [`begin_batch`](Self::begin_batch)), in order, and ends its reservation, of the
    /// packets that did not run too. The default calls [`finish`](Self::finish) for each.
    ///
    /// When it answers [`StoreError::Unavailable`], the server tries the same step again
    /// until it is taken, and only then publishes the batch's broadcasts. A store across a
    /// network, whose answer can be lost after it recorded the step, should answer that
    /// repeat `Ok` (the Redis store does for a lease among the client's last 128 finished, or
    /// further back for a batch recorded whole as it brings it), not
    /// [`StoreError::LeaseLost`]: the broadcasts would be dropped.
    fn finish_batch<'a>(
        &'a self,
        client: ClientId,
        lease: Lease,
        outcomes: &'a [(u64, &'a Outcome)],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            for (seq, outcome) in outcomes {
                self.finish(client, *seq, lease, outcome).await?;
            }
            Ok(())
        })
    }

    /// Makes every finished outcome durable.
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// The batch reserved under `lease` will never finish: the task running it was dropped
    /// (its runtime shut down under it) or a store or hub panicked, before
    /// [`finish_batch`](Self::finish_batch) answered. `ran` are the outcomes of its packets
    /// that ran to their end, as `finish_batch` would have had them. Nothing awaits here, so
    /// a store ends the reservation as far as it can without a round trip, so that the
    /// client's next batch is not answered [`Begin::Busy`] for ever; a packet that was running
    /// then runs again when re-sent, as after a crash. The default does nothing.
    fn abandon(&self, client: ClientId, lease: Lease, ran: &[(u64, &Outcome)]) {
        let _ = (client, lease, ran);
    }

    /// The store's limits; the server never accepts a batch larger than
    /// [`OutcomeLimits::outcomes_per_client`], so a re-sent batch is answered in full.
    fn limits(&self) -> &OutcomeLimits;
}

/// Default for [`OutcomeLimits::outcomes_per_client`]: 4,096.
pub const DEFAULT_OUTCOMES_PER_CLIENT: usize = 4096;
/// Default for [`OutcomeLimits::bytes_per_client`]: 4 MiB.
pub const DEFAULT_BYTES_PER_CLIENT: usize = 4 << 20;
/// Default for [`OutcomeLimits::total_bytes`]: 64 MiB.
pub const DEFAULT_TOTAL_BYTES: usize = 64 << 20;
/// Default for [`OutcomeLimits::idle`]: 24 hours.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(24 * 3600);
/// Default for [`OutcomeLimits::ownership`]: 30 days.
pub const DEFAULT_OWNERSHIP: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default for [`OutcomeLimits::clients_per_user`]: 10,000.
pub const DEFAULT_CLIENTS_PER_USER: usize = 10_000;
/// Default for [`OutcomeLimits::new_clients_per_minute`]: 600.
pub const DEFAULT_NEW_CLIENTS_PER_MINUTE: u32 = 600;
/// Default for [`OutcomeLimits::max_clients`]: 1,000,000.
pub const DEFAULT_MAX_CLIENTS: usize = 1_000_000;

/// How much an outcome store keeps, and for how long; given to the store's constructor.
///
/// ```
/// # #[cfg(feature = "server")] {
/// use std::time::Duration;
/// use crudp_runtime::outcomes::{MemoryOutcomes, OutcomeLimits};
///
/// let store = MemoryOutcomes::new(
///     OutcomeLimits::default()
///         .total_bytes(16 << 20)
///         .idle(Duration::from_secs(3600)),
/// );
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeLimits {
    pub(crate) outcomes_per_client: usize,
    pub(crate) bytes_per_client: usize,
    pub(crate) total_bytes: usize,
    pub(crate) idle: Duration,
    pub(crate) ownership: Duration,
    pub(crate) clients_per_user: usize,
    pub(crate) new_clients_per_minute: u32,
    pub(crate) max_clients: usize,
}

impl Default for OutcomeLimits {
    fn default() -> Self {
        Self {
            outcomes_per_client: DEFAULT_OUTCOMES_PER_CLIENT,
            bytes_per_client: DEFAULT_BYTES_PER_CLIENT,
            total_bytes: DEFAULT_TOTAL_BYTES,
            idle: DEFAULT_IDLE,
            ownership: DEFAULT_OWNERSHIP,
            clients_per_user: DEFAULT_CLIENTS_PER_USER,
            new_clients_per_minute: DEFAULT_NEW_CLIENTS_PER_MINUTE,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

impl OutcomeLimits {
    /// The most outcomes kept per client, and so the most packets a batch may hold (the
    /// server lowers its `max_packets` to it and tells clients). Default:
    /// [`DEFAULT_OUTCOMES_PER_CLIENT`].
    #[must_use]
    pub fn outcomes_per_client(mut self, outcomes: usize) -> Self {
        self.outcomes_per_client = outcomes.max(1);
        self
    }

    /// The most bytes of outcomes kept per client; beyond it the oldest are dropped (their
    /// packets, re-sent, get `Expired`). Default: [`DEFAULT_BYTES_PER_CLIENT`].
    #[must_use]
    pub fn bytes_per_client(mut self, bytes: usize) -> Self {
        self.bytes_per_client = bytes;
        self
    }

    /// The most bytes of outcomes held in memory for all clients; beyond it outcomes are
    /// dropped (a durable store still has them on disk): first those of the users who hold
    /// the most, of their least recently seen clients first, so that one signed-in user's
    /// many clients cannot push out everyone else's (each anonymous visitor counts as a user).
    /// Default: [`DEFAULT_TOTAL_BYTES`].
    #[must_use]
    pub fn total_bytes(mut self, bytes: usize) -> Self {
        self.total_bytes = bytes;
        self
    }

    /// How long the outcomes of a client not seen are kept; its ownership and its mark stay,
    /// so its old packets get `Expired`, never run again. Default: [`DEFAULT_IDLE`].
    #[must_use]
    pub fn idle(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// How long a client not seen stays bound to its user; after that it is forgotten
    /// entirely. Kept at least as long as [`idle`](Self::idle). Default:
    /// [`DEFAULT_OWNERSHIP`].
    #[must_use]
    pub fn ownership(mut self, ownership: Duration) -> Self {
        self.ownership = ownership;
        self
    }

    /// The most client IDs one user may own (an anonymous visitor is one user per client
    /// key). Default: [`DEFAULT_CLIENTS_PER_USER`].
    #[must_use]
    pub fn clients_per_user(mut self, clients: usize) -> Self {
        self.clients_per_user = clients;
        self
    }

    /// The most new client IDs one user may make in a minute; anonymous visitors, whose
    /// identities cost nothing, share it per IP address (see [`OutcomeStore::claim_at`]).
    /// Default: [`DEFAULT_NEW_CLIENTS_PER_MINUTE`].
    #[must_use]
    pub fn new_clients_per_minute(mut self, clients: u32) -> Self {
        self.new_clients_per_minute = clients;
        self
    }

    /// The most clients remembered; beyond it new client IDs are refused (`503`) until
    /// others expire. Default: [`DEFAULT_MAX_CLIENTS`].
    #[must_use]
    pub fn max_clients(mut self, clients: usize) -> Self {
        self.max_clients = clients;
        self
    }

    /// How long a client not seen stays bound to its user: the ownership time, never shorter
    /// than the idle time.
    pub fn ownership_time(&self) -> Duration {
        self.ownership.max(self.idle)
    }

    /// How long the outcomes of a client not seen are kept.
    pub fn idle_time(&self) -> Duration {
        self.idle
    }

    /// The most outcomes kept per client.
    pub fn kept_per_client(&self) -> usize {
        self.outcomes_per_client
    }

    /// The most bytes of outcomes kept per client.
    pub fn kept_bytes_per_client(&self) -> usize {
        self.bytes_per_client
    }

    /// The most client IDs one user may own.
    pub fn max_clients_per_user(&self) -> usize {
        self.clients_per_user
    }

    /// The most new client IDs one user may make in a minute.
    pub fn max_new_clients_per_minute(&self) -> u32 {
        self.new_clients_per_minute
    }
}

/// The bytes an outcome takes in memory, its payload and bookkeeping.
pub(crate) fn outcome_bytes(outcome: &Outcome) -> usize {
    const OVERHEAD: usize = 64;
    OVERHEAD
        + match outcome {
            Outcome::Ok(bytes) | Outcome::AppError(bytes) => bytes.len(),
            Outcome::Rejected { message, .. } | Outcome::Unavailable { message } => message.len(),
            Outcome::Expired => 0,
        }
}

/// A shared store: the server holds one handle, the application another (for
/// [`MemoryOutcomes::clients`], say).
impl<S: OutcomeStore + ?Sized> OutcomeStore for std::sync::Arc<S> {
    fn claim<'a>(
        &'a self,
        client: ClientId,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        (**self).claim(client, user)
    }

    fn claim_at<'a>(
        &'a self,
        client: ClientId,
        user: &'a str,
        rate: &'a str,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        (**self).claim_at(client, user, rate)
    }

    fn ran(&self, client: ClientId, seq: u64, outcome: &Outcome) {
        (**self).ran(client, seq, outcome);
    }

    fn begin(&self, client: ClientId, seq: u64) -> BoxFuture<'_, Result<Begin, StoreError>> {
        (**self).begin(client, seq)
    }

    fn finish<'a>(
        &'a self,
        client: ClientId,
        seq: u64,
        lease: Lease,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).finish(client, seq, lease, outcome)
    }

    fn begin_batch<'a>(
        &'a self,
        client: ClientId,
        seqs: &'a [u64],
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<Begin>, StoreError>> {
        (**self).begin_batch(client, seqs, after)
    }

    fn finish_batch<'a>(
        &'a self,
        client: ClientId,
        lease: Lease,
        outcomes: &'a [(u64, &'a Outcome)],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).finish_batch(client, lease, outcomes)
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).flush()
    }

    fn abandon(&self, client: ClientId, lease: Lease, ran: &[(u64, &Outcome)]) {
        (**self).abandon(client, lease, ran);
    }

    fn limits(&self) -> &OutcomeLimits {
        (**self).limits()
    }
}
