//! Running a batch: each packet in order, each on its own, each at most once.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use super::{Crudp, queue::Job};
use crate::{
    context::Context,
    dispatch::unknown_action,
    hub::{Channel, Publication},
    outcomes::Recall,
    protocol::{
        Broadcast, EventKind, Outcome, Packet, PacketResult, RejectCode, Results, encode_results,
    },
};

impl Crudp {
    /// Runs a queued batch and delivers its results: to the waiting `POST /call`, or to the
    /// client's channel on the hub.
    pub(super) async fn run(&self, job: Job) {
        let client = job.ctx.client();
        let results = self.execute(&job.ctx, job.packets).await;
        match job.reply {
            Some(reply) => {
                let _ = reply.send(results);
            }
            None => {
                let publication = Publication {
                    channel: Channel::Client(client),
                    kind: EventKind::Results,
                    data: encode_results(&results),
                    except: None,
                };
                if let Err(e) = self.shared.hub.publish(publication).await {
                    // The packets ran; the client gets their outcomes again when it re-sends them.
                    tracing::warn!(%client, "results not published: {e}");
                }
            }
        }
    }

    /// Runs a client's packets in order and answers each one.
    ///
    /// A packet that already ran is not run again: its kept outcome is answered, or
    /// `Expired`. A handler's error or panic fails its own packet only; the first
    /// `Unavailable` makes the rest of the batch `Unavailable` too, so that order holds when
    /// the client sends them again. `ctx` is the context of the whole request.
    pub(super) async fn execute(&self, ctx: &Context, packets: Vec<Packet>) -> Results {
        let mut results = Vec::with_capacity(packets.len());
        let mut stopped: Option<String> = None;
        for packet in packets {
            let outcome = match &stopped {
                Some(reason) => Outcome::Unavailable {
                    message: format!(
                        "not run: an earlier call of the batch was not run ({reason})"
                    ),
                },
                None => self.execute_once(&ctx.for_seq(packet.seq), &packet).await,
            };
            if let (None, Outcome::Unavailable { message }) = (&stopped, &outcome) {
                stopped = Some(message.clone());
            }
            results.push(PacketResult {
                seq: packet.seq,
                outcome,
            });
        }
        Results { results }
    }

    async fn execute_once(&self, ctx: &Context, packet: &Packet) -> Outcome {
        let client = ctx.client();
        let outcomes = &self.shared.outcomes;
        match outcomes.recall(client, packet.seq).await {
            Ok(Recall::Execute) => {}
            Ok(Recall::Done(outcome)) => return outcome,
            Ok(Recall::Expired) => return Outcome::Expired,
            Ok(Recall::Blocked(earlier)) => {
                return Outcome::Unavailable {
                    message: format!(
                        "waiting for call {earlier} of this client, which could not run yet"
                    ),
                };
            }
            Err(e) => {
                return Outcome::Unavailable {
                    message: e.to_string(),
                };
            }
        }
        let outcome = self.execute_packet(ctx, packet).await;
        let effects = ctx.take_effects();
        let outcome = match effects.retry_later {
            Some(message) => Outcome::Unavailable { message },
            None => outcome,
        };
        if let Err(e) = outcomes.record(client, packet.seq, &outcome).await {
            tracing::error!(request = %ctx.request_id(), "outcome not recorded: {e}");
        }
        if let Outcome::Ok(value) = &outcome {
            for target in effects.broadcast {
                let broadcast = Broadcast {
                    handler: packet.handler,
                    action: packet.action,
                    value: value.clone(),
                };
                if let Err(e) = self
                    .publish_broadcast(broadcast, Channel::from(target), Some(client))
                    .await
                {
                    tracing::warn!(request = %ctx.request_id(), "broadcast not published: {e}");
                }
            }
        }
        outcome
    }

    async fn execute_packet(&self, ctx: &Context, packet: &Packet) -> Outcome {
        let Some(module) = self.shared.modules.get(&packet.handler) else {
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
        // Calling `dispatch` inside the guarded future also catches a panic before its first await.
        let run = async { module.dispatch(ctx, packet.action, &packet.args).await };
        match AssertUnwindSafe(run).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("no message");
                tracing::error!(
                    module = descriptor.name,
                    action = %packet.action,
                    request = %ctx.request_id(),
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
