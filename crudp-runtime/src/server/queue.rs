//! The batch queue: bounded, in order per client, clients in parallel.
//!
//! Each client has its own FIFO of batches; a client with work is handed to one worker at a
//! time, which drains its FIFO, so one client's batches never overlap or reorder while
//! different clients run side by side.

use std::{
    collections::{HashMap, VecDeque},
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak},
};

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use crate::{
    context::Context,
    protocol::{ClientId, Packet, Results},
};

/// One batch waiting to run.
pub(super) struct Job {
    pub ctx: Context,
    pub packets: Vec<Packet>,
    /// `POST /call` waits for its results here; `POST /sync` results go to the hub.
    pub reply: Option<oneshot::Sender<Results>>,
    /// The bytes it holds, about, for the queue's byte budget.
    pub bytes: usize,
}

pub(super) struct Queue {
    depth: usize,
    per_client: usize,
    max_bytes: usize,
    jobs: Mutex<Jobs>,
    ready: OnceLock<mpsc::UnboundedSender<ClientId>>,
}

#[derive(Default)]
struct Jobs {
    /// A client is present while it has batches waiting or one running.
    per_client: HashMap<ClientId, VecDeque<Job>>,
    waiting: usize,
    /// The body bytes of the batches waiting.
    bytes: usize,
}

/// The queue holds its maximum number of batches.
#[derive(Debug)]
pub(super) struct Full;

impl Queue {
    pub(super) fn new(depth: usize, per_client: usize, max_bytes: usize) -> Self {
        Self {
            depth,
            per_client,
            max_bytes,
            jobs: Mutex::default(),
            ready: OnceLock::new(),
        }
    }

    fn jobs(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a batch, starting the workers on first use.
    pub(super) fn push(&self, shared: &Arc<Shared>, job: Job) -> Result<(), Full> {
        let client = job.ctx.client();
        let mut jobs = self.jobs();
        let mine = jobs.per_client.get(&client).map_or(0, VecDeque::len);
        let over_bytes = jobs.waiting > 0 && jobs.bytes + job.bytes > self.max_bytes;
        if jobs.waiting >= self.depth || mine >= self.per_client || over_bytes {
            return Err(Full);
        }
        jobs.waiting += 1;
        jobs.bytes += job.bytes;
        let idle = !jobs.per_client.contains_key(&client);
        jobs.per_client.entry(client).or_default().push_back(job);
        drop(jobs);
        if idle {
            let ready = self.ready.get_or_init(|| start_workers(shared));
            // The receiver lives as long as the workers, which live as long as the server.
            let _ = ready.send(client);
        }
        Ok(())
    }

    /// The next batch of `client`, or `None` (and the client leaves the queue) if it has none.
    fn next(&self, client: ClientId) -> Option<Job> {
        let mut jobs = self.jobs();
        let job = jobs
            .per_client
            .get_mut(&client)
            .and_then(VecDeque::pop_front);
        match job {
            Some(job) => {
                jobs.waiting -= 1;
                jobs.bytes -= job.bytes;
                Some(job)
            }
            None => {
                jobs.per_client.remove(&client);
                None
            }
        }
    }
}

fn start_workers(shared: &Arc<Shared>) -> mpsc::UnboundedSender<ClientId> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    for _ in 0..shared.limits.workers {
        tokio::spawn(work(Arc::downgrade(shared), Arc::clone(&receiver)));
    }
    sender
}

/// Takes a ready client, drains its batches in order, repeats. Holds the server weakly, so
/// the workers end with it.
async fn work(
    shared: Weak<Shared>,
    ready: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<ClientId>>>,
) {
    loop {
        let Some(client) = ready.lock().await.recv().await else {
            return;
        };
        let Some(server) = shared.upgrade().map(|shared| super::Crudp { shared }) else {
            return;
        };
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
    }
}
