//! Two modules side by side, mounted on one server.

use crudp::{Context, Module, server::Crudp};

#[crudp::module]
pub trait Users {
    async fn read(&self, ctx: &Context, id: u64) -> Result<String, ()>;
}

#[crudp::module]
pub trait Groups {
    async fn read(&self, ctx: &Context, id: u64) -> Result<String, ()>;
    async fn create(&self, ctx: &Context, name: String) -> Result<u64, ()>;
}

struct Directory;

impl Users for Directory {
    async fn read(&self, _: &Context, id: u64) -> Result<String, ()> {
        Ok(format!("user {id}"))
    }
}

impl Groups for Directory {
    async fn read(&self, _: &Context, id: u64) -> Result<String, ()> {
        Ok(format!("group {id}"))
    }
    async fn create(&self, _: &Context, _: String) -> Result<u64, ()> {
        Ok(1)
    }
}

fn main() {
    assert_ne!(UsersClient::DESCRIPTOR.id, GroupsClient::DESCRIPTOR.id);
    let api = Crudp::builder()
        .handler(UsersServer::new(Directory))
        .handler(GroupsServer::new(Directory))
        .build();
    assert_eq!(api.modules().count(), 2);
}
