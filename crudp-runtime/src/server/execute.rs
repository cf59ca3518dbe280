//! Running a batch: each packet in order, each on its own.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use super::Crudp;
use crate::{
    context::Context,
    dispatch::unknown_action,
    protocol::{Outcome, Packet, PacketResult, RejectCode, Results},
};

impl Crudp {
    /// Runs a client's packets in order and answers each one.
    ///
    /// A handler's error or panic fails its own packet only; the rest of the batch goes on.
    /// `ctx` is the context of the whole request; each packet gets its own sequence number.
    pub async fn execute(&self, ctx: &Context, packets: Vec<Packet>) -> Results {
        let mut results = Vec::with_capacity(packets.len());
        for packet in packets {
            let outcome = self.execute_packet(&ctx.for_seq(packet.seq), &packet).await;
            results.push(PacketResult {
                seq: packet.seq,
                outcome,
            });
        }
        Results { results }
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
