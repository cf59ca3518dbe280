//! The future of one call.

use std::{
    future::Future,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll},
};

use crudp_runtime::{CallError, Outcome, TransportError};
use futures_channel::oneshot;
use serde::de::DeserializeOwned;

/// What the queue tells a waiting call: the server's outcome, or why there is none.
pub(crate) type Reply = Result<Outcome, TransportError>;

/// The result of a call, once the server has answered it.
///
/// The call is queued when the method is called, not when this future is first polled, and
/// dropping the future does not cancel it: the call is still sent.
#[must_use = "the call is sent either way; await the future to get its result"]
pub struct CallFuture<T, E> {
    reply: oneshot::Receiver<Reply>,
    _result: PhantomData<fn() -> Result<T, E>>,
}

impl<T, E> CallFuture<T, E> {
    pub(crate) fn new(reply: oneshot::Receiver<Reply>) -> Self {
        Self {
            reply,
            _result: PhantomData,
        }
    }
}

impl<T, E> std::fmt::Debug for CallFuture<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallFuture").finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned, E: DeserializeOwned> Future for CallFuture<T, E> {
    type Output = Result<T, CallError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.reply).poll(cx).map(|reply| match reply {
            Ok(Ok(outcome)) => outcome.decode(),
            Ok(Err(error)) => Err(CallError::Transport(error)),
            Err(oneshot::Canceled) => Err(CallError::Transport(TransportError::Closed)),
        })
    }
}
