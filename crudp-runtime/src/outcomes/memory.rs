//! The in-memory outcome store.

use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    time::Instant,
};

use super::{Begin, Claim, Lease, OutcomeLimits, OutcomeStore, StoreError, ledger::Ledger};
use crate::{
    dispatch::BoxFuture,
    protocol::{ClientId, Outcome},
};

/// The in-memory [`OutcomeStore`]: for tests and for servers whose clients can afford to
/// lose exactly-once at a restart.
///
/// **A restart forgets everything**: after it, a re-sent packet runs again, and client IDs
/// can be claimed anew. Use `SqliteOutcomes` (feature `sqlite`) for a store that survives
/// restarts.
///
/// Within one process: a client ID stays bound to its user for
/// [`OutcomeLimits::ownership`] after it was last seen, and its mark with it, so its packets
/// never run twice in that time; its outcomes are dropped after [`OutcomeLimits::idle`], or
/// earlier, least recently seen first, when all clients together hold more than
/// [`OutcomeLimits::total_bytes`].
///
/// ```
/// use crudp_runtime::server::{Crudp, MemoryOutcomes, OutcomeLimits};
///
/// // The default store; given explicitly to change its limits.
/// let limits = OutcomeLimits::default();
/// let api = Crudp::builder().outcome_store(MemoryOutcomes::new(limits)).build();
/// # drop(api);
/// ```
pub struct MemoryOutcomes {
    limits: OutcomeLimits,
    ledger: Mutex<Ledger>,
}

impl Default for MemoryOutcomes {
    fn default() -> Self {
        Self::new(OutcomeLimits::default())
    }
}

impl MemoryOutcomes {
    /// A store within these limits.
    pub fn new(limits: OutcomeLimits) -> Self {
        Self {
            ledger: Mutex::new(Ledger::new(limits.clone(), false)),
            limits,
        }
    }

    /// The clients remembered now.
    pub fn clients(&self) -> usize {
        self.ledger().len()
    }

    /// The bytes of outcomes held now.
    pub fn outcome_bytes(&self) -> usize {
        self.ledger().outcome_bytes()
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        ledger.sweep(Instant::now(), false);
        ledger
    }
}

impl OutcomeStore for MemoryOutcomes {
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
        let claim = self.ledger().admit_at(client, user, rate, Instant::now());
        Box::pin(std::future::ready(Ok(claim)))
    }

    fn begin(&self, client: ClientId, seq: u64) -> BoxFuture<'_, Result<Begin, StoreError>> {
        let begin = self.ledger().begin(client, seq, Instant::now());
        Box::pin(std::future::ready(begin))
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
        let begun = self
            .ledger()
            .begin_batch(client, seqs, after, Instant::now());
        Box::pin(std::future::ready(begun))
    }

    fn finish_batch<'a>(
        &'a self,
        client: ClientId,
        lease: Lease,
        outcomes: &'a [(u64, &'a Outcome)],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let finished = self
            .ledger()
            .finish_batch(client, lease, outcomes, Instant::now())
            .map(drop);
        Box::pin(std::future::ready(finished))
    }

    fn abandon(&self, client: ClientId, lease: Lease, ran: &[(u64, &Outcome)]) {
        // A reservation already gone has nothing to end.
        let _ = self
            .ledger()
            .finish_batch(client, lease, ran, Instant::now());
    }

    fn limits(&self) -> &OutcomeLimits {
        &self.limits
    }
}
