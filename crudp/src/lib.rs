//! # CRUDP: typed CRUD APIs that keep working offline
//!
//! One trait, annotated with [`#[crudp::module]`](module), is the single definition of an API
//! module. From it come a stable wire ID, the server's dispatch glue and a typed client stub,
//! so a server and its clients (native or browser) can never disagree about the API.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
//! pub struct Todo { pub id: u64, pub title: String, pub done: bool }
//!
//! #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
//! pub enum TodoError { NotFound, Invalid(String) }
//!
//! #[crudp::module]
//! pub trait Todos {
//!     async fn create(&self, ctx: &crudp::Context, title: String) -> Result<Todo, TodoError>;
//!     async fn read(&self, ctx: &crudp::Context, id: u64) -> Result<Todo, TodoError>;
//! }
//! ```
//!
//! generates, next to the trait (whose methods now return `Send` futures):
//!
//! - `TodosServer<S: Todos>`: mount `TodosServer::new(store)` with
//!   `crudp::server::Crudp::builder().handler(..)` (feature `server`);
//! - `TodosClient`: `TodosClient::new(&client).create("milk".into()).await` gives a
//!   `Result<Todo, crudp::CallError<TodoError>>`;
//! - the module's [`ModuleDescriptor`], through [`Module`] on both: its wire ID and actions.
//!
//! ## The rules of a module trait
//!
//! - its methods are a non-empty subset of `create`, `read`, `update` and `delete`;
//! - each is an `async fn` taking `&self`, then `&crudp::Context`, then zero or more serde
//!   arguments (sent as a tuple), and returns `Result<T, E>` with serde types `T` and `E`;
//! - the wire ID is `#[crudp::module(id = N)]`, or else [`module_id`] of the trait's name.
//!
//! Every other shape is a compile error that points at the mistake and says how to fix it.

/// Turns a trait of CRUD methods into a CRUDP module: the trait, `{Trait}Server<S>`,
/// `{Trait}Client` and the module's descriptor.
///
/// Arguments: `id = N` pins the module's `u32` wire ID (default: [`module_id`] of the trait's
/// name); `crate = "path"` names the `crudp` crate when it is renamed.
///
/// ```
/// #[crudp::module(id = 7)]
/// pub trait Notes {
///     /// Stores a note; its ID.
///     async fn create(&self, ctx: &crudp::Context, text: String) -> Result<u64, String>;
///     /// Removes a note (listeners of `on_delete` hear its ID).
///     async fn delete(&self, ctx: &crudp::Context, id: u64) -> Result<(), String>;
/// }
///
/// use crudp::Module;
/// assert_eq!(NotesClient::DESCRIPTOR.id, 7);
/// // `NotesServer::new(implementation)` serves it; `NotesClient::new(&client)` calls it.
/// ```
pub use crudp_macros::module;

#[cfg(target_arch = "wasm32")]
pub use crudp_client::LocalStorage;
pub use crudp_client::{
    CallFuture, Client, ClientBuilder, Connection, Hear, InvalidHeader, Listener, LiveRead,
    MaybeSendSync, MemoryStorage, Mode, Read, Status, Storage, Transport, TransportError, Upload,
    UploadError, UploadProgress, UploadSource, transport,
};
pub use crudp_runtime::{
    Action, Broadcaster, CallError, ClientId, Context, MAX_DEPTH, Module, ModuleDescriptor,
    Outcome, RejectCode, RequestId, RetryLater, Target, User, describe, files, module_id, protocol,
};

/// The server: [`Crudp`](server::Crudp), its builder and authentication.
#[cfg(feature = "server")]
pub mod server {
    pub use crudp_runtime::server::*;
    pub use crudp_runtime::{BoxFuture, Dispatch};
}

/// What generated code refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use std::boxed::Box;

    pub use crudp_client::{CallFuture, Client, Listener, MaybeSendSync};
    pub use crudp_runtime::{
        Action, BoxFuture, Broadcaster, Context, Dispatch, Module, ModuleDescriptor, Outcome,
        Target, decode_args,
        describe::{Shapes, TraceNothing, TraceWire, Traced},
        encode_result, module_id, unknown_action,
    };

    /// Fails to compile, on the user's type, unless it can cross the wire.
    pub const fn assert_wire_type<T: serde::Serialize + serde::de::DeserializeOwned>() {}

    /// Fails to compile, on the user's type, unless it is `crudp::Context`.
    pub const fn assert_context<T: IsContext + ?Sized>() {}

    #[diagnostic::on_unimplemented(
        message = "the first parameter after `&self` must be `&crudp::Context`, not `&{Self}`",
        label = "not `crudp::Context`",
        note = "write `ctx: &crudp::Context`"
    )]
    pub trait IsContext {}

    impl IsContext for Context {}
}
