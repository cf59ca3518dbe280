//! The todo example's server: the `Todos` module over an in-memory board, mounted at `/crudp`.
//!
//! `cargo run -p example-server -- [ADDRESS]` (default `127.0.0.1:3000`).

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use crudp::{Context, server::Crudp};
use example_api::{Todo, TodoError, Todos, TodosServer};

/// The board: every todo, by ID.
#[derive(Default)]
struct Board {
    next_id: AtomicU64,
    todos: Mutex<BTreeMap<u64, Todo>>,
}

impl Board {
    fn todos(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Todo>> {
        self.todos
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn check_title(title: &str) -> Result<(), TodoError> {
    match title.trim() {
        "" => Err(TodoError::Invalid("the title is empty".into())),
        t if t.len() > 200 => Err(TodoError::Invalid(
            "the title is longer than 200 bytes".into(),
        )),
        _ => Ok(()),
    }
}

impl Todos for Board {
    async fn create(&self, ctx: &Context, title: String) -> Result<Todo, TodoError> {
        check_title(&title)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let todo = Todo {
            id,
            title,
            done: false,
        };
        self.todos().insert(id, todo.clone());
        tracing::info!(user = %ctx.user().id, id, "created a todo");
        Ok(todo)
    }

    async fn read(&self, _: &Context, id: u64) -> Result<Todo, TodoError> {
        self.todos().get(&id).cloned().ok_or(TodoError::NotFound)
    }

    async fn update(&self, _: &Context, todo: Todo) -> Result<Todo, TodoError> {
        check_title(&todo.title)?;
        match self.todos().get_mut(&todo.id) {
            Some(stored) => {
                *stored = todo.clone();
                Ok(todo)
            }
            None => Err(TodoError::NotFound),
        }
    }

    async fn delete(&self, _: &Context, id: u64) -> Result<(), TodoError> {
        self.todos()
            .remove(&id)
            .map(drop)
            .ok_or(TodoError::NotFound)
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,crudp_runtime=debug".into()),
        )
        .init();
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());

    let api = Crudp::builder()
        .handler(TodosServer::new(Board::default()))
        .build();
    let app = axum::Router::new().nest("/crudp", api.router());

    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!(
        "todo server listening on http://{}/crudp",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
