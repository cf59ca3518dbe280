//! The signal that skips the event stream's back-off: `client.sync()`, a changed header, the
//! browser back online. Kicks coalesce: however many come before the stream looks, they
//! count as one, and those made while events come through are forgotten with each event and
//! when the stream breaks, so that they never cut the pauses of a later outage short.

use std::{
    future::poll_fn,
    sync::atomic::{AtomicBool, Ordering},
    task::Poll,
};

use futures_util::task::AtomicWaker;

#[derive(Default)]
pub(crate) struct Kick {
    kicked: AtomicBool,
    waiter: AtomicWaker,
}

impl Kick {
    /// Wakes whoever waits for a kick, or the next to wait.
    pub(crate) fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
        self.waiter.wake();
    }

    /// Forgets the kicks made so far.
    pub(crate) fn clear(&self) {
        self.kicked.store(false, Ordering::Release);
    }

    /// Resolves at the next kick, or at once if one came since the last [`clear`](Self::clear)
    /// or wait; it is then used up.
    pub(crate) async fn kicked(&self) {
        poll_fn(|cx| {
            self.waiter.register(cx.waker());
            if self.kicked.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn kicks_coalesce_and_a_clear_forgets_them() {
        let kick = Kick::default();
        assert!(kick.kicked().now_or_never().is_none(), "no kick yet");
        for _ in 0..100 {
            kick.kick();
        }
        assert!(kick.kicked().now_or_never().is_some(), "kicked");
        assert!(
            kick.kicked().now_or_never().is_none(),
            "a hundred kicks count as one"
        );
        kick.kick();
        kick.clear();
        assert!(kick.kicked().now_or_never().is_none(), "cleared");
    }
}
