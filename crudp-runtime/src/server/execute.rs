//! Running a batch: each packet in order, each on its own, each at most once.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    task::Poll,
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use tracing::Instrument;

use super::{
    Call, Crudp, Next,
    held::Told,
    metrics,
    panics::{self, Marked},
    queue::Job,
};
use crate::{
    Dispatch,
    context::{Context, Target},
    dispatch::unknown_action,
    hub::{Channel, Publication},
    outcomes::{Begin, Lease, OutcomeStore, StoreError, outcome_bytes},
    protocol::{
        Broadcast, ClientId, EventKind, Outcome, Packet, PacketResult, RejectCode, Results,
        encode_client_results,
    },
};

impl Crudp {
    /// Runs a queued batch and delivers its results: to the waiting `POST /call`, or to the
    /// client's channel on the hub.
    pub(super) async fn run(&self, job: Job) {
        let client = job.ctx.client();
        let results = self.execute(&job.ctx, job.packets, job.after).await;
        match job.reply {
            Some(reply) => {
                let _ = reply.send(results);
            }
            None => {
                for results in split(results, self.shared.limits.results_event_bytes) {
                    let publication = Publication {
                        channel: Channel::Client {
                            client,
                            owner: job.ctx.user().id.clone(),
                        },
                        kind: EventKind::Results,
                        data: encode_client_results(client, &results),
                        except: None,
                    };
                    if let Err(e) = self.shared.hub.publish(publication).await {
                        // The packets ran; the client gets their outcomes again when it
                        // re-sends them.
                        tracing::warn!(%client, "results not published: {e}");
                    }
                }
            }
        }
    }

    /// Runs a client's packets in order and answers each one.
    ///
    /// A packet that already ran is not run again: its kept outcome is answered, or
    /// `Expired`. A handler's error or panic fails its own packet only; the first
    /// `Unavailable` makes the rest of the batch `Unavailable` too, so that order holds when
    /// the client sends them again. None runs before the client's call `after`, if it has not
    /// run yet. `ctx` is the context of the whole request.
    pub(super) async fn execute(&self, ctx: &Context, packets: Vec<Packet>, after: u64) -> Results {
        let span = tracing::info_span!(
            "crudp.batch",
            rpc.system = "crudp",
            crudp.client = %ctx.client(),
            enduser.id = %ctx.user().id,
            crudp.packets = packets.len(),
            crudp.request = %ctx.request_id(),
        );
        metrics::batch(packets.len());
        self.execute_batch(ctx, packets, after)
            .instrument(span)
            .await
    }

    async fn execute_batch(&self, ctx: &Context, packets: Vec<Packet>, after: u64) -> Results {
        let seqs: Vec<u64> = packets.iter().map(|p| p.seq).collect();
        let mut outcomes = Vec::with_capacity(packets.len());
        // Published once the outcomes are durable: nobody hears of a call before its own
        // client could.
        let mut broadcasts = Vec::new();
        let mut stopped: Option<String> = None;
        while outcomes.len() < packets.len() {
            let done = outcomes.len();
            match &stopped {
                Some(reason) => outcomes.extend(packets[done..].iter().map(|_| not_run(reason))),
                None => {
                    let answered = self
                        .execute_some(ctx, &packets[done..], &seqs[done..], after, &mut broadcasts)
                        .await;
                    stopped = answered.iter().find_map(|outcome| match outcome {
                        Outcome::Unavailable { message } => Some(message.clone()),
                        _ => None,
                    });
                    outcomes.extend(answered);
                }
            }
        }
        let flushed = self.flush().await;
        let client = ctx.client();
        if flushed {
            let first = self.shared.held.publish_after(client, broadcasts);
            self.publish_in_order(client, first).await;
        } else if let Some(ticket) = self.shared.held.hold(client, broadcasts) {
            // Published once the outcomes are durable, and the client's later broadcasts
            // after them. Should the process end first, the calls run again when re-sent,
            // and broadcast then.
            let crudp = self.clone();
            tokio::spawn(async move {
                let first = if until_stored(client, || crudp.shared.outcomes.flush()).await {
                    ticket.durable()
                } else {
                    ticket.forget()
                };
                crudp.publish_in_order(client, first).await;
            });
        }
        if !flushed {
            // They ran, but until their outcomes are durable they are not answered: sent again,
            // they get their kept outcomes, never run twice.
            for outcome in &mut outcomes {
                if !matches!(outcome, Outcome::Unavailable { .. }) {
                    *outcome = Outcome::Unavailable {
                        message: "the outcome store could not make this call's outcome durable yet"
                            .into(),
                    };
                }
            }
        }
        let results = packets
            .iter()
            .zip(outcomes)
            .map(|(packet, outcome)| PacketResult {
                seq: packet.seq,
                outcome,
            })
            .collect();
        Results { results }
    }

