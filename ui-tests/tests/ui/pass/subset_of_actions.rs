//! Any non-empty subset of the actions; a call to one the module lacks is rejected.

use crudp::{Action, Context, Module, Outcome, RejectCode, User, server::Dispatch};

#[crudp::module]
pub trait Counter {
    async fn read(&self, ctx: &Context) -> Result<u32, ()>;
    async fn delete(&self, ctx: &Context) -> Result<(), ()>;
}

struct Three;

impl Counter for Three {
    async fn read(&self, _: &Context) -> Result<u32, ()> {
        Ok(3)
    }
    async fn delete(&self, _: &Context) -> Result<(), ()> {
        Err(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(CounterClient::DESCRIPTOR.actions, &[Action::Read, Action::Delete]);
    let server = CounterServer::new(Three);
    let ctx = Context::local(User::anonymous(), crudp::ClientId(1));
    let read = server.dispatch(&ctx, Action::Read, &[]).await;
    assert_eq!(read, Outcome::Ok(postcard::to_stdvec(&3u32).unwrap().into()));
    assert_eq!(server.dispatch(&ctx, Action::Delete, &[]).await, Outcome::AppError(vec![].into()));
    match server.dispatch(&ctx, Action::Create, &[]).await {
        Outcome::Rejected { code: RejectCode::UnknownAction, .. } => {}
        other => panic!("{other:?}"),
    }
}
