//! The in-memory outcome store.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, MutexGuard, PoisonError},
};

use super::{Claim, OutcomeStore, Recall, StoreError};
use crate::{
    dispatch::BoxFuture,
    protocol::{ClientId, Outcome},
};

/// Default for the outcomes kept per client: the last 256.
pub const DEFAULT_OUTCOME_CACHE: usize = 256;

/// The in-memory [`OutcomeStore`]: for one server process.
pub struct MemoryOutcomes {
    clients: Mutex<HashMap<ClientId, Record>>,
    cache: usize,
}

struct Record {
    owner: String,
    mark: u64,
    recent: VecDeque<(u64, Outcome)>,
}

impl Default for MemoryOutcomes {
    fn default() -> Self {
        Self::new(DEFAULT_OUTCOME_CACHE)
    }
}

impl MemoryOutcomes {
    /// A store that keeps the last `cache` outcomes of each client.
    pub fn new(cache: usize) -> Self {
        Self {
            clients: Mutex::default(),
            cache,
        }
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<ClientId, Record>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl OutcomeStore for MemoryOutcomes {
    fn claim<'a>(
        &'a self,
        client: ClientId,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        let mut clients = self.clients();
        let record = clients.entry(client).or_insert_with(|| Record {
            owner: user.to_owned(),
            mark: 0,
            recent: VecDeque::new(),
        });
        let claim = if record.owner == user {
            Claim::Granted
        } else {
            Claim::Foreign
        };
        Box::pin(std::future::ready(Ok(claim)))
    }

    fn recall(&self, client: ClientId, seq: u64) -> BoxFuture<'_, Result<Recall, StoreError>> {
        let recall = match self.clients().get(&client) {
            Some(record) if seq <= record.mark => {
                match record.recent.binary_search_by_key(&seq, |(s, _)| *s) {
                    Ok(index) => Recall::Done(record.recent[index].1.clone()),
                    Err(_) => Recall::Expired,
                }
            }
            _ => Recall::Execute,
        };
        Box::pin(std::future::ready(Ok(recall)))
    }

    fn record<'a>(
        &'a self,
        client: ClientId,
        seq: u64,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        if !matches!(outcome, Outcome::Unavailable { .. }) {
            let mut clients = self.clients();
            if let Some(record) = clients.get_mut(&client)
                && seq > record.mark
            {
                record.mark = seq;
                if self.cache > 0 {
                    if record.recent.len() == self.cache {
                        record.recent.pop_front();
                    }
                    record.recent.push_back((seq, outcome.clone()));
                }
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn now<T>(f: BoxFuture<'_, T>) -> T {
        f.now_or_never().unwrap()
    }

    #[test]
    fn a_packet_runs_once_then_replays_then_expires() {
        let store = MemoryOutcomes::new(2);
        let c = ClientId(1);
        assert_eq!(now(store.claim(c, "ann")), Ok(Claim::Granted));
        assert_eq!(now(store.claim(c, "bob")), Ok(Claim::Foreign));
        assert_eq!(now(store.recall(c, 1)), Ok(Recall::Execute));
        for seq in 1..=3 {
            now(store.record(c, seq, &Outcome::Ok(vec![seq as u8]))).unwrap();
        }
        assert_eq!(
            now(store.recall(c, 3)),
            Ok(Recall::Done(Outcome::Ok(vec![3])))
        );
        assert_eq!(now(store.recall(c, 1)), Ok(Recall::Expired));
        assert_eq!(now(store.recall(c, 4)), Ok(Recall::Execute));
    }

    #[test]
    fn unavailable_does_not_advance_the_mark() {
        let store = MemoryOutcomes::default();
        let c = ClientId(1);
        now(store.claim(c, "ann")).unwrap();
        now(store.record(
            c,
            1,
            &Outcome::Unavailable {
                message: "later".into(),
            },
        ))
        .unwrap();
        assert_eq!(now(store.recall(c, 1)), Ok(Recall::Execute));
        let rejected = Outcome::Rejected {
            code: crate::RejectCode::BadArguments,
            message: "x".into(),
        };
        now(store.record(c, 1, &rejected)).unwrap();
        assert_eq!(now(store.recall(c, 1)), Ok(Recall::Done(rejected)));
    }
}
