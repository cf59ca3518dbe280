//! The calls of one client, from the moment they are made until their outcome is known.
//!
//! A call is `queued` until it is sent, then `in flight` until its result arrives. Calls that
//! lose their result (a dropped connection, a `reset`) go back to the queue, in order, and are
//! sent again under the same sequence numbers, which the server never runs twice.

use std::collections::VecDeque;

use crudp_runtime::{ClientId, Outcome, Packet, TransportError, protocol::encode_packets_after};

pub(crate) mod reply;
pub(crate) mod storage;

use reply::ReplySender;
use storage::Saved;

/// What a waiting call is told: the server's outcome, or why there is none.
pub(crate) type Reply = Result<Outcome, TransportError>;

pub(crate) struct Call {
    pub(crate) packet: Packet,
    pub(crate) reply: Option<ReplySender>,
}

impl Call {
    /// Hands the reply to the call's future, and returns the waker of its task (see
    /// [`reply`]).
    #[must_use = "the call's task waits until it is woken"]
    pub(crate) fn resolve(mut self, reply: Reply) -> Option<std::task::Waker> {
        self.reply.take()?.fill(reply)
    }
}

#[derive(Default)]
pub(crate) struct Calls {
    next_seq: u64,
    queued: VecDeque<Call>,
    /// In sequence order: results mostly come in that order, so an answered call is mostly
    /// the first.
    in_flight: VecDeque<Call>,
}

impl Calls {
    pub(crate) fn new() -> Self {
        Self {
            next_seq: 1,
            ..Self::default()
        }
    }

    /// A queue restored from storage: its calls have no futures waiting, only listeners.
    pub(crate) fn restore(saved: Saved) -> Self {
        let mut calls = Self::new();
        calls.next_seq = saved.next_seq.max(1);
        for packet in saved.packets {
            calls.next_seq = calls.next_seq.max(packet.seq + 1);
            calls.queued.push_back(Call {
                packet,
                reply: None,
            });
        }
        calls
    }

    /// What to save: every call without an outcome, in order.
    pub(crate) fn snapshot(&self) -> Saved {
        // Both are in sequence order: merged, not sorted.
        let (mut sent, mut queued) = (
            self.in_flight.iter().peekable(),
            self.queued.iter().peekable(),
        );
        let mut packets = Vec::with_capacity(self.in_flight.len() + self.queued.len());
        loop {
            let next = match (sent.peek(), queued.peek()) {
                (Some(a), Some(b)) if a.packet.seq > b.packet.seq => queued.next(),
                (Some(_), _) => sent.next(),
                (None, _) => queued.next(),
            };
            let Some(call) = next else { break };
            packets.push(call.packet.clone());
        }
        Saved {
            next_seq: self.next_seq,
            packets,
        }
    }

    /// New calls' sequence numbers go on from `seq`, if they were below it.
    pub(crate) fn skip_to(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq);
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    pub(crate) fn push(&mut self, call: Call) {
        self.queued.push_back(call);
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued.len()
    }

    /// The sequence number of the latest call made.
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// How many queued calls have a sequence number up to `seq` (they lead the queue).
    pub(crate) fn queued_up_to(&self, seq: u64) -> usize {
        self.queued.partition_point(|c| c.packet.seq <= seq)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Moves up to `max` queued calls in flight and returns their sequence numbers and the
    /// encoded batch, encoded from the calls themselves (no packet is copied).
    ///
    /// The batch names the latest call in flight before its first one: sent earlier, that
    /// call may not have run yet (its batch waits on another server, say), and the server runs
    /// none of this batch's before it. The batch stops before a call in flight (calls sent
    /// again go in a batch of their own, not with newer ones past it), so that two batches
    /// never wait for each other. A call given up on is in flight no more, so no batch waits
    /// for it.
    pub(crate) fn take_encoded(&mut self, max: usize, client: ClientId) -> (Vec<u64>, Vec<u8>) {
        // The queue is in sequence order, and so is the flight.
        let first = self.queued.front().map_or(0, |c| c.packet.seq);
        let earlier = self.in_flight.partition_point(|c| c.packet.seq < first);
        let after = earlier
            .checked_sub(1)
            .map_or(0, |i| self.in_flight[i].packet.seq);
        let before = self
            .in_flight
            .get(earlier)
            .map_or(self.queued.len(), |next| {
                self.queued
                    .partition_point(|c| c.packet.seq < next.packet.seq)
            });
        let n = before.min(max);
        let seqs: Vec<u64> = self.queued.iter().take(n).map(|c| c.packet.seq).collect();
        let body =
            encode_packets_after(client, after, self.queued.iter().take(n).map(|c| &c.packet));
        for call in self.queued.drain(..n) {
            // Calls sent again may go before calls still in flight.
            let at = self
                .in_flight
                .partition_point(|c| c.packet.seq < call.packet.seq);
            self.in_flight.insert(at, call);
        }
        (seqs, body)
    }

    /// Puts the in-flight calls among `seqs` (all of them if `None`) back in the queue, in
    /// sequence order, to be sent again.
    pub(crate) fn requeue(&mut self, seqs: Option<&[u64]>) {
        let back = match seqs {
            None => std::mem::take(&mut self.in_flight).into(),
            Some(seqs) => self.remove_in_flight(seqs),
        };
        for call in back {
            let at = self
                .queued
                .partition_point(|c| c.packet.seq < call.packet.seq);
            self.queued.insert(at, call);
        }
    }

    /// The call with this sequence number, removed, whether in flight or queued again.
    pub(crate) fn answer(&mut self, seq: u64) -> Option<Call> {
        if let Some(call) = self.take_in_flight(seq) {
            return Some(call);
        }
        let index = self.queued.iter().position(|c| c.packet.seq == seq)?;
        self.queued.remove(index)
    }

    /// Removes every call, in flight or queued, in sequence order.
    pub(crate) fn drain(&mut self) -> Vec<Call> {
        self.requeue(None);
        self.queued.drain(..).collect()
    }

    /// Removes the in-flight calls among `seqs`.
    pub(crate) fn remove_in_flight(&mut self, seqs: &[u64]) -> Vec<Call> {
        seqs.iter()
            .filter_map(|&seq| self.take_in_flight(seq))
            .collect()
    }

    fn take_in_flight(&mut self, seq: u64) -> Option<Call> {
        if self.in_flight.front().is_some_and(|c| c.packet.seq == seq) {
            return self.in_flight.pop_front();
        }
        let at = self
            .in_flight
            .binary_search_by_key(&seq, |c| c.packet.seq)
            .ok()?;
        self.in_flight.remove(at)
    }

    /// Whether an outcome settles a call: everything but `Unavailable`.
    pub(crate) fn is_final(outcome: &Outcome) -> bool {
        !matches!(outcome, Outcome::Unavailable { .. })
    }
}

#[cfg(test)]
mod tests {
    use crudp_runtime::{Action, protocol::decode_batch_after};

