//! The exactly-once state of the clients a process knows, with no I/O: ownership, marks,
//! reservations and the recent outcomes, within the byte and time budgets. The memory store
//! is this ledger behind a lock; the SQLite store loads it from disk and writes it back.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{Begin, Claim, ClientLimit, Lease, OutcomeLimits, StoreError, outcome_bytes};
use crate::protocol::{ClientId, Outcome, RejectCode};

pub(crate) struct Ledger {
    pub(crate) limits: OutcomeLimits,
    clients: HashMap<ClientId, Record>,
    users: HashMap<Arc<str>, Quota>,
    /// Outcome bytes held, over all clients.
    bytes: usize,
    next_lease: u64,
    last_sweep: Instant,
    /// The ledger of a durable store, which may let idle clients go and load them again.
    durable: bool,
}

/// How many packets answered `Timeout` a client's record remembers (see [`Ledger::timed_out`]).
const TIMED_OUT_KEPT: usize = 64;

/// What a durable store loads of a client, and writes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Saved {
    pub(crate) owner: Arc<str>,
    pub(crate) mark: u64,
}

struct Record {
    saved: Saved,
    /// The reserved packets and their lease.
    running: Option<Reserved>,
    /// Oldest first, ascending `seq`.
    outcomes: VecDeque<(u64, Outcome)>,
    /// Packets of the reservation that ran, not yet finished, in order: a durable store's
    /// handler that commits its own outcome commits these with it.
    ran: Vec<(u64, Outcome)>,
    /// The latest packets answered `Timeout` (at most [`TIMED_OUT_KEPT`]): work their handler
    /// handed to a thread must not happen after all. Kept apart from the outcomes, which
    /// budgets may drop.
    timed_out: VecDeque<u64>,
    bytes: usize,
    seen: Instant,
    /// Changes not yet durable: a durable store must not let it go from memory.
    dirty: bool,
    /// Counts the changes, so that a write that took an older state does not clear `dirty`.
    version: u64,
}

/// Packets of one client reserved together: `from..=to`, under one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reserved {
    from: u64,
    to: u64,
    lease: u64,
}

/// The error of a `finish` whose reservation is gone.
fn lost(client: ClientId, outcomes: &[(u64, &Outcome)]) -> StoreError {
    StoreError::LeaseLost {
        client,
        seq: outcomes.first().map_or(0, |(seq, _)| *seq),
    }
}

struct Quota {
    owned: usize,
    /// New client IDs the user may still make now; refills over a minute.
    tokens: f64,
    at: Instant,
}

/// What [`Ledger::finish`] changed, for a durable store to write.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Finished {
    /// A final outcome: the mark moved to this packet.
    Final,
    /// The packet could not run (`Unavailable`): nothing changed.
    NotRun,
    /// The outcome was already recorded (in a handler's transaction): only the reservation
    /// ended.
    AlreadyFinal,
}

