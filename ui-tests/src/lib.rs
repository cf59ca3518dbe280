//! A sample of what `#[crudp::module]` generates, compiled under strict lints so that the
//! generated items stay documented and clean: `cargo clippy -p ui-tests -- -D warnings`.

#![deny(missing_docs, unused_qualifications, unreachable_pub, rust_2018_idioms)]
#![deny(clippy::all, clippy::pedantic)]
#![allow(clippy::missing_errors_doc)]

// Names the generated code also uses, in scope to catch needlessly qualified paths.
#[allow(unused_imports)]
use std::{boxed::Box, future::Future, marker::Send, result::Result};

use crudp::Context;
use serde::{Deserialize, Serialize};

/// A note.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Its ID.
    pub id: u64,
    /// Its text.
    pub text: String,
}

/// Why a note call failed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum NoteError {
    /// No such note.
    NotFound,
}

/// Notes: the four actions, with zero, one and several arguments.
#[crudp::module]
pub trait Notes {
    /// Makes a note.
    async fn create(&self, ctx: &Context, text: String, pinned: bool) -> Result<Note, NoteError>;
    /// Every note.
    async fn read(&self, ctx: &Context) -> Result<Vec<Note>, NoteError>;
    /// Changes a note.
    async fn update(&self, ctx: &Context, note: Note) -> Result<Note, NoteError>;
    /// Removes a note.
    async fn delete(&self, ctx: &Context, id: u64) -> Result<(), NoteError>;
}

/// A read-only module with a pinned ID, private to the crate.
#[crudp::module(id = 12)]
trait Clock {
    /// The time, in seconds.
    async fn read(&self, ctx: &Context) -> Result<u64, ()>;
}

/// The clock's implementation.
struct Fixed;

impl Clock for Fixed {
    async fn read(&self, _: &Context) -> Result<u64, ()> {
        Ok(1_700_000_000)
    }
}

/// Mounts the crate's private module, so that its generated items are used.
#[must_use]
pub fn clock() -> impl crudp::server::Dispatch {
    ClockServer::new(Fixed)
}

/// A clock client, so that the private client is used.
pub fn clock_client(
    client: &crudp::Client,
) -> impl Future<Output = Result<u64, crudp::CallError<()>>> {
    ClockClient::new(client).read()
}
