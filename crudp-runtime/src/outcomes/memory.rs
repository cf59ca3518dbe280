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
/// Default for the clients remembered: 100,000; beyond it the least recently seen tenth is
/// forgotten.
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;

/// The in-memory [`OutcomeStore`]: for one server process.
///
/// It remembers at most `max_clients` clients. A forgotten client starts afresh: a packet it
/// sends again after that runs again, so keep the limit well above the clients active within
/// the time a client may stay offline.
pub struct MemoryOutcomes {
    state: Mutex<State>,
    cache: usize,
    max_clients: usize,
}

#[derive(Default)]
struct State {
    clients: HashMap<ClientId, Record>,
    /// A logical clock for "least recently seen".
    clock: u64,
}

struct Record {
    owner: String,
    mark: u64,
    stalled: Option<u64>,
    recent: VecDeque<(u64, Outcome)>,
    seen: u64,
}

impl Default for MemoryOutcomes {
    fn default() -> Self {
        Self::new(DEFAULT_OUTCOME_CACHE, DEFAULT_MAX_CLIENTS)
    }
}

impl MemoryOutcomes {
    /// A store that keeps the last `cache` outcomes of each of at most `max_clients` clients.
    pub fn new(cache: usize, max_clients: usize) -> Self {
        Self {
            state: Mutex::default(),
            cache,
            max_clients: max_clients.max(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn touch(&mut self, client: ClientId) -> Option<&mut Record> {
        self.clock += 1;
        let clock = self.clock;
        let record = self.clients.get_mut(&client)?;
        record.seen = clock;
        Some(record)
    }

    /// Forgets the least recently seen tenth of the clients.
    fn evict(&mut self, max: usize) {
        if self.clients.len() < max {
            return;
        }
        let mut seen: Vec<u64> = self.clients.values().map(|r| r.seen).collect();
        let cut = (max / 10).max(1).min(seen.len() - 1);
        let (_, threshold, _) = seen.select_nth_unstable(cut);
        let threshold = *threshold;
        self.clients.retain(|_, r| r.seen > threshold);
    }
}

impl OutcomeStore for MemoryOutcomes {
    fn claim<'a>(
        &'a self,
        client: ClientId,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        let mut state = self.state();
        let claim = match state.touch(client) {
            Some(record) if record.owner == user => Claim::Granted,
            Some(_) => Claim::Foreign,
            None => {
                state.evict(self.max_clients);
                let seen = state.clock;
                state.clients.insert(
                    client,
                    Record {
                        owner: user.to_owned(),
                        mark: 0,
                        stalled: None,
                        recent: VecDeque::new(),
                        seen,
                    },
                );
                Claim::Granted
            }
        };
        Box::pin(std::future::ready(Ok(claim)))
    }

    fn recall(&self, client: ClientId, seq: u64) -> BoxFuture<'_, Result<Recall, StoreError>> {
        let recall = match self.state().touch(client) {
            Some(record) if seq <= record.mark => {
                match record.recent.binary_search_by_key(&seq, |(s, _)| *s) {
                    Ok(index) => Recall::Done(record.recent[index].1.clone()),
                    Err(_) => Recall::Expired,
                }
            }
            Some(Record {
                stalled: Some(stalled),
                ..
            }) if seq > *stalled => Recall::Blocked(*stalled),
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
        let mut state = self.state();
        if let Some(record) = state.touch(client)
            && seq > record.mark
        {
            if matches!(outcome, Outcome::Unavailable { .. }) {
                record.stalled = Some(record.stalled.map_or(seq, |s| s.min(seq)));
            } else {
                record.mark = seq;
                if record.stalled.is_some_and(|s| s <= seq) {
                    record.stalled = None;
                }
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
        let store = MemoryOutcomes::new(2, 10);
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
    fn an_unavailable_packet_holds_back_the_later_ones_until_it_runs() {
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
        assert_eq!(now(store.recall(c, 2)), Ok(Recall::Blocked(1)));
        let rejected = Outcome::Rejected {
            code: crate::RejectCode::BadArguments,
            message: "x".into(),
        };
        now(store.record(c, 1, &rejected)).unwrap();
        assert_eq!(now(store.recall(c, 1)), Ok(Recall::Done(rejected)));
        assert_eq!(now(store.recall(c, 2)), Ok(Recall::Execute));
    }

    #[test]
    fn the_least_recently_seen_clients_are_forgotten_beyond_the_limit() {
        let store = MemoryOutcomes::new(4, 10);
        for c in 0..10 {
            now(store.claim(ClientId(c), "ann")).unwrap();
        }
        now(store.recall(ClientId(0), 1)).unwrap();
        now(store.claim(ClientId(10), "ann")).unwrap();
        let clients = store.state().clients.len();
        assert!(clients <= 10, "{clients}");
        assert!(
            store.state().clients.contains_key(&ClientId(0)),
            "recently seen, kept"
        );
        assert!(
            !store.state().clients.contains_key(&ClientId(1)),
            "the oldest is forgotten"
        );
    }
}
