//! Raw identifiers, doc comments and `#[cfg]` on the trait are carried through.

use crudp::{Context, Module};

mod inner {
    use crudp::Context;

    /// Documented.
    #[cfg(not(any()))]
    #[crudp::module]
    pub trait r#Match {
        /// Reads.
        async fn r#read(&self, r#ctx: &Context, r#type: String) -> Result<String, ()>;
    }
}

use inner::{MatchClient, MatchServer};

struct Echo;

impl inner::Match for Echo {
    async fn read(&self, _: &Context, r#type: String) -> Result<String, ()> {
        Ok(r#type)
    }
}

fn main() {
    assert_eq!(MatchClient::DESCRIPTOR.name, "Match");
    assert_eq!(MatchClient::DESCRIPTOR.id, crudp::module_id("Match"));
    assert!(MatchClient::DESCRIPTOR.path.ends_with("inner"));
    let _ = MatchServer::new(Echo);
}
