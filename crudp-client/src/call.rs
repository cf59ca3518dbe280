//! The future of one call.

use std::{
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Weak,
    task::{Context, Poll},
};

use crudp_runtime::{CallError, TransportError};
use serde::de::DeserializeOwned;

use crate::{
    core::Input,
    queue::{
        Reply,
        reply::{ReplyReceiver, slot},
    },
    shared::Shared,
};

/// The result of a call, once the server has answered it.
///
/// The call is queued when the method is called, not when this future is first polled, and
/// dropping the future does not cancel it: the call is still sent, within the client's batch
/// window. The first poll tells the client that the calling task is done making calls for
/// now, so the calls it made leave together; while a future is alive and unpolled, the
/// client waits a little longer (100 ms at most) before it sends without it.
#[must_use = "the call is sent either way; await the future to get its result"]
pub struct CallFuture<T, E> {
    reply: ReplyReceiver,
    /// Released on the first poll.
    release: Option<Weak<Shared>>,
    _result: PhantomData<fn() -> Result<T, E>>,
}

impl<T, E> CallFuture<T, E> {
    pub(crate) fn new(reply: ReplyReceiver, release: Option<Weak<Shared>>) -> Self {
        Self {
            reply,
            release,
            _result: PhantomData,
        }
    }

    /// A call answered before it was queued (the client stopped, say).
    pub(crate) fn answered(reply: Reply) -> Self {
        let (sender, receiver) = slot();
        // Nothing polled the future yet: nobody to wake.
        let _ = sender.fill(reply);
        Self::new(receiver, None)
    }

    fn release(&mut self) {
        if let Some(shared) = self.release.take().and_then(|s| s.upgrade()) {
            shared.post(Input::Release(1));
        }
    }
}

impl<T, E> Drop for CallFuture<T, E> {
    fn drop(&mut self) {
        // Never polled: its task is done with it, and the call leaves within the window.
        if let Some(shared) = self.release.take().and_then(|s| s.upgrade()) {
            shared.post(Input::Dropped(1));
        }
    }
}

// Nothing in it is pinned.
impl<T, E> Unpin for CallFuture<T, E> {}

impl<T, E> std::fmt::Debug for CallFuture<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallFuture").finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned, E: DeserializeOwned> Future for CallFuture<T, E> {
    type Output = Result<T, CallError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.release();
        self.reply.poll(cx).map(|reply| match reply {
            Some(Ok(outcome)) => outcome.decode(),
            Some(Err(error)) => Err(CallError::Transport(error)),
            None => Err(CallError::Transport(TransportError::Closed)),
        })
    }
}
