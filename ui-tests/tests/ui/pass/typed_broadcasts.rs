//! Typed broadcasts from server code: the value for an action that returns one, the arguments
//! for one that returns `()` (which its listeners hear too); the application's parameter names
//! never clash with the generated ones.

use crudp::{Client, Context, Target, server::Crudp};

#[crudp::module]
pub trait Shelf {
    async fn create(&self, ctx: &Context, title: String) -> Result<u32, ()>;
    async fn delete(&self, ctx: &Context, api: u32, target: String) -> Result<(), ()>;
    async fn update(&self, ctx: &Context) -> Result<(), ()>;
}

async fn publish(api: &Crudp) -> Result<(), crudp::server::HubError> {
    ShelfServer::broadcast_create(api, &7, Target::All).await?;
    ShelfServer::broadcast_delete(api, &1, &"x".to_owned(), Target::All).await?;
    ShelfServer::broadcast_update(api, Target::All).await
}

fn listen(client: &Client) -> Vec<crudp::Listener> {
    let shelf = ShelfClient::new(client);
    vec![
        shelf.on_create(|id: u32| drop(id)),
        shelf.on_delete(|(api, target): (u32, String)| drop((api, target))),
        shelf.on_update(|(): ()| ()),
    ]
}

fn main() {
    let _ = (publish, listen);
}
