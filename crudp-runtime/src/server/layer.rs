//! Per-call middleware: [`CallLayer`]s run around every call that reaches a mounted module's
//! action, in the order they were added, before the handler. A layer sees who calls what with
//! which argument bytes, and may refuse the call, time it or log it.

use std::sync::Arc;

use crate::{
    ClientId, ModuleDescriptor, User,
    dispatch::BoxFuture,
    protocol::{Action, Outcome, RejectCode},
};

/// One call, as a [`CallLayer`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Call<'a> {
    /// Who makes it.
    pub user: &'a User,
    /// The client that sent it.
    pub client: ClientId,
    /// The module called.
    pub module: &'static ModuleDescriptor,
    /// The action called.
    pub action: Action,
    /// The call's sequence number within its client.
    pub seq: u64,
    /// The postcard encoding of the arguments (decoded by the handler after the layers).
    pub args: &'a [u8],
}

/// A refusal by a layer: the call is answered `Rejected` with this code and message, for
/// good (the client does not send it again), and the handler does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Why, for programs.
    pub code: RejectCode,
    /// Why, for people.
    pub message: String,
}

impl Rejected {
    /// The user may not make this call.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            code: RejectCode::Forbidden,
            message: message.into(),
        }
    }
}

impl From<Rejected> for Outcome {
    fn from(rejected: Rejected) -> Self {
        Outcome::Rejected {
            code: rejected.code,
            message: rejected.message,
        }
    }
}

/// Middleware around each call: `Crudp::builder().layer(..)`.
///
/// `call` answers the call: `next.run().await` runs the layers after this one and then the
/// handler; returning without it refuses the call (`Rejected::forbidden(..).into()`), or asks
/// the client to send it again later (`Outcome::Unavailable`, as a rate limit does: nothing
/// is lost). A layer that panics or runs past the handler timeout fails its call as a handler
/// would.
///
/// ```
/// use crudp_runtime::{
///     Action, BoxFuture, Outcome,
///     server::{Call, CallLayer, Next, Rejected},
/// };
/// // Through the facade: `crudp::server::{BoxFuture, Call, CallLayer, Next, Rejected}`.
///
/// /// Only admins delete.
/// struct AdminsDelete;
///
/// impl CallLayer for AdminsDelete {
///     fn call<'a>(&'a self, call: Call<'a>, next: Next<'a>) -> BoxFuture<'a, Outcome> {
///         Box::pin(async move {
///             if call.action == Action::Delete && call.user.role != "admin" {
///                 return Rejected::forbidden("only admins delete").into();
///             }
///             next.run().await
///         })
///     }
/// }
/// ```
pub trait CallLayer: Send + Sync + 'static {
    /// Answers `call`, running `next` to go on to the handler.
    fn call<'a>(&'a self, call: Call<'a>, next: Next<'a>) -> BoxFuture<'a, Outcome>;
}

/// The rest of the chain: the layers after this one, then the handler.
pub struct Next<'a> {
    layers: &'a [Arc<dyn CallLayer>],
    call: Call<'a>,
    handler: Box<dyn FnOnce() -> BoxFuture<'a, Outcome> + Send + 'a>,
}

impl<'a> Next<'a> {
    pub(super) fn new(
        layers: &'a [Arc<dyn CallLayer>],
        call: Call<'a>,
        handler: impl FnOnce() -> BoxFuture<'a, Outcome> + Send + 'a,
    ) -> Self {
        Self {
            layers,
            call,
            handler: Box::new(handler),
        }
    }

    /// Runs the layers after this one, then the handler; the call's outcome.
    pub async fn run(self) -> Outcome {
        match self.layers.split_first() {
            Some((layer, rest)) => {
                let next = Next {
                    layers: rest,
                    call: self.call,
                    handler: self.handler,
                };
                layer.call(self.call, next).await
            }
            None => (self.handler)().await,
        }
    }
}

impl std::fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next")
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}
