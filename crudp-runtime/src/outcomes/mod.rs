//! Exactly-once execution: per client, the highest executed sequence number and the outcomes
//! of the most recent calls.
//!
//! [`OutcomeStore`] is the seam for scaling out; [`MemoryOutcomes`] is the in-process default.

mod memory;

pub use memory::{DEFAULT_MAX_CLIENTS, DEFAULT_OUTCOME_CACHE, MemoryOutcomes};

use crate::{
    dispatch::BoxFuture,
    protocol::{ClientId, Outcome},
};

/// What the store knows of a packet before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recall {
    /// Not executed yet: run it.
    Execute,
    /// Executed before; send this outcome again.
    Done(Outcome),
    /// Executed before; its outcome is no longer kept.
    Expired,
    /// An earlier packet of the client, this one, could not run; nothing after it runs first,
    /// so that order holds.
    Blocked(u64),
}

/// Whether a client ID may be used by a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The client is this user's (now, if it was new).
    Granted,
    /// The client belongs to another user.
    Foreign,
}

/// Why the store could not answer; the packet is then `Unavailable` and retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the outcome store is unavailable: {0}")]
pub struct StoreError(pub String);

/// Remembers, per client, which packets ran and what they gave.
///
/// A packet at or below a client's mark never runs again. Final outcomes (`Ok`, `AppError`,
/// `Rejected`) advance the mark; `Unavailable` does not, and until that packet runs, the
/// client's later packets are [`Recall::Blocked`].
pub trait OutcomeStore: Send + Sync + 'static {
    /// Binds `client` to `user` on first use; a client of another user is [`Claim::Foreign`].
    fn claim<'a>(
        &'a self,
        client: ClientId,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// What to do with packet `seq` of `client`.
    fn recall(&self, client: ClientId, seq: u64) -> BoxFuture<'_, Result<Recall, StoreError>>;

    /// Records the final outcome of packet `seq` of `client` and advances its mark.
    fn record<'a>(
        &'a self,
        client: ClientId,
        seq: u64,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}
