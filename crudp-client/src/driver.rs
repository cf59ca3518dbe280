//! The one task that owns a client's [`Core`]: it takes the inputs that the public API, the
//! event stream and the browser post, and carries out the core's effects: sending batches,
//! resolving calls, saving the queue and reporting the status.

use std::{future::poll_fn, sync::Arc, task::Poll, time::Duration};

use crudp_runtime::{Outcome, Results, TransportError, protocol::decode_results};
use futures_channel::{mpsc, oneshot};
use futures_util::{FutureExt, StreamExt};

use crate::{
    core::{Core, Effect, Input, Mode},
    rt,
    shared::Shared,
    transport::TransportFuture,
};

/// A client's driver, ready to run.
pub(crate) struct Driver {
    pub(crate) core: Core,
    pub(crate) shared: Arc<Shared>,
    pub(crate) inputs: mpsc::UnboundedReceiver<Input>,
    /// Resolves (or is dropped) when the last handle of the client goes.
    pub(crate) stop: oneshot::Receiver<()>,
    /// Stops the event stream when the driver ends.
    pub(crate) stream_stop: Option<oneshot::Sender<()>>,
}

enum Event {
    Input(Input),
    Sent(Result<Option<Results>, TransportError>),
    Tick,
    Stop,
}

type Pending<T> = Option<TransportFuture<'static, T>>;

impl Driver {
    /// Runs until the client is dropped, then saves what is left and lets the ID go.
    pub(crate) async fn run(mut self) {
        let mut sending: Pending<Result<Option<Results>, TransportError>> = None;
        let mut timer: Option<(u64, TransportFuture<'static, ()>)> = None;
        let mut effects = Vec::new();
        // Calls taken in since the queue was last saved.
        let mut unsaved = 0;
        loop {
            let event = poll_fn(|cx| {
                if let Some(send) = &mut sending
                    && let Poll::Ready(answer) = send.as_mut().poll(cx)
                {
                    sending = None;
                    return Poll::Ready(Event::Sent(answer));
                }
                match self.inputs.poll_next_unpin(cx) {
                    Poll::Ready(Some(input)) => return Poll::Ready(Event::Input(input)),
                    Poll::Ready(None) => return Poll::Ready(Event::Stop),
                    Poll::Pending => {}
                }
                if self.stop.poll_unpin(cx).is_ready() {
                    return Poll::Ready(Event::Stop);
                }
                if let Some((_, sleep)) = &mut timer
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    timer = None;
                    return Poll::Ready(Event::Tick);
                }
                Poll::Pending
            })
            .await;
            let now = rt::now_ms();
            let stop = match event {
                Event::Input(input) => {
                    unsaved += self.take(input, now, &mut effects);
                    false
                }
                Event::Sent(answer) => {
                    self.core.handle(Input::Sent(answer), now, &mut effects);
                    false
                }
                Event::Tick => false,
                Event::Stop => true,
            };
            // Everything posted meanwhile joins this step, so that a burst is one batch.
            while let Ok(input) = self.inputs.try_recv() {
                unsaved += self.take(input, now, &mut effects);
            }
            if !stop {
                self.core.poll(now, &mut effects);
            }
            for effect in effects.drain(..) {
                if matches!(effect, Effect::Save) {
                    self.shared
                        .save(&self.core.snapshot(), std::mem::take(&mut unsaved));
                } else if let Some(send) = self.perform(effect) {
                    sending = Some(send);
                }
            }
            if stop {
                self.shared
                    .save(&self.core.snapshot(), std::mem::take(&mut unsaved));
                self.shared.release();
                return;
            }
            timer = match (self.core.deadline(), timer.take()) {
                (Some(at), Some((was, sleep))) if at == was => Some((was, sleep)),
                (Some(at), _) => {
                    let delay = Duration::from_millis(at.saturating_sub(now));
                    Some((at, Box::pin(rt::sleep(delay))))
                }
                (None, _) => None,
            };
        }
    }

    /// Hands an input to the core; returns how many calls it made (0 or 1).
    fn take(&mut self, input: Input, now: u64, effects: &mut Vec<Effect>) -> usize {
        let call = matches!(input, Input::Call { .. });
        if call {
            self.shared.taken_in();
        }
        self.core.handle(input, now, effects);
        usize::from(call)
    }

    /// Carries out one effect; a batch to send comes back as the future of its answer.
    fn perform(&self, effect: Effect) -> Pending<Result<Option<Results>, TransportError>> {
        match effect {
            Effect::Send(body) => return Some(self.send(body)),
            Effect::Resolve(call, reply) => {
                if let Ok(Outcome::Ok(value)) = &reply {
                    self.shared
                        .listeners
                        .notify(call.packet.handler, call.packet.action, value);
                }
                call.resolve(reply);
            }
            Effect::Save => unreachable!("saved by the loop, which counts the calls saved"),
            Effect::Status(status) => self.shared.report(status),
        }
        None
    }

    fn send(
        &self,
        body: Vec<u8>,
    ) -> TransportFuture<'static, Result<Option<Results>, TransportError>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            match shared.mode {
                Mode::Sync => shared
                    .transport
                    .post(&shared.url("sync"), body)
                    .await
                    .map(|_| None),
                Mode::Call => {
                    let answer = shared.transport.post(&shared.url("call"), body).await?;
                    decode_results(&answer, usize::MAX)
                        .map(Some)
                        .map_err(|e| TransportError::Malformed(e.to_string()))
                }
            }
        })
    }
}
