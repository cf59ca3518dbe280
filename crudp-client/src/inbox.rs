//! The driver's inbox: what the public API, the event stream and the browser post, taken by
//! the driver a burst at a time. A post is a push under a lock, with no allocation of its own;
//! only the post that finds the inbox empty wakes the driver, and the first polls of a task's
//! call futures, posted one after the other, count as one input.

use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
};

use crudp_runtime::TransportError;
use futures_util::task::AtomicWaker;

use crate::core::Input;

#[derive(Default)]
pub(crate) struct Inbox {
    inputs: Mutex<Inputs>,
    driver: AtomicWaker,
}

#[derive(Default)]
struct Inputs {
    waiting: Vec<Input>,
    /// Why nothing is taken any more, once the driver is gone.
    closed: Option<TransportError>,
}

impl Inbox {
    fn inputs(&self) -> MutexGuard<'_, Inputs> {
        self.inputs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands an input to the driver. Once the inbox is [closed](Self::close), a call posted
    /// fails at once instead, and `false` says the input was not taken.
    pub(crate) fn post(&self, input: Input) -> bool {
        let was_empty = {
            let mut guard = self.inputs();
            if let Some(error) = guard.closed.clone() {
                drop(guard);
                if let Input::Call { reply, .. } = input
                    && let Some(waker) = reply.fill(Err(error))
                {
                    waker.wake();
                }
                return false;
            }
            let inputs = &mut guard.waiting;
            let was_empty = inputs.is_empty();
            match (inputs.last_mut(), input) {
                (Some(Input::Release(waiting)), Input::Release(more)) => *waiting += more,
                (Some(Input::Dropped(waiting)), Input::Dropped(more)) => *waiting += more,
                (_, input) => inputs.push(input),
            }
            was_empty
        };
        // A post that finds inputs waiting follows one that woke the driver already.
        if was_empty {
            self.driver.wake();
        }
        true
    }

    /// The driver is gone, for `error`: what is posted from now on is not kept. What was
    /// posted before stays, to take.
    pub(crate) fn close(&self, error: TransportError) {
        self.inputs().closed = Some(error);
    }

    /// Moves every input posted so far, in order, to the end of `into`.
    pub(crate) fn take(&self, into: &mut Vec<Input>) {
        let mut guard = self.inputs();
        let inputs = &mut guard.waiting;
        if into.is_empty() {
            std::mem::swap(inputs, into);
        } else {
            into.append(inputs);
        }
    }

    /// Like [`take`](Self::take), but pending (and woken by the next post) while nothing is
    /// posted.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>, into: &mut Vec<Input>) -> Poll<()> {
        self.driver.register(cx.waker());
        self.take(into);
        if into.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Wake, Waker},
    };

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_burst_wakes_the_driver_once_and_consecutive_releases_merge() {
        let inbox = Inbox::default();
        let wakes = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut taken = Vec::new();
        assert!(inbox.poll_take(&mut cx, &mut taken).is_pending());
        inbox.post(Input::Sync);
        inbox.post(Input::Release(1));
        inbox.post(Input::Release(1));
        inbox.post(Input::Dropped(1));
        inbox.post(Input::Release(2));
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        assert!(inbox.poll_take(&mut cx, &mut taken).is_ready());
        let kinds: Vec<_> = taken
            .iter()
            .map(|input| match input {
                Input::Sync => "sync".to_owned(),
                Input::Release(n) => format!("release {n}"),
                Input::Dropped(n) => format!("dropped {n}"),
                _ => "other".to_owned(),
            })
            .collect();
        assert_eq!(kinds, ["sync", "release 2", "dropped 1", "release 2"]);
        // Taken, the inbox is empty again: the next post wakes the driver.
        inbox.post(Input::Sync);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 2);
    }
}
