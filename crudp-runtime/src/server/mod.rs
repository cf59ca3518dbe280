//! The axum server: the [`Crudp`] builder, authentication and the HTTP router.

mod auth;
mod execute;
mod router;

use std::{collections::HashMap, sync::Arc};

pub use auth::{Anonymous, AuthError, Authenticator};

use crate::{dispatch::Dispatch, module::ModuleDescriptor};

/// Default for [`CrudpBuilder::max_body_bytes`]: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;
/// Default for [`CrudpBuilder::max_packets`]: 4,096 packets per batch.
pub const DEFAULT_MAX_PACKETS: usize = 4096;

/// A CRUDP server: its modules, its authenticator and its limits.
///
/// ```no_run
/// # async fn doc(todos: impl crudp_runtime::Dispatch) -> std::io::Result<()> {
/// use crudp_runtime::server::Crudp;
///
/// let api = Crudp::builder().handler(todos).build();
/// let app = axum::Router::new().nest("/crudp", api.router());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
///
/// Cloning is cheap: clones share the modules.
#[derive(Clone)]
pub struct Crudp {
    shared: Arc<Shared>,
}

struct Shared {
    modules: HashMap<u32, Box<dyn Dispatch>>,
    authenticator: Box<dyn Authenticator>,
    limits: Limits,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_body_bytes: usize,
    max_packets: usize,
}

impl Crudp {
    /// Starts building a server.
    pub fn builder() -> CrudpBuilder {
        CrudpBuilder {
            modules: Vec::new(),
            authenticator: Box::new(Anonymous),
            limits: Limits {
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                max_packets: DEFAULT_MAX_PACKETS,
            },
        }
    }

    /// The descriptors of the mounted modules, in no particular order.
    pub fn modules(&self) -> impl Iterator<Item = &'static ModuleDescriptor> + '_ {
        self.shared.modules.values().map(|m| m.descriptor())
    }
}

impl std::fmt::Debug for Crudp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crudp")
            .field("modules", &self.modules().collect::<Vec<_>>())
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Crudp`] server; made by [`Crudp::builder`].
#[must_use]
pub struct CrudpBuilder {
    modules: Vec<Box<dyn Dispatch>>,
    authenticator: Box<dyn Authenticator>,
    limits: Limits,
}

impl CrudpBuilder {
    /// Mounts a module: the `{Trait}Server` that `#[crudp::module]` generates.
    pub fn handler(mut self, module: impl Dispatch) -> Self {
        self.modules.push(Box::new(module));
        self
    }

    /// Sets how requests are authenticated. The default, [`Anonymous`], lets everyone in as
    /// [`User::anonymous`](crate::User::anonymous).
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Box::new(authenticator);
        self
    }

    /// The largest request body accepted; larger ones get `413 Payload Too Large`.
    /// Default: [`DEFAULT_MAX_BODY_BYTES`].
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_body_bytes = bytes;
        self
    }

    /// The most packets one batch may hold; larger batches get `400 Bad Request`.
    /// Default: [`DEFAULT_MAX_PACKETS`].
    pub fn max_packets(mut self, packets: usize) -> Self {
        self.limits.max_packets = packets;
        self
    }

    /// Builds the server, or says which two modules share a wire ID.
    pub fn try_build(self) -> Result<Crudp, BuildError> {
        let mut modules: HashMap<u32, Box<dyn Dispatch>> = HashMap::new();
        for module in self.modules {
            let descriptor = module.descriptor();
            if let Some(first) = modules.get(&descriptor.id) {
                return Err(BuildError::DuplicateId {
                    first: *first.descriptor(),
                    second: *descriptor,
                });
            }
            modules.insert(descriptor.id, module);
        }
        Ok(Crudp {
            shared: Arc::new(Shared {
                modules,
                authenticator: self.authenticator,
                limits: self.limits,
            }),
        })
    }

    /// Builds the server.
    ///
    /// # Panics
    ///
    /// If two mounted modules share a wire ID; the message names both. Use
    /// [`try_build`](Self::try_build) to handle that as an error.
    #[track_caller]
    pub fn build(self) -> Crudp {
        self.try_build().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Why a [`Crudp`] server could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Two modules have the same wire ID.
    #[error(
        "modules {first} and {second} have the same wire ID {id}: pin another ID on one of them with `#[crudp::module(id = N)]`",
        id = first.id
    )]
    DuplicateId {
        /// The module mounted first.
        first: ModuleDescriptor,
        /// The module mounted second.
        second: ModuleDescriptor,
    },
}
