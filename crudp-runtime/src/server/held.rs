//! Broadcasts in the order their batches ran, when some must wait.
//!
//! A batch whose outcomes the store could not record or make durable yet publishes nothing:
//! a task retries in the background, and its broadcasts are held here until that task gets
//! them through. The same client's later batches queue theirs behind, even when their own
//! outcomes are durable at once, so that whoever hears a client's calls hears them in the
//! order they ran. Nothing is held in the common case: a client with nothing held publishes
//! at once, past one lookup. Batches of one client run one at a time on an instance, so the
//! order is kept per instance.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use crate::{
    context::Target,
    protocol::{Broadcast, ClientId},
};

/// What one batch broadcasts.
pub(super) type Told = Vec<(Broadcast, Target)>;

type Clients = Mutex<HashMap<ClientId, Waiting>>;

/// The broadcasts held per client.
#[derive(Default)]
pub(super) struct Held {
    clients: Arc<Clients>,
}

/// A batch's place among its client's held broadcasts, until its outcomes are durable
/// ([`durable`](Self::durable)) or never will be ([`forget`](Self::forget)). One dropped
/// before either (its task went with its runtime) lets go of its place, so that it holds up
/// nothing after it.
pub(super) struct Ticket {
    clients: Arc<Clients>,
    client: ClientId,
    id: u64,
    settled: bool,
}

impl Ticket {
    /// Its outcomes are durable: answers the first batch for the caller to publish now, as
    /// [`Held::publish_after`] does.
    pub(super) fn durable(mut self) -> Option<Told> {
        self.settled = true;
        let mut clients = lock(&self.clients);
        if let Some((_, _, durable)) = clients
            .get_mut(&self.client)?
            .batches
            .iter_mut()
            .find(|(id, ..)| *id == self.id)
        {
            *durable = true;
        }
        take_turn(&mut clients, self.client)
    }

    /// Its outcomes will never be recorded (the store refused them for good): its calls run
    /// again when sent again, and broadcast then. Answers the first batch for the caller to
    /// publish now, as [`Held::publish_after`] does.
    pub(super) fn forget(self) -> Option<Told> {
        let (clients, client) = (Arc::clone(&self.clients), self.client);
        drop(self);
        take_turn(&mut lock(&clients), client)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut clients = lock(&self.clients);
        if let Some(waiting) = clients.get_mut(&self.client) {
            waiting.batches.retain(|(id, _, _)| *id != self.id);
            if waiting.idle() {
                clients.remove(&self.client);
            }
        }
    }
}

fn lock(clients: &Clients) -> MutexGuard<'_, HashMap<ClientId, Waiting>> {
    clients.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `client`'s oldest batch, for the caller to publish, if it is durable and nobody else
/// publishes the client's; a client left with nothing is let go.
fn take_turn(clients: &mut HashMap<ClientId, Waiting>, client: ClientId) -> Option<Told> {
    let waiting = clients.get_mut(&client)?;
    let first = if waiting.publishing || !waiting.batches.front().is_some_and(|held| held.2) {
        None
    } else {
        waiting.publishing = true;
        waiting.batches.pop_front().map(|(_, told, _)| told)
    };
    if waiting.idle() {
        clients.remove(&client);
    }
    first
}

#[derive(Default)]
struct Waiting {
    /// Oldest first: a batch's ticket, its broadcasts, and whether its outcomes are durable.
    batches: VecDeque<(u64, Told, bool)>,
    next_id: u64,
    /// Whether a task is publishing them: it goes on while the oldest are durable.
    publishing: bool,
}

impl Waiting {
    /// Queues a batch; answers its ticket's number.
    fn push(&mut self, told: Told, durable: bool) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.batches.push_back((id, told, durable));
        id
    }

    fn idle(&self) -> bool {
        self.batches.is_empty() && !self.publishing
    }
}

