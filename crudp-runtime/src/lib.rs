//! The CRUDP runtime: the wire protocol, the dispatch seam and, with the `server` feature,
//! the axum server.
//!
//! Applications use it through the `crudp` crate; this crate always compiles for
//! `wasm32-unknown-unknown` without `server`, so an API crate shared by a server and a browser
//! front end can depend on it.

#[cfg(feature = "server")]
mod auth;
mod context;
mod depth;
pub mod describe;
mod dispatch;
mod error;
pub mod files;
#[cfg(feature = "server")]
pub mod hub;
mod module;
#[cfg(feature = "server")]
pub mod outcomes;
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;

pub use context::{Context, Effects, RetryLater, Target, User};
pub use depth::MAX_DEPTH;
/// For the client: postcard into a buffer sized for a small value.
#[doc(hidden)]
pub use dispatch::encode;
pub use dispatch::{BoxFuture, Dispatch, decode_args, encode_result, unknown_action};
pub use error::{CallError, TransportError};
pub use module::{Broadcaster, Module, ModuleDescriptor, module_id};
pub use protocol::{
    Action, Batch, Broadcast, ClientId, EventKind, Outcome, Packet, PacketResult, RejectCode,
    RequestId, Results,
};
