//! The batch queue: bounded, in order per client, clients in parallel, users in fair shares.
//!
//! Each client has its own FIFO of batches; a client with work is handed to one worker at a
//! time, which drains its FIFO, so one client's batches never overlap or reorder while
//! different clients run side by side. A user may have only so many batches waiting
//! (`queue_per_user`) and only so many of its clients running at once (`workers_per_user`):
//! the rest of the queue and of the workers stay free for other users, however many client IDs
//! one user makes. Anonymous visitors share per IP address instead.

use std::{
    collections::{HashMap, VecDeque},
    panic::AssertUnwindSafe,
    pin::pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use futures_util::FutureExt;
use tokio::sync::{Notify, oneshot};

use super::{Limits, Shared};
use crate::{
    context::Context,
    protocol::{ClientId, Packet, Results},
};

/// One batch waiting to run.
pub(super) struct Job {
    pub ctx: Context,
    pub packets: Vec<Packet>,
    /// The call of the client its packets run after (`0`: none).
    pub after: u64,
    /// `POST /call` waits for its results here; `POST /sync` results go to the hub.
    pub reply: Option<oneshot::Sender<Results>>,
    /// The bytes it holds, about, for the queue's byte budget.
    pub bytes: usize,
    /// Whose share of the queue and the workers it takes: its user's, or, for an anonymous
    /// visitor, its IP address's (anonymous identities cost nothing to make).
    pub share: Arc<str>,
}

pub(super) struct Queue {
    limits: Limits,
    jobs: Mutex<Jobs>,
    wake: Arc<Wake>,
}

/// How idle workers learn of work, or that the server is gone; and how many there are.
#[derive(Default)]
struct Wake {
    notify: Notify,
    closed: AtomicBool,
    /// The workers alive: none before the first batch, nor after the runtime that ran them
    /// shut down (a server served again on another runtime starts them again there).
    alive: AtomicUsize,
}

/// Counts its worker among the living while the worker's task exists, polled or not.
struct Alive(Arc<Wake>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct Jobs {
    /// A client is present while it has batches waiting or one running.
    per_client: HashMap<ClientId, Waiting>,
    /// Clients with batches waiting and no worker, in the order they became ready.
    ready: VecDeque<ClientId>,
    per_user: HashMap<Arc<str>, Load>,
    /// Clients being run now, by a worker or by the request that queued their batch.
    running: usize,
    waiting: usize,
    /// The body bytes of the batches waiting.
    bytes: usize,
}

impl Jobs {
    /// A client of `user` is no longer run: its worker's place is free.
    fn stop_running(&mut self, user: &Arc<str>) {
        self.running -= 1;
        if let Some(load) = self.per_user.get_mut(user) {
            load.running -= 1;
            if load.running == 0 && load.waiting == 0 {
                self.per_user.remove(user);
            }
        }
    }
}

struct Waiting {
    user: Arc<str>,
    jobs: VecDeque<Job>,
}

/// A user's batches waiting, and its clients a worker runs.
#[derive(Default)]
struct Load {
    waiting: usize,
    running: usize,
}

/// Why a batch was not queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum Full {
    #[error("the server's batch queue is full; retry shortly")]
    Server,
    #[error("this client has {0} batches waiting, its most; retry shortly")]
    Client(usize),
    #[error("this user has {0} batches waiting, its share of the queue; retry shortly")]
    User(usize),
}

impl Queue {
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            limits,
            jobs: Mutex::default(),
            wake: Arc::default(),
        }
    }

    fn jobs(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a batch, starting the workers when none are alive (on first use).
    ///
    /// With `inline`, when the batch's client has nothing else waiting or running and a
    /// worker's place is free, the client is handed to the caller instead of a worker
    /// (`Ok(Some(client))`): the caller must then [`drain`] it.
    pub(super) fn push(
        &self,
        shared: &Arc<Shared>,
        job: Job,
        inline: bool,
    ) -> Result<Option<ClientId>, Full> {
        // First, whatever becomes of this batch: clients may wait for workers (put back by
        // runs cut short) that a batch run inline would not start.
        if self
            .wake
            .alive
            .compare_exchange(0, self.limits.workers, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            start_workers(shared, &self.wake);
        }
        let client = job.ctx.client();
        let limits = &self.limits;
        let mut jobs = self.jobs();
        // A client in the queue counts against the share it came in with, even should its
        // next batch come from another (an anonymous visitor's new address): its counts are
        // taken back from that one.
        let user = jobs
            .per_client
            .get(&client)
            .map_or_else(|| Arc::clone(&job.share), |w| Arc::clone(&w.user));
        let share = Arc::clone(&user);
        let mine = jobs.per_client.get(&client).map_or(0, |w| w.jobs.len());
        let theirs = jobs.per_user.get(&user).map_or(0, |l| l.waiting);
        let over_bytes = jobs.waiting > 0 && jobs.bytes + job.bytes > limits.queue_bytes;
        if jobs.waiting >= limits.queue_depth || over_bytes {
            return Err(Full::Server);
        }
        if mine >= limits.queue_per_client {
            return Err(Full::Client(mine));
        }
        if theirs >= limits.queue_per_user {
            return Err(Full::User(theirs));
        }
        jobs.waiting += 1;
        jobs.bytes += job.bytes;
        super::metrics::queue_depth(jobs.waiting);
        jobs.per_user.entry(Arc::clone(&user)).or_default().waiting += 1;
        let idle = !jobs.per_client.contains_key(&client);
        jobs.per_client
            .entry(client)
            .or_insert_with(|| Waiting {
                user,
                jobs: VecDeque::new(),
            })
            .jobs
            .push_back(job);
        if idle
            && inline
            && jobs.running < limits.workers
            && let Some(load) = jobs.per_user.get_mut(&share)
            && load.running < limits.workers_per_user
        {
            load.running += 1;
            jobs.running += 1;
            return Ok(Some(client));
        }
        if idle {
            jobs.ready.push_back(client);
        }
        drop(jobs);
        if idle {
            self.wake.notify.notify_one();
        }
        Ok(None)
    }

    /// A ready client whose user runs fewer than its share of workers, now handed to the
    /// calling worker.
    fn take_ready(&self) -> Option<ClientId> {
        let mut jobs = self.jobs();
        if jobs.running >= self.limits.workers {
            return None;
        }
        let Jobs {
            per_client,
            ready,
            per_user,
            running,
            ..
        } = &mut *jobs;
        let share = self.limits.workers_per_user;
        let position = ready.iter().position(|client| {
            per_client
                .get(client)
                .and_then(|w| per_user.get(&w.user))
                .is_none_or(|load| load.running < share)
        })?;
        let client = ready.remove(position)?;
        *running += 1;
        if let Some(load) = per_client
            .get(&client)
            .and_then(|w| per_user.get_mut(&w.user))
        {
            load.running += 1;
        }
        Some(client)
    }

    /// The next batch of `client`, or `None`: then the client leaves the queue, and its
    /// worker is free.
    fn next(&self, client: ClientId) -> Option<Job> {
        let mut jobs = self.jobs();
        let waiting = jobs.per_client.get_mut(&client)?;
        let user = Arc::clone(&waiting.user);
        match waiting.jobs.pop_front() {
            Some(job) => {
                jobs.waiting -= 1;
                jobs.bytes -= job.bytes;
                super::metrics::queue_depth(jobs.waiting);
                if let Some(load) = jobs.per_user.get_mut(&user) {
                    load.waiting -= 1;
                }
                Some(job)
            }
            None => {
                jobs.per_client.remove(&client);
                jobs.stop_running(&user);
                // A client may have been waiting for the worker this one had.
                let waited = !jobs.ready.is_empty();
                drop(jobs);
                if waited {
                    self.wake.notify.notify_one();
                }
                None
            }
        }
    }

    /// `client`'s run stopped before its batches did: the batches left wait for a worker
    /// again, first in line.
    fn abandon(&self, client: ClientId) {
        let mut jobs = self.jobs();
        let Some(waiting) = jobs.per_client.get(&client) else {
            return;
        };
        let (user, empty) = (Arc::clone(&waiting.user), waiting.jobs.is_empty());
        jobs.stop_running(&user);
        if empty {
            jobs.per_client.remove(&client);
        } else {
            jobs.ready.push_front(client);
        }
        drop(jobs);
        self.wake.notify.notify_one();
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.wake.closed.store(true, Ordering::SeqCst);
        self.wake.notify.notify_waiters();
    }
}