impl Ledger {
    pub(crate) fn new(limits: OutcomeLimits, durable: bool) -> Self {
        Self {
            durable,
            limits,
            clients: HashMap::new(),
            users: HashMap::new(),
            bytes: 0,
            next_lease: 1,
            last_sweep: Instant::now(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.clients.len()
    }

    pub(crate) fn outcome_bytes(&self) -> usize {
        self.bytes
    }

    /// The clients seen since `since`.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn seen_since(&self, since: Instant) -> Vec<ClientId> {
        self.clients
            .iter()
            .filter(|(_, r)| r.seen >= since)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The mark of `client`: its highest packet with a final outcome.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn mark(&self, client: ClientId) -> Option<u64> {
        self.clients.get(&client).map(|r| r.saved.mark)
    }

    /// The claim of a known client, or `None` if the ledger does not know it.
    pub(crate) fn known_claim(
        &mut self,
        client: ClientId,
        user: &str,
        now: Instant,
    ) -> Option<Claim> {
        let record = self.clients.get_mut(&client)?;
        record.seen = now;
        Some(if &*record.saved.owner == user {
            Claim::Granted
        } else {
            Claim::Foreign
        })
    }

    /// Whether a user who owns `owned` clients may make a new one now; takes one of the
    /// new-client tokens of `rate` (the user, or an anonymous visitor's address) if so. The
    /// caller then records the client and [`load`]s it.
    ///
    /// [`load`]: Self::load
    pub(crate) fn may_add(
        &mut self,
        rate: &str,
        owned: usize,
        now: Instant,
    ) -> Result<(), ClientLimit> {
        let per_minute = self.limits.new_clients_per_minute;
        if owned >= self.limits.clients_per_user {
            return Err(ClientLimit::PerUser(self.limits.clients_per_user));
        }
        let quota = match self.users.get_mut(rate) {
            Some(quota) => quota,
            None => self.users.entry(Arc::from(rate)).or_insert(Quota {
                owned: 0,
                tokens: f64::from(per_minute),
                at: now,
            }),
        };
        let refill = now.duration_since(quota.at).as_secs_f64() * f64::from(per_minute) / 60.0;
        quota.tokens = (quota.tokens + refill).min(f64::from(per_minute));
        quota.at = now;
        if quota.tokens < 1.0 {
            return Err(ClientLimit::PerMinute(per_minute));
        }
        quota.tokens -= 1.0;
        // Only a claim within its own limits looks for room, and a full table is swept at
        // most once a second (each sweep reads every client under the store's lock).
        if self.clients.len() >= self.limits.max_clients {
            self.sweep(now, false);
            if self.clients.len() >= self.limits.max_clients {
                // Refused for want of room: the token is given back.
                if let Some(quota) = self.users.get_mut(rate) {
                    quota.tokens += 1.0;
                }
                return Err(ClientLimit::Total(self.limits.max_clients));
            }
        }
        Ok(())
    }

    /// Binds `client` to `user` if it is new and the limits allow: the in-memory store's
    /// claim, where the ledger is all there is.
    #[cfg(test)]
    pub(crate) fn admit(&mut self, client: ClientId, user: &str, now: Instant) -> Claim {
        self.admit_at(client, user, user, now)
    }

    /// [`admit`](Self::admit), with the new client counted per minute against `rate`.
    pub(crate) fn admit_at(
        &mut self,
        client: ClientId,
        user: &str,
        rate: &str,
        now: Instant,
    ) -> Claim {
        if let Some(claim) = self.known_claim(client, user, now) {
            return claim;
        }
        let owned = self.users.get(user).map_or(0, |quota| quota.owned);
        if let Err(limit) = self.may_add(rate, owned, now) {
            return Claim::Refused(limit);
        }
        let owner = self
            .users
            .get_key_value(user)
            .map_or_else(|| Arc::from(user), |(name, _)| Arc::clone(name));
        self.load(client, Saved { owner, mark: 0 }, now);
        Claim::Granted
    }

    /// Adds a client bound to its owner, new or loaded from a durable store.
    pub(crate) fn load(&mut self, client: ClientId, saved: Saved, now: Instant) {
        if self.clients.contains_key(&client) {
            return;
        }
        let quota = self.users.entry(Arc::clone(&saved.owner)).or_insert(Quota {
            owned: 0,
            tokens: f64::from(self.limits.new_clients_per_minute),
            at: now,
        });
        quota.owned += 1;
        self.clients.insert(client, Record::new(saved, now));
    }

    /// What to do with packet `seq` of `client`, which follows no other; reserves it if it may
    /// run.
    pub(crate) fn begin(
        &mut self,
        client: ClientId,
        seq: u64,
        now: Instant,
    ) -> Result<Begin, StoreError> {
        let mut answers = self.begin_batch(client, &[seq], 0, now)?;
        Ok(answers.pop().unwrap_or(Begin::Expired))
    }

    /// What to do with the packets `seqs` of `client`, sent after its call `after`: a
    /// non-empty prefix of them (when `seqs` is not empty) is answered. Packets at or below the
    /// mark are answered from the kept outcomes; from the first one above it, a run of
    /// ascending packets is reserved under one lease (the [`Begin::Run`] answers come last),
    /// unless another reservation stands in the way or call `after` has not run yet.
    pub(crate) fn begin_batch(
        &mut self,
        client: ClientId,
        seqs: &[u64],
        after: u64,
        now: Instant,
    ) -> Result<Vec<Begin>, StoreError> {
        let lease = self.next_lease;
        let record = self
            .clients
            .get_mut(&client)
            .ok_or(StoreError::UnknownClient(client))?;
        record.seen = now;
        let mut answers = Vec::with_capacity(seqs.len());
        let mut rest = seqs;
        while let Some((&seq, after)) = rest.split_first() {
            if seq > record.saved.mark {
                break;
            }
            answers.push(
                match record.outcomes.binary_search_by_key(&seq, |(s, _)| *s) {
                    Ok(index) => Begin::Done(record.outcomes[index].1.clone()),
                    Err(_) => Begin::Expired,
                },
            );
            rest = after;
        }
        let Some(&first) = rest.first() else {
            return Ok(answers);
        };
        if let Some(running) = record.running {
            answers.push(Begin::Busy(running.from));
            return Ok(answers);
        }
        if after > record.saved.mark {
            answers.push(Begin::Blocked(after));
            return Ok(answers);
        }
        // The ascending run from `first`: a packet out of order is answered in a later step.
        let mut to = first;
        answers.push(Begin::Run(Lease(lease)));
        for &seq in &rest[1..] {
            if seq <= to {
                break;
            }
            to = seq;
            answers.push(Begin::Run(Lease(lease)));
        }
        self.next_lease += 1;
        record.ran = Vec::new();
        record.running = Some(Reserved {
            from: first,
            to,
            lease,
        });
        Ok(answers)
    }

    /// Whether `seq` of `client` is reserved now (by anyone).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn is_running(&self, client: ClientId, seq: u64) -> bool {
        self.clients.get(&client).is_some_and(|r| {
            r.running
                .is_some_and(|run| (run.from..=run.to).contains(&seq))
        })
    }

    /// Records the outcome of a reserved packet and ends its reservation.
    #[cfg(test)]
    pub(crate) fn finish(
        &mut self,
        client: ClientId,
        seq: u64,
        lease: Lease,
        outcome: &Outcome,
        now: Instant,
    ) -> Result<Finished, StoreError> {
        let mut finished = self.finish_batch(client, lease, &[(seq, outcome)], now)?;
        Ok(finished.pop().map_or(Finished::AlreadyFinal, |(_, f)| f))
    }

    /// Records the outcomes of packets reserved under `lease`, in order, and ends the
    /// reservation (of the reserved packets that did not run too). Returns what changed for
    /// each.
    pub(crate) fn finish_batch(
        &mut self,
        client: ClientId,
        lease: Lease,
        outcomes: &[(u64, &Outcome)],
        now: Instant,
    ) -> Result<Vec<(u64, Finished)>, StoreError> {
        let durable = self.durable;
        let Some(record) = self.clients.get_mut(&client) else {
            return Err(lost(client, outcomes));
        };
        let Some(reserved) = record.running.filter(|r| r.lease == lease.0) else {
            return Err(lost(client, outcomes));
        };
        if outcomes
            .iter()
            .any(|(seq, _)| !(reserved.from..=reserved.to).contains(seq))
        {
            return Err(lost(client, outcomes));
        }
        record.running = None;
        // Its room goes too: a batch of thousands leaves none behind.
        record.ran = Vec::new();
        record.seen = now;
        let mut finished = Vec::with_capacity(outcomes.len());
        // One lookup for the batch; the budget over all clients is checked once at its end.
        let (mut added, mut removed) = (0, 0);
        for &(seq, outcome) in outcomes {
            if seq <= record.saved.mark {
                finished.push((seq, Finished::AlreadyFinal));
                continue;
            }
            if matches!(outcome, Outcome::Unavailable { .. }) {
                finished.push((seq, Finished::NotRun));
                continue;
            }
            record.dirty = durable;
            record.version += 1;
            let (more, less) = record.advance(seq, outcome.clone(), &self.limits);
            added += more;
            removed += less;
            finished.push((seq, Finished::Final));
        }
        self.account(client, added, removed);
        Ok(finished)
    }

    /// Records a final outcome that a handler committed itself, while its packet is still
    /// reserved; the reservation ends with the packet's `finish`.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn committed(&mut self, client: ClientId, seq: u64, outcome: Outcome) {
        let Some(record) = self.clients.get_mut(&client) else {
            return;
        };
        if seq <= record.saved.mark {
            return;
        }
        // The packets of the reservation that ran before it were committed with it; those
        // after it (run while a handler that ran out of time still committed) wait for theirs.
        let mut earlier = Vec::new();
        record.ran.retain(|(s, outcome)| {
            if *s < seq {
                earlier.push((*s, outcome.clone()));
            }
            *s > seq
        });
        for (earlier, outcome) in earlier {
            self.advance(client, earlier, outcome);
        }
        self.advance(client, seq, outcome);
    }

