//! The seam between the server and the generated module servers.

use std::{future::Future, pin::Pin};

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    context::Context,
    error::CallError,
    module::ModuleDescriptor,
    protocol::{Action, Outcome, RejectCode},
};

/// A boxed future that can move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs the calls of one module. `#[crudp::module]` implements it for `{Trait}Server<S>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a CRUDP module server",
    label = "expected a generated `{{Trait}}Server`",
    note = "wrap the implementation in the server that `#[crudp::module]` generates, e.g. `TodosServer::new(store)`"
)]
pub trait Dispatch: Send + Sync + 'static {
    /// The module this server runs.
    fn descriptor(&self) -> &'static ModuleDescriptor;

    /// Runs `action` with the postcard-encoded argument tuple `args`.
    ///
    /// Undecodable arguments and actions the module does not have are
    /// [rejected](Outcome::Rejected); the handler's `Ok` and `Err` become [`Outcome::Ok`] and
    /// [`Outcome::AppError`].
    fn dispatch<'a>(
        &'a self,
        ctx: &'a Context,
        action: Action,
        args: &'a [u8],
    ) -> BoxFuture<'a, Outcome>;

    /// Traces the shapes of the module's actions, for `GET /modules` (see
    /// [`describe`](crate::describe)). The generated servers do; the default traces nothing.
    fn describe(&self, shapes: &mut crate::describe::Shapes<'_>) {
        let _ = shapes;
    }
}

impl<D: Dispatch + ?Sized> Dispatch for Box<D> {
    fn descriptor(&self) -> &'static ModuleDescriptor {
        (**self).descriptor()
    }

    fn dispatch<'a>(
        &'a self,
        ctx: &'a Context,
        action: Action,
        args: &'a [u8],
    ) -> BoxFuture<'a, Outcome> {
        (**self).dispatch(ctx, action, args)
    }

    fn describe(&self, shapes: &mut crate::describe::Shapes<'_>) {
        (**self).describe(shapes);
    }
}

/// Decodes an action's argument tuple; a rejection naming the method if it does not decode,
/// or if it nests deeper than [`MAX_DEPTH`](crate::MAX_DEPTH) levels.
pub fn decode_args<A: DeserializeOwned>(
    args: &[u8],
    module: &ModuleDescriptor,
    action: Action,
) -> Result<A, Outcome> {
    let reject = |reason: String| Outcome::Rejected {
        code: RejectCode::BadArguments,
        message: format!(
            "the arguments of `{}::{action}` do not decode: {reason}",
            module.name
        ),
    };
    // Bounded nesting: a hostile client's deeply nested value of a recursive type would
    // otherwise overflow the stack, which aborts the whole server.
    match crate::depth::take_from_bytes(args) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(reject(format!("{} unexpected trailing bytes", rest.len()))),
        Err(reason) => Err(reject(reason)),
    }
}

/// A postcard error, explained; `WontImplement` comes from serde features that need a
/// self-describing format.
pub(crate) fn describe(error: postcard::Error) -> String {
    match error {
        postcard::Error::WontImplement => "the type uses a serde feature postcard cannot encode \
            (`#[serde(untagged)]`, `#[serde(flatten)]`, or a self-describing value such as \
            `serde_json::Value`); use plain structs and enums on the wire"
            .to_owned(),
        other => other.to_string(),
    }
}

/// Encodes `value` with postcard into a buffer of exactly its size, measured first: one
/// allocation, where encoding into an empty `Vec` reallocates as it grows, and a buffer with
/// room to spare would cost [`Bytes`](crate::protocol::Bytes) another to share it.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    let size = postcard::experimental::serialized_size(value)?;
    postcard::to_extend(value, Vec::with_capacity(size))
}

/// Encodes a handler's result as an [`Outcome`].
pub fn encode_result<T: Serialize, E: Serialize>(result: Result<T, E>) -> Outcome {
    let encoded = match &result {
        Ok(value) => encode(value).map(|v| Outcome::Ok(v.into())),
        Err(error) => encode(error).map(|e| Outcome::AppError(e.into())),
    };
    encoded.unwrap_or_else(|e| Outcome::Rejected {
        code: RejectCode::Internal,
        message: format!("the handler's result does not encode: {e}"),
    })
}

/// The rejection for an action the module does not have.
pub fn unknown_action(module: &ModuleDescriptor, action: Action) -> Outcome {
    Outcome::Rejected {
        code: RejectCode::UnknownAction,
        message: format!("module {module} has no `{action}` action"),
    }
}

impl Outcome {
    /// Decodes the outcome of a call whose method returns `Result<T, E>`.
    pub fn decode<T: DeserializeOwned, E: DeserializeOwned>(self) -> Result<T, CallError<E>> {
        fn value<V: DeserializeOwned, E>(bytes: &[u8]) -> Result<V, CallError<E>> {
            match postcard::take_from_bytes(bytes) {
                Ok((value, [])) => Ok(value),
                Ok((_, rest)) => Err(CallError::Decode(format!(
                    "{} unexpected trailing bytes",
                    rest.len()
                ))),
                Err(e) => Err(CallError::Decode(describe(e))),
            }
        }
        match self {
            Outcome::Ok(bytes) => value(&bytes),
            Outcome::AppError(bytes) => Err(CallError::App(value(&bytes)?)),
            Outcome::Rejected { code, message } => Err(CallError::Rejected { code, message }),
            Outcome::Unavailable { message } => Err(CallError::Unavailable { message }),
            Outcome::Expired => Err(CallError::Expired),
        }
    }
}
