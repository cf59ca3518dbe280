//! Per-call middleware: a per-action permission, a rate limit and a timing log, each a
//! `CallLayer` on a real server.

#![cfg(not(target_arch = "wasm32"))]

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crudp::{
    Action, CallError, Outcome, RejectCode,
    server::{BoxFuture, Call, CallLayer, Next, Rejected},
};
use crudp_tests::{api::*, harness::*};

// ANCHOR: permission
/// Only admins delete.
struct AdminsDelete;

impl CallLayer for AdminsDelete {
    fn call<'a>(&'a self, call: Call<'a>, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if call.action == Action::Delete && call.user.role != "admin" {
                return Rejected::forbidden("only admins delete todos").into();
            }
            next.run().await
        })
    }
}
// ANCHOR_END: permission

/// At most `per_window` calls of one user per `window`; the others are answered
/// `Unavailable`, so their clients send them again later.
struct RateLimit {
    per_window: usize,
    window: Duration,
    seen: Mutex<HashMap<String, (Instant, usize)>>,
    refused: AtomicUsize,
}

impl CallLayer for RateLimit {
    fn call<'a>(&'a self, call: Call<'a>, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let allowed = {
                let mut seen = self.seen.lock().unwrap();
                let (start, count) = seen
                    .entry(call.user.id.clone())
                    .or_insert((Instant::now(), 0));
                if start.elapsed() > self.window {
                    *start = Instant::now();
                    *count = 0;
                }
                *count += 1;
                *count <= self.per_window
            };
            if !allowed {
                self.refused.fetch_add(1, Ordering::SeqCst);
                return Outcome::Unavailable {
                    message: "rate limited: try again shortly".into(),
                };
            }
            next.run().await
        })
    }
}

/// Records each call it lets through: who, what, how many argument bytes, and whether the
/// handler succeeded, in the order the layers ran.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl CallLayer for Log {
    fn call<'a>(&'a self, call: Call<'a>, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let started = Instant::now();
            let outcome = next.run().await;
            let ok = matches!(outcome, Outcome::Ok(_));
            self.0.lock().unwrap().push(format!(
                "{} {}::{} seq {} {} bytes ok={ok} in {:?}",
                call.user.id,
                call.module.name,
                call.action,
                call.seq,
                call.args.len(),
                started.elapsed()
            ));
            outcome
        })
    }
}

#[tokio::test]
async fn a_permission_layer_refuses_a_guests_delete_with_its_reason_and_lets_an_admins_through() {
    let log = Log::default();
    let layer = log.clone();
    let server = Server::start_with(|b| b.layer(layer).layer(AdminsDelete)).await;
    let guest = TodosClient::new(&server.client_as("bob", "guest"));
    let admin = TodosClient::new(&server.client_as("ann", "admin"));
    let todo = guest.create("milk".into()).await.unwrap();

    match guest.delete(todo.id).await {
        Err(CallError::Rejected { code, message }) => {
            assert_eq!(code, RejectCode::Forbidden);
            assert_eq!(message, "only admins delete todos");
        }
        other => panic!("a guest's delete got {other:?}"),
    }
    assert_eq!(server.store.todos.lock().unwrap().len(), 1, "not deleted");
    admin.delete(todo.id).await.unwrap();
    assert!(server.store.todos.lock().unwrap().is_empty());

    // The outer layer saw all three, the refusal included, with the argument bytes.
    let log = log.0.lock().unwrap().clone();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log[0].starts_with("bob Todos::create seq 1 5 bytes ok=true"),
        "{log:?}"
    );
    assert!(
        log[1].starts_with("bob Todos::delete seq 2 1 bytes ok=false"),
        "{log:?}"
    );
    assert!(
        log[2].starts_with("ann Todos::delete seq 1 1 bytes ok=true"),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_rate_limit_layer_defers_the_calls_over_its_limit_and_loses_none() {
    let limit = Arc::new(RateLimit {
        per_window: 3,
        window: Duration::from_millis(300),
        seen: Mutex::default(),
        refused: AtomicUsize::new(0),
    });
    struct Shared(Arc<RateLimit>);
    impl CallLayer for Shared {
        fn call<'a>(&'a self, call: Call<'a>, next: Next<'a>) -> BoxFuture<'a, Outcome> {
            self.0.call(call, next)
        }
    }
    let server = Server::start_with(|b| b.layer(Shared(Arc::clone(&limit)))).await;
    let todos = TodosClient::new(&server.client_as("ann", "admin"));

    let calls: Vec<_> = (0..7).map(|i| todos.create(format!("todo {i}"))).collect();
    let created = futures_util::future::join_all(calls).await;
    let titles: Vec<String> = created.into_iter().map(|t| t.unwrap().title).collect();
    assert_eq!(
        titles,
        (0..7).map(|i| format!("todo {i}")).collect::<Vec<_>>()
    );
    assert!(
        limit.refused.load(Ordering::SeqCst) >= 1,
        "the limit refused some calls for a while"
    );
    assert_eq!(server.executions(), 7, "each ran once, in order");
    let ids: Vec<u64> = server.store.todos.lock().unwrap().keys().copied().collect();
    assert_eq!(ids, (1..=7).collect::<Vec<_>>());
}
