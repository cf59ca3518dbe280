//! `crate = "..."` for crates that reach `crudp` under another path.

mod reexport {
    pub use crudp as api_framework;
}

#[crudp::module(crate = "reexport::api_framework")]
pub trait Pings {
    async fn read(&self, ctx: &crudp::Context) -> Result<(), ()>;
}

fn main() {
    use crudp::Module;
    assert_eq!(PingsClient::DESCRIPTOR.name, "Pings");
}
