//! Scale-out for CRUDP on Redis: several server instances that share a Redis server act as
//! one. [`RedisHub`] is the event hub on a Redis stream: an event published on any instance
//! reaches the connections of every instance, and `Last-Event-ID` resumes on any of them.

mod hub;

pub use hub::{DEFAULT_REPLAY_LEN, RedisHub};
pub use redis;