    /// Keeps the final outcome of a reserved packet that ran, until its batch is finished
    /// (see [`Ledger::committed`]).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn ran(&mut self, client: ClientId, seq: u64, outcome: &Outcome) {
        if let Some(record) = self.clients.get_mut(&client)
            && seq > record.saved.mark
            && record
                .running
                .is_some_and(|run| (run.from..=run.to).contains(&seq))
        {
            record.ran.push((seq, outcome.clone()));
            if matches!(
                outcome,
                Outcome::Rejected {
                    code: RejectCode::Timeout,
                    ..
                }
            ) {
                if record.timed_out.len() == TIMED_OUT_KEPT {
                    record.timed_out.pop_front();
                }
                record.timed_out.push_back(seq);
            }
        }
    }

    /// Whether packet `seq` of `client` is reserved under `lease` now.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn reserved_by(&self, client: ClientId, seq: u64, lease: u64) -> bool {
        self.clients.get(&client).is_some_and(|record| {
            record
                .running
                .is_some_and(|run| run.lease == lease && (run.from..=run.to).contains(&seq))
        })
    }

    /// The outcomes of the reservation's packets that ran before `seq`, in order: what a
    /// handler's own commit of `seq` writes with it.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn ran_before(&self, client: ClientId, seq: u64) -> Vec<(u64, Outcome)> {
        self.clients.get(&client).map_or_else(Vec::new, |record| {
            record
                .ran
                .iter()
                .filter(|(s, _)| *s < seq && *s > record.saved.mark)
                .cloned()
                .collect()
        })
    }

    /// Whether the server answered packet `seq` as stopped for its time (`Timeout`), lately:
    /// its handler is gone, though work it handed to a thread may still go on.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn timed_out(&self, client: ClientId, seq: u64) -> bool {
        self.clients
            .get(&client)
            .is_some_and(|record| record.timed_out.contains(&seq))
    }

    /// Drops the kept outcomes of `client`, as the budgets may.
    #[cfg(all(test, feature = "sqlite"))]
    pub(crate) fn drop_outcomes_of(&mut self, client: ClientId) {
        if let Some(record) = self.clients.get_mut(&client) {
            self.bytes -= record.drop_outcomes();
        }
    }

    fn advance(&mut self, client: ClientId, seq: u64, outcome: Outcome) {
        let Some(record) = self.clients.get_mut(&client) else {
            return;
        };
        let (added, removed) = record.advance(seq, outcome, &self.limits);
        self.account(client, added, removed);
    }

    /// Counts the outcome bytes `client` gained and lost, and sheds others' if the total is
    /// over its budget.
    fn account(&mut self, client: ClientId, added: usize, removed: usize) {
        self.bytes = self.bytes + added - removed;
        if self.bytes > self.limits.total_bytes {
            self.shed(client);
        }
    }

    /// Drops outcomes until a quarter of the budget is free again, sparing `keep` (the client
    /// that just grew): first those of the users who hold the most, so that one signed-in
    /// user's many clients cannot push out everyone else's; of one user, its least recently
    /// seen clients' first.
    fn shed(&mut self, keep: ClientId) {
        let target = self.limits.total_bytes - self.limits.total_bytes / 4;
        let mut per_user: HashMap<&str, usize> = HashMap::new();
        for record in self.clients.values() {
            *per_user.entry(&record.saved.owner).or_default() += record.bytes;
        }
        let mut holders: Vec<(std::cmp::Reverse<usize>, Instant, ClientId)> = self
            .clients
            .iter()
            .filter(|(id, r)| r.bytes > 0 && **id != keep)
            .map(|(id, r)| {
                let held = per_user.get(&*r.saved.owner).copied().unwrap_or(0);
                (std::cmp::Reverse(held), r.seen, *id)
            })
            .collect();
        holders.sort_unstable();
        for (_, _, id) in holders {
            if self.bytes <= target {
                break;
            }
            if let Some(record) = self.clients.get_mut(&id) {
                self.bytes -= record.drop_outcomes();
            }
        }
        if self.bytes > self.limits.total_bytes
            && let Some(record) = self.clients.get_mut(&keep)
        {
            // One client alone is over the whole budget: keep its newest outcomes that fit.
            while self.bytes > target {
                let Some((_, old)) = record.outcomes.pop_front() else {
                    break;
                };
                let size = outcome_bytes(&old);
                record.bytes -= size;
                self.bytes -= size;
            }
        }
    }

    /// The state of `client` to write if it has changes not yet durable, with its version.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn dirty(&self, client: ClientId) -> Option<(Saved, u64)> {
        let record = self.clients.get(&client)?;
        record.dirty.then(|| (record.saved.clone(), record.version))
    }

    /// The state of `client` at `version` is durable: unless it changed since, it may go.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn written(&mut self, client: ClientId, version: u64) {
        if let Some(record) = self.clients.get_mut(&client)
            && record.version == version
        {
            record.dirty = false;
        }
    }

    /// Forgets what time has made stale, at most once a second unless `force`d: the outcomes
    /// of clients idle longer than the idle time; whole clients idle longer than the
    /// ownership time, or, in a durable store's ledger (which can load them again), idle
    /// longer than the idle time. A client running a packet or with changes not yet durable
    /// stays.
    pub(crate) fn sweep(&mut self, now: Instant, force: bool) {
        if !force
            && now.duration_since(self.last_sweep) < Duration::from_secs(1).min(self.limits.idle)
        {
            return;
        }
        self.last_sweep = now;
        let idle = self.limits.idle;
        let forget = if self.durable {
            idle
        } else {
            self.limits.ownership_time()
        };
        let mut freed = 0;
        let users = &mut self.users;
        self.clients.retain(|_, record| {
            let quiet = now.duration_since(record.seen);
            if record.running.is_some() || record.dirty {
                return true;
            }
            if quiet >= forget {
                freed += record.bytes;
                if let Some(quota) = users.get_mut(&record.saved.owner) {
                    quota.owned = quota.owned.saturating_sub(1);
                }
                return false;
            }
            if quiet >= idle {
                freed += record.drop_outcomes();
            }
            true
        });
        self.bytes -= freed;
        let per_minute = f64::from(self.limits.new_clients_per_minute);
        self.users.retain(|_, quota| {
            quota.owned > 0
                || now.duration_since(quota.at).as_secs_f64() * per_minute / 60.0 + quota.tokens
                    < per_minute
        });
        if self.clients.capacity() > 2 * self.clients.len() + 64 {
            self.clients.shrink_to_fit();
            self.users.shrink_to_fit();
        }
    }
}

