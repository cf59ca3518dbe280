//! The client's state, with no I/O, no locks and no spawning: the calls from the moment they
//! are made until their outcome is known, the link to the server, and when the next batch may
//! leave. The driver feeds it [`Input`]s and carries out the [`Effect`]s it returns; time comes
//! in as milliseconds, so that tests can drive it through any sequence.

use crudp_runtime::{Action, ClientId, Results, TransportError};

use crate::{
    backoff::Backoff,
    queue::{Call, Calls, Reply, reply::ReplySender, storage::Saved},
    status::{Connection, Status},
};

/// Consecutive failures after which the client reports [`Connection::Offline`].
pub(crate) const OFFLINE_AFTER: u32 = 3;

/// How long, in [`Mode::Sync`], calls accepted by the server wait for their results before
/// they are sent again: the server that accepted them may have died while the event stream,
/// on another server, stayed up. (The server answers a call it ran from its records.)
pub(crate) const RESULTS_WITHIN_MS: u64 = 15_000;

/// How much longer than the batch window calls wait while futures of calls are alive and not
/// yet polled, in ms: their tasks are still making calls (or were descheduled while at it).
pub(crate) const HOLD_MS: u64 = 100;

/// How results come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Batches go to `POST /sync` (answered `202` at once) and results come over the event
    /// stream, together with broadcasts. The default.
    #[default]
    Sync,
    /// Batches go to `POST /call` and results come in its answer; no event stream, so no
    /// broadcasts. For environments without SSE.
    Call,
}

/// What happened, for the core to act on.
pub(crate) enum Input {
    /// A call was made.
    Call {
        handler: u32,
        action: Action,
        args: Vec<u8>,
        reply: ReplySender,
    },
    /// Tasks await their calls (this many calls' futures were polled for the first time):
    /// the calls made so far may leave.
    Release(usize),
    /// This many calls' futures were dropped without being polled: their calls still leave,
    /// within the batch window.
    Dropped(usize),
    /// Send now, skipping any pause: `client.sync()`, or the network is back.
    Sync,
    /// The batch on its way got an answer (in `Call` mode, with the results) or failed.
    Sent(Result<Option<Results>, TransportError>),
    /// Results from the event stream.
    Results(Results),
    /// The event stream is open and caught up.
    StreamReady,
    /// The event stream was open and broke; it is reconnecting.
    StreamLost,
    /// The event stream could not open.
    StreamFailed,
    /// The platform says the network is gone (the browser's `offline` event).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Offline,
    /// The most packets the server takes in a batch, learnt with a stream token.
    ServerLimit(usize),
    /// The event stream did not get through, and events come by polling (`true`), or it
    /// gets through again (`false`).
    Polling(bool),
    /// Whether this page holds the client's ID (in the browser, its Web Lock): while it does
    /// not, nothing is sent. Taken back, the calls are saved again and may leave at once.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Held(bool),
    /// The client stopped for good (it signed out, or another user signed in): every call
    /// without an outcome fails with this, and nothing leaves any more.
    Stop(TransportError),
    /// Another page may have held the client's ID and used sequence numbers below this one:
    /// new calls' go on from it.
    SkipTo(u64),
}

/// What the driver must do.
pub(crate) enum Effect {
    /// POST this encoded batch (to `/sync` or `/call`, by mode); its answer comes back as
    /// [`Input::Sent`].
    Send(Vec<u8>),
    /// Hand this reply to the call's future and, for an `Ok` outcome, to the listeners.
    Resolve(Call, Reply),
    /// The calls without an outcome changed: save [`Core::snapshot`].
    Save,
    /// The status changed.
    Status(Status),
}

