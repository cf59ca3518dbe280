//! The shared parts of CRUDP's end-to-end tests: the test API (for native and browser clients)
//! and, natively, the harness that runs real servers.

// Test fixtures: their names say what they are.
#![allow(missing_docs)]

pub mod alloc;
pub mod api;
#[cfg(not(target_arch = "wasm32"))]
pub mod harness;

pub use api::*;
#[cfg(not(target_arch = "wasm32"))]
pub use harness::*;
