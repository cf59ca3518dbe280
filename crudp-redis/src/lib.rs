//! Scale-out for CRUDP on Redis: several server instances that share a Redis server act as
//! one. [`RedisHub`] is the event hub on a Redis stream: an event published on any instance
//! reaches the connections of every instance, and `Last-Event-ID` resumes on any of them.
//! [`RedisOutcomes`] is the exactly-once state in Redis: a client's packets run once and in
//! order whichever instance they reach. [`RedisBackend`] mounts both with one call to
//! `CrudpBuilder::backend`.

mod backend;
mod hub;
mod outcomes;

pub use backend::{DEFAULT_PREFIX, RedisBackend};
pub use hub::{DEFAULT_REPLAY_LEN, RedisHub};
pub use outcomes::RedisOutcomes;
pub use redis;