/// The client's state; see the module documentation.
pub(crate) struct Core {
    client: ClientId,
    mode: Mode,
    calls: Calls,
    connection: Connection,
    failures: u32,
    /// The sequence numbers of the batch on its way, if one is.
    sending: Option<Vec<u64>>,
    /// Calls up to this sequence number may leave.
    released: u64,
    /// When the calls made so far leave even if their task has not yielded, in ms.
    window_ends: Option<u64>,
    /// Calls whose futures are alive and not yet polled: their tasks are still making calls,
    /// so the window waits for them (up to [`HOLD_MS`] more), and a task descheduled in the
    /// middle of its calls does not split them.
    unpolled: usize,
    /// No batch leaves before then (a back-off, or the hold after calls the server could not
    /// run yet), in ms.
    paused_until: Option<u64>,
    send_backoff: Backoff,
    hold: Backoff,
    max_batch: usize,
    server_max: usize,
    /// The most calls a batch takes after one too large (`413`): halved by each, doubled back
    /// by each batch delivered.
    split: usize,
    /// The event stream is open: from its `ready` until it is lost. The browser going offline
    /// and back may leave it open, with no new `ready` to tell.
    stream_up: bool,
    batch_window: u64,
    reported: Option<Status>,
    unsaved: bool,
    polling: bool,
    held: bool,
    /// Since when calls accepted by the server have been waiting for their results, in
    /// [`Mode::Sync`]; a call settled starts the wait again. (Not a call the server could not
    /// run yet: one sent after calls it never got keeps being answered so, and those must be
    /// sent again.)
    waiting_since: Option<u64>,
}

impl Core {
    /// A client's core, with the calls `saved` restored from storage (they may leave at once).
    pub(crate) fn new(
        client: ClientId,
        mode: Mode,
        saved: Saved,
        max_batch: usize,
        batch_window_ms: u64,
    ) -> Self {
        let calls = Calls::restore(saved);
        Self {
            client,
            mode,
            released: calls.last_seq(),
            calls,
            connection: Connection::Reconnecting,
            failures: 0,
            sending: None,
            window_ends: None,
            unpolled: 0,
            paused_until: None,
            send_backoff: Backoff::new(client.0 ^ 0x5eed),
            hold: Backoff::new(client.0 ^ 0xba11),
            max_batch: max_batch.max(1),
            server_max: usize::MAX,
            split: usize::MAX,
            stream_up: false,
            batch_window: batch_window_ms,
            reported: None,
            unsaved: false,
            polling: false,
            held: true,
            waiting_since: None,
        }
    }

    /// The link to the server and the calls waiting for it.
    pub(crate) fn status(&self) -> Status {
        Status {
            connection: self.connection,
            queued: self.calls.queued(),
            in_flight: self.calls.in_flight(),
            polling: self.polling,
        }
    }

    /// Every call without an outcome, to save.
    pub(crate) fn snapshot(&self) -> Saved {
        self.calls.snapshot()
    }

