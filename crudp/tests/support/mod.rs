//! A real axum server on 127.0.0.1 for the tests, with a count of the requests it served.

#![allow(dead_code, unreachable_pub)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use axum::{extract::Request, middleware::Next, response::Response};
use crudp::{Context, server::Crudp};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Todo {
    pub id: u64,
    pub title: String,
    pub done: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum TodoError {
    NotFound,
    Invalid(String),
}

/// The full CRUD module.
#[crudp::module]
pub trait Todos {
    async fn create(&self, ctx: &Context, title: String) -> Result<Todo, TodoError>;
    async fn read(&self, ctx: &Context, id: u64) -> Result<Todo, TodoError>;
    async fn update(&self, ctx: &Context, todo: Todo) -> Result<Todo, TodoError>;
    async fn delete(&self, ctx: &Context, id: u64) -> Result<(), TodoError>;
}

/// A read-only module.
#[crudp::module(id = 7)]
pub trait Catalog {
    async fn read(&self, ctx: &Context, sku: String) -> Result<u32, String>;
}

/// A module whose delete panics.
#[crudp::module]
pub trait Fragile {
    async fn create(&self, ctx: &Context) -> Result<u8, ()>;
    async fn delete(&self, ctx: &Context, why: String) -> Result<(), ()>;
}

/// A module no test server mounts.
#[crudp::module]
pub trait Unmounted {
    async fn create(&self, ctx: &Context, x: u8) -> Result<u8, ()>;
}

#[derive(Default)]
pub struct Store {
    next_id: AtomicU64,
    pub todos: Mutex<BTreeMap<u64, Todo>>,
    /// Handler executions, counted where they take effect.
    pub executions: AtomicUsize,
}

impl Todos for Arc<Store> {
    async fn create(&self, _: &Context, title: String) -> Result<Todo, TodoError> {
        self.executions.fetch_add(1, Ordering::SeqCst);
        if title.is_empty() {
            return Err(TodoError::Invalid("empty title".into()));
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        let todo = Todo {
            id,
            title,
            done: false,
        };
        self.todos.lock().unwrap().insert(id, todo.clone());
        Ok(todo)
    }

    async fn read(&self, _: &Context, id: u64) -> Result<Todo, TodoError> {
        self.executions.fetch_add(1, Ordering::SeqCst);
        self.todos
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or(TodoError::NotFound)
    }

    async fn update(&self, _: &Context, todo: Todo) -> Result<Todo, TodoError> {
        self.executions.fetch_add(1, Ordering::SeqCst);
        let mut todos = self.todos.lock().unwrap();
        let stored = todos.get_mut(&todo.id).ok_or(TodoError::NotFound)?;
        *stored = todo.clone();
        Ok(todo)
    }

    async fn delete(&self, _: &Context, id: u64) -> Result<(), TodoError> {
        self.executions.fetch_add(1, Ordering::SeqCst);
        self.todos
            .lock()
            .unwrap()
            .remove(&id)
            .map(drop)
            .ok_or(TodoError::NotFound)
    }
}

pub struct Prices;

impl Catalog for Prices {
    async fn read(&self, _: &Context, sku: String) -> Result<u32, String> {
        match sku.as_str() {
            "apple" => Ok(120),
            other => Err(format!("no price for {other}")),
        }
    }
}

pub struct Glass;

impl Fragile for Glass {
    async fn create(&self, _: &Context) -> Result<u8, ()> {
        Ok(1)
    }

    async fn delete(&self, _: &Context, why: String) -> Result<(), ()> {
        panic!("{why}")
    }
}

/// A running test server.
pub struct Server {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    /// Batches that reached the CRUDP router (`POST /sync` and `POST /call`).
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serves `Todos`, `Catalog` and `Fragile` (not `Unmounted`) under `/crudp`.
    pub async fn start() -> Self {
        Self::start_with(|builder| builder).await
    }

    pub async fn start_with(
        configure: impl FnOnce(crudp::server::CrudpBuilder) -> crudp::server::CrudpBuilder,
    ) -> Self {
        let store = Arc::new(Store::default());
        let api = configure(
            Crudp::builder()
                .handler(TodosServer::new(Arc::clone(&store)))
                .handler(CatalogServer::new(Prices))
                .handler(FragileServer::new(Glass)),
        )
        .build();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let app =
            axum::Router::new()
                .nest("/crudp", api.router())
                .layer(axum::middleware::from_fn(
                    move |request: Request, next: Next| {
                        let counter = Arc::clone(&counter);
                        let path = request.uri().path();
                        if path.ends_with("/sync") || path.ends_with("/call") {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        async move {
                            let response: Response = next.run(request).await;
                            response
                        }
                    },
                ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            store,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/crudp", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn executions(&self) -> usize {
        self.store.executions.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