    use super::*;

    fn call(calls: &mut Calls) -> u64 {
        let seq = calls.next_seq();
        calls.push(Call {
            packet: Packet {
                seq,
                handler: 1,
                action: Action::Read,
                args: Default::default(),
            },
            reply: None,
        });
        seq
    }

    #[test]
    fn requeued_calls_go_back_in_order_before_newer_ones() {
        let mut calls = Calls::new();
        let seqs: Vec<_> = (0..5).map(|_| call(&mut calls)).collect();
        let (first, _) = calls.take_encoded(2, ClientId(1));
        let (second, _) = calls.take_encoded(2, ClientId(1));
        assert_eq!(
            (first.len(), second.len(), calls.queued(), calls.in_flight()),
            (2, 2, 1, 4)
        );
        assert!(calls.answer(seqs[1]).is_some());
        calls.requeue(None);
        let (again, _) = calls.take_encoded(10, ClientId(1));
        assert_eq!(again, vec![seqs[0], seqs[2], seqs[3], seqs[4]]);
        assert!(
            calls.answer(seqs[1]).is_none(),
            "an answered call is answered once"
        );
    }

    #[test]
    fn a_batch_follows_the_latest_call_in_flight_before_its_last_one() {
        let mut calls = Calls::new();
        let seqs: Vec<_> = (0..6).map(|_| call(&mut calls)).collect();
        let after = |body: Vec<u8>| decode_batch_after(&body.into(), 10).unwrap().1;
        let (first, body) = calls.take_encoded(2, ClientId(1));
        assert_eq!((first, after(body)), (vec![seqs[0], seqs[1]], 0));
        let (_, body) = calls.take_encoded(2, ClientId(1));
        assert_eq!(after(body), seqs[1], "the first batch may not have run yet");
        // The first answered, the second given back: sent again, it follows nothing.
        calls.answer(seqs[0]);
        calls.answer(seqs[1]);
        calls.requeue(Some(&[seqs[2], seqs[3]]));
        let (again, body) = calls.take_encoded(4, ClientId(1));
        assert_eq!((again.len(), after(body)), (4, 0));
        // Given back again but for 4: the calls before it go alone, then what follows it
        // waits for it.
        calls.requeue(Some(&[seqs[2], seqs[3], seqs[5]]));
        let (again, body) = calls.take_encoded(4, ClientId(1));
        assert_eq!((again, after(body)), (vec![seqs[2], seqs[3]], 0));
        let (again, body) = calls.take_encoded(4, ClientId(1));
        assert_eq!((again, after(body)), (vec![seqs[5]], seqs[4]));
        // Given up on, 4 is no longer waited for.
        calls.requeue(None);
        assert!(calls.answer(seqs[4]).is_some());
        let (again, body) = calls.take_encoded(4, ClientId(1));
        assert_eq!((again.len(), after(body)), (3, 0));
    }

    #[test]
    fn calls_given_back_in_any_order_are_queued_and_saved_in_sequence_order() {
        let mut calls = Calls::new();
        let seqs: Vec<_> = (0..6).map(|_| call(&mut calls)).collect();
        calls.take_encoded(4, ClientId(1));
        calls.requeue(Some(&[seqs[3], seqs[0]]));
        let order = |calls: &Calls| -> Vec<u64> {
            calls.snapshot().packets.iter().map(|p| p.seq).collect()
        };
        assert_eq!(order(&calls), seqs);
        // 1 goes alone, then the rest, after 2 and 3 still in flight.
        let (again, _) = calls.take_encoded(10, ClientId(1));
        assert_eq!(again, vec![seqs[0]]);
        let (again, _) = calls.take_encoded(10, ClientId(1));
        assert_eq!(again, vec![seqs[3], seqs[4], seqs[5]]);
        assert_eq!(order(&calls), seqs);
        calls.requeue(None);
        assert_eq!(calls.in_flight(), 0);
        assert_eq!(order(&calls), seqs);
    }
}