    /// Answers the packets the store answers now (`begin_batch`), a prefix of `packets` (whose
    /// sequence numbers are `seqs`) of at least one: the ones it reserved run in order, until
    /// one is `Unavailable`, and their outcomes are recorded together; their broadcasts are
    /// added to `broadcasts`, for the batch to publish once its outcomes are durable.
    async fn execute_some(
        &self,
        ctx: &Context,
        packets: &[Packet],
        seqs: &[u64],
        after: u64,
        broadcasts: &mut Vec<(Broadcast, Target)>,
    ) -> Vec<Outcome> {
        let client = ctx.client();
        let started = Instant::now();
        let begun = self.shared.outcomes.begin_batch(client, seqs, after).await;
        // One clock reading per call: each call's time runs from the end of the one before.
        let mut clock = Instant::now();
        metrics::outcome_store(
            metrics::StoreStep::Begin,
            clock.saturating_duration_since(started),
        );
        let answers = match begun {
            Ok(answers) if !answers.is_empty() => answers,
            Ok(_) => {
                return vec![Outcome::Unavailable {
                    message: "the outcome store answered none of the calls".into(),
                }];
            }
            Err(e) => {
                return vec![Outcome::Unavailable {
                    message: e.to_string(),
                }];
            }
        };
        // The batch's outcomes, its lease once a packet is reserved, and the packets that ran
        // (their index, and what they broadcast): if this future is dropped before the store
        // finished the batch, the reservation ends with what ran.
        let mut run = Unfinished {
            store: &*self.shared.outcomes,
            client,
            packets,
            lease: None,
            outcomes: Vec::with_capacity(answers.len()),
            ran: Vec::new(),
        };
        let mut calls = metrics::Calls::default();
        let mut stopped: Option<String> = None;
        // The module of the packet before: a batch's packets mostly share one.
        let mut module: Option<(u32, Option<&dyn Dispatch>)> = None;
        for (packet, answer) in packets.iter().zip(answers) {
            let outcome = match answer {
                Begin::Run(reserved) => {
                    run.lease = Some(reserved);
                    match &stopped {
                        Some(reason) => not_run(reason),
                        None => {
                            let mounted = match module {
                                Some((handler, mounted)) if handler == packet.handler => mounted,
                                _ => {
                                    let mounted =
                                        self.shared.modules.get(&packet.handler).map(|m| &**m);
                                    module = Some((packet.handler, mounted));
                                    mounted
                                }
                            };
                            let ctx = ctx.for_run(packet.seq, reserved);
                            let (outcome, targets) = self
                                .execute_packet(&ctx, packet, mounted, &mut clock, &mut calls)
                                .await;
                            if !matches!(outcome, Outcome::Unavailable { .. }) {
                                self.shared.outcomes.ran(client, packet.seq, &outcome);
                            }
                            run.ran.push((run.outcomes.len(), targets));
                            outcome
                        }
                    }
                }
                Begin::Done(outcome) => outcome,
                Begin::Expired => Outcome::Expired,
                Begin::Blocked(earlier) => Outcome::Unavailable {
                    message: format!(
                        "waiting for call {earlier} of this client, which has not run yet"
                    ),
                },
                Begin::Busy(running) => Outcome::Unavailable {
                    message: format!(
                        "call {running} of this client is still running or being recorded"
                    ),
                },
            };
            if let (None, Outcome::Unavailable { message }) = (&stopped, &outcome) {
                stopped = Some(message.clone());
            }
            run.outcomes.push(outcome);
        }
        calls.record();
        let Some(lease) = run.lease else {
            return std::mem::take(&mut run.outcomes);
        };
        // What the calls that succeeded broadcast, once their outcomes are recorded.
        let mut told = Vec::new();
        for (i, targets) in &run.ran {
            let Outcome::Ok(value) = &run.outcomes[*i] else {
                continue;
            };
            // A value of nothing (a delete's `()`) tells listeners nothing: they get the
            // call's arguments instead.
            let payload = if value.is_empty() {
                &packets[*i].args
            } else {
                value
            };
            for target in targets {
                let broadcast = Broadcast {
                    handler: packets[*i].handler,
                    action: packets[*i].action,
                    value: payload.clone(),
                    origin: Some(client),
                };
                told.push((broadcast, target.clone()));
            }
        }
        let finished = self
            .finish(client, lease, &run.recorded(), broadcasts, &mut told)
            .await;
        // Finished, or left to the background retry, which keeps the reservation on purpose.
        run.lease = None;
        let mut outcomes = std::mem::take(&mut run.outcomes);
        if !finished {
            for (i, _) in &run.ran {
                outcomes[*i] = Outcome::Unavailable {
                    message: "the outcome store could not record this call's outcome yet".into(),
                };
            }
            return outcomes;
        }
        broadcasts.append(&mut told);
        outcomes
    }