impl Record {
    fn new(saved: Saved, now: Instant) -> Self {
        Self {
            saved,
            running: None,
            outcomes: VecDeque::new(),
            ran: Vec::new(),
            timed_out: VecDeque::new(),
            bytes: 0,
            seen: now,
            dirty: false,
            version: 0,
        }
    }

    /// Moves the mark to `seq` and keeps its final `outcome` within the client's budgets;
    /// returns the outcome bytes kept and the bytes of older outcomes dropped for room.
    fn advance(&mut self, seq: u64, outcome: Outcome, limits: &OutcomeLimits) -> (usize, usize) {
        self.saved.mark = seq;
        let mut added = 0;
        let size = outcome_bytes(&outcome);
        if size <= limits.bytes_per_client {
            self.outcomes.push_back((seq, outcome));
            self.bytes += size;
            added = size;
        }
        let mut removed = 0;
        while self.outcomes.len() > limits.outcomes_per_client
            || self.bytes > limits.bytes_per_client
        {
            let Some((_, old)) = self.outcomes.pop_front() else {
                break;
            };
            let size = outcome_bytes(&old);
            self.bytes -= size;
            removed += size;
        }
        (added, removed)
    }

    /// Drops every kept outcome; returns the bytes freed.
    fn drop_outcomes(&mut self) -> usize {
        self.outcomes = VecDeque::new();
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(byte: u8) -> Outcome {
        Outcome::Ok(vec![byte].into())
    }

    fn run(ledger: &mut Ledger, client: ClientId, seq: u64, outcome: &Outcome, now: Instant) {
        let Ok(Begin::Run(lease)) = ledger.begin(client, seq, now) else {
            panic!("packet {seq} should run");
        };
        ledger.finish(client, seq, lease, outcome, now).unwrap();
    }

    #[test]
    fn a_packet_runs_once_then_replays_then_expires() {
        let mut ledger = Ledger::new(OutcomeLimits::default().outcomes_per_client(2), false);
        let (c, now) = (ClientId(1), Instant::now());
        assert_eq!(ledger.admit(c, "ann", now), Claim::Granted);
        assert_eq!(ledger.admit(c, "bob", now), Claim::Foreign);
        for seq in 1..=3 {
            run(&mut ledger, c, seq, &ok(seq as u8), now);
        }
        assert_eq!(ledger.begin(c, 3, now), Ok(Begin::Done(ok(3))));
        assert_eq!(ledger.begin(c, 1, now), Ok(Begin::Expired));
        assert!(matches!(ledger.begin(c, 4, now), Ok(Begin::Run(_))));
    }

    #[test]
    fn a_batch_is_reserved_under_one_lease_and_recorded_in_one_step() {
        let mut ledger = Ledger::new(OutcomeLimits::default(), false);
        let (c, now) = (ClientId(1), Instant::now());
        ledger.admit(c, "ann", now);
        run(&mut ledger, c, 1, &ok(1), now);
        // 1 is done; 2, 3 and 5 are reserved together; 4, out of order, waits for a later step.
        let answers = ledger.begin_batch(c, &[1, 2, 3, 5, 4], 0, now).unwrap();
        assert_eq!(answers.len(), 4);
        assert_eq!(answers[0], Begin::Done(ok(1)));
        let Begin::Run(lease) = &answers[1] else {
            panic!("2 should run: {answers:?}");
        };
        let lease = *lease;
        assert!(answers[1..].iter().all(|a| *a == Begin::Run(lease)));
        assert!(ledger.is_running(c, 3) && ledger.is_running(c, 5));
        assert!(!ledger.is_running(c, 6));
        // Meanwhile, another step finds them taken.
        assert_eq!(
            ledger.begin_batch(c, &[2], 0, now),
            Ok(vec![Begin::Busy(2)])
        );
        // A packet the lease does not cover is refused, and the reservation stays.
        assert!(ledger.finish_batch(c, lease, &[(7, &ok(7))], now).is_err());
        assert!(ledger.is_running(c, 2));
        // 2 ran, 3 could not; 5, not run, is released.
        let later = Outcome::Unavailable {
            message: "later".into(),
        };
        let finished = ledger
            .finish_batch(c, lease, &[(2, &ok(2)), (3, &later)], now)
            .unwrap();
        assert_eq!(finished, [(2, Finished::Final), (3, Finished::NotRun)]);
        assert!(!ledger.is_running(c, 5));
        // Sent after 3, which its client still waits for, 5 waits.
        assert_eq!(
            ledger.begin_batch(c, &[2, 5], 3, now),
            Ok(vec![Begin::Done(ok(2)), Begin::Blocked(3)])
        );
        // 3 runs again, with the one after it.
        let answers = ledger.begin_batch(c, &[3, 5], 0, now).unwrap();
        assert!(matches!(answers[..], [Begin::Run(a), Begin::Run(b)] if a == b));
    }

    #[test]
    fn a_reserved_packet_is_not_handed_out_twice() {
        let mut ledger = Ledger::new(OutcomeLimits::default(), false);
        let (c, now) = (ClientId(1), Instant::now());
        ledger.admit(c, "ann", now);
        let Ok(Begin::Run(lease)) = ledger.begin(c, 1, now) else {
            panic!()
        };
        assert_eq!(ledger.begin(c, 1, now), Ok(Begin::Busy(1)));
        assert_eq!(ledger.begin(c, 2, now), Ok(Begin::Busy(1)));
        let stolen = Lease(lease.0 + 100);
        assert_eq!(
            ledger.finish(c, 1, stolen, &ok(1), now),
            Err(StoreError::LeaseLost { client: c, seq: 1 })
        );
        assert_eq!(ledger.finish(c, 1, lease, &ok(1), now), Ok(Finished::Final));
        assert_eq!(
            ledger.finish(c, 1, lease, &ok(9), now),
            Err(StoreError::LeaseLost { client: c, seq: 1 }),
            "a lease ends with its finish"
        );
        assert_eq!(ledger.begin(c, 1, now), Ok(Begin::Done(ok(1))));
    }

    #[test]
    fn a_batch_waits_for_the_call_it_follows_and_not_for_one_given_up() {
        let mut ledger = Ledger::new(OutcomeLimits::default(), false);
        let (c, now) = (ClientId(1), Instant::now());
        ledger.admit(c, "ann", now);
        let later = Outcome::Unavailable {
            message: "later".into(),
        };
        // 1 and 2 were sent; their batch has not run yet (it waits elsewhere, say): 3, sent
        // after them, waits for 2.
        assert_eq!(
            ledger.begin_batch(c, &[3], 2, now),
            Ok(vec![Begin::Blocked(2)])
        );
        run(&mut ledger, c, 1, &ok(1), now);
        assert_eq!(
            ledger.begin_batch(c, &[3], 2, now),
            Ok(vec![Begin::Blocked(2)])
        );
        // 2 could not run; the client waits for it still, then no longer (it gave up).
        run(&mut ledger, c, 2, &later, now);
        assert_eq!(
            ledger.begin_batch(c, &[3], 2, now),
            Ok(vec![Begin::Blocked(2)])
        );
        let answers = ledger.begin_batch(c, &[3], 0, now).unwrap();
        let [Begin::Run(lease)] = answers[..] else {
            panic!("3 should run: {answers:?}");
        };
        // Once later calls ran, a copy of 2 still on its way never runs.
        ledger.finish_batch(c, lease, &[(3, &ok(3))], now).unwrap();
        assert_eq!(ledger.begin(c, 2, now), Ok(Begin::Expired));
    }

    #[test]
    fn an_outcome_committed_by_its_handler_is_not_recorded_again() {
        let mut ledger = Ledger::new(OutcomeLimits::default(), false);
        let (c, now) = (ClientId(1), Instant::now());
        ledger.admit(c, "ann", now);
        let Ok(Begin::Run(lease)) = ledger.begin(c, 1, now) else {
            panic!()
        };
        assert!(ledger.is_running(c, 1));
        ledger.committed(c, 1, ok(1));
        let retry = Outcome::Unavailable {
            message: "asked too late".into(),
        };
        assert_eq!(
            ledger.finish(c, 1, lease, &retry, now),
            Ok(Finished::AlreadyFinal)
        );
        assert_eq!(ledger.begin(c, 1, now), Ok(Begin::Done(ok(1))));
    }

    #[test]
    fn a_late_commit_keeps_the_outcomes_of_the_packets_that_ran_after_it() {
        let mut ledger = Ledger::new(OutcomeLimits::default(), false);
        let (c, now) = (ClientId(1), Instant::now());
        ledger.admit(c, "ann", now);
        let begun = ledger.begin_batch(c, &[1, 2, 3], 0, now).unwrap();
        assert!(matches!(
            begun[..],
            [Begin::Run(_), Begin::Run(_), Begin::Run(_)]
        ));
        // 1 ran out of time, though its transaction goes on; 2 ran; then 1's committed.
        let stopped = Outcome::Rejected {
            code: RejectCode::Timeout,
            message: "ran out of time".into(),
        };
        ledger.ran(c, 1, &stopped);
        assert!(ledger.timed_out(c, 1));
        ledger.ran(c, 2, &ok(2));
        ledger.committed(c, 1, ok(1));
        // 3's own commit must write 2's outcome with it.
        assert_eq!(ledger.ran_before(c, 3), [(2, ok(2))]);
        assert!(!ledger.timed_out(c, 2));
    }

    #[test]
    fn idle_clients_lose_their_outcomes_but_keep_their_owner_and_mark() {
        let limits = OutcomeLimits::default()
            .idle(Duration::from_millis(10))
            .ownership(Duration::from_secs(3600));
        let mut ledger = Ledger::new(limits, false);
        let (c, start) = (ClientId(1), Instant::now());
        ledger.admit(c, "ann", start);
        run(&mut ledger, c, 1, &ok(1), start);
        assert!(ledger.outcome_bytes() > 0);
        let later = start + Duration::from_secs(5);
        ledger.sweep(later, true);
        assert_eq!(ledger.outcome_bytes(), 0);
        assert_eq!(
            ledger.begin(c, 1, later),
            Ok(Begin::Expired),
            "never run again"
        );
        assert_eq!(ledger.admit(c, "mallory", later), Claim::Foreign);
        ledger.sweep(later + Duration::from_secs(7200), true);
        assert_eq!(ledger.len(), 0, "forgotten after the ownership time");
    }

    #[test]
    fn a_full_table_is_swept_at_most_once_a_second_and_refuses_over_limit_users_first() {
        let limits = OutcomeLimits::default()
            .max_clients(2)
            .new_clients_per_minute(3)
            .idle(Duration::from_secs(60));
        let mut ledger = Ledger::new(limits.clone(), false);
        let start = Instant::now();
        ledger.admit(ClientId(1), "ann", start);
        ledger.admit(ClientId(2), "ann", start);
        let swept = ledger.last_sweep;
        let later = swept + Duration::from_millis(1500);
        let full = Claim::Refused(ClientLimit::Total(2));
        assert_eq!(ledger.admit(ClientId(3), "bob", later), full);
        assert_eq!(ledger.last_sweep, later, "swept once");
        for n in 0..100 {
            let at = later + Duration::from_micros(n);
            assert_eq!(ledger.admit(ClientId(4 + n), "bob", at), full);
        }
        assert_eq!(ledger.last_sweep, later, "not again within the second");
        // Refused for want of room, bob kept his new-client tokens.
        assert!(
            ledger.users["bob"].tokens >= 2.99,
            "{}",
            ledger.users["bob"].tokens
        );
        // Ann, over her own limit, is told so without a look at the table.
        let mut ledger = Ledger::new(limits.clients_per_user(2), false);
        ledger.admit(ClientId(1), "ann", start);
        ledger.admit(ClientId(2), "ann", start);
        let before = ledger.last_sweep;
        assert_eq!(
            ledger.admit(ClientId(3), "ann", later),
            Claim::Refused(ClientLimit::PerUser(2))
        );
        assert_eq!(ledger.last_sweep, before, "no sweep");
    }

    #[test]
    fn one_user_cannot_make_client_ids_without_end() {
        let limits = OutcomeLimits::default()
            .new_clients_per_minute(5)
            .clients_per_user(8);
        let mut ledger = Ledger::new(limits, false);
        let now = Instant::now();
        let claims: Vec<Claim> = (0..6)
            .map(|c| ledger.admit(ClientId(c), "mallory", now))
            .collect();
        assert_eq!(claims[..5], [Claim::Granted; 5]);
        assert_eq!(claims[5], Claim::Refused(ClientLimit::PerMinute(5)));
        assert_eq!(ledger.admit(ClientId(100), "ann", now), Claim::Granted);
        // Each anonymous visitor (client key) is a user of its own.
        let visitors: Vec<Claim> = (200..220)
            .map(|c| ledger.admit(ClientId(c), &format!("anonymous:{c}"), now))
            .collect();
        assert_eq!(visitors, [Claim::Granted; 20], "visitors share no quota");
        let later = now + Duration::from_secs(60);
        let claims: Vec<Claim> = (10..14)
            .map(|c| ledger.admit(ClientId(c), "mallory", later))
            .collect();
        assert_eq!(claims[..3], [Claim::Granted; 3]);
        assert_eq!(claims[3], Claim::Refused(ClientLimit::PerUser(8)));
    }

    #[test]
    fn outcomes_stay_within_their_byte_budgets() {
        let limits = OutcomeLimits::default()
            .bytes_per_client(2_000)
            .total_bytes(10_000);
        let mut ledger = Ledger::new(limits, false);
        let now = Instant::now();
        let big = Outcome::Ok(vec![7; 900].into());
        for client in 0..20 {
            let c = ClientId(client);
            ledger.admit(c, "ann", now + Duration::from_millis(client));
            for seq in 1..=5 {
                run(
                    &mut ledger,
                    c,
                    seq,
                    &big,
                    now + Duration::from_millis(client),
                );
                assert!(ledger.outcome_bytes() <= 10_000);
            }
        }
        let newest = ClientId(19);
        let at = now + Duration::from_secs(1);
        assert_eq!(ledger.begin(newest, 5, at), Ok(Begin::Done(big.clone())));
        assert_eq!(
            ledger.begin(newest, 3, at),
            Ok(Begin::Expired),
            "over its own budget"
        );
        assert_eq!(
            ledger.begin(ClientId(0), 5, at),
            Ok(Begin::Expired),
            "shed first"
        );
        let huge = Outcome::Ok(vec![0; 5_000].into());
        run(&mut ledger, newest, 6, &huge, at);
        assert_eq!(
            ledger.begin(newest, 6, at),
            Ok(Begin::Expired),
            "never kept"
        );
    }

    #[test]
    fn one_users_many_clients_shed_their_own_outcomes_before_anyone_elses() {
        let limits = OutcomeLimits::default()
            .bytes_per_client(2_000)
            .total_bytes(10_000);
        let mut ledger = Ledger::new(limits, false);
        let now = Instant::now();
        let big = Outcome::Ok(vec![7; 900].into());
        // Ann's one client, seen long ago, keeps its outcome...
        ledger.admit(ClientId(1), "ann", now);
        run(&mut ledger, ClientId(1), 1, &big, now);
        // ...however many clients mallory fills after it.
        for client in 100..130 {
            let (c, at) = (ClientId(client), now + Duration::from_millis(client));
            ledger.admit(c, "mallory", at);
            for seq in 1..=2 {
                run(&mut ledger, c, seq, &big, at);
                assert!(ledger.outcome_bytes() <= 10_000);
            }
        }
        let at = now + Duration::from_secs(1);
        assert_eq!(ledger.begin(ClientId(1), 1, at), Ok(Begin::Done(big)));
    }
}
