//! Zero, one and several arguments travel as a tuple.

use crudp::{Action, Context, Outcome, User, server::Dispatch};

#[crudp::module]
pub trait Maths {
    async fn read(&self, ctx: &Context) -> Result<u8, ()>;
    async fn create(&self, ctx: &Context, a: i64, b: i64, label: String) -> Result<String, ()>;
    async fn update(&self, ctx: &Context, _: Vec<u8>) -> Result<usize, ()>;
}

struct Calc;

impl Maths for Calc {
    async fn read(&self, _: &Context) -> Result<u8, ()> {
        Ok(0)
    }
    async fn create(&self, _: &Context, a: i64, b: i64, label: String) -> Result<String, ()> {
        Ok(format!("{label}={}", a + b))
    }
    async fn update(&self, _: &Context, bytes: Vec<u8>) -> Result<usize, ()> {
        Ok(bytes.len())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let server = MathsServer::new(Calc);
    let ctx = Context::local(User::anonymous(), crudp::ClientId(1));
    let args = postcard::to_stdvec(&(2i64, 40i64, "sum".to_owned())).unwrap();
    let sum = server.dispatch(&ctx, Action::Create, &args).await;
    assert_eq!(sum, Outcome::Ok(postcard::to_stdvec("sum=42").unwrap().into()));
    let args = postcard::to_stdvec(&(vec![1u8, 2, 3],)).unwrap();
    let len = server.dispatch(&ctx, Action::Update, &args).await;
    assert_eq!(len, Outcome::Ok(postcard::to_stdvec(&3usize).unwrap().into()));
    assert_eq!(server.dispatch(&ctx, Action::Read, &[]).await, Outcome::Ok(vec![0].into()));
}