impl Held {
    fn clients(&self) -> MutexGuard<'_, HashMap<ClientId, Waiting>> {
        lock(&self.clients)
    }

    /// Holds `told`, a batch's broadcasts whose outcomes are not durable yet, behind the
    /// client's earlier ones. Nothing to hold, no ticket.
    pub(super) fn hold(&self, client: ClientId, told: Told) -> Option<Ticket> {
        if told.is_empty() {
            return None;
        }
        let id = self.clients().entry(client).or_default().push(told, false);
        Some(Ticket {
            clients: Arc::clone(&self.clients),
            client,
            id,
            settled: false,
        })
    }

    /// `told`, the broadcasts of a batch whose outcomes are durable now, goes behind what
    /// the client's earlier batches hold. Answers the first batch for the caller to publish
    /// now (then [`next`](Self::next)), if any: `told` itself when nothing is held.
    pub(super) fn publish_after(&self, client: ClientId, told: Told) -> Option<Told> {
        if told.is_empty() {
            return None;
        }
        let mut clients = self.clients();
        let Some(waiting) = clients.get_mut(&client) else {
            return Some(told);
        };
        waiting.push(told, true);
        take_turn(&mut clients, client)
    }

    /// The next batch for the task publishing `client`'s, while the oldest held are durable;
    /// `None` when it is done.
    pub(super) fn next(&self, client: ClientId) -> Option<Told> {
        let mut clients = self.clients();
        clients.get_mut(&client)?.publishing = false;
        take_turn(&mut clients, client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Action;

    fn told(value: u8) -> Told {
        vec![(
            Broadcast {
                handler: 1,
                action: Action::Create,
                value: vec![value].into(),
                origin: None,
            },
            Target::All,
        )]
    }

    fn value(told: Option<Told>) -> Option<u8> {
        told.map(|told| told[0].0.value[0])
    }

    #[test]
    fn a_clients_broadcasts_leave_in_the_order_their_batches_ran() {
        let held = Held::default();
        let (ann, bob) = (ClientId(1), ClientId(2));
        // Nothing held: a batch publishes its own at once.
        assert_eq!(value(held.publish_after(ann, told(0))), Some(0));
        assert_eq!(value(held.next(ann)), None);
        // Ann's first batch waits for its outcomes; her next one, durable at once, waits
        // behind it. Bob is not held up, and a batch that broadcasts nothing changes nothing.
        let first = held.hold(ann, told(1)).expect("a ticket");
        assert!(held.hold(ann, Vec::new()).is_none(), "nothing to hold");
        assert_eq!(value(held.publish_after(ann, told(2))), None);
        assert_eq!(value(held.publish_after(ann, Vec::new())), None);
        assert_eq!(value(held.publish_after(bob, told(9))), Some(9));
        assert_eq!(value(held.next(bob)), None);
        // The first batch's outcomes get through: both leave, in order. A batch that comes
        // meanwhile joins the one publishing.
        assert_eq!(value(first.durable()), Some(1));
        assert_eq!(value(held.publish_after(ann, told(3))), None);
        assert_eq!(value(held.next(ann)), Some(2));
        assert_eq!(value(held.next(ann)), Some(3));
        assert_eq!(value(held.next(ann)), None);
        assert!(held.clients().is_empty(), "nothing left");
    }

    #[test]
    fn a_batch_whose_outcomes_never_get_through_holds_up_nothing_after_it() {
        let held = Held::default();
        let ann = ClientId(1);
        let lost = held.hold(ann, told(1)).expect("a ticket");
        let late = held.hold(ann, told(2)).expect("a ticket");
        assert_eq!(value(held.publish_after(ann, told(3))), None);
        // The second gets through first: it still waits for the first.
        assert_eq!(value(late.durable()), None);
        assert_eq!(value(lost.forget()), Some(2));
        assert_eq!(value(held.next(ann)), Some(3));
        assert_eq!(value(held.next(ann)), None);
        assert!(held.clients().is_empty(), "nothing left");
    }

    #[test]
    fn a_ticket_dropped_with_its_task_holds_up_nothing() {
        let held = Held::default();
        let ann = ClientId(1);
        let gone = held.hold(ann, told(1)).expect("a ticket");
        assert_eq!(value(held.publish_after(ann, told(2))), None);
        drop(gone);
        // The next batch that broadcasts publishes what waited behind it, then its own.
        assert_eq!(value(held.publish_after(ann, told(3))), Some(2));
        assert_eq!(value(held.next(ann)), Some(3));
        assert_eq!(value(held.next(ann)), None);
        assert!(held.clients().is_empty(), "nothing left");
        drop(held.hold(ann, told(4)));
        assert!(held.clients().is_empty(), "nothing left");
    }
}
