//! A native client of the todo example: it creates, reads, updates and deletes todos.
//!
//! `cargo run -p example-client -- [URL]` (default `http://127.0.0.1:3000/crudp`).

use crudp::{CallError, Client, TransportError, transport::ReqwestTransport};
use example_api::{TodoError, TodosClient};

#[tokio::main]
async fn main() -> Result<(), CallError<TodoError>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:3000/crudp".into());
    // The example server signs users in with a cookie; a native client sends it itself.
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::COOKIE,
        "crudp_user=cli:admin".parse().expect("a valid header"),
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .map_err(|e| CallError::Transport(TransportError::Unreachable(e.to_string())))?;
    let client = Client::builder(&url)
        .transport(ReqwestTransport::with_client(http))
        .build();
    let todos = TodosClient::new(&client);
    println!("client {} talking to {url}", client.id());

    // Every successful create reaches this listener: this client's own and other users' broadcasts.
    let _created =
        todos.on_create(|todo| println!("  (listener) todo {} created: {}", todo.id, todo.title));
    let _status = client.on_status(|status| {
        println!(
            "  (status) {:?}: {} queued, {} in flight",
            status.connection, status.queued, status.in_flight
        )
    });

    // Three calls made together leave in one batch.
    let (milk, eggs, empty) = tokio::join!(
        todos.create("milk".into()),
        todos.create("eggs".into()),
        todos.create("  ".into()),
    );
    let (milk, eggs) = (milk?, eggs?);
    println!("created {milk:?} and {eggs:?}");
    match empty {
        Err(CallError::App(TodoError::Invalid(reason))) => {
            println!("an empty title is refused: {reason}")
        }
        other => println!("unexpected answer to an empty title: {other:?}"),
    }

    let done = todos
        .update(example_api::Todo {
            done: true,
            ..milk.clone()
        })
        .await?;
    println!("updated {done:?}");
    println!("read back {:?}", todos.read(milk.id).await?);

    todos.delete(eggs.id).await?;
    match todos.read(eggs.id).await {
        Err(CallError::App(TodoError::NotFound)) => println!("deleted todo {}", eggs.id),
        other => println!("unexpected answer after delete: {other:?}"),
    }
    Ok(())
}
