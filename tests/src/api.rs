//! The API the end-to-end tests use, on both sides: native servers and clients, and the browser.

use crudp::Context;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Todo {
    pub id: u64,
    pub title: String,
    pub done: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum TodoError {
    NotFound,
    Invalid(String),
}

/// The full CRUD module.
#[crudp::module]
pub trait Todos {
    async fn create(&self, ctx: &Context, title: String) -> Result<Todo, TodoError>;
    async fn read(&self, ctx: &Context, id: u64) -> Result<Todo, TodoError>;
    async fn update(&self, ctx: &Context, todo: Todo) -> Result<Todo, TodoError>;
    async fn delete(&self, ctx: &Context, id: u64) -> Result<(), TodoError>;
}

/// A read-only module.
#[crudp::module(id = 7)]
pub trait Catalog {
    async fn read(&self, ctx: &Context, sku: String) -> Result<u32, String>;
}

/// A module whose delete panics.
#[crudp::module]
pub trait Fragile {
    async fn create(&self, ctx: &Context) -> Result<u8, ()>;
    async fn delete(&self, ctx: &Context, why: String) -> Result<(), ()>;
}

/// What a handler read of a file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Received {
    pub name: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

// ANCHOR: attachments
/// A module that reads the files it is given.
#[crudp::module]
pub trait Attachments {
    /// Opens `file` through the context and says what arrived.
    async fn create(&self, ctx: &Context, file: crudp::files::FileRef) -> Result<Received, String>;
}
// ANCHOR_END: attachments

/// A recursive argument type: a filter of filters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Filter {
    Eq(String),
    Not(Box<Filter>),
}

/// A module whose argument may nest.
#[crudp::module]
pub trait Search {
    /// How deep `filter` nests.
    async fn read(&self, ctx: &Context, filter: Filter) -> Result<u32, ()>;
}

/// A module no test server mounts.
#[crudp::module]
pub trait Unmounted {
    async fn create(&self, ctx: &Context, x: u8) -> Result<u8, ()>;
}
