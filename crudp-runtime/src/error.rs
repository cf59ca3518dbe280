//! The error a client sees for one call.

use crate::protocol::RejectCode;

/// Why a call did not return a value.
///
/// [`CallError::App`] is the handler's own typed error; every other variant is about the
/// call's delivery: refused by the server, not executed, executed but forgotten, or not
/// delivered at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError<E> {
    /// The handler ran and returned its own error.
    #[error("the handler returned an error: {0:?}")]
    App(E),
    /// The server refused the call for good; sending it again gives the same answer.
    #[error("the server rejected the call ({code}): {message}")]
    Rejected {
        /// Why, for programs.
        code: RejectCode,
        /// Why, for people.
        message: String,
    },
    /// The server could not execute the call now; it is safe to make it again.
    #[error("the server could not execute the call: {message}")]
    Unavailable {
        /// Why, for people.
        message: String,
    },
    /// The call was executed earlier and its result is no longer kept.
    #[error("the call was executed earlier and its result is no longer kept")]
    Expired,
    /// The call could not be delivered, or the server refused the whole request; the error
    /// says with which status and whether trying again may help.
    #[error("the call could not be delivered: {0}")]
    Transport(TransportError),
    /// The server's answer does not decode as the method's result type: usually the client
    /// and the server were built from different versions of the API; the message says.
    #[error("the server's answer does not decode: {0}")]
    Decode(String),
}

/// Why a request did not get a usable `2xx` answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No answer: the network or the server is down.
    #[error("the server could not be reached: {0}")]
    Unreachable(String),
    /// The event stream is down and the platform is reconnecting it by itself (the browser's
    /// `EventSource`); the stream goes on.
    #[error("the event stream is reconnecting")]
    Reconnecting,
    /// The server answered with an error status.
    #[error("the server answered {status}: {message}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The answer's body, which says why.
        message: String,
    },
    /// The server answered `2xx`, but its body does not decode: usually the client and the
    /// server speak different versions of the protocol.
    #[error("the server's answer does not decode: {0}")]
    Malformed(String),
    /// The client was dropped before the call was answered.
    #[error("the client was dropped before the call was answered")]
    Closed,
    /// The client signed out (`Client::sign_out`) before the call was answered; the call was
    /// dropped with the rest of the user's saved state.
    #[error("the client signed out; the call was dropped")]
    SignedOut,
    /// The runtime that ran the client shut down while the client was still in use. A client
    /// belongs to the runtime of its first call: make a new one on the runtime that runs now.
    #[error(
        "the runtime that ran this client shut down; make a new client on the one that runs now"
    )]
    RuntimeGone,
    /// Another page of the browser took this client's ID over while this page was away (in
    /// the back/forward cache, or asleep past its lease), with the calls it had saved; this
    /// page's client sends nothing more. A call failed with this may still run: the other
    /// page sends it, and its listeners hear the result. Reload the page to go on with a
    /// client of its own.
    #[error("another page took this client over; reload the page to go on")]
    TakenOver,
}

impl TransportError {
    /// Whether sending the same request later may succeed: no answer, `408`, `429` or `5xx`.
    pub fn is_retryable(&self) -> bool {
        match self {
            TransportError::Unreachable(_) | TransportError::Reconnecting => true,
            TransportError::Status { status, .. } => matches!(status, 408 | 429 | 500..),
            TransportError::Malformed(_)
            | TransportError::Closed
            | TransportError::SignedOut
            | TransportError::RuntimeGone
            | TransportError::TakenOver => false,
        }
    }

    /// The HTTP status, if the server answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            TransportError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}
