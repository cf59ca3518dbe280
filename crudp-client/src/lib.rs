//! The CRUDP client: a queue of typed calls, sent in batches over a [`Transport`], with
//! results and broadcasts coming back over Server-Sent Events.
//!
//! Applications use it through the `crudp` crate: make one [`Client`] per server, then one
//! generated `{Trait}Client` stub per module on top of it.

mod backoff;
#[cfg(target_arch = "wasm32")]
mod browser;
mod call;
mod client;
mod core;
mod driver;
mod events;
mod headers;
mod inbox;
#[cfg(target_arch = "wasm32")]
mod leases;
mod listeners;
mod live;
mod queue;
mod rt;
mod shared;
mod status;
#[cfg(target_arch = "wasm32")]
mod tabs;
pub mod transport;
mod upload;

pub use call::CallFuture;
pub use client::{
    Client, ClientBuilder, DEFAULT_BATCH_WINDOW, DEFAULT_MAX_BATCH_PACKETS, Listener, Mode,
};
pub use headers::InvalidHeader;
pub use live::{Hear, LiveRead, Read};
#[cfg(target_arch = "wasm32")]
pub use queue::storage::LocalStorage;
pub use queue::storage::{MemoryStorage, Storage};
pub use status::{Connection, Status};
pub use transport::{MaybeSendSync, Transport, TransportError};
pub use upload::{Upload, UploadError, UploadProgress, UploadSource};
