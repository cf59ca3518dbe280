//! Both halves on one Redis server, mounted with one builder call.

use crudp_runtime::server::{Backend, BackendParts, MemoryHub, OutcomeLimits};
use redis::Client;

use crate::{RedisHub, RedisOutcomes};

/// Redis as the backend that several server instances share: the [`RedisHub`] and the
/// [`RedisOutcomes`] of one Redis server, for
/// [`CrudpBuilder::backend`](crudp_runtime::server::CrudpBuilder::backend).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use crudp_runtime::server::Crudp;
/// use crudp_redis::RedisBackend;
///
/// let secret = std::env::var("CRUDP_TOKEN_SECRET")?; // the same 32+ bytes on every instance
/// let api = Crudp::builder()
///     .backend(RedisBackend::connect("redis://127.0.0.1:6379/").await?)
///     .token_secret(secret.as_bytes())
///     .build();
/// # Ok(()) }
/// ```
pub struct RedisBackend {
    hub: RedisHub,
    outcomes: RedisOutcomes,
}

/// The prefix of every key [`RedisBackend::connect`] uses.
pub const DEFAULT_PREFIX: &str = "crudp:";

impl RedisBackend {
    /// Connects to the Redis server at `url` (`redis://host:port/`), with keys under
    /// [`DEFAULT_PREFIX`], a default [`MemoryHub`] for this instance's connections and the
    /// default [`OutcomeLimits`].
    ///
    /// # Errors
    ///
    /// When the URL is invalid or Redis cannot be reached.
    pub async fn connect(url: &str) -> redis::RedisResult<Self> {
        let client = Client::open(url)?;
        let hub = RedisHub::new(&client, DEFAULT_PREFIX, MemoryHub::default()).await?;
        let outcomes =
            RedisOutcomes::new(&client, DEFAULT_PREFIX, OutcomeLimits::default()).await?;
        Ok(Self::new(hub, outcomes))
    }

    /// A backend of a hub and a store made with settings of their own.
    pub fn new(hub: RedisHub, outcomes: RedisOutcomes) -> Self {
        Self { hub, outcomes }
    }
}

impl Backend for RedisBackend {
    fn into_parts(self) -> BackendParts {
        BackendParts {
            hub: Box::new(self.hub),
            outcomes: Box::new(self.outcomes),
        }
    }
}
