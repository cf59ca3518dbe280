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
    /// The call could not be delivered, or the server refused the whole request.
    #[error("the call could not be delivered: {0}")]
    Transport(String),
    /// The server's answer does not decode as the method's result type: usually the client
    /// and the server were built from different versions of the API; the message says.
    #[error("the server's answer does not decode: {0}")]
    Decode(String),
}
