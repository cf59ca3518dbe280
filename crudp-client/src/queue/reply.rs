//! Where a call's reply waits for its future. The driver fills the replies of a whole batch
//! first and wakes their futures after, so that a task awaiting several calls wakes once for
//! the batch, not once per call (each wake of a parked thread costs more than the call).

use std::{
    mem,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
};

use super::Reply;

enum State {
    /// No reply yet; the waker of the future's task, once it was polled.
    Waiting(Option<Waker>),
    Filled(Reply),
    /// Taken, or the driver let go of the call without a reply.
    Gone,
}

struct Slot(Mutex<State>);

impl Slot {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the wait with `state`, and returns the waker of the future's task, if it was
    /// polled.
    fn end(&self, state: State) -> Option<Waker> {
        let mut current = self.state();
        let State::Waiting(waker) = &mut *current else {
            return None;
        };
        let waker = waker.take();
        *current = state;
        waker
    }
}

/// A new slot: the driver's end, and the future's.
pub(crate) fn slot() -> (ReplySender, ReplyReceiver) {
    let slot = Arc::new(Slot(Mutex::new(State::Waiting(None))));
    (ReplySender(Some(Arc::clone(&slot))), ReplyReceiver(slot))
}

/// The driver's end of a slot; `None` once filled.
pub(crate) struct ReplySender(Option<Arc<Slot>>);

impl ReplySender {
    /// Puts `reply` in the slot, and returns the waker of the future's task, for the driver to
    /// wake once every reply of the batch is in.
    #[must_use = "the future's task waits until it is woken"]
    pub(crate) fn fill(mut self, reply: Reply) -> Option<Waker> {
        self.0.take()?.end(State::Filled(reply))
    }
}

/// Dropped without a reply, the future gets `Closed`.
impl Drop for ReplySender {
    fn drop(&mut self) {
        if let Some(waker) = self.0.take().and_then(|slot| slot.end(State::Gone)) {
            waker.wake();
        }
    }
}

/// The future's end of a slot.
pub(crate) struct ReplyReceiver(Arc<Slot>);

impl ReplyReceiver {
    /// The reply, once filled; `None` if the driver let go of the call without one.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Reply>> {
        let mut state = self.0.state();
        match mem::replace(&mut *state, State::Gone) {
            State::Filled(reply) => Poll::Ready(Some(reply)),
            State::Gone => Poll::Ready(None),
            State::Waiting(waker) => {
                let waker = match waker {
                    Some(waker) if waker.will_wake(cx.waker()) => waker,
                    _ => cx.waker().clone(),
                };
                *state = State::Waiting(Some(waker));
                Poll::Pending
            }
        }
    }
}

/// Wakes each task once: the futures of one batch mostly share one task.
pub(crate) fn wake_all(wakers: &mut Vec<Waker>) {
    let mut last: Option<Waker> = None;
    for waker in wakers.drain(..) {
        if last.as_ref().is_some_and(|l| l.will_wake(&waker)) {
            continue;
        }
        if let Some(previous) = last.replace(waker) {
            previous.wake();
        }
    }
    if let Some(last) = last {
        last.wake();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use crudp_runtime::{Outcome, TransportError};

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let wakes = Arc::new(Count::default());
        (Arc::clone(&wakes), Waker::from(wakes))
    }

    #[test]
    fn replies_wake_their_task_only_when_asked_and_once_per_batch() {
        let (wakes, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let (senders, mut receivers): (Vec<_>, Vec<_>) = (0..3).map(|_| slot()).unzip();
        for receiver in &mut receivers {
            assert!(receiver.poll(&mut cx).is_pending());
        }
        let mut wakers: Vec<Waker> = senders
            .into_iter()
            .filter_map(|sender| sender.fill(Ok(Outcome::Ok(vec![1].into()))))
            .collect();
        assert_eq!((wakers.len(), wakes.0.load(Ordering::Relaxed)), (3, 0));
        wake_all(&mut wakers);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        for receiver in &mut receivers {
            assert!(matches!(
                receiver.poll(&mut cx),
                Poll::Ready(Some(Ok(Outcome::Ok(v)))) if v[..] == [1]
            ));
        }
    }

    #[test]
    fn a_reply_let_go_of_wakes_its_future_and_a_reply_filled_before_the_poll_is_there() {
        let (wakes, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let (sender, mut receiver) = slot();
        assert!(receiver.poll(&mut cx).is_pending());
        drop(sender);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        assert!(matches!(receiver.poll(&mut cx), Poll::Ready(None)));

        let (sender, mut receiver) = slot();
        assert!(sender.fill(Err(TransportError::Closed)).is_none());
        assert!(matches!(
            receiver.poll(&mut cx),
            Poll::Ready(Some(Err(TransportError::Closed)))
        ));
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
    }
}
