//! Module descriptors and their stable wire IDs, and the seam through which server code
//! publishes a module's broadcasts.

use std::future::Future;

use serde::Serialize;

use crate::{Target, protocol::Action};

/// What both sides know about a module: its wire ID and the actions it has.
///
/// `#[crudp::module]` generates one per trait and exposes it through [`Module`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleDescriptor {
    /// The module's wire ID: the trait's `#[crudp::module(id = N)]`, or [`module_id`] of its name.
    pub id: u32,
    /// The trait's name.
    pub name: &'static str,
    /// The Rust module path the trait is defined in.
    pub path: &'static str,
    /// The actions the trait declares, in wire order.
    pub actions: &'static [Action],
}

impl ModuleDescriptor {
    /// Whether the module declares `action`.
    pub fn has(&self, action: Action) -> bool {
        self.actions.contains(&action)
    }
}

impl std::fmt::Display for ModuleDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}::{}` (ID {})", self.path, self.name, self.id)
    }
}

/// A type generated for a CRUDP module: its server or its client.
pub trait Module {
    /// The module's descriptor.
    const DESCRIPTOR: ModuleDescriptor;

    /// Traces the shapes of the module's actions (see [`describe`](crate::describe));
    /// generated.
    fn describe(shapes: &mut crate::describe::Shapes<'_>) {
        let _ = shapes;
    }
}

/// Publishes an action's result to clients from server code, outside handlers: what the
/// generated `{Trait}Server::broadcast_<action>` functions call, so that the value's type is
/// checked against the action. Implemented by the server, `crudp::server::Crudp`.
///
/// For an action that returns nothing (`()`), what is published is the call's arguments:
/// that is what its clients' `on_<action>` listeners receive.
pub trait Broadcaster {
    /// Why a broadcast could not be published.
    type Error;

    /// Publishes `payload` (the action's `Ok` value, or the arguments of an action that returns
    /// `()`) as a result of `action` of `module`, to `target`.
    fn broadcast<T: Serialize + ?Sized + Sync>(
        &self,
        module: &ModuleDescriptor,
        action: Action,
        payload: &T,
        target: Target,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The default wire ID of a module: the 32-bit FNV-1a hash of its trait's name.
///
/// It depends on nothing but the name, so it is the same on every target and in every build.
/// Two modules whose IDs collide are refused when the server is built; pin one with
/// `#[crudp::module(id = N)]`.
pub const fn module_id(name: &str) -> u32 {
    let bytes = name.as_bytes();
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::module_id;

    #[test]
    fn ids_are_fnv1a_of_the_name() {
        assert_eq!(module_id(""), 0x811c_9dc5);
        assert_eq!(module_id("a"), 0xe40c_292c);
        assert_eq!(module_id("foobar"), 0xbf9c_f968);
        assert_ne!(module_id("Todos"), module_id("Users"));
    }
}
