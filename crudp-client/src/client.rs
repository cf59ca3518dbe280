//! The client: a queue of calls, drained in batches by one sender task at a time.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use crudp_runtime::{
    Action, Batch, ClientId, Outcome, Packet, RejectCode, Results,
    protocol::{PROTOCOL_VERSION, decode_results, encode_batch},
};
use futures_channel::oneshot;
use serde::Serialize;

use crate::{
    call::{CallFuture, Reply},
    rt,
    transport::{Transport, TransportError},
};

/// Default for the most packets one batch carries: 1,000.
pub const DEFAULT_MAX_BATCH_PACKETS: usize = 1000;
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A connection to one CRUDP server, shared by the generated `{Trait}Client` stubs.
///
/// Every call is queued at once; the queue is sent as one batch as soon as the current task
/// yields, so calls made together (for instance under `join!`) leave in one request. While the
/// server is unreachable the batch is sent again with exponential back-off and jitter; calls
/// keep their sequence numbers, so the server never runs one twice.
///
/// Cloning is cheap: clones share the queue.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    call_url: String,
    id: ClientId,
    transport: Box<dyn Transport>,
    max_batch_packets: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    queue: VecDeque<Pending>,
    sending: bool,
}

struct Pending {
    packet: Packet,
    reply: oneshot::Sender<Reply>,
}

impl Client {
    /// A client for the CRUDP server mounted at `url`, e.g. `http://127.0.0.1:3000/crudp`.
    #[cfg(all(feature = "native", not(target_arch = "wasm32")))]
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_transport(url, crate::transport::ReqwestTransport::new())
    }

    /// A client that sends its batches through `transport`.
    pub fn with_transport(url: impl Into<String>, transport: impl Transport) -> Self {
        let url = url.into();
        let base = url.trim_end_matches('/');
        Self {
            inner: Arc::new(Inner {
                call_url: format!("{base}/call"),
                id: ClientId(rt::random_u64()),
                transport: Box::new(transport),
                max_batch_packets: DEFAULT_MAX_BATCH_PACKETS,
                state: Mutex::new(State {
                    next_seq: 1,
                    ..State::default()
                }),
            }),
        }
    }

    /// This client's random ID.
    pub fn id(&self) -> ClientId {
        self.inner.id
    }

    /// The number of calls queued or in flight, not yet answered.
    pub fn pending(&self) -> usize {
        self.inner.state().queue.len()
    }

    /// Queues a call of `action` on the module with wire ID `handler`, with the argument
    /// tuple `args`; the generated stubs call this.
    pub fn call<A, T, E>(&self, handler: u32, action: Action, args: &A) -> CallFuture<T, E>
    where
        A: Serialize + ?Sized,
    {
        let (reply, receiver) = oneshot::channel();
        let args = match postcard::to_stdvec(args) {
            Ok(args) => args,
            Err(e) => {
                let _ = reply.send(Ok(Outcome::Rejected {
                    code: RejectCode::BadArguments,
                    message: format!("the arguments of `{action}` do not encode: {e}"),
                }));
                return CallFuture::new(receiver);
            }
        };
        let start_sender = {
            let mut state = self.inner.state();
            let seq = state.next_seq;
            state.next_seq += 1;
            state.queue.push_back(Pending {
                packet: Packet {
                    seq,
                    handler,
                    action,
                    args,
                },
                reply,
            });
            !std::mem::replace(&mut state.sending, true)
        };
        if start_sender {
            let inner = Arc::clone(&self.inner);
            if let Err(message) = rt::spawn(async move { inner.send_all().await }) {
                self.inner.fail_all(&message);
            }
        }
        CallFuture::new(receiver)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.call_url)
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the queue, batch after batch, until it is empty. Only one runs at a time, so a
    /// client's batches reach the server in order.
    async fn send_all(&self) {
        rt::yield_now().await;
        let mut backoff = Backoff::new(self.id.0);
        loop {
            let packets: Vec<Packet> = {
                let mut state = self.state();
                if state.queue.is_empty() {
                    state.sending = false;
                    return;
                }
                let n = state.queue.len().min(self.max_batch_packets);
                state
                    .queue
                    .iter()
                    .take(n)
                    .map(|p| p.packet.clone())
                    .collect()
            };
            let sent = packets.len();
            let body = encode_batch(&Batch {
                version: PROTOCOL_VERSION,
                client: self.id,
                packets,
            });
            let answer = self
                .transport
                .post(&self.call_url, body)
                .await
                .and_then(|bytes| {
                    decode_results(&bytes, self.max_batch_packets).map_err(|e| {
                        TransportError::Status {
                            status: 200,
                            message: format!("undecodable results: {e}"),
                        }
                    })
                });
            match answer {
                Ok(results) => {
                    backoff.reset();
                    self.deliver(sent, results);
                }
                Err(e) if e.is_retryable() => {
                    let delay = backoff.next();
                    tracing::debug!(error = %e, ?delay, "batch not delivered; retrying");
                    rt::sleep(delay).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "batch refused");
                    self.fail_first(sent, &e.to_string());
                }
            }
        }
    }

    /// Hands each result to its call and drops the `sent` calls from the queue.
    fn deliver(&self, sent: usize, results: Results) {
        let mut outcomes: HashMap<u64, Outcome> = results
            .results
            .into_iter()
            .map(|r| (r.seq, r.outcome))
            .collect();
        let answered: Vec<Pending> = self.state().queue.drain(..sent).collect();
        for pending in answered {
            let reply = outcomes
                .remove(&pending.packet.seq)
                .ok_or_else(|| "the server did not answer this call".to_owned());
            let _ = pending.reply.send(reply);
        }
    }

    fn fail_first(&self, n: usize, message: &str) {
        let failed: Vec<_> = self.state().queue.drain(..n).collect();
        for pending in failed {
            let _ = pending.reply.send(Err(message.to_owned()));
        }
    }

    fn fail_all(&self, message: &str) {
        let n = {
            let mut state = self.state();
            state.sending = false;
            state.queue.len()
        };
        self.fail_first(n, message);
    }
}

/// Exponential back-off with "equal jitter": half the ceiling fixed, half random.
struct Backoff {
    attempt: u32,
    seed: u64,
}

impl Backoff {
    fn new(seed: u64) -> Self {
        Self {
            attempt: 0,
            seed: seed | 1,
        }
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next(&mut self) -> Duration {
        let ceiling = BACKOFF_MIN
            .saturating_mul(1 << self.attempt.min(16))
            .min(BACKOFF_MAX);
        self.attempt += 1;
        // xorshift64: cheap jitter that needs no shared generator.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let fraction = (self.seed >> 11) as f64 / (1u64 << 53) as f64;
        ceiling / 2 + ceiling.mul_f64(fraction) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        let mut backoff = Backoff::new(42);
        let delays: Vec<_> = (0..20).map(|_| backoff.next()).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= BACKOFF_MIN / 2 && *d <= BACKOFF_MAX)
        );
        assert!(delays[15..].iter().any(|d| *d > Duration::from_secs(5)));
        assert!(delays.windows(2).any(|w| w[0] != w[1]));
        backoff.reset();
        assert!(backoff.next() <= BACKOFF_MIN);
    }
}
