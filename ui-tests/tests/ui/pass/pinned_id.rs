//! `id = N` pins the wire ID; without it the ID is the hash of the trait's name.

use crudp::{Context, Module};

#[crudp::module(id = 4_000_000_000)]
pub trait Pinned {
    async fn read(&self, ctx: &Context) -> Result<(), ()>;
}

#[crudp::module]
pub trait Hashed {
    async fn read(&self, ctx: &Context) -> Result<(), ()>;
}

fn main() {
    assert_eq!(PinnedClient::DESCRIPTOR.id, 4_000_000_000);
    assert_eq!(<PinnedServer<()> as Module>::DESCRIPTOR.id, 4_000_000_000);
    assert_eq!(HashedClient::DESCRIPTOR.id, crudp::module_id("Hashed"));
    assert_eq!(HashedClient::DESCRIPTOR.name, "Hashed");
}