    /// When the driver should [`poll`](Self::poll) again though nothing happened, in ms.
    pub(crate) fn deadline(&self) -> Option<u64> {
        let resend = self
            .waiting_since
            .filter(|_| self.calls.in_flight() > 0)
            .map(|since| since.saturating_add(RESULTS_WITHIN_MS));
        if self.sending.is_some() || self.calls.queued() == 0 || !self.held {
            return resend;
        }
        // While paused nothing leaves, released or not; then the window, if any, still runs.
        let next = self.paused_until.or(self.window_end());
        match (next, resend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes one input in; the effects come from [`poll`](Self::poll), so that a burst of
    /// inputs leads to one batch.
    pub(crate) fn handle(&mut self, input: Input, now: u64, effects: &mut Vec<Effect>) {
        match input {
            Input::Call {
                handler,
                action,
                args,
                reply,
            } => {
                let seq = self.calls.next_seq();
                self.calls.push(Call {
                    packet: crudp_runtime::Packet {
                        seq,
                        handler,
                        action,
                        args: args.into(),
                    },
                    reply: Some(reply),
                });
                self.window_ends
                    .get_or_insert(now.saturating_add(self.batch_window));
                self.unpolled += 1;
                self.unsaved = true;
            }
            Input::Release(polled) => {
                self.unpolled = self.unpolled.saturating_sub(polled);
                self.release_all();
            }
            Input::Dropped(dropped) => self.unpolled = self.unpolled.saturating_sub(dropped),
            Input::Sync => {
                self.release_all();
                self.paused_until = None;
                // Back online (the browser says so, or the app asks) with the stream still
                // open: it is the link.
                if self.stream_up && self.connection == Connection::Offline {
                    self.connection = Connection::Online;
                    self.failures = 0;
                }
            }
            Input::Sent(answer) => self.sent(answer, now, effects),
            Input::Results(results) => self.deliver(results, now, effects),
            Input::StreamReady => {
                // Calls in flight lost their results: send them again; the server answers
                // them without running them twice.
                self.calls.requeue(None);
                self.waiting_since = None;
                self.connection = Connection::Online;
                self.failures = 0;
                self.stream_up = true;
            }
            Input::StreamLost => {
                self.stream_up = false;
                self.connection = Connection::Reconnecting;
            }
            Input::StreamFailed => {
                self.stream_up = false;
                self.failed();
            }
            Input::Offline => {
                self.failures = self.failures.max(OFFLINE_AFTER);
                self.connection = Connection::Offline;
            }
            Input::ServerLimit(max) => self.server_max = max.max(1),
            Input::Polling(polling) => self.polling = polling,
            Input::Stop(error) => {
                self.held = false;
                for call in self.calls.drain() {
                    effects.push(Effect::Resolve(call, Err(error.clone())));
                }
            }
            Input::SkipTo(seq) => {
                self.calls.skip_to(seq);
                self.unsaved = true;
            }
            Input::Held(held) => {
                self.held = held;
                if held {
                    // Another page may have sent some of them meanwhile: the server answers
                    // those without running them again.
                    self.calls.requeue(None);
                    self.release_all();
                    self.paused_until = None;
                    self.unsaved = true;
                }
            }
        }
    }

    /// What to do now: send the next batch if one may leave, report the status if it changed,
    /// save if the calls changed.
    pub(crate) fn poll(&mut self, now: u64, effects: &mut Vec<Effect>) {
        if self.window_end().is_some_and(|end| end <= now) {
            self.release_all();
        }
        if self.calls.in_flight() == 0 {
            self.waiting_since = None;
        } else if self
            .waiting_since
            .is_some_and(|since| now.saturating_sub(since) >= RESULTS_WITHIN_MS)
        {
            tracing::debug!("no results for a while: sending the calls in flight again");
            self.waiting_since = None;
            self.calls.requeue(None);
            self.release_all();
        }
        if self.paused_until.is_some_and(|until| until <= now) {
            self.paused_until = None;
        }
        let may_send = self.mode == Mode::Call || self.connection == Connection::Online;
        if may_send && self.held && self.sending.is_none() && self.paused_until.is_none() {
            let released = self.calls.queued_up_to(self.released);
            if released > 0 {
                let max = released
                    .min(self.max_batch)
                    .min(self.server_max)
                    .min(self.split);
                let (seqs, body) = self.calls.take_encoded(max, self.client);
                self.sending = Some(seqs);
                effects.push(Effect::Send(body));
            }
        }
        if self.calls.queued_up_to(self.released) == self.calls.queued() {
            self.window_ends = None;
        }
        let status = self.status();
        if self.reported != Some(status) {
            self.reported = Some(status);
            effects.push(Effect::Status(status));
        }
        if std::mem::take(&mut self.unsaved) {
            effects.push(Effect::Save);
        }
    }

    /// When the calls not released yet leave: at the end of the window, or, while futures of
    /// calls are alive and unpolled (their tasks have not yielded yet), [`HOLD_MS`] later.
    fn window_end(&self) -> Option<u64> {
        let hold = if self.unpolled > 0 { HOLD_MS } else { 0 };
        self.window_ends.map(|end| end.saturating_add(hold))
    }

    fn release_all(&mut self) {
        self.released = self.calls.last_seq();
        self.window_ends = None;
    }

    fn failed(&mut self) {
        self.failures += 1;
        self.connection = if self.failures >= OFFLINE_AFTER {
            Connection::Offline
        } else {
            Connection::Reconnecting
        };
    }

    fn sent(
        &mut self,
        answer: Result<Option<Results>, TransportError>,
        now: u64,
        effects: &mut Vec<Effect>,
    ) {
        let Some(seqs) = self.sending.take() else {
            return;
        };
        match answer {
            Ok(results) => {
                self.send_backoff.reset();
                self.split = self.split.saturating_mul(2);
                if self.mode == Mode::Sync && self.calls.in_flight() > 0 {
                    self.waiting_since.get_or_insert(now);
                }
                if self.mode == Mode::Call {
                    self.connection = Connection::Online;
                    self.failures = 0;
                }
                if let Some(results) = results {
                    self.deliver(results, now, effects);
                }
            }
            // Too large together (`413`): sent again in halves, until a call is alone; one too
            // large alone fails below.
            Err(e) if e.status() == Some(413) && seqs.len() > 1 => {
                tracing::debug!(calls = seqs.len(), "batch too large; sent again in halves");
                self.calls.requeue(Some(&seqs));
                self.split = seqs.len() / 2;
            }
            Err(e) if e.is_retryable() => {
                tracing::debug!(error = %e, "batch not delivered; it will be sent again");
                self.calls.requeue(Some(&seqs));
                // In `Sync` mode the event stream says how the link is; a batch refused for a
                // while (`503`, say) only waits.
                if self.mode == Mode::Call {
                    self.failed();
                }
                self.paused_until = Some(now.saturating_add(millis(self.send_backoff.next())));
            }
            Err(e) => {
                tracing::warn!(error = %e, "batch refused");
                for call in self.calls.remove_in_flight(&seqs) {
                    effects.push(Effect::Resolve(call, Err(e.clone())));
                }
                self.unsaved = true;
            }
        }
    }

    /// Hands results to their calls; `Unavailable` ones are sent again after a hold.
    fn deliver(&mut self, results: Results, now: u64, effects: &mut Vec<Effect>) {
        let mut retry = Vec::new();
        for result in results.results {
            if Calls::is_final(&result.outcome) {
                if self.waiting_since.is_some() {
                    self.waiting_since = Some(now);
                }
                if let Some(call) = self.calls.answer(result.seq) {
                    effects.push(Effect::Resolve(call, Ok(result.outcome)));
                    self.unsaved = true;
                }
            } else {
                retry.push(result.seq);
            }
        }
        self.calls.requeue(Some(&retry));
        if retry.is_empty() {
            self.hold.reset();
        } else {
            self.paused_until = Some(now.saturating_add(millis(self.hold.next())));
        }
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use crudp_runtime::{Outcome, PacketResult, protocol::decode_batch};

    use super::*;

    const WINDOW: u64 = 5;

    fn core(mode: Mode) -> Core {
        Core::new(ClientId(9), mode, Saved::default(), 1000, WINDOW)
    }

    fn call(core: &mut Core, now: u64) {
        let (reply, _) = crate::queue::reply::slot();
        let input = Input::Call {
            handler: 1,
            action: Action::Create,
            args: vec![7],
            reply,
        };
        core.handle(input, now, &mut Vec::new());
    }

    /// Polls and returns the sequence numbers of the batch sent, if any, and what resolved.
    fn poll(core: &mut Core, now: u64) -> (Option<Vec<u64>>, Vec<u64>) {
        let mut effects = Vec::new();
        core.poll(now, &mut effects);
        split(effects)
    }

    fn handle(core: &mut Core, input: Input, now: u64) -> Vec<u64> {
        let mut effects = Vec::new();
        core.handle(input, now, &mut effects);
        split(effects).1
    }

    fn split(effects: Vec<Effect>) -> (Option<Vec<u64>>, Vec<u64>) {
        let mut sent = None;
        let mut resolved = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send(body) => {
                    let batch = decode_batch(&body.into(), usize::MAX).unwrap();
                    assert!(sent.is_none(), "one batch at a time");
                    sent = Some(batch.packets.iter().map(|p| p.seq).collect());
                }
                Effect::Resolve(call, _) => resolved.push(call.packet.seq),
                Effect::Save | Effect::Status(_) => {}
            }
        }
        (sent, resolved)
    }

    fn ok(seqs: &[u64]) -> Results {
        Results {
            results: seqs
                .iter()
                .map(|&seq| PacketResult {
                    seq,
                    outcome: Outcome::Ok(Default::default()),
                })
                .collect(),
        }
    }

    #[test]
    fn calls_accepted_whose_results_never_come_are_sent_again() {
        let mut core = core(Mode::Sync);
        handle(&mut core, Input::StreamReady, 0);
        call(&mut core, 0);
        call(&mut core, 0);
        handle(&mut core, Input::Release(1), 0);
        assert_eq!(poll(&mut core, 0).0, Some(vec![1, 2]));
        handle(&mut core, Input::Sent(Ok(None)), 10);
        assert_eq!(poll(&mut core, 10).0, None, "accepted: waiting for results");
        assert_eq!(core.deadline(), Some(10 + RESULTS_WITHIN_MS));
        // A result restarts the wait for the others.
        handle(&mut core, Input::Results(ok(&[1])), 5000);
        assert_eq!(poll(&mut core, 10 + RESULTS_WITHIN_MS).0, None);
        assert_eq!(poll(&mut core, 5000 + RESULTS_WITHIN_MS).0, Some(vec![2]));
        assert_eq!(
            handle(
                &mut core,
                Input::Results(ok(&[2])),
                5001 + RESULTS_WITHIN_MS
            ),
            vec![2]
        );
        handle(&mut core, Input::Sent(Ok(None)), 5002 + RESULTS_WITHIN_MS);
        assert_eq!(core.deadline(), None, "nothing in flight");
    }

    #[test]
    fn after_another_page_may_have_used_the_id_new_calls_skip_its_numbers() {
        let mut core = core(Mode::Call);
        call(&mut core, 0);
        handle(&mut core, Input::SkipTo(1000), 0);
        handle(&mut core, Input::SkipTo(500), 0);
        call(&mut core, 0);
        handle(&mut core, Input::Sync, 0);
        assert_eq!(poll(&mut core, 0).0, Some(vec![1, 1000]));
    }

    #[test]
    fn calls_sent_after_ones_whose_results_never_come_do_not_hold_those_back() {
        let mut core = core(Mode::Sync);
        handle(&mut core, Input::StreamReady, 0);
        for _ in 0..3 {
            call(&mut core, 0);
        }
        handle(&mut core, Input::Release(3), 0);
        assert_eq!(poll(&mut core, 0).0, Some(vec![1, 2, 3]));
        handle(&mut core, Input::Sent(Ok(None)), 0);
        // The server that accepted them went away before it ran them; call 4, sent after
        // them, keeps being answered that it waits for them.
        call(&mut core, 100);
        handle(&mut core, Input::Release(1), 100);
        let mut now = 100;
        let mut sent = 0;
        while now <= RESULTS_WITHIN_MS {
            if let (Some(seqs), _) = poll(&mut core, now) {
                assert_eq!(seqs, [4]);
                sent += 1;
                handle(&mut core, Input::Sent(Ok(None)), now);
                let waits = Results {
                    results: vec![PacketResult {
                        seq: 4,
                        outcome: Outcome::Unavailable {
                            message: "waiting for call 3".into(),
                        },
                    }],
                };
                handle(&mut core, Input::Results(waits), now + 10);
            }
            now += 50;
        }
        assert!(sent > 3, "4 was sent {sent} times");
        assert_eq!(
            (core.calls.queued(), core.calls.in_flight()),
            (4, 0),
            "1 to 3 go back to the queue after {RESULTS_WITHIN_MS} ms"
        );
    }

    #[test]
    fn nothing_leaves_while_another_page_holds_the_id_and_all_leaves_once_it_is_back() {
        let mut core = core(Mode::Call);
        handle(&mut core, Input::Held(false), 0);
        call(&mut core, 0);
        handle(&mut core, Input::Sync, 0);
        assert_eq!(poll(&mut core, 100).0, None, "not held");
        assert_eq!(core.deadline(), None, "nothing to wake up for");
        handle(&mut core, Input::Held(true), 200);
        assert_eq!(poll(&mut core, 200).0, Some(vec![1]));
        // Let go with the call in flight, then taken back: it is sent again.
        handle(&mut core, Input::Held(false), 300);
        handle(
            &mut core,
            Input::Sent(Err(TransportError::Reconnecting)),
            300,
        );
        handle(&mut core, Input::Held(true), 400);
        assert_eq!(poll(&mut core, 400).0, Some(vec![1]));
        assert_eq!(
            handle(&mut core, Input::Sent(Ok(Some(ok(&[1])))), 401),
            vec![1]
        );
    }

    #[test]
    fn calls_made_before_their_task_yields_leave_in_one_batch() {
        let mut core = core(Mode::Call);
        for _ in 0..3 {
            call(&mut core, 0);
        }
        assert_eq!(poll(&mut core, 1).0, None, "the task has not yielded yet");
        core.handle(Input::Release(1), 1, &mut Vec::new());
        assert_eq!(poll(&mut core, 1).0, Some(vec![1, 2, 3]));
        call(&mut core, 2);
        assert_eq!(poll(&mut core, 2).0, None, "one batch at a time");
        handle(&mut core, Input::Sent(Ok(Some(ok(&[1, 2, 3])))), 3);
        assert_eq!(
            poll(&mut core, 3).0,
            None,
            "not released, within the window"
        );
        // The futures of calls 2 and 3 were never polled, and call 4's is alive: the window
        // waits longer for their tasks.
        assert_eq!(core.deadline(), Some(2 + WINDOW + HOLD_MS));
        assert_eq!(poll(&mut core, 2 + WINDOW).0, None, "a task is still at it");
        for _ in 0..3 {
            core.handle(Input::Dropped(1), 4, &mut Vec::new());
        }
        assert_eq!(core.deadline(), Some(2 + WINDOW));
        assert_eq!(
            poll(&mut core, 2 + WINDOW).0,
            Some(vec![4]),
            "the futures were dropped, and the window passed"
        );
    }

    #[test]
    fn a_task_descheduled_while_making_calls_does_not_split_them() {
        let mut core = core(Mode::Call);
        call(&mut core, 0);
        call(&mut core, 1);
        // Descheduled well past the window, before the third call and its first poll.
        assert_eq!(poll(&mut core, 5 * WINDOW).0, None);
        call(&mut core, 5 * WINDOW);
        core.handle(Input::Release(1), 5 * WINDOW, &mut Vec::new());
        assert_eq!(poll(&mut core, 5 * WINDOW).0, Some(vec![1, 2, 3]));
        // A future kept and never polled holds the others' calls only so long.
        call(&mut core, 6 * WINDOW);
        handle(&mut core, Input::Sent(Ok(Some(ok(&[1, 2, 3])))), 6 * WINDOW);
        assert_eq!(poll(&mut core, 7 * WINDOW).0, None);
        assert_eq!(poll(&mut core, 7 * WINDOW + HOLD_MS).0, Some(vec![4]));
    }

    #[test]
    fn sync_mode_sends_only_once_the_stream_is_ready() {
        let mut core = core(Mode::Sync);
        call(&mut core, 0);
        core.handle(Input::Release(1), 0, &mut Vec::new());
        assert_eq!(poll(&mut core, 0).0, None);
        core.handle(Input::StreamReady, 1, &mut Vec::new());
        assert_eq!(poll(&mut core, 1).0, Some(vec![1]));
        assert_eq!(core.status().in_flight, 1);
        assert_eq!(
            handle(&mut core, Input::Sent(Ok(None)), 2),
            Vec::<u64>::new()
        );
        assert_eq!(handle(&mut core, Input::Results(ok(&[1])), 3), vec![1]);
        assert_eq!(core.status().pending(), 0);
    }

    #[test]
    fn an_unreachable_server_means_back_off_then_offline_and_sync_skips_the_wait() {
        let mut core = core(Mode::Call);
        call(&mut core, 0);
        core.handle(Input::Release(1), 0, &mut Vec::new());
        let mut now = 0;
        for attempt in 1..=3 {
            assert_eq!(poll(&mut core, now).0, Some(vec![1]), "attempt {attempt}");
            let unreachable = TransportError::Unreachable("down".into());
            handle(&mut core, Input::Sent(Err(unreachable)), now);
            assert_eq!(poll(&mut core, now).0, None, "backing off");
            now = core.deadline().unwrap();
        }
        assert_eq!(core.status().connection, Connection::Offline);
        core.handle(Input::Sync, now - 1, &mut Vec::new());
        assert_eq!(
            poll(&mut core, now - 1).0,
            Some(vec![1]),
            "sync skips the back-off"
        );
    }

    #[test]
    fn a_refused_batch_fails_its_calls_once() {
        let mut core = core(Mode::Call);
        call(&mut core, 0);
        call(&mut core, 0);
        core.handle(Input::Release(1), 0, &mut Vec::new());
        poll(&mut core, 0);
        let refused = TransportError::Status {
            status: 403,
            message: "not yours".into(),
        };
        assert_eq!(handle(&mut core, Input::Sent(Err(refused)), 1), vec![1, 2]);
        assert_eq!(core.status().pending(), 0);
    }

    #[test]
    fn a_batch_too_large_goes_again_in_halves_and_only_a_call_too_large_alone_fails() {
        let mut core = core(Mode::Call);
        for _ in 0..4 {
            call(&mut core, 0);
        }
        core.handle(Input::Release(1), 0, &mut Vec::new());
        assert_eq!(poll(&mut core, 0).0, Some(vec![1, 2, 3, 4]));
        let too_large = || {
            Input::Sent(Err(TransportError::Status {
                status: 413,
                message: "the request body exceeds the limit".into(),
            }))
        };
        assert_eq!(handle(&mut core, too_large(), 1), Vec::<u64>::new());
        assert_eq!(poll(&mut core, 1).0, Some(vec![1, 2]));
        assert_eq!(handle(&mut core, too_large(), 2), Vec::<u64>::new());
        assert_eq!(poll(&mut core, 2).0, Some(vec![1]));
        // Alone and still too large: it fails, and the rest go on.
        assert_eq!(handle(&mut core, too_large(), 3), vec![1]);
        assert_eq!(poll(&mut core, 3).0, Some(vec![2]));
        assert_eq!(
            handle(&mut core, Input::Sent(Ok(Some(ok(&[2])))), 4),
            vec![2]
        );
        // Each batch delivered doubles what the next may take.
        assert_eq!(poll(&mut core, 4).0, Some(vec![3, 4]));
        assert_eq!(core.status().pending(), 2);
    }

    #[test]
    fn back_online_with_the_event_stream_still_open_the_calls_made_offline_leave() {
        let mut core = core(Mode::Sync);
        core.handle(Input::StreamReady, 0, &mut Vec::new());
        core.handle(Input::Offline, 1, &mut Vec::new());
        call(&mut core, 2);
        core.handle(Input::Release(1), 2, &mut Vec::new());
        assert_eq!(poll(&mut core, 10).0, None, "offline: kept");
        // The browser is online again and the stream never broke: no `ready` will come.
        core.handle(Input::Sync, 11, &mut Vec::new());
        assert_eq!(core.status().connection, Connection::Online);
        assert_eq!(poll(&mut core, 11).0, Some(vec![1]));

        // A stream that broke meanwhile is not the link until it is ready again.
        let mut core = self::core(Mode::Sync);
        core.handle(Input::StreamReady, 0, &mut Vec::new());
        core.handle(Input::Offline, 1, &mut Vec::new());
        core.handle(Input::StreamLost, 2, &mut Vec::new());
        core.handle(Input::Offline, 3, &mut Vec::new());
        core.handle(Input::Sync, 4, &mut Vec::new());
        assert_eq!(core.status().connection, Connection::Offline);
    }

    #[test]
    fn lost_results_are_asked_for_again_and_answered_once() {
        let mut core = core(Mode::Sync);
        core.handle(Input::StreamReady, 0, &mut Vec::new());
        for _ in 0..3 {
            call(&mut core, 0);
        }
        core.handle(Input::Release(1), 0, &mut Vec::new());
        assert_eq!(poll(&mut core, 0).0, Some(vec![1, 2, 3]));
        handle(&mut core, Input::Sent(Ok(None)), 0);
        assert_eq!(handle(&mut core, Input::Results(ok(&[2])), 1), vec![2]);
        // The stream broke and came back: 1 and 3 lost their results.
        core.handle(Input::StreamLost, 2, &mut Vec::new());
        core.handle(Input::StreamReady, 3, &mut Vec::new());
        assert_eq!(poll(&mut core, 3).0, Some(vec![1, 3]));
        handle(&mut core, Input::Sent(Ok(None)), 3);
        assert_eq!(
            handle(&mut core, Input::Results(ok(&[1, 2, 3])), 4),
            vec![1, 3]
        );
        assert_eq!(
            handle(&mut core, Input::Results(ok(&[1, 3])), 5),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn unavailable_calls_wait_then_go_again_in_order() {
        let mut core = core(Mode::Call);
        for _ in 0..2 {
            call(&mut core, 0);
        }
        core.handle(Input::Release(1), 0, &mut Vec::new());
        poll(&mut core, 0);
        let results = Results {
            results: vec![
                PacketResult {
                    seq: 1,
                    outcome: Outcome::Unavailable {
                        message: "busy".into(),
                    },
                },
                PacketResult {
                    seq: 2,
                    outcome: Outcome::Unavailable {
                        message: "busy".into(),
                    },
                },
            ],
        };
        assert_eq!(
            handle(&mut core, Input::Sent(Ok(Some(results))), 1),
            Vec::<u64>::new()
        );
        assert_eq!(poll(&mut core, 1).0, None, "held");
        let after = core.deadline().unwrap();
        assert_eq!(poll(&mut core, after).0, Some(vec![1, 2]));
    }

    #[test]
    fn batches_keep_to_the_servers_limit() {
        let mut core = core(Mode::Call);
        core.handle(Input::ServerLimit(2), 0, &mut Vec::new());
        for _ in 0..5 {
            call(&mut core, 0);
        }
        core.handle(Input::Release(1), 0, &mut Vec::new());
        let mut batches = Vec::new();
        while let (Some(seqs), _) = poll(&mut core, 0) {
            handle(&mut core, Input::Sent(Ok(Some(ok(&seqs)))), 0);
            batches.push(seqs);
        }
        assert_eq!(batches, [vec![1, 2], vec![3, 4], vec![5]]);
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod interleavings {
        use std::collections::BTreeSet;

        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Step {
            Call,
            Release,
            /// The batch in flight is answered `202`, fails (retryable), or is refused.
            Answer(u8),
            /// Results for the in-flight and queued calls picked by the mask, `Unavailable`
            /// for some.
            Results(u16, bool),
            StreamLost,
            StreamReady,
            Sync,
            Later(u8),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                4 => Just(Step::Call),
                2 => Just(Step::Release),
                3 => any::<u8>().prop_map(Step::Answer),
                3 => (any::<u16>(), any::<bool>()).prop_map(|(m, u)| Step::Results(m, u)),
                1 => Just(Step::StreamLost),
                2 => Just(Step::StreamReady),
                1 => Just(Step::Sync),
                2 => any::<u8>().prop_map(Step::Later),
            ]
        }

        proptest! {
            #[test]
            fn no_call_is_resolved_twice_or_lost(steps in proptest::collection::vec(step(), 1..120)) {
                let mut core = core(Mode::Sync);
                let mut now = 0;
                let mut made = 0u64;
                let mut resolved = BTreeSet::new();
                let mut sent: Option<Vec<u64>> = None;
                let mut seen: BTreeSet<u64> = BTreeSet::new();
                let resolve = |seqs: Vec<u64>, resolved: &mut BTreeSet<u64>| {
                    for seq in seqs {
                        prop_assert!(resolved.insert(seq), "call {} resolved twice", seq);
                    }
                    Ok(())
                };
                for step in steps {
                    let mut effects = Vec::new();
                    match step {
                        Step::Call => { call(&mut core, now); made += 1; }
                        Step::Release => core.handle(Input::Release(1), now, &mut effects),
                        Step::Answer(kind) => if sent.take().is_some() {
                            let answer = match kind % 3 {
                                0 | 1 => Ok(None),
                                _ => Err(TransportError::Unreachable("cut".into())),
                            };
                            core.handle(Input::Sent(answer), now, &mut effects);
                        },
                        Step::Results(mask, unavailable) => {
                            let picked: Vec<u64> = seen.iter().copied()
                                .filter(|seq| mask & (1 << (seq % 16)) != 0).collect();
                            let outcome = if unavailable {
                                Outcome::Unavailable { message: "later".into() }
                            } else {
                                Outcome::Ok(Default::default())
                            };
                            let results = Results { results: picked.iter().map(|&seq| PacketResult {
                                seq, outcome: outcome.clone() }).collect() };
                            core.handle(Input::Results(results), now, &mut effects);
                        }
                        Step::StreamLost => core.handle(Input::StreamLost, now, &mut effects),
                        Step::StreamReady => core.handle(Input::StreamReady, now, &mut effects),
                        Step::Sync => core.handle(Input::Sync, now, &mut effects),
                        Step::Later(ms) => now += u64::from(ms) * 10,
                    }
                    core.poll(now, &mut effects);
                    let (batch, done) = split(effects);
                    resolve(done, &mut resolved)?;
                    if let Some(batch) = batch {
                        prop_assert!(sent.is_none(), "a second batch while one is on its way");
                        prop_assert!(batch.windows(2).all(|w| w[0] < w[1]), "in order");
                        seen.extend(batch.iter().copied());
                        sent = Some(batch);
                    }
                }
                // Then the network behaves: everything gets an answer.
                for _ in 0..(made + 3) {
                    let mut effects = Vec::new();
                    if sent.take().is_some() {
                        core.handle(Input::Sent(Ok(None)), now, &mut effects);
                    }
                    core.handle(Input::StreamReady, now, &mut effects);
                    core.handle(Input::Sync, now, &mut effects);
                    let all: Vec<u64> = (1..=made).collect();
                    core.handle(Input::Results(ok(&all)), now, &mut effects);
                    core.poll(now, &mut effects);
                    let (batch, done) = split(effects);
                    resolve(done, &mut resolved)?;
                    sent = batch;
                    now += 100_000;
                }
                prop_assert_eq!(resolved.len() as u64, made, "every call resolved");
                prop_assert_eq!(core.status().pending(), 0);
            }
        }
    }
}
