//! The generated client's futures are `Send + 'static`, and so are the trait's.

use crudp::{CallError, Client, Context};

#[crudp::module]
pub trait Items {
    async fn create(&self, ctx: &Context, name: String) -> Result<u64, String>;
}

fn assert_send_static<T: Send + 'static>(_: &T) {}

fn assert_trait_future_is_send<S: Items>(items: &S, ctx: &Context) {
    let future = items.create(ctx, String::new());
    fn is_send<T: Send>(_: &T) {}
    is_send(&future);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let client = Client::new("http://127.0.0.1:9/crudp");
    let items = ItemsClient::new(&client);
    let call = items.create("x".into());
    assert_send_static(&call);
    let _: Result<u64, CallError<String>> = std::future::ready(Ok(1)).await;
    drop(call);
    let _ = assert_trait_future_is_send::<Store>;
}

struct Store;

impl Items for Store {
    async fn create(&self, _: &Context, _: String) -> Result<u64, String> {
        Ok(1)
    }
}
