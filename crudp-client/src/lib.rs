//! The CRUDP client: a queue of typed calls, sent in batches over a [`Transport`].
//!
//! Applications use it through the `crudp` crate: make one [`Client`] per server, then one
//! generated `{Trait}Client` stub per module on top of it.

mod call;
mod client;
mod rt;
pub mod transport;

pub use call::CallFuture;
pub use client::{Client, DEFAULT_MAX_BATCH_PACKETS};
pub use transport::{Transport, TransportError};