    /// Publishes the broadcasts of `client`'s calls, each to all but that client. One the hub
    /// cannot take is not tried again: the hub may have taken it without a word (a reply lost
    /// with Redis), and a second copy would come after newer events.
    async fn publish_all(&self, client: ClientId, broadcasts: Told) {
        for (broadcast, target) in broadcasts {
            if let Err(e) = self
                .publish_broadcast(broadcast, Channel::from(target), Some(client))
                .await
            {
                tracing::warn!(%client, "broadcast not published: {e}");
            }
        }
    }

    /// Publishes `first`, then each batch of `client`'s that [`Held`](super::held::Held)
    /// hands out after it, in order.
    async fn publish_in_order(&self, client: ClientId, first: Option<Told>) {
        let mut next = first;
        while let Some(told) = next {
            self.publish_all(client, told).await;
            next = self.shared.held.next(client);
        }
    }

    /// Records the outcomes of packets that ran under `lease`; `false` if the store could
    /// not. Their reservation then stays (so they cannot run again: their re-sends are
    /// `Busy`) and the outcomes are recorded in the background, until the store takes them;
    /// then their broadcasts, taken from `told`, are published, after those of the batch's
    /// earlier calls, taken from `earlier`.
    async fn finish(
        &self,
        client: ClientId,
        lease: Lease,
        outcomes: &[(u64, &Outcome)],
        earlier: &mut Told,
        told: &mut Told,
    ) -> bool {
        let store = &self.shared.outcomes;
        let started = Instant::now();
        let finished = store.finish_batch(client, lease, outcomes).await;
        metrics::outcome_store(metrics::StoreStep::Finish, started.elapsed());
        match finished {
            Ok(()) => true,
            Err(StoreError::Unavailable(e)) => {
                tracing::error!(%client, "outcomes not recorded, retrying in the background: {e}");
                let crudp = self.clone();
                let owned: Vec<(u64, Outcome)> = outcomes
                    .iter()
                    .map(|(seq, o)| (*seq, (*o).clone()))
                    .collect();
                // Held, with the broadcasts of the batch's earlier calls before them: the
                // client's next calls may run as soon as these are recorded, and their
                // broadcasts queue behind.
                let mut all = std::mem::take(earlier);
                all.append(told);
                let ticket = self.shared.held.hold(client, all);
                tokio::spawn(async move {
                    let outcomes: Vec<(u64, &Outcome)> =
                        owned.iter().map(|(seq, o)| (*seq, o)).collect();
                    let store = &crudp.shared.outcomes;
                    let durable =
                        until_stored(client, || store.finish_batch(client, lease, &outcomes)).await
                            && (store.flush().await.is_ok()
                                || until_stored(client, || store.flush()).await);
                    let Some(ticket) = ticket else {
                        return;
                    };
                    let first = if durable {
                        ticket.durable()
                    } else {
                        ticket.forget()
                    };
                    crudp.publish_in_order(client, first).await;
                });
                false
            }
            Err(e) => {
                tracing::error!(%client, "outcomes not recorded: {e}");
                false
            }
        }
    }

