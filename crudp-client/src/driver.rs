//! The one task that owns a client's [`Core`]: it takes the inputs that the public API, the
//! event stream and the browser post, and carries out the core's effects: sending batches,
//! resolving calls, saving the queue and reporting the status.

use std::{
    future::poll_fn,
    sync::Arc,
    task::{Poll, Waker},
    time::Duration,
};

use crudp_runtime::{Outcome, Results, TransportError, protocol::decode_results};
use futures_channel::oneshot;
use futures_util::FutureExt;
use tracing::Instrument;

use crate::{
    core::{Core, Effect, Input, Mode},
    queue::reply,
    rt,
    shared::Shared,
    transport::TransportFuture,
};

/// A client's driver, ready to run.
pub(crate) struct Driver {
    pub(crate) core: Core,
    pub(crate) shared: Arc<Shared>,
    /// The inputs taken from the inbox and not yet handled.
    pub(crate) inputs: Vec<Input>,
    /// Resolves (or is dropped) when the last handle of the client goes.
    pub(crate) stop: oneshot::Receiver<()>,
    /// Stops the event stream when the driver ends.
    pub(crate) stream_stop: Option<oneshot::Sender<()>>,
    /// The tasks of the calls resolved in this step, woken at its end.
    pub(crate) woken: Vec<Waker>,
    /// Calls taken in since the status was last reported.
    pub(crate) taken_in: usize,
    /// Calls taken in since the queue was last saved.
    pub(crate) unsaved: usize,
}

/// However the driver ends (the client dropped, or its runtime shut down), what is left is
/// saved and the ID let go.
impl Drop for Driver {
    fn drop(&mut self) {
        let now = rt::monotonic_ms();
        let mut effects = Vec::new();
        self.take_all(now, &mut effects);
        drop(effects);
        let core = &self.core;
        self.shared
            .save(|| core.snapshot(), std::mem::take(&mut self.unsaved));
        self.shared.release();
        if let Ok(None) = self.stop.try_recv() {
            // Dropped while the client is still in use: its runtime shut down. Its calls fail
            // now, and the calls made from now on at once, rather than wait for a driver that
            // is gone.
            self.shared.stop(TransportError::RuntimeGone);
            // Stopped before (signed out), it says so instead.
            let stopped = self.shared.stopped().unwrap_or(TransportError::RuntimeGone);
            self.shared.inbox.close(stopped);
            let mut effects = Vec::new();
            self.take_all(now, &mut effects);
            for effect in effects {
                if let Effect::Resolve(call, reply) = effect
                    && let Some(waker) = call.resolve(reply)
                {
                    self.woken.push(waker);
                }
            }
        }
        reply::wake_all(&mut self.woken);
    }
}

enum Event {
    Inputs,
    Sent(Result<Option<Results>, TransportError>),
    Tick,
    Stop,
}

type Pending<T> = Option<TransportFuture<'static, T>>;

/// The most replies handed out before their tasks are woken.
const WAKE_EVERY: usize = 32;
/// How long a client dropped without storage keeps sending the calls it still has.
const DRAIN_MS: u64 = 30_000;
/// The longest single sleep: timers further out than about 24 days misbehave in browsers.
const MAX_SLEEP_MS: u64 = (1 << 31) - 1;