/// Spawns the workers, already counted among the living.
fn start_workers(shared: &Arc<Shared>, wake: &Arc<Wake>) {
    for _ in 0..shared.limits.workers {
        let alive = Alive(Arc::clone(wake));
        tokio::spawn(work(Arc::downgrade(shared), Arc::clone(wake), alive));
    }
}

/// Takes a ready client, drains its batches in order, repeats. Holds the server weakly, so
/// the workers end with it.
async fn work(shared: Weak<Shared>, wake: Arc<Wake>, _alive: Alive) {
    loop {
        let (server, client) = {
            let mut notified = pin!(wake.notify.notified());
            notified.as_mut().enable();
            if wake.closed.load(Ordering::SeqCst) {
                return;
            }
            let Some(server) = shared.upgrade().map(|shared| super::Crudp { shared }) else {
                return;
            };
            let Some(client) = server.shared.queue.take_ready() else {
                drop(server);
                notified.await;
                continue;
            };
            // The wait ends here, before the run: a waiting worker is the first woken for
            // new work, so one that stayed in line while it ran a long batch would take that
            // work's wake-up with it (dropped, the wait hands it on to the next in line).
            (server, client)
        };
        drain(&server, client).await;
    }
}

/// Runs the batches of `client`, handed to the caller, in order until none is left; then the
/// client leaves the queue.
pub(super) async fn drain(server: &super::Crudp, client: ClientId) {
    // Dropped before the client left the queue (its runtime shut down under it), the client
    // goes back to the ready ones, or it would wait for a worker that is gone.
    struct Draining<'a>(&'a Queue, Option<ClientId>);
    impl Drop for Draining<'_> {
        fn drop(&mut self) {
            if let Some(client) = self.1 {
                self.0.abandon(client);
            }
        }
    }
    let mut draining = Draining(&server.shared.queue, Some(client));
    while let Some(job) = server.shared.queue.next(client) {
        // A panic outside the handlers (in a hub or a store) must not take the worker, and
        // the client's place in the queue, with it.
        if AssertUnwindSafe(server.run(job))
            .catch_unwind()
            .await
            .is_err()
        {
            tracing::error!(%client, "a batch failed outside its handlers");
        }
    }
    draining.1 = None;
}

/// The batches of a client handed to a request ([`Queue::push`] with `inline`), run on the
/// request's own task: no hand-off to a worker and back. Dropped before it finished (the
/// request answered, or its connection closed), what is left runs on a task of its own, so a
/// batch started always finishes.
pub(super) struct Inline(Option<crate::dispatch::BoxFuture<'static, ()>>);

impl Inline {
    pub(super) fn new(server: super::Crudp, client: ClientId) -> Self {
        Self(Some(Box::pin(async move { drain(&server, client).await })))
    }
}

impl Future for Inline {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if let Some(run) = &mut self.0 {
            std::task::ready!(run.as_mut().poll(cx));
            self.0 = None;
        }
        std::task::Poll::Ready(())
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        if let (Some(run), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(run);
        }
    }
}