    /// Makes the batch's outcomes durable before they are answered; `false` if the store
    /// could not (it keeps them and writes them at its next flush).
    async fn flush(&self) -> bool {
        let started = Instant::now();
        let flushed = self.shared.outcomes.flush().await;
        metrics::outcome_store(metrics::StoreStep::Flush, started.elapsed());
        match flushed {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("outcomes not made durable yet: {e}");
                false
            }
        }
    }

    /// Runs one packet on `mounted`, its module, in its span (OpenTelemetry's RPC conventions:
    /// `rpc.system`, `rpc.service`, `rpc.method`), and counts it in `calls`. It started at
    /// `clock`, which is moved to when it ended. Answers its outcome (`Unavailable` if the
    /// handler asked to run later), as recorded, and where it broadcasts.
    async fn execute_packet(
        &self,
        ctx: &Context,
        packet: &Packet,
        mounted: Option<&dyn Dispatch>,
        clock: &mut Instant,
        calls: &mut metrics::Calls,
    ) -> (Outcome, Vec<Target>) {
        let module = mounted.map_or("unknown", |m| m.descriptor().name);
        let span = tracing::info_span!(
            "crudp.call",
            rpc.system = "crudp",
            rpc.service = module,
            rpc.method = %packet.action,
            crudp.seq = packet.seq,
            crudp.outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = *clock;
        let outcome = self
            .run_packet(ctx, packet, mounted, started)
            .instrument(span.clone())
            .await;
        let effects = ctx.take_effects();
        let outcome = match effects.retry_later {
            Some(message) => Outcome::Unavailable { message },
            None => outcome,
        };
        *clock = Instant::now();
        let elapsed = clock.saturating_duration_since(started);
        let kind = outcome_kind(&outcome);
        span.record("crudp.outcome", kind);
        span.record("duration_ms", elapsed.as_secs_f64() * 1e3);
        calls.add(module, packet.action, kind, elapsed);
        (outcome, effects.broadcast)
    }

    async fn run_packet(
        &self,
        ctx: &Context,
        packet: &Packet,
        module: Option<&dyn Dispatch>,
        started: Instant,
    ) -> Outcome {
        let Some(module) = module else {
            return Outcome::Rejected {
                code: RejectCode::UnknownHandler,
                message: format!(
                    "no module with ID {} is mounted on this server",
                    packet.handler
                ),
            };
        };
        let descriptor = module.descriptor();
        if !descriptor.has(packet.action) {
            return unknown_action(descriptor, packet.action);
        }
        // The layers, then the handler. Calling them inside the guarded future also catches a
        // panic before the first await.
        let run = std::pin::pin!(async {
            let handler = || module.dispatch(ctx, packet.action, &packet.args);
            let layers = &self.shared.layers;
            if layers.is_empty() {
                // Nothing to wrap: no chain to build for each call.
                return handler().await;
            }
            let call = Call {
                user: ctx.user(),
                client: ctx.client(),
                module: descriptor,
                action: packet.action,
                seq: packet.seq,
                args: &packet.args,
            };
            Next::new(layers, call, handler).run().await
        });
        let limit = self.shared.limits.handler_timeout;
        let mut guarded = std::pin::pin!(AssertUnwindSafe(Marked(run)).catch_unwind());
        // Most handlers finish at their first poll: only one that waits gets a timer.
        let first = std::future::poll_fn(|cx| Poll::Ready(guarded.as_mut().poll(cx))).await;
        let finished = match first {
            Poll::Ready(finished) => Ok(finished),
            Poll::Pending => match started.checked_add(limit) {
                Some(deadline) => tokio::time::timeout_at(deadline.into(), guarded).await,
                // A limit past the clock's end (`Duration::MAX`): no limit.
                None => Ok(guarded.await),
            },
        };
        let Ok(finished) = finished else {
            // Stopped: what it asked for (broadcasts, a retry) goes with it.
            drop(ctx.take_effects());
            tracing::warn!(
                module = descriptor.name,
                action = %packet.action,
                request = %ctx.request_id(),
                "handler stopped after {limit:?}"
            );
            return Outcome::Rejected {
                code: RejectCode::Timeout,
                message: format!(
                    "the handler `{}::{}` ran longer than {limit:?} and was stopped",
                    descriptor.name, packet.action
                ),
            };
        };
        match finished {
            Ok(outcome) => outcome,
            Err(panic) => {
                // Failed for good: what it asked for (broadcasts, a retry) goes with it.
                drop(ctx.take_effects());
                let reason = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("no message");
                let caught = panics::take_caught();
                tracing::error!(
                    module = descriptor.name,
                    action = %packet.action,
                    request = %ctx.request_id(),
                    at = %caught.location,
                    backtrace = caught.backtrace.as_deref(),
                    "handler panicked: {reason}"
                );
                Outcome::Rejected {
                    code: RejectCode::Internal,
                    message: format!(
                        "the handler `{}::{}` panicked",
                        descriptor.name, packet.action
                    ),
                }
            }
        }
    }
}