impl Driver {
    /// Runs until the client is dropped. With storage, the saved queue is then left for the
    /// next client; without, the calls still queued are sent first (for [`DRAIN_MS`] at most).
    pub(crate) async fn run(mut self) {
        let mut sending: Pending<Result<Option<Results>, TransportError>> = None;
        let mut timer: Option<(u64, TransportFuture<'static, ()>)> = None;
        let mut effects = Vec::new();
        // When the client was dropped, if it was: the driver then only finishes its work.
        let mut stopped_at: Option<u64> = None;
        let mut first = true;
        loop {
            let event = if std::mem::take(&mut first) {
                // Calls restored from storage may leave at once.
                Event::Tick
            } else {
                poll_fn(|cx| {
                    if stopped_at.is_none() && self.stop.poll_unpin(cx).is_ready() {
                        return Poll::Ready(Event::Stop);
                    }
                    if let Some(send) = &mut sending
                        && let Poll::Ready(answer) = send.as_mut().poll(cx)
                    {
                        sending = None;
                        return Poll::Ready(Event::Sent(answer));
                    }
                    if self.shared.inbox.poll_take(cx, &mut self.inputs).is_ready() {
                        return Poll::Ready(Event::Inputs);
                    }
                    if let Some((_, sleep)) = &mut timer
                        && sleep.as_mut().poll(cx).is_ready()
                    {
                        timer = None;
                        return Poll::Ready(Event::Tick);
                    }
                    Poll::Pending
                })
                .await
            };
            let now = rt::monotonic_ms();
            match event {
                Event::Inputs => {}
                Event::Sent(answer) => self.core.handle(Input::Sent(answer), now, &mut effects),
                Event::Tick => {}
                Event::Stop => {
                    stopped_at = Some(now);
                    // Whatever is queued may leave now.
                    self.core.handle(Input::Sync, now, &mut effects);
                }
            }
            // Everything posted meanwhile joins this step, so that a burst is one batch.
            self.take_all(now, &mut effects);
            self.core.poll(now, &mut effects);
            for effect in std::mem::take(&mut effects) {
                if let Some(send) = self.perform(effect) {
                    sending = Some(send);
                }
            }
            if self.taken_in > 0 {
                // Calls taken in by a step that left the status as it was (one call sent as
                // another's answer came): no longer counted as made and not taken in.
                self.shared
                    .report(self.core.status(), std::mem::take(&mut self.taken_in));
            }
            // Every reply of the step is in: each task waiting for some wakes once.
            reply::wake_all(&mut self.woken);
            if let Some(stopped) = self.shared.stopped() {
                // Signed out, another user's, or its ID taken over (found by this step's save,
                // say): every call is resolved with why, those posted after the stop too (made
                // on another thread as it happened), and from now on posts fail at once.
                // `Drop` saves nothing and lets go of nothing.
                self.shared.inbox.close(stopped.clone());
                self.take_all(now, &mut effects);
                self.core.handle(Input::Stop(stopped), now, &mut effects);
                for effect in effects.drain(..) {
                    if let Effect::Resolve(call, reply) = effect
                        && let Some(waker) = call.resolve(reply)
                    {
                        self.woken.push(waker);
                    }
                }
                // Nothing waits any more.
                self.shared
                    .report(self.core.status(), std::mem::take(&mut self.taken_in));
                reply::wake_all(&mut self.woken);
                return;
            }
            if let Some(stopped) = stopped_at {
                let drained = self.core.status().pending() == 0 && sending.is_none();
                let handed_over = self.shared.persistence.is_some();
                if drained || handed_over || now.saturating_sub(stopped) >= DRAIN_MS {
                    // `Drop` saves and lets the ID go.
                    return;
                }
            }
            let deadline = self
                .core
                .deadline()
                .or(stopped_at.map(|stopped| stopped + DRAIN_MS));
            timer = match (deadline, timer.take()) {
                (Some(at), Some((was, sleep))) if at == was => Some((was, sleep)),
                (Some(at), _) => {
                    let delay = at.saturating_sub(now).min(MAX_SLEEP_MS);
                    Some((at, Box::pin(rt::sleep(Duration::from_millis(delay)))))
                }
                (None, _) => None,
            };
        }
    }

    /// Hands the core every input taken or posted so far, until the inbox is empty.
    fn take_all(&mut self, now: u64, effects: &mut Vec<Effect>) {
        let mut inputs = std::mem::take(&mut self.inputs);
        loop {
            self.shared.inbox.take(&mut inputs);
            if inputs.is_empty() {
                break;
            }
            for input in inputs.drain(..) {
                if matches!(input, Input::Call { .. }) {
                    self.taken_in += 1;
                    self.unsaved += 1;
                }
                self.core.handle(input, now, effects);
            }
        }
        // Its buffer is kept for the next step.
        self.inputs = inputs;
    }

    /// Carries out one effect; a batch to send comes back as the future of its answer.
    fn perform(&mut self, effect: Effect) -> Pending<Result<Option<Results>, TransportError>> {
        match effect {
            Effect::Send(body) if !self.shared.is_released() => return Some(self.send(body)),
            // Once the ID is let go, another client may own the queue: it sends, not this one.
            // The batch goes back to the queue until the ID is taken back.
            Effect::Send(_) => {
                let let_go = TransportError::Unreachable("the client let its ID go".into());
                return Some(Box::pin(std::future::ready(Err(let_go))));
            }
            Effect::Resolve(call, reply) => {
                if let Ok(Outcome::Ok(value)) = &reply {
                    // As in the server's broadcasts: a value of nothing (a delete's `()`)
                    // gives way to the call's arguments.
                    let heard = if value.is_empty() {
                        &call.packet.args
                    } else {
                        value
                    };
                    self.shared
                        .listeners
                        .notify(call.packet.handler, call.packet.action, heard);
                }
                if let Some(waker) = call.resolve(reply) {
                    self.woken.push(waker);
                    // A large batch wakes its tasks as it goes, so that they can take their
                    // replies while the rest are handed out.
                    if self.woken.len() >= WAKE_EVERY {
                        reply::wake_all(&mut self.woken);
                    }
                }
            }
            Effect::Save => {
                let core = &self.core;
                self.shared
                    .save(|| core.snapshot(), std::mem::take(&mut self.unsaved));
            }
            Effect::Status(status) => self
                .shared
                .report(status, std::mem::take(&mut self.taken_in)),
        }
        None
    }

    fn send(
        &self,
        body: Vec<u8>,
    ) -> TransportFuture<'static, Result<Option<Results>, TransportError>> {
        let shared = Arc::clone(&self.shared);
        let span = tracing::info_span!(
            "crudp.client.batch",
            rpc.system = "crudp",
            crudp.client = %self.shared.id,
            crudp.mode = ?self.shared.mode,
            crudp.bytes = body.len(),
        );
        let sent = async move {
            let headers = shared.headers();
            match shared.mode {
                Mode::Sync => shared
                    .transport
                    .post(&shared.url("sync"), &headers.pairs(), body)
                    .await
                    .map(|_| None),
                Mode::Call => {
                    if !shared.is_named() {
                        // Without an event stream, the user is named by a token of its own:
                        // a saved queue leaves only for the user it was saved for.
                        crate::events::name(&shared).await?;
                    }
                    let answer = shared
                        .transport
                        .post(&shared.url("call"), &headers.pairs(), body)
                        .await?;
                    decode_results(&answer.into(), usize::MAX)
                        .map(Some)
                        .map_err(|e| TransportError::Malformed(e.to_string()))
                }
            }
        }
        .instrument(span);
        Box::pin(sent)
    }
}
