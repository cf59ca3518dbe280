//! A typed broadcast's value must be the action's result type.

use crudp::{Context, Target, server::Crudp};

#[crudp::module]
pub trait Shelf {
    async fn create(&self, ctx: &Context, title: String) -> Result<u32, ()>;
}

async fn publish(api: &Crudp) {
    let _ = ShelfServer::broadcast_create(api, &"seven", Target::All).await;
}

fn main() {
    let _ = publish;
}