/// The answer of a packet not run because an earlier one of its batch was not.
fn not_run(reason: &str) -> Outcome {
    Outcome::Unavailable {
        message: format!("not run: an earlier call of the batch was not run ({reason})"),
    }
}

/// Cuts results into events of at most about `budget` bytes each (an event holds at least one
/// result, however large).
fn split(results: Results, budget: usize) -> Vec<Results> {
    let mut events = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for result in results.results {
        let bytes = outcome_bytes(&result.outcome);
        if !current.is_empty() && size + bytes > budget {
            events.push(Results {
                results: std::mem::take(&mut current),
            });
            size = 0;
        }
        size += bytes;
        current.push(result);
    }
    if !current.is_empty() || events.is_empty() {
        events.push(Results { results: current });
    }
    events
}

/// Tries `attempt` (a step of the outcome store, for `client`'s calls) until the store takes
/// it, waiting longer each time (0.1 s, doubled up to 10 s); `false` if the store refuses it
/// for good.
async fn until_stored<'a>(
    client: ClientId,
    mut attempt: impl FnMut() -> crate::BoxFuture<'a, Result<(), StoreError>>,
) -> bool {
    let mut delay = Duration::from_millis(100);
    loop {
        tokio::time::sleep(delay).await;
        match attempt().await {
            Ok(()) => return true,
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(%client, "the outcome store is still failing: {e}");
            }
            Err(e) => {
                tracing::error!(%client, "the outcome store refused: {e}");
                return false;
            }
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// The outcome's kind, for spans and metrics: `ok`, `app_error`, `rejected`, `unavailable`
/// or `expired`.
fn outcome_kind(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Ok(_) => "ok",
        Outcome::AppError(_) => "app_error",
        Outcome::Rejected { .. } => "rejected",
        Outcome::Unavailable { .. } => "unavailable",
        Outcome::Expired => "expired",
    }
}

/// A batch being run: a reservation that [`OutcomeStore::abandon`] ends, with the outcomes
/// of the packets that ran, if dropped while it holds a lease.
struct Unfinished<'a> {
    store: &'a dyn OutcomeStore,
    client: ClientId,
    packets: &'a [Packet],
    lease: Option<Lease>,
    /// One per packet answered so far.
    outcomes: Vec<Outcome>,
    /// The packets that ran: their index, and what they broadcast.
    ran: Vec<(usize, Vec<Target>)>,
}

impl Unfinished<'_> {
    /// The outcomes of the packets that ran, as the store records them.
    fn recorded(&self) -> Vec<(u64, &Outcome)> {
        self.ran
            .iter()
            .map(|(i, _)| (self.packets[*i].seq, &self.outcomes[*i]))
            .collect()
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            tracing::warn!(client = %self.client, "a batch stopped before it finished: its reservation ends");
            self.store.abandon(self.client, lease, &self.recorded());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_cut_into_events_within_the_budget() {
        let results = Results {
            results: (1..=10)
                .map(|seq| PacketResult {
                    seq,
                    outcome: Outcome::Ok(vec![0; 1000].into()),
                })
                .collect(),
        };
        let events = split(results, 3000);
        let sizes: Vec<usize> = events.iter().map(|e| e.results.len()).collect();
        assert_eq!(sizes, [2, 2, 2, 2, 2]);
        assert!(events.iter().all(|e| !e.results.is_empty()));
        let seqs: Vec<u64> = events
            .iter()
            .flat_map(|e| e.results.iter().map(|r| r.seq))
            .collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        assert_eq!(split(Results { results: vec![] }, 10).len(), 1);
        let huge = Results {
            results: vec![PacketResult {
                seq: 1,
                outcome: Outcome::Ok(vec![0; 10_000].into()),
            }],
        };
        assert_eq!(split(huge, 100).len(), 1);
    }
}
