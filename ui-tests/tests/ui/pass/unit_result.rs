//! `Result<(), E>` and `Result<T, ()>`.

use crudp::{Action, Context, Outcome, User, server::Dispatch};

#[crudp::module]
pub trait Bin {
    async fn delete(&self, ctx: &Context, id: u64) -> Result<(), String>;
}

struct Empty;

impl Bin for Empty {
    async fn delete(&self, _: &Context, id: u64) -> Result<(), String> {
        if id == 0 { Err("zero".into()) } else { Ok(()) }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let server = BinServer::new(Empty);
    let ctx = Context::local(User::anonymous(), crudp::ClientId(1));
    let ok = server.dispatch(&ctx, Action::Delete, &postcard::to_stdvec(&(5u64,)).unwrap()).await;
    assert_eq!(ok, Outcome::Ok(vec![].into()));
    let err = server.dispatch(&ctx, Action::Delete, &postcard::to_stdvec(&(0u64,)).unwrap()).await;
    assert_eq!(err, Outcome::AppError(postcard::to_stdvec("zero").unwrap().into()));
}
